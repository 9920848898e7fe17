//! Decision trees: the saved structure, its prediction, and histogram-based growing.
//!
//! Why our own: the crates measured on `make_classification` 100,000 x 20 (2 cores, see
//! `docs/benchmarks.md`) were too slow or too narrow. smartcore 0.7's exact-split
//! `DecisionTreeClassifier` took 17.8 s where scikit-learn takes 3.3 s, and its random forest is
//! single-threaded with no missing values; forust-ml 0.8 is fast (1.0 s for 100 rounds) but has
//! no multiclass objective and no categorical handling; linfa-trees splits exactly as smartcore
//! does. One histogram grower here serves the decision tree, the random forest and gradient
//! boosting alike.
//!
//! Growing works on binned features ([`crate::binning`]): per node, a histogram of per-row
//! statistics per bin, scanned left to right for the best threshold, trying missing values on
//! either side (the learned default direction). The larger child's histogram is the parent's
//! minus the smaller child's. What a split is worth comes from the [`Objective`]: Gini impurity
//! decrease, variance decrease, or the Newton gain of gradient boosting.

use std::sync::OnceLock;

use rand::Rng;
use rand::seq::index;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::binning::{BinMapper, Binned};

/// A tree as saved: parallel arrays over nodes, node 0 the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Feature tested by a split node (0 on leaves).
    pub feature: Vec<u32>,
    /// Split nodes send `x <= threshold` left.
    pub threshold: Vec<f32>,
    /// Where a missing value goes at a split node.
    pub missing_left: Vec<bool>,
    /// Children of a split node; 0 on leaves (the root is nobody's child).
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    /// `width` values per node: class probabilities, a regression value, or a boosting score.
    pub value: Vec<f64>,
    /// Training rows (weighted by bootstrap multiplicity) that reached each node.
    pub samples: Vec<u32>,
    pub width: usize,
    /// The nodes packed for prediction (one cache line per visit), built on first use.
    #[serde(skip)]
    packed: OnceLock<Vec<PackedNode>>,
}

/// A node as prediction walks it: 16 bytes, the missing direction in the feature's top bit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PackedNode {
    threshold: f32,
    feature_and_missing: u32,
    left: u32,
    right: u32,
}

const MISSING_LEFT_BIT: u32 = 1 << 31;

impl Tree {
    pub fn nodes(&self) -> usize {
        self.feature.len()
    }
    pub fn is_leaf(&self, node: usize) -> bool {
        self.left[node] == 0
    }

    fn packed(&self) -> &[PackedNode] {
        self.packed.get_or_init(|| {
            (0..self.nodes())
                .map(|i| PackedNode {
                    threshold: self.threshold[i],
                    feature_and_missing: self.feature[i] | if self.missing_left[i] { MISSING_LEFT_BIT } else { 0 },
                    left: self.left[i],
                    right: self.right[i],
                })
                .collect()
        })
    }

    /// The leaf that `row` (one value per feature, `NaN` for missing) lands in.
    #[inline]
    pub fn leaf(&self, row: impl Fn(usize) -> f32) -> usize {
        let nodes = self.packed();
        let mut node = nodes[0];
        let mut index = 0u32;
        while node.left != 0 {
            let x = row((node.feature_and_missing & !MISSING_LEFT_BIT) as usize);
            let go_left =
                if x.is_nan() { node.feature_and_missing & MISSING_LEFT_BIT != 0 } else { x <= node.threshold };
            index = if go_left { node.left } else { node.right };
            node = nodes[index as usize];
        }
        index as usize
    }

    pub fn leaf_value(&self, node: usize) -> &[f64] {
        &self.value[node * self.width..(node + 1) * self.width]
    }

