//! `shipyard data ...` end to end: CSV and Parquet inputs, output values, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use serde_json::Value;

fn shipyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shipyard"))
}

fn run(args: &[&str]) -> Output {
    shipyard().args(args).output().expect("run shipyard")
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Reference: x = 0, 0.5, ..., 29.5 and a/b/c in turn; current: x shifted by 3.1, more a's.
fn tables() -> [(Vec<f64>, Vec<String>); 2] {
    let reference =
        ((0..60).map(|i| i as f64 * 0.5).collect(), (0..60).map(|i| ["a", "b", "c"][i % 3].to_owned()).collect());
    let current = (
        (0..50).map(|i| i as f64 * 0.5 + 3.1).collect(),
        (0..50)
            .map(|i| {
                (if i % 2 == 0 {
                    "a"
                } else if i % 4 == 1 {
                    "b"
                } else {
                    "c"
                })
                .to_owned()
            })
            .collect(),
    );
    [reference, current]
}

fn write_csv(path: &Path, (x, cat): &(Vec<f64>, Vec<String>)) {
    let mut body = String::from("x,cat\n");
    for (v, c) in x.iter().zip(cat) {
        body.push_str(&format!("{v},{c}\n"));
    }
    std::fs::write(path, body).expect("write csv");
}

fn write_parquet(path: &Path, (x, cat): &(Vec<f64>, Vec<String>)) {
    let batch = RecordBatch::try_from_iter([
        ("x", Arc::new(Float64Array::from(x.clone())) as ArrayRef),
        ("cat", Arc::new(StringArray::from(cat.clone())) as ArrayRef),
    ])
    .expect("batch");
    let file = std::fs::File::create(path).expect("create parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

fn files(dir: &Path, ext: &str) -> (PathBuf, PathBuf) {
    let [r, c] = tables();
    let (rp, cp) = (dir.join(format!("ref.{ext}")), dir.join(format!("cur.{ext}")));
    if ext == "csv" {
        write_csv(&rp, &r);
        write_csv(&cp, &c);
    } else {
        write_parquet(&rp, &r);
        write_parquet(&cp, &c);
    }
    (rp, cp)
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| ((a - b) / b).abs() < 1e-12)
}

#[test]
#[allow(clippy::approx_constant, reason = "6.28 is scipy's chi-square statistic here, not tau")]
fn drift_reports_scipy_values_on_csv_and_parquet() {
    let dir = tempfile::tempdir().expect("tempdir");
    for ext in ["csv", "parquet"] {
        let (r, c) = files(dir.path(), ext);
        let out = run(&[
            "data",
            "drift",
            "--reference",
            r.to_str().unwrap(),
            "--current",
            c.to_str().unwrap(),
            "--format",
            "json",
        ]);
        let report = stdout_json(&out);
        let cols = report["columns"].as_array().expect("columns");
        // scipy 1.17.1: ks_2samp(ref.x, cur.x) = (0.11666666666666667, 0.8076375143673235)
        assert_eq!(cols[0]["column"], "x");
        assert_eq!(cols[0]["test"], "ks");
        assert!(close(&cols[0]["statistic"], 0.11666666666666667), "{ext}: {}", cols[0]);
        assert!(close(&cols[0]["p_value"], 0.8076375143673235), "{ext}: {}", cols[0]);
        assert_eq!(cols[0]["drift"], false);
        // chisquare([25, 13, 12], [20 * 50/60] * 3) = (6.28, 0.043282797901965896)
        assert_eq!(cols[1]["test"], "chisquare");
        assert!(close(&cols[1]["statistic"], 6.28), "{ext}: {}", cols[1]);
        assert!(close(&cols[1]["p_value"], 0.043282797901965896), "{ext}: {}", cols[1]);
        assert_eq!(cols[1]["drift"], true);
        assert_eq!(report["drifted_columns"], 1);
        assert_eq!(report["share_drifted"], 0.5);
        assert_eq!(report["dataset_drift"], true);
        assert_eq!(out.status.code(), Some(0), "no --fail-on-drift: exit 0");

        let failing = run(&[
            "data",
            "drift",
            "--reference",
            r.to_str().unwrap(),
            "--current",
            c.to_str().unwrap(),
            "--fail-on-drift",
        ]);
        assert_eq!(failing.status.code(), Some(1), "drift with --fail-on-drift: exit 1");
        let table = String::from_utf8_lossy(&failing.stdout);
        assert!(table.contains("1 of 2 columns drifted") && table.contains("DATASET DRIFT"), "{table}");
    }
}

#[test]
fn drift_methods_thresholds_and_html() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, c) = files(dir.path(), "csv");
    let (r, c) = (r.to_str().unwrap(), c.to_str().unwrap());
    let out = run(&[
        "data",
        "drift",
        "--reference",
        r,
        "--current",
        c,
        "--format",
        "json",
        "--method",
        "x=wasserstein",
        "--threshold",
        "cat=0.01",
    ]);
    let report = stdout_json(&out);
    assert_eq!(report["columns"][0]["test"], "wasserstein");
    assert!(report["columns"][0]["p_value"].is_null());
    assert_eq!(report["columns"][1]["threshold"], 0.01);
    assert_eq!(report["columns"][1]["drift"], false);

    let html = run(&["data", "drift", "--reference", r, "--current", c, "--format", "html"]);
    let page = String::from_utf8(html.stdout).expect("utf-8");
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg"));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"), "no network resources");
    assert_eq!(page.matches("<tr>").count(), 3, "a header and a row per column");
}

