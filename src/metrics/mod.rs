//! Metrics: per-core counters and histograms merged at scrape time into one Prometheus
//! exposition (text format 0.0.4).

pub mod histogram;
