//! `retry-storm`: every append is sent twice, back to back on the same connection, with the same idempotency_key and body; the second must answer `deduped:true` with the first one's seq.

use std::collections::VecDeque;

use crate::api;
use crate::cli::RetryStormArgs;
use crate::conn::HttpCodec;
use crate::driver::{self, Workload};
use crate::http::{self, Response};
use crate::scenarios::append::{Acks, ConnSessions};
use crate::scenarios::common::{self, error_kind};
use crate::stats::{Stats, Summary};
use crate::sys;

/// What the first send of a key got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Orig {
    Acked(u64),
    /// 5xx or no answer: it may or may not have been committed.
    Unknown,
    /// 4xx: not committed.
    Rejected,
}

#[derive(Clone, Copy)]
enum Kind {
    Original,
    Retry,
}

struct Meta {
    kind: Kind,
    slot: usize,
    s: usize,
    key: u64,
}

struct PerConn {
    cs: ConnSessions,
    /// The retry of the last original, to send next on this connection.
    pending_retry: Option<(Vec<u8>, usize, usize, u64)>,
    /// Outcome of originals whose retry has not been answered yet.
    originals: VecDeque<(u64, Orig)>,
}

struct RetryWl {
    host: String,
    paths: Vec<String>,
    pad: String,
    body: Vec<u8>,
    run: String,
    keys: u64,
    conns: Vec<PerConn>,
    a: Acks,
    pairs_checked: u64,
}

impl Workload for RetryWl {
    type Codec = HttpCodec;
    type Meta = Meta;
    const HIST: &'static str = "original";

    fn next(&mut self, conn: usize, out: &mut Vec<u8>) -> Option<Meta> {
        let pc = &mut self.conns[conn];
        if let Some((req, slot, s, key)) = pc.pending_retry.take() {
            out.extend_from_slice(&req);
            return Some(Meta { kind: Kind::Retry, slot, s, key });
        }
        let slot = pc.cs.next % pc.cs.sessions.len();
        pc.cs.next += 1;
        let s = pc.cs.sessions[slot];
        self.keys += 1;
        let key = self.keys;
        let key_text = format!("{}-{key}", self.run);
        self.body.clear();
        api::write_append_body(&mut self.body, &self.pad, sys::realtime_ns(), Some(&key_text), None);
        let start = out.len();
        http::write_request(out, "POST", &self.paths[s], &self.host, Some(&self.body));
        pc.pending_retry = Some((out[start..].to_vec(), slot, s, key));
        Some(Meta { kind: Kind::Original, slot, s, key })
    }

