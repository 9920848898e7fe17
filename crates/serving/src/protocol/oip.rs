//! The Open Inference Protocol v2 (KServe, Triton, MLServer), REST, with Triton's binary
//! tensor extension on input.
//!
//! Routes: `GET /v2`, `/v2/health/live`, `/v2/health/ready`, `/v2/models/{m}[/versions/{v}]`
//! (metadata), `.../ready`, `POST .../infer` (`../shared/anchors/research.md` §1). A request
//! holds either one `[rows, columns]` tensor (the model's columns in order) or one `[rows]` /
//! `[rows, 1]` tensor per column, named as the model's columns. Data is JSON (nested or flat,
//! row-major) or, when the `Inference-Header-Content-Length` header is set, raw little-endian
//! bytes after the JSON header (`parameters.binary_data_size` per input), as `tritonclient`
//! sends by default. The answer is always pure JSON, which every client reads. An ONNX model
//! answers with its graph's outputs under their own names, shapes and datatypes, as Triton
//! serves them (`label` INT64 and `probabilities` FP32 for a scikit-learn classifier converted
//! with `zipmap=False`, `variable` for a regressor; a `ZipMap` output, which Triton cannot
//! serve, as its `[rows, classes]` FP32 tensor). Shipyard's own models answer `predict`
//! (`[rows, 1]`: labels, INT64 or BYTES, or values, FP64) and, for classifiers, `predict_proba`
//! (`[rows, classes]`, FP64), named as MLServer's scikit-learn runtime names them. A request's
//! `outputs` selects among those names. Errors are `{"error": "..."}`, 400 for input problems.

use std::sync::Arc;

use arrow_array::RecordBatch;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shipyard_runtime::onnx::Data;
use shipyard_runtime::{GraphOutputs, Output};

use super::{label_value, number, numeric_labels};
use crate::input::{Cell, Extra, Schema};
use crate::{Incoming, ModelPath, Protocol, RequestId, ServeError, ServingState, predict_request};

/// The header that says where the JSON part of a binary request ends.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// An inference request's JSON part.
#[derive(Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<InferInput>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize)]
struct InferInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
}

pub async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "shipyard",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
    .into_response()
}

pub async fn live() -> Response {
    axum::Json(json!({ "live": true })).into_response()
}

pub async fn ready(State(state): State<Arc<ServingState>>) -> Response {
    let ready = !state.registry.is_empty();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(json!({ "ready": ready }))).into_response()
}

pub async fn model_ready(State(state): State<Arc<ServingState>>, Path(path): Path<ModelPath>) -> Response {
    ready_answer(&state, &path.model, path.version.as_deref())
}

fn ready_answer(state: &ServingState, name: &str, version: Option<&str>) -> Response {
    match state.registry.get(name, version) {
        Ok(_) => axum::Json(json!({ "name": name, "ready": true })).into_response(),
        Err(e) => Protocol::Oip.error_response(&e, ""),
    }
}

pub async fn model_metadata(State(state): State<Arc<ServingState>>, Path(path): Path<ModelPath>) -> Response {
    metadata_answer(&state, &path.model, path.version.as_deref())
}

fn metadata_answer(state: &ServingState, name: &str, version: Option<&str>) -> Response {
    let model = match state.registry.get(name, version) {
        Ok(model) => model,
        Err(e) => return Protocol::Oip.error_response(&e, ""),
    };
    let schema = &model.schema;
    let inputs: Vec<Value> = if schema.positional {
        let width = schema.width.map_or(-1, |w| w as i64);
        vec![json!({ "name": "input", "datatype": "FP64", "shape": [-1, width] })]
    } else {
        schema
            .columns
            .iter()
            .map(|c| json!({ "name": c.name, "datatype": c.kind.oip_datatype(), "shape": [-1, 1] }))
            .collect()
    };
    let graph = model.engine.output_specs().map(|specs| {
        specs.into_iter().map(|o| json!({ "name": o.name, "datatype": o.datatype, "shape": o.shape })).collect()
    });
    let outputs = match (&model.classes, graph) {
        (_, Some(graph)) => graph,
        (Some(classes), None) => vec![
            json!({ "name": "predict", "datatype": if numeric_labels(classes) { "INT64" } else { "BYTES" }, "shape": [-1, 1] }),
            json!({ "name": "predict_proba", "datatype": "FP64", "shape": [-1, classes.len()] }),
        ],
        (None, None) => vec![json!({ "name": "predict", "datatype": "FP64", "shape": [-1, -1] })],
    };
    let mut answer = json!({
        "name": model.name,
        "versions": state.registry.versions(name),
        "platform": model.engine.platform(),
        "inputs": inputs,
        "outputs": outputs,
    });
    if let Some(choice) = model.engine_choice.get() {
        answer["parameters"] = json!({ "engine": choice.engine, "engine_reason": choice.reason });
    }
    axum::Json(answer).into_response()
}

