//! Tree ensembles (`TreeEnsembleClassifier`, `TreeEnsembleRegressor`, and the opset-5
//! `TreeEnsemble`), compiled at load into one flat array of nodes per ensemble.
//!
//! Layout: each tree is laid out depth-first with a node's false child right after it, so the
//! walk reads one 16-byte node per level and only the true branch jumps (the layout
//! onnxruntime uses too). Leaves point into one array of `(target, weight)` pairs. Rows are
//! evaluated in blocks: every tree over a block of rows while the tree is hot in cache, blocks
//! in parallel on the rayon pool for large batches. Scores accumulate in the input's float
//! type, tree by tree in model order, as onnxruntime does, so sums round the same way.
//!
//! Semantics that the specification leaves open follow onnxruntime: binary classifiers with one
//! score column (GradientBoosting, XGBoost) and the `base_values` that go with them, leaves
//! that only some classes reach, weights attached to non-leaf nodes (ignored). Ties: a label is
//! the first class with the highest score; a binary classifier with one score column predicts
//! the positive class only when its score is strictly above the threshold (0.5 for
//! probabilities, 0 for margins), so a probability of exactly 0.5 is the negative class.

use std::collections::HashMap;

use rayon::prelude::*;

use super::ml::{LabelPick, Labels, PostTransform, logistic, probit, transform_row};
use super::{BuildError, Built, NodeCtx, Op, input};
use crate::onnx::value::{Data, Tensor, Value};

/// Rows per block: every tree is walked for a block of rows before the next tree.
const BLOCK: usize = 256;
/// Walks advanced together (see `Compiled::walk_leq`).
const LANES: usize = 8;
/// Batches with at least this many rows are split across the thread pool.
const PARALLEL_ROWS: usize = 512;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Leq = 0,
    Lt = 1,
    Gte = 2,
    Gt = 3,
    Eq = 4,
    Neq = 5,
    Member = 6,
    Leaf = 7,
}

impl Mode {
    fn parse(name: &str) -> Result<Mode, String> {
        Ok(match name {
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            "LEAF" => Mode::Leaf,
            other => return Err(format!("unknown node mode {other:?}")),
        })
    }

    fn from_code(code: i64) -> Result<Mode, String> {
        Ok(match code {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            5 => Mode::Neq,
            6 => Mode::Member,
            other => return Err(format!("unknown node mode {other}")),
        })
    }
}

/// The float types scores are computed in: `f32` for float (and integer) input, `f64` for
/// double input.
pub trait Real:
    Copy
    + PartialOrd
    + Default
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::AddAssign
    + std::ops::Neg<Output = Self>
    + 'static
{
    fn from_f64(x: f64) -> Self;
    fn to_f32(self) -> f32;
    fn is_nan(self) -> bool;
    fn div_usize(self, n: usize) -> Self;
}

impl Real for f32 {
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn div_usize(self, n: usize) -> f32 {
        self / n as f32
    }
}

impl Real for f64 {
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn div_usize(self, n: usize) -> f64 {
        self / n as f64
    }
}

/// One node of the flat layout. For a leaf, `feature` is the first of its weights and
/// `true_next` their count.
#[derive(Clone, Copy)]
struct Flat<T> {
    value: T,
    feature: u32,
    true_next: u32,
    mode: Mode,
    missing_true: bool,
}

/// Where a branch leads in the source representation.
#[derive(Clone, Copy, Debug)]
enum Child {
    Node(usize),
    Leaf(usize),
}

/// A branch as the attributes describe it, before layout.
#[derive(Clone, Debug)]
struct Branch {
    feature: usize,
    mode: Mode,
    value: f64,
    missing_true: bool,
    /// For `BRANCH_MEMBER`: the set's index.
    set: usize,
    on_true: Child,
    on_false: Child,
}

/// An ensemble as parsed: branches, leaves (lists of `(target, weight)`), tree roots.
struct Source {
    branches: Vec<Branch>,
    leaves: Vec<Vec<(usize, f64)>>,
    roots: Vec<Child>,
    sets: Vec<Vec<f64>>,
}

/// The flat, typed form evaluated at run time.
struct Compiled<T> {
    nodes: Vec<Flat<T>>,
    roots: Vec<u32>,
    weights: Vec<(u32, T)>,
    sets: Vec<Vec<T>>,
    /// Every branch is `BRANCH_LEQ` (the common case, walked without the mode dispatch).
    all_leq: bool,
}

