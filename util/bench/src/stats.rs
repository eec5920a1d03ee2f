//! Latency summaries: nearest-rank percentiles over the measured samples.

use std::time::Duration;

use serde::Serialize;

/// Milliseconds, the unit every figure of the report uses.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// `None` for no samples: a scenario that measured nothing must not print zeros.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = samples.iter().copied().map(ms).collect();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            p50_ms: percentile(&v, 50.0),
            p95_ms: percentile(&v, 95.0),
            p99_ms: percentile(&v, 99.0),
            mean_ms: v.iter().sum::<f64>() / v.len() as f64,
            min_ms: v[0],
            max_ms: v[v.len() - 1],
        })
    }
}

/// Nearest rank: the smallest sample with at least `p`% of the samples at or below it,
/// so every reported percentile is a latency that really happened.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// vglet's figure over its floor's; what the targets are stated in.
pub fn ratio(vglet: f64, floor: f64) -> f64 {
    if floor > 0.0 { vglet / floor } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(d).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms), (50.0, 95.0, 99.0));
        assert_eq!((s.min_ms, s.max_ms, s.n), (1.0, 100.0, 100));
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn small_sets_use_real_samples() {
        let s = Summary::of(&[d(30), d(10), d(20)]).unwrap();
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms), (20.0, 30.0, 30.0));
        let one = Summary::of(&[d(7)]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
    }

    #[test]
    fn nothing_measured_is_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert!(ratio(1.0, 0.0).is_nan());
        assert_eq!(ratio(11.0, 10.0), 1.1);
    }
}
