//! A loaded model, whatever its flavor, and prediction on Arrow record batches.
//!
//! Loads a model directory (an `MLmodel` file with the `shipyard` or `onnx` flavor) or a bare
//! `.onnx` file, reads the MLflow signature when there is one, and predicts: named columns are
//! matched by name (extra columns ignored); a bare ONNX file with one 2-D input takes the
//! table's columns in order. A missing value in a column the signature marks `required` is
//! refused with its row, as is a text column where the model needs numbers.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use serde::Deserialize;
use shipyard_train::frame::{Features, Values};
use shipyard_train::{Model, Predictions};

use crate::onnx::ort_engine::{self, OrtModel};
use crate::onnx::{Data, ElemType, IoSpec, IoType, MapKeys, OnnxError, OnnxModel, Tensor, Value};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// The onnxruntime engine is unavailable or refused the model.
    #[error("{0}")]
    Engine(String),
}

/// Why a prediction was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The input does not fit the model: a column or a type is wrong. A client error.
    #[error("{0}")]
    Input(String),
    /// One row does not fit the model (zero-based `row` within the rows given).
    #[error("row {}: {message}", .row + 1)]
    Row { row: usize, message: String },
    /// The model failed on valid input.
    #[error("{0}")]
    Model(String),
}

impl PredictError {
    /// The same error with its row counted from `offset` rows earlier.
    pub fn shifted(self, offset: usize) -> PredictError {
        match self {
            PredictError::Row { row, message } => PredictError::Row { row: row + offset, message },
            other => other,
        }
    }

    /// Whether the caller, not the model, is at fault.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, PredictError::Model(_))
    }
}

/// Which engine runs an ONNX model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// The native engine when it implements every operator of the model, else onnxruntime if
    /// its library is configured.
    #[default]
    Auto,
    /// The native engine only.
    Native,
    /// ONNX Runtime (loaded at run time; see [`ort_engine`]).
    Onnxruntime,
}

/// The engine an ONNX model runs on.
enum OnnxRunner {
    Native(Box<OnnxModel>),
    /// With the graph's inputs and outputs.
    Ort(Box<OrtModel>, Vec<IoSpec>, Vec<IoSpec>),
}

impl OnnxRunner {
    /// Compiles or opens `bytes` as `choice` says.
    fn open(bytes: &[u8], choice: EngineChoice) -> Result<(OnnxRunner, &'static str), LoadError> {
        let ort = |bytes: &[u8]| -> Result<(OnnxRunner, &'static str), LoadError> {
            let description = crate::onnx::describe(bytes)?;
            let model = OrtModel::from_bytes(bytes, None, description.class_labels).map_err(LoadError::Engine)?;
            Ok((OnnxRunner::Ort(Box::new(model), description.inputs, description.outputs), "onnxruntime"))
        };
        match choice {
            EngineChoice::Onnxruntime => ort(bytes),
            EngineChoice::Native => Ok((OnnxRunner::Native(Box::new(OnnxModel::from_bytes(bytes)?)), "onnx-native")),
            EngineChoice::Auto => match OnnxModel::from_bytes(bytes) {
                Ok(model) => Ok((OnnxRunner::Native(Box::new(model)), "onnx-native")),
                Err(e @ OnnxError::Unsupported { .. }) if ort_engine::library_path().is_none() => Err(e.into()),
                Err(OnnxError::Unsupported { .. }) => ort(bytes),
                Err(e) => Err(e.into()),
            },
        }
    }

    fn run(&self, inputs: &[Value]) -> Result<Vec<Value>, PredictError> {
        match self {
            OnnxRunner::Native(model) => model.run(inputs).map_err(|e| match e {
                OnnxError::Input { .. } => PredictError::Input(e.to_string()),
                other => PredictError::Model(other.to_string()),
            }),
            OnnxRunner::Ort(model, ..) => model.run(inputs).map_err(PredictError::Model),
        }
    }

    /// The graph's inputs (initializers excluded).
    fn inputs(&self) -> &[IoSpec] {
        match self {
            OnnxRunner::Native(model) => &model.inputs,
            OnnxRunner::Ort(_, inputs, _) => inputs,
        }
    }

