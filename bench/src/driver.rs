//! The single-threaded load loop shared by the request/response scenarios: C pipelined connections with up to D requests each in flight, closed-loop or open-loop (fixed schedule, latency from the scheduled send time), warmup, bounded drain, bounded reconnects.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::conn::{Codec, Conn};
use crate::stats::Stats;
use crate::sys::{CpuReport, CpuWindow};
use crate::timer::Timer;

/// What a scenario plugs into the loop.
pub trait Workload {
    type Codec: Codec;
    type Meta;
    /// Append the next request for connection `conn` to `out`; `None` when that connection
    /// has nothing to send now.
    fn next(&mut self, conn: usize, out: &mut Vec<u8>) -> Option<Self::Meta>;
    /// A reply arrived; `latency_us` counts from the (scheduled) send time. Count `stats.ok`
    /// and record latency here.
    fn reply(&mut self, conn: usize, meta: Self::Meta, reply: &<Self::Codec as Codec>::Reply<'_>, latency_us: u64, stats: &mut Stats);
    /// The request got no reply (connection failed, or still unanswered at the end). The
    /// driver has already counted the error.
    fn lost(&mut self, conn: usize, meta: Self::Meta);
}

/// How long a run lasts: by time or by request count (after warmup).
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Duration(Duration),
    Requests(u64),
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub connections: usize,
    pub pipeline: usize,
    pub limit: Limit,
    /// Total requests per second across all connections: open loop. `None`: closed loop.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub drain: Duration,
    pub server_pid: Option<u32>,
}

pub struct LoadResult {
    pub stats: Stats,
    /// From the start of the measured phase to the last reply (or the end of the drain).
    pub elapsed: Duration,
    pub cpu: CpuReport,
    pub issued: u64,
    pub reconnects: u64,
    /// Open loop: the largest number of scheduled-but-unsent requests (no free slot).
    pub max_backlog: u64,
}

const TIMER: Token = Token(usize::MAX - 1);
const RECONNECT_AFTER: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(100);

/// Open-loop schedule: request `i` is due at `t0 + i / rate`.
pub struct Schedule {
    pub t0: Instant,
    pub interval_ns: f64,
}

impl Schedule {
    pub fn new(t0: Instant, rate: f64) -> Self {
        Schedule { t0, interval_ns: 1e9 / rate }
    }
    pub fn at(&self, i: u64) -> Instant {
        self.t0 + Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }
    /// How many requests are due by `now`.
    pub fn due(&self, now: Instant) -> u64 {
        let ns = now.saturating_duration_since(self.t0).as_nanos() as f64;
        (ns / self.interval_ns).floor() as u64 + 1
    }
}

