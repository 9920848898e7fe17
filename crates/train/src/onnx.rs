//! ONNX export of trained models, so they run on any ONNX runtime (onnxruntime, edge runtimes).
//!
//! The graph takes one `[N, 1]` input per feature, named as the feature: `float` for numeric
//! features, `string` for categorical ones (booleans as `"true"`/`"false"`). It applies the model's
//! own input handling, then the model:
//! - trees, forests and boosting: categorical levels through `ai.onnx.ml.LabelEncoder` to their
//!   rank (unseen levels to `NaN`), then `ai.onnx.ml.TreeEnsembleRegressor` with each node's
//!   learned missing-value direction; forests sum leaf probabilities pre-divided by the tree
//!   count, boosting sums raw scores from the baseline;
//! - linear models: `IsNaN`/`Where` mean imputation, centring and scaling, `ai.onnx.ml`
//!   one-hot encoding (unseen levels all zeros), then `MatMul` and `Add`.
//!
//! Classifiers end in `Sigmoid` or `Softmax` as the model does, and output `label` (`[N]`, the
//! class labels) and `probabilities` (`[N, K]`); regressors output `variable` (`[N, 1]`).
//! Inference is in `float`: thresholds are `f32` already (see [`crate::binning`]), so tree paths
//! match Shipyard's exactly and outputs agree to float rounding.
//!
//! The protobuf messages are [`shipyard_core::onnx_proto`]'s, shared with the inference engine.

use prost::Message;
use shipyard_core::onnx_proto::attribute_type::{
    FLOAT as ATTR_FLOAT, FLOATS as ATTR_FLOATS, INT as ATTR_INT, INTS as ATTR_INTS, STRING as ATTR_STRING,
    STRINGS as ATTR_STRINGS,
};
use shipyard_core::onnx_proto::data_type::{FLOAT, INT64, STRING};
use shipyard_core::onnx_proto::*;

use crate::encode::LinearColumn;
use crate::ensemble::Combine;
use crate::frame::Task;
use crate::model::{Body, Model};

/// Default-domain opset (Softmax over one axis, IsNaN, Where, ArgMax `keepdims`).
const OPSET: i64 = 13;
/// `ai.onnx.ml` opset: TreeEnsembleRegressor v3 (missing-value tracking), LabelEncoder v2.
const ML_OPSET: i64 = 3;
const IR_VERSION: i64 = 8;

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i, r#type: ATTR_INT, ..Default::default() }
}
fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f, r#type: ATTR_FLOAT, ..Default::default() }
}
fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto { name: name.into(), s: s.as_bytes().to_vec(), r#type: ATTR_STRING, ..Default::default() }
}
fn attr_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto { name: name.into(), ints, r#type: ATTR_INTS, ..Default::default() }
}
fn attr_floats(name: &str, floats: Vec<f32>) -> AttributeProto {
    AttributeProto { name: name.into(), floats, r#type: ATTR_FLOATS, ..Default::default() }
}
fn attr_strings(name: &str, strings: &[String]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        strings: strings.iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: ATTR_STRINGS,
        ..Default::default()
    }
}

fn value_info(name: &str, elem_type: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(v) => Dimension { dim_value: Some(*v), dim_param: None },
            None => Dimension { dim_value: None, dim_param: Some("N".into()) },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto { elem_type, shape: Some(TensorShapeProto { dim }) }),
            ..Default::default()
        }),
    }
}

/// Builds a graph node by node with unique names.
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next: usize,
}

impl Builder {
    fn name(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{stem}_{}", self.next)
    }
    fn node(&mut self, op: &str, domain: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let out = self.name(&op.to_ascii_lowercase());
        self.node_to(op, domain, inputs, attributes, &out);
        out
    }
    fn node_to(&mut self, op: &str, domain: &str, inputs: &[&str], attribute: Vec<AttributeProto>, output: &str) {
        let name = self.name(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.to_owned()],
            name,
            op_type: op.into(),
            attribute,
            domain: domain.into(),
        });
    }
    fn floats(&mut self, stem: &str, dims: Vec<i64>, data: Vec<f32>) -> String {
        let name = self.name(stem);
        self.initializers.push(TensorProto {
            dims,
            data_type: FLOAT,
            float_data: data,
            name: name.clone(),
            ..Default::default()
        });
        name
    }
    fn int64s(&mut self, stem: &str, dims: Vec<i64>, data: Vec<i64>) -> String {
        let name = self.name(stem);
        self.initializers.push(TensorProto {
            dims,
            data_type: INT64,
            int64_data: data,
            name: name.clone(),
            ..Default::default()
        });
        name
    }
    fn strings(&mut self, stem: &str, data: &[String]) -> String {
        let name = self.name(stem);
        self.initializers.push(TensorProto {
            dims: vec![data.len() as i64],
            data_type: STRING,
            string_data: data.iter().map(|s| s.as_bytes().to_vec()).collect(),
            name: name.clone(),
            ..Default::default()
        });
        name
    }
}

