//! Tree models: a single decision tree, random forests (bagged trees with per-split feature
//! sampling, averaged) and gradient boosting (Newton steps on log loss or squared error, with
//! early stopping on a held-out share), all grown by [`crate::tree::grow`].
//!
//! Boosting follows scikit-learn's `HistGradientBoosting*`: the baseline is the prior log-odds
//! (binary), log class priors (multiclass, one tree per class per iteration) or the mean; early
//! stopping holds out `validation_fraction` of the rows (stratified) and stops after
//! `n_iter_no_change` iterations without a loss improvement above `tol`. Unlike scikit-learn,
//! which keeps the trees grown after the best iteration, the model is cut back to it.

use std::sync::atomic::{AtomicUsize, Ordering};

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::binning::{BinMapper, Binned};
use crate::error::{Result, TrainError};
use crate::frame::Target;
use crate::model::Control;
use crate::split;
use crate::tree::{GrowLimits, Objective, Tree, grow};

/// How trees' outputs combine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Combine {
    /// The mean of the trees' leaf values (class probabilities or regression values).
    Average,
    /// `baseline[k]` plus the sum of trees `k, k + outputs, ...` (boosting's raw scores).
    Sum { baseline: Vec<f64> },
}

/// Trees and how to combine them, on [`crate::encode::TreeEncoder`] columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    pub trees: Vec<Tree>,
    pub combine: Combine,
}

impl Ensemble {
    /// Outputs per row: tree width for averages, the baseline's length for sums.
    pub fn outputs(&self) -> usize {
        match &self.combine {
            Combine::Average => self.trees.first().map_or(1, |t| t.width),
            Combine::Sum { baseline } => baseline.len(),
        }
    }

    /// Raw outputs (row-major, [`Ensemble::outputs`] per row) of column-major `columns`.
    pub fn raw(&self, columns: &[Vec<f32>], rows: usize) -> Vec<f64> {
        let k = self.outputs();
        let mut out = vec![0.0; rows * k];
        const BLOCK: usize = 512;
        let n_features = columns.len();
        // Row blocks outside, trees inside: each tree stays in cache across a block of rows, whose
        // values are laid out row by row so a walk reads one small slice.
        out.par_chunks_mut(BLOCK * k).enumerate().for_each(|(block, out)| {
            let first = block * BLOCK;
            let n = out.len() / k;
            let mut values = vec![0.0f32; n * n_features];
            for (f, col) in columns.iter().enumerate() {
                for i in 0..n {
                    values[i * n_features + f] = col[first + i];
                }
            }
            let row = |i: usize| &values[i * n_features..(i + 1) * n_features];
            match &self.combine {
                Combine::Average => {
                    for tree in &self.trees {
                        for i in 0..n {
                            let x = row(i);
                            let leaf = tree.leaf(|f| x[f]);
                            out[i * k..(i + 1) * k].iter_mut().zip(tree.leaf_value(leaf)).for_each(|(o, v)| *o += v);
                        }
                    }
                    let trees = self.trees.len().max(1) as f64;
                    out.iter_mut().for_each(|v| *v /= trees);
                }
                Combine::Sum { baseline } => {
                    out.chunks_mut(k).for_each(|o| o.copy_from_slice(baseline));
                    for (t, tree) in self.trees.iter().enumerate() {
                        for i in 0..n {
                            let x = row(i);
                            let leaf = tree.leaf(|f| x[f]);
                            out[i * k + t % k] += tree.value[leaf];
                        }
                    }
                }
            }
        });
        out
    }
}

/// Per-row statistics for impurity-based trees: class one-hots, or `[y, 1]`.
fn impurity_stats(target: &Target, n_rows: usize, rows: &[usize]) -> (Vec<f64>, Objective) {
    match target {
        Target::Classes { codes, labels } => {
            let k = labels.len();
            let mut stats = vec![0.0; n_rows * k];
            for (local, &r) in rows.iter().enumerate() {
                stats[local * k + codes[r]] = 1.0;
            }
            (stats, Objective::Gini { classes: k })
        }
        Target::Values(v) => {
            let mut stats = vec![0.0; n_rows * 2];
            for (local, &r) in rows.iter().enumerate() {
                stats[local * 2] = v[r];
                stats[local * 2 + 1] = 1.0;
            }
            (stats, Objective::Variance)
        }
    }
}

