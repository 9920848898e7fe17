//! `/invocations` for ONNX models against the answers of the real `mlflow models serve`
//! (MLflow 3.17.2, the `onnx` flavor), recorded by
//! `tests/interop/fixtures/make_mlflow_onnx_answers.py` for six scikit-learn models converted by
//! skl2onnx (a 3-class gradient boosting classifier, logistic regressions with and without
//! ZipMap and with string labels, a regressor, a model with four inputs), each saved with a
//! named tensor signature, an unnamed one, a column signature and none, and every body form.
//!
//! Every body MLflow answered with 200 gets the same answer from Shipyard: the same keys and
//! nesting, integers and strings equal, numbers equal to 1e-5 (Shipyard's engine equals
//! onnxruntime to that). Where MLflow refused a body (400, or 500 in two cases), Shipyard may
//! answer it (its reading of tables is more lenient), but never with a 5xx.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::Value;
use shipyard_runtime::{EngineChoice, LoadedModel};
use shipyard_serving::{Limits, ModelSettings, ServedModel, ServingState};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/fixtures")
}

/// Where `ours` differs from `theirs`, or `None`: structure, integers and text exactly, other
/// numbers to 1e-5.
fn difference(ours: &Value, theirs: &Value, at: &str) -> Option<String> {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<&String>, Vec<&String>) = (a.keys().collect(), b.keys().collect());
            if ka != kb {
                return Some(format!("{at}: keys {ka:?}, MLflow has {kb:?}"));
            }
            a.iter().find_map(|(k, v)| difference(v, &b[k], &format!("{at}.{k}")))
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!("{at}: {} items, MLflow has {}", a.len(), b.len()));
            }
            a.iter().zip(b).enumerate().find_map(|(i, (x, y))| difference(x, y, &format!("{at}[{i}]")))
        }
        (Value::Number(x), Value::Number(y)) if y.is_i64() || y.is_u64() => {
            (x != y).then(|| format!("{at}: {x}, MLflow has the integer {y}"))
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            ((x - y).abs() > 1e-5 * y.abs().max(1.0)).then(|| format!("{at}: {x}, MLflow has {y}"))
        }
        (a, b) => (a != b).then(|| format!("{at}: {a}, MLflow has {b}")),
    }
}

#[tokio::test]
async fn invocations_answer_as_mlflow_models_serve_does() {
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("mlflow_onnx_answers.json")).unwrap()).unwrap();
    assert_eq!(recorded["mlflow_version"], shipyard_core::MLFLOW_COMPAT_VERSION);
    let cases = recorded["cases"].as_array().unwrap();
    let mut routers = std::collections::HashMap::new();
    let (mut compared, mut lenient, mut mismatches) = (0, 0, Vec::new());
    for case in cases {
        let dir = case["model_dir"].as_str().unwrap();
        let router = routers.entry(dir.to_owned()).or_insert_with(|| {
            let state = ServingState::new(Limits { max_body_bytes: 1 << 20, max_rows: 1000 });
            let model = LoadedModel::load(&fixtures().join("onnx_models").join(dir), EngineChoice::Native).unwrap();
            let settings = ModelSettings { cache_entries: 0, ..ModelSettings::default() };
            state.registry.insert(ServedModel::new(dir.into(), None, model, settings, None, &state.metrics));
            shipyard_serving::router(state, true)
        });
        let content_type = case["content_type"].as_str().unwrap();
        // The exact text MLflow was sent (a parsed body would lose the order of its keys).
        let body = case["body_text"].as_str().unwrap().as_bytes().to_vec();
        let (status, _, answer) =
            common::call(router, "POST", "/invocations", &[("content-type", content_type)], body).await;
        let what = format!("{dir} {} ({})", case["kind"].as_str().unwrap(), case["status"]);
        assert!(!status.is_server_error(), "{what}: Shipyard answered {status}: {answer}");
        if case["status"] != 200 {
            if status == StatusCode::OK {
                lenient += 1;
            }
            continue;
        }
        compared += 1;
        if status != StatusCode::OK {
            mismatches.push(format!("{what}: Shipyard answered {status}: {answer}"));
        } else if let Some(d) = difference(&answer, &case["response"], "body") {
            mismatches.push(format!("{what}: {d}"));
        }
    }
    assert!(mismatches.is_empty(), "{} of {compared} answers differ:\n{}", mismatches.len(), mismatches.join("\n"));
    assert!(compared >= 90, "only {compared} recorded 200 answers compared");
    eprintln!("{compared} answers equal MLflow's; {lenient} bodies MLflow refused were answered");
}