    /// The graph's outputs, in the order `run` returns them.
    fn outputs(&self) -> &[IoSpec] {
        match self {
            OnnxRunner::Native(model) => &model.outputs,
            OnnxRunner::Ort(_, _, outputs) => outputs,
        }
    }

    fn class_labels(&self) -> Option<&MapKeys> {
        match self {
            OnnxRunner::Native(model) => model.class_labels.as_ref(),
            OnnxRunner::Ort(model, ..) => model.class_labels(),
        }
    }
}

/// A column the model reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputColumn {
    pub name: String,
    /// MLflow's type name: `double`, `float`, `long`, `integer`, `string`, `boolean`.
    pub mlflow_type: String,
    /// Missing values are refused.
    pub required: bool,
}

/// What the model reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inputs {
    Named(Vec<InputColumn>),
    /// A bare ONNX file with one `[N, width]` input: the table's columns, in order.
    Positional {
        width: Option<usize>,
        /// The graph input's name (what MLflow's tensor input is keyed by).
        input: String,
    },
}

/// What a prediction holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Classes {
        classes: Vec<String>,
        labels: Vec<String>,
        /// `rows x classes`, row-major.
        probabilities: Vec<f64>,
        /// An ONNX model's outputs as its graph gives them.
        graph: Option<GraphOutputs>,
    },
    /// `rows x columns`, row-major (one column for a regressor).
    Values { columns: usize, values: Vec<f64>, graph: Option<GraphOutputs> },
}

/// An ONNX model's outputs under the graph's own names, shapes and element types, in graph
/// order: what Triton and `mlflow models serve` answer with. A `ZipMap` output
/// (`seq(map(key, float))`) is kept in its tensor form, `[rows, classes]` scores, with its keys.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphOutputs(pub Vec<GraphOutput>);

/// A graph output as the Open Inference Protocol's metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub name: String,
    /// `FP32`, `INT64`, `BYTES`, ...
    pub datatype: &'static str,
    /// `-1` for a symbolic dimension (the rows).
    pub shape: Vec<i64>,
}

/// One graph output.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphOutput {
    pub name: String,
    /// The first dimension is the rows.
    pub tensor: Tensor,
    /// A `ZipMap` output's keys (the class labels), one per column of `tensor`.
    pub map_keys: Option<MapKeys>,
}

impl GraphOutputs {
    /// Rows `start..start + len` of every output (each output's first dimension is the rows).
    pub fn slice_rows(&self, start: usize, len: usize) -> GraphOutputs {
        GraphOutputs(
            self.0
                .iter()
                .map(|o| {
                    let rows = o.tensor.shape.first().copied().unwrap_or(1).max(1);
                    let per_row = o.tensor.len() / rows;
                    let mut shape = o.tensor.shape.clone();
                    if let Some(first) = shape.first_mut() {
                        *first = len;
                    }
                    let data = o.tensor.data.gather(start * per_row..(start + len) * per_row);
                    GraphOutput { name: o.name.clone(), tensor: Tensor::new(shape, data), map_keys: o.map_keys.clone() }
                })
                .collect(),
        )
    }
}

impl Output {
    pub fn rows(&self) -> usize {
        match self {
            Output::Classes { labels, .. } => labels.len(),
            Output::Values { columns, values, .. } => values.len() / (*columns).max(1),
        }
    }

    /// The graph's own outputs, for an ONNX model.
    pub fn graph(&self) -> Option<&GraphOutputs> {
        match self {
            Output::Classes { graph, .. } | Output::Values { graph, .. } => graph.as_ref(),
        }
    }
}

/// How ONNX tensors are made from columns.
enum OnnxLayout {
    /// One `[N, F]` input holding every column.
    Matrix { elem: ElemType },
    /// One input per column (`[N, 1]`), or per group of `width` columns named
    /// `<input>_0 .. <input>_<width-1>` for a wider input, in graph input order.
    PerColumn(Vec<InputSlot>),
}

/// Which columns fill one graph input.
struct InputSlot {
    first: usize,
    width: usize,
    elem: ElemType,
    rank: usize,
}

enum Engine {
    Native(Box<Model>),
    Onnx { model: OnnxRunner, layout: OnnxLayout },
}