impl<T: Real> Compiled<T> {
    fn from_source(src: &Source) -> Result<Compiled<T>, String> {
        let mut nodes: Vec<Flat<T>> = Vec::with_capacity(src.branches.len() + src.leaves.len());
        let mut weights = Vec::new();
        let mut roots = Vec::with_capacity(src.roots.len());
        let limit = u32::MAX as usize;
        for &root in &src.roots {
            roots.push(nodes.len() as u32);
            // Depth-first, false child first; `patch` holds (node to patch, its true child).
            let mut stack: Vec<(Child, Option<usize>)> = vec![(root, None)];
            let mut depth_guard = 0usize;
            while let Some((child, parent)) = stack.pop() {
                depth_guard += 1;
                if depth_guard > src.branches.len() + src.leaves.len() + 1 {
                    return Err("a tree refers back to itself".into());
                }
                let at = nodes.len();
                if at >= limit {
                    return Err("the ensemble is too large".into());
                }
                if let Some(p) = parent {
                    nodes[p].true_next = at as u32;
                }
                match child {
                    Child::Leaf(l) => {
                        let ws = &src.leaves[l];
                        nodes.push(Flat {
                            value: T::default(),
                            feature: weights.len() as u32,
                            true_next: ws.len() as u32,
                            mode: Mode::Leaf,
                            missing_true: false,
                        });
                        weights.extend(ws.iter().map(|&(t, w)| (t as u32, T::from_f64(w))));
                    }
                    Child::Node(b) => {
                        let br = &src.branches[b];
                        nodes.push(Flat {
                            value: if br.mode == Mode::Member {
                                T::from_f64(br.set as f64)
                            } else {
                                T::from_f64(br.value)
                            },
                            feature: br.feature as u32,
                            true_next: 0,
                            mode: br.mode,
                            missing_true: br.missing_true,
                        });
                        // Pushed in reverse: the false child is laid out next, then the true one.
                        stack.push((br.on_true, Some(at)));
                        stack.push((br.on_false, None));
                    }
                }
            }
        }
        let all_leq = nodes.iter().all(|n| matches!(n.mode, Mode::Leq | Mode::Leaf));
        let sets = src.sets.iter().map(|s| s.iter().map(|&v| T::from_f64(v)).collect()).collect();
        Ok(Compiled { nodes, roots, weights, sets, all_leq })
    }

    /// Walks `LANES` independent (node, row) pairs to their leaves together, for ensembles of
    /// `BRANCH_LEQ` nodes: each walk is a chain of dependent loads, and interleaving them lets
    /// the memory system serve several at once.
    #[inline]
    fn walk_leq(&self, idx: &mut [u32; LANES], rows: &[&[T]; LANES]) {
        let nodes = &self.nodes;
        loop {
            let mut moving = false;
            for l in 0..LANES {
                let n = &nodes[idx[l] as usize];
                if n.mode != Mode::Leaf {
                    moving = true;
                    let x = rows[l][n.feature as usize];
                    idx[l] = if x <= n.value || (n.missing_true && x.is_nan()) { n.true_next } else { idx[l] + 1 };
                }
            }
            if !moving {
                return;
            }
        }
    }

