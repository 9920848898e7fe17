//! MLflow's scoring protocol (`mlflow models serve`): `POST /invocations`, `GET /ping`,
//! `/health`, `/version`.
//!
//! As MLflow 3 reads it (`../shared/anchors/research.md` §2): `Content-Type` is
//! `application/json` or `text/csv`, with no parameter but `charset=utf-8` (else 415). A JSON body
//! is an object with exactly one of `dataframe_split`, `dataframe_records`, `instances`, `inputs`
//! (plus an optional `params`, which tabular models ignore). Columns the model does not read are
//! dropped, as MLflow's schema enforcement does. The answer is `{"predictions": [...]}`: labels
//! for a classifier, values for a regressor, as the sklearn flavor's `predict` returns them.
//! An ONNX model answers as MLflow's `onnx` flavor does (fixtures recorded from `mlflow models
//! serve` in `tests/interop/fixtures/mlflow_onnx_answers.json`): the graph's outputs by name,
//! `{"predictions": {"label": [...], "probabilities": [[...], ...]}}`, each nested as its tensor,
//! for tensor input (`inputs`, `instances`) and for any input to a model with a tensor
//! signature; one record per row, `{"predictions": [{"variable": -44.2}, ...]}`, for DataFrame
//! input (`dataframe_split`, `dataframe_records`, CSV) to a model with a column signature or
//! none. A `ZipMap` output is one `{class: probability}` object per row. Where MLflow fails (a
//! record whose output holds several values per row, such as `probabilities`), Shipyard gives
//! the row's values as a list. Errors are `{"error_code", "message"}` with 400 for any input
//! problem.

use std::sync::Arc;

use arrow_array::RecordBatch;
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use shipyard_runtime::onnx::{Data, MapKeys, Tensor};
use shipyard_runtime::{GraphOutputs, Output, SignatureKind};

use super::{number, parse_json, predictions};
use crate::error::ErrorKind;
use crate::input::{self, Cell, Extra, Kind, Schema};
use crate::{Incoming, Protocol, RequestId, ServeError, ServingState, predict_request};

const KEYS: [&str; 4] = ["dataframe_split", "dataframe_records", "instances", "inputs"];

/// `/ping` and `/health`: 200 once a model is loaded, else 404 (MLflow's body is a newline).
pub async fn ping(State(state): State<Arc<ServingState>>) -> Response {
    let status = if state.registry.is_empty() { StatusCode::NOT_FOUND } else { StatusCode::OK };
    (status, [(header::CONTENT_TYPE, "application/json")], "\n").into_response()
}

/// `/version`: the bare MLflow version string, as MLflow answers it.
pub async fn version() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], shipyard_core::MLFLOW_COMPAT_VERSION).into_response()
}

pub async fn invocations(
    State(state): State<Arc<ServingState>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = state.registry.single();
    let max_rows = state.limits.max_rows;
    predict_request(
        &state,
        Protocol::Mlflow,
        route,
        Incoming { id: &id, headers: &headers, body },
        |model, bytes| read_body(&model.schema, &headers, bytes, max_rows),
        |form, p| {
            let records = form == InputForm::DataFrame && p.answered_by.engine.signature() != SignatureKind::Tensors;
            Ok(json!({ "predictions": mlflow_predictions(&p.output, records) }))
        },
    )
    .await
}

enum Format {
    Json,
    Csv,
}

/// An `/invocations` body as the model's columns, read as its `Content-Type` says (public for
/// the fuzzers, which call exactly what a request reaches).
pub fn parse_body(
    schema: &Schema,
    headers: &HeaderMap,
    bytes: &[u8],
    max_rows: usize,
) -> Result<RecordBatch, ServeError> {
    read_body(schema, headers, bytes, max_rows).map(|(_, batch)| batch)
}

fn read_body(
    schema: &Schema,
    headers: &HeaderMap,
    bytes: &[u8],
    max_rows: usize,
) -> Result<(InputForm, RecordBatch), ServeError> {
    match content_type(headers)? {
        Format::Json => parse_json_body(schema, bytes, max_rows),
        Format::Csv => Ok((InputForm::DataFrame, parse_csv(schema, bytes, max_rows)?)),
    }
}

/// How the body gave its rows: MLflow's scoring server answers an ONNX model's DataFrame input
/// (`dataframe_split`, `dataframe_records`, CSV) differently from tensor input (`inputs`,
/// `instances`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum InputForm {
    DataFrame,
    Tensor,
}

/// The answer's predictions: an ONNX model's graph outputs as MLflow's `onnx` flavor gives them
/// (by output, or one record per row with `records`), else labels or values.
fn mlflow_predictions(output: &Output, records: bool) -> Value {
    match output.graph() {
        Some(graph) if records => graph_records(graph, output.rows()),
        Some(graph) => {
            Value::Object(graph.0.iter().map(|o| (o.name.clone(), nested(&o.tensor, o.map_keys.as_ref()))).collect())
        }
        None => predictions(output),
    }
}

