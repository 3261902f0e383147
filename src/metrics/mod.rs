//! Metrics: per-core counters and histograms (plain `Cell`s, no atomics on the hot path),
//! copied from every core at scrape time, merged, and encoded with the prometheus crate's
//! text encoder (exposition format 0.0.4). Label sets are bounded: route labels are a
//! fixed list, statuses are grouped by class, and no label ever carries a session id.

pub mod histogram;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use prometheus::proto::{Bucket, Counter as ProtoCounter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use histogram::{LocalHistogram, COUNT_BOUNDS, DURATION_MS_BOUNDS, LATENCY_MICROS_BOUNDS};

/// A per-core count or level (plain `Cell`: one core owns it; no atomics on the hot path).
#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.set(self.0.get() + n);
    }

    /// For levels (open connections): never below zero.
    pub fn dec(&self) {
        self.0.set(self.0.get().saturating_sub(1));
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }

    /// For levels computed elsewhere (segment files).
    pub fn set(&self, n: u64) {
        self.0.set(n);
    }
}

/// Declares a set of scalar metrics once. From one table (field, Prometheus type, name,
/// help) it generates the live per-core struct of [`Counter`]s, its snapshot (sent to the
/// scraping core), the merge of snapshots, their exposition, and the list of names — so
/// adding a metric is one line here plus the place that counts it.
macro_rules! scalar_metrics {
    ($(#[$doc:meta])* $live:ident => $snapshot:ident { $( $field:ident : $kind:ident = $name:literal, $help:literal; )* }) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $live {
            $(#[doc = $help] pub $field: $crate::metrics::Counter,)*
        }

        /// A copy of the live values, for a scrape.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $snapshot {
            $(#[doc = $help] pub $field: u64,)*
        }

        impl $live {
            pub fn snapshot(&self) -> $snapshot {
                $snapshot { $($field: self.$field.get(),)* }
            }
        }

        impl $snapshot {
            /// Every metric name of this table.
            pub const NAMES: &'static [&'static str] = &[$($name,)*];

            /// Add another core's values (counters sum; levels sum to the node's level).
            pub fn merge(&mut self, other: &$snapshot) {
                $(self.$field += other.$field;)*
            }

            pub fn families(&self) -> Vec<prometheus::proto::MetricFamily> {
                vec![$($crate::metrics::scalar(prometheus::proto::MetricType::$kind, $name, $help, self.$field as f64),)*]
            }
        }
    };
}

scalar_metrics! {
    /// The scalar metrics of one core's front and shards.
    CoreCounters => CoreCounterValues {
        events_appended: COUNTER = "starcite_events_append_total", "Events appended (committed, not deduped).";
        payload_bytes: COUNTER = "starcite_events_payload_bytes", "Bytes of the appended payloads' JSON encoding.";
        deduped: COUNTER = "starcite_events_deduped_total", "Appends answered from idempotency memory.";
        open_connections: GAUGE = "starcite_open_connections", "Open client connections.";
        refused_connections: COUNTER = "starcite_refused_connections_total", "Connections refused at the per-core limit.";
        open_tails: GAUGE = "starcite_open_tails", "Open WebSocket and SSE tails.";
        tail_events_sent: COUNTER = "starcite_tail_events_sent_total", "Events delivered to tails.";
        tail_mirror_reads: COUNTER = "starcite_tail_mirror_reads_total", "Tail reads served from the local mirror (tail source ets).";
        sessions: GAUGE = "starcite_sessions", "Sessions hosted by this node's shards (computed at scrape time).";
        hot_tail_events: GAUGE = "starcite_archive_tail_size", "Events held in the in-memory hot tail (computed at scrape time).";
        executor_stalls: COUNTER = "starcite_executor_stalls_total", "Times a task ran past the executor's stall threshold (glommio stall detector).";
        cluster_rejections: COUNTER = "starcite_cluster_handshake_rejections_total", "Cluster connections refused: failed authentication, wrong shard count or protocol, garbage, or too slow.";
        allocations: COUNTER = "starcite_allocations_total", "Heap allocations (and reallocations) made by the executor threads (counted by the global allocator, src/alloc.rs; computed at scrape time).";
        cluster_bytes_sent: COUNTER = "starcite_cluster_bytes_sent_total", "Bytes written to cluster connections (both directions' frames this node sent; computed at scrape time).";
        raft_groups_under_replicated: GAUGE = "starcite_raft_groups_under_replicated", "Raft groups this node leads whose voters are not all current, connected replicas, or that are mid-change (computed at scrape time).";
        archive_pending_rows: GAUGE = "starcite_archive_pending_rows", "Committed rows waiting for the archive, in the shards this node leads (computed at scrape time; 0 with the archive off).";
        archive_pending_sessions: GAUGE = "starcite_archive_pending_sessions", "Sessions with rows waiting for the archive, in the shards this node leads (computed at scrape time).";
        archive_lag: GAUGE = "starcite_archive_lag", "Committed-but-unarchived events summed over the sessions of the shards this node leads (computed at scrape time).";
        archive_attempted: COUNTER = "starcite_archive_attempted_total", "Rows sent to Postgres (a row sent again after a failure counts again).";
        archive_inserted: COUNTER = "starcite_archive_inserted_total", "Rows Postgres newly stored (rows it already had are confirmed but not counted).";
        archive_bytes_attempted: COUNTER = "starcite_archive_bytes_attempted_total", "Bytes of event JSON sent to Postgres.";
        archive_bytes_inserted: COUNTER = "starcite_archive_bytes_inserted_total", "Bytes of event JSON Postgres newly stored.";
        archive_trimmed: COUNTER = "starcite_archive_trimmed_total", "Events trimmed from this node's hot tier after the archive confirmed them, since it started (computed at scrape time).";
    }
}

