//! Helpers shared by the scenarios: pipelined batches of control requests (create sessions, read baselines), fast session fill, session-to-connection assignment, error kinds, and a tiny PRNG.

use std::net::SocketAddr;
use std::time::Duration;

use crate::api;
use crate::conn::HttpCodec;
use crate::driver::{self, Limit, LoadSpec, Workload};
use crate::http::{self, Response};
use crate::stats::Stats;

/// Run pre-encoded HTTP requests over a few pipelined connections; answers in input order.
pub fn batch(addr: SocketAddr, requests: Vec<Vec<u8>>, connections: usize, pipeline: usize) -> Result<Vec<(u16, Vec<u8>)>, String> {
    struct Batch {
        requests: Vec<Vec<u8>>,
        next: usize,
        answers: Vec<Option<(u16, Vec<u8>)>>,
    }
    impl Workload for Batch {
        type Codec = HttpCodec;
        type Meta = usize;
        const HIST: &'static str = "control";
        fn next(&mut self, _conn: usize, out: &mut Vec<u8>) -> Option<usize> {
            let i = self.next;
            let r = self.requests.get(i)?;
            out.extend_from_slice(r);
            self.next += 1;
            Some(i)
        }
        fn reply(&mut self, _conn: usize, i: usize, reply: &Response<'_>, _lat: u64, stats: &mut Stats) {
            stats.ok += 1;
            self.answers[i] = Some((reply.status, reply.body.to_vec()));
        }
        fn lost(&mut self, _conn: usize, _i: usize) {}
    }
    let n = requests.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut w = Batch { requests, next: 0, answers: vec![None; n] };
    let spec = LoadSpec {
        addr,
        connections: connections.clamp(1, n),
        pipeline,
        limit: Limit::Requests(n as u64),
        rate: None,
        warmup: Duration::ZERO,
        drain: Duration::from_secs(30),
        server_pid: None,
        progress: false,
    };
    let res = driver::run(&spec, &mut w)?;
    if res.stats.errors_total() > 0 {
        return Err(format!("control requests failed: {:?}", res.stats.errors));
    }
    w.answers.into_iter().enumerate().map(|(i, a)| a.ok_or_else(|| format!("control request {i} got no answer"))).collect()
}

/// Create the sessions (201, or 409 `session_exists` when re-running) and return each one's
/// last_seq before the run.
pub fn setup_sessions(addr: SocketAddr, ids: &[String]) -> Result<Vec<u64>, String> {
    let host = addr.to_string();
    let creates = ids
        .iter()
        .map(|id| {
            let mut out = Vec::new();
            http::write_request(&mut out, "POST", "/v1/sessions", &host, Some(&api::create_body(id)));
            out
        })
        .collect();
    let answers = batch(addr, creates, 4, 16)?;
    let mut existing = Vec::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        match status {
            201 => {}
            409 if String::from_utf8_lossy(body).contains("session_exists") => existing.push(i),
            _ => return Err(format!("create session {}: HTTP {status} {}", ids[i], String::from_utf8_lossy(body))),
        }
    }
    let mut base = vec![0u64; ids.len()];
    let reads = existing
        .iter()
        .map(|&i| {
            let mut out = Vec::new();
            http::write_request(&mut out, "GET", &api::events_path(&ids[i], 0, 1), &host, None);
            out
        })
        .collect();
    for (k, (status, body)) in batch(addr, reads, 4, 16)?.into_iter().enumerate() {
        let i = existing[k];
        if status != 200 {
            return Err(format!("read session {}: HTTP {status} {}", ids[i], String::from_utf8_lossy(&body)));
        }
        let page: api::Page = serde_json::from_slice(&body).map_err(|e| format!("read session {}: {e}", ids[i]))?;
        base[i] = page.last_seq;
    }
    Ok(base)
}

