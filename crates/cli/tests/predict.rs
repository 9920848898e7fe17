//! `shipyard predict` and `shipyard models bench` on ONNX fixture models: the output contract
//! (input columns, `prediction`, `probability_<label>`), Parquet output, bad input refused with
//! the row or column named, `--on-error skip` with a reject file, and the bench's JSON.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use common::shipyard as run;

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

fn fails(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../runtime/tests/fixtures/onnx")
        .join(format!("{name}.onnx"))
        .to_string_lossy()
        .into_owned()
}

/// The fixture's recorded rows as a CSV with columns f0..f19 (NaN as empty fields).
fn rows_csv(dir: &Path, name: &str) -> (PathBuf, Value) {
    let json_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/fixtures/onnx").join(format!("{name}.json"));
    let spec: Value = serde_json::from_slice(&std::fs::read(json_path).expect("fixture json")).expect("json");
    let input = &spec["inputs"]["input"];
    let width = input["shape"][1].as_u64().expect("width") as usize;
    let data = input["data"].as_array().expect("data");
    let mut text = (0..width).map(|j| format!("f{j}")).collect::<Vec<_>>().join(",") + "\n";
    for row in data.chunks(width) {
        let cells: Vec<String> = row.iter().map(|v| v.as_f64().map_or_else(String::new, |x| x.to_string())).collect();
        text += &(cells.join(",") + "\n");
    }
    let path = dir.join(format!("{name}.csv"));
    std::fs::write(&path, text).expect("write csv");
    (path, spec)
}

#[test]
fn onnx_classifier_output_has_input_columns_prediction_and_probabilities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let (csv, spec) = rows_csv(dir.path(), "rf_classifier_zipmap");
    let out = ok(&run(
        &home,
        &["predict", "--model", &fixture("rf_classifier_zipmap"), "--input", csv.to_str().expect("path")],
    ));
    let mut lines = out.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("f0,f1,"), "{header}");
    assert!(header.ends_with(",prediction,probability_maybe,probability_no,probability_yes"), "{header}");
    let labels: Vec<&str> = spec["outputs"]["output_label"]["data"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|v| v.as_str().expect("label"))
        .collect();
    let predicted: Vec<&str> = lines.map(|l| l.split(',').nth(20).expect("prediction")).collect();
    assert_eq!(predicted, labels);
}

#[test]
fn parquet_output_and_batches_keep_row_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let (csv, spec) = rows_csv(dir.path(), "hgb_regressor");
    let out_path = dir.path().join("scored.parquet");
    ok(&run(
        &home,
        &[
            "predict",
            "--model",
            &fixture("hgb_regressor"),
            "--input",
            csv.to_str().expect("path"),
            "--output",
            out_path.to_str().expect("path"),
            "--batch-size",
            "7",
        ],
    ));
    let file = std::fs::File::open(&out_path).expect("parquet");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("reader")
        .build()
        .expect("build");
    let mut got = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let col = batch.column_by_name("prediction").expect("prediction");
        let col = col.as_any().downcast_ref::<arrow_array::Float64Array>().expect("f64");
        got.extend(col.values().iter().copied());
    }
    let want: Vec<f64> =
        spec["outputs"]["variable"]["data"].as_array().expect("data").iter().map(|v| v.as_f64().expect("f")).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
    }
}

