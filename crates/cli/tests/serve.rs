//! `shipyard serve` end to end: a native model trained by `shipyard train` is served from
//! `runs:/ID/model` over all three protocols, and answers what `shipyard predict` computes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use serde_json::{Value, json};

use common::shipyard_cmd as shipyard;

/// A served process, stopped when dropped.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request; the status and the body.
fn http(addr: &str, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn json_post(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = http(addr, "POST", path, "application/json", &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[test]
fn a_native_model_is_served_over_every_protocol() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (home, data) = (dir.path().join("home"), dir.path().join("t.csv"));
    let mut text = String::from("x,colour,z,y\n");
    for i in 0..300 {
        let x = (i * 37 % 100) as f64 / 10.0;
        let colour = ["red", "blue", "green"][i % 3];
        let y = if x + if colour == "red" { 1.0 } else { 0.0 } > 5.0 { "hi" } else { "lo" };
        text += &format!("{x},{colour},{},{y}\n", (i % 13) as f64 * 0.5);
    }
    std::fs::write(&data, text).expect("write");
    let data_arg = data.to_str().expect("path");
    let out = shipyard(
        &home,
        &["train", "--data", data_arg, "--target", "y", "--model", "random_forest", "--format", "json"],
    )
    .output()
    .expect("train");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run_id = serde_json::from_slice::<Value>(&out.stdout).expect("json")["run_id"].as_str().expect("id").to_owned();
    let model = format!("runs:/{run_id}/model");
    let scored = shipyard(&home, &["predict", "--model", &model, "--data", data_arg]).output().expect("predict");
    assert!(scored.status.success());
    // `x,colour,z,y,prediction,probability_hi,probability_lo` for the first rows.
    let expected: Vec<Vec<String>> = String::from_utf8_lossy(&scored.stdout)
        .lines()
        .skip(1)
        .take(5)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();

    let mut child =
        shipyard(&home, &["serve", "--model", &model, "--port", "0"]).stderr(Stdio::piped()).spawn().expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let served = Served(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited before listening").expect("stderr");
        if let Some((_, rest)) = line.split_once(" on http://") {
            break rest.trim().to_owned();
        }
    };
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let records: Vec<Value> = expected
        .iter()
        .map(|r| json!({ "x": r[0].parse::<f64>().unwrap_or(f64::NAN), "colour": r[1], "z": r[2].parse::<f64>().ok() }))
        .collect();
    let labels: Vec<&str> = expected.iter().map(|r| r[4].as_str()).collect();
    let (status, body) = json_post(&addr, "/predict/model", &json!({ "records": records }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"], json!(labels));
    assert_eq!(body["classes"], json!(["hi", "lo"]));
    for (row, want) in body["probabilities"].as_array().expect("probabilities").iter().zip(&expected) {
        let got = row[0].as_f64().expect("p");
        assert!((got - want[5].parse::<f64>().expect("p")).abs() < 1e-9, "{got} vs {}", want[5]);
    }

    let (status, body) = json_post(&addr, "/invocations", &json!({ "dataframe_records": records }));
    assert_eq!((status, &body["predictions"]), (200, &json!(labels)), "{body}");

    let inputs: Vec<Value> = [("x", "FP64"), ("colour", "BYTES"), ("z", "FP64")]
        .iter()
        .map(|(name, datatype)| {
            let data: Vec<Value> = records.iter().map(|r| r[*name].clone()).collect();
            json!({ "name": name, "datatype": datatype, "shape": [records.len(), 1], "data": data })
        })
        .collect();
    let (status, body) = json_post(&addr, "/v2/models/model/infer", &json!({ "inputs": inputs }));
    assert_eq!(status, 200, "{body}");
    // Shipyard's own models keep MLServer's output names.
    assert_eq!(body["outputs"][0]["name"], "predict");
    assert_eq!(body["outputs"][0]["data"], json!(labels));
    assert_eq!(body["outputs"][1]["name"], "predict_proba");
    let (status, meta) = http(&addr, "GET", "/v2/models/model", "application/json", "");
    assert_eq!(status, 200);
    let meta: Value = serde_json::from_str(&meta).expect("json");
    assert_eq!(meta["platform"], "shipyard_native");
    assert_eq!(meta["inputs"][1], json!({ "name": "colour", "datatype": "BYTES", "shape": [-1, 1] }));

    // A client's mistake: the column and row are named.
    let mut bad = records.clone();
    bad[2]["x"] = json!("ten");
    let (status, body) = json_post(&addr, "/predict/model", &json!({ "records": bad }));
    assert_eq!(status, 422);
    assert_eq!(body["error"], "row 3, column 'x': expected a number, got \"ten\"");
    let (status, text) = http(&addr, "GET", "/metrics", "text/plain", "");
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"shipyard_inference_requests_total{model="model",version="",protocol="seed",code="422"} 1"#),
        "{text}"
    );
    drop(served);
}