/// The metric names SPEC §3 requires, in one place: the exposition test and the live
/// node's test both check every one of them by exact name.
pub const REQUIRED_METRICS: &[&str] = &[
    "starcite_events_append_total",
    "starcite_events_payload_bytes",
    "starcite_archive_pending_rows",
    "starcite_archive_pending_sessions",
    "starcite_archive_flush_duration_ms",
    "starcite_archive_attempted_total",
    "starcite_archive_inserted_total",
    "starcite_archive_bytes_attempted_total",
    "starcite_archive_bytes_inserted_total",
    "starcite_archive_lag",
    "starcite_archive_tail_size",
    "starcite_archive_trimmed_total",
];

/// Live metrics of one core: the scalar table plus histograms and labelled counts.
#[derive(Debug)]
pub struct CoreMetrics {
    pub counters: CoreCounters,
    pub append_micros: RefCell<LocalHistogram>,
    /// One archive flush cycle of this core (runtime/archiver.rs), milliseconds.
    pub archive_flush_ms: RefCell<LocalHistogram>,
    /// (route label, status class "2xx"…) → count.
    pub http_requests: RefCell<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics {
            counters: CoreCounters::default(),
            append_micros: RefCell::new(LocalHistogram::new(LATENCY_MICROS_BOUNDS)),
            archive_flush_ms: RefCell::new(LocalHistogram::new(DURATION_MS_BOUNDS)),
            http_requests: RefCell::new(BTreeMap::new()),
        }
    }
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl CoreMetrics {
    pub fn count_request(&self, route: &'static str, status: u16) {
        *self.http_requests.borrow_mut().entry((route, status_class(status))).or_insert(0) += 1;
    }
}

/// Raft state of one shard hosted here.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub shard: u32,
    pub is_leader: bool,
    pub has_leader: bool,
    pub term: u64,
}

/// The log engine's histograms, copied for a scrape (its scalar table travels beside).
#[derive(Debug, Clone)]
pub struct LogHistograms {
    pub fsync_micros: LocalHistogram,
    pub batch_records: LocalHistogram,
}

impl Default for LogHistograms {
    fn default() -> Self {
        LogHistograms { fsync_micros: LocalHistogram::new(LATENCY_MICROS_BOUNDS), batch_records: LocalHistogram::new(COUNT_BOUNDS) }
    }
}

