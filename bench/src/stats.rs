//! Latency samples and their summary.

use std::time::Duration;

use serde::Serialize;

/// Latencies of one system in one scenario, in milliseconds, in the order they were taken.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    ms: Vec<f64>,
}

/// The figures printed for a set of samples.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            ms: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.ms.push(d.as_secs_f64() * 1e3);
    }

    pub fn extend(&mut self, other: Samples) {
        self.ms.extend(other.ms);
    }

    pub fn len(&self) -> usize {
        self.ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ms.is_empty()
    }

    /// The raw samples in milliseconds.
    pub fn as_ms(&self) -> &[f64] {
        &self.ms
    }

    /// Nearest-rank percentiles; `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        if self.ms.is_empty() {
            return None;
        }
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let idx = (p / 100.0 * v.len() as f64).ceil() as usize;
            v[idx.clamp(1, v.len()) - 1]
        };
        Some(Summary {
            n: v.len(),
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            p99_ms: rank(99.0),
            min_ms: v[0],
            max_ms: v[v.len() - 1],
            mean_ms: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
}

/// The middle value of `v` (the upper one of an even count); 0 when it is empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Rows of a `label  p50  max  x` table, `x` each row's median over `against` (0 when that is
/// 0): the label left-aligned in `label_width`, the ratio right-aligned in `ratio_width`.
pub fn ratio_rows(
    o: &mut String,
    (label_width, ratio_width): (usize, usize),
    rows: &[(&str, &[f64])],
    against: f64,
    ms: fn(f64) -> String,
) {
    use std::fmt::Write as _;
    for (label, v) in rows {
        let max = v.iter().copied().fold(0.0, f64::max);
        let x = if against > 0.0 {
            median(v) / against
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "{label:<label_width$} {:>8} {:>8} {x:>ratio_width$.3}x",
            ms(median(v)),
            ms(max)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for i in (1..=100).rev() {
            s.push(Duration::from_millis(i));
        }
        let sum = s.summary().unwrap();
        assert_eq!(sum.n, 100);
        assert!((sum.p50_ms - 50.0).abs() < 1e-9);
        assert!((sum.p90_ms - 90.0).abs() < 1e-9);
        assert!((sum.p99_ms - 99.0).abs() < 1e-9);
        assert!((sum.min_ms - 1.0).abs() < 1e-9);
        assert!((sum.max_ms - 100.0).abs() < 1e-9);
        assert!((sum.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn one_sample_and_none() {
        assert!(Samples::default().summary().is_none());
        let mut s = Samples::default();
        s.push(Duration::from_micros(1500));
        let sum = s.summary().unwrap();
        assert_eq!((sum.p50_ms, sum.p99_ms, sum.min_ms), (1.5, 1.5, 1.5));
    }
}