/// Settings of a forest (a decision tree is a forest of one tree without bagging).
pub struct ForestSettings {
    pub trees: usize,
    pub bootstrap: bool,
    pub max_samples: f64,
    pub limits: GrowLimits,
    pub seed: u64,
}

/// Grows a forest on `binned` (the training rows, in order, with `target` over them).
pub fn fit_forest(
    binned: &Binned,
    mapper: &BinMapper,
    target: &Target,
    settings: &ForestSettings,
    control: &Control,
) -> Result<(Ensemble, Vec<f64>)> {
    let n = binned.rows;
    let all: Vec<usize> = (0..n).collect();
    let (stats, objective) = impurity_stats(target, n, &all);
    let done = AtomicUsize::new(0);
    let grown: Vec<Result<(Tree, Vec<f64>)>> = (0..settings.trees)
        .into_par_iter()
        .map(|t| {
            if control.cancelled() {
                return Err(TrainError::Interrupted);
            }
            let mut rng =
                ChaCha8Rng::seed_from_u64(settings.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(t as u64));
            let rows: Vec<u32> = if settings.bootstrap {
                let draws = ((settings.max_samples * n as f64).round() as usize).max(1);
                (0..draws).map(|_| rng.random_range(0..n as u32)).collect()
            } else {
                (0..n as u32).collect()
            };
            let g = grow(binned, mapper, rows, &stats, objective, &settings.limits, &mut rng);
            control.report(done.fetch_add(1, Ordering::Relaxed) + 1, settings.trees);
            Ok((g.tree, g.importance))
        })
        .collect();
    let mut trees = Vec::with_capacity(grown.len());
    let mut importance = vec![0.0; binned.columns.len()];
    for g in grown {
        let (tree, imp) = g?;
        // scikit-learn normalises each tree's importances before averaging.
        let total: f64 = imp.iter().sum();
        if total > 0.0 {
            importance.iter_mut().zip(&imp).for_each(|(a, b)| *a += b / total);
        }
        trees.push(tree);
    }
    Ok((Ensemble { trees, combine: Combine::Average }, importance))
}

/// Settings of gradient boosting.
pub struct BoostSettings {
    pub max_iter: usize,
    pub learning_rate: f64,
    pub l2: f64,
    pub limits: GrowLimits,
    pub early_stopping: bool,
    pub validation_fraction: f64,
    pub n_iter_no_change: usize,
    pub tol: f64,
    pub seed: u64,
}

/// What boosting reports besides the model.
#[derive(Debug, Clone)]
pub struct BoostReport {
    pub iterations: usize,
    pub best_validation_loss: Option<f64>,
}