/// A model ready to predict.
pub struct LoadedModel {
    pub inputs: Inputs,
    /// What the MLmodel's signature describes.
    pub signature: SignatureKind,
    /// `shipyard` or `onnx`.
    pub flavor: &'static str,
    /// `native` (Shipyard's trained model) or `onnx-native` (the native ONNX engine).
    pub engine_name: &'static str,
    pub location: PathBuf,
    /// Missing values are predicted even in columns the signature marks `required` (which then
    /// only means the column must be present, as in MLflow): set for a scikit-learn model's
    /// conversion whose verification covered rows with missing values.
    pub missing_values_allowed: bool,
    engine: Engine,
}

/// The kind of an MLflow model signature's inputs (MLflow's scoring server answers DataFrame
/// input differently for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureKind {
    /// No signature (or a bare `.onnx` file).
    None,
    /// Named columns (`ColSpec`s).
    Columns,
    /// Tensors (`TensorSpec`s).
    Tensors,
}

#[derive(Deserialize)]
struct MlModel {
    #[serde(default)]
    flavors: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    signature: Option<SignatureYaml>,
}

#[derive(Deserialize)]
struct SignatureYaml {
    #[serde(default)]
    inputs: Option<String>,
}

#[derive(Deserialize)]
struct ColSpec {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "yes")]
    required: bool,
}

fn yes() -> bool {
    true
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> LoadError {
    LoadError::File { path: path.display().to_string(), message: message.to_string() }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| file_error(path, e))
}

/// What a model folder's `MLmodel` file says.
pub struct ModelFile {
    /// Each flavor's configuration, by flavor name.
    pub flavors: serde_json::Map<String, serde_json::Value>,
    /// The signature's named input columns, when it names them.
    pub inputs: Option<Vec<InputColumn>>,
    pub signature: SignatureKind,
}

impl ModelFile {
    /// Reads `dir/MLmodel`.
    pub fn read(dir: &Path) -> Result<ModelFile, LoadError> {
        let mlmodel_path = dir.join("MLmodel");
        let text = String::from_utf8(read(&mlmodel_path)?).map_err(|_| file_error(&mlmodel_path, "not UTF-8"))?;
        let ml: MlModel = serde_norway::from_str(&text).map_err(|e| file_error(&mlmodel_path, e))?;
        let mut kind = SignatureKind::None;
        let inputs = match ml.signature.and_then(|s| s.inputs) {
            Some(inputs) => {
                let specs: Vec<ColSpec> = serde_json::from_str(&inputs)
                    .map_err(|e| file_error(&mlmodel_path, format!("signature inputs: {e}")))?;
                kind = if specs.iter().any(|s| s.ty == "tensor") {
                    SignatureKind::Tensors
                } else {
                    SignatureKind::Columns
                };
                // Tensor signatures carry no column names: the model reads positions.
                if specs.iter().all(|s| s.name.is_some() && s.ty != "tensor") {
                    Some(
                        specs
                            .into_iter()
                            .map(|s| InputColumn {
                                name: s.name.unwrap_or_default(),
                                mlflow_type: s.ty,
                                required: s.required,
                            })
                            .collect(),
                    )
                } else {
                    None
                }
            }
            None => None,
        };
        Ok(ModelFile { flavors: ml.flavors, inputs, signature: kind })
    }

    /// Whether Shipyard's own engines run the model (the `shipyard` or `onnx` flavor).
    pub fn is_native(&self) -> bool {
        self.flavors.contains_key("shipyard") || self.flavors.contains_key("onnx")
    }
}

/// An MLflow model that only Python can run: its `python_function` flavor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonFlavor {
    /// `mlflow.sklearn`, `mlflow.pyfunc.model` (a custom `PythonModel`), ...
    pub loader_module: String,
    /// The Python version the model was saved with.
    pub python_version: Option<String>,
    /// The scikit-learn flavor's version and serialization (`cloudpickle`, `pickle`, `skops`),
    /// for a scikit-learn model.
    pub sklearn: Option<(String, String)>,
}

impl PythonFlavor {
    /// The Python flavor of a model with no flavor Shipyard runs natively.
    pub fn of(flavors: &serde_json::Map<String, serde_json::Value>) -> Option<PythonFlavor> {
        if flavors.contains_key("shipyard") || flavors.contains_key("onnx") {
            return None;
        }
        let pyfunc = flavors.get("python_function")?;
        let text = |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_owned);
        Some(PythonFlavor {
            loader_module: text(pyfunc, "loader_module").unwrap_or_else(|| "mlflow.pyfunc.model".into()),
            python_version: text(pyfunc, "python_version"),
            sklearn: flavors.get("sklearn").map(|sk| {
                (
                    text(sk, "sklearn_version").unwrap_or_default(),
                    text(sk, "serialization_format").unwrap_or_else(|| "cloudpickle".into()),
                )
            }),
        })
    }
}

