//! Confidence bounds on a window's values, so that a rule fires when its threshold is crossed
//! with the configured confidence, not when the point estimate wobbles across it.
//!
//! A window of 30 labelled rows from a model whose accuracy is 0.85 measures below 0.8 in 15%
//! of windows; at 100 rows in 6.6%. Each value that is an estimate gets two one-sided bounds
//! at the configured confidence `c` (0.975 by default): `lo`, below which the true value lies
//! with probability at most `1 - c`, and `hi`, above which it does. A rule `value < t` fires
//! when `hi < t`, a rule `value > t` when `lo > t`: when the true value sits exactly at the
//! threshold, the rule fires in at most `1 - c` of evaluations, and far less often when it is
//! on the healthy side of the threshold.
//!
//! - Proportions (`accuracy`, `error_rate`): Wilson's score bounds, which keep their coverage
//!   at small counts and near 0 and 1 where the normal approximation does not.
//! - Other performance metrics and the fairness differences: the percentile bootstrap over
//!   the window's labelled rows (400 resamples, a fixed seed so that an evaluation is
//!   reproducible).
//! - Latency percentiles: distribution-free bounds from the order statistics (the ranks a
//!   binomial count of values below the quantile allows).

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use shipyard_data::stats::norm_ppf;

/// Resamples of the bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 400;
/// The bootstrap's seed: the same window gives the same bounds.
const BOOTSTRAP_SEED: u64 = 0x05ee_d0fb_0075;

/// One-sided bounds on a value at a confidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The true value is below this with probability at most `1 - confidence`.
    pub lo: f64,
    /// The true value is above this with probability at most `1 - confidence`.
    pub hi: f64,
    pub confidence: f64,
    /// `wilson`, `bootstrap` or `order_statistics`.
    pub method: &'static str,
}

/// Wilson's score bounds on a proportion of `successes` in `n` trials.
pub fn wilson(successes: u64, n: u64, confidence: f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (n, p) = (n as f64, successes as f64 / n as f64);
    let z = norm_ppf(confidence);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Some(Interval { lo: (centre - half).max(0.0), hi: (centre + half).min(1.0), confidence, method: "wilson" })
}

/// Percentile bootstrap bounds of `k` statistics over `n` rows: `statistics` gets the indices
/// of one resample (drawn with repetition) and returns the `k` values on it (NaN where one is
/// undefined on that resample). One resampling serves every statistic.
pub fn bootstrap(
    n: usize,
    k: usize,
    confidence: f64,
    statistics: impl Fn(&[usize]) -> Vec<f64>,
) -> Vec<Option<Interval>> {
    if n < 2 {
        return vec![None; k];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut indices = vec![0usize; n];
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(BOOTSTRAP_RESAMPLES); k];
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for i in indices.iter_mut() {
            *i = rng.random_range(0..n);
        }
        for (column, v) in values.iter_mut().zip(statistics(&indices)) {
            if v.is_finite() {
                column.push(v);
            }
        }
    }
    values
        .into_iter()
        .map(|mut v| {
            // Undefined on most resamples (a group missing from them): no honest bound.
            if v.len() < BOOTSTRAP_RESAMPLES / 2 {
                return None;
            }
            v.sort_unstable_by(f64::total_cmp);
            let at = |q: f64| shipyard_data::profile::quantile_linear(&v, q);
            Some(Interval { lo: at(1.0 - confidence), hi: at(confidence), confidence, method: "bootstrap" })
        })
        .collect()
}

/// Distribution-free bounds on the `q` quantile of the population `sorted` was drawn from: the
/// order statistics at the ranks a binomial count of values below the quantile reaches with
/// probability `1 - confidence` (normal approximation of the binomial, continuity-corrected).
pub fn quantile_bounds(sorted: &[f64], q: f64, confidence: f64) -> Option<Interval> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let z = norm_ppf(confidence);
    let (nf, spread) = (n as f64, (n as f64 * q * (1.0 - q)).sqrt());
    let lo_rank = (nf * q - z * spread - 0.5).floor();
    let hi_rank = (nf * q + z * spread + 0.5).ceil();
    // A rank below the first or past the last value: the bound is unknown on that side.
    let lo = if lo_rank < 1.0 { f64::NEG_INFINITY } else { sorted[(lo_rank as usize - 1).min(n - 1)] };
    let hi = if hi_rank > nf { f64::INFINITY } else { sorted[(hi_rank as usize).saturating_sub(1).min(n - 1)] };
    Some(Interval { lo, hi, confidence, method: "order_statistics" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_its_formula_and_stays_in_range() {
        // statsmodels 0.15: proportion_confint(85, 100, alpha=0.10, method="wilson") is
        // (0.7820969631120788, 0.8994631323396992), the two 95% one-sided bounds; (30, 30) gives
        // (0.9172756918749008, 1.0).
        let i = wilson(85, 100, 0.95).unwrap_or_else(|| panic!("an interval"));
        assert!((i.lo - 0.7820969631120788).abs() < 1e-12 && (i.hi - 0.8994631323396992).abs() < 1e-12, "{i:?}");
        let all = wilson(30, 30, 0.95).unwrap_or_else(|| panic!("an interval"));
        assert!((all.lo - 0.9172756918749008).abs() < 1e-12 && (all.hi - 1.0).abs() < 1e-12, "{all:?}");
        assert!(wilson(0, 0, 0.95).is_none());
    }

    #[test]
    fn bootstrap_bounds_bracket_the_estimate_and_are_reproducible() {
        let data: Vec<f64> = (0..500).map(|i| f64::from(i % 7)).collect();
        let mean = |idx: &[usize]| vec![idx.iter().map(|&i| data[i]).sum::<f64>() / idx.len() as f64];
        let a = bootstrap(data.len(), 1, 0.95, mean)[0].unwrap_or_else(|| panic!("an interval"));
        let b = bootstrap(data.len(), 1, 0.95, mean)[0].unwrap_or_else(|| panic!("an interval"));
        assert_eq!(a, b);
        let estimate = data.iter().sum::<f64>() / 500.0;
        assert!(a.lo < estimate && estimate < a.hi, "{a:?} around {estimate}");
        // The standard error of the mean is about 2 / sqrt(500) = 0.089: bounds near 1.645 of them.
        assert!((a.hi - a.lo - 2.0 * 1.645 * 0.0895).abs() < 0.06, "{a:?}");
    }

    #[test]
    fn quantile_bounds_are_order_statistics_around_the_quantile() {
        let sorted: Vec<f64> = (1..=1000).map(f64::from).collect();
        let i = quantile_bounds(&sorted, 0.5, 0.95).unwrap_or_else(|| panic!("an interval"));
        // 500 +- 1.645 * sqrt(250) = 500 +- 26.
        assert!((i.lo - 473.0).abs() <= 1.0 && (i.hi - 527.0).abs() <= 1.0, "{i:?}");
        let tail = quantile_bounds(&sorted[..50], 0.99, 0.95).unwrap_or_else(|| panic!("an interval"));
        assert!(tail.hi.is_infinite(), "50 values cannot bound the 99th percentile from above: {tail:?}");
    }
}