#[test]
fn bad_models_and_bad_rows_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let (csv, _) = rows_csv(dir.path(), "logreg_binary");
    let csv = csv.to_str().expect("path");

    // Wrong width: three columns for a 20-feature model.
    let narrow = dir.path().join("narrow.csv");
    std::fs::write(&narrow, "a,b,c\n1,2,3\n").expect("write");
    fails(
        &run(&home, &["predict", "--model", &fixture("logreg_binary"), "--input", narrow.to_str().expect("path")]),
        "the model takes 20 columns, the input has 3",
    );
    // A corrupt file.
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x07garbage that is not protobuf \xff\xff\xff").expect("write");
    fails(
        &run(&home, &["predict", "--model", corrupt.to_str().expect("path"), "--input", csv]),
        "not a readable ONNX model",
    );
    // An unknown URI scheme and a missing registered model.
    fails(&run(&home, &["predict", "--model", "s3://bucket/m", "--input", csv]), "unknown model URI");
    fails(&run(&home, &["predict", "--model", "models:/nope/1", "--input", csv]), "nope");

    // A model directory whose signature requires a column: a missing value stops the run at its row.
    let model_dir = dir.path().join("model");
    std::fs::create_dir_all(&model_dir).expect("mkdir");
    std::fs::copy(fixture("logreg_binary"), model_dir.join("model.onnx")).expect("copy");
    let columns: Vec<String> =
        (0..20).map(|j| format!("{{\"type\": \"float\", \"name\": \"f{j}\", \"required\": {}}}", j != 5)).collect();
    let mlmodel = format!(
        "flavors:\n  onnx:\n    data: model.onnx\n    onnx_version: 1.17.0\nsignature:\n  inputs: '[{}]'\n",
        columns.join(", ")
    );
    std::fs::write(model_dir.join("MLmodel"), mlmodel).expect("write");
    let holes = dir.path().join("holes.csv");
    let mut text: String = (0..20).map(|j| format!("f{j}")).collect::<Vec<_>>().join(",") + "\n";
    for r in 0..5 {
        let cells: Vec<String> = (0..20)
            .map(|j| if (r == 2 && j == 3) || (r == 4 && j == 5) { String::new() } else { "0.5".into() })
            .collect();
        text += &(cells.join(",") + "\n");
    }
    std::fs::write(&holes, text).expect("write");
    let model_arg = model_dir.to_str().expect("path");
    let holes_arg = holes.to_str().expect("path");
    fails(
        &run(&home, &["predict", "--model", model_arg, "--input", holes_arg]),
        "row 3: column 'f3' has no value and the model's signature requires one",
    );
    // With --on-error skip the bad row goes to the reject file; f5 is optional, so row 5 is scored.
    let scored = dir.path().join("scored.csv");
    let out = run(
        &home,
        &[
            "predict",
            "--model",
            model_arg,
            "--input",
            holes_arg,
            "--output",
            scored.to_str().expect("path"),
            "--on-error",
            "skip",
        ],
    );
    ok(&out);
    assert_eq!(std::fs::read_to_string(&scored).expect("scored").lines().count(), 1 + 4);
    let rejects = std::fs::read_to_string(dir.path().join("scored.csv.rejects.csv")).expect("rejects");
    assert!(rejects.contains("row 3: column 'f3'"), "{rejects}");
    assert_eq!(rejects.lines().count(), 2);
}

#[test]
fn models_bench_reports_latency_and_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let (csv, _) = rows_csv(dir.path(), "gbc_binary");
    let out = ok(&run(
        &home,
        &[
            "models",
            "bench",
            &fixture("gbc_binary"),
            "--data",
            csv.to_str().expect("path"),
            "--repeat",
            "50",
            "--format",
            "json",
        ],
    ));
    let report: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["rows_available"], 200);
    assert_eq!(report["batch1"]["runs"], 50);
    assert!(report["batch1"]["p50_us"].as_f64().expect("p50") > 0.0);
    assert!(report["batch1"]["p99_us"].as_f64() >= report["batch1"]["p50_us"].as_f64());
    let sizes: Vec<u64> =
        report["batches"].as_array().expect("batches").iter().map(|b| b["rows"].as_u64().expect("rows")).collect();
    assert_eq!(sizes, vec![1000, 10000]);
    assert_eq!(report["engine"], "onnx-native");
}

#[test]
fn the_onnxruntime_engine_gives_the_native_engines_answers_when_configured() {
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        eprintln!("ORT_DYLIB_PATH is not set: skipping the onnxruntime engine");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let (csv, _) = rows_csv(dir.path(), "rf_classifier_zipmap");
    let csv = csv.to_str().expect("path");
    let model = fixture("rf_classifier_zipmap");
    let native = ok(&run(&home, &["predict", "--model", &model, "--input", csv, "--engine", "native"]));
    let ort = ok(&run(&home, &["predict", "--model", &model, "--input", csv, "--engine", "onnxruntime"]));
    let parse =
        |text: &str| -> Vec<Vec<String>> { text.lines().map(|l| l.split(',').map(str::to_owned).collect()).collect() };
    let (a, b) = (parse(&native), parse(&ort));
    assert_eq!(a.len(), b.len());
    assert_eq!(a[0], b[0], "same columns");
    for (x, y) in a.iter().zip(&b).skip(1) {
        assert_eq!(x[20], y[20], "same label");
        for j in 21..x.len() {
            let (p, q): (f64, f64) = (x[j].parse().expect("number"), y[j].parse().expect("number"));
            assert!((p - q).abs() < 1e-6, "{p} vs {q}");
        }
    }
}
