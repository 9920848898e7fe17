//! The native ONNX engine: loads an ONNX model, compiles its graph once, and runs it.
//!
//! Why our own interpreter and not tract (the crate the issue suggested for the standard
//! operators): the tabular models users bring (scikit-learn through `skl2onnx`, LightGBM and
//! XGBoost through `onnxmltools`, Shipyard's own export) are graphs of ONNX-ML operators glued by
//! a few dozen small standard ones (Cast, Concat, Reshape, MatMul, Softmax, ArgMax...). tract
//! 0.23.9 implements only 6 of the ONNX-ML operators, refuses half of the standard exports, and
//! runs its tree ensembles 30 to 1,100 times slower than onnxruntime
//! (`../shared/anchors/RESULTS-rust-stack.md`); the operators that matter would all be ours
//! anyway. What tract would add, broad coverage of deep-learning operators, costs about five
//! minutes of a cold release build on two cores (twice, with clippy) and is what the optional
//! onnxruntime engine is for. So the engine is this module: a compile step that resolves every
//! node to a kernel (refusing unknown operators by name, all at once), folds constant
//! subgraphs, and plans when each intermediate value can be freed; and a run step that walks
//! the nodes in order.
//!
//! - [`value`]: tensors and the `seq(map)` of `ZipMap`.
//! - [`attrs`]: node attributes.
//! - [`ops`]: the kernels, standard and ONNX-ML.
//! - [`ort_engine`]: the optional second engine, ONNX Runtime loaded at run time.

pub mod attrs;
pub mod ops;
pub mod ort_engine;
pub mod value;

use std::collections::{BTreeSet, HashMap};

use prost::Message;
use shipyard_core::onnx_proto::{ModelProto, TypeProto};

use self::attrs::Attrs;
use self::ops::{BuildError, NodeCtx, Op};
pub use self::value::{Data, ElemType, MapKeys, Tensor, Value};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("not a readable ONNX model: {0}")]
    Decode(String),
    /// Operators the native engine does not implement, listed as `domain:Op` (standard ones bare).
    #[error(
        "the native engine does not implement {}: {}; run this model with the onnxruntime engine (--engine onnxruntime, with ORT_DYLIB_PATH pointing at libonnxruntime)",
        if .operators.len() == 1 { "this operator" } else { "these operators" },
        .operators.join(", ")
    )]
    Unsupported { operators: Vec<String> },
    #[error("node {node:?} ({op}): {message}")]
    Node { node: String, op: String, message: String },
    #[error("input {name:?}: {message}")]
    Input { name: String, message: String },
}

/// What a graph input or output holds.
#[derive(Clone, Debug, PartialEq)]
pub enum IoType {
    /// A tensor: element type (`None` when the engine has no such type) and dimensions
    /// (`None` for a symbolic one such as the batch).
    Tensor {
        elem: Option<ElemType>,
        elem_name: &'static str,
        dims: Option<Vec<Option<usize>>>,
    },
    /// `seq(map(...))`, what `ZipMap` produces.
    SeqMap,
    Other,
}

/// A graph input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct IoSpec {
    pub name: String,
    pub ty: IoType,
}

fn io_type(ty: Option<&TypeProto>) -> IoType {
    let Some(ty) = ty else { return IoType::Other };
    if let Some(t) = &ty.tensor_type {
        let dims = t.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| d.dim_value.and_then(|v| usize::try_from(v).ok()).filter(|_| d.dim_param.is_none()))
                .collect()
        });
        return IoType::Tensor {
            elem: ElemType::from_onnx(t.elem_type),
            elem_name: value::onnx_type_name(t.elem_type),
            dims,
        };
    }
    if ty.sequence_type.as_ref().and_then(|s| s.elem_type.as_ref()).is_some_and(|e| e.map_type.is_some()) {
        return IoType::SeqMap;
    }
    IoType::Other
}

struct CompiledNode {
    name: String,
    op_type: String,
    kernel: Box<dyn Op>,
    /// Value slots read (`None` for an omitted optional input).
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
    /// Slots no later node reads and no graph output is: freed after this node.
    release: Vec<usize>,
}