    /// The leaf a row reaches from `root`.
    #[inline]
    fn leaf(&self, root: u32, row: &[T]) -> &Flat<T> {
        let nodes = &self.nodes;
        let mut i = root as usize;
        if self.all_leq {
            loop {
                let n = &nodes[i];
                if n.mode == Mode::Leaf {
                    return n;
                }
                let x = row[n.feature as usize];
                i = if x <= n.value || (n.missing_true && x.is_nan()) { n.true_next as usize } else { i + 1 };
            }
        }
        loop {
            let n = &nodes[i];
            if n.mode == Mode::Leaf {
                return n;
            }
            let x = row[n.feature as usize];
            let go = match n.mode {
                Mode::Leaf => unreachable!("handled above"),
                Mode::Leq => x <= n.value,
                Mode::Lt => x < n.value,
                Mode::Gte => x >= n.value,
                Mode::Gt => x > n.value,
                Mode::Eq => x == n.value,
                Mode::Neq => x != n.value,
                Mode::Member => {
                    let set = n.value.to_f32() as usize;
                    self.sets[set].contains(&x)
                }
            } || (n.missing_true && x.is_nan());
            i = if go { n.true_next as usize } else { i + 1 };
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// A compiled ensemble with how its leaf weights combine.
struct Ensemble {
    f32: Compiled<f32>,
    f64: Compiled<f64>,
    features: usize,
    targets: usize,
    trees: usize,
    aggregate: Aggregate,
}

impl Ensemble {
    /// Raw per-target scores and whether any leaf reached each target, for every row.
    fn accumulate<T: Real>(&self, compiled: &Compiled<T>, x: &[T], rows: usize) -> (Vec<T>, Vec<bool>) {
        let k = self.targets;
        let f = self.features;
        let mut scores = vec![T::default(); rows * k];
        let mut has = vec![false; rows * k];
        let add = |leaf: &Flat<T>, r: usize, scores: &mut [T], has: &mut [bool]| {
            let ws = &compiled.weights[leaf.feature as usize..(leaf.feature + leaf.true_next) as usize];
            for &(t, w) in ws {
                let at = r * k + t as usize;
                match self.aggregate {
                    Aggregate::Sum | Aggregate::Average => scores[at] += w,
                    Aggregate::Min => {
                        if !has[at] || w < scores[at] {
                            scores[at] = w;
                        }
                    }
                    Aggregate::Max => {
                        if !has[at] || w > scores[at] {
                            scores[at] = w;
                        }
                    }
                }
                has[at] = true;
            }
        };
        let row_of = |r: usize| &x[r * f..(r + 1) * f];
        let block = |start: usize, scores: &mut [T], has: &mut [bool]| {
            let n = scores.len() / k;
            let nodes = &compiled.nodes;
            if !compiled.all_leq {
                for &root in &compiled.roots {
                    for r in 0..n {
                        add(compiled.leaf(root, row_of(start + r)), r, scores, has);
                    }
                }
            } else if n == 1 {
                // One row: walk LANES trees at once; leaves are added in tree order.
                let row = row_of(start);
                for group in compiled.roots.chunks(LANES) {
                    let mut idx = [group[0]; LANES];
                    idx[..group.len()].copy_from_slice(group);
                    compiled.walk_leq(&mut idx, &[row; LANES]);
                    for &i in &idx[..group.len()] {
                        add(&nodes[i as usize], 0, scores, has);
                    }
                }
            } else {
                // Many rows: each tree walks LANES rows at once, rows keep tree order.
                for &root in &compiled.roots {
                    for r0 in (0..n).step_by(LANES) {
                        let m = LANES.min(n - r0);
                        let rows: [&[T]; LANES] = std::array::from_fn(|l| row_of(start + r0 + l.min(m - 1)));
                        let mut idx = [root; LANES];
                        compiled.walk_leq(&mut idx, &rows);
                        for (l, &i) in idx[..m].iter().enumerate() {
                            add(&nodes[i as usize], r0 + l, scores, has);
                        }
                    }
                }
            }
        };
        if rows >= PARALLEL_ROWS {
            scores
                .par_chunks_mut(BLOCK * k)
                .zip(has.par_chunks_mut(BLOCK * k))
                .enumerate()
                .for_each(|(b, (s, h))| block(b * BLOCK, s, h));
        } else {
            scores
                .chunks_mut(BLOCK * k)
                .zip(has.chunks_mut(BLOCK * k))
                .enumerate()
                .for_each(|(b, (s, h))| block(b * BLOCK, s, h));
        }
        (scores, has)
    }

    /// Checks X and runs `then` on its rows in the engine's float type.
    fn with_rows<R>(
        &self,
        t: &Tensor,
        then32: impl FnOnce(&[f32], usize) -> R,
        then64: impl FnOnce(&[f64], usize) -> R,
    ) -> Result<R, String> {
        let (rows, cols) = t.as_matrix();
        if cols < self.features {
            return Err(format!("the model reads feature {} but X has {cols} columns", self.features - 1));
        }
        // Keep only the columns the trees read, row-major, so rows are `features` wide.
        let narrow = |cols_in: usize| cols_in != self.features;
        Ok(match &t.data {
            Data::F64(v) => {
                if narrow(cols) {
                    let x: Vec<f64> =
                        (0..rows).flat_map(|r| v[r * cols..r * cols + self.features].iter().copied()).collect();
                    then64(&x, rows)
                } else {
                    then64(v, rows)
                }
            }
            _ => {
                let v = t.to_f32()?;
                if narrow(cols) {
                    let x: Vec<f32> =
                        (0..rows).flat_map(|r| v[r * cols..r * cols + self.features].iter().copied()).collect();
                    then32(&x, rows)
                } else {
                    then32(&v, rows)
                }
            }
        })
    }
}

/// Builds the source representation from the opset 1-3 attributes (`nodes_*` plus
/// `class_*`/`target_*` weights).
/// Where each `(tree id, node id)` is among a node list. Converters number trees and nodes
/// from 0 without gaps, so a table per tree answers a lookup without hashing (a 100-tree
/// forest has 266,000 nodes and 532,000 child lookups: SipHash was 40% of its load time);
/// ids far from that fall back to a hash map.
#[derive(Debug)]
enum NodeIndex {
    /// Per tree (by tree id - `first_tree`): the first node id, and position + 1 per node id
    /// (0 = no such node).
    Dense {
        first_tree: i64,
        trees: Vec<(i64, Vec<u32>)>,
    },
    Sparse(HashMap<(i64, i64), usize>),
}

impl NodeIndex {
    fn new(tree_ids: &[i64], node_ids: &[i64]) -> Result<NodeIndex, String> {
        let duplicate = |i: usize| format!("node {} of tree {} appears twice", node_ids[i], tree_ids[i]);
        let n = tree_ids.len();
        if let (Some(&lo), Some(&hi)) = (tree_ids.iter().min(), tree_ids.iter().max()) {
            // Per tree: (min node id, max node id, count).
            let span = usize::try_from(hi.saturating_sub(lo)).unwrap_or(usize::MAX);
            if span < n.max(1) * 2 + 16 && n < u32::MAX as usize {
                let mut bounds = vec![(i64::MAX, i64::MIN, 0usize); span + 1];
                for (&t, &id) in tree_ids.iter().zip(node_ids) {
                    let b = &mut bounds[(t - lo) as usize];
                    *b = (b.0.min(id), b.1.max(id), b.2 + 1);
                }
                let dense = bounds.iter().all(|&(min, max, count)| {
                    count == 0 || usize::try_from(max.saturating_sub(min)).is_ok_and(|w| w < count * 2 + 16)
                });
                if dense {
                    let mut trees: Vec<(i64, Vec<u32>)> = bounds
                        .iter()
                        .map(
                            |&(min, max, count)| {
                                if count == 0 { (0, Vec::new()) } else { (min, vec![0; (max - min) as usize + 1]) }
                            },
                        )
                        .collect();
                    for i in 0..n {
                        let (first, table) = &mut trees[(tree_ids[i] - lo) as usize];
                        let slot = &mut table[(node_ids[i] - *first) as usize];
                        if *slot != 0 {
                            return Err(duplicate(i));
                        }
                        *slot = i as u32 + 1;
                    }
                    return Ok(NodeIndex::Dense { first_tree: lo, trees });
                }
            }
        }
        let mut index = HashMap::with_capacity(n);
        for i in 0..n {
            if index.insert((tree_ids[i], node_ids[i]), i).is_some() {
                return Err(duplicate(i));
            }
        }
        Ok(NodeIndex::Sparse(index))
    }

    fn get(&self, tree: i64, node: i64) -> Option<usize> {
        match self {
            NodeIndex::Dense { first_tree, trees } => {
                let (first, table) = trees.get(usize::try_from(tree.checked_sub(*first_tree)?).ok()?)?;
                let slot = *table.get(usize::try_from(node.checked_sub(*first)?).ok()?)?;
                (slot != 0).then(|| slot as usize - 1)
            }
            NodeIndex::Sparse(index) => index.get(&(tree, node)).copied(),
        }
    }
}

fn parse_v3(ctx: &NodeCtx, prefix: &str) -> Result<(Source, usize), String> {
    let a = &ctx.attrs;
    let ints = |name: &str| a.ints(name).unwrap_or_default();
    let tree_ids = ints("nodes_treeids");
    let node_ids = ints("nodes_nodeids");
    let features = ints("nodes_featureids");
    let trues = ints("nodes_truenodeids");
    let falses = ints("nodes_falsenodeids");
    let missing = ints("nodes_missing_value_tracks_true");
    let modes = a.strings("nodes_modes").unwrap_or_default();
    let values = a.floats_or_tensor("nodes_values")?.unwrap_or_default();
    let n = tree_ids.len();
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", values.len()),
    ] {
        if len != n {
            return Err(format!("{name} has {len} entries, nodes_treeids {n}"));
        }
    }
    if !missing.is_empty() && missing.len() != n {
        return Err(format!("nodes_missing_value_tracks_true has {} entries for {n} nodes", missing.len()));
    }
    let index = NodeIndex::new(tree_ids, node_ids)?;
    let modes: Vec<Mode> = modes.iter().map(|m| Mode::parse(m)).collect::<Result<_, _>>()?;
    // Source ids: branches and leaves numbered separately.
    let mut as_child = vec![Child::Leaf(0); n];
    let (mut nb, mut nl) = (0, 0);
    for i in 0..n {
        as_child[i] = if modes[i] == Mode::Leaf {
            nl += 1;
            Child::Leaf(nl - 1)
        } else {
            nb += 1;
            Child::Node(nb - 1)
        };
    }
    let mut max_feature = 0usize;
    let mut branches = Vec::with_capacity(nb);
    for i in 0..n {
        if modes[i] == Mode::Leaf {
            continue;
        }
        let find = |id: i64, what: &str| {
            index.get(tree_ids[i], id).map(|j| as_child[j]).ok_or_else(|| {
                format!("node {id} ({what} child of node {} in tree {}) does not exist", node_ids[i], tree_ids[i])
            })
        };
        let feature = usize::try_from(features[i]).map_err(|_| format!("negative feature id {}", features[i]))?;
        max_feature = max_feature.max(feature);
        branches.push(Branch {
            feature,
            mode: modes[i],
            value: values[i],
            missing_true: missing.get(i).is_some_and(|&m| m != 0),
            set: 0,
            on_true: find(trues[i], "true")?,
            on_false: find(falses[i], "false")?,
        });
    }
    // Weights, in (tree, node) order as onnxruntime sorts them.
    let w_tree = ints(&format!("{prefix}_treeids"));
    let w_node = ints(&format!("{prefix}_nodeids"));
    let w_ids = ints(&format!("{prefix}_ids"));
    let w_values = a.floats_or_tensor(&format!("{prefix}_weights"))?.unwrap_or_default();
    if w_node.len() != w_tree.len() || w_ids.len() != w_tree.len() || w_values.len() != w_tree.len() {
        return Err(format!("{prefix}_treeids, _nodeids, _ids and _weights differ in length"));
    }
    let mut order: Vec<usize> = (0..w_tree.len()).collect();
    order.sort_by_key(|&i| (w_tree[i], w_node[i]));
    let mut leaves = vec![Vec::new(); nl];
    for i in order {
        let j = index.get(w_tree[i], w_node[i]).ok_or_else(|| {
            format!("a weight refers to node {} of tree {}, which does not exist", w_node[i], w_tree[i])
        })?;
        if let Child::Leaf(l) = as_child[j] {
            let target = usize::try_from(w_ids[i]).map_err(|_| format!("negative target id {}", w_ids[i]))?;
            leaves[l].push((target, w_values[i]));
        }
    }
    // Trees in order of appearance; each starts at its first listed node.
    let mut roots = Vec::new();
    let mut previous = None;
    for i in 0..n {
        if previous != Some(tree_ids[i]) {
            roots.push(as_child[i]);
            previous = Some(tree_ids[i]);
        }
    }
    Ok((Source { branches, leaves, roots, sets: Vec::new() }, max_feature + 1))
}

fn aggregate(name: &str) -> Result<Aggregate, String> {
    Ok(match name {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => return Err(format!("unknown aggregate_function {other:?}")),
    })
}

fn ensemble(src: Source, features: usize, targets: usize, aggregate: Aggregate) -> Result<Ensemble, String> {
    for leaf in &src.leaves {
        if let Some((t, _)) = leaf.iter().find(|(t, _)| *t >= targets) {
            return Err(format!("a leaf weight targets {t}, but there are {targets} targets"));
        }
    }
    let trees = src.roots.len();
    Ok(Ensemble {
        f32: Compiled::from_source(&src)?,
        f64: Compiled::from_source(&src)?,
        features,
        targets,
        trees,
        aggregate,
    })
}

/// Regressor scores: aggregation finished, base values added, transform applied.
fn finish_regression<T: Real>(
    e: &Ensemble,
    base: &[f64],
    post: PostTransform,
    scores: Vec<T>,
    has: Vec<bool>,
) -> Vec<f32> {
    let k = e.targets;
    let use_base = base.len() == k;
    let origin = if base.len() == 1 { base[0] } else { 0.0 };
    let mut out: Vec<f32> = Vec::with_capacity(scores.len());
    for (row, row_has) in scores.chunks(k).zip(has.chunks(k)) {
        let start = out.len();
        for (j, (&s, &h)) in row.iter().zip(row_has).enumerate() {
            let v: T = if k == 1 {
                let b = T::from_f64(origin);
                match e.aggregate {
                    Aggregate::Sum => s + b,
                    Aggregate::Average => s.div_usize(e.trees) + b,
                    Aggregate::Min | Aggregate::Max => {
                        if h {
                            s + b
                        } else {
                            b
                        }
                    }
                }
            } else {
                let b = T::from_f64(if use_base { base[j] } else { 0.0 });
                match e.aggregate {
                    Aggregate::Sum => s + b,
                    Aggregate::Average => s.div_usize(e.trees) + b,
                    Aggregate::Min | Aggregate::Max => {
                        if h {
                            s + b
                        } else {
                            b
                        }
                    }
                }
            };
            out.push(v.to_f32());
        }
        if k == 1 {
            if post == PostTransform::Probit {
                out[start] = probit(out[start]);
            }
        } else {
            transform_row(&mut out[start..], post);
        }
    }
    out
}

struct Regressor {
    ensemble: Ensemble,
    base: Vec<f64>,
    post: PostTransform,
    /// Opset-5 `TreeEnsemble` answers in the input's type; the older operators in float.
    keep_double: bool,
}

impl Op for Regressor {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let e = &self.ensemble;
        let (rows, _) = t.as_matrix();
        let y = e.with_rows(
            t,
            |x, n| {
                let (s, h) = e.accumulate(&e.f32, x, n);
                finish_regression(e, &self.base, self.post, s, h)
            },
            |x, n| {
                let (s, h) = e.accumulate(&e.f64, x, n);
                finish_regression(e, &self.base, self.post, s, h)
            },
        )?;
        let shape = vec![rows, e.targets];
        let out = if self.keep_double && t.elem_type() == crate::onnx::value::ElemType::F64 {
            Tensor::new(shape, Data::F64(y.into_iter().map(f64::from).collect()))
        } else {
            Tensor::f32(shape, y)
        };
        Ok(vec![out.into()])
    }
}

struct Classifier {
    ensemble: Ensemble,
    base: Vec<f64>,
    post: PostTransform,
    labels: Labels,
    /// Two classes, but weights for only one of them.
    binary_case: bool,
    weights_all_positive: bool,
}

impl Classifier {
    /// One row's label and probabilities, following onnxruntime's rules.
    fn finish_row<T: Real>(&self, s: &mut [T], has: &mut [bool], out: &mut [f32]) -> LabelPick {
        let k = s.len();
        let base = &self.base;
        let raw = |positive: bool| match (&self.labels, positive) {
            (Labels::Int(_), true) => LabelPick::Raw(1),
            (Labels::Int(_), false) => LabelPick::Raw(0),
            (Labels::Str(_), true) => LabelPick::Class(1),
            (Labels::Str(_), false) => LabelPick::Class(0),
        };
        if k > 2 {
            for (j, &b) in base.iter().enumerate().take(k) {
                let b = T::from_f64(b);
                if has[j] {
                    s[j] += b;
                } else {
                    has[j] = true;
                    s[j] = b;
                }
            }
            let mut best: Option<usize> = None;
            for j in 0..k {
                if has[j] && best.is_none_or(|b| s[j] > s[b]) {
                    best = Some(j);
                }
            }
            for (o, v) in out.iter_mut().zip(s.iter()) {
                *o = v.to_f32();
            }
            transform_row(out, self.post);
            return LabelPick::Class(best.unwrap_or(0));
        }
        // Two classes.
        let mut write_extra: i32 = -1;
        let mut len = 2;
        if base.len() == 2 {
            if has[1] {
                // onnxruntime assumes base_values[0] == base_values[1] here.
                s[1] = T::from_f64(base[1]) + s[0];
                s[0] = -s[1];
            } else {
                s[1] += T::from_f64(base[1]);
                s[0] += T::from_f64(base[0]);
            }
        } else if base.len() == 1 {
            s[0] += T::from_f64(base[0]);
            if !has[1] {
                len = 1;
            }
        } else if base.is_empty() {
            write_extra = 3;
            if !has[1] {
                len = 1;
            }
        }
        let positive = if len == 2 && has[1] {
            s[1]
        } else if has[0] {
            s[0]
        } else {
            T::default()
        };
        let label = if self.binary_case {
            if self.weights_all_positive {
                if positive > T::from_f64(0.5) {
                    write_extra = 0;
                    LabelPick::Class(1)
                } else {
                    write_extra = 1;
                    LabelPick::Class(0)
                }
            } else if positive > T::default() {
                write_extra = 2;
                LabelPick::Class(1)
            } else {
                write_extra = 3;
                LabelPick::Class(0)
            }
        } else {
            raw(positive > T::default())
        };
        if len == 2 {
            out[0] = s[0].to_f32();
            out[1] = s[1].to_f32();
            transform_row(out, self.post);
        } else {
            let s0 = s[0].to_f32();
            if self.post == PostTransform::Probit {
                out[0] = probit(s0);
                out[1] = 0.0;
            } else {
                match write_extra {
                    0 | 1 => {
                        out[0] = 1.0 - s0;
                        out[1] = s0;
                    }
                    2 | 3 if self.post == PostTransform::Logistic => {
                        out[0] = logistic(-s0);
                        out[1] = logistic(s0);
                    }
                    2 | 3 => {
                        out[0] = -s0;
                        out[1] = s0;
                    }
                    _ => {
                        out[0] = s0;
                        out[1] = 0.0;
                    }
                }
            }
        }
        label
    }