/// The model as an ONNX file's bytes.
pub fn export(model: &Model) -> Vec<u8> {
    let mut b = Builder { nodes: Vec::new(), initializers: Vec::new(), next: 0 };
    let inputs: Vec<ValueInfoProto> = model
        .features
        .iter()
        .map(|f| value_info(&f.name, if f.input_type.is_categorical() { STRING } else { FLOAT }, &[None, Some(1)]))
        .collect();
    // Scores: probabilities (forests), raw scores (boosting, linear) or values (regression).
    let (scores, raw) = match &model.body {
        Body::Trees { encoder, ensemble } => {
            let mut columns = Vec::with_capacity(model.features.len());
            for (spec, levels) in model.features.iter().zip(&encoder.levels) {
                columns.push(match levels {
                    Some(levels) => {
                        let ranks: Vec<f32> = (0..levels.len()).map(|i| i as f32).collect();
                        b.node(
                            "LabelEncoder",
                            ML_DOMAIN,
                            &[&spec.name],
                            vec![
                                attr_strings("keys_strings", levels),
                                attr_floats("values_floats", ranks),
                                attr_float("default_float", f32::NAN),
                            ],
                        )
                    }
                    None => spec.name.clone(),
                });
            }
            let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
            let x = b.node("Concat", "", &refs, vec![attr_int("axis", 1)]);
            let trees = tree_ensemble(ensemble, &x, &mut b);
            (trees, matches!(ensemble.combine, Combine::Sum { .. }))
        }
        Body::Linear { encoder, weights } => {
            let mut columns = Vec::with_capacity(model.features.len());
            for (spec, col) in model.features.iter().zip(&encoder.columns) {
                columns.push(match col {
                    LinearColumn::Numeric { mean, scale } => {
                        let m = b.floats("mean", vec![], vec![*mean as f32]);
                        let s = b.floats("scale", vec![], vec![*scale as f32]);
                        let nan = b.node("IsNaN", "", &[&spec.name], vec![]);
                        let filled = b.node("Where", "", &[&nan, &m, &spec.name], vec![]);
                        let centred = b.node("Sub", "", &[&filled, &m], vec![]);
                        b.node("Div", "", &[&centred, &s], vec![])
                    }
                    LinearColumn::OneHot { levels } => {
                        let hot = b.node(
                            "OneHotEncoder",
                            ML_DOMAIN,
                            &[&spec.name],
                            vec![attr_strings("cats_strings", levels), attr_int("zeros", 1)],
                        );
                        let shape = b.int64s("shape", vec![2], vec![-1, levels.len() as i64]);
                        b.node("Reshape", "", &[&hot, &shape], vec![])
                    }
                });
            }
            let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
            let x = b.node("Concat", "", &refs, vec![attr_int("axis", 1)]);
            let width = encoder.width();
            let outputs = weights.intercepts.len();
            let mut w = vec![0.0f32; width * outputs];
            for (o, coefficients) in weights.coefficients.iter().enumerate() {
                for (j, c) in coefficients.iter().enumerate() {
                    w[j * outputs + o] = *c as f32;
                }
            }
            let w = b.floats("coefficients", vec![width as i64, outputs as i64], w);
            let intercepts =
                b.floats("intercepts", vec![outputs as i64], weights.intercepts.iter().map(|v| *v as f32).collect());
            let product = b.node("MatMul", "", &[&x, &w], vec![]);
            (b.node("Add", "", &[&product, &intercepts], vec![]), true)
        }
    };
    let outputs = match model.task {
        Task::Regression => {
            b.node_to("Identity", "", &[&scores], vec![], "variable");
            vec![value_info("variable", FLOAT, &[None, Some(1)])]
        }
        Task::Classification => {
            let k = model.classes.len() as i64;
            let proba = if !raw {
                scores
            } else if k == 2 {
                let p = b.node("Sigmoid", "", &[&scores], vec![]);
                let one = b.floats("one", vec![], vec![1.0]);
                let q = b.node("Sub", "", &[&one, &p], vec![]);
                b.node("Concat", "", &[&q, &p], vec![attr_int("axis", 1)])
            } else {
                b.node("Softmax", "", &[&scores], vec![attr_int("axis", 1)])
            };
            b.node_to("Identity", "", &[&proba], vec![], "probabilities");
            let index = b.node("ArgMax", "", &["probabilities"], vec![attr_int("axis", 1), attr_int("keepdims", 0)]);
            let integer_labels: Option<Vec<i64>> = model.classes.iter().map(|c| c.parse::<i64>().ok()).collect();
            let (labels, label_type) = match integer_labels {
                Some(ints) => (b.int64s("classes", vec![k], ints), INT64),
                None => (b.strings("classes", &model.classes), STRING),
            };
            b.node_to("Gather", "", &[&labels, &index], vec![attr_int("axis", 0)], "label");
            vec![value_info("label", label_type, &[None]), value_info("probabilities", FLOAT, &[None, Some(k)])]
        }
    };
    let graph = GraphProto {
        node: b.nodes,
        name: format!("shipyard_{}", model.kind),
        initializer: b.initializers,
        input: inputs,
        output: outputs,
    };
    ModelProto {
        ir_version: IR_VERSION,
        producer_name: "shipyard".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: "ai.shipyard".into(),
        model_version: 1,
        doc_string: format!("{} ({}) predicting '{}'", model.kind, model.task.as_str(), model.target),
        graph: Some(graph),
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: OPSET },
            OperatorSetIdProto { domain: ML_DOMAIN.into(), version: ML_OPSET },
        ],
        metadata_props: vec![
            StringStringEntryProto { key: "shipyard_kind".into(), value: model.kind.to_string() },
            StringStringEntryProto { key: "shipyard_target".into(), value: model.target.clone() },
        ],
    }
    .encode_to_vec()
}

