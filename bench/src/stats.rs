//! Measurements and results: latency histograms (hdrhistogram, µs), counters, errors by kind, verification violations, and the summary printed for a person and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::sys::CpuReport;

/// Highest latency recorded: one hour, in µs (larger values are clamped).
const HIST_MAX_US: u64 = 3_600_000_000;
/// Violation messages kept verbatim (counts are always complete).
const VIOLATION_SAMPLES_MAX: usize = 20;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// Counters and histograms of one measured window.
pub struct Stats {
    pub hists: BTreeMap<&'static str, Histogram<u64>>,
    /// Requests that got the answer the scenario wanted.
    pub ok: u64,
    /// Requests answered or lost in any way.
    pub completed: u64,
    pub errors: BTreeMap<String, u64>,
    /// Contract outcomes that are not errors (409 expected_seq_conflict, deduped, ...).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Every latency of the current second, all histograms together (the progress line
    /// and the JSON series; driver.rs `Progress` takes and resets it).
    pub second: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Stats { hists: BTreeMap::new(), ok: 0, completed: 0, errors: BTreeMap::new(), outcomes: BTreeMap::new(), second: new_hist() }
    }

    pub fn record_us(&mut self, name: &'static str, us: u64) {
        let us = us.clamp(1, HIST_MAX_US);
        self.hists.entry(name).or_insert_with(new_hist).saturating_record(us);
        self.second.saturating_record(us);
    }

    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }

    pub fn outcome(&mut self, kind: &'static str) {
        *self.outcomes.entry(kind).or_default() += 1;
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Data-contract violations (gaps, duplicates, wrong counts, dedupe failures). Never reset.
#[derive(Default, Debug, Clone, Serialize)]
pub struct Violations {
    pub counts: BTreeMap<String, u64>,
    pub samples: Vec<String>,
}

impl Violations {
    pub fn add(&mut self, kind: &str, message: impl FnOnce() -> String) {
        *self.counts.entry(kind.to_string()).or_default() += 1;
        if self.samples.len() < VIOLATION_SAMPLES_MAX {
            self.samples.push(format!("{kind}: {}", message()));
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn merge(&mut self, other: Violations) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        for s in other.samples {
            if self.samples.len() < VIOLATION_SAMPLES_MAX {
                self.samples.push(s);
            }
        }
    }
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        LatencySummary {
            count: h.len(),
            min: if h.is_empty() { 0 } else { h.min() },
            mean: if h.is_empty() { 0.0 } else { h.mean() },
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Everything a scenario reports.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub scenario: &'static str,
    pub params: Value,
    /// Seconds of the measured phase.
    pub elapsed_secs: f64,
    pub requests: u64,
    pub ok: u64,
    /// `ok` operations per second over the measured phase.
    pub throughput_ops_per_sec: f64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    pub outcomes: BTreeMap<String, u64>,
    /// Latency percentiles in µs, per histogram name.
    pub latency_us: BTreeMap<String, LatencySummary>,
    pub cpu: CpuReport,
    pub verification: Verification,
    /// Why the run stopped (`completed`, `interrupted`, `server_unreachable`).
    pub stopped: String,
    /// Open-loop runs: the schedule against what was done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_loop: Option<OpenLoop>,
    /// Per-second ok count, errors and latency of the measured phase.
    pub series: Vec<Second>,
    /// Every latency histogram in full: `[upper value µs, count]` per recorded bucket.
    pub latency_histogram_us: BTreeMap<String, Vec<(u64, u64)>>,
    /// When, where and with what the run was made.
    pub run: RunMeta,
    /// `--max-p99-ms` / `--min-ops` verdicts, when asked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<Threshold>,
    /// Scenario-specific numbers.
    pub extra: Map<String, Value>,
    /// Replaces the generic throughput line of the human summary when set.
    #[serde(skip)]
    pub headline: Option<String>,
}

/// An open-loop run's schedule against what was done (requests).
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    pub rate_per_sec: f64,
    pub scheduled: u64,
    pub sent: u64,
    pub answered: u64,
    /// Scheduled but never sent: the generator fell behind (exit status 4). Each counts
    /// in the latency from its scheduled time to the end of the run.
    pub missed: u64,
    pub behind_schedule: bool,
    /// The largest number of due-but-unsent requests at any moment.
    pub max_backlog: u64,
}

/// A pass/fail threshold and how the run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Threshold {
    pub name: String,
    pub limit: f64,
    pub actual: f64,
    pub passed: bool,
}

/// Facts about the run: timestamp, commit, host, versions.
#[derive(Debug, Clone, Serialize)]
pub struct RunMeta {
    /// Unix seconds when the summary was made.
    pub finished_unix_secs: u64,
    pub bench_version: &'static str,
    /// `git rev-parse HEAD` in the working directory (or $STARCITE_BENCH_GIT_COMMIT).
    pub git_commit: Option<String>,
    pub hostname: Option<String>,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
    pub cpus: usize,
    pub command_line: Vec<String>,
    /// The server's `starcite_build_info{version}` (read from its /metrics after the run).
    pub server_version: Option<String>,
}

impl RunMeta {
    pub fn collect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
        let git_commit = std::env::var("STARCITE_BENCH_GIT_COMMIT").ok().or_else(|| {
            let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        });
        let cpu_model = read("/proc/cpuinfo")
            .and_then(|c| c.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()));
        RunMeta {
            finished_unix_secs: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            bench_version: env!("CARGO_PKG_VERSION"),
            git_commit,
            hostname: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            command_line: std::env::args().collect(),
            server_version: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub performed: Vec<String>,
    pub passed: bool,
    pub violations_total: u64,
    pub violations: BTreeMap<String, u64>,
    pub samples: Vec<String>,
}

impl Verification {
    /// Nothing verified yet, nothing violated (what [`Verification::merge`] starts from).
    pub fn none() -> Self {
        Verification { performed: Vec::new(), passed: true, violations_total: 0, violations: BTreeMap::new(), samples: Vec::new() }
    }

    /// Fold in what a later run (`label`, e.g. a ramp step) verified: its violations add
    /// up, its samples follow (prefixed with `label`, at most `VIOLATION_SAMPLES_MAX` in
    /// all), and this passes only if both did.
    pub fn merge(&mut self, label: &str, other: &Verification) {
        self.passed &= other.passed;
        self.violations_total += other.violations_total;
        for (kind, n) in &other.violations {
            *self.violations.entry(kind.clone()).or_default() += n;
        }
        let room = VIOLATION_SAMPLES_MAX.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.iter().take(room).map(|s| format!("{label}: {s}")));
    }
}