/// A loaded, compiled ONNX model.
pub struct OnnxModel {
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// The operators of the graph as `domain:Op` (standard ones bare), sorted.
    pub operators: Vec<String>,
    /// The model's `metadata_props`.
    pub metadata: Vec<(String, String)>,
    /// Class labels of the classifier operator whose scores reach an output, if any.
    pub class_labels: Option<MapKeys>,
    nodes: Vec<CompiledNode>,
    /// Constant value per slot (initializers and folded subgraphs).
    constants: Vec<Option<Value>>,
    input_slots: Vec<usize>,
    output_slots: Vec<usize>,
    slots: usize,
}

fn operator_name(domain: &str, op: &str) -> String {
    if domain.is_empty() || domain == "ai.onnx" { op.to_owned() } else { format!("{domain}:{op}") }
}

/// A model's graph inputs and outputs and its classifier's labels, without compiling it (what
/// the onnxruntime engine needs to know).
pub struct Description {
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    pub class_labels: Option<MapKeys>,
}

/// Reads a model's interface.
pub fn describe(bytes: &[u8]) -> Result<Description, OnnxError> {
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::Decode("the model has no graph".into()))?;
    let constant: std::collections::HashSet<&str> = graph.initializer.iter().map(|i| i.name.as_str()).collect();
    Ok(Description {
        inputs: graph
            .input
            .iter()
            .filter(|vi| !constant.contains(vi.name.as_str()))
            .map(|vi| IoSpec { name: vi.name.clone(), ty: io_type(vi.r#type.as_ref()) })
            .collect(),
        outputs: graph
            .output
            .iter()
            .map(|vi| IoSpec { name: vi.name.clone(), ty: io_type(vi.r#type.as_ref()) })
            .collect(),
        class_labels: ops::class_labels(graph),
    })
}

impl OnnxModel {
    /// Decodes and compiles a model. Every unsupported operator is named in one error.
    pub fn from_bytes(bytes: &[u8]) -> Result<OnnxModel, OnnxError> {
        let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
        Self::from_proto(&model)
    }

    /// Compiles a decoded model.
    pub fn from_proto(model: &ModelProto) -> Result<OnnxModel, OnnxError> {
        let graph = model.graph.as_ref().ok_or_else(|| OnnxError::Decode("the model has no graph".into()))?;
        if graph.node.is_empty() && graph.output.is_empty() {
            return Err(OnnxError::Decode("the graph is empty".into()));
        }
        let opset = |domain: &str| {
            model
                .opset_import
                .iter()
                .find(|o| o.domain == domain || (domain.is_empty() && o.domain == "ai.onnx"))
                .map(|o| o.version)
        };
        let default_opset = opset("").unwrap_or(1);
        let ml_opset = opset(shipyard_core::onnx_proto::ML_DOMAIN).unwrap_or(1);

        // Value names to slots.
        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        let intern = |name: &str, slot_of: &mut HashMap<String, usize>, names: &mut Vec<String>| -> usize {
            if let Some(&s) = slot_of.get(name) {
                return s;
            }
            let s = names.len();
            names.push(name.to_owned());
            slot_of.insert(name.to_owned(), s);
            s
        };

        let mut constants: Vec<Option<Value>> = Vec::new();
        for init in &graph.initializer {
            let s = intern(&init.name, &mut slot_of, &mut names);
            let t = Tensor::from_proto(init).map_err(OnnxError::Decode)?;
            constants.resize(names.len(), None);
            constants[s] = Some(Value::Tensor(t));
        }
        // Graph inputs that are also initializers are constants with a default; treat them as
        // constants (the usual export) and only the rest as inputs.
        let mut inputs = Vec::new();
        let mut input_slots = Vec::new();
        for vi in &graph.input {
            let s = intern(&vi.name, &mut slot_of, &mut names);
            constants.resize(names.len(), None);
            if constants[s].is_none() {
                inputs.push(IoSpec { name: vi.name.clone(), ty: io_type(vi.r#type.as_ref()) });
                input_slots.push(s);
            }
        }

        // Topological order (ONNX requires it; some tools still write nodes out of order).
        let order = topological_order(graph)?;

        let mut unsupported = BTreeSet::new();
        let mut operators = BTreeSet::new();
        let mut nodes = Vec::with_capacity(order.len());
        for &i in &order {
            let node = &graph.node[i];
            operators.insert(operator_name(&node.domain, &node.op_type));
            let ins: Vec<Option<usize>> = node
                .input
                .iter()
                .map(|n| if n.is_empty() { None } else { Some(intern(n, &mut slot_of, &mut names)) })
                .collect();
            let outs: Vec<usize> = node.output.iter().map(|n| intern(n, &mut slot_of, &mut names)).collect();
            constants.resize(names.len(), None);
            let const_inputs: Vec<Option<&Tensor>> =
                ins.iter().map(|s| s.and_then(|s| constants[s].as_ref()).and_then(Value::tensor)).collect();
            let is_ml = node.domain == shipyard_core::onnx_proto::ML_DOMAIN;
            let ctx = NodeCtx {
                node,
                attrs: Attrs::of(node),
                opset: if is_ml { ml_opset } else { default_opset },
                const_inputs,
            };
            let kernel = match ops::build(&ctx) {
                Ok(k) => k,
                Err(BuildError::Unsupported) => {
                    unsupported.insert(operator_name(&node.domain, &node.op_type));
                    continue;
                }
                Err(BuildError::Invalid(message)) => {
                    return Err(OnnxError::Node { node: node.name.clone(), op: node.op_type.clone(), message });
                }
            };
            // Fold nodes whose inputs are all constant.
            let foldable = ins.iter().all(|s| s.is_none_or(|s| constants[s].is_some()));
            if foldable {
                let refs: Vec<Option<&Value>> = ins.iter().map(|s| s.and_then(|s| constants[s].as_ref())).collect();
                let folded = kernel.run(&refs).map_err(|message| OnnxError::Node {
                    node: node.name.clone(),
                    op: node.op_type.clone(),
                    message,
                })?;
                for (o, v) in outs.iter().zip(folded) {
                    constants[*o] = Some(v);
                }
                continue;
            }
            nodes.push(CompiledNode {
                name: node.name.clone(),
                op_type: node.op_type.clone(),
                kernel,
                inputs: ins,
                outputs: outs,
                release: Vec::new(),
            });
        }
        if !unsupported.is_empty() {
            return Err(OnnxError::Unsupported { operators: unsupported.into_iter().collect() });
        }

        let mut outputs = Vec::new();
        let mut output_slots = Vec::new();
        for vi in &graph.output {
            let s = *slot_of
                .get(&vi.name)
                .ok_or_else(|| OnnxError::Decode(format!("graph output {:?} is produced by no node", vi.name)))?;
            outputs.push(IoSpec { name: vi.name.clone(), ty: io_type(vi.r#type.as_ref()) });
            output_slots.push(s);
        }
        constants.resize(names.len(), None);

        // Release plan: each intermediate slot is dropped after its last reader.
        let mut last_reader: HashMap<usize, usize> = HashMap::new();
        for (k, n) in nodes.iter().enumerate() {
            for s in n.inputs.iter().flatten() {
                last_reader.insert(*s, k);
            }
        }
        for (s, k) in last_reader {
            if constants[s].is_none() && !output_slots.contains(&s) {
                nodes[k].release.push(s);
            }
        }

        let class_labels = ops::class_labels(graph);
        Ok(OnnxModel {
            inputs,
            outputs,
            operators: operators.into_iter().collect(),
            metadata: model.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect(),
            class_labels,
            nodes,
            constants,
            input_slots,
            output_slots,
            slots: names.len(),
        })
    }

    /// Runs the graph on one value per graph input (in [`OnnxModel::inputs`] order) and returns
    /// one value per graph output, in order. Checks element types and fixed dimensions. Inputs
    /// are borrowed: nothing is copied on the way in.
    pub fn run(&self, inputs: &[Value]) -> Result<Vec<Value>, OnnxError> {
        if inputs.len() != self.inputs.len() {
            return Err(OnnxError::Input {
                name: self.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
                message: format!("the model takes {} inputs, {} given", self.inputs.len(), inputs.len()),
            });
        }
        // Per slot: a graph input (borrowed), a computed value (owned), or nothing yet.
        let mut given: Vec<Option<&Value>> = vec![None; self.slots];
        for ((spec, slot), value) in self.inputs.iter().zip(&self.input_slots).zip(inputs) {
            match value {
                Value::Tensor(t) => check_input(spec, t)?,
                Value::SeqMap { .. } => {
                    return Err(OnnxError::Input { name: spec.name.clone(), message: "expected a tensor".into() });
                }
            }
            given[*slot] = Some(value);
        }
        let mut values: Vec<Option<Value>> = Vec::with_capacity(self.slots);
        values.resize_with(self.slots, || None);
        for node in &self.nodes {
            let produced = {
                let refs: Vec<Option<&Value>> = node
                    .inputs
                    .iter()
                    .map(|s| s.and_then(|s| self.constants[s].as_ref().or(given[s]).or(values[s].as_ref())))
                    .collect();
                node.kernel.run(&refs).map_err(|message| OnnxError::Node {
                    node: node.name.clone(),
                    op: node.op_type.clone(),
                    message,
                })?
            };
            for (slot, v) in node.outputs.iter().zip(produced) {
                values[*slot] = Some(v);
            }
            for s in &node.release {
                values[*s] = None;
            }
        }
        self.output_slots
            .iter()
            .zip(&self.outputs)
            .map(|(s, spec)| {
                values[*s].take().or_else(|| given[*s].cloned()).or_else(|| self.constants[*s].clone()).ok_or_else(
                    || OnnxError::Node {
                        node: spec.name.clone(),
                        op: "output".into(),
                        message: "no value was produced".into(),
                    },
                )
            })
            .collect()
    }
}

fn check_input(spec: &IoSpec, t: &Tensor) -> Result<(), OnnxError> {
    let IoType::Tensor { elem, elem_name, dims } = &spec.ty else { return Ok(()) };
    let err = |message: String| OnnxError::Input { name: spec.name.clone(), message };
    if *elem != Some(t.elem_type()) {
        return Err(err(format!("expected {elem_name} values, got {}", t.elem_type().name())));
    }
    if let Some(dims) = dims {
        if dims.len() != t.shape.len() {
            return Err(err(format!("expected {} dimensions, got shape {:?}", dims.len(), t.shape)));
        }
        for (k, (want, got)) in dims.iter().zip(&t.shape).enumerate() {
            if let Some(w) = want
                && w != got
            {
                return Err(err(format!("dimension {k} must be {w}, got {got} (shape {:?})", t.shape)));
            }
        }
    }
    Ok(())
}

fn topological_order(graph: &shipyard_core::onnx_proto::GraphProto) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in &n.output {
            if !o.is_empty() && producer.insert(o.as_str(), i).is_some() {
                return Err(OnnxError::Decode(format!("value {o:?} is produced by two nodes")));
            }
        }
    }
    let mut state = vec![0u8; graph.node.len()]; // 0 new, 1 visiting, 2 done
    let mut order = Vec::with_capacity(graph.node.len());
    for start in 0..graph.node.len() {
        if state[start] != 0 {
            continue;
        }
        // Iterative depth-first search over producers.
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some((n, next)) = stack.pop() {
            let inputs = &graph.node[n].input;
            if next < inputs.len() {
                stack.push((n, next + 1));
                if let Some(&p) = producer.get(inputs[next].as_str()) {
                    match state[p] {
                        0 => {
                            state[p] = 1;
                            stack.push((p, 0));
                        }
                        1 => return Err(OnnxError::Decode("the graph has a cycle".into())),
                        _ => {}
                    }
                }
            } else {
                state[n] = 2;
                order.push(n);
            }
        }
    }
    Ok(order)
}