    /// Checks the arrays are consistent (a loaded file could say anything).
    pub fn validate(&self, n_features: usize) -> Result<(), String> {
        let n = self.nodes();
        let lens =
            [self.threshold.len(), self.missing_left.len(), self.left.len(), self.right.len(), self.samples.len()];
        if n == 0 || lens.iter().any(|&l| l != n) || self.value.len() != n * self.width {
            return Err("tree arrays have different lengths".into());
        }
        for i in 0..n {
            if self.left[i] != 0 {
                let (l, r) = (self.left[i] as usize, self.right[i] as usize);
                // Children come after their parent, which also rules out cycles.
                if l <= i || r <= i || l >= n || r >= n || self.feature[i] as usize >= n_features {
                    return Err(format!("tree node {i} points outside the tree"));
                }
            }
        }
        Ok(())
    }
}

/// What a split is worth and what a leaf holds.
#[derive(Debug, Clone, Copy)]
pub enum Objective {
    /// Classification by Gini impurity; channels are per-class weights; leaves hold class
    /// probabilities.
    Gini { classes: usize },
    /// Regression by squared error; channels `[sum y, n]`; leaves hold the mean.
    Variance,
    /// Gradient boosting; channels `[gradient, hessian, n]`; leaves hold
    /// `-learning_rate * G / (H + l2)`.
    Newton { l2: f64, learning_rate: f64, min_hessian: f64 },
}

impl Objective {
    pub fn channels(&self) -> usize {
        match self {
            Objective::Gini { classes } => *classes,
            Objective::Variance => 2,
            Objective::Newton { .. } => 3,
        }
    }
    fn width(&self) -> usize {
        match self {
            Objective::Gini { classes } => *classes,
            _ => 1,
        }
    }
    #[inline]
    fn count(&self, s: &[f64]) -> f64 {
        match self {
            Objective::Gini { .. } => s.iter().sum(),
            Objective::Variance => s[1],
            Objective::Newton { .. } => s[2],
        }
    }
    /// A node's score; a split's gain is `score(left) + score(right) - score(parent)`.
    #[inline]
    fn score(&self, s: &[f64]) -> f64 {
        match self {
            Objective::Gini { .. } => {
                let n: f64 = s.iter().sum();
                if n <= 0.0 { 0.0 } else { s.iter().map(|c| c * c).sum::<f64>() / n }
            }
            Objective::Variance => {
                if s[1] <= 0.0 {
                    0.0
                } else {
                    s[0] * s[0] / s[1]
                }
            }
            Objective::Newton { l2, .. } => s[0] * s[0] / (s[1] + l2),
        }
    }
    fn leaf_value(&self, s: &[f64], out: &mut Vec<f64>) {
        match self {
            Objective::Gini { .. } => {
                let n: f64 = s.iter().sum();
                out.extend(s.iter().map(|c| if n > 0.0 { c / n } else { 0.0 }));
            }
            Objective::Variance => out.push(if s[1] > 0.0 { s[0] / s[1] } else { 0.0 }),
            Objective::Newton { l2, learning_rate, .. } => {
                let denominator = s[1] + l2;
                out.push(if denominator > 0.0 { -learning_rate * s[0] / denominator } else { 0.0 });
            }
        }
    }
}

/// The split arithmetic of one [`Objective`], as a type so the split scan is compiled for each.
trait Scorer {
    fn count(&self, s: &[f64]) -> f64;
    fn score(&self, s: &[f64]) -> f64;
    fn child_ok(&self, s: &[f64]) -> bool;
}

struct Gini {
    min_leaf: f64,
}
struct Variance {
    min_leaf: f64,
}
struct Newton {
    l2: f64,
    min_hessian: f64,
    min_leaf: f64,
}

impl Scorer for Gini {
    #[inline(always)]
    fn count(&self, s: &[f64]) -> f64 {
        s.iter().sum()
    }
    #[inline(always)]
    fn score(&self, s: &[f64]) -> f64 {
        Objective::Gini { classes: s.len() }.score(s)
    }
    #[inline(always)]
    fn child_ok(&self, s: &[f64]) -> bool {
        self.count(s) >= self.min_leaf
    }
}

