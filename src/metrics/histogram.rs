//! A fixed-bucket histogram owned by one core (no atomics, no locks on the hot path).
//!
//! Cores record into their own instance; a scrape copies every core's buckets and
//! merges them into the Prometheus exposition.

/// Upper bounds (inclusive) in microseconds, for latencies from 10 µs to 10 s.
pub const LATENCY_MICROS_BOUNDS: &[f64] = &[
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    25_000.0,
    50_000.0,
    100_000.0,
    250_000.0,
    1_000_000.0,
    10_000_000.0,
];

/// Upper bounds for counts (e.g. records per group commit).
pub const COUNT_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];

/// Upper bounds in milliseconds (archive flush cycles and the like).
pub const DURATION_MS_BOUNDS: &[f64] = &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0];

#[derive(Debug, Clone, PartialEq)]
pub struct LocalHistogram {
    pub bounds: &'static [f64],
    /// Non-cumulative counts; one extra slot for +Inf.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl LocalHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        LocalHistogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    pub fn observe(&mut self, value: f64) {
        let slot = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Add another core's histogram (same bounds) into this one.
    pub fn merge(&mut self, other: &LocalHistogram) {
        assert_eq!(self.bounds.len(), other.bounds.len(), "merging histograms with different bounds");
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_holds_them() {
        let mut h = LocalHistogram::new(COUNT_BOUNDS);
        h.observe(1.0);
        h.observe(3.0);
        h.observe(1e9);
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[2], 1);
        assert_eq!(h.counts[COUNT_BOUNDS.len()], 1);
        let mut m = LocalHistogram::new(COUNT_BOUNDS);
        m.merge(&h);
        m.merge(&h);
        assert_eq!(m.count, 6);
    }
}