/// One element as JSON (`f32` widened to `f64`, as numpy's `tolist` does).
fn element(data: &Data, i: usize) -> Value {
    match data {
        Data::F32(v) => number(f64::from(v[i])),
        Data::F64(v) => number(v[i]),
        Data::I64(v) => json!(v[i]),
        Data::I32(v) => json!(v[i]),
        Data::Bool(v) => json!(v[i]),
        Data::Str(v) => json!(v[i]),
    }
}

/// Row `r` of a `ZipMap` output: `{class: score}`.
fn zipmap_row(t: &Tensor, keys: &MapKeys, r: usize) -> Value {
    let labels = keys.labels();
    let width = labels.len().max(1);
    Value::Object(labels.into_iter().enumerate().map(|(j, k)| (k, element(&t.data, r * width + j))).collect())
}

/// A tensor as nested JSON lists, as its shape nests them (a `ZipMap` output: one object per
/// row).
fn nested(t: &Tensor, keys: Option<&MapKeys>) -> Value {
    if let Some(keys) = keys {
        let rows = t.shape.first().copied().unwrap_or(0);
        return Value::Array((0..rows).map(|r| zipmap_row(t, keys, r)).collect());
    }
    fn level(t: &Tensor, dims: &[usize], offset: usize) -> Value {
        match dims {
            [] => element(&t.data, offset),
            [n, rest @ ..] => {
                let stride: usize = rest.iter().product();
                Value::Array((0..*n).map(|i| level(t, rest, offset + i * stride)).collect())
            }
        }
    }
    level(t, &t.shape, 0)
}