pub async fn infer(
    State(state): State<Arc<ServingState>>,
    Path(path): Path<ModelPath>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = state.registry.route(&path.model, path.version.as_deref());
    let max_rows = state.limits.max_rows;
    predict_request(
        &state,
        Protocol::Oip,
        route,
        Incoming { id: &id, headers: &headers, body },
        |model, bytes| parse(&model.schema, &headers, bytes, max_rows),
        |request, p| {
            let wanted: Option<Vec<String>> = request.outputs.map(|o| o.into_iter().map(|o| o.name).collect());
            let mut body = json!({
                "model_name": p.answered_by.name,
                "id": request.id.unwrap_or_else(|| id.0.to_string()),
                "outputs": render_outputs(&p.output, wanted.as_deref())?,
            });
            if let Some(v) = &p.answered_by.version {
                body["model_version"] = json!(v);
            }
            Ok(body)
        },
    )
    .await
}

/// One input's elements, row-major.
enum Elements<'a> {
    Json(Vec<&'a Value>),
    Numbers(Vec<f64>),
    Text(Vec<String>),
    Bools(Vec<bool>),
}

impl Elements<'_> {
    fn len(&self) -> usize {
        match self {
            Elements::Json(v) => v.len(),
            Elements::Numbers(v) => v.len(),
            Elements::Text(v) => v.len(),
            Elements::Bools(v) => v.len(),
        }
    }

    fn cell(&self, i: usize) -> Cell<'_> {
        match self {
            Elements::Json(v) => Cell::json(v[i]),
            Elements::Numbers(v) => Cell::Number(v[i]),
            Elements::Text(v) => Cell::Text(&v[i]),
            Elements::Bools(v) => Cell::Bool(v[i]),
        }
    }
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

/// The request and the model's batch (public for the fuzzers, which call exactly what a request
/// reaches).
pub fn parse(
    schema: &Schema,
    headers: &HeaderMap,
    bytes: &[u8],
    max_rows: usize,
) -> Result<(InferRequest, RecordBatch), ServeError> {
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n <= bytes.len()).ok_or_else(
                || {
                    ServeError::malformed(format!(
                        "{HEADER_LENGTH} must be a byte count within the body ({} bytes)",
                        bytes.len()
                    ))
                },
            )?,
        ),
    };
    let (json_part, mut binary) = match header_length {
        Some(n) => bytes.split_at(n),
        None => (bytes, &[][..]),
    };
    let request: InferRequest = super::parse_json(json_part)?;
    if request.inputs.is_empty() {
        return Err(ServeError::malformed("'inputs' is empty"));
    }
    let mut tensors: Vec<(&InferInput, Vec<usize>, Elements)> = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        let shape: Vec<usize> =
            input.shape.iter().map(|&d| usize::try_from(d)).collect::<Result<_, _>>().map_err(|_| {
                ServeError::malformed(format!(
                    "input '{}': shape {:?} has a negative dimension",
                    input.name, input.shape
                ))
            })?;
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= isize::MAX as usize / 16)
            .ok_or_else(|| {
                ServeError::too_large(format!("input '{}': shape {:?} is too large", input.name, input.shape))
            })?;
        let datatype = Datatype::parse(&input.name, &input.datatype)?;
        let binary_size = input.parameters.as_ref().and_then(|p| p.get("binary_data_size"));
        let elements = match (binary_size, &input.data) {
            (Some(size), None) => {
                let size = size.as_u64().and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
                    ServeError::malformed(format!("input '{}': binary_data_size must be a byte count", input.name))
                })?;
                if size > binary.len() {
                    return Err(ServeError::malformed(format!(
                        "input '{}': binary_data_size is {size} bytes, {} are left in the body",
                        input.name,
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                decode_binary(&input.name, datatype, mine, count)?
            }
            (None, Some(data)) => {
                // Never by the declared shape alone: it may claim far more values than the body
                // holds (every value takes at least a byte of it).
                let mut flat = Vec::with_capacity(count.min(json_part.len()));
                flatten(data, &mut flat);
                datatype.check_json(&input.name, &flat)?;
                Elements::Json(flat)
            }
            (Some(_), Some(_)) => {
                return Err(ServeError::malformed(format!(
                    "input '{}' has both 'data' and parameters.binary_data_size",
                    input.name
                )));
            }
            (None, None) => return Err(ServeError::malformed(format!("input '{}' has no 'data'", input.name))),
        };
        if elements.len() != count {
            return Err(ServeError::malformed(format!(
                "input '{}': shape {:?} holds {count} values, the data has {}",
                input.name,
                input.shape,
                elements.len()
            )));
        }
        tensors.push((input, shape, elements));
    }
    if !binary.is_empty() {
        return Err(ServeError::malformed(format!("{} bytes of binary data follow the last input", binary.len())));
    }
    let one_matrix = tensors.len() == 1
        && (schema.positional || (!schema.has_column(&tensors[0].0.name) && tensors[0].1.len() == 2));
    let batch = if one_matrix {
        let (input, shape, elements) = &tensors[0];
        let [rows, width] = shape[..] else {
            return Err(ServeError::malformed(format!(
                "input '{}': shape {:?} must be [rows, columns]",
                input.name, input.shape
            )));
        };
        crate::input::check_rows(rows, max_rows)?;
        schema.assemble(None, width, rows, |r, j| elements.cell(r * width + j), Extra::Refuse)?
    } else {
        let rows = tensors[0].1.first().copied().unwrap_or(0);
        for (input, shape, _) in &tensors {
            let column = matches!(shape[..], [n] | [n, 1] if n == rows);
            if !column {
                return Err(ServeError::malformed(format!(
                    "input '{}': shape {:?}; with one input per column each must be [{rows}] or [{rows}, 1]",
                    input.name, input.shape
                )));
            }
        }
        crate::input::check_rows(rows, max_rows)?;
        let names: Vec<&str> = tensors.iter().map(|(i, _, _)| i.name.as_str()).collect();
        schema.assemble(Some(&names), names.len(), rows, |r, j| tensors[j].2.cell(r), Extra::Refuse)?
    };
    Ok((request, batch))
}