impl Summary {
    /// Build from a measured window's stats.
    pub fn new(
        scenario: &'static str,
        params: &impl Serialize,
        stats: &Stats,
        elapsed_secs: f64,
        cpu: CpuReport,
        violations: &Violations,
        performed: Vec<String>,
    ) -> Self {
        let elapsed_secs = elapsed_secs.max(1e-9);
        Summary {
            scenario,
            params: serde_json::to_value(params).unwrap_or(Value::Null),
            elapsed_secs,
            requests: stats.completed,
            ok: stats.ok,
            throughput_ops_per_sec: stats.ok as f64 / elapsed_secs,
            errors_total: stats.errors_total(),
            errors: stats.errors.clone(),
            outcomes: stats.outcomes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            latency_us: stats.hists.iter().map(|(k, h)| (k.to_string(), LatencySummary::of(h))).collect(),
            cpu,
            verification: Verification {
                performed,
                passed: violations.total() == 0,
                violations_total: violations.total(),
                violations: violations.counts.clone(),
                samples: violations.samples.clone(),
            },
            stopped: "completed".into(),
            open_loop: None,
            series: Vec::new(),
            latency_histogram_us: stats
                .hists
                .iter()
                .map(|(k, h)| (k.to_string(), h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()))
                .collect(),
            run: RunMeta::collect(),
            thresholds: Vec::new(),
            extra: Map::new(),
            headline: None,
        }
    }

    /// Judge the run against `--max-p99-ms` (the worst p99 of its histograms) and
    /// `--min-ops` (its ok throughput).
    pub fn judge(&mut self, max_p99_ms: Option<f64>, min_ops: Option<f64>) {
        if let Some(limit) = max_p99_ms {
            let actual = self.latency_us.values().map(|l| l.p99).max().unwrap_or(0) as f64 / 1000.0;
            self.thresholds.push(Threshold { name: "max_p99_ms".into(), limit, actual, passed: actual <= limit });
        }
        if let Some(limit) = min_ops {
            let actual = self.throughput_ops_per_sec;
            self.thresholds.push(Threshold { name: "min_ops".into(), limit, actual, passed: actual >= limit });
        }
    }