    fn finish<T: Real>(&self, mut scores: Vec<T>, mut has: Vec<bool>, rows: usize) -> (Vec<LabelPick>, Vec<f32>) {
        let k = self.ensemble.targets;
        let mut probabilities = vec![0.0f32; rows * k];
        let labels = scores
            .chunks_mut(k)
            .zip(has.chunks_mut(k))
            .zip(probabilities.chunks_mut(k))
            .map(|((s, h), o)| self.finish_row(s, h, o))
            .collect();
        (labels, probabilities)
    }
}

impl Op for Classifier {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let e = &self.ensemble;
        let (rows, _) = t.as_matrix();
        let (labels, probabilities) = e.with_rows(
            t,
            |x, n| {
                let (s, h) = e.accumulate(&e.f32, x, n);
                self.finish(s, h, n)
            },
            |x, n| {
                let (s, h) = e.accumulate(&e.f64, x, n);
                self.finish(s, h, n)
            },
        )?;
        Ok(vec![
            self.labels.tensor(labels.into_iter(), rows).into(),
            Tensor::f32(vec![rows, e.targets], probabilities).into(),
        ])
    }
}

fn base_values(ctx: &NodeCtx) -> Result<Vec<f64>, String> {
    Ok(ctx.attrs.floats_or_tensor("base_values")?.unwrap_or_default())
}

