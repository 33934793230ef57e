//! A latency histogram with fixed buckets, cheap enough for every call (two relaxed atomic adds):
//! what `/metrics` exports as a Prometheus histogram and `/stats` summarizes as percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 50 µs to 60 s, about three per decade.
pub const BOUNDS: [f64; 20] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Counts of durations per bucket (the last slot: above every bound) and their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `(upper bound in seconds, count of durations at or below it)`, cumulative, as
    /// Prometheus wants them; the `+Inf` bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_s: f64,
}

impl Histogram {
    pub fn record(&self, took: Duration) {
        let s = took.as_secs_f64();
        let i = BOUNDS.partition_point(|&b| b < s);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BOUNDS.len());
        for (i, &bound) in BOUNDS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            buckets.push((bound, cumulative));
        }
        let count = cumulative + self.counts[BOUNDS.len()].load(Ordering::Relaxed);
        Snapshot {
            buckets,
            count,
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl Snapshot {
    /// The histogram of both sets of observations (same bounds).
    pub fn merged(&self, other: &Snapshot) -> Snapshot {
        Snapshot {
            buckets: self
                .buckets
                .iter()
                .zip(&other.buckets)
                .map(|(a, b)| (a.0, a.1 + b.1))
                .collect(),
            count: self.count + other.count,
            sum_s: self.sum_s + other.sum_s,
        }
    }

    /// The `q` quantile (0 to 1) in seconds, estimated as Prometheus's `histogram_quantile`
    /// does: linear within the bucket it falls in; `None` without observations. Above the last
    /// bound, the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, cumulative) in &self.buckets {
            if cumulative as f64 >= rank && cumulative > lower.1 {
                let within = (rank - lower.1 as f64) / (cumulative - lower.1) as f64;
                return Some(lower.0 + (bound - lower.0) * within.clamp(0.0, 1.0));
            }
            lower = (bound, cumulative);
        }
        Some(lower.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_bucket_and_add_up() {
        let h = Histogram::default();
        h.record(Duration::from_micros(40)); // <= 50 µs
        h.record(Duration::from_micros(100)); // exactly on a bound: that bucket
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(500)); // above every bound
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.00005, 1));
        assert_eq!(s.buckets[1], (0.0001, 2));
        assert_eq!(s.buckets[6], (0.005, 3));
        assert_eq!(s.buckets.last(), Some(&(120.0, 3)));
        assert!((s.sum_s - 500.00314).abs() < 1e-9, "{}", s.sum_s);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        // 100 calls between 1 and 2.5 ms: the median is halfway in that bucket.
        for _ in 0..100 {
            h.record(Duration::from_micros(1500));
        }
        let s = h.snapshot();
        let p50 = s.quantile(0.5).unwrap();
        assert!((p50 - 0.00175).abs() < 1e-9, "{p50}");
        assert!((s.quantile(1.0).unwrap() - 0.0025).abs() < 1e-12);
        // One slow call moves p99 but not p50.
        h.record(Duration::from_secs(3));
        let s = h.snapshot();
        assert!(s.quantile(0.5).unwrap() < 0.0025);
        assert!(s.quantile(0.999).unwrap() > 2.5);
    }
}
