//! The single-threaded load loop shared by the request/response scenarios: C pipelined connections with up to D requests each in flight, closed-loop or open-loop (fixed schedule, latency from the scheduled send time), warmup, bounded drain, bounded reconnects.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::conn::{Codec, Conn};
use crate::stats::{OpenLoop, Second, Stats, Summary};
use crate::sys::{CpuReport, CpuWindow};
use crate::timer::Timer;

/// What a scenario plugs into the loop.
pub trait Workload {
    type Codec: Codec;
    type Meta;
    /// The histogram an open-loop run's missed sends are counted in (scheduled, never
    /// sent: their latency is at least the time from their schedule to the run's end).
    const HIST: &'static str;
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
    /// Print a progress line on stderr every second.
    pub progress: bool,
}

/// The per-second series, printed live on stderr when asked.
pub struct Progress {
    print: bool,
    start: Option<Instant>,
    next: Option<Instant>,
    last_ok: u64,
    last_errors: u64,
    series: Vec<Second>,
}

impl Progress {
    pub fn new(print: bool) -> Self {
        Progress { print, start: None, next: None, last_ok: 0, last_errors: 0, series: Vec::new() }
    }

    pub fn start(&mut self, now: Instant) {
        self.start = Some(now);
        self.next = Some(now + Duration::from_secs(1));
        self.last_ok = 0;
        self.last_errors = 0;
        self.series.clear();
    }

    /// Close every whole second that has passed.
    pub fn tick(&mut self, now: Instant, stats: &mut Stats) {
        while let Some(next) = self.next.filter(|n| now >= *n) {
            self.close(next, stats);
            self.next = Some(next + Duration::from_secs(1));
        }
    }

    fn close(&mut self, at: Instant, stats: &mut Stats) {
        let Some(start) = self.start else { return };
        let errors = stats.errors_total();
        let h = std::mem::replace(&mut stats.second, crate::stats::new_hist());
        let sec = Second {
            t: at.saturating_duration_since(start).as_secs_f64(),
            ok: stats.ok - self.last_ok,
            errors: errors - self.last_errors,
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        };
        self.last_ok = stats.ok;
        self.last_errors = errors;
        if self.print {
            let total_p99 = stats.hists.values().map(|h| h.value_at_quantile(0.99)).max().unwrap_or(0);
            eprintln!(
                "[{:>5.0}s] {:>9} ok/s  {:>6} errors  p99 {:>8} µs this second, {:>8} µs so far",
                sec.t, sec.ok, sec.errors, sec.p99_us, total_p99
            );
        }
        self.series.push(sec);
    }

    /// The series, with the last partial second closed when it holds anything.
    pub fn finish(mut self, now: Instant, stats: &mut Stats) -> Vec<Second> {
        if self.start.is_some() && (stats.ok > self.last_ok || stats.errors_total() > self.last_errors) {
            self.close(now, stats);
        }
        self.series
    }
}

/// Why the load stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The duration or request count was reached.
    Completed,
    /// SIGINT or SIGTERM (Ctrl-C): what was measured so far is reported.
    Interrupted,
    /// Every connection failed and reconnecting did not help (the server died?).
    ServerUnreachable,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Completed => "completed",
            StopReason::Interrupted => "interrupted (SIGINT/SIGTERM): partial results",
            StopReason::ServerUnreachable => "server unreachable: every connection failed (partial results)",
        }
    }
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
    /// Open loop: requests the schedule asked for during the measured phase.
    pub scheduled: Option<u64>,
    /// Open loop: scheduled requests never sent (the generator fell behind). Each is
    /// counted in the latency histogram `Workload::HIST` from its scheduled time.
    pub missed: u64,
    pub stop: StopReason,
    pub series: Vec<Second>,
}