impl LoadedModel {
    /// Loads a model directory (with an `MLmodel` file) or a bare `.onnx` file.
    pub fn load(path: &Path, engine: EngineChoice) -> Result<LoadedModel, LoadError> {
        if path.is_file() {
            return Self::onnx(&read(path)?, engine, None, SignatureKind::None, path);
        }
        let mlmodel_path = path.join("MLmodel");
        if !mlmodel_path.is_file() {
            // A directory saved by an older Shipyard: model.json alone.
            if path.join("model.json").is_file() {
                return Self::native(path, None, SignatureKind::None);
            }
            return Err(file_error(path, "not a model: no MLmodel file and not an .onnx file"));
        }
        let ModelFile { flavors, inputs: signature, signature: kind } = ModelFile::read(path)?;
        if flavors.contains_key("shipyard") {
            return Self::native(path, signature, kind);
        }
        if let Some(onnx) = flavors.get("onnx") {
            let file = onnx.get("data").and_then(|d| d.as_str()).unwrap_or("model.onnx");
            let model_path = path.join(file);
            if !model_path.starts_with(path) || file.contains("..") {
                return Err(file_error(&mlmodel_path, "the onnx flavor's data path leaves the model directory"));
            }
            return Self::onnx(&read(&model_path)?, engine, signature, kind, path);
        }
        if let Some(python) = PythonFlavor::of(&flavors) {
            return Err(file_error(
                &mlmodel_path,
                format!(
                    "a Python model (loader {}): it is served by Python worker processes; give the server or command --python PATH, an interpreter with the model's packages",
                    python.loader_module
                ),
            ));
        }
        let names: Vec<&String> = flavors.keys().collect();
        Err(file_error(
            &mlmodel_path,
            format!("no flavor Shipyard can run (found {names:?}; supported: shipyard, onnx, python_function)"),
        ))
    }

    fn native(path: &Path, signature: Option<Vec<InputColumn>>, kind: SignatureKind) -> Result<LoadedModel, LoadError> {
        let file = path.join("model.json");
        let text = String::from_utf8(read(&file)?).map_err(|_| file_error(&file, "not UTF-8"))?;
        let model = Model::from_json(&text).map_err(|e| file_error(&file, e))?;
        let inputs = signature.unwrap_or_else(|| {
            model
                .features
                .iter()
                .map(|f| InputColumn {
                    name: f.name.clone(),
                    mlflow_type: f.input_type.mlflow_name().into(),
                    required: false,
                })
                .collect()
        });
        Ok(LoadedModel {
            inputs: Inputs::Named(inputs),
            signature: kind,
            flavor: "shipyard",
            engine_name: "native",
            location: path.to_path_buf(),
            missing_values_allowed: false,
            engine: Engine::Native(Box::new(model)),
        })
    }

