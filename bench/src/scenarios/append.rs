//! `append`: hot-path appends over pipelined keep-alive HTTP/1.1; checks every ack (no duplicate seq per session, strictly increasing per connection and session) and optionally reads every session back.

use std::time::{Duration, Instant};

use crate::api;
use crate::cli::AppendArgs;
use crate::conn::HttpCodec;
use crate::driver::{self, Workload};
use crate::http::{self, BlockingClient, Response};
use crate::scenarios::common::{self, error_kind};
use crate::stats::{Stats, Summary, Violations};
use crate::sys;
use crate::verify::{self, Insert, SeqSet};

pub struct ConnSessions {
    pub sessions: Vec<usize>,
    pub last_acked: Vec<u64>,
    pub next: usize,
}

impl ConnSessions {
    /// The sessions connection `conn` of `connections` drives, starting from their seqs in `base`.
    pub fn for_conn(conn: usize, connections: usize, sessions: usize, base: &[u64]) -> Self {
        let sessions = common::sessions_for_conn(conn, connections, sessions);
        ConnSessions { last_acked: sessions.iter().map(|&s| base[s]).collect(), sessions, next: 0 }
    }
}

/// Ack bookkeeping shared by the append-like scenarios.
pub struct Acks {
    pub ids: Vec<String>,
    pub acked: Vec<SeqSet>,
    pub unknown: Vec<u64>,
    pub v: Violations,
    pub acks: u64,
}

impl Acks {
    pub fn new(ids: Vec<String>, base: &[u64]) -> Self {
        Acks { acked: base.iter().map(|b| SeqSet::new(*b)).collect(), unknown: vec![0; ids.len()], ids, v: Violations::default(), acks: 0 }
    }

    /// Record an acknowledged seq for session `s`, seen on a stream whose previous ack was
    /// `*last` (per connection and session).
    pub fn ack(&mut self, s: usize, seq: u64, last_seq: u64, last: &mut u64) {
        self.acks += 1;
        let id = &self.ids[s];
        match self.acked[s].insert(seq) {
            Ok(Insert::New) => {}
            Ok(Insert::Duplicate) => self.v.add("duplicate_seq", || format!("session {id}: seq {seq} acknowledged twice")),
            Err(e) => self.v.add("seq_out_of_range", || format!("session {id}: {e}")),
        }
        if seq <= *last {
            let prev = *last;
            self.v.add("seq_not_increasing", || format!("session {id}: ack seq {seq} after {prev} on the same connection"));
        }
        *last = (*last).max(seq);
        if last_seq < seq {
            self.v.add("last_seq_below_seq", || format!("session {id}: ack seq {seq} with last_seq {last_seq}"));
        }
    }

    /// [`Self::read_back_all`], reported: `checked(events)` joins `performed` when it
    /// finished; a read-back that could not finish (the server died) is the violation
    /// `verify_incomplete`, and the run still reports.
    pub fn verify_into(&mut self, addr: std::net::SocketAddr, performed: &mut Vec<String>, checked: impl FnOnce(u64) -> String) {
        match self.read_back_all(addr) {
            Ok(events) => performed.push(checked(events)),
            Err(e) => self.v.add("verify_incomplete", || format!("reading the sessions back failed: {e}")),
        }
    }

    /// Read every session back (contiguous seqs, count = acked within unknown outcomes).
    pub fn read_back_all(&mut self, addr: std::net::SocketAddr) -> Result<u64, String> {
        let mut client = BlockingClient::new(addr, Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut events = 0;
        for s in 0..self.ids.len() {
            let back = verify::read_back(&mut client, &self.ids[s], self.acked[s].base(), 1000, deadline, &mut self.v)?;
            verify::check_counts(&self.ids[s], &self.acked[s], self.unknown[s], &back, &mut self.v);
            events += back.events;
        }
        Ok(events)
    }
}

struct AppendWl {
    host: String,
    paths: Vec<String>,
    pad: String,
    body: Vec<u8>,
    conns: Vec<ConnSessions>,
    a: Acks,
    keys: Option<(String, u64)>,
}

impl Workload for AppendWl {
    type Codec = HttpCodec;
    type Meta = (usize, usize);
    const HIST: &'static str = "append";

    fn next(&mut self, conn: usize, out: &mut Vec<u8>) -> Option<(usize, usize)> {
        let cs = &mut self.conns[conn];
        let slot = cs.next % cs.sessions.len();
        cs.next += 1;
        let s = cs.sessions[slot];
        self.body.clear();
        let key = self.keys.as_mut().map(|(run, n)| {
            *n += 1;
            format!("{run}-{n}")
        });
        api::write_append_body(&mut self.body, &self.pad, sys::realtime_ns(), key.as_deref(), None);
        http::write_request(out, "POST", &self.paths[s], &self.host, Some(&self.body));
        Some((slot, s))
    }

    fn reply(&mut self, conn: usize, (slot, s): (usize, usize), reply: &Response<'_>, lat: u64, stats: &mut Stats) {
        if reply.status == 201 {
            match serde_json::from_slice::<api::AppendOk>(&reply.body) {
                Ok(ok) => {
                    if ok.deduped {
                        let id = &self.a.ids[s];
                        self.a.v.add("unexpected_dedupe", || format!("session {id}: fresh append answered deduped:true (seq {})", ok.seq));
                    }
                    stats.ok += 1;
                    stats.record_us("append", lat);
                    let last = &mut self.conns[conn].last_acked[slot];
                    self.a.ack(s, ok.seq, ok.last_seq, last);
                }
                Err(e) => {
                    stats.error("bad_append_body");
                    self.a.v.add("bad_append_body", || format!("201 body {:?}: {e}", reply.body_str()));
                    self.a.unknown[s] += 1;
                }
            }
        } else {
            stats.error(error_kind(reply));
            if reply.status >= 500 {
                self.a.unknown[s] += 1;
            }
        }
    }

    fn lost(&mut self, _conn: usize, (_slot, s): (usize, usize)) {
        self.a.unknown[s] += 1;
    }
}

pub fn run(args: &AppendArgs) -> Result<Summary, String> {
    if args.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    let spec = args.load.spec(args.addr, &args.common)?;
    let ids = common::session_ids(&args.session_prefix, args.sessions);
    let base = common::setup_sessions(args.addr, &ids)?;
    let conns = (0..spec.connections).map(|c| ConnSessions::for_conn(c, spec.connections, args.sessions, &base)).collect();
    let mut w = AppendWl {
        host: args.addr.to_string(),
        paths: ids.iter().map(|id| api::append_path(id)).collect(),
        pad: api::padding(args.payload_bytes),
        body: Vec::with_capacity(args.payload_bytes + 256),
        conns,
        a: Acks::new(ids, &base),
        keys: args.idempotency_keys.then(|| (common::run_id(), 0)),
    };
    let res = driver::run(&spec, &mut w)?;
    let mut performed = vec![format!("{} acks: no duplicate seq per session, strictly increasing per connection and session", w.a.acks)];
    if args.verify {
        let sessions = args.sessions;
        w.a.verify_into(args.addr, &mut performed, |events| {
            format!("read back {sessions} sessions ({events} events): contiguous seqs, stored count = acked count")
        });
    }
    let mut sum = Summary::new("append", args, &res.stats, res.elapsed.as_secs_f64(), res.cpu.clone(), &w.a.v, performed);
    res.report(&mut sum, args.load.rate, w.a.unknown.iter().sum::<u64>());
    Ok(sum)
}
