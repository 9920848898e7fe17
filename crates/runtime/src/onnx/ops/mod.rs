//! Kernels: one per ONNX operator the native engine implements, built once per node at load.
//!
//! - [`math`]: element-wise arithmetic with broadcasting, comparisons, activations, `Where`.
//! - [`shape`]: `Cast`, `Reshape`, `Concat`, `Gather`, `Slice` and the other layout operators.
//! - [`nn`]: `MatMul`, `Gemm`, `Softmax`, `ArgMax`, reductions.
//! - [`ml`]: the ONNX-ML encoders and linear models (`Scaler`, `LabelEncoder`,
//!   `LinearClassifier`, `ZipMap`...).
//! - [`tree`]: the tree ensembles, compiled into a flat layout.
//!
//! A kernel checks its attributes when it is built (a bad model fails at load, naming the node)
//! and its inputs when it runs. Kernels return `String` errors; the graph adds the node's name.

pub mod math;
pub mod ml;
pub mod nn;
pub mod shape;
pub mod tree;

use shipyard_core::onnx_proto::{GraphProto, NodeProto};

use super::attrs::Attrs;
use super::value::{MapKeys, Tensor, Value};

/// What building a kernel sees of its node.
pub struct NodeCtx<'a> {
    pub node: &'a NodeProto,
    pub attrs: Attrs<'a>,
    /// The opset version of the node's domain.
    pub opset: i64,
    /// The node's inputs that are constant at load time (initializers, folded values).
    pub const_inputs: Vec<Option<&'a Tensor>>,
}

pub enum BuildError {
    Unsupported,
    Invalid(String),
}

impl From<String> for BuildError {
    fn from(s: String) -> BuildError {
        BuildError::Invalid(s)
    }
}

/// A compiled node.
pub trait Op: Send + Sync {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String>;
}

pub type Built = Result<Box<dyn Op>, BuildError>;

/// The tensor at input `i`.
pub fn input<'a>(inputs: &[Option<&'a Value>], i: usize) -> Result<&'a Tensor, String> {
    match inputs.get(i).copied().flatten() {
        Some(Value::Tensor(t)) => Ok(t),
        Some(Value::SeqMap { .. }) => Err(format!("input {i} must be a tensor, got a sequence of maps")),
        None => Err(format!("input {i} is missing")),
    }
}

/// The tensor at optional input `i`, if given.
pub fn optional_input<'a>(inputs: &[Option<&'a Value>], i: usize) -> Result<Option<&'a Tensor>, String> {
    match inputs.get(i).copied().flatten() {
        Some(Value::Tensor(t)) => Ok(Some(t)),
        Some(Value::SeqMap { .. }) => Err(format!("input {i} must be a tensor, got a sequence of maps")),
        None => Ok(None),
    }
}

/// Normalises a possibly negative axis against a rank.
pub fn axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// The kernel for a node, or why there is none.
pub fn build(ctx: &NodeCtx) -> Built {
    let domain = ctx.node.domain.as_str();
    let op = ctx.node.op_type.as_str();
    if domain == shipyard_core::onnx_proto::ML_DOMAIN {
        return match op {
            "TreeEnsembleClassifier" => tree::build_classifier(ctx),
            "TreeEnsembleRegressor" => tree::build_regressor(ctx),
            "TreeEnsemble" => tree::build_v5(ctx),
            _ => ml::build(ctx),
        };
    }
    if !(domain.is_empty() || domain == "ai.onnx") {
        return Err(BuildError::Unsupported);
    }
    match op {
        "MatMul" | "Gemm" | "Softmax" | "LogSoftmax" | "ArgMax" | "ArgMin" | "ReduceSum" | "ReduceMean"
        | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceSumSquare"
        | "ReduceLogSumExp" => nn::build(ctx),
        "Identity" | "Cast" | "CastLike" | "Constant" | "ConstantOfShape" | "Reshape" | "Flatten" | "Squeeze"
        | "Unsqueeze" | "Concat" | "Transpose" | "Shape" | "Size" | "Gather" | "Slice" | "Split" | "Expand"
        | "Tile" => shape::build(ctx),
        _ => math::build(ctx),
    }
}

/// The class labels of the graph's classifier: a `ZipMap`'s keys, else those of a
/// classifier operator. Used to name probability columns.
pub fn class_labels(graph: &GraphProto) -> Option<MapKeys> {
    let labels = |n: &NodeProto, ints: &str| {
        let a = Attrs::of(n);
        if let Some(s) = a.strings("classlabels_strings").filter(|s| !s.is_empty()) {
            return Some(MapKeys::Str(s));
        }
        a.ints(ints).filter(|v| !v.is_empty()).map(|v| MapKeys::Int(v.to_vec()))
    };
    let ml = |n: &&NodeProto| n.domain == shipyard_core::onnx_proto::ML_DOMAIN;
    graph.node.iter().filter(ml).find(|n| n.op_type == "ZipMap").and_then(|n| labels(n, "classlabels_int64s")).or_else(
        || {
            graph.node.iter().filter(ml).find_map(|n| match n.op_type.as_str() {
                "TreeEnsembleClassifier" => labels(n, "classlabels_int64s"),
                "LinearClassifier" | "SVMClassifier" => labels(n, "classlabels_ints"),
                _ => None,
            })
        },
    )
}
