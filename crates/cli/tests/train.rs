//! `shipyard train` and `shipyard predict` end to end on the embedded store: a run with its
//! metrics and model, predictions from `runs:/RUN_ID/model`, and bad input rejected with exit 2.

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use common::shipyard as run;

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

/// 400 rows: y is "hi" when x + noise > 5, with a categorical and a missing-value column.
fn write_table(path: &Path) {
    let mut text = String::from("x,colour,z,y\n");
    for i in 0..400 {
        let x = (i * 37 % 100) as f64 / 10.0;
        let colour = ["red", "blue", "green"][i % 3];
        let z = if i % 7 == 0 { String::new() } else { format!("{}", (i % 13) as f64 * 0.5) };
        let y = if x + if colour == "red" { 1.0 } else { 0.0 } > 5.0 { "hi" } else { "lo" };
        text += &format!("{x},{colour},{z},{y}\n");
    }
    std::fs::write(path, text).expect("write table");
}

#[test]
fn train_records_a_run_and_predict_scores_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (home, data) = (dir.path().join("home"), dir.path().join("t.csv"));
    write_table(&data);
    let data_arg = data.to_str().expect("path");
    let out = ok(&run(
        &home,
        &["train", "--data", data_arg, "--target", "y", "--model", "decision_tree", "--format", "json"],
    ));
    let result: Value = serde_json::from_str(&out).expect("json");
    let run_id = result["run_id"].as_str().expect("run id").to_owned();
    assert!(result["metrics"]["accuracy"].as_f64().expect("accuracy") > 0.9, "{result}");
    assert_eq!(result["test_rows"], 80);

    let table = ok(&run(&home, &["train", "--data", data_arg, "--target", "y", "--model", "logistic_regression"]));
    let last = table.lines().last().expect("a line");
    assert_eq!(last.len(), 32, "the run id comes last: {table}");
    assert!(table.contains("f1_weighted") && table.contains("inference_latency_p99_ms"));

    let listed = ok(&run(&home, &["runs", "list", "--experiment", "Default", "--format", "json"]));
    let runs: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(runs.as_array().map(Vec::len), Some(2));

    let model = format!("runs:/{run_id}/model");
    let scored = ok(&run(&home, &["predict", "--model", &model, "--data", data_arg]));
    let mut lines = scored.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.ends_with(",prediction,probability_hi,probability_lo"), "{header}");
    assert_eq!(lines.count(), 400);
    let artifacts = home.join("artifacts/0").join(&run_id).join("artifacts");
    for file in ["model/MLmodel", "model/model.json", "model/model.onnx", "evaluation/confusion_matrix.svg"] {
        assert!(artifacts.join(file).is_file(), "{file} is missing");
    }
}

#[test]
fn bad_input_exits_2_with_a_message_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (home, data) = (dir.path().join("home"), dir.path().join("t.csv"));
    write_table(&data);
    let data_arg = data.to_str().expect("path");
    let cases: &[(&[&str], &str)] = &[
        (&["--target", "nope", "--model", "decision_tree"], "no column 'nope'"),
        (&["--target", "y", "--model", "forest"], "unknown model kind 'forest'"),
        (&["--target", "y", "--model", "random_forest", "--param", "max_depth=0"], "max_depth=0: must be at least 1"),
        (&["--target", "y", "--model", "random_forest", "--param", "trees=5"], "its parameters are: n_estimators"),
        (&["--target", "y", "--model", "decision_tree", "--test-size", "1.5"], "--test-size must be between 0 and 1"),
        (&["--target", "colour", "--model", "linear_regression"], "not numeric"),
        (&["--target", "y", "--model", "decision_tree", "--exclude", "x,colour,z"], "no feature columns"),
    ];
    for (args, message) in cases {
        let mut full = vec!["train", "--data", data_arg];
        full.extend_from_slice(args);
        let out = run(&home, &full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let listed = ok(&run(&home, &["runs", "list", "--experiment", "Default", "--format", "json"]));
    assert_eq!(listed.trim(), "[]", "a rejected command must leave no run");
}

#[test]
fn unusable_columns_and_tiny_tables_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let empty_column = dir.path().join("empty.csv");
    std::fs::write(&empty_column, "x,blank,y\n1,,a\n2,,b\n3,,a\n4,,b\n5,,a\n6,,b\n").expect("write");
    let out = run(
        &home,
        &["train", "--data", empty_column.to_str().expect("path"), "--target", "y", "--model", "decision_tree"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("column 'blank' is missing in every row"), "{stderr}");

    let tiny = dir.path().join("tiny.csv");
    std::fs::write(&tiny, "x,y\n1,a\n2,b\n").expect("write");
    let out =
        run(&home, &["train", "--data", tiny.to_str().expect("path"), "--target", "y", "--model", "decision_tree"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("too few rows for the split"), "{stderr}");
}

#[test]
fn a_failure_after_the_run_starts_ends_it_failed_with_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (home, data) = (dir.path().join("home"), dir.path().join("t.csv"));
    write_table(&data);
    // A file where the Default experiment's artifact folder must go: storing the model fails.
    let artifacts = home.join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("mkdir");
    std::fs::write(artifacts.join("0"), "not a folder").expect("write");
    let out =
        run(&home, &["train", "--data", data.to_str().expect("path"), "--target", "y", "--model", "decision_tree"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ended FAILED"), "{stderr}");
    let listed = ok(&run(&home, &["runs", "list", "--experiment", "Default", "--format", "json"]));
    let runs: Value = serde_json::from_str(&listed).expect("json");
    let run = &runs[0];
    assert_eq!(run["info"]["status"], "FAILED");
    let tags = run["data"]["tags"].as_array().expect("tags");
    let error = tags.iter().find(|t| t["key"] == "shipyard.error").expect("shipyard.error tag");
    assert!(error["value"].as_str().expect("text").contains("storing artifact"), "{error}");
}