fn post(ctx: &NodeCtx) -> Result<PostTransform, String> {
    PostTransform::parse(&ctx.attrs.string("post_transform", "NONE"))
}

pub fn build_regressor(ctx: &NodeCtx) -> Built {
    let (src, features) = parse_v3(ctx, "target")?;
    let targets = ctx.attrs.int("n_targets", 1).max(1) as usize;
    let agg = aggregate(&ctx.attrs.string("aggregate_function", "SUM"))?;
    let ensemble = ensemble(src, features, targets, agg)?;
    Ok(Box::new(Regressor { ensemble, base: base_values(ctx)?, post: post(ctx)?, keep_double: false }))
}

pub fn build_classifier(ctx: &NodeCtx) -> Built {
    let (src, features) = parse_v3(ctx, "class")?;
    let labels = Labels::from_attrs(ctx, "classlabels_int64s");
    if labels.is_empty() {
        return Err(BuildError::Invalid("the classifier has no class labels".into()));
    }
    let classes: std::collections::HashSet<usize> = src.leaves.iter().flatten().map(|(t, _)| *t).collect();
    let weights_all_positive = src.leaves.iter().flatten().all(|(_, w)| *w >= 0.0);
    let binary_case = labels.len() == 2 && classes.len() == 1;
    let ensemble = ensemble(src, features, labels.len(), Aggregate::Sum)?;
    Ok(Box::new(Classifier {
        ensemble,
        base: base_values(ctx)?,
        post: post(ctx)?,
        labels,
        binary_case,
        weights_all_positive,
    }))
}