impl Scorer for Variance {
    #[inline(always)]
    fn count(&self, s: &[f64]) -> f64 {
        s[1]
    }
    #[inline(always)]
    fn score(&self, s: &[f64]) -> f64 {
        if s[1] <= 0.0 { 0.0 } else { s[0] * s[0] / s[1] }
    }
    #[inline(always)]
    fn child_ok(&self, s: &[f64]) -> bool {
        s[1] >= self.min_leaf
    }
}

impl Scorer for Newton {
    #[inline(always)]
    fn count(&self, s: &[f64]) -> f64 {
        s[2]
    }
    #[inline(always)]
    fn score(&self, s: &[f64]) -> f64 {
        s[0] * s[0] / (s[1] + self.l2)
    }
    #[inline(always)]
    fn child_ok(&self, s: &[f64]) -> bool {
        s[2] >= self.min_leaf && s[1] >= self.min_hessian
    }
}

/// Limits on a tree's growth.
#[derive(Debug, Clone, Copy)]
pub struct GrowLimits {
    pub max_depth: Option<usize>,
    /// Grow best-first up to this many leaves; depth-first without limit when `None`.
    pub max_leaves: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    /// Features considered per split (all when >= the feature count).
    pub max_features: usize,
    /// Smallest gain worth a split.
    pub min_gain: f64,
}

/// A grown tree, the gain each feature contributed, and each leaf's rows, which boosting uses to
/// update its scores without re-predicting: leaf `node` holds `rows[start..end]`.
pub struct Grown {
    pub tree: Tree,
    pub importance: Vec<f64>,
    pub rows: Vec<u32>,
    pub leaves: Vec<(usize, usize, usize)>,
}

impl Grown {
    /// Each leaf's node and rows.
    pub fn leaf_rows(&self) -> impl Iterator<Item = (usize, &[u32])> {
        self.leaves.iter().map(|&(node, start, end)| (node, &self.rows[start..end]))
    }
}

struct Candidate {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    stats: Vec<f64>,
    hist: Option<Vec<f64>>,
    best: Option<BestSplit>,
}

#[derive(Clone)]
struct BestSplit {
    feature: usize,
    bin: usize,
    missing_left: bool,
    gain: f64,
    left: Vec<f64>,
}