/// Run the load and return the measured window's stats.
pub fn run<W: Workload>(spec: &LoadSpec, w: &mut W) -> Result<LoadResult, String> {
    if spec.connections == 0 || spec.pipeline == 0 {
        return Err("--connections and --pipeline must be at least 1".into());
    }
    if let Some(r) = spec.rate {
        if !(r > 0.0 && r.is_finite()) {
            return Err("--rate must be a positive number".into());
        }
    }
    crate::sys::tighten_timer_slack();
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut conns: Vec<Conn<W::Meta>> = Vec::with_capacity(spec.connections);
    for i in 0..spec.connections {
        conns
            .push(Conn::connect(spec.addr, poll.registry(), Token(i)).map_err(|e| format!("connect {} (connection {i}): {e}", spec.addr))?);
    }
    let timer = if spec.rate.is_some() { Some(Timer::new(poll.registry(), TIMER).map_err(|e| format!("timerfd: {e}"))?) } else { None };
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 256 * 1024];
    let mut dead_since: Vec<Option<Instant>> = vec![None; spec.connections];
    let reconnect_budget = 100 + 10 * spec.connections as u64;
    let mut reconnects = 0u64;
    let mut logged_kinds: Vec<&'static str> = Vec::new();

    let t0 = Instant::now();
    let schedule = spec.rate.map(|r| Schedule::new(t0, r));
    let mut stats = Stats::new();
    let mut measuring = spec.warmup.is_zero();
    let mut measure_start = t0;
    let mut cpu = CpuWindow::start(spec.server_pid);
    let mut issued_total = 0u64; // since t0, for the schedule
    let mut issued_measured = 0u64;
    let mut stopped_at: Option<Instant> = None;
    let mut last_completion = t0;
    let mut rr = 0usize;
    let mut max_backlog = 0u64;
    let mut timer_at: Option<Instant> = None;

    loop {
        let now = Instant::now();
        if !measuring && now >= t0 + spec.warmup {
            measuring = true;
            measure_start = now;
            stats = Stats::new();
            cpu = CpuWindow::start(spec.server_pid);
            issued_measured = 0;
        }
        if stopped_at.is_none() && measuring {
            let done = match spec.limit {
                Limit::Duration(d) => now >= measure_start + d,
                Limit::Requests(n) => issued_measured >= n,
            };
            if done {
                stopped_at = Some(now);
            }
        }
        let all_dead = conns.iter().all(|c| !c.is_open()) && reconnects >= reconnect_budget;
        if all_dead && stopped_at.is_none() {
            stats.error("all_connections_failed");
            stopped_at = Some(now);
        }

        // Reconnect failed connections (bounded).
        if stopped_at.is_none() {
            for (i, c) in conns.iter_mut().enumerate() {
                if let Some(t) = dead_since[i] {
                    if now >= t + RECONNECT_AFTER && reconnects < reconnect_budget {
                        reconnects += 1;
                        match c.reconnect(spec.addr, poll.registry()) {
                            Ok(()) => dead_since[i] = None,
                            Err(e) => {
                                dead_since[i] = Some(now);
                                stats.error("reconnect_failed");
                                log_once(&mut logged_kinds, "reconnect_failed", &e.to_string());
                            }
                        }
                    }
                }
            }
        }

        // Issue requests.
        if stopped_at.is_none() {
            let remaining = match spec.limit {
                Limit::Requests(n) if measuring => n.saturating_sub(issued_measured),
                _ => u64::MAX,
            };
            let mut budget = remaining;
            match &schedule {
                None => {
                    for (i, c) in conns.iter_mut().enumerate() {
                        while budget > 0 && c.is_open() && c.inflight.len() < spec.pipeline {
                            let Some(meta) = w.next(i, c.out()) else { break };
                            c.push(now, meta);
                            budget -= 1;
                            issued_total += 1;
                            if measuring {
                                issued_measured += 1;
                            }
                        }
                    }
                }
                Some(s) => {
                    let due = s.due(now);
                    let n = conns.len();
                    while issued_total < due && budget > 0 {
                        // Round-robin to the next connection with a free slot.
                        let mut picked = None;
                        for k in 0..n {
                            let i = (rr + k) % n;
                            let c = &mut conns[i];
                            if c.is_open() && c.inflight.len() < spec.pipeline {
                                if let Some(meta) = w.next(i, c.out()) {
                                    picked = Some((i, meta));
                                    break;
                                }
                            }
                        }
                        let Some((i, meta)) = picked else { break };
                        rr = (i + 1) % n;
                        conns[i].push(s.at(issued_total), meta);
                        budget -= 1;
                        issued_total += 1;
                        if measuring {
                            issued_measured += 1;
                        }
                    }
                    max_backlog = max_backlog.max(due.saturating_sub(issued_total));
                }
            }
        }

        // Write.
        for (i, c) in conns.iter_mut().enumerate() {
            if c.has_output() {
                if let Err(e) = c.flush() {
                    fail_conn(c, i, &e, w, &mut stats, &poll, &mut dead_since, now, &mut logged_kinds);
                }
            }
        }

        // Finished?
        let inflight: usize = conns.iter().map(|c| c.inflight.len()).sum();
        if let Some(stop) = stopped_at {
            if inflight == 0 {
                break;
            }
            if now >= stop + spec.drain {
                for (i, c) in conns.iter_mut().enumerate() {
                    for p in c.close(poll.registry()) {
                        stats.error("unanswered_at_end");
                        stats.completed += 1;
                        w.lost(i, p.meta);
                    }
                }
                last_completion = now;
                break;
            }
        }

        // Wait.
        let mut wake = now + POLL_MAX;
        if !measuring {
            wake = wake.min(t0 + spec.warmup);
        }
        if let (Limit::Duration(d), true, None) = (spec.limit, measuring, stopped_at) {
            wake = wake.min(measure_start + d);
        }
        if let Some(stop) = stopped_at {
            wake = wake.min(stop + spec.drain);
        }
        if dead_since.iter().any(Option::is_some) {
            wake = wake.min(now + RECONNECT_AFTER);
        }
        let mut timeout = wake.saturating_duration_since(now);
        if let (Some(s), Some(t), None) = (&schedule, &timer, stopped_at) {
            let next_due = s.at(issued_total);
            let any_free = conns.iter().any(|c| c.is_open() && c.inflight.len() < spec.pipeline);
            if any_free && next_due < wake {
                let d = next_due.saturating_duration_since(now);
                if d.is_zero() {
                    timeout = Duration::ZERO;
                } else {
                    // Re-arm only when the timer is not already set to fire by then.
                    if timer_at.is_none_or(|at| at <= now || at > next_due) {
                        t.arm(d);
                        timer_at = Some(next_due);
                    }
                    timeout = wake.saturating_duration_since(now).max(Duration::from_millis(1));
                }
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("epoll_wait: {e}"));
            }
        }
        for ev in events.iter() {
            let tok = ev.token();
            if tok == TIMER {
                if let Some(t) = &timer {
                    t.drain();
                }
                timer_at = None;
                continue;
            }
            let i = tok.0;
            if i >= conns.len() {
                continue;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                let stats_ref = &mut stats;
                let w_ref = &mut *w;
                let mut completed_any = false;
                let res = conns[i].read::<W::Codec>(&mut scratch, |p, reply, at| {
                    let lat = at.saturating_duration_since(p.start).as_micros() as u64;
                    stats_ref.completed += 1;
                    completed_any = true;
                    w_ref.reply(i, p.meta, reply, lat, stats_ref);
                });
                if completed_any {
                    last_completion = Instant::now();
                }
                if let Err(e) = res {
                    let now = Instant::now();
                    fail_conn(&mut conns[i], i, &e, w, &mut stats, &poll, &mut dead_since, now, &mut logged_kinds);
                    continue;
                }
            }
            if ev.is_writable() && conns[i].has_output() {
                if let Err(e) = conns[i].flush() {
                    let now = Instant::now();
                    fail_conn(&mut conns[i], i, &e, w, &mut stats, &poll, &mut dead_since, now, &mut logged_kinds);
                }
            }
        }
    }
    let cpu = cpu.finish();
    for c in conns.iter_mut() {
        c.close(poll.registry());
    }
    let elapsed = last_completion.max(stopped_at.unwrap_or(last_completion)).saturating_duration_since(measure_start);
    let elapsed = if elapsed.is_zero() { Instant::now().saturating_duration_since(measure_start) } else { elapsed };
    Ok(LoadResult { stats, elapsed, cpu, issued: issued_measured, reconnects, max_backlog })
}

