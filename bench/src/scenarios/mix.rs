//! `mix`: reads and writes; appends carry expected_seq chains (409 expected_seq_conflict is a contract outcome that refreshes the writer's seq), reads are events pages checked for contiguity and read-your-writes.

use crate::api;
use crate::cli::MixArgs;
use crate::conn::HttpCodec;
use crate::driver::{self, Workload};
use crate::http::{self, Response};
use crate::scenarios::append::Acks;
use crate::scenarios::common::{self, error_kind, Rng};
use crate::stats::{Stats, Summary};
use crate::sys;

struct Writer {
    sessions: Vec<usize>,
    /// Highest last_seq this connection knows per session slot.
    known: Vec<u64>,
    /// Appends in flight per slot (the chain's next expected_seq is known + in flight).
    inflight: Vec<u64>,
    last_acked: Vec<u64>,
}

enum Meta {
    Append { slot: usize, s: usize, expected: u64 },
    Read { slot: usize, s: usize, cursor: u64, known: u64 },
}

struct MixWl {
    host: String,
    ids: Vec<String>,
    paths: Vec<String>,
    pad: String,
    body: Vec<u8>,
    conns: Vec<Writer>,
    a: Acks,
    rng: Rng,
    read_ratio: f64,
    read_limit: usize,
}

impl Workload for MixWl {
    type Codec = HttpCodec;
    type Meta = Meta;
    /// A missed send was a read or an append; counted with the appends.
    const HIST: &'static str = "append";

    fn next(&mut self, conn: usize, out: &mut Vec<u8>) -> Option<Meta> {
        let w = &mut self.conns[conn];
        let slot = self.rng.below(w.sessions.len());
        let s = w.sessions[slot];
        if self.rng.unit() < self.read_ratio {
            let cursor = w.known[slot].saturating_sub(self.read_limit as u64);
            http::write_request(out, "GET", &api::events_path(&self.ids[s], cursor, self.read_limit), &self.host, None);
            Some(Meta::Read { slot, s, cursor, known: w.known[slot] })
        } else {
            let expected = w.known[slot] + w.inflight[slot];
            w.inflight[slot] += 1;
            self.body.clear();
            api::write_append_body(&mut self.body, &self.pad, sys::realtime_ns(), None, Some(expected));
            http::write_request(out, "POST", &self.paths[s], &self.host, Some(&self.body));
            Some(Meta::Append { slot, s, expected })
        }
    }

    fn reply(&mut self, conn: usize, meta: Meta, reply: &Response<'_>, lat: u64, stats: &mut Stats) {
        match meta {
            Meta::Append { slot, s, expected } => {
                let w = &mut self.conns[conn];
                w.inflight[slot] -= 1;
                let id = &self.ids[s];
                match reply.status {
                    201 => match serde_json::from_slice::<api::AppendOk>(&reply.body) {
                        Ok(ok) => {
                            if ok.seq != expected + 1 {
                                self.a.v.add("expected_seq_not_honored", || {
                                    format!("session {id}: expected_seq {expected} but appended at seq {}", ok.seq)
                                });
                            }
                            stats.ok += 1;
                            stats.outcome("append_ok");
                            stats.record_us("append", lat);
                            w.known[slot] = w.known[slot].max(ok.last_seq).max(ok.seq);
                            let last = &mut w.last_acked[slot];
                            self.a.ack(s, ok.seq, ok.last_seq, last);
                        }
                        Err(e) => {
                            stats.error("bad_append_body");
                            self.a.v.add("bad_append_body", || format!("201 body {:?}: {e}", reply.body_str()));
                        }
                    },
                    409 => {
                        let parsed = serde_json::from_slice::<api::ApiError<'_>>(&reply.body).ok();
                        match parsed {
                            Some(e) if e.error == "expected_seq_conflict" => {
                                // The contract's answer, not a successful operation:
                                // counted apart, never in the ok throughput.
                                stats.outcome("expected_seq_conflict");
                                stats.record_us("append_conflict", lat);
                                match e.message.as_deref().and_then(api::parse_conflict) {
                                    Some((x, y)) => {
                                        if x != expected {
                                            self.a.v.add("conflict_echo_mismatch", || {
                                                format!("session {id}: sent expected_seq {expected}, 409 says {x}")
                                            });
                                        }
                                        if y == x {
                                            self.a.v.add("conflict_without_mismatch", || {
                                                format!("session {id}: 409 for expected_seq {x} while current seq is {y}")
                                            });
                                        }
                                        w.known[slot] = w.known[slot].max(y);
                                    }
                                    None => {
                                        stats.outcome("conflict_message_unparsed");
                                    }
                                }
                            }
                            _ => stats.error(error_kind(reply)),
                        }
                    }
                    status => {
                        stats.error(error_kind(reply));
                        if status >= 500 {
                            self.a.unknown[s] += 1;
                        }
                    }
                }
            }
            Meta::Read { slot, s, cursor, known } => {
                if reply.status != 200 {
                    stats.error(error_kind(reply));
                    return;
                }
                let id = &self.ids[s];
                let page = match serde_json::from_slice::<api::Page>(&reply.body) {
                    Ok(p) => p,
                    Err(e) => {
                        stats.error("bad_page_body");
                        self.a.v.add("bad_page_body", || format!("session {id}: {e}"));
                        return;
                    }
                };
                stats.ok += 1;
                stats.outcome("read_ok");
                stats.record_us("read", lat);
                for (i, e) in page.events.iter().enumerate() {
                    let want = cursor + 1 + i as u64;
                    if e.seq != want {
                        self.a.v.add("read_gap_or_duplicate", || {
                            format!("session {id}: page from cursor {cursor} has seq {} at position {i}, expected {want}", e.seq)
                        });
                        break;
                    }
                }
                let n = page.events.len() as u64;
                if page.next_cursor != cursor + n {
                    self.a.v.add("page_next_cursor", || {
                        format!("session {id}: cursor {cursor} + {n} events but next_cursor {}", page.next_cursor)
                    });
                }
                if page.last_seq < known {
                    self.a.v.add("stale_read", || {
                        format!("session {id}: read last_seq {} after this connection had seen seq {known}", page.last_seq)
                    });
                }
                if n == 0 && page.last_seq > cursor {
                    self.a.v.add("page_short", || format!("session {id}: empty page at cursor {cursor} below last_seq {}", page.last_seq));
                }
                let w = &mut self.conns[conn];
                w.known[slot] = w.known[slot].max(page.last_seq);
            }
        }
    }

