//! Feature values to small bin numbers, the input of histogram-based tree growing.
//!
//! Each feature gets at most 255 bins of non-missing values and one bin
//! ([`BinMapper::missing_bin`], the same for every feature, right after the largest feature's
//! last bin) for missing ones; histograms are as wide as the widest feature needs, so data with
//! few distinct values gets small histograms. A feature with few distinct values gets one bin per value and thresholds
//! half-way between neighbours; others get quantile bins from a seeded sample of 200,000 values,
//! as scikit-learn's `HistGradientBoosting` and LightGBM do. Bin `b` holds the values `x` with
//! `thresholds[b-1] < x <= thresholds[b]`, so a split "bin <= b" is the raw test
//! "x <= thresholds[b]" that saved trees (and their ONNX export) apply to unbinned `f32` input.

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::index;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The most bins of non-missing values a feature can have.
pub const MAX_BINS: usize = 255;
const SAMPLE_FOR_QUANTILES: usize = 200_000;

/// Per-feature bin thresholds, learned from training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinMapper {
    /// `thresholds[f]` is ascending; feature `f` has `thresholds[f].len() + 1` bins.
    pub thresholds: Vec<Vec<f32>>,
    /// The bin of missing values: one past the widest feature's last bin (at most 255).
    pub missing_bin: u8,
}

/// Binned features: column-major (`columns`, `rows` long each) for per-feature passes, and
/// row-major (`by_row`, one run of `columns.len()` bins per row) for all-feature passes.
#[derive(Debug, Clone)]
pub struct Binned {
    pub columns: Vec<Vec<u8>>,
    pub by_row: Vec<u8>,
    pub rows: usize,
}

impl BinMapper {
    /// Learns thresholds for `columns` (missing = `NaN`) with at most `max_bins` bins each.
    pub fn fit(columns: &[Vec<f32>], max_bins: usize, seed: u64) -> BinMapper {
        let max_bins = max_bins.clamp(2, MAX_BINS);
        let thresholds = columns
            .par_iter()
            .enumerate()
            .map(|(f, col)| feature_thresholds(col, max_bins, seed.wrapping_add(f as u64)))
            .collect::<Vec<Vec<f32>>>();
        let widest = thresholds.iter().map(|t| t.len() + 1).max().unwrap_or(1);
        BinMapper { thresholds, missing_bin: widest.min(MAX_BINS) as u8 }
    }

    /// Bins per feature in a histogram: every value bin of the widest feature and the missing bin.
    pub fn stride(&self) -> usize {
        self.missing_bin as usize + 1
    }

    /// The number of non-missing bins of feature `f`.
    pub fn bins(&self, f: usize) -> usize {
        self.thresholds[f].len() + 1
    }

    /// Bins `columns` (same features as the fit).
    pub fn transform(&self, columns: &[Vec<f32>]) -> Binned {
        let rows = columns.first().map_or(0, Vec::len);
        let columns: Vec<Vec<u8>> = columns
            .par_iter()
            .zip(&self.thresholds)
            .map(|(col, thresholds)| col.iter().map(|&x| bin_of(thresholds, x, self.missing_bin)).collect())
            .collect();
        let width = columns.len();
        let mut by_row = vec![0u8; rows * width];
        for (f, col) in columns.iter().enumerate() {
            for (r, &b) in col.iter().enumerate() {
                by_row[r * width + f] = b;
            }
        }
        Binned { columns, by_row, rows }
    }
}

/// The bin of `x`: the number of thresholds below it, or `missing_bin`.
#[inline]
pub fn bin_of(thresholds: &[f32], x: f32, missing_bin: u8) -> u8 {
    if x.is_nan() { missing_bin } else { thresholds.partition_point(|&t| t < x) as u8 }
}

fn feature_thresholds(col: &[f32], max_bins: usize, seed: u64) -> Vec<f32> {
    let present: Vec<f32> = col.iter().copied().filter(|x| !x.is_nan()).collect();
    let mut sample: Vec<f32> = if present.len() > SAMPLE_FOR_QUANTILES {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        index::sample(&mut rng, present.len(), SAMPLE_FOR_QUANTILES).into_iter().map(|i| present[i]).collect()
    } else {
        present
    };
    sample.sort_unstable_by(f32::total_cmp);
    let mut distinct = sample.clone();
    distinct.dedup();
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| midpoint(w[0], w[1])).collect();
    }
    // Quantile edges (midpoint between the order statistics around each quantile), deduplicated.
    let n = sample.len();
    let mut edges: Vec<f32> = Vec::with_capacity(max_bins - 1);
    for i in 1..max_bins {
        let pos = i as f64 * (n - 1) as f64 / max_bins as f64;
        let (lo, hi) = (sample[pos.floor() as usize], sample[pos.ceil() as usize]);
        let edge = if lo == hi { lo } else { midpoint(lo, hi) };
        if edges.last().is_none_or(|&last| edge > last) && edge < sample[n - 1] {
            edges.push(edge);
        }
    }
    edges
}

/// A threshold between `a < b` that `a` falls below or on and `b` above, in `f32`.
fn midpoint(a: f32, b: f32) -> f32 {
    let mid = (f64::from(a) + (f64::from(b) - f64::from(a)) / 2.0) as f32;
    if mid >= a && mid < b { mid } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_a_bin_each() {
        let m = BinMapper::fit(&[vec![3.0, 1.0, f32::NAN, 2.0, 1.0]], 255, 0);
        assert_eq!(m.thresholds[0], vec![1.5, 2.5]);
        let b = m.transform(&[vec![1.0, 1.5, 1.6, 3.0, 9.0, f32::NAN]]);
        assert_eq!(m.missing_bin, 3);
        assert_eq!(b.columns[0], vec![0, 0, 1, 2, 2, 3]);
    }

    #[test]
    fn many_values_get_quantile_bins_consistent_with_thresholds() {
        let col: Vec<f32> = (0..10_000).map(|i| ((i * 7919) % 10_007) as f32 / 3.0).collect();
        let m = BinMapper::fit(std::slice::from_ref(&col), 16, 0);
        assert!(m.thresholds[0].len() <= 15 && m.thresholds[0].len() >= 14);
        let b = m.transform(std::slice::from_ref(&col));
        let mut counts = [0usize; 16];
        for (&x, &bin) in col.iter().zip(&b.columns[0]) {
            counts[bin as usize] += 1;
            // bin <= k  <=>  x <= thresholds[k]
            for (k, &t) in m.thresholds[0].iter().enumerate() {
                assert_eq!(bin as usize <= k, x <= t);
            }
        }
        assert!(counts.iter().take(m.bins(0)).all(|&c| c > 400), "{counts:?}");
    }

    #[test]
    fn adjacent_floats_still_split() {
        let a = 1.0f32;
        let b = f32::from_bits(a.to_bits() + 1);
        let t = midpoint(a, b);
        assert!(a <= t && b > t);
    }
}