/// One `TreeEnsembleRegressor` over `x` with as many targets as the ensemble has outputs.
fn tree_ensemble(ensemble: &crate::ensemble::Ensemble, x: &str, b: &mut Builder) -> String {
    let outputs = ensemble.outputs();
    let (mut tree_ids, mut node_ids, mut features, mut modes, mut values) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut trues, mut falses, mut missing) = (vec![], vec![], vec![]);
    let (mut t_tree, mut t_node, mut t_id, mut t_weight) = (vec![], vec![], vec![], vec![]);
    let average = matches!(ensemble.combine, Combine::Average);
    let per_tree = if average { 1.0 / ensemble.trees.len().max(1) as f64 } else { 1.0 };
    for (t, tree) in ensemble.trees.iter().enumerate() {
        for node in 0..tree.nodes() {
            tree_ids.push(t as i64);
            node_ids.push(node as i64);
            if tree.is_leaf(node) {
                features.push(0);
                modes.push("LEAF".to_owned());
                values.push(0.0);
                trues.push(0);
                falses.push(0);
                missing.push(0);
                let leaf = tree.leaf_value(node);
                if average {
                    for (class, v) in leaf.iter().enumerate() {
                        t_tree.push(t as i64);
                        t_node.push(node as i64);
                        t_id.push(class as i64);
                        t_weight.push((v * per_tree) as f32);
                    }
                } else {
                    t_tree.push(t as i64);
                    t_node.push(node as i64);
                    t_id.push((t % outputs) as i64);
                    t_weight.push(leaf[0] as f32);
                }
            } else {
                features.push(i64::from(tree.feature[node]));
                modes.push("BRANCH_LEQ".to_owned());
                values.push(tree.threshold[node]);
                trues.push(i64::from(tree.left[node]));
                falses.push(i64::from(tree.right[node]));
                missing.push(i64::from(tree.missing_left[node]));
            }
        }
    }
    let base: Vec<f32> = match &ensemble.combine {
        Combine::Sum { baseline } => baseline.iter().map(|v| *v as f32).collect(),
        Combine::Average => vec![0.0; outputs],
    };
    b.node(
        "TreeEnsembleRegressor",
        ML_DOMAIN,
        &[x],
        vec![
            attr_int("n_targets", outputs as i64),
            attr_string("aggregate_function", "SUM"),
            attr_string("post_transform", "NONE"),
            attr_floats("base_values", base),
            attr_ints("nodes_treeids", tree_ids),
            attr_ints("nodes_nodeids", node_ids),
            attr_ints("nodes_featureids", features),
            attr_strings("nodes_modes", &modes),
            attr_floats("nodes_values", values),
            attr_ints("nodes_truenodeids", trues),
            attr_ints("nodes_falsenodeids", falses),
            attr_ints("nodes_missing_value_tracks_true", missing),
            attr_ints("target_treeids", t_tree),
            attr_ints("target_nodeids", t_node),
            attr_ints("target_ids", t_id),
            attr_floats("target_weights", t_weight),
        ],
    )
}