    fn lost(&mut self, conn: usize, meta: Meta) {
        if let Meta::Append { slot, s, .. } = meta {
            self.conns[conn].inflight[slot] -= 1;
            self.a.unknown[s] += 1;
        }
    }
}

pub fn run(args: &MixArgs) -> Result<Summary, String> {
    if args.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err("--read-ratio must be within 0..1".into());
    }
    if !(1..=1000).contains(&args.read_limit) {
        return Err("--read-limit must be within 1..1000".into());
    }
    let spec = args.load.spec(args.addr, &args.common)?;
    let ids = common::session_ids(&args.session_prefix, args.sessions);
    let base = common::setup_sessions(args.addr, &ids)?;
    let conns = (0..spec.connections)
        .map(|c| {
            let sessions = common::sessions_for_conn(c, spec.connections, args.sessions);
            let known: Vec<u64> = sessions.iter().map(|&s| base[s]).collect();
            Writer { inflight: vec![0; sessions.len()], last_acked: known.clone(), known, sessions }
        })
        .collect();
    let mut w = MixWl {
        host: args.addr.to_string(),
        paths: ids.iter().map(|id| api::append_path(id)).collect(),
        ids: ids.clone(),
        pad: api::padding(args.payload_bytes),
        body: Vec::with_capacity(args.payload_bytes + 256),
        conns,
        a: Acks::new(ids, &base),
        rng: Rng::new(args.seed),
        read_ratio: args.read_ratio,
        read_limit: args.read_limit,
    };
    let res = driver::run(&spec, &mut w)?;
    let mut performed = vec![
        format!(
            "{} acks: no duplicate seq, strictly increasing per connection and session, seq = expected_seq + 1",
            w.a.acks
        ),
        "409s echo the sent expected_seq and a different current seq; reads are contiguous from the cursor and never older than what the connection saw"
            .to_string(),
    ];
    if args.verify {
        let sessions = args.sessions;
        w.a.verify_into(args.addr, &mut performed, |events| {
            format!("read back {sessions} sessions ({events} events): contiguous seqs, stored count = acked count")
        });
    }
    let mut sum = Summary::new("mix", args, &res.stats, res.elapsed.as_secs_f64(), res.cpu.clone(), &w.a.v, performed);
    res.report(&mut sum, args.load.rate, w.a.unknown.iter().sum::<u64>());
    let outcome = |k: &str| res.stats.outcomes.get(k).copied().unwrap_or(0);
    sum.headline = Some(format!(
        "{:.1} ops/s ok ({} appends + {} reads in {:.3} s); {} appends answered 409 expected_seq_conflict (not counted as ok)",
        sum.throughput_ops_per_sec,
        outcome("append_ok"),
        outcome("read_ok"),
        sum.elapsed_secs,
        outcome("expected_seq_conflict")
    ));
    Ok(sum)
}