#[test]
fn drift_input_errors_exit_2_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, _) = files(dir.path(), "csv");
    let r = r.to_str().unwrap();
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "y\n1\n2\n").expect("write");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--current", other.to_str().unwrap()], "lacks 2 column(s) of the reference: x, cat"),
        (vec!["--current", "/nonexistent.csv"], "/nonexistent.csv"),
        (vec!["--current", r, "--method", "nope"], "unknown drift method 'nope'"),
        (vec!["--current", r, "--method", "cat=ks"], "ks applies to numeric columns"),
        (vec!["--current", r, "--threshold", "x=abc"], "--threshold x=abc: not a number"),
        (vec!["--current", r, "--kind", "zz=numeric"], "no column 'zz'"),
    ];
    for (extra, message) in cases {
        let mut args = vec!["data", "drift", "--reference", r];
        args.extend(extra);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

#[test]
fn profile_reports_values_on_csv_and_parquet() {
    let dir = tempfile::tempdir().expect("tempdir");
    for ext in ["csv", "parquet"] {
        let (r, _) = files(dir.path(), ext);
        let out = run(&["data", "profile", r.to_str().unwrap(), "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let p = stdout_json(&out);
        assert_eq!(p["rows"], 60);
        let x = &p["columns"][0];
        // numpy: x = 0, 0.5, ..., 29.5: mean 14.75, std(ddof=1) 8.732124598286491, median 14.75
        assert_eq!((x["name"].as_str(), x["count"].as_u64(), x["distinct"].as_u64()), (Some("x"), Some(60), Some(60)));
        assert_eq!(x["numeric"]["mean"], 14.75);
        assert!(close(&x["numeric"]["std"], 8.732124598286491), "{ext}: {}", x["numeric"]["std"]);
        assert_eq!(x["numeric"]["quantiles"][3], serde_json::json!({"q": 0.5, "value": 14.75}));
        assert_eq!(x["numeric"]["min"], 0.0);
        assert_eq!(x["numeric"]["max"], 29.5);
        let cat = &p["columns"][1];
        assert_eq!(cat["kind"], "text");
        assert_eq!(cat["top_values"]["values"][0], serde_json::json!({"value": "a", "count": 20}));
        assert_eq!(cat["distinct"], 3);

        let table = run(&["data", "profile", r.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(text.starts_with("60 rows, 2 columns") && text.contains("a (20), b (20), c (20)"), "{text}");
        let html = run(&["data", "profile", r.to_str().unwrap(), "--format", "html"]);
        assert!(String::from_utf8_lossy(&html.stdout).contains("<svg"));
    }
}

/// Rewrites a CSV file as Parquet through Shipyard's own reader.
fn csv_to_parquet(csv: &Path, out: &Path) {
    let mut table = shipyard_data::table::Table::open(csv, &Default::default()).expect("open csv");
    let batches = table.read_all().expect("read csv");
    let file = std::fs::File::create(out).expect("create parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, table.schema().clone(), None).expect("writer");
    for b in &batches {
        writer.write(b).expect("write");
    }
    writer.close().expect("close");
}

const SUITE: &str = "
suite: 1
table:
  row_count: {min: 1, max: 3}
  columns: {exact: [id, age, country]}
columns:
  id: {type: integer, unique: true}
  age: {not_null: true, min: 0, max: 120}
  country: {allowed_values: [FR, DE, IT], regex: '^[A-Z]{2}$'}
  missing_col: {not_null: true}
";

#[test]
fn validate_reports_every_expectation_with_failing_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "id,age,country,score\n1,34,FR,0.5\n2,,DE,0.7\n3,150,XX,0.2\n3,40,IT,0.9\n").expect("write");
    let parquet = dir.path().join("people.parquet");
    csv_to_parquet(&csv, &parquet);
    let suite = dir.path().join("suite.yaml");
    std::fs::write(&suite, SUITE).expect("write suite");
    for file in [&csv, &parquet] {
        let out =
            run(&["data", "validate", file.to_str().unwrap(), "--suite", suite.to_str().unwrap(), "--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "failed checks exit 1: {}", String::from_utf8_lossy(&out.stderr));
        let report = stdout_json(&out);
        assert_eq!(report["success"], false);
        assert_eq!(report["rows"], 4);
        let results = report["results"].as_array().expect("results");
        let summary: Vec<(String, String, bool, Value)> = results
            .iter()
            .map(|r| {
                (
                    r["column"].as_str().unwrap_or("").to_owned(),
                    r["expectation"].as_str().expect("name").to_owned(),
                    r["success"].as_bool().expect("success"),
                    r.get("failing_rows").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        let rows = |v: &[u64]| serde_json::json!(v);
        let expected = vec![
            ("".into(), "row_count".into(), false, Value::Null),
            ("".into(), "exact_columns".into(), false, Value::Null),
            ("age".into(), "not_null".into(), false, rows(&[1])),
            ("age".into(), "min".into(), true, Value::Null),
            ("age".into(), "max".into(), false, rows(&[2])),
            ("country".into(), "allowed_values".into(), false, rows(&[2])),
            ("country".into(), "regex".into(), true, Value::Null),
            ("id".into(), "type".into(), true, Value::Null),
            ("id".into(), "unique".into(), false, rows(&[3])),
            ("missing_col".into(), "not_null".into(), false, Value::Null),
        ];
        assert_eq!(summary, expected, "{}", file.display());
        assert_eq!(results[1]["observed"]["unexpected"], serde_json::json!(["score"]));
        assert_eq!(results[9]["observed"], "column missing from the data");
        // (0 + 0 + 3/4 + 1 + 2/3 + 3/4 + 1 + 1 + 3/4 + 0) / 10
        let score = report["quality_score"].as_f64().expect("score");
        assert!((score - (0.75 + 1.0 + 2.0 / 3.0 + 0.75 + 1.0 + 1.0 + 0.75) / 10.0).abs() < 1e-12, "{score}");
    }

    // An inferred suite passes the data it came from, for both formats.
    for file in [&csv, &parquet] {
        let inferred = dir.path().join("inferred.yaml");
        let out = run(&["data", "suite", "infer", file.to_str().unwrap(), "-o", inferred.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let out = run(&["data", "validate", file.to_str().unwrap(), "--suite", inferred.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains("quality score 1: PASSED"), "{text}");
    }
}

#[test]
fn bad_suites_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "a\n1\n").expect("write");
    for (yaml, message) in [
        ("suite: 1\ncolumns:\n  a: {not_nul: true}\n", "unknown field `not_nul`"),
        ("suite: 2\n", "unsupported suite version 2"),
        ("suite: 1\ncolumns:\n  a: {regex: '('}\n", "column 'a': bad regex"),
        ("suite: 1\ntable: {columns: {}}\n", "one of `required` or `exact`"),
        ("- not a mapping\n", "not a valid suite"),
    ] {
        let suite = dir.path().join("s.yaml");
        std::fs::write(&suite, yaml).expect("write suite");
        let out = run(&["data", "validate", csv.to_str().unwrap(), "--suite", suite.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(message), "{yaml}: {err}");
    }
}

#[test]
fn dataset_versions_from_csv_and_parquet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let home = home.to_str().unwrap();
    let (csv, _) = files(dir.path(), "csv");
    let (parquet, _) = files(dir.path(), "parquet");
    let add = |file: &Path| {
        let out = run(&["data", "add", file.to_str().unwrap(), "--name", "ref", "--home", home, "--format", "json"]);
        stdout_json(&out)
    };
    let v1 = add(&csv);
    assert_eq!((v1["version"].as_i64(), v1["rows"].as_i64(), v1["format"].as_str()), (Some(1), Some(60), Some("csv")));
    let v2 = add(&parquet);
    assert_eq!(
        (v2["version"].as_i64(), v2["format"].as_str(), v2["created"].as_bool()),
        (Some(2), Some("parquet"), Some(true))
    );
    let again = add(&parquet);
    assert_eq!((again["version"].as_i64(), again["created"].as_bool()), (Some(2), Some(false)));
    // Stored once per digest, named by it.
    let stored: Vec<_> =
        std::fs::read_dir(dir.path().join("home/artifacts/datasets/sha256")).expect("stored").collect();
    assert_eq!(stored.len(), 2);

    let listed = stdout_json(&run(&["data", "list", "--home", home, "--format", "json"]));
    let versions: Vec<(i64, String)> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|v| (v["version"].as_i64().expect("v"), v["format"].as_str().expect("f").to_owned()))
        .collect();
    assert_eq!(versions, vec![(1, "csv".into()), (2, "parquet".into())]);
    let shown = stdout_json(&run(&["data", "show", "ref@1", "--home", home, "--format", "json"]));
    assert_eq!(shown["profile"]["columns"][0]["numeric"]["mean"], 14.75);
    assert_eq!(shown["validations"], serde_json::json!([]));
    // A suite run on a version is recorded with it.
    let suite = dir.path().join("ref-suite.yaml");
    let out = run(&["data", "suite", "infer", csv.to_str().unwrap(), "-o", suite.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["data", "validate", "dataset:ref@1", "--suite", suite.to_str().unwrap(), "--home", home]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("recorded with dataset:ref@1 (validation 1)"));
    let shown = stdout_json(&run(&["data", "show", "ref@1", "--home", home, "--format", "json"]));
    let recorded = &shown["validations"][0];
    assert_eq!((recorded["success"].as_bool(), recorded["suite"].as_str()), (Some(true), Some("ref-suite.yaml")));
    assert_eq!(recorded["evaluated"], recorded["successful"]);
    assert_eq!(recorded["report"]["rows"], 60);
    let table = run(&["data", "show", "ref@1", "--home", home]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("validation 1: PASSED"));
    assert_eq!(
        shown["schema"]["mlflow_colspec"][0],
        serde_json::json!({"name": "x", "type": "double", "required": true})
    );

    // Both versions drift-compare like the files they came from.
    let report = stdout_json(&run(&[
        "data",
        "drift",
        "--reference",
        "dataset:ref@1",
        "--current",
        "dataset:ref@2",
        "--home",
        home,
        "--format",
        "json",
    ]));
    assert_eq!(report["drifted_columns"], 0, "the same table in two formats");

    let missing = run(&["data", "profile", "dataset:ref@7", "--home", home]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("Dataset 'ref' has no version 7"));
}

#[test]
fn a_saved_profile_serves_as_the_drift_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, c) = files(dir.path(), "csv");
    let drift = |reference: &Path, current: &Path| {
        stdout_json(&run(&[
            "data",
            "drift",
            "--reference",
            reference.to_str().unwrap(),
            "--current",
            current.to_str().unwrap(),
            "--format",
            "json",
        ]))
    };
    let save_profile = |table: &Path, out: &Path| {
        let p = run(&["data", "profile", table.to_str().unwrap(), "--format", "json"]);
        assert_eq!(p.status.code(), Some(0));
        std::fs::write(out, &p.stdout).expect("write profile");
    };
    // A small reference keeps its values in the profile: the same tests and numbers as the file.
    let small = dir.path().join("small.json");
    save_profile(&r, &small);
    let (from_file, from_profile) = (drift(&r, &c), drift(&small, &c));
    assert_eq!(from_file["columns"][0]["statistic"], from_profile["columns"][0]["statistic"]);
    assert_eq!(from_file["columns"][0]["p_value"], from_profile["columns"][0]["p_value"]);
    assert_eq!(from_file["columns"][1]["p_value"], from_profile["columns"][1]["p_value"]);

    // A large one is sketched: Wasserstein from its quantiles, flagged as approximate.
    let big_ref = dir.path().join("big_ref.csv");
    let big_cur = dir.path().join("big_cur.csv");
    let column = |shift: f64| {
        let mut body = String::from("x\n");
        for i in 0..5000 {
            body.push_str(&format!("{}\n", ((i * 7919) % 5000) as f64 / 50.0 + shift));
        }
        body
    };
    std::fs::write(&big_ref, column(0.0)).expect("write");
    std::fs::write(&big_cur, column(30.0)).expect("write");
    let big = dir.path().join("big.json");
    save_profile(&big_ref, &big);
    let (exact, approx) = (drift(&big_ref, &big_cur), drift(&big, &big_cur));
    let (e, a) = (&exact["columns"][0], &approx["columns"][0]);
    assert_eq!((e["test"].as_str(), a["test"].as_str()), (Some("wasserstein"), Some("wasserstein")));
    let (es, as_) = (e["statistic"].as_f64().expect("exact"), a["statistic"].as_f64().expect("approx"));
    // Uniform on [0, 100) shifted by 30: W1 = 30, std = 28.87: normed 1.039.
    assert!((es - 30.0 / 28.867).abs() < 1e-3, "{es}");
    assert!((as_ - es).abs() < 0.03 * es, "{as_} vs {es}");
    assert_eq!(e["drift"], a["drift"]);
    assert!(a["notes"][0].as_str().expect("note").contains("sketched profile"), "{a}");
}