    pub fn thresholds_passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.passed)
    }

    pub fn extra(&mut self, key: &str, value: impl Serialize) {
        self.extra.insert(key.to_string(), serde_json::to_value(value).unwrap_or(Value::Null));
    }

    /// The human summary.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        line(format!("== starcite-bench {} ==", self.scenario));
        line(format!("params      {}", compact(&self.params)));
        line(format!(
            "run         commit {}, {} cpus, {}",
            self.run.git_commit.as_deref().unwrap_or("unknown"),
            self.run.cpus,
            self.run.cpu_model.as_deref().unwrap_or("cpu unknown")
        ));
        if self.stopped != "completed" {
            line(format!("STOPPED     {}", self.stopped));
        }
        if let Some(o) = &self.open_loop {
            line(format!(
                "schedule    {:.0}/s: {} scheduled, {} sent, {} answered, {} never sent{}",
                o.rate_per_sec,
                o.scheduled,
                o.sent,
                o.answered,
                o.missed,
                if o.behind_schedule {
                    " — BEHIND SCHEDULE: the generator could not keep up; missed sends count in the latency from their scheduled time"
                } else {
                    ""
                }
            ));
        }
        match &self.headline {
            Some(h) => line(format!("throughput  {h}")),
            None => line(format!(
                "throughput  {:.1} ops/s  ({} ok of {} requests in {:.3} s)",
                self.throughput_ops_per_sec, self.ok, self.requests, self.elapsed_secs
            )),
        }
        if self.errors.is_empty() {
            line("errors      none".into());
        } else {
            let parts: Vec<String> = self.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            line(format!("errors      {} ({})", self.errors_total, parts.join(", ")));
        }
        if !self.outcomes.is_empty() {
            let parts: Vec<String> = self.outcomes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            line(format!("outcomes    {}", parts.join(", ")));
        }
        if !self.latency_us.is_empty() {
            line(format!(
                "latency µs  {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
                "", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
            ));
            for (name, l) in &self.latency_us {
                line(format!(
                    "            {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10.1}",
                    name, l.count, l.p50, l.p90, l.p99, l.p999, l.max, l.mean
                ));
            }
        }
        let mut cpu = format!(
            "bench cpu   {:.3} s ({:.3} user + {:.3} sys) = {:.1}% of one core over {:.3} s wall",
            self.cpu.cpu_secs, self.cpu.user_secs, self.cpu.sys_secs, self.cpu.cpu_percent, self.cpu.wall_secs
        );
        if let (Some(secs), Some(pct)) = (self.cpu.server_cpu_secs, self.cpu.server_cpu_percent) {
            cpu.push_str(&format!("\nserver cpu  {secs:.3} s = {pct:.1}% of one core"));
        }
        if let (Some(secs), Some(pct)) = (self.cpu.machine_cpu_secs, self.cpu.machine_cpu_percent) {
            cpu.push_str(&format!("\nmachine cpu {secs:.3} s = {pct:.1}% of one core (every process and kernel thread)"));
        }
        line(cpu);
        for (k, v) in &self.extra {
            match v {
                Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
                    line(format!("{k}:"));
                    for item in items {
                        line(format!("            {}", compact(item)));
                    }
                }
                Value::Number(n) if n.is_f64() => line(format!("{:<11} {:.3}", k, n.as_f64().unwrap_or_default())),
                _ => line(format!("{:<11} {}", k, compact(v))),
            }
        }
        for t in &self.thresholds {
            line(format!("threshold   {} {}: limit {} actual {:.3}", if t.passed { "PASS" } else { "FAIL" }, t.name, t.limit, t.actual));
        }
        let v = &self.verification;
        if v.passed {
            line(format!("verified    OK ({})", if v.performed.is_empty() { "nothing to verify".into() } else { v.performed.join("; ") }));
        } else {
            let parts: Vec<String> = v.violations.iter().map(|(k, n)| format!("{k}={n}")).collect();
            line(format!("verified    FAILED: {} violations ({})", v.violations_total, parts.join(", ")));
            for sample in &v.samples {
                line(format!("            - {sample}"));
            }
        }
        s
    }

    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| format!("serialise result: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))
    }
}

fn compact(v: &Value) -> String {
    let t = v.to_string();
    if t.len() > 400 {
        format!("{}…", &t[..t.char_indices().take_while(|(i, _)| *i < 400).last().map_or(0, |(i, _)| i)])
    } else {
        t
    }
}

/// One second of the measured phase (live progress and the JSON time series).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Second {
    /// Seconds since the measured phase began (end of this interval).
    pub t: f64,
    pub ok: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifications_merge_so_that_one_failure_fails_them_all() {
        let ok = Verification::none();
        let mut bad = ok.clone();
        bad.passed = false;
        bad.violations_total = 2;
        bad.violations.insert("tail_incomplete".into(), 2);
        bad.samples.push("tail_incomplete: session s-1".into());
        let mut all = ok.clone();
        all.merge("step 1", &ok);
        all.merge("step 2", &bad);
        all.merge("step 3", &ok);
        assert!(!all.passed);
        assert_eq!((all.violations_total, all.violations["tail_incomplete"]), (2, 2));
        assert_eq!(all.samples, vec!["step 2: tail_incomplete: session s-1".to_string()]);
    }

    #[test]
    fn summary_renders_and_serialises() {
        let mut st = Stats::new();
        for i in 1..=1000 {
            st.record_us("append", i);
        }
        st.ok = 1000;
        st.completed = 1001;
        st.error("http_503");
        let mut v = Violations::default();
        v.add("gap", || "session s: expected 3 got 5".into());
        let cpu = crate::sys::CpuWindow::start(None).finish();
        let s = Summary::new("append", &serde_json::json!({"c": 1}), &st, 2.0, cpu, &v, vec!["x".into()]);
        assert_eq!(s.throughput_ops_per_sec, 500.0);
        let l = &s.latency_us["append"];
        assert!((499..=501).contains(&l.p50) && l.max >= 1000 && l.p999 >= 998);
        let text = s.render();
        assert!(text.contains("FAILED") && text.contains("http_503=1"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["verification"]["passed"], false);
        assert_eq!(json["errors"]["http_503"], 1);
    }
}