/// The ai.onnx.ml opset-5 `TreeEnsemble`: nodes and leaves in separate arrays, modes and
/// thresholds as tensors, set-membership splits.
pub fn build_v5(ctx: &NodeCtx) -> Built {
    let a = &ctx.attrs;
    let ints = |name: &str| a.ints(name).unwrap_or_default();
    let tensor = |name: &str| -> Result<Option<Tensor>, String> { a.tensor(name) };
    let features = ints("nodes_featureids");
    let n = features.len();
    let splits: Vec<f64> = match tensor("nodes_splits")? {
        Some(Tensor { data: Data::F64(v), .. }) => v,
        Some(t) => t.to_f32()?.iter().map(|&x| f64::from(x)).collect(),
        None => return Err(BuildError::Invalid("nodes_splits is missing".into())),
    };
    let modes: Vec<Mode> = match tensor("nodes_modes")? {
        Some(t) => t.to_i64()?.iter().map(|&m| Mode::from_code(m)).collect::<Result<_, _>>()?,
        None => vec![Mode::Leq; n],
    };
    let trues = ints("nodes_truenodeids");
    let falses = ints("nodes_falsenodeids");
    let true_leafs = ints("nodes_trueleafs");
    let false_leafs = ints("nodes_falseleafs");
    let missing = ints("nodes_missing_value_tracks_true");
    let leaf_targets = ints("leaf_targetids");
    let leaf_weights: Vec<f64> = match tensor("leaf_weights")? {
        Some(Tensor { data: Data::F64(v), .. }) => v,
        Some(t) => t.to_f32()?.iter().map(|&x| f64::from(x)).collect(),
        None => return Err(BuildError::Invalid("leaf_weights is missing".into())),
    };
    for (name, len) in [
        ("nodes_splits", splits.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
        ("nodes_trueleafs", true_leafs.len()),
        ("nodes_falseleafs", false_leafs.len()),
    ] {
        if len != n {
            return Err(BuildError::Invalid(format!("{name} has {len} entries for {n} nodes")));
        }
    }
    if leaf_targets.len() != leaf_weights.len() {
        return Err(BuildError::Invalid("leaf_targetids and leaf_weights differ in length".into()));
    }
    // Membership sets: NaN-separated, one per BRANCH_MEMBER node in node order.
    let members: Vec<f64> = match tensor("membership_values")? {
        Some(t) => t.to_f32()?.iter().map(|&x| f64::from(x)).collect(),
        None => Vec::new(),
    };
    let mut sets: Vec<Vec<f64>> = members.split(|v| v.is_nan()).map(<[f64]>::to_vec).collect();
    let child = |id: i64, leaf: i64| -> Result<Child, String> {
        let i = usize::try_from(id).map_err(|_| format!("negative node id {id}"))?;
        if leaf != 0 {
            if i >= leaf_weights.len() {
                return Err(format!("leaf {i} does not exist"));
            }
            Ok(Child::Leaf(i))
        } else {
            if i >= n {
                return Err(format!("node {i} does not exist"));
            }
            Ok(Child::Node(i))
        }
    };
    let mut branches = Vec::with_capacity(n);
    let mut max_feature = 0;
    let mut member_count = 0;
    for i in 0..n {
        let feature = usize::try_from(features[i]).map_err(|_| format!("negative feature id {}", features[i]))?;
        max_feature = max_feature.max(feature);
        let set = if modes[i] == Mode::Member {
            member_count += 1;
            member_count - 1
        } else {
            0
        };
        branches.push(Branch {
            feature,
            mode: modes[i],
            value: splits[i],
            missing_true: missing.get(i).is_some_and(|&m| m != 0),
            set,
            on_true: child(trues[i], true_leafs[i])?,
            on_false: child(falses[i], false_leafs[i])?,
        });
    }
    if member_count > sets.len() {
        return Err(BuildError::Invalid(format!("{member_count} membership splits but {} sets", sets.len())));
    }
    sets.truncate(member_count);
    let leaves: Vec<Vec<(usize, f64)>> = leaf_targets
        .iter()
        .zip(&leaf_weights)
        .map(|(&t, &w)| usize::try_from(t).map(|t| vec![(t, w)]).map_err(|_| format!("negative target id {t}")))
        .collect::<Result<_, _>>()?;
    let roots: Vec<Child> = ints("tree_roots").iter().map(|&r| child(r, 0)).collect::<Result<_, _>>()?;
    let src = Source { branches, leaves, roots, sets };
    let targets = a.int("n_targets", 1).max(1) as usize;
    let agg = match a.int("aggregate_function", 1) {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => return Err(BuildError::Invalid(format!("unknown aggregate_function {other}"))),
    };
    let post = match a.int("post_transform", 0) {
        0 => PostTransform::None,
        1 => PostTransform::Softmax,
        2 => PostTransform::Logistic,
        3 => PostTransform::SoftmaxZero,
        4 => PostTransform::Probit,
        other => return Err(BuildError::Invalid(format!("unknown post_transform {other}"))),
    };
    let ensemble = ensemble(src, max_feature + 1, targets, agg)?;
    Ok(Box::new(Regressor { ensemble, base: Vec::new(), post, keep_double: true }))
}

#[cfg(test)]
mod node_index_tests {
    use super::NodeIndex;

    #[test]
    fn dense_and_sparse_ids_find_the_same_nodes() {
        let trees = [0, 0, 0, 1, 1];
        let dense = NodeIndex::new(&trees, &[0, 1, 2, 0, 1]).unwrap();
        assert!(matches!(dense, NodeIndex::Dense { .. }));
        assert_eq!(
            (dense.get(0, 2), dense.get(1, 1), dense.get(1, 2), dense.get(2, 0)),
            (Some(2), Some(4), None, None)
        );
        assert_eq!(dense.get(-5, 0), None);
        let sparse = NodeIndex::new(&[7, 7, 1_000_000], &[0, 1 << 40, 3]).unwrap();
        assert!(matches!(sparse, NodeIndex::Sparse(_)));
        assert_eq!((sparse.get(7, 1 << 40), sparse.get(1_000_000, 3), sparse.get(7, 2)), (Some(1), Some(2), None));
        assert!(NodeIndex::new(&trees, &[0, 1, 1, 0, 1]).unwrap_err().contains("node 1 of tree 0 appears twice"));
        assert!(NodeIndex::new(&[5, 5], &[1 << 40, 1 << 40]).is_err());
    }
}