#[allow(clippy::too_many_arguments)]
fn fail_conn<W: Workload>(
    c: &mut Conn<W::Meta>,
    i: usize,
    e: &crate::conn::ConnError,
    w: &mut W,
    stats: &mut Stats,
    poll: &Poll,
    dead_since: &mut [Option<Instant>],
    now: Instant,
    logged: &mut Vec<&'static str>,
) {
    log_once(logged, e.kind, &e.detail);
    let pending = c.close(poll.registry());
    if pending.is_empty() && e.kind == "conn_closed_by_peer" {
        // An idle keep-alive connection closed by the server: not a request failure.
        stats.outcome("conn_closed_idle");
    }
    for p in pending {
        stats.error(e.kind);
        stats.completed += 1;
        w.lost(i, p.meta);
    }
    dead_since[i] = Some(now);
}

fn log_once(logged: &mut Vec<&'static str>, kind: &'static str, detail: &str) {
    if !logged.contains(&kind) {
        logged.push(kind);
        eprintln!("starcite-bench: {kind}: {detail} (further {kind} errors are only counted)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_exact() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1000.0);
        assert_eq!(s.due(t0), 1);
        assert_eq!(s.due(t0 + Duration::from_micros(999)), 1);
        assert_eq!(s.due(t0 + Duration::from_millis(1)), 2);
        assert_eq!(s.due(t0 + Duration::from_secs(1)), 1001);
        assert_eq!(s.at(500), t0 + Duration::from_millis(500));
    }
}