/// Boosts trees on `binned`/`columns` (the training rows, in order, `target` over them).
pub fn fit_boosting(
    binned: &Binned,
    columns: &[Vec<f32>],
    mapper: &BinMapper,
    target: &Target,
    settings: &BoostSettings,
    control: &Control,
) -> Result<(Ensemble, Vec<f64>, BoostReport)> {
    let n = binned.rows;
    let (fit_rows, val_rows): (Vec<usize>, Vec<usize>) = if settings.early_stopping {
        let s = split::train_test_split(target, settings.validation_fraction, settings.seed ^ 0x5EED)?;
        (s.train, s.test)
    } else {
        ((0..n).collect(), Vec::new())
    };
    let (outputs, labels_y): (usize, Vec<f64>) = match target {
        Target::Classes { codes, labels } => {
            (if labels.len() == 2 { 1 } else { labels.len() }, codes.iter().map(|&c| c as f64).collect())
        }
        Target::Values(v) => (1, v.clone()),
    };
    let classification = matches!(target, Target::Classes { .. });
    let baseline: Vec<f64> = match target {
        Target::Classes { codes, labels } => {
            let mut counts = vec![0.0; labels.len()];
            fit_rows.iter().for_each(|&r| counts[codes[r]] += 1.0);
            let total = fit_rows.len() as f64;
            let prior = |c: f64| (c / total).clamp(1e-15, 1.0 - 1e-15);
            if outputs == 1 {
                let p = prior(counts[1]);
                vec![(p / (1.0 - p)).ln()]
            } else {
                counts.iter().map(|&c| prior(c).ln()).collect()
            }
        }
        Target::Values(_) => vec![fit_rows.iter().map(|&r| labels_y[r]).sum::<f64>() / fit_rows.len() as f64],
    };
    let mut raw = vec![0.0; n * outputs];
    raw.chunks_mut(outputs).for_each(|r| r.copy_from_slice(&baseline));
    let objective = Objective::Newton { l2: settings.l2, learning_rate: settings.learning_rate, min_hessian: 1e-3 };
    let mut stats = vec![vec![0.0; n * 3]; outputs];
    let mut trees: Vec<Tree> = Vec::new();
    let mut importance = vec![0.0; binned.columns.len()];
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut best = (f64::INFINITY, 0usize);
    // Validation rows' values row by row, for fast tree walks.
    let n_features = columns.len();
    let val_values: Vec<f32> = val_rows.iter().flat_map(|&r| columns.iter().map(move |c| c[r])).collect();
    let mut iterations = 0;
    for iteration in 0..settings.max_iter {
        if control.cancelled() {
            return Err(TrainError::Interrupted);
        }
        gradients(&raw, &labels_y, &fit_rows, outputs, classification, &mut stats);
        for (k, stats_k) in stats.iter().enumerate() {
            let rows: Vec<u32> = fit_rows.iter().map(|&r| r as u32).collect();
            let g = grow(binned, mapper, rows, stats_k, objective, &settings.limits, &mut rng);
            for (leaf, rows) in g.leaf_rows() {
                let v = g.tree.value[leaf];
                rows.iter().for_each(|&r| raw[r as usize * outputs + k] += v);
            }
            for (&r, x) in val_rows.iter().zip(val_values.chunks_exact(n_features.max(1))) {
                let leaf = g.tree.leaf(|f| x[f]);
                raw[r * outputs + k] += g.tree.value[leaf];
            }
            importance.iter_mut().zip(&g.importance).for_each(|(a, b)| *a += b);
            trees.push(g.tree);
        }
        iterations = iteration + 1;
        control.report(iterations, settings.max_iter);
        if !val_rows.is_empty() {
            let loss = mean_loss(&raw, &labels_y, &val_rows, outputs, classification);
            if loss < best.0 - settings.tol {
                best = (loss, iterations);
            } else if iterations - best.1 >= settings.n_iter_no_change {
                break;
            }
        }
    }
    let kept = if val_rows.is_empty() { iterations } else { best.1.max(1) };
    trees.truncate(kept * outputs);
    let report = BoostReport { iterations: kept, best_validation_loss: (!val_rows.is_empty()).then_some(best.0) };
    Ok((Ensemble { trees, combine: Combine::Sum { baseline } }, importance, report))
}

/// Writes `[gradient, hessian, 1]` per fit row for each output.
fn gradients(raw: &[f64], y: &[f64], rows: &[usize], outputs: usize, classification: bool, stats: &mut [Vec<f64>]) {
    for &r in rows {
        let z = &raw[r * outputs..(r + 1) * outputs];
        if !classification {
            let s = &mut stats[0][r * 3..r * 3 + 3];
            s.copy_from_slice(&[z[0] - y[r], 1.0, 1.0]);
        } else if outputs == 1 {
            let p = 1.0 / (1.0 + (-z[0]).exp());
            stats[0][r * 3..r * 3 + 3].copy_from_slice(&[p - y[r], (p * (1.0 - p)).max(1e-16), 1.0]);
        } else {
            let m = z.iter().fold(f64::MIN, |a, &b| a.max(b));
            let sum: f64 = z.iter().map(|v| (v - m).exp()).sum();
            for (k, stats_k) in stats.iter_mut().enumerate() {
                let p = (z[k] - m).exp() / sum;
                let t = if y[r] as usize == k { 1.0 } else { 0.0 };
                stats_k[r * 3..r * 3 + 3].copy_from_slice(&[p - t, (p * (1.0 - p)).max(1e-16), 1.0]);
            }
        }
    }
}

/// Mean log loss (classification) or half squared error (regression) over `rows`.
fn mean_loss(raw: &[f64], y: &[f64], rows: &[usize], outputs: usize, classification: bool) -> f64 {
    let total: f64 = rows
        .iter()
        .map(|&r| {
            let z = &raw[r * outputs..(r + 1) * outputs];
            if !classification {
                0.5 * (z[0] - y[r]).powi(2)
            } else if outputs == 1 {
                let zz = z[0];
                (if zz > 0.0 { zz + (-zz).exp().ln_1p() } else { zz.exp().ln_1p() }) - y[r] * zz
            } else {
                let m = z.iter().fold(f64::MIN, |a, &b| a.max(b));
                m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - z[y[r] as usize]
            }
        })
        .sum();
    total / rows.len().max(1) as f64
}
