//! Metrics: per-core counters and histograms (plain `Cell`s, no atomics on the hot path),
//! copied from every core at scrape time, merged, and encoded with the prometheus crate's
//! text encoder (exposition format 0.0.4). Label sets are bounded: route labels are a
//! fixed list, statuses are grouped by class, and no label ever carries a session id.

pub mod histogram;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use histogram::{LocalHistogram, COUNT_BOUNDS, LATENCY_MICROS_BOUNDS};

/// Live metrics of one core.
#[derive(Debug)]
pub struct CoreMetrics {
    pub events_appended: Cell<u64>,
    pub payload_bytes: Cell<u64>,
    pub deduped: Cell<u64>,
    pub append_micros: RefCell<LocalHistogram>,
    /// (route label, status class "2xx"…) → count.
    pub http_requests: RefCell<BTreeMap<(&'static str, &'static str), u64>>,
    pub open_connections: Cell<u64>,
    pub refused_connections: Cell<u64>,
    pub open_tails: Cell<u64>,
    pub tail_events_sent: Cell<u64>,
    /// Tail reads served from this core's mirror (`STARCITE_TAIL_SOURCE=ets`).
    pub tail_mirror_reads: Cell<u64>,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics {
            events_appended: Cell::new(0),
            payload_bytes: Cell::new(0),
            deduped: Cell::new(0),
            append_micros: RefCell::new(LocalHistogram::new(LATENCY_MICROS_BOUNDS)),
            http_requests: RefCell::new(BTreeMap::new()),
            open_connections: Cell::new(0),
            refused_connections: Cell::new(0),
            open_tails: Cell::new(0),
            tail_events_sent: Cell::new(0),
            tail_mirror_reads: Cell::new(0),
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

/// A copy of one core's metrics, sent across cores for a scrape.
#[derive(Debug, Clone)]
pub struct CoreStats {
    pub core: usize,
    pub events_appended: u64,
    pub payload_bytes: u64,
    pub deduped: u64,
    pub append_micros: LocalHistogram,
    pub http_requests: BTreeMap<(&'static str, &'static str), u64>,
    pub open_connections: u64,
    pub refused_connections: u64,
    pub open_tails: u64,
    pub tail_events_sent: u64,
    pub tail_mirror_reads: u64,
    pub log_records: u64,
    pub log_bytes_written: u64,
    pub log_batches: u64,
    pub log_fsyncs: u64,
    pub fsync_micros: LocalHistogram,
    pub batch_records: LocalHistogram,
    pub shards: Vec<ShardStats>,
    pub sessions: u64,
    pub hot_tail_events: u64,
}

impl CoreStats {
    pub fn empty(core: usize) -> Self {
        CoreStats {
            core,
            events_appended: 0,
            payload_bytes: 0,
            deduped: 0,
            append_micros: LocalHistogram::new(LATENCY_MICROS_BOUNDS),
            http_requests: BTreeMap::new(),
            open_connections: 0,
            refused_connections: 0,
            open_tails: 0,
            tail_events_sent: 0,
            tail_mirror_reads: 0,
            log_records: 0,
            log_bytes_written: 0,
            log_batches: 0,
            log_fsyncs: 0,
            fsync_micros: LocalHistogram::new(LATENCY_MICROS_BOUNDS),
            batch_records: LocalHistogram::new(COUNT_BOUNDS),
            shards: Vec::new(),
            sessions: 0,
            hot_tail_events: 0,
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

fn counter(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::default();
    m.set_counter(c);
    family(name, help, MetricType::COUNTER, vec![m])
}

fn gauge_metric(value: f64, label_pairs: &[(&str, String)]) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels(label_pairs));
    m
}

fn gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    family(name, help, MetricType::GAUGE, vec![gauge_metric(value, &[])])
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
        total.events_appended += c.events_appended;
        total.payload_bytes += c.payload_bytes;
        total.deduped += c.deduped;
        total.append_micros.merge(&c.append_micros);
        for (k, v) in &c.http_requests {
            *total.http_requests.entry(*k).or_insert(0) += v;
        }
        total.open_connections += c.open_connections;
        total.refused_connections += c.refused_connections;
        total.open_tails += c.open_tails;
        total.tail_events_sent += c.tail_events_sent;
        total.tail_mirror_reads += c.tail_mirror_reads;
        total.log_records += c.log_records;
        total.log_bytes_written += c.log_bytes_written;
        total.log_batches += c.log_batches;
        total.log_fsyncs += c.log_fsyncs;
        total.fsync_micros.merge(&c.fsync_micros);
        total.batch_records.merge(&c.batch_records);
        total.sessions += c.sessions;
        total.hot_tail_events += c.hot_tail_events;
        shards.extend(c.shards.iter().cloned());
    }
    let t = &total;
    let mut families = vec![
        counter("starcite_events_append_total", "Events appended (committed, not deduped).", t.events_appended as f64),
        counter("starcite_events_payload_bytes", "Bytes of the appended payloads' JSON encoding.", t.payload_bytes as f64),
        counter("starcite_events_deduped_total", "Appends answered from idempotency memory.", t.deduped as f64),
        gauge("starcite_archive_pending_rows", "Committed rows waiting for the archive (archive not enabled in this build: 0).", 0.0),
        gauge("starcite_archive_pending_sessions", "Sessions with pending archive rows.", 0.0),
        histogram(
            "starcite_archive_flush_duration_ms",
            "One archive flush cycle, milliseconds.",
            &LocalHistogram::new(histogram::DURATION_MS_BOUNDS),
            1.0,
        ),
        counter("starcite_archive_attempted_total", "Rows sent to Postgres.", 0.0),
        counter("starcite_archive_inserted_total", "Rows Postgres confirmed.", 0.0),
        counter("starcite_archive_bytes_attempted_total", "Bytes sent to Postgres.", 0.0),
        counter("starcite_archive_bytes_inserted_total", "Bytes Postgres confirmed.", 0.0),
        gauge("starcite_archive_lag", "Committed-but-unarchived events, summed over sessions.", 0.0),
        gauge("starcite_archive_tail_size", "Events held in the in-memory hot tail.", t.hot_tail_events as f64),
        counter("starcite_archive_trimmed_total", "Rows trimmed from the hot tier after archive.", 0.0),
        histogram("starcite_append_duration_seconds", "Append latency on the owner core, propose to commit+apply.", &t.append_micros, 1e-6),
        histogram("starcite_log_fsync_duration_seconds", "fdatasync latency of the group-commit writer.", &t.fsync_micros, 1e-6),
        histogram("starcite_log_commit_batch_records", "Records per group commit (one write + fdatasync).", &t.batch_records, 1.0),
        counter("starcite_log_records_total", "Records written to the log.", t.log_records as f64),
        counter("starcite_log_bytes_written_total", "Bytes written to segment files (whole blocks).", t.log_bytes_written as f64),
        counter("starcite_log_fsyncs_total", "fdatasync calls.", t.log_fsyncs as f64),
        gauge("starcite_open_connections", "Open client connections.", t.open_connections as f64),
        counter("starcite_refused_connections_total", "Connections refused at the per-core limit.", t.refused_connections as f64),
        gauge("starcite_open_tails", "Open WebSocket and SSE tails.", t.open_tails as f64),
        counter("starcite_tail_events_sent_total", "Events delivered to tails.", t.tail_events_sent as f64),
        counter(
            "starcite_tail_mirror_reads_total",
            "Tail reads served from the local mirror (tail source ets).",
            t.tail_mirror_reads as f64,
        ),
        gauge("starcite_sessions", "Sessions hosted by this node's shards.", t.sessions as f64),
    ];
    let requests: Vec<Metric> = t
        .http_requests
        .iter()
        .map(|((route, class), n)| {
            let mut c = Counter::default();
            c.set_value(*n as f64);
            let mut m = Metric::default();
            m.set_counter(c);
            m.set_label(labels(&[("route", route.to_string()), ("status", class.to_string())]));
            m
        })
        .collect();
    families.push(family("starcite_http_requests_total", "HTTP requests by route and status class.", MetricType::COUNTER, requests));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_required_metric_and_merges_cores() {
        let mut a = CoreStats::empty(0);
        a.events_appended = 3;
        a.http_requests.insert(("append", "2xx"), 3);
        let mut b = CoreStats::empty(1);
        b.events_appended = 4;
        b.http_requests.insert(("append", "2xx"), 4);
        let text = render(&[a, b]);
        for name in [
            "starcite_events_append_total 7",
            "starcite_events_payload_bytes",
            "starcite_archive_pending_rows",
            "starcite_archive_pending_sessions",
            "starcite_archive_flush_duration_ms_bucket",
            "starcite_archive_attempted_total",
            "starcite_archive_inserted_total",
            "starcite_archive_bytes_attempted_total",
            "starcite_archive_bytes_inserted_total",
            "starcite_archive_lag",
            "starcite_archive_tail_size",
            "starcite_archive_trimmed_total",
            "starcite_http_requests_total{route=\"append\",status=\"2xx\"} 7",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