    fn reply(&mut self, conn: usize, m: Meta, reply: &Response<'_>, lat: u64, stats: &mut Stats) {
        let id = self.a.ids[m.s].clone();
        let ok = if reply.status == 201 {
            match serde_json::from_slice::<api::AppendOk>(&reply.body) {
                Ok(ok) => Some(ok),
                Err(e) => {
                    stats.error("bad_append_body");
                    self.a.v.add("bad_append_body", || format!("201 body {:?}: {e}", reply.body_str()));
                    None
                }
            }
        } else {
            stats.error(error_kind(reply));
            None
        };
        let pc = &mut self.conns[conn];
        match m.kind {
            Kind::Original => {
                let outcome = match &ok {
                    Some(ok) => {
                        if ok.deduped {
                            self.a
                                .v
                                .add("fresh_key_deduped", || format!("session {id}: first send of key {} answered deduped:true", m.key));
                        }
                        stats.ok += 1;
                        stats.record_us("original", lat);
                        let last = &mut pc.cs.last_acked[m.slot];
                        self.a.ack(m.s, ok.seq, ok.last_seq, last);
                        Orig::Acked(ok.seq)
                    }
                    None if reply.status >= 500 => {
                        self.a.unknown[m.s] += 1;
                        Orig::Unknown
                    }
                    None => Orig::Rejected,
                };
                pc.originals.push_back((m.key, outcome));
            }
            Kind::Retry => {
                let original = take_original(&mut pc.originals, m.key);
                self.pairs_checked += 1;
                match (original, &ok) {
                    (Some(Orig::Acked(seq)), Some(ok)) => {
                        if !ok.deduped || ok.seq != seq {
                            self.a.v.add("dedupe_violation", || {
                                format!("session {id}: key {} first got seq {seq}, retry got seq {} deduped:{}", m.key, ok.seq, ok.deduped)
                            });
                        }
                        stats.ok += 1;
                        stats.outcome("retry_deduped");
                        stats.record_us("retry", lat);
                    }
                    (Some(Orig::Acked(seq)), None) => {
                        self.a.v.add("dedupe_violation", || {
                            format!("session {id}: key {} first got seq {seq}, retry got HTTP {}", m.key, reply.status)
                        });
                    }
                    (original, Some(ok)) => {
                        // The original failed or was lost: the retry settles it.
                        stats.ok += 1;
                        stats.record_us("retry", lat);
                        stats.outcome(if ok.deduped {
                            "retry_found_failed_original_committed"
                        } else {
                            "retry_committed_after_failed_original"
                        });
                        if original == Some(Orig::Unknown) {
                            self.a.unknown[m.s] = self.a.unknown[m.s].saturating_sub(1);
                        }
                        let mut no_order = 0;
                        self.a.ack(m.s, ok.seq, ok.last_seq, &mut no_order);
                    }
                    (_, None) => {}
                }
            }
        }
    }

    fn lost(&mut self, conn: usize, m: Meta) {
        let pc = &mut self.conns[conn];
        match m.kind {
            Kind::Original => {
                self.a.unknown[m.s] += 1;
                pc.originals.push_back((m.key, Orig::Unknown));
            }
            Kind::Retry => {
                take_original(&mut pc.originals, m.key);
            }
        }
    }
}

/// The recorded outcome of the original with `key` (`None`: never recorded).
fn take_original(q: &mut VecDeque<(u64, Orig)>, key: u64) -> Option<Orig> {
    while let Some((k, seq)) = q.pop_front() {
        if k == key {
            return Some(seq);
        }
    }
    None
}

pub fn run(args: &RetryStormArgs) -> Result<Summary, String> {
    if args.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    let spec = args.load.spec(args.addr, &args.common)?;
    let ids = common::session_ids(&args.session_prefix, args.sessions);
    let base = common::setup_sessions(args.addr, &ids)?;
    let conns = (0..spec.connections)
        .map(|c| PerConn {
            cs: ConnSessions::for_conn(c, spec.connections, args.sessions, &base),
            pending_retry: None,
            originals: VecDeque::new(),
        })
        .collect();
    let mut w = RetryWl {
        host: args.addr.to_string(),
        paths: ids.iter().map(|id| api::append_path(id)).collect(),
        pad: api::padding(args.payload_bytes),
        body: Vec::with_capacity(args.payload_bytes + 256),
        run: common::run_id(),
        keys: 0,
        conns,
        a: Acks::new(ids, &base),
        pairs_checked: 0,
    };
    let res = driver::run(&spec, &mut w)?;
    let mut performed = vec![format!(
        "{} retries checked: deduped:true with the original's seq; {} acks with no duplicate seq per session",
        w.pairs_checked, w.a.acks
    )];
    if args.verify {
        let sessions = args.sessions;
        w.a.verify_into(args.addr, &mut performed, |events| {
            format!("read back {sessions} sessions ({events} events): one event per key, contiguous seqs")
        });
    }
    let mut sum = Summary::new("retry-storm", args, &res.stats, res.elapsed.as_secs_f64(), res.cpu.clone(), &w.a.v, performed);
    res.report(&mut sum, args.load.rate, w.a.unknown.iter().sum::<u64>());
    Ok(sum)
}