/// The tensor element types of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

impl Datatype {
    const ALL: [(&'static str, Datatype); 13] = [
        ("BOOL", Datatype::Bool),
        ("UINT8", Datatype::Uint8),
        ("UINT16", Datatype::Uint16),
        ("UINT32", Datatype::Uint32),
        ("UINT64", Datatype::Uint64),
        ("INT8", Datatype::Int8),
        ("INT16", Datatype::Int16),
        ("INT32", Datatype::Int32),
        ("INT64", Datatype::Int64),
        ("FP16", Datatype::Fp16),
        ("FP32", Datatype::Fp32),
        ("FP64", Datatype::Fp64),
        ("BYTES", Datatype::Bytes),
    ];

    /// An input's `datatype`; an unknown one is a 400, as Triton answers it.
    fn parse(input: &str, text: &str) -> Result<Datatype, ServeError> {
        Datatype::ALL.iter().find(|(name, _)| *name == text).map(|&(_, d)| d).ok_or_else(|| {
            let known: Vec<&str> = Datatype::ALL.iter().map(|(name, _)| *name).collect();
            ServeError::malformed(format!(
                "input '{input}': unknown datatype '{text}' (the protocol's are {})",
                known.join(", ")
            ))
        })
    }

    fn name(self) -> &'static str {
        Datatype::ALL.iter().find(|(_, d)| *d == self).map_or("?", |(name, _)| name)
    }

    /// The range of an integer type.
    fn integer_range(self) -> Option<(i128, i128)> {
        let bits = |signed: bool, n: u32| {
            if signed { (-(1i128 << (n - 1)), (1i128 << (n - 1)) - 1) } else { (0, (1i128 << n) - 1) }
        };
        Some(match self {
            Datatype::Uint8 => bits(false, 8),
            Datatype::Uint16 => bits(false, 16),
            Datatype::Uint32 => bits(false, 32),
            Datatype::Uint64 => bits(false, 64),
            Datatype::Int8 => bits(true, 8),
            Datatype::Int16 => bits(true, 16),
            Datatype::Int32 => bits(true, 32),
            Datatype::Int64 => bits(true, 64),
            _ => return None,
        })
    }