    fn onnx(
        bytes: &[u8],
        choice: EngineChoice,
        signature: Option<Vec<InputColumn>>,
        kind: SignatureKind,
        path: &Path,
    ) -> Result<LoadedModel, LoadError> {
        let (model, engine_name) = OnnxRunner::open(bytes, choice)?;
        // The model was decoded once, to compile it; its interface comes from there.
        let graph_inputs: Vec<IoSpec> = model.inputs().to_vec();
        let tensor_inputs: Vec<(ElemType, usize, Option<usize>)> = graph_inputs
            .iter()
            .map(|i| match &i.ty {
                IoType::Tensor { elem: Some(e), dims, .. } => {
                    let rank = dims.as_ref().map_or(2, Vec::len);
                    let width = dims.as_ref().and_then(|d| d.get(1).copied().flatten());
                    Ok((*e, rank, width))
                }
                IoType::Tensor { elem_name, .. } => Err(file_error(
                    path,
                    format!("input {:?} has element type {elem_name}, which is not supported", i.name),
                )),
                _ => Err(file_error(path, format!("input {:?} is not a tensor", i.name))),
            })
            .collect::<Result<_, _>>()?;
        // One numeric input holds every column; otherwise each input is one column.
        let single_matrix = tensor_inputs.len() == 1 && tensor_inputs[0].0 != ElemType::Str;
        let (inputs, layout) = if single_matrix {
            let (elem, _, width) = tensor_inputs[0];
            let inputs = match signature {
                Some(cols) => Inputs::Named(cols),
                None => Inputs::Positional { width, input: graph_inputs[0].name.clone() },
            };
            (inputs, OnnxLayout::Matrix { elem })
        } else {
            // One input per column: columns named as the graph inputs (`<input>_<j>` for the
            // columns of a wider input).
            let by_name = signature.unwrap_or_default();
            let mut cols: Vec<InputColumn> = Vec::new();
            let mut slots = Vec::new();
            for (i, &(elem, rank, width)) in graph_inputs.iter().zip(&tensor_inputs) {
                let width = if rank == 2 { width.unwrap_or(1).max(1) } else { 1 };
                let names: Vec<String> = if width == 1 {
                    vec![i.name.clone()]
                } else {
                    (0..width).map(|j| format!("{}_{j}", i.name)).collect()
                };
                slots.push(InputSlot { first: cols.len(), width, elem, rank });
                for name in names {
                    cols.push(by_name.iter().find(|c| c.name == name).cloned().unwrap_or_else(|| {
                        InputColumn {
                            name,
                            mlflow_type: match elem {
                                ElemType::Str => "string",
                                ElemType::I64 => "long",
                                ElemType::I32 => "integer",
                                ElemType::Bool => "boolean",
                                ElemType::F32 => "float",
                                ElemType::F64 => "double",
                            }
                            .into(),
                            required: false,
                        }
                    }));
                }
            }
            let layout = OnnxLayout::PerColumn(slots);
            (Inputs::Named(cols), layout)
        };
        Ok(LoadedModel {
            inputs,
            signature: kind,
            flavor: "onnx",
            engine_name,
            location: path.to_path_buf(),
            missing_values_allowed: false,
            engine: Engine::Onnx { model, layout },
        })
    }

    /// The class labels of a classifier, in probability order, when the model says them
    /// (`None` for a regressor, or an ONNX classifier without class labels).
    pub fn classes(&self) -> Option<Vec<String>> {
        match &self.engine {
            Engine::Native(model) => (!model.classes.is_empty()).then(|| model.classes.clone()),
            Engine::Onnx { model, .. } => model.class_labels().map(MapKeys::labels),
        }
    }

    /// An ONNX model's graph outputs as the Open Inference Protocol describes them (a `ZipMap`
    /// output as its `[rows, classes]` FP32 tensor form); `None` for Shipyard's own models.
    pub fn graph_output_specs(&self) -> Option<Vec<OutputSpec>> {
        let Engine::Onnx { model, .. } = &self.engine else { return None };
        let classes = model.class_labels().map_or(-1, |k| k.len() as i64);
        Some(
            model
                .outputs()
                .iter()
                .map(|o| {
                    let (datatype, shape) = match &o.ty {
                        IoType::Tensor { elem, elem_name, dims } => (
                            elem.map_or(*elem_name, ElemType::oip_name),
                            dims.as_ref()
                                .map_or_else(|| vec![-1], |d| d.iter().map(|x| x.map_or(-1, |n| n as i64)).collect()),
                        ),
                        IoType::SeqMap => ("FP32", vec![-1, classes]),
                        IoType::Other => ("BYTES", vec![-1]),
                    };
                    OutputSpec { name: o.name.clone(), datatype, shape }
                })
                .collect(),
        )
    }

