//! The serving routes of every protocol, on the router itself (no socket): answers equal the
//! engine's own predictions, errors have the protocol's shape, status and a message naming
//! the column, row or field; overload sheds with 503; batching and the cache keep answers
//! exact; a fallback answers when the primary times out.

// Helpers panic on broken fixtures, which is what a test should do.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use axum::Router;
use axum::http::StatusCode;
use common::{call, fixture, fixture_rows, load, post};
use serde_json::{Value, json};
use shipyard_runtime::{EngineChoice, LoadedModel, Output};
use shipyard_serving::{Limits, ModelSettings, ServedModel, ServingState};

fn settings() -> ModelSettings {
    ModelSettings { cache_entries: 0, ..ModelSettings::default() }
}

fn serve(models: Vec<Arc<ServedModel>>, state: Arc<ServingState>) -> Router {
    for m in models {
        state.registry.insert(m);
    }
    shipyard_serving::router(state, true)
}

/// One model served under `name`.
fn single(fixture_name: &str, served_as: &str, settings: ModelSettings) -> (Router, Arc<ServingState>) {
    let state = ServingState::new(Limits { max_body_bytes: 1 << 20, max_rows: 1000 });
    let model = ServedModel::new(served_as.into(), None, load(fixture_name), settings, None, &state.metrics);
    (serve(vec![model], state.clone()), state)
}

/// The engine's answer for rows of numbers, columns in order.
fn engine_answer(model: &LoadedModel, rows: &[Vec<Value>]) -> Output {
    let width = rows[0].len();
    let fields: Vec<Field> = (0..width).map(|j| Field::new(format!("f{j}"), DataType::Float64, true)).collect();
    let columns = (0..width)
        .map(|j| Arc::new(Float64Array::from(rows.iter().map(|r| r[j].as_f64().unwrap()).collect::<Vec<_>>())) as _)
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    model.predict(&[batch]).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            other => out.push(other.as_f64().unwrap()),
        }
    }
    walk(v, &mut out);
    out
}