    /// JSON elements must be of the declared type, as Triton checks them: booleans for BOOL,
    /// integers within range for the integer types, numbers for the floating ones, strings for
    /// BYTES. `null` stays allowed everywhere: it is how a missing value is sent here.
    fn check_json(self, input: &str, elements: &[&Value]) -> Result<(), ServeError> {
        let fits = |v: &Value| match (self, v) {
            (_, Value::Null) => true,
            (Datatype::Bool, v) => v.is_boolean(),
            (Datatype::Bytes, v) => v.is_string(),
            (Datatype::Fp16 | Datatype::Fp32 | Datatype::Fp64, v) => v.is_number(),
            (integer, v) => {
                let value = v.as_i64().map(i128::from).or_else(|| v.as_u64().map(i128::from));
                matches!((value, integer.integer_range()), (Some(x), Some((lo, hi))) if (lo..=hi).contains(&x))
            }
        };
        let expected = || match (self, self.integer_range()) {
            (_, Some((lo, hi))) => format!("a whole number from {lo} to {hi}"),
            (Datatype::Bool, _) => "true or false".to_owned(),
            (Datatype::Bytes, _) => "a string".to_owned(),
            _ => "a number".to_owned(),
        };
        match elements.iter().position(|v| !fits(v)) {
            None => Ok(()),
            Some(i) => Err(ServeError::malformed(format!(
                "input '{input}': element {} ({}) does not fit datatype {}: expected {}",
                i + 1,
                crate::input::truncate(&elements[i].to_string(), 40),
                self.name(),
                expected()
            ))),
        }
    }
}

/// Triton's binary layout: little-endian, row-major; BYTES elements are a 4-byte length and
/// the bytes.
fn decode_binary<'a>(name: &str, datatype: Datatype, bytes: &[u8], count: usize) -> Result<Elements<'a>, ServeError> {
    let size_error = |width: usize| {
        ServeError::malformed(format!(
            "input '{name}': {count} {} values take {} bytes, binary_data_size is {}",
            datatype.name(),
            count * width,
            bytes.len()
        ))
    };
    macro_rules! numbers {
        ($t:ty) => {{
            const W: usize = std::mem::size_of::<$t>();
            if bytes.len() != count * W {
                return Err(size_error(W));
            }
            Elements::Numbers(
                bytes.chunks_exact(W).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; W])) as f64).collect(),
            )
        }};
    }
    Ok(match datatype {
        Datatype::Fp64 => numbers!(f64),
        Datatype::Fp32 => numbers!(f32),
        Datatype::Int64 => numbers!(i64),
        Datatype::Int32 => numbers!(i32),
        Datatype::Int16 => numbers!(i16),
        Datatype::Int8 => numbers!(i8),
        Datatype::Uint64 => numbers!(u64),
        Datatype::Uint32 => numbers!(u32),
        Datatype::Uint16 => numbers!(u16),
        Datatype::Uint8 => numbers!(u8),
        Datatype::Bool => {
            if bytes.len() != count {
                return Err(size_error(1));
            }
            Elements::Bools(bytes.iter().map(|&b| b != 0).collect())
        }
        Datatype::Bytes => {
            // Each element takes at least its 4-byte length: the data bounds the count.
            let mut items = Vec::with_capacity(count.min(bytes.len() / 4));
            let mut rest = bytes;
            while rest.len() >= 4 {
                let (len, tail) = rest.split_at(4);
                let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                if len > tail.len() {
                    return Err(ServeError::malformed(format!("input '{name}': a BYTES element runs past the data")));
                }
                let (item, tail) = tail.split_at(len);
                items.push(String::from_utf8(item.to_vec()).map_err(|_| {
                    ServeError::malformed(format!("input '{name}': element {} is not UTF-8 text", items.len() + 1))
                })?);
                rest = tail;
            }
            if !rest.is_empty() {
                return Err(ServeError::malformed(format!("input '{name}': the BYTES data ends mid-element")));
            }
            Elements::Text(items)
        }
        Datatype::Fp16 => {
            return Err(ServeError::malformed(format!(
                "input '{name}': FP16 binary data is not supported (send FP32 or FP64, or FP16 values as JSON)"
            )));
        }
    })
}

/// An ONNX model's graph outputs as Triton renders them.
fn graph_outputs(graph: &GraphOutputs) -> Vec<(&str, Value)> {
    graph
        .0
        .iter()
        .map(|o| {
            let data: Vec<Value> = match &o.tensor.data {
                Data::F32(v) => v.iter().map(|&x| number(f64::from(x))).collect(),
                Data::F64(v) => v.iter().map(|&x| number(x)).collect(),
                Data::I64(v) => v.iter().map(|&x| json!(x)).collect(),
                Data::I32(v) => v.iter().map(|&x| json!(x)).collect(),
                Data::Bool(v) => v.iter().map(|&x| json!(x)).collect(),
                Data::Str(v) => v.iter().map(|x| json!(x)).collect(),
            };
            let value = json!({
                "name": o.name,
                "datatype": o.tensor.elem_type().oip_name(),
                "shape": o.tensor.shape,
                "data": data,
            });
            (o.name.as_str(), value)
        })
        .collect()
}

