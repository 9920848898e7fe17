//! The seed's protocol: `POST /predict/{model}` and `POST /predict/{model}/{version}`.
//!
//! Body: `{"data": [[...], ...]}` (values in the model's column order, or named by an optional
//! `"columns"` list) or `{"records": [{"column": value, ...}, ...]}`. Answer:
//! `{"predictions": [...], "probabilities": [[...]], "classes": [...], "model", "version",
//! "request_id", "cached"}` (probabilities and classes for classifiers). Errors:
//! `{"error": "...", "request_id": "..."}`, 422 when the values do not fit the model.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};
use shipyard_runtime::Output;

use super::{parse_json, predictions, probabilities};
use crate::input::{self, Extra, Schema};
use crate::{Incoming, ModelPath, Protocol, RequestId, ServeError, ServedModel, ServingState, predict_request};

pub async fn predict(
    State(state): State<Arc<ServingState>>,
    Path(path): Path<ModelPath>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = state.route_seed(&path.model, path.version.as_deref()).await;
    let sticky = route.as_ref().ok().and_then(|r| r.sticky_field()).map(str::to_owned);
    let max_rows = state.limits.max_rows;
    predict_request(
        &state,
        Protocol::Seed,
        route,
        Incoming { id: &id, headers: &headers, body },
        |model, bytes| Ok(((), parse(&model.schema, bytes, max_rows, sticky.as_deref())?)),
        |(), p| Ok(render(&p.output, &p.answered_by, &id.0, p.cached)),
    )
    .await
}

/// Reads the body into the model's batch. `sticky` names a top-level field the deployment reads
/// to keep a client on one arm: it is let through. (Public for the fuzzers.)
pub fn parse(
    schema: &Schema,
    bytes: &[u8],
    max_rows: usize,
    sticky: Option<&str>,
) -> Result<arrow_array::RecordBatch, ServeError> {
    let body = parse_json(bytes)?;
    let Value::Object(map) = body else {
        return Err(ServeError::malformed(
            r#"the body must be a JSON object: {"data": [[...]]} or {"records": [...]}"#,
        ));
    };
    let known = |k: &str| matches!(k, "data" | "records" | "columns") || Some(k) == sticky;
    if let Some(unknown) = map.keys().find(|k| !known(k)) {
        return Err(ServeError::malformed(format!(
            r#"unknown field '{unknown}': the body is {{"data": [[...]], "columns"?: [...]}} or {{"records": [...]}}"#
        )));
    }
    match (map.get("data"), map.get("records")) {
        (Some(Value::Array(rows)), None) => {
            let names: Option<Vec<&str>> = match map.get("columns") {
                None => None,
                Some(Value::Array(names)) => Some(
                    names
                        .iter()
                        .map(|n| n.as_str().ok_or_else(|| ServeError::malformed("'columns' must be a list of strings")))
                        .collect::<Result<_, _>>()?,
                ),
                Some(_) => return Err(ServeError::malformed("'columns' must be a list of strings")),
            };
            input::from_rows(schema, names.as_deref(), rows, "data", Extra::Refuse, max_rows)
        }
        (None, Some(Value::Array(records))) => {
            if map.contains_key("columns") {
                return Err(ServeError::malformed("'columns' goes with 'data', not with 'records'"));
            }
            input::from_records(schema, records, "records", Extra::Refuse, max_rows)
        }
        (Some(_), Some(_)) => Err(ServeError::malformed("send either 'data' or 'records', not both")),
        (Some(_), None) => Err(ServeError::malformed("'data' must be a list of rows")),
        (None, Some(_)) => Err(ServeError::malformed("'records' must be a list of objects")),
        (None, None) => {
            Err(ServeError::malformed(r#"the body needs 'data' ([[...], ...]) or 'records' ([{...}, ...])"#))
        }
    }
}

fn render(output: &Output, model: &ServedModel, request_id: &str, cached: bool) -> Value {
    let mut body = json!({
        "predictions": predictions(output),
        "model": model.name,
        "version": model.version,
        "request_id": request_id,
        "cached": cached,
    });
    // A Python classifier answers labels only.
    if let (Some(p), Output::Classes { classes, probabilities: probs, .. }) = (probabilities(output), output)
        && !probs.is_empty()
    {
        body["probabilities"] = p;
        body["classes"] = json!(classes);
    }
    body
}