/// Grows one tree on `rows` (indices into `binned`, repeats allowed) whose per-row statistics
/// are `row_stats` (`objective.channels()` per row, row-major over all binned rows).
pub fn grow(
    binned: &Binned,
    mapper: &BinMapper,
    rows: Vec<u32>,
    row_stats: &[f64],
    objective: Objective,
    limits: &GrowLimits,
    rng: &mut impl Rng,
) -> Grown {
    let c = objective.channels();
    let n_features = binned.columns.len();
    let all_features = limits.max_features >= n_features;
    let mut g = Grower {
        binned,
        mapper,
        row_stats,
        objective,
        limits,
        channels: c,
        rows,
        tree: Tree {
            feature: vec![],
            threshold: vec![],
            missing_left: vec![],
            left: vec![],
            right: vec![],
            value: vec![],
            samples: vec![],
            width: objective.width(),
            packed: OnceLock::new(),
        },
        importance: vec![0.0; n_features],
        scratch: Vec::new(),
    };
    let n = g.rows.len();
    let mut stats = vec![0.0; c];
    for &r in &g.rows {
        let s = &row_stats[r as usize * c..r as usize * c + c];
        stats.iter_mut().zip(s).for_each(|(a, b)| *a += b);
    }
    let root = g.new_node(&stats);
    let features = g.pick_features(all_features, rng);
    let hist = g.histogram(0, n, &features);
    let best = g.best_split(&hist, &features, &stats, 0, n);
    let mut open =
        vec![Candidate { node: root, start: 0, end: n, depth: 0, stats, hist: all_features.then_some(hist), best }];
    let mut leaves_done = Vec::new();
    let mut leaves = 1usize;
    while !open.is_empty() {
        // Best-first under a leaf budget, depth-first (bounded memory) otherwise.
        let pick = if limits.max_leaves.is_some() {
            let mut best_i = 0;
            for (i, cand) in open.iter().enumerate() {
                if cand.best.as_ref().map_or(f64::MIN, |b| b.gain)
                    > open[best_i].best.as_ref().map_or(f64::MIN, |b| b.gain)
                {
                    best_i = i;
                }
            }
            best_i
        } else {
            open.len() - 1
        };
        let cand = open.swap_remove(pick);
        let budget_left = limits.max_leaves.is_none_or(|m| leaves < m);
        let Some(split) = cand.best.clone().filter(|_| budget_left) else {
            leaves_done.push((cand.node, cand.start, cand.end));
            continue;
        };
        leaves += 1;
        let mid = g.partition(cand.start, cand.end, &split);
        let right_stats: Vec<f64> = cand.stats.iter().zip(&split.left).map(|(p, l)| p - l).collect();
        let left_node = g.new_node(&split.left);
        let right_node = g.new_node(&right_stats);
        g.tree.feature[cand.node] = split.feature as u32;
        g.tree.threshold[cand.node] = g.threshold(split.feature, split.bin);
        g.tree.missing_left[cand.node] = split.missing_left;
        g.tree.left[cand.node] = left_node as u32;
        g.tree.right[cand.node] = right_node as u32;
        g.importance[split.feature] += split.gain;

        let depth = cand.depth + 1;
        let children = [(left_node, cand.start, mid, split.left.clone()), (right_node, mid, cand.end, right_stats)];
        // Histograms: build the smaller child's, subtract for the larger one.
        let mut hists: [Option<Vec<f64>>; 2] = [None, None];
        if let Some(parent_hist) = cand.hist.as_ref() {
            let features: Vec<usize> = (0..n_features).collect();
            let small = if mid - cand.start <= cand.end - mid { 0 } else { 1 };
            let (_, s, e, _) = &children[small];
            let small_hist = g.histogram(*s, *e, &features);
            let large_hist: Vec<f64> = parent_hist.iter().zip(&small_hist).map(|(p, s)| p - s).collect();
            hists[small] = Some(small_hist);
            hists[1 - small] = Some(large_hist);
        }
        for ((node, start, end, stats), hist) in children.into_iter().zip(hists) {
            let can_split = limits.max_depth.is_none_or(|d| depth < d)
                && g.objective.count(&stats) >= limits.min_samples_split as f64
                && end - start >= 2;
            if !can_split {
                leaves_done.push((node, start, end));
                continue;
            }
            let (hist, features) = match hist {
                Some(h) => (h, (0..n_features).collect::<Vec<_>>()),
                None => {
                    let features = g.pick_features(all_features, rng);
                    (g.histogram(start, end, &features), features)
                }
            };
            let best = g.best_split(&hist, &features, &stats, start, end);
            if best.is_none() {
                leaves_done.push((node, start, end));
                continue;
            }
            open.push(Candidate { node, start, end, depth, stats, hist: all_features.then_some(hist), best });
        }
    }
    Grown { tree: g.tree, importance: g.importance, rows: g.rows, leaves: leaves_done }
}

struct Grower<'a> {
    binned: &'a Binned,
    mapper: &'a BinMapper,
    row_stats: &'a [f64],
    objective: Objective,
    limits: &'a GrowLimits,
    channels: usize,
    rows: Vec<u32>,
    tree: Tree,
    importance: Vec<f64>,
    scratch: Vec<u32>,
}

/// Below this many row-features per node, per-feature histograms are built on one thread.
const PARALLEL_WORK: usize = 1 << 16;
/// Below this many rows, all-feature histograms are built on one thread (splitting the rows
/// costs a zeroed histogram per thread and a reduction).
const PARALLEL_ROWS: usize = 4096;

