//! Helpers of the serving tests: fixtures of the ONNX engine, and requests to a router.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use shipyard_runtime::{EngineChoice, LoadedModel};
use tower::ServiceExt;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/fixtures/onnx").join(format!("{name}.onnx"))
}

/// The first `n` rows of a fixture's recorded input `input`, as JSON rows.
pub fn fixture_rows(name: &str, input: &str, n: usize) -> Vec<Vec<Value>> {
    let path = fixture(name).with_extension("json");
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let tensor = &spec["inputs"][input];
    let width = tensor["shape"][1].as_u64().unwrap_or(1) as usize;
    let data = tensor["data"].as_array().unwrap();
    (0..n).map(|r| data[r * width..(r + 1) * width].to_vec()).collect()
}

pub fn load(name: &str) -> LoadedModel {
    LoadedModel::load(&fixture(name), EngineChoice::Native).unwrap()
}

pub async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, value)
}

pub async fn post(router: &Router, uri: &str, body: Value) -> (StatusCode, HeaderMap, Value) {
    call(router, "POST", uri, &[("content-type", "application/json")], body.to_string().into_bytes()).await
}