scalar_metrics! {
    /// The scalar metrics of one core's log engine (log/engine.rs counts them).
    LogCounters => LogCounterValues {
        records: COUNTER = "starcite_log_records_total", "Records written to the log.";
        bytes_written: COUNTER = "starcite_log_bytes_written_total", "Bytes written to segment files (whole blocks).";
        batches: COUNTER = "starcite_log_batches_total", "Group commits (one write and one fdatasync per touched segment).";
        fsyncs: COUNTER = "starcite_log_fsyncs_total", "fdatasync calls.";
        segments: GAUGE = "starcite_log_segments", "Segment files of the log, spares created ahead of the writer included.";
        segments_deleted: COUNTER = "starcite_log_segments_deleted_total", "Segments deleted because every shard had purged past them (archive on).";
        snapshots_built: COUNTER = "starcite_raft_snapshots_built_total", "Snapshots the compactor had built to purge a shard's log.";
        purges: COUNTER = "starcite_raft_log_purges_total", "Log purges the compactor asked for (each up to a snapshot and below every event only the log holds).";
    }
}

/// A copy of one core's metrics, sent across cores for a scrape.
#[derive(Debug, Clone)]
pub struct CoreStats {
    pub core: usize,
    pub counters: CoreCounterValues,
    pub log: LogCounterValues,
    pub append_micros: LocalHistogram,
    pub archive_flush_ms: LocalHistogram,
    pub log_histograms: LogHistograms,
    pub http_requests: BTreeMap<(&'static str, &'static str), u64>,
    pub shards: Vec<ShardStats>,
}

impl CoreStats {
    pub fn empty(core: usize) -> Self {
        CoreStats {
            core,
            counters: CoreCounterValues::default(),
            log: LogCounterValues::default(),
            append_micros: LocalHistogram::new(LATENCY_MICROS_BOUNDS),
            archive_flush_ms: LocalHistogram::new(DURATION_MS_BOUNDS),
            log_histograms: LogHistograms::default(),
            http_requests: BTreeMap::new(),
            shards: Vec::new(),
        }
    }
}

fn labels(pairs: &[(&str, String)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.clone());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

/// One unlabelled counter or gauge family.
pub fn scalar(kind: MetricType, name: &str, help: &str, value: f64) -> MetricFamily {
    let metric = match kind {
        MetricType::COUNTER => {
            let mut c = ProtoCounter::default();
            c.set_value(value);
            let mut m = Metric::default();
            m.set_counter(c);
            m
        }
        _ => gauge_metric(value, &[]),
    };
    family(name, help, kind, vec![metric])
}

fn gauge_metric(value: f64, label_pairs: &[(&str, String)]) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels(label_pairs));
    m
}

/// `scale` converts the histogram's unit to the exposed one (µs → s is 1e-6).
fn histogram(name: &str, help: &str, h: &LocalHistogram, scale: f64) -> MetricFamily {
    let mut out = Histogram::default();
    let mut cumulative = 0;
    let mut buckets = Vec::new();
    for (bound, count) in h.bounds.iter().zip(&h.counts) {
        cumulative += count;
        let mut b = Bucket::default();
        b.set_upper_bound(bound * scale);
        b.set_cumulative_count(cumulative);
        buckets.push(b);
    }
    out.set_bucket(buckets);
    out.set_sample_count(h.count);
    out.set_sample_sum(h.sum * scale);
    let mut m = Metric::default();
    m.set_histogram(out);
    family(name, help, MetricType::HISTOGRAM, vec![m])
}