impl LoadResult {
    /// Into `sum`, what the load loop reports beyond the stats: stop reason, series, the open-loop
    /// schedule, issued requests and reconnects, outcomes left unknown.
    pub fn report(&self, sum: &mut Summary, rate: Option<f64>, unknown_outcomes: u64) {
        sum.stopped = self.stop.describe().to_string();
        sum.series = self.series.clone();
        if let (Some(rate_per_sec), Some(scheduled)) = (rate, self.scheduled) {
            sum.open_loop = Some(OpenLoop {
                rate_per_sec,
                scheduled,
                sent: self.issued,
                answered: self.stats.completed,
                missed: self.missed,
                behind_schedule: self.missed > 0,
                max_backlog: self.max_backlog,
            });
        }
        sum.extra("requests_issued", self.issued);
        sum.extra("reconnects", self.reconnects);
        sum.extra("unknown_outcomes", unknown_outcomes);
    }
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

    /// How many requests are scheduled strictly before `end` (the measured phase's end:
    /// a request due at that instant belongs to no run).
    pub fn due_before(&self, end: Instant) -> u64 {
        let ns = end.saturating_duration_since(self.t0).as_nanos() as f64;
        (ns / self.interval_ns).ceil() as u64
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
    let mut issued_before_measure = 0u64;
    let mut stop_reason = StopReason::Completed;
    let mut progress = Progress::new(spec.progress);
    if measuring {
        progress.start(t0);
    }

    loop {
        let now = Instant::now();
        if !measuring && now >= t0 + spec.warmup {
            measuring = true;
            measure_start = now;
            stats = Stats::new();
            cpu = CpuWindow::start(spec.server_pid);
            issued_measured = 0;
            issued_before_measure = issued_total;
            progress.start(now);
        }
        if measuring && stopped_at.is_none() {
            progress.tick(now, &mut stats);
        }
        if stopped_at.is_none() && crate::sys::interrupted() {
            stop_reason = StopReason::Interrupted;
            stopped_at = Some(now);
        }
        // The open loop issues what fell due before the stop in the iteration that stops.
        let mut last_issue = false;
        if stopped_at.is_none() && measuring {
            let done = match spec.limit {
                Limit::Duration(d) => now >= measure_start + d,
                Limit::Requests(n) => issued_measured >= n,
            };
            if done {
                stopped_at = Some(now);
                last_issue = schedule.is_some();
            }
        }
        let all_dead = conns.iter().all(|c| !c.is_open()) && reconnects >= reconnect_budget;
        if all_dead && stopped_at.is_none() {
            stats.error("all_connections_failed");
            stop_reason = StopReason::ServerUnreachable;
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
        if stopped_at.is_none() || last_issue {
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
                    // Nothing is scheduled past the measured phase's end.
                    // Nothing is scheduled at or past the measured phase's end.
                    let due = match spec.limit {
                        Limit::Duration(d) if measuring => s.due(now).min(s.due_before(measure_start + d)),
                        _ => s.due(now),
                    };
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
    // Open loop: what the schedule asked for while measuring, and what was never sent.
    // A request never sent waited at least from its scheduled time to the stop: counting
    // it there keeps the percentiles honest (no coordinated omission).
    let stop = stopped_at.unwrap_or(last_completion);
    let (scheduled, missed) = match &schedule {
        Some(s) if measuring => {
            let due = match spec.limit {
                Limit::Duration(d) => s.due_before(measure_start + d),
                Limit::Requests(n) => issued_before_measure + n,
            };
            let missed = due.saturating_sub(issued_total);
            for i in issued_total..due {
                stats.record_us(W::HIST, stop.saturating_duration_since(s.at(i)).as_micros() as u64);
            }
            (Some(due.saturating_sub(issued_before_measure)), missed)
        }
        _ => (None, 0),
    };
    let elapsed = last_completion.max(stop).saturating_duration_since(measure_start);
    let elapsed = if elapsed.is_zero() { Instant::now().saturating_duration_since(measure_start) } else { elapsed };
    let series = progress.finish(Instant::now(), &mut stats);
    Ok(LoadResult { stats, elapsed, cpu, issued: issued_measured, reconnects, max_backlog, scheduled, missed, stop: stop_reason, series })
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
        assert_eq!(s.due_before(t0 + Duration::from_secs(1)), 1000, "the request due at the end belongs to no run");
        assert_eq!(s.due_before(t0 + Duration::from_micros(1500)), 2);
    }
}