    /// `native` for Shipyard's models, else the ONNX engine's name.
    pub fn platform(&self) -> &'static str {
        match &self.engine {
            Engine::Native(_) => "shipyard_native",
            Engine::Onnx { .. } => "onnx_onnxv1",
        }
    }

    /// The columns the model reads, by name (empty for a positional model).
    pub fn column_names(&self) -> Vec<String> {
        match &self.inputs {
            Inputs::Named(cols) => cols.iter().map(|c| c.name.clone()).collect(),
            Inputs::Positional { .. } => Vec::new(),
        }
    }

    /// Decodes the model's columns from `batches` and checks them.
    pub fn features(&self, batches: &[RecordBatch]) -> Result<Features, PredictError> {
        let names: Vec<String> = match &self.inputs {
            Inputs::Named(cols) => cols.iter().map(|c| c.name.clone()).collect(),
            Inputs::Positional { width, .. } => {
                let schema =
                    batches.first().map(|b| b.schema()).ok_or_else(|| PredictError::Input("no rows".into()))?;
                let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
                if let Some(w) = width
                    && *w != names.len()
                {
                    return Err(PredictError::Input(format!(
                        "the model takes {w} columns, the input has {} ({})",
                        names.len(),
                        names.join(", ")
                    )));
                }
                names
            }
        };
        let features =
            Features::from_batches(batches, Some(&names), &[]).map_err(|e| PredictError::Input(e.to_string()))?;
        if let Inputs::Named(cols) = &self.inputs {
            for (col, values) in cols.iter().zip(&features.columns) {
                let numeric_type = matches!(col.mlflow_type.as_str(), "double" | "float" | "long" | "integer");
                if numeric_type && matches!(values, Values::Categorical { .. }) {
                    return Err(PredictError::Input(format!(
                        "column '{}' must hold numbers ({}), got text",
                        col.name, col.mlflow_type
                    )));
                }
            }
        }
        if let Some((row, message)) = self.row_problems(&features).into_iter().next() {
            return Err(PredictError::Row { row, message });
        }
        Ok(features)
    }

    /// Every row that cannot be predicted, with why: a missing value in a column the signature
    /// requires, a fraction where the model needs an integer.
    pub fn row_problems(&self, features: &Features) -> Vec<(usize, String)> {
        let mut problems: Vec<(usize, String)> = Vec::new();
        if let Inputs::Named(cols) = &self.inputs {
            for (col, values) in cols.iter().zip(&features.columns) {
                if !col.required || self.missing_values_allowed {
                    continue;
                }
                let missing: Vec<usize> = match values {
                    Values::Numeric(v) => (0..v.len()).filter(|&i| v[i].is_nan()).collect(),
                    Values::Categorical { codes, .. } => {
                        (0..codes.len()).filter(|&i| codes[i] == shipyard_train::frame::MISSING_CODE).collect()
                    }
                };
                problems.extend(missing.into_iter().map(|r| {
                    (r, format!("column '{}' has no value and the model's signature requires one", col.name))
                }));
            }
        }
        if let Engine::Onnx { layout, .. } = &self.engine {
            let integer_columns: Vec<usize> = match layout {
                OnnxLayout::Matrix { elem: ElemType::I64 } => (0..features.columns.len()).collect(),
                OnnxLayout::Matrix { .. } => Vec::new(),
                OnnxLayout::PerColumn(slots) => slots
                    .iter()
                    .filter(|s| matches!(s.elem, ElemType::I64 | ElemType::I32 | ElemType::Bool))
                    .flat_map(|s| s.first..s.first + s.width)
                    .collect(),
            };
            for k in integer_columns {
                if let Values::Numeric(v) = &features.columns[k] {
                    problems.extend(v.iter().enumerate().filter(|(_, x)| !(x.is_finite() && x.fract() == 0.0)).map(
                        |(r, x)| (r, format!("column '{}' must hold an integer, got {x}", features.specs[k].name)),
                    ));
                }
            }
        }
        problems.sort_by_key(|p| p.0);
        problems
    }

    /// Predicts every row of `batches`, in order.
    pub fn predict(&self, batches: &[RecordBatch]) -> Result<Output, PredictError> {
        let features = self.features(batches)?;
        self.predict_features(&features)
    }

    /// Predicts decoded rows.
    pub fn predict_features(&self, features: &Features) -> Result<Output, PredictError> {
        match &self.engine {
            Engine::Native(model) => {
                let predictions = model.predict(features).map_err(|e| PredictError::Input(e.to_string()))?;
                Ok(match predictions {
                    Predictions::Values(values) => Output::Values { columns: 1, values, graph: None },
                    Predictions::Classes { classes, proba } => Output::Classes {
                        labels: classes.iter().map(|&c| model.classes[c].clone()).collect(),
                        classes: model.classes.clone(),
                        probabilities: proba.into_iter().flatten().collect(),
                        graph: None,
                    },
                })
            }
            Engine::Onnx { model, layout } => {
                let inputs: Vec<Value> = onnx_inputs(layout, features)?.into_iter().map(Value::from).collect();
                let outputs = run_onnx(model, &inputs)?;
                interpret(model, outputs, features.rows)
            }
        }
    }

    /// The engine's own inputs for `features`, built once (for timing the engine alone).
    pub fn prepare(&self, features: &Features) -> Result<Prepared, PredictError> {
        Ok(match &self.engine {
            Engine::Native(_) => Prepared::Native(features.clone()),
            Engine::Onnx { model: _, layout } => {
                Prepared::Onnx(onnx_inputs(layout, features)?.into_iter().map(Value::from).collect())
            }
        })
    }

    /// Runs the engine on prepared inputs and drops the result: what the engine itself costs.
    pub fn run_prepared(&self, prepared: &Prepared) -> Result<(), PredictError> {
        match (&self.engine, prepared) {
            (Engine::Native(model), Prepared::Native(f)) => {
                model.predict(f).map_err(|e| PredictError::Input(e.to_string()))?;
            }
            (Engine::Onnx { model, .. }, Prepared::Onnx(inputs)) => {
                run_onnx(model, inputs)?;
            }
            _ => return Err(PredictError::Model("inputs prepared for another model".into())),
        }
        Ok(())
    }
}