impl Grower<'_> {
    fn new_node(&mut self, stats: &[f64]) -> usize {
        let t = &mut self.tree;
        t.feature.push(0);
        t.threshold.push(0.0);
        t.missing_left.push(false);
        t.left.push(0);
        t.right.push(0);
        t.samples.push(self.objective.count(stats).round() as u32);
        self.objective.leaf_value(stats, &mut t.value);
        t.feature.len() - 1
    }

    fn threshold(&self, feature: usize, bin: usize) -> f32 {
        self.mapper.thresholds[feature][bin]
    }

    fn pick_features(&self, all: bool, rng: &mut impl Rng) -> Vec<usize> {
        let n = self.binned.columns.len();
        if all {
            (0..n).collect()
        } else {
            let mut f = index::sample(rng, n, self.limits.max_features.max(1)).into_vec();
            f.sort_unstable();
            f
        }
    }

    /// Per-feature histograms (`stride * channels` each) of the rows at `start..end`.
    fn histogram(&self, start: usize, end: usize, features: &[usize]) -> Vec<f64> {
        let c = self.channels;
        let stride = self.mapper.stride();
        let width = stride * c;
        let rows = &self.rows[start..end];
        if features.len() == self.binned.columns.len() {
            // Every feature: one pass over the rows, reading each row's bins and statistics once.
            let n_features = features.len();
            let fill = |rows: &[u32]| {
                let mut hist = vec![0.0; width * n_features];
                match c {
                    2 => fill_by_row::<2>(&self.binned.by_row, n_features, rows, self.row_stats, &mut hist),
                    3 => fill_by_row::<3>(&self.binned.by_row, n_features, rows, self.row_stats, &mut hist),
                    _ => fill_by_row_dyn(&self.binned.by_row, n_features, rows, self.row_stats, c, &mut hist),
                }
                hist
            };
            if rows.len() < PARALLEL_ROWS {
                return fill(rows);
            }
            let chunk = rows.len().div_ceil(rayon::current_num_threads().max(1));
            return rows
                .par_chunks(chunk.max(1))
                .map(fill)
                .reduce_with(|mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                })
                .unwrap_or_else(|| vec![0.0; width * n_features]);
        }
        // A sample of features (random forests): one pass per feature over the rows'
        // statistics gathered in row order.
        let mut hist = vec![0.0; width * features.len()];
        let mut ordered = vec![0.0; rows.len() * c];
        for (o, &r) in ordered.chunks_exact_mut(c).zip(rows) {
            o.copy_from_slice(&self.row_stats[r as usize * c..r as usize * c + c]);
        }
        let fill = |(out, &f): (&mut [f64], &usize)| {
            let col = &self.binned.columns[f];
            match c {
                2 => fill_hist::<2>(col, rows, &ordered, out),
                3 => fill_hist::<3>(col, rows, &ordered, out),
                _ => fill_hist_dyn(col, rows, &ordered, c, out),
            }
        };
        if rows.len() * features.len() >= PARALLEL_WORK {
            hist.par_chunks_mut(width).zip(features.par_iter()).for_each(fill);
        } else {
            hist.chunks_mut(width).zip(features.iter()).for_each(fill);
        }
        hist
    }

    fn best_split(
        &self,
        hist: &[f64],
        features: &[usize],
        total: &[f64],
        start: usize,
        end: usize,
    ) -> Option<BestSplit> {
        if end - start < self.limits.min_samples_split.max(2) {
            return None;
        }
        // Constant channel counts and a concrete scorer let the compiler unroll and inline the
        // per-bin arithmetic.
        let min_leaf = self.limits.min_samples_leaf as f64;
        match (self.objective, self.channels) {
            (Objective::Gini { .. }, 2) => self.scan::<2, _>(hist, features, total, &Gini { min_leaf }),
            (Objective::Gini { .. }, _) => self.scan::<0, _>(hist, features, total, &Gini { min_leaf }),
            (Objective::Variance, _) => self.scan::<2, _>(hist, features, total, &Variance { min_leaf }),
            (Objective::Newton { l2, min_hessian, .. }, _) => {
                self.scan::<3, _>(hist, features, total, &Newton { l2, min_hessian, min_leaf })
            }
        }
    }

    /// Scans every feature's bins for the best threshold and missing direction. `C` is the
    /// channel count, or 0 for "as many as `self.channels`".
    fn scan<const C: usize, S: Scorer>(
        &self,
        hist: &[f64],
        features: &[usize],
        total: &[f64],
        obj: &S,
    ) -> Option<BestSplit> {
        let c = if C > 0 { C } else { self.channels };
        let parent_score = obj.score(total);
        let floor = self.limits.min_gain.max(1e-12 * parent_score.abs());
        let mut best: Option<BestSplit> = None;
        let (mut left, mut with_missing, mut right) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        for (k, &f) in features.iter().enumerate() {
            let stride = self.mapper.stride();
            let h = &hist[k * stride * c..(k + 1) * stride * c];
            let missing_at = self.mapper.missing_bin as usize * c;
            let missing = &h[missing_at..missing_at + c];
            let has_missing = obj.count(missing) > 0.0;
            left.fill(0.0);
            for b in 0..self.mapper.bins(f) - 1 {
                let bin = &h[b * c..b * c + c];
                if obj.count(bin) == 0.0 {
                    // An empty bin moves no row: the split equals the previous bin's.
                    continue;
                }
                for j in 0..c {
                    left[j] += bin[j];
                }
                for missing_left in [false, true] {
                    if missing_left && !has_missing {
                        continue;
                    }
                    let l: &[f64] = if missing_left {
                        for j in 0..c {
                            with_missing[j] = left[j] + missing[j];
                        }
                        &with_missing
                    } else {
                        &left
                    };
                    for j in 0..c {
                        right[j] = total[j] - l[j];
                    }
                    if !obj.child_ok(l) || !obj.child_ok(&right) {
                        continue;
                    }
                    let gain = obj.score(l) + obj.score(&right) - parent_score;
                    if gain > best.as_ref().map_or(floor, |s| s.gain) {
                        // Without missing values in training, missing ones go to the bigger side.
                        let missing_left = if has_missing { missing_left } else { obj.count(l) >= obj.count(&right) };
                        best = Some(BestSplit { feature: f, bin: b, missing_left, gain, left: l.to_vec() });
                    }
                }
            }
        }
        best
    }

    /// Reorders `rows[start..end]` so the split's left rows come first; returns where the right
    /// ones start.
    fn partition(&mut self, start: usize, end: usize, split: &BestSplit) -> usize {
        let col = &self.binned.columns[split.feature];
        let bin = split.bin as u8;
        let missing_left = split.missing_left;
        let missing_bin = self.mapper.missing_bin;
        self.scratch.clear();
        let mut write = start;
        for i in start..end {
            let r = self.rows[i];
            let b = col[r as usize];
            let go_left = if b == missing_bin { missing_left } else { b <= bin };
            if go_left {
                self.rows[write] = r;
                write += 1;
            } else {
                self.scratch.push(r);
            }
        }
        self.rows[write..end].copy_from_slice(&self.scratch);
        write
    }
}