/// The answer's outputs, all of them or those the request named.
fn render_outputs(output: &Output, wanted: Option<&[String]>) -> Result<Vec<Value>, ServeError> {
    let rows = output.rows();
    let mut all: Vec<(&str, Value)> = Vec::new();
    match output {
        _ if output.graph().is_some() => all = output.graph().map(graph_outputs).unwrap_or_default(),
        Output::Classes { classes, labels, probabilities, .. } => {
            let numeric = numeric_labels(classes);
            all.push((
                "predict",
                json!({
                    "name": "predict",
                    "datatype": if numeric { "INT64" } else { "BYTES" },
                    "shape": [rows, 1],
                    "data": labels.iter().map(|l| label_value(l, numeric)).collect::<Vec<_>>(),
                }),
            ));
            all.push((
                "predict_proba",
                json!({
                    "name": "predict_proba",
                    "datatype": "FP64",
                    "shape": [rows, classes.len()],
                    "data": probabilities.iter().map(|&p| number(p)).collect::<Vec<_>>(),
                }),
            ));
        }
        Output::Values { columns, values, .. } => all.push((
            "predict",
            json!({
                "name": "predict",
                "datatype": "FP64",
                "shape": [rows, columns],
                "data": values.iter().map(|&x| number(x)).collect::<Vec<_>>(),
            }),
        )),
    }
    let Some(wanted) = wanted else {
        return Ok(all.into_iter().map(|(_, v)| v).collect());
    };
    wanted
        .iter()
        .map(|w| {
            all.iter().find(|(name, _)| name == w).map(|(_, v)| v.clone()).ok_or_else(|| {
                ServeError::malformed(format!(
                    "unknown output '{w}' (the model has: {})",
                    all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipyard_runtime::{InputColumn, Inputs};

    fn schema() -> Schema {
        let column = |name: &str, mlflow_type: &str| InputColumn {
            name: name.into(),
            mlflow_type: mlflow_type.into(),
            required: false,
        };
        Schema::of(&Inputs::Named(vec![column("age", "long"), column("city", "string")]))
    }

    fn infer(age_type: &str, ages: Value, city_type: &str, cities: Value) -> Result<RecordBatch, ServeError> {
        let body = json!({ "inputs": [
            { "name": "age", "shape": [2], "datatype": age_type, "data": ages },
            { "name": "city", "shape": [2], "datatype": city_type, "data": cities },
        ]});
        parse(&schema(), &HeaderMap::new(), body.to_string().as_bytes(), 100).map(|(_, batch)| batch)
    }

    #[test]
    fn json_elements_must_be_of_the_declared_datatype() {
        let batch = infer("INT64", json!([30, null]), "BYTES", json!(["Oslo", "Rome"])).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert!(infer("FP32", json!([30.5, 1]), "BYTES", json!(["Oslo", "Rome"])).is_ok());
        for (age_type, ages, city_type, cities, says) in [
            ("NOPE", json!([1, 2]), "BYTES", json!(["a", "b"]), "unknown datatype 'NOPE'"),
            (
                "INT8",
                json!([1, 100_000]),
                "BYTES",
                json!(["a", "b"]),
                "element 2 (100000) does not fit datatype INT8: expected a whole number from -128 to 127",
            ),
            ("UINT8", json!([-1, 2]), "BYTES", json!(["a", "b"]), "element 1 (-1) does not fit datatype UINT8"),
            ("INT64", json!([1.5, 2]), "BYTES", json!(["a", "b"]), "element 1 (1.5) does not fit datatype INT64"),
            (
                "INT64",
                json!([1, 2]),
                "FP32",
                json!(["a", "b"]),
                "input 'city': element 1 (\"a\") does not fit datatype FP32: expected a number",
            ),
            (
                "INT64",
                json!([1, 2]),
                "BOOL",
                json!([true, 1]),
                "element 2 (1) does not fit datatype BOOL: expected true or false",
            ),
        ] {
            let error = infer(age_type, ages, city_type, cities).unwrap_err();
            assert_eq!(error.kind, crate::ErrorKind::Malformed, "{}", error.message);
            assert!(error.message.contains(says), "{} does not say {says}", error.message);
        }
    }

    #[test]
    fn integer_ranges_are_the_types_own() {
        assert_eq!(Datatype::Int8.integer_range(), Some((-128, 127)));
        assert_eq!(Datatype::Uint64.integer_range(), Some((0, u64::MAX as i128)));
        assert_eq!(Datatype::Int64.integer_range(), Some((i64::MIN as i128, i64::MAX as i128)));
        assert_eq!(Datatype::Fp64.integer_range(), None);
    }
}