/// Inputs in the engine's own form.
pub enum Prepared {
    Native(Features),
    Onnx(Vec<Value>),
}

fn run_onnx(model: &OnnxRunner, inputs: &[Value]) -> Result<Vec<Value>, PredictError> {
    model.run(inputs)
}

fn numeric_column(features: &Features, k: usize) -> Result<&[f64], PredictError> {
    match &features.columns[k] {
        Values::Numeric(v) => Ok(v),
        Values::Categorical { .. } => {
            Err(PredictError::Input(format!("column '{}' must hold numbers, got text", features.specs[k].name)))
        }
    }
}

fn integer(features: &Features, k: usize, x: f64, row: usize) -> Result<i64, PredictError> {
    if x.is_finite() && x.fract() == 0.0 {
        Ok(x as i64)
    } else {
        Err(PredictError::Row {
            row,
            message: format!("column '{}' must hold an integer, got {x}", features.specs[k].name),
        })
    }
}

/// The columns of one graph input as a tensor `[rows, width]` (or `[rows]` for rank 1).
fn slot_tensor(features: &Features, slot: &InputSlot) -> Result<Tensor, PredictError> {
    let n = features.rows;
    let shape = if slot.rank == 1 { vec![n] } else { vec![n, slot.width] };
    if slot.width == 1 {
        return Ok(Tensor::new(shape, column_data(features, slot.first, slot.elem)?));
    }
    let parts: Vec<Data> =
        (slot.first..slot.first + slot.width).map(|k| column_data(features, k, slot.elem)).collect::<Result<_, _>>()?;
    // Row-major: row r holds element r of every part.
    let index = (0..n).flat_map(|r| (0..slot.width).map(move |j| j * n + r));
    let all = Data::concat(slot.elem, parts.iter()).ok_or_else(|| PredictError::Model("mixed column types".into()))?;
    Ok(Tensor::new(shape, all.gather(index.collect::<Vec<_>>().into_iter())))
}

/// One column's values as `elem`.
fn column_data(features: &Features, k: usize, elem: ElemType) -> Result<Data, PredictError> {
    Ok(match elem {
        ElemType::Str => match &features.columns[k] {
            Values::Categorical { codes, levels } => {
                Data::Str(codes.iter().map(|&c| levels.get(c as usize).cloned().unwrap_or_default()).collect())
            }
            Values::Numeric(v) => {
                Data::Str(v.iter().map(|x| if x.is_nan() { String::new() } else { x.to_string() }).collect())
            }
        },
        ElemType::F32 => Data::F32(numeric_column(features, k)?.iter().map(|&x| x as f32).collect()),
        ElemType::F64 => Data::F64(numeric_column(features, k)?.to_vec()),
        ElemType::I64 | ElemType::I32 | ElemType::Bool => {
            let v = numeric_column(features, k)?;
            let ints: Vec<i64> =
                v.iter().enumerate().map(|(r, &x)| integer(features, k, x, r)).collect::<Result<_, _>>()?;
            match elem {
                ElemType::I64 => Data::I64(ints),
                ElemType::I32 => Data::I32(ints.iter().map(|&x| x as i32).collect()),
                _ => Data::Bool(ints.iter().map(|&x| x != 0).collect()),
            }
        }
    })
}