pub fn session_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Sessions a connection works on: `{s : s % C == c}`, or `[c % S]` when C > S (then
/// several connections share a session).
pub fn sessions_for_conn(c: usize, connections: usize, sessions: usize) -> Vec<usize> {
    let own: Vec<usize> = (0..sessions).filter(|s| s % connections == c).collect();
    if own.is_empty() {
        vec![c % sessions]
    } else {
        own
    }
}

/// `http_<status>:<error>` from an error answer.
pub fn error_kind(reply: &Response<'_>) -> String {
    match serde_json::from_slice::<api::ApiError<'_>>(&reply.body) {
        Ok(e) => format!("http_{}:{}", reply.status, e.error),
        Err(_) => format!("http_{}", reply.status),
    }
}

/// Counts of a fill.
pub struct FillResult {
    pub acked: Vec<u64>,
    pub stats: Stats,
    pub elapsed: Duration,
    pub cpu: crate::sys::CpuReport,
}

/// Append `counts[i]` events to session `ids[i]` as fast as the server takes them.
pub fn fill(
    addr: SocketAddr,
    ids: &[String],
    counts: &[u64],
    payload_bytes: usize,
    connections: usize,
    pipeline: usize,
) -> Result<FillResult, String> {
    struct Fill {
        host: String,
        paths: Vec<String>,
        left: Vec<u64>,
        acked: Vec<u64>,
        cursor: usize,
        pad: String,
        body: Vec<u8>,
    }
    impl Workload for Fill {
        type Codec = HttpCodec;
        type Meta = usize;
        const HIST: &'static str = "fill_append";
        fn next(&mut self, _conn: usize, out: &mut Vec<u8>) -> Option<usize> {
            let n = self.left.len();
            for k in 0..n {
                let s = (self.cursor + k) % n;
                if self.left[s] > 0 {
                    self.left[s] -= 1;
                    self.cursor = s + 1;
                    self.body.clear();
                    api::write_append_body(&mut self.body, &self.pad, crate::sys::realtime_ns(), None, None);
                    http::write_request(out, "POST", &self.paths[s], &self.host, Some(&self.body));
                    return Some(s);
                }
            }
            None
        }
        fn reply(&mut self, _conn: usize, s: usize, reply: &Response<'_>, lat: u64, stats: &mut Stats) {
            if reply.status == 201 {
                stats.ok += 1;
                self.acked[s] += 1;
                stats.record_us("fill_append", lat);
            } else {
                stats.error(error_kind(reply));
            }
        }
        fn lost(&mut self, _conn: usize, _s: usize) {}
    }
    let total: u64 = counts.iter().sum();
    let mut w = Fill {
        host: addr.to_string(),
        paths: ids.iter().map(|id| api::append_path(id)).collect(),
        left: counts.to_vec(),
        acked: vec![0; ids.len()],
        cursor: 0,
        pad: api::padding(payload_bytes),
        body: Vec::new(),
    };
    if total == 0 {
        return Ok(FillResult {
            acked: w.acked,
            stats: Stats::new(),
            elapsed: Duration::ZERO,
            cpu: crate::sys::CpuWindow::start(None).finish(),
        });
    }
    let spec = LoadSpec {
        addr,
        connections,
        pipeline,
        limit: Limit::Requests(total),
        rate: None,
        warmup: Duration::ZERO,
        drain: Duration::from_secs(30),
        server_pid: None,
        progress: false,
    };
    let res = driver::run(&spec, &mut w)?;
    Ok(FillResult { acked: w.acked, stats: res.stats, elapsed: res.elapsed, cpu: res.cpu })
}

/// xorshift64*: deterministic and cheap.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A run id for idempotency keys (unique per invocation).
pub fn run_id() -> String {
    format!("{:x}{:x}", crate::sys::realtime_ns() / 1000, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_covers_every_session_once_when_c_le_s() {
        let (c, s) = (3, 10);
        let mut all: Vec<usize> = (0..c).flat_map(|i| sessions_for_conn(i, c, s)).collect();
        all.sort();
        assert_eq!(all, (0..s).collect::<Vec<_>>());
        assert_eq!(sessions_for_conn(5, 8, 4), vec![1]);
    }

    #[test]
    fn rng_unit_range() {
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
