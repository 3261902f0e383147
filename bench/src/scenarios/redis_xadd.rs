//! `redis-xadd`: the append workload against Redis Streams (`XADD key * t <ns> p <pad>` over pipelined RESP), checking that IDs increase per connection and stream, and optionally that XLEN grew by the acked count.

use std::time::Duration;

use crate::cli::RedisXaddArgs;
use crate::conn::RespCodec;
use crate::driver::{self, Workload};
use crate::resp::{self, BlockingRedis, OwnedReply, Reply};
use crate::scenarios::common;
use crate::stats::{Stats, Summary, Violations};
use crate::sys;

/// Per connection: its streams, the last ID acked per stream slot, the round-robin cursor.
struct ConnStreams {
    streams: Vec<usize>,
    last: Vec<(u64, u64)>,
    next: usize,
}

struct XaddWl {
    keys: Vec<String>,
    pad: Vec<u8>,
    conns: Vec<ConnStreams>,
    acked: Vec<u64>,
    unknown: Vec<u64>,
    v: Violations,
}

impl Workload for XaddWl {
    type Codec = RespCodec;
    type Meta = (usize, usize);
    const HIST: &'static str = "xadd";

    fn next(&mut self, conn: usize, out: &mut Vec<u8>) -> Option<(usize, usize)> {
        let cs = &mut self.conns[conn];
        let slot = cs.next % cs.streams.len();
        cs.next += 1;
        let s = cs.streams[slot];
        let t = sys::realtime_ns().to_string();
        resp::write_command(out, &[b"XADD", self.keys[s].as_bytes(), b"*", b"t", t.as_bytes(), b"p", &self.pad]);
        Some((slot, s))
    }

    fn reply(&mut self, conn: usize, (slot, s): (usize, usize), reply: &Reply<'_>, lat: u64, stats: &mut Stats) {
        match reply {
            Reply::Bulk(Some(id)) => match resp::parse_stream_id(id) {
                Some(parsed) => {
                    let last = &mut self.conns[conn].last[slot];
                    if parsed <= *last {
                        let (key, prev) = (&self.keys[s], *last);
                        self.v.add("id_not_increasing", || format!("stream {key}: id {parsed:?} after {prev:?} on the same connection"));
                    }
                    *last = (*last).max(parsed);
                    self.acked[s] += 1;
                    stats.ok += 1;
                    stats.record_us("xadd", lat);
                }
                None => {
                    stats.error("bad_stream_id");
                    self.unknown[s] += 1;
                }
            },
            Reply::Error(e) => {
                let word = String::from_utf8_lossy(e.split(|b| *b == b' ').next().unwrap_or_default()).into_owned();
                stats.error(format!("redis_error:{word}"));
            }
            other => {
                stats.error("unexpected_reply");
                self.v.add("unexpected_reply", || format!("XADD answered {}", other.describe()));
            }
        }
    }

    fn lost(&mut self, _conn: usize, (_slot, s): (usize, usize)) {
        self.unknown[s] += 1;
    }
}

fn xlen(r: &mut BlockingRedis, key: &str) -> Result<u64, String> {
    match r.command(&[b"XLEN", key.as_bytes()])? {
        OwnedReply::Integer(n) if n >= 0 => Ok(n as u64),
        other => Err(format!("XLEN {key}: unexpected reply {other:?}")),
    }
}

fn config_get(r: &mut BlockingRedis, name: &str) -> String {
    match r.command(&[b"CONFIG", b"GET", name.as_bytes()]) {
        Ok(OwnedReply::Array(Some(items))) if items.len() == 2 => match &items[1] {
            OwnedReply::Bulk(Some(v)) => String::from_utf8_lossy(v).into_owned(),
            other => format!("{other:?}"),
        },
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("unavailable: {e}"),
    }
}

pub fn run(args: &RedisXaddArgs) -> Result<Summary, String> {
    if args.streams == 0 {
        return Err("--streams must be at least 1".into());
    }
    let spec = args.load.spec(args.addr, &args.common)?;
    let keys: Vec<String> = (0..args.streams).map(|i| format!("{}:{i}", args.key_prefix)).collect();
    let mut admin = BlockingRedis::connect(args.addr, Duration::from_secs(10))?;
    match admin.command(&[b"PING"])? {
        OwnedReply::Simple(s) if s == "PONG" => {}
        other => return Err(format!("PING answered {other:?}")),
    }
    let appendonly = config_get(&mut admin, "appendonly");
    let appendfsync = config_get(&mut admin, "appendfsync");
    let before: Vec<u64> = keys.iter().map(|k| xlen(&mut admin, k)).collect::<Result<_, _>>()?;
    let conns = (0..spec.connections)
        .map(|c| {
            let streams = common::sessions_for_conn(c, spec.connections, args.streams);
            ConnStreams { last: vec![(0, 0); streams.len()], streams, next: 0 }
        })
        .collect();
    let mut w = XaddWl {
        keys: keys.clone(),
        pad: vec![b'x'; args.payload_bytes],
        conns,
        acked: vec![0; args.streams],
        unknown: vec![0; args.streams],
        v: Violations::default(),
    };
    let res = driver::run(&spec, &mut w)?;
    let mut performed = vec![format!("{} acks: stream IDs strictly increasing per connection and stream", w.acked.iter().sum::<u64>())];
    if args.verify {
        // Warmup appends are acked too; compare against every ack of the run.
        for (s, k) in keys.iter().enumerate() {
            let after = xlen(&mut admin, k)?;
            let grew = after.saturating_sub(before[s]);
            if grew < w.acked[s] || grew > w.acked[s] + w.unknown[s] {
                let (a, u) = (w.acked[s], w.unknown[s]);
                w.v.add("xlen_mismatch", || format!("stream {k}: grew by {grew}, acked {a} (+{u} unknown)"));
            }
        }
        performed.push(format!("XLEN of {} streams grew by exactly the acked count", args.streams));
    }
    let mut sum = Summary::new("redis-xadd", args, &res.stats, res.elapsed.as_secs_f64(), res.cpu.clone(), &w.v, performed);
    sum.extra("redis_appendonly", appendonly);
    sum.extra("redis_appendfsync", appendfsync);
    res.report(&mut sum, args.load.rate, w.unknown.iter().sum::<u64>());
    Ok(sum)
}