fn onnx_inputs(layout: &OnnxLayout, features: &Features) -> Result<Vec<Tensor>, PredictError> {
    let n = features.rows;
    match layout {
        OnnxLayout::Matrix { elem } => {
            let f = features.columns.len();
            let cols: Vec<&[f64]> = (0..f).map(|k| numeric_column(features, k)).collect::<Result<_, _>>()?;
            let data = match elem {
                ElemType::F32 => Data::F32((0..n).flat_map(|r| cols.iter().map(move |c| c[r] as f32)).collect()),
                ElemType::F64 => Data::F64((0..n).flat_map(|r| cols.iter().map(move |c| c[r])).collect()),
                ElemType::I64 => {
                    let mut v = Vec::with_capacity(n * f);
                    for r in 0..n {
                        for (k, c) in cols.iter().enumerate() {
                            v.push(integer(features, k, c[r], r)?);
                        }
                    }
                    Data::I64(v)
                }
                other => {
                    return Err(PredictError::Model(format!(
                        "the model's input holds {}, which tables cannot fill",
                        other.name()
                    )));
                }
            };
            Ok(vec![Tensor::new(vec![n, f], data)])
        }
        OnnxLayout::PerColumn(slots) => slots.iter().map(|slot| slot_tensor(features, slot)).collect(),
    }
}

fn labels_of(t: &Tensor) -> Option<Vec<String>> {
    match &t.data {
        Data::Str(v) => Some(v.clone()),
        Data::I64(v) => Some(v.iter().map(|x| x.to_string()).collect()),
        Data::I32(v) => Some(v.iter().map(|x| x.to_string()).collect()),
        _ => None,
    }
}

/// The graph's outputs under their names (a `ZipMap` output in its tensor form, with its keys).
fn graph_outputs(model: &OnnxRunner, outputs: Vec<Value>) -> GraphOutputs {
    let names = model.outputs().iter().map(|spec| spec.name.clone()).chain((0..).map(|i| format!("output_{i}")));
    GraphOutputs(
        names
            .zip(outputs)
            .map(|(name, value)| match value {
                Value::Tensor(tensor) => GraphOutput { name, tensor, map_keys: None },
                Value::SeqMap { keys, values } => GraphOutput { name, tensor: values, map_keys: Some(keys) },
            })
            .collect(),
    )
}

/// Reads a label + scores pair, or the values of a regressor, from the graph's outputs, which
/// the answer keeps too.
fn interpret(model: &OnnxRunner, outputs: Vec<Value>, rows: usize) -> Result<Output, PredictError> {
    let graph = graph_outputs(model, outputs);
    let bad = |what: &str| PredictError::Model(format!("the model's outputs are not {what}"));
    let scores = |o: &GraphOutput| -> Option<(Vec<f64>, usize)> {
        let t = &o.tensor;
        let (r, c) = t.as_matrix();
        if r != rows && !(rows == 0 && t.is_empty()) {
            return None;
        }
        let values: Vec<f64> = match &t.data {
            Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::F64(v) => v.clone(),
            _ => return None,
        };
        Some((values, c))
    };
    let first = graph.0.first().ok_or_else(|| bad("readable: there are none"))?;
    if let (None, Some(second)) = (&first.map_keys, graph.0.get(1))
        && let Some(labels) = labels_of(&first.tensor)
    {
        let (probabilities, k) = scores(second).ok_or_else(|| bad("a label and per-class scores"))?;
        let classes = match second.map_keys.clone().or_else(|| model.class_labels().cloned()) {
            Some(keys) if keys.len() == k => keys.labels(),
            _ => (0..k).map(|i| i.to_string()).collect(),
        };
        return Ok(Output::Classes { classes, labels, probabilities, graph: Some(graph) });
    }
    let (values, columns) = scores(first).ok_or_else(|| bad("numbers, one row per input row"))?;
    Ok(Output::Values { columns: columns.max(1), values, graph: Some(graph) })
}