#[inline]
fn fill_hist<const C: usize>(col: &[u8], rows: &[u32], ordered: &[f64], out: &mut [f64]) {
    for (&r, s) in rows.iter().zip(ordered.chunks_exact(C)) {
        let b = col[r as usize] as usize;
        let o = &mut out[b * C..b * C + C];
        for k in 0..C {
            o[k] += s[k];
        }
    }
}

#[inline]
fn fill_by_row<const C: usize>(by_row: &[u8], n_features: usize, rows: &[u32], stats: &[f64], out: &mut [f64]) {
    let width = out.len() / n_features.max(1);
    for &r in rows {
        let r = r as usize;
        let bins = &by_row[r * n_features..(r + 1) * n_features];
        let Ok(s) = <[f64; C]>::try_from(&stats[r * C..r * C + C]) else { continue };
        for (h, &b) in out.chunks_exact_mut(width).zip(bins) {
            let o = &mut h[b as usize * C..b as usize * C + C];
            for k in 0..C {
                o[k] += s[k];
            }
        }
    }
}

fn fill_by_row_dyn(by_row: &[u8], n_features: usize, rows: &[u32], stats: &[f64], c: usize, out: &mut [f64]) {
    let stride = out.len() / (n_features.max(1) * c);
    for &r in rows {
        let r = r as usize;
        let bins = &by_row[r * n_features..(r + 1) * n_features];
        let s = &stats[r * c..r * c + c];
        for (f, &b) in bins.iter().enumerate() {
            let at = (f * stride + b as usize) * c;
            out[at..at + c].iter_mut().zip(s).for_each(|(o, s)| *o += s);
        }
    }
}

