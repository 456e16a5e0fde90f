//! A fixed-bucket latency histogram: the core fills one with catch-up durations and the
//! store one with fsync latencies; `status` carries them and `/metrics` exports them.
//!
//! One set of bounds for every use (100 µs to 5 min, roughly ×2.5 apart), so the counts
//! are plain arrays that copy, compare and serialise without carrying their bounds along.

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in microseconds, ascending and inclusive. Observations
/// above the last one fall in one more bucket (Prometheus' `+Inf`).
pub const BOUNDS_US: [u64; 19] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
];

/// Observations counted by bucket of [`BOUNDS_US`], with their sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Observations per bucket (not cumulative): `counts[i]` holds those in
    /// `(BOUNDS_US[i-1], BOUNDS_US[i]]`, the last one those above every bound.
    pub counts: [u64; BOUNDS_US.len() + 1],
    /// Sum of every observation, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Counts one observation of `us` microseconds.
    pub fn observe_us(&mut self, us: u64) {
        let bucket = BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[bucket] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// How many observations were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound in µs, observations in that bucket)` for every bucket, not
    /// cumulative; the last one's bound is `None` (above every bound, Prometheus' `+Inf`).
    pub fn buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        BOUNDS_US
            .iter()
            .map(|bound| Some(*bound))
            .chain([None])
            .zip(self.counts.iter().copied())
    }

    /// The upper bound of the bucket holding the `q`-quantile (`0.0..=1.0`) of the
    /// observations, in µs: the quantile is at most this. `None` when nothing was observed;
    /// `Some(None)` when it lies above every bound.
    pub fn quantile_bound_us(&self, q: f64) -> Option<Option<u64>> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the q-quantile among the observations, 1-based, at least the first.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bound, count) in self.buckets() {
            seen += count;
            if seen >= rank {
                return Some(bound);
            }
        }
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::default();
        h.observe_us(0);
        h.observe_us(100);
        h.observe_us(101);
        h.observe_us(300_000_001);
        assert_eq!(h.counts[0], 2, "100 is inclusive");
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[BOUNDS_US.len()], 1, "above every bound");
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_us, 300_000_202);
        let buckets: Vec<_> = h.buckets().collect();
        assert_eq!(buckets.len(), BOUNDS_US.len() + 1);
        assert_eq!(buckets[0], (Some(100), 2));
        assert_eq!(buckets[1], (Some(250), 1));
        assert_eq!(buckets.last(), Some(&(None, 1)));
    }

    #[test]
    fn quantiles_name_the_bucket_that_holds_them() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_bound_us(0.5), None, "nothing observed");
        for _ in 0..98 {
            h.observe_us(800);
        }
        h.observe_us(20_000);
        h.observe_us(400_000_000);
        assert_eq!(h.quantile_bound_us(0.0), Some(Some(1_000)));
        assert_eq!(h.quantile_bound_us(0.5), Some(Some(1_000)));
        assert_eq!(h.quantile_bound_us(0.99), Some(Some(25_000)));
        assert_eq!(h.quantile_bound_us(1.0), Some(None), "above every bound");
    }
}