/// One record per row, `{output: value}`: a single value as itself, a `ZipMap` row as an
/// object, several values as a list.
fn graph_records(graph: &GraphOutputs, rows: usize) -> Value {
    Value::Array(
        (0..rows)
            .map(|r| {
                Value::Object(
                    graph
                        .0
                        .iter()
                        .map(|o| {
                            let per_row = o.tensor.len() / rows.max(1);
                            let value = match (&o.map_keys, per_row) {
                                (Some(keys), _) => zipmap_row(&o.tensor, keys, r),
                                (None, 1) => element(&o.tensor.data, r),
                                (None, k) => Value::Array((0..k).map(|j| element(&o.tensor.data, r * k + j)).collect()),
                            };
                            (o.name.clone(), value)
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

/// MLflow's content-type rule: `application/json` or `text/csv`, only `charset=utf-8` allowed.
fn content_type(headers: &HeaderMap) -> Result<Format, ServeError> {
    let unsupported = |message: String| ServeError { kind: ErrorKind::UnsupportedMediaType, message };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        // MLflow's clients always send one; curl without -H sends form encoding. Read JSON.
        return Ok(Format::Json);
    };
    let value = value.to_str().map_err(|_| unsupported("the Content-Type header is not text".into()))?;
    let mut parts = value.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default().to_ascii_lowercase();
    for parameter in parts.filter(|p| !p.is_empty()) {
        let (key, val) = parameter.split_once('=').unwrap_or((parameter, ""));
        if !(key.trim().eq_ignore_ascii_case("charset") && val.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")) {
            return Err(unsupported(format!(
                "unsupported Content-Type parameter '{parameter}': only charset=utf-8 is accepted (the scoring protocol changed in MLflow 2.0: send JSON with one of {})",
                KEYS.join(", ")
            )));
        }
    }
    match media.as_str() {
        "application/json" => Ok(Format::Json),
        "text/csv" => Ok(Format::Csv),
        other => Err(unsupported(format!("unsupported Content-Type '{other}': use application/json or text/csv"))),
    }
}

fn parse_json_body(schema: &Schema, bytes: &[u8], max_rows: usize) -> Result<(InputForm, RecordBatch), ServeError> {
    let invalid = |m: String| ServeError::malformed(format!("Invalid input. {m}"));
    let Value::Object(map) = parse_json(bytes)? else {
        return Err(invalid(format!("The body must be a JSON object with one of the keys {}", KEYS.join(", "))));
    };
    let present: Vec<&str> = KEYS.iter().copied().filter(|k| map.contains_key(*k)).collect();
    let [key] = present.as_slice() else {
        return Err(invalid(format!(
            "The body must hold exactly one of the keys {}; it holds {}",
            KEYS.join(", "),
            if present.is_empty() { format!("{:?}", map.keys().collect::<Vec<_>>()) } else { format!("{present:?}") }
        )));
    };
    let value = &map[*key];
    let form = if key.starts_with("dataframe") { InputForm::DataFrame } else { InputForm::Tensor };
    let batch = match (*key, value) {
        ("dataframe_split", Value::Object(split)) => {
            let rows = match split.get("data") {
                Some(Value::Array(rows)) => rows,
                _ => return Err(invalid("dataframe_split needs 'data', a list of rows".into())),
            };
            let names: Option<Vec<&str>> = match split.get("columns") {
                None => None,
                Some(Value::Array(names)) => Some(
                    names
                        .iter()
                        .map(|n| n.as_str().ok_or_else(|| invalid("dataframe_split 'columns' must be strings".into())))
                        .collect::<Result<_, _>>()?,
                ),
                Some(_) => return Err(invalid("dataframe_split 'columns' must be a list".into())),
            };
            input::from_rows(schema, names.as_deref(), rows, "dataframe_split", Extra::Ignore, max_rows)
        }
        ("dataframe_records", Value::Array(records)) => {
            if schema.positional && records.iter().all(Value::is_array) {
                input::from_rows(schema, None, records, "dataframe_records", Extra::Ignore, max_rows)
            } else if schema.positional && records.iter().all(|r| r.as_object().is_some_and(|m| m.len() > 1)) {
                // A DataFrame for a model that reads positions: its columns in the body's order.
                let rows = records_in_key_order(bytes)?;
                input::from_rows(schema, None, &rows, "dataframe_records", Extra::Refuse, max_rows)
            } else {
                input::from_records(schema, records, "dataframe_records", Extra::Ignore, max_rows)
            }
        }
        ("instances", Value::Array(items)) => {
            if items.first().is_some_and(Value::is_object) {
                input::from_records(schema, items, "instances", Extra::Ignore, max_rows)
            } else {
                input::from_rows(schema, None, items, "instances", Extra::Ignore, max_rows)
            }
        }
        ("inputs", Value::Object(columns)) => input::from_columns(schema, columns, "inputs", Extra::Ignore, max_rows),
        ("inputs", Value::Array(rows)) => input::from_rows(schema, None, rows, "inputs", Extra::Ignore, max_rows),
        (key, _) => Err(invalid(format!("'{key}' has the wrong shape: see MLflow's scoring protocol"))),
    }?;
    Ok((form, batch))
}

/// One JSON object's entries in the order the body gives them (a parsed `Value` sorts them).
struct OrderedRecord(Vec<Value>, Vec<String>);

impl<'de> serde::Deserialize<'de> for OrderedRecord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = OrderedRecord;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a record (a JSON object)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<OrderedRecord, A::Error> {
                let (mut values, mut keys) = (Vec::new(), Vec::new());
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    keys.push(k);
                    values.push(v);
                }
                Ok(OrderedRecord(values, keys))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// `dataframe_records` as rows of values in each record's key order, as pandas builds a
/// DataFrame's columns from them (for a model that reads its columns by position). Every
/// record must name the same columns in the same order.
fn records_in_key_order(bytes: &[u8]) -> Result<Vec<Value>, ServeError> {
    #[derive(serde::Deserialize)]
    struct Records {
        dataframe_records: Vec<OrderedRecord>,
    }
    let parsed: Records =
        serde_json::from_slice(bytes).map_err(|e| ServeError::malformed(format!("Invalid input. {e}")))?;
    let first = parsed.dataframe_records.first().map(|r| r.1.clone()).unwrap_or_default();
    parsed
        .dataframe_records
        .into_iter()
        .enumerate()
        .map(|(i, OrderedRecord(values, keys))| {
            if keys == first {
                Ok(Value::Array(values))
            } else {
                Err(ServeError::invalid(format!(
                    "dataframe_records: record {} names the columns {keys:?}, record 1 names {first:?}; this model \
                     reads its columns by position, so every record must name the same ones in the same order",
                    i + 1
                )))
            }
        })
        .collect()
}

/// A CSV body with a header row; values are read as their column's type.
fn parse_csv(schema: &Schema, bytes: &[u8], max_rows: usize) -> Result<RecordBatch, ServeError> {
    let bad = |e: csv::Error| ServeError::malformed(format!("Invalid input. The CSV body cannot be read: {e}"));
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let names: Vec<String> = reader.headers().map_err(bad)?.iter().map(str::to_owned).collect();
    let records: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().map_err(bad)?;
    input::check_rows(records.len(), max_rows)?;
    if let Some((r, record)) = records.iter().enumerate().find(|(_, rec)| rec.len() != names.len()) {
        return Err(ServeError::malformed(format!(
            "Invalid input. CSV row {} holds {} fields, the header {}",
            r + 1,
            record.len(),
            names.len()
        )));
    }
    let kinds: Vec<Option<Kind>> = names.iter().map(|n| schema.kind_of(n)).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    schema.assemble(
        Some(&name_refs),
        names.len(),
        records.len(),
        |r, j| csv_cell(&records[r][j], kinds[j]),
        Extra::Ignore,
    )
}

/// A CSV field as a cell of its column's kind; empty is missing, as pandas reads it.
fn csv_cell(field: &str, kind: Option<Kind>) -> Cell<'_> {
    if field.is_empty() {
        return Cell::Null;
    }
    match kind {
        Some(Kind::Number) => match field.trim() {
            "NaN" | "nan" | "NA" | "N/A" | "null" | "NULL" => Cell::Null,
            text => text.parse::<f64>().map_or(Cell::Text(field), Cell::Number),
        },
        Some(Kind::Bool) => match field.trim() {
            "true" | "True" | "TRUE" => Cell::Bool(true),
            "false" | "False" | "FALSE" => Cell::Bool(false),
            _ => Cell::Text(field),
        },
        _ => Cell::Text(field),
    }
}