/// Render every core's stats as one Prometheus text exposition.
pub fn render(cores: &[CoreStats]) -> String {
    let mut total = CoreStats::empty(0);
    let mut shards = Vec::new();
    for c in cores {
        total.counters.merge(&c.counters);
        total.log.merge(&c.log);
        total.append_micros.merge(&c.append_micros);
        total.archive_flush_ms.merge(&c.archive_flush_ms);
        total.log_histograms.fsync_micros.merge(&c.log_histograms.fsync_micros);
        total.log_histograms.batch_records.merge(&c.log_histograms.batch_records);
        for (k, v) in &c.http_requests {
            *total.http_requests.entry(*k).or_insert(0) += v;
        }
        shards.extend(c.shards.iter().cloned());
    }
    let t = &total;
    let mut families = t.counters.families();
    families.extend(t.log.families());
    families.extend([
        histogram(
            "starcite_archive_flush_duration_ms",
            "One archive flush cycle (batches sent and confirmed, watermarks proposed), milliseconds.",
            &t.archive_flush_ms,
            1.0,
        ),
        histogram("starcite_append_duration_seconds", "Append latency on the owner core, propose to commit+apply.", &t.append_micros, 1e-6),
        histogram(
            "starcite_log_fsync_duration_seconds",
            "fdatasync latency of the group-commit writer.",
            &t.log_histograms.fsync_micros,
            1e-6,
        ),
        histogram(
            "starcite_log_commit_batch_records",
            "Records per group commit (one write + fdatasync).",
            &t.log_histograms.batch_records,
            1.0,
        ),
    ]);
    let requests: Vec<Metric> = t
        .http_requests
        .iter()
        .map(|((route, class), n)| {
            let mut c = ProtoCounter::default();
            c.set_value(*n as f64);
            let mut m = Metric::default();
            m.set_counter(c);
            m.set_label(labels(&[("route", route.to_string()), ("status", class.to_string())]));
            m
        })
        .collect();
    families.push(family("starcite_http_requests_total", "HTTP requests by route and status class.", MetricType::COUNTER, requests));
    // The usual Prometheus build-info gauge: load generators and dashboards name the version.
    let build = vec![gauge_metric(1.0, &[("version", env!("CARGO_PKG_VERSION").to_string())])];
    families.push(family("starcite_build_info", "Always 1; the label names this server's version.", MetricType::GAUGE, build));
    shards.sort_by_key(|s| s.shard);
    let leaders = shards.iter().map(|s| gauge_metric(if s.is_leader { 1.0 } else { 0.0 }, &[("shard", s.shard.to_string())])).collect();
    families.push(family("starcite_raft_is_leader", "1 when this node leads the shard's Raft group.", MetricType::GAUGE, leaders));
    let terms = shards.iter().map(|s| gauge_metric(s.term as f64, &[("shard", s.shard.to_string())])).collect();
    families.push(family("starcite_raft_term", "Current Raft term per shard.", MetricType::GAUGE, terms));
    // The text encoder refuses empty families (e.g. no requests yet): leave them out.
    families.retain(|f| !f.get_metric().is_empty());
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out).expect("text encoding cannot fail");
    String::from_utf8(out).expect("text exposition is UTF-8")
}

/// Parse a text exposition into (series, value): the series is the metric name with its
/// labels exactly as printed (`name{k="v"}`), so checks match whole names, never
/// substrings (`_total 1` must not match `_total 10`).
pub fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Whether a family named `name` has a sample (histograms count through `_count`).
pub fn has_family(samples: &BTreeMap<String, f64>, name: &str) -> bool {
    samples.keys().any(|series| {
        let base = series.split('{').next().unwrap_or(series);
        base == name || base == format!("{name}_count")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_required_metric_and_merges_cores() {
        let mut a = CoreStats::empty(0);
        a.counters.events_appended = 3;
        a.http_requests.insert(("append", "2xx"), 3);
        let mut b = CoreStats::empty(1);
        b.counters.events_appended = 4;
        b.http_requests.insert(("append", "2xx"), 4);
        b.log.fsyncs = 2;
        let samples = parse_exposition(&render(&[a, b]));
        for name in REQUIRED_METRICS.iter().chain(CoreCounterValues::NAMES).chain(LogCounterValues::NAMES) {
            assert!(has_family(&samples, name), "missing {name} in {samples:?}");
        }
        assert_eq!(samples.get("starcite_events_append_total"), Some(&7.0));
        assert_eq!(samples.get("starcite_log_fsyncs_total"), Some(&2.0));
        assert_eq!(samples.get("starcite_http_requests_total{route=\"append\",status=\"2xx\"}"), Some(&7.0));
    }

    #[test]
    fn counter_levels_never_go_below_zero() {
        let c = Counter::default();
        c.inc();
        c.dec();
        c.dec();
        assert_eq!(c.get(), 0);
    }
}