#[tokio::test]
async fn seed_protocol_answers_what_the_engine_computes() {
    let (router, _) = single("rf_classifier_binary_string_labels", "rf", settings());
    let rows = fixture_rows("rf_classifier_binary_string_labels", "input", 5);
    let Output::Classes { classes, labels, probabilities, .. } =
        engine_answer(&load("rf_classifier_binary_string_labels"), &rows)
    else {
        panic!("a classifier")
    };
    let (status, headers, body) =
        call(&router, "POST", "/predict/rf", &[("x-request-id", "req-42")], json!({ "data": rows }).to_string().into())
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["predictions"], json!(labels));
    assert_eq!(body["classes"], json!(classes));
    assert_eq!(floats(&body["probabilities"]), probabilities);
    assert_eq!(body["model"], "rf");
    assert_eq!(body["version"], Value::Null);
    assert_eq!(body["request_id"], "req-42");
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(headers["x-model-name"], "rf");

    // Named columns: a positional model takes them in the order given.
    let names: Vec<String> = (0..20).map(|j| format!("c{j}")).collect();
    let (status, _, named) = post(&router, "/predict/rf", json!({ "columns": names, "data": rows })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(named["predictions"], body["predictions"]);
    // Without a request id, one is made.
    let (_, headers, body) = post(&router, "/predict/rf", json!({ "data": rows })).await;
    assert_eq!(headers["x-request-id"].to_str().unwrap(), body["request_id"].as_str().unwrap());
    assert_eq!(body["request_id"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn named_columns_are_matched_by_name_and_checked() {
    let (router, _) = single("pipe_columns_onehot", "shapes", settings());
    let record = json!({
        "color": "red", "shape": "circle",
        "num_0": 0.5, "num_1": 1.0, "num_2": -0.25, "num_3": 2.0, "num_4": 0.0, "num_5": 1.5
    });
    let (status, _, body) = post(&router, "/predict/shapes", json!({ "records": [record] })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let label = body["predictions"][0].as_i64().expect("integer labels are JSON numbers");
    assert!((0..3).contains(&label));
    assert_eq!(body["probabilities"][0].as_array().unwrap().len(), 3);

    let mut missing = record.clone();
    missing.as_object_mut().unwrap().remove("shape");
    let (status, _, body) = post(&router, "/predict/shapes", json!({ "records": [missing] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().contains("'shape'"), "{body}");

    let mut wrong = record.clone();
    wrong["num_2"] = json!("high");
    let (status, _, body) = post(&router, "/predict/shapes", json!({ "records": [record, wrong] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "row 2, column 'num_2': expected a number, got \"high\"");

    let mut extra = record.clone();
    extra["size"] = json!(3);
    let (status, _, body) = post(&router, "/predict/shapes", json!({ "records": [extra] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().starts_with("unknown column 'size'"), "{body}");

    // MLflow drops columns the model does not read, as its schema enforcement does; an ONNX
    // model without a signature answers DataFrame input one record per row, by graph output.
    let (status, _, body) = post(&router, "/invocations", json!({ "dataframe_records": [extra] })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["predictions"][0]["label"].as_i64(), Some(label), "{body}");
    assert_eq!(body["predictions"][0]["probabilities"].as_array().unwrap().len(), 3, "{body}");

    // The Open Inference Protocol: one tensor per column.
    let infer = json!({ "inputs": [
        { "name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"] },
        { "name": "shape", "shape": [1, 1], "datatype": "BYTES", "data": [["circle"]] },
        { "name": "num_0", "shape": [1], "datatype": "FP64", "data": [0.5] },
        { "name": "num_1", "shape": [1], "datatype": "FP64", "data": [1.0] },
        { "name": "num_2", "shape": [1], "datatype": "FP64", "data": [-0.25] },
        { "name": "num_3", "shape": [1], "datatype": "FP64", "data": [2.0] },
        { "name": "num_4", "shape": [1], "datatype": "FP64", "data": [0.0] },
        { "name": "num_5", "shape": [1], "datatype": "FP64", "data": [1.5] },
    ]});
    let (status, _, body) = post(&router, "/v2/models/shapes/infer", infer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The graph's own outputs, as Triton serves them.
    assert_eq!(body["outputs"][0]["name"], "label");
    assert_eq!(body["outputs"][0]["datatype"], "INT64");
    assert_eq!(body["outputs"][0]["shape"], json!([1]));
    assert_eq!(body["outputs"][0]["data"][0].as_i64(), Some(label));
    assert_eq!(body["outputs"][1]["name"], "probabilities");
    assert_eq!(body["outputs"][1]["datatype"], "FP32");
    assert_eq!(body["outputs"][1]["shape"], json!([1, 3]));

    let (status, _, meta) = call(&router, "GET", "/v2/models/shapes", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["inputs"].as_array().unwrap().len(), 8);
    assert_eq!(meta["inputs"][0], json!({ "name": "color", "datatype": "BYTES", "shape": [-1, 1] }));
    assert_eq!(meta["outputs"][0], json!({ "name": "label", "datatype": "INT64", "shape": [-1] }));
    assert_eq!(meta["outputs"][1], json!({ "name": "probabilities", "datatype": "FP32", "shape": [-1, 3] }));
}

#[tokio::test]
async fn mlflow_scoring_protocol_reads_every_input_format() {
    let (router, _) = single("rf_regressor", "reg", settings());
    let rows = fixture_rows("rf_regressor", "input", 4);
    let Output::Values { values, .. } = engine_answer(&load("rf_regressor"), &rows) else { panic!("a regressor") };
    let names: Vec<String> = (0..20).map(|j| format!("f{j}")).collect();
    // As `mlflow models serve` answers the onnx flavor without a signature: tensor input by
    // output, each nested as its tensor ([rows, 1]); DataFrame input one record per row.
    let by_output = json!({ "variable": values.iter().map(|v| vec![*v]).collect::<Vec<_>>() });
    let records: Vec<Value> = values.iter().map(|v| json!({ "variable": v })).collect();
    let bodies = [
        (json!({ "dataframe_split": { "columns": names, "data": rows } }), json!(records)),
        (json!({ "dataframe_split": { "data": rows } }), json!(records)),
        (json!({ "dataframe_records": rows }), json!(records)),
        (json!({ "instances": rows }), by_output.clone()),
        (json!({ "inputs": rows, "params": {} }), by_output),
    ];
    for (body, expected) in bodies {
        let (status, _, answer) = post(&router, "/invocations", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}: {answer}");
        assert_eq!(answer["predictions"], expected, "{body}");
    }
    let mut csv = names.join(",") + "\n";
    for row in &rows {
        csv += &row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
        csv += "\n";
    }
    let (status, _, answer) = call(&router, "POST", "/invocations", &[("content-type", "text/csv")], csv.into()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let read: Vec<f64> =
        answer["predictions"].as_array().unwrap().iter().map(|r| r["variable"].as_f64().unwrap()).collect();
    assert_eq!(read, values);

    // MLflow's refusals.
    let (status, _, answer) = post(&router, "/invocations", json!({ "instances": rows, "inputs": rows })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error_code"], "BAD_REQUEST");
    assert!(answer["message"].as_str().unwrap().contains("exactly one"), "{answer}");
    let (status, _, answer) = post(&router, "/invocations", json!([1, 2])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error_code"], "BAD_REQUEST");
    let (status, _, _) = call(
        &router,
        "POST",
        "/invocations",
        &[("content-type", "application/json; format=pandas-split")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, _) = call(
        &router,
        "POST",
        "/invocations",
        &[("content-type", "application/json; charset=UTF-8")],
        json!({ "instances": rows }).to_string().into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, answer) = post(&router, "/invocations", json!({ "instances": [[1.0, 2.0]] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(answer["message"].as_str().unwrap().contains("takes 20 columns"), "{answer}");

    let (status, _, _) = call(&router, "GET", "/ping", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, version) = call(&router, "GET", "/version", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version, Value::String(shipyard_core::MLFLOW_COMPAT_VERSION.into()));
}

#[tokio::test]
async fn open_inference_protocol_json_and_binary_tensors() {
    let (router, _) = single("rf_classifier_binary_string_labels", "rf", settings());
    let rows = fixture_rows("rf_classifier_binary_string_labels", "input", 3);
    let Output::Classes { labels, probabilities, .. } =
        engine_answer(&load("rf_classifier_binary_string_labels"), &rows)
    else {
        panic!("a classifier")
    };
    let flat: Vec<f64> = rows.iter().flatten().map(|v| v.as_f64().unwrap()).collect();
    let (status, _, body) = post(
        &router,
        "/v2/models/rf/infer",
        json!({ "id": "abc", "inputs": [{ "name": "input-0", "shape": [3, 20], "datatype": "FP64", "data": flat }] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "abc");
    assert_eq!(body["model_name"], "rf");
    assert_eq!(body["outputs"][0], json!({ "name": "label", "datatype": "BYTES", "shape": [3], "data": labels }));
    assert_eq!(body["outputs"][1]["name"], "probabilities");
    assert_eq!(body["outputs"][1]["datatype"], "FP32");
    assert_eq!(body["outputs"][1]["shape"], json!([3, 2]));
    assert_eq!(floats(&body["outputs"][1]["data"]), probabilities);

    // Triton's binary extension: FP32 bytes after the JSON header; only the output asked for.
    let header = json!({
        "inputs": [{ "name": "input", "shape": [3, 20], "datatype": "FP32", "parameters": { "binary_data_size": 240 } }],
        "outputs": [{ "name": "probabilities", "parameters": { "binary_data": true } }],
        "parameters": { "binary_data_output": true },
    })
    .to_string();
    let mut payload = header.clone().into_bytes();
    for x in &flat {
        payload.extend_from_slice(&(*x as f32).to_le_bytes());
    }
    let length = header.len().to_string();
    let (status, _, body) =
        call(&router, "POST", "/v2/models/rf/infer", &[("inference-header-content-length", &length)], payload.clone())
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(body["outputs"][0]["name"], "probabilities");
    assert_eq!(floats(&body["outputs"][0]["data"]), probabilities, "the fixture's values are exact in f32");

    // Errors: `{"error"}` bodies, as tritonclient reads them.
    let short = payload[..payload.len() - 4].to_vec();
    let (status, _, body) =
        call(&router, "POST", "/v2/models/rf/infer", &[("inference-header-content-length", &length)], short).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("binary_data_size is 240 bytes, 236 are left"), "{body}");
    let (status, _, body) = post(
        &router,
        "/v2/models/rf/infer",
        json!({ "inputs": [{ "name": "x", "shape": [2, 20], "datatype": "FP64", "data": flat }] }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("holds 40 values, the data has 60"), "{body}");
    let (status, _, body) = post(&router, "/v2/models/nope/infer", json!({ "inputs": [] })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("no model named 'nope'"), "{body}");
    let (status, _, body) = post(&router, "/v2/models/rf/versions/7/infer", json!({ "inputs": [] })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("no version '7'"), "{body}");

    for (uri, want) in [
        ("/v2/health/live", StatusCode::OK),
        ("/v2/health/ready", StatusCode::OK),
        ("/v2/models/rf/ready", StatusCode::OK),
        ("/v2/models/rf/versions/1/ready", StatusCode::OK),
        ("/v2/models/other/ready", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(call(&router, "GET", uri, &[], vec![]).await.0, want, "{uri}");
    }
    let (_, _, meta) = call(&router, "GET", "/v2", &[], vec![]).await;
    assert_eq!(meta["name"], "shipyard");
    let (_, _, meta) = call(&router, "GET", "/v2/models/rf", &[], vec![]).await;
    assert_eq!(meta["platform"], "onnx_onnxv1");
    assert_eq!(meta["inputs"], json!([{ "name": "input", "datatype": "FP64", "shape": [-1, 20] }]));
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_refused_with_their_reason() {
    let (router, _) = single("rf_regressor", "reg", settings());
    let (status, _, body) = call(&router, "POST", "/predict/reg", &[], b"{\"data\": [[1,".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().starts_with("the body is not valid JSON"), "{body}");
    let (status, _, body) = post(&router, "/predict/reg", json!({ "rows": [] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("unknown field 'rows'"), "{body}");
    let (status, _, body) = post(&router, "/predict/reg", json!({ "data": vec![vec![0.0; 20]; 1001] })).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("1001 rows"), "{body}");
    let (status, _, body) = call(&router, "POST", "/predict/reg", &[], vec![b' '; (1 << 20) + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _, body) = post(&router, "/predict/reg", json!({ "data": [vec![Value::Null; 20]] })).await;
    assert_eq!(status, StatusCode::OK, "missing values are NaN for a model without a signature: {body}");
    let (status, _, body) = post(&router, "/predict/nope", json!({ "data": [] })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no model named 'nope' is served (served: reg)");
}

#[tokio::test]
async fn metrics_count_requests_by_model_and_status() {
    let (router, _) = single("rf_regressor", "reg", ModelSettings::default());
    let rows = fixture_rows("rf_regressor", "input", 1);
    for _ in 0..2 {
        assert_eq!(post(&router, "/predict/reg", json!({ "data": rows })).await.0, StatusCode::OK);
    }
    assert_eq!(post(&router, "/predict/reg", json!({ "data": [[1]] })).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, headers, text) = call(&router, "GET", "/metrics", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = text.as_str().unwrap();
    for line in [
        r#"shipyard_inference_requests_total{model="reg",version="",protocol="seed",code="200"} 2"#,
        r#"shipyard_inference_requests_total{model="reg",version="",protocol="seed",code="422"} 1"#,
        r#"shipyard_prediction_cache_hits_total{model="reg",version=""} 1"#,
        r#"shipyard_prediction_cache_misses_total{model="reg",version=""} 1"#,
        r#"shipyard_inference_request_duration_seconds_count{model="reg",version="",protocol="seed"} 3"#,
        r#"shipyard_model_loaded{model="reg",version=""} 1"#,
        r#"shipyard_inference_in_flight_requests{model="reg",version=""} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

/// A model that costs real time: `layers` products of the `[rows, 256]` input with the
/// identity, so it answers its input after `rows * layers * 256^2` multiply-adds.
fn slow_model(dir: &Path, layers: usize) -> LoadedModel {
    use prost::Message;
    use shipyard_core::onnx_proto::*;
    let width = 256i64;
    let mut identity = vec![0f32; (width * width) as usize];
    for i in 0..width as usize {
        identity[i * width as usize + i] = 1.0;
    }
    let tensor_type = |dims: Vec<Option<i64>>| TypeProto {
        tensor_type: Some(TensorTypeProto {
            elem_type: data_type::FLOAT,
            shape: Some(TensorShapeProto {
                dim: dims
                    .into_iter()
                    .map(|d| Dimension { dim_value: d, dim_param: d.map_or(Some("N".into()), |_| None) })
                    .collect(),
            }),
        }),
        ..Default::default()
    };
    let nodes: Vec<NodeProto> = (0..layers)
        .map(|i| NodeProto {
            input: vec![if i == 0 { "X".into() } else { format!("h{i}") }, "W".into()],
            output: vec![if i + 1 == layers { "Y".into() } else { format!("h{}", i + 1) }],
            op_type: "MatMul".into(),
            name: format!("mm{i}"),
            ..Default::default()
        })
        .collect();
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            node: nodes,
            name: "slow".into(),
            initializer: vec![TensorProto {
                dims: vec![width, width],
                data_type: data_type::FLOAT,
                float_data: identity,
                name: "W".into(),
                ..Default::default()
            }],
            input: vec![ValueInfoProto { name: "X".into(), r#type: Some(tensor_type(vec![None, Some(width)])) }],
            output: vec![ValueInfoProto { name: "Y".into(), r#type: Some(tensor_type(vec![None, Some(width)])) }],
        }),
        ..Default::default()
    };
    let path = dir.join("slow.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    LoadedModel::load(&path, EngineChoice::Native).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_shed_with_503_and_admitted_requests_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let state = ServingState::new(Limits::default());
    let settings = ModelSettings {
        max_concurrency: 2,
        max_queue: 0,
        cache_entries: 0,
        timeout: Duration::from_secs(600),
        ..ModelSettings::default()
    };
    let model = ServedModel::new("slow".into(), None, slow_model(dir.path(), 60), settings, None, &state.metrics);
    let router = serve(vec![model], state);
    let rows = vec![vec![1.0f64; 256]; 200];
    let body = json!({ "data": rows }).to_string();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let router = router.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let (status, headers, answer) = call(&router, "POST", "/predict/slow", &[], body.into()).await;
            (status, headers, answer, std::time::Instant::now())
        }));
    }
    let mut ok = Vec::new();
    let mut shed = Vec::new();
    for task in tasks {
        let (status, headers, answer, at) = task.await.unwrap();
        match status {
            StatusCode::OK => {
                assert_eq!(answer["predictions"][0].as_array().unwrap().len(), 256);
                ok.push(at);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(headers["retry-after"], "1");
                assert!(answer["error"].as_str().unwrap().contains("concurrency limit"), "{answer}");
                shed.push(at);
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(!ok.is_empty(), "admitted requests succeed");
    assert!(!shed.is_empty(), "with 2 slots and no queue some of 8 concurrent requests are shed");
    // Shed requests are answered at once, before the admitted ones finish.
    assert!(shed.iter().max().unwrap() < ok.iter().max().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_answers_when_the_primary_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let state = ServingState::new(Limits::default());
    let fallback_dir = tempfile::tempdir().unwrap();
    let fallback = ServedModel::new(
        "fast".into(),
        Some("2".into()),
        slow_model(fallback_dir.path(), 1),
        settings(),
        None,
        &state.metrics,
    );
    // 60 products of 100 x 256 by 256 x 256 take far longer than a millisecond. Far longer
    // matters: an answer that arrives before the timed-out request is polled again is returned
    // (the work is done), and on a loaded machine the poll can come tens of milliseconds late.
    let primary_settings = ModelSettings { timeout: Duration::from_millis(1), ..settings() };
    let primary = ServedModel::new(
        "slow".into(),
        Some("3".into()),
        slow_model(dir.path(), 60),
        primary_settings,
        Some(fallback),
        &state.metrics,
    );
    let router = serve(vec![primary], state);
    let (status, headers, body) = post(&router, "/predict/slow", json!({ "data": vec![vec![2.0f64; 256]; 100] })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model"], "fast");
    assert_eq!(body["version"], "2");
    assert_eq!(headers["x-model-version"], "2");
    assert_eq!(body["predictions"][0][0], 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_requests_each_get_their_own_rows() {
    let (router, state) = single(
        "rf_classifier_binary_string_labels",
        "rf",
        ModelSettings {
            max_batch_rows: 64,
            max_batch_wait: Duration::from_millis(20),
            cache_entries: 0,
            ..ModelSettings::default()
        },
    );
    let rows = fixture_rows("rf_classifier_binary_string_labels", "input", 40);
    let Output::Classes { labels, probabilities, .. } =
        engine_answer(&load("rf_classifier_binary_string_labels"), &rows)
    else {
        panic!("a classifier")
    };
    let mut tasks = Vec::new();
    for (i, chunk) in rows.chunks(4).enumerate() {
        let router = router.clone();
        let body = json!({ "data": chunk });
        tasks.push(tokio::spawn(async move { (i, post(&router, "/predict/rf", body).await) }));
    }
    for task in tasks {
        let (i, (status, _, body)) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["predictions"], json!(labels[i * 4..i * 4 + 4]));
        assert_eq!(floats(&body["probabilities"]), probabilities[i * 8..i * 8 + 8]);
    }
    // A bad request in a batch fails alone.
    let good = post(&router, "/predict/rf", json!({ "data": [rows[0]] }));
    let bad = post(&router, "/predict/rf", json!({ "data": [[1.0]] }));
    let (good, bad) = tokio::join!(good, bad);
    assert_eq!(good.0, StatusCode::OK);
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(state.metrics.render().contains("shipyard_inference_batch_rows_count"));
}

#[tokio::test]
async fn a_signature_that_requires_a_value_refuses_nan_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("rf_regressor"), dir.path().join("model.onnx")).unwrap();
    let columns: Vec<Value> =
        (0..20).map(|j| json!({ "type": "double", "name": format!("f{j}"), "required": j == 3 })).collect();
    let mlmodel = format!(
        "flavors:\n  onnx:\n    data: model.onnx\nsignature:\n  inputs: '{}'\n",
        serde_json::to_string(&columns).unwrap()
    );
    std::fs::write(dir.path().join("MLmodel"), mlmodel).unwrap();
    let state = ServingState::new(Limits::default());
    let model = LoadedModel::load(dir.path(), EngineChoice::Native).unwrap();
    let router = serve(vec![ServedModel::new("sig".into(), None, model, settings(), None, &state.metrics)], state);
    let mut rows = fixture_rows("rf_regressor", "input", 2);
    let (status, _, body) = post(&router, "/predict/sig", json!({ "data": rows })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    rows[1][3] = Value::Null;
    rows[0][5] = Value::Null; // optional: a missing value is fine
    let (status, _, body) = post(&router, "/predict/sig", json!({ "data": rows })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "row 2: column 'f3' has no value and the model's signature requires one");
    let names: Vec<String> = (0..20).map(|j| format!("f{j}")).collect();
    let (status, _, body) =
        post(&router, "/invocations", json!({ "dataframe_split": { "columns": names, "data": rows } })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(body["message"].as_str().unwrap().contains("row 2: column 'f3'"), "{body}");
}