fn fill_hist_dyn(col: &[u8], rows: &[u32], ordered: &[f64], c: usize, out: &mut [f64]) {
    for (&r, s) in rows.iter().zip(ordered.chunks_exact(c)) {
        let b = col[r as usize] as usize;
        out[b * c..b * c + c].iter_mut().zip(s).for_each(|(o, s)| *o += s);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::ChaCha8Rng;

    use super::*;

    fn limits() -> GrowLimits {
        GrowLimits {
            max_depth: None,
            max_leaves: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: usize::MAX,
            min_gain: 0.0,
        }
    }

    #[test]
    fn learns_a_threshold_and_a_missing_direction() {
        // Class 1 iff x > 5 or x missing.
        let x: Vec<f32> = (0..40).map(|i| if i % 10 == 9 { f32::NAN } else { (i % 10) as f32 }).collect();
        let y: Vec<usize> = x.iter().map(|v| usize::from(v.is_nan() || *v > 5.0)).collect();
        let mapper = BinMapper::fit(std::slice::from_ref(&x), 255, 0);
        let binned = mapper.transform(std::slice::from_ref(&x));
        let stats: Vec<f64> = y.iter().flat_map(|&c| if c == 1 { [0.0, 1.0] } else { [1.0, 0.0] }).collect();
        let grown = grow(
            &binned,
            &mapper,
            (0..40).collect(),
            &stats,
            Objective::Gini { classes: 2 },
            &limits(),
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        let t = &grown.tree;
        assert_eq!(t.nodes(), 3, "{t:?}");
        assert_eq!(t.threshold[0], 5.5);
        assert!(!t.missing_left[0]);
        for (xi, yi) in x.iter().zip(&y) {
            let leaf = t.leaf(|_| *xi);
            assert_eq!(t.leaf_value(leaf)[1], *yi as f64);
        }
        assert!(t.leaf(|_| 100.0) == t.right[0] as usize);
        assert!(t.validate(1).is_ok());
        assert_eq!(grown.leaf_rows().map(|(_, r)| r.len()).sum::<usize>(), 40);
    }

    #[test]
    fn leaf_budget_and_depth_are_respected() {
        let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let stats: Vec<f64> = x.iter().flat_map(|v| [(v * 0.37).sin() as f64, 1.0]).collect();
        let mapper = BinMapper::fit(std::slice::from_ref(&x), 255, 0);
        let binned = mapper.transform(std::slice::from_ref(&x));
        let leaves_with = |l: GrowLimits| {
            let rows = (0..1000).collect();
            grow(&binned, &mapper, rows, &stats, Objective::Variance, &l, &mut ChaCha8Rng::seed_from_u64(0))
                .leaves
                .len()
        };
        assert_eq!(leaves_with(GrowLimits { max_leaves: Some(7), ..limits() }), 7);
        let g_leaves = leaves_with(GrowLimits { max_depth: Some(2), ..limits() });
        assert_eq!(g_leaves, 4);
    }
}
