//! Pipelines through the binary, on loopback: a pipeline file runs every step against a live
//! server and records it; a second run reuses every unchanged step; a failing gate stops what
//! depends on it; bad files are refused; a drift alert's `retrain` action runs the pipeline on the
//! latest dataset version. And `shipyard quickstart --no-wait` tells its whole story.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{http, shipyard, start, stderr, stdout, table};

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    stdout(&out)
}

/// A folder with train.csv (the pipeline's data) and eval.csv, and the pipeline file's text.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.csv"), table(1500, 11, 0.0)).unwrap();
    std::fs::write(dir.path().join("eval.csv"), table(400, 12, 0.0)).unwrap();
    let home = dir.path().join("home");
    (dir, home)
}

/// The seed's pipeline over `data`, served at `endpoint`.
fn spec(data: &str, endpoint: &str, min_accuracy: f64, extra_monitor: &str) -> String {
    format!(
        "pipeline: 1
name: churn
config:
  deployment_endpoint: {endpoint}
  min_accuracy: {min_accuracy}
  max_inference_time: 0.1
  alert_thresholds: {{min_accuracy: 0.6, max_drift: 0.4}}
steps:
  - validate: {{{data}}}
  - train:
      data: ${{validate.data}}
      target: y
      candidates:
        - {{model: logistic_regression}}
        - {{model: decision_tree, params: {{max_depth: 4}}}}
  - register: {{model: '${{train.model_uri}}', name: churn}}
  - gate: {{model: '${{register.model_uri}}', data: eval.csv, target: y, champion_tolerance: 0.1}}
  - promote: {{model: '${{register.model_uri}}'}}
    needs: [gate]
  - deploy: {{deployment: churn-api, model: 'models:/churn@production'}}
    needs: [promote]
  - smoke_test: {{deployment: '${{deploy.deployment}}', data: eval.csv, drop: [y]}}
  - monitor:
      deployment: ${{deploy.deployment}}
      target: y
      sensitive_column: group
      positive_label: '1'
      window: 200
      interval_seconds: 1
      min_rows: 150
{extra_monitor}"
    )
}

fn run_json(home: &Path, file: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["pipeline", "run", file.to_str().unwrap(), "--format", "json"];
    args.extend(extra);
    let out = shipyard(home, &args);
    let code = out.status.code().unwrap();
    let summary =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (code, summary)
}

fn step<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no step {name}"))
}

fn statuses(summary: &Value) -> Vec<(String, String, bool)> {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (s["name"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned(), s["cached"] == true)
        })
        .collect()
}

#[test]
fn a_pipeline_runs_every_step_against_a_live_server_and_a_second_run_reuses_them() {
    let (dir, home) = workspace();
    let server = start(
        &home,
        &["server", "--monitor-tick-ms", "100", "--sync-interval-ms", "50"],
        Arc::new(Mutex::new(String::new())),
    );
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, spec("data: train.csv, dataset: churn", &format!("http://{}", server.addr), 0.6, ""))
        .unwrap();

    let (code, first) = run_json(&home, &file, &[]);
    assert_eq!(code, 0, "{first:#}");
    assert_eq!(first["success"], true);
    let names: Vec<String> = statuses(&first).into_iter().map(|(n, ..)| n).collect();
    assert_eq!(names, ["validate", "train", "register", "gate", "promote", "deploy", "smoke_test", "monitor"]);
    assert!(statuses(&first).iter().all(|(_, s, cached)| s == "FINISHED" && !cached), "{first:#}");
    assert_eq!(step(&first, "validate")["outputs"]["data"], "dataset:churn@1");
    assert_eq!(step(&first, "validate")["outputs"]["rows"], 1500);
    assert_eq!(first["model_version"], "churn/1");
    assert_eq!(first["deployment_result"]["deployment"], "churn-api");
    assert_eq!(first["deployment_result"]["smoke_test"]["rows"], 5);
    assert_eq!(first["deployment_result"]["smoke_test"]["version"], "1");
    let train = &step(&first, "train")["outputs"];
    assert_eq!(train["candidates"].as_array().unwrap().len(), 2);
    let best = train["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["score"].as_f64().unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(train["score"].as_f64().unwrap(), best);

    // What the steps did is in the store: the candidates are children of the train step's run,
    // production moved, the deployment and its monitors exist.
    let runs: Value = serde_json::from_str(&ok(shipyard(
        &home,
        &["runs", "list", "--experiment", "pipeline-churn", "--format", "json"],
    )))
    .unwrap();
    let train_run = step(&first, "train")["run_id"].as_str().unwrap();
    let children = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["data"]["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "mlflow.parentRunId" && t["value"] == train_run)
        })
        .count();
    assert_eq!(children, 2);
    let history = ok(shipyard(&home, &["models", "history", "churn"]));
    assert!(history.contains("shipyard-pipeline"), "{history}");
    let monitors = ok(shipyard(&home, &["monitor", "show", "--deployment", "churn-api"]));
    assert!(monitors.contains("threshold: 0.6") && monitors.contains("drift_share"), "{monitors}");

    // Nothing changed: every step but the smoke test is reused, and nothing new is registered.
    let (code, second) = run_json(&home, &file, &[]);
    assert_eq!(code, 0, "{second:#}");
    for (name, status, cached) in statuses(&second) {
        assert_eq!(status, "FINISHED");
        assert_eq!(cached, name != "smoke_test", "{name}");
    }
    assert_eq!(second["model_version"], "churn/1");
    assert_eq!(step(&second, "train")["cached_from"], step(&first, "train")["run_id"]);

    // A changed candidate list reruns training and what follows it; the data step is reused.
    let changed = std::fs::read_to_string(&file).unwrap().replace("max_depth: 4", "max_depth: 3");
    std::fs::write(&file, changed).unwrap();
    let (code, third) = run_json(&home, &file, &[]);
    assert_eq!(code, 0, "{third:#}");
    let cached: Vec<String> = statuses(&third).into_iter().filter(|(.., c)| *c).map(|(n, ..)| n).collect();
    assert_eq!(cached, ["validate", "monitor"], "{third:#}");
    assert_eq!(third["model_version"], "churn/2");

    // status reads the same summary back; without a run it lists the runs.
    let run_id = third["run_id"].as_str().unwrap();
    let status: Value =
        serde_json::from_str(&ok(shipyard(&home, &["pipeline", "status", run_id, "--format", "json"]))).unwrap();
    assert_eq!(status["steps"], third["steps"]);
    let listed: Value =
        serde_json::from_str(&ok(shipyard(&home, &["pipeline", "status", "--format", "json"]))).unwrap();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 3);
    let table = ok(shipyard(&home, &["pipeline", "status", run_id]));
    assert!(table.contains("CACHED") && table.contains("smoke_test"), "{table}");
    // --force reruns everything.
    let (_, forced) = run_json(&home, &file, &["--force"]);
    assert!(statuses(&forced).iter().all(|(.., cached)| !cached));
}

#[test]
fn a_failing_gate_stops_what_depends_on_it_and_says_why() {
    let (dir, home) = workspace();
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, spec("data: train.csv", "http://127.0.0.1:9", 0.99, "")).unwrap();
    let (code, summary) = run_json(&home, &file, &[]);
    assert_eq!(code, 1, "{summary:#}");
    assert_eq!(summary["success"], false);
    assert_eq!(summary["status"], "FAILED");
    let got: Vec<(String, String)> = statuses(&summary).into_iter().map(|(n, s, _)| (n, s)).collect();
    let expected = [
        ("validate", "FINISHED"),
        ("train", "FINISHED"),
        ("register", "FINISHED"),
        ("gate", "FAILED"),
        ("promote", "SKIPPED"),
        ("deploy", "SKIPPED"),
        ("smoke_test", "SKIPPED"),
        ("monitor", "SKIPPED"),
    ];
    assert_eq!(got, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    let error = step(&summary, "gate")["error"].as_str().unwrap();
    assert!(error.starts_with("gates failed: metric:accuracy observed 0.") && error.contains(">= 0.99"), "{error}");
    assert_eq!(summary["errors"][0], format!("gate: {error}"));
    assert_eq!(summary["errors"][1], "promote: not run: step 'gate' did not finish");
    assert!(summary["deployment_result"].is_null());
    // A file (not a dataset) is pinned by its path and hashed by its content.
    assert!(step(&summary, "validate")["outputs"]["data"].as_str().unwrap().ends_with("train.csv"));
    // Nothing moved, nothing deployed.
    assert!(!ok(shipyard(&home, &["models", "history", "churn"])).contains("promote"));
    assert!(!ok(shipyard(&home, &["deploy", "list"])).contains("churn-api"));
    // The table form says what failed; the gate's run keeps the error and the commands' log.
    let out = shipyard(&home, &["pipeline", "run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("failed: gate: gates failed"), "{}", stdout(&out));
}

#[test]
fn bad_pipeline_files_are_refused_with_their_place() {
    let (dir, home) = workspace();
    let file = dir.path().join("pipeline.yaml");
    for (text, expected) in [
        (
            spec("data: train.csv", "http://x", 0.6, "")
                .replace("target: y\n      candidates", "targt: y\n      candidates"),
            "unknown field `targt`",
        ),
        (
            spec("data: train.csv", "http://x", 0.6, "").replace("${train.model_uri}", "${train.model}"),
            "a train step's outputs are",
        ),
        (spec("data: train.csv", "http://x", 0.6, "").replace("needs: [gate]", "needs: [gates]"), "needs 'gates'"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = shipyard(&home, &["pipeline", "run", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(err.contains(expected) && err.contains("pipeline.yaml"), "{expected}: {err}");
    }
    let out = shipyard(&home, &["pipeline", "status", "0123456789abcdef0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("0123456789abcdef0123456789abcdef"), "{}", stderr(&out));
}

fn wait_for<T>(what: &str, limit: Duration, mut found: impl FnMut() -> Option<T>) -> T {
    let began = Instant::now();
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(began.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_drift_alert_retrains_on_the_latest_dataset_version() {
    let (dir, home) = workspace();
    ok(shipyard(&home, &["data", "add", dir.path().join("train.csv").to_str().unwrap(), "--name", "churn"]));
    let server = start(
        &home,
        &["server", "--monitor-tick-ms", "100", "--sync-interval-ms", "50"],
        Arc::new(Mutex::new(String::new())),
    );
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(
        &file,
        spec("data: 'dataset:churn'", &format!("http://{}", server.addr), 0.6, "      drift_action: retrain\n"),
    )
    .unwrap();
    let (code, first) = run_json(&home, &file, &[]);
    assert_eq!(code, 0, "{first:#}");
    assert_eq!(step(&first, "validate")["outputs"]["data"], "dataset:churn@1");
    let config = ok(shipyard(&home, &["monitor", "show", "--deployment", "churn-api"]));
    assert!(config.contains("action: retrain") && config.contains(file.to_str().unwrap()), "{config}");

    // New data arrives as version 2; then traffic drifts.
    std::fs::write(dir.path().join("train2.csv"), table(1500, 13, 0.0)).unwrap();
    ok(shipyard(&home, &["data", "add", dir.path().join("train2.csv").to_str().unwrap(), "--name", "churn"]));
    for line in table(250, 5, 1.0).lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let body = json!({"records": [{"age": f[0].parse::<f64>().unwrap(), "income": f[1].parse::<f64>().unwrap(), "group": f[2]}]});
        let (status, _, answer) = http(&server.addr, "POST", "/predict/churn-api", &[], &body.to_string());
        assert_eq!(status, 200, "{answer}");
    }
    let alert = wait_for("the drift alert", Duration::from_secs(60), || {
        let out = ok(shipyard(&home, &["monitor", "alerts", "--deployment", "churn-api", "--format", "json"]));
        let alerts: Value = serde_json::from_str(&out).unwrap();
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == "data-drift" && !a["action_status"].is_null())
            .cloned()
    });
    assert_eq!(alert["action"], "retrain");
    assert_eq!(alert["action_status"], "succeeded", "{alert:#}");
    let detail = alert["action_detail"].as_str().unwrap();
    let run_id = detail.strip_prefix("started pipeline run ").unwrap().split_whitespace().next().unwrap().to_owned();

    // The retraining run finishes on the latest version and registers a new model version.
    let summary = wait_for("the retraining run", Duration::from_secs(90), || {
        let out = ok(shipyard(&home, &["pipeline", "status", &run_id, "--format", "json"]));
        let s: Value = serde_json::from_str(&out).unwrap();
        (s["status"] != "RUNNING").then_some(s)
    });
    assert_eq!(summary["success"], true, "{summary:#}");
    assert!(
        summary["trigger"].as_str().unwrap().contains("alert 'data-drift' on deployment 'churn-api'"),
        "{summary:#}"
    );
    assert_eq!(step(&summary, "validate")["outputs"]["data"], "dataset:churn@2");
    assert_eq!(step(&summary, "validate")["cached"], false);
    assert_eq!(summary["model_version"], "churn/2");
}

#[test]
fn quickstart_tells_the_whole_story_and_writes_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipyard"))
        .args(["quickstart", "--no-wait", "--port", "0"])
        .current_dir(dir.path())
        .env_remove("SHIPYARD_HOME")
        .env_remove("SHIPYARD_TRACKING_URI")
        .env_remove("SHIPYARD_ARTIFACTS_DESTINATION")
        .output()
        .unwrap();
    let seconds = began.elapsed().as_secs_f64();
    let narration = stdout(&out);
    assert!(out.status.success(), "{narration}\n{}", stderr(&out));
    let folder = dir.path().join("shipyard-quickstart");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["gates_passed"], true, "{summary:#}");
    assert_eq!(summary["served_predictions"], 5000);
    // The 20% canary was live when its traffic went out: its share is within the binomial
    // tolerance of 1,000 single-row requests.
    let share = summary["canary_share"].as_f64().unwrap();
    assert!((0.15..=0.25).contains(&share), "canary share {share}");
    assert!(narration.contains("% answered by the canary (version 2)"), "{narration}");
    assert_eq!(summary["drift_alert_fired"], true);
    assert_eq!(summary["rolled_back"], true);
    assert!(summary["server_url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    assert!(summary["error"].is_null());
    eprintln!("quickstart took {seconds:.1}s");

    // Every step's run is recorded, finished, in the store the quickstart left behind.
    let runs: Value = serde_json::from_str(&ok(shipyard(
        &folder,
        &["runs", "list", "--experiment", "titanic", "--format", "json", "--max-results", "1000"],
    )))
    .unwrap();
    let finished: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["info"]["status"] == "FINISHED")
        .map(|r| r["info"]["run_id"].as_str().unwrap())
        .collect();
    let steps = summary["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for expected in [
        "validate",
        "train",
        "register",
        "gate",
        "promote",
        "deploy",
        "smoke_test",
        "monitor",
        "live_traffic",
        "challenger.validate",
        "challenger.gate",
        "canary",
        "drift",
        "rollback",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    for s in steps {
        assert_eq!(s["status"], "FINISHED", "{s}");
        assert!(finished.contains(&s["run_id"].as_str().unwrap()), "{s} is not a finished run");
    }
    assert_eq!(steps.iter().find(|s| s["name"] == "challenger.validate").unwrap()["cached"], true);
    // The rollback is in the alias history, made by the monitor.
    let history = ok(shipyard(&folder, &["models", "history", "titanic"]));
    assert!(history.contains("rollback") && history.contains("shipyard-monitor"), "{history}");
    for report in ["reports/monitoring.html", "reports/data-profile.html", "titanic.yaml", "titanic-challenger.yaml"] {
        assert!(folder.join(report).is_file(), "{report}");
    }
    assert!(narration.contains("rolled back from version 2 to version 1"), "{narration}");

    // The folder is the quickstart's: a second one there refuses to start.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_shipyard"))
        .args(["quickstart", "--no-wait", "--port", "0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("is not empty"), "{}", stderr(&again));
}

#[test]
fn a_retraining_run_in_flight_ends_killed_when_the_server_stops() {
    let (dir, home) = common::churn_home(&["1"]);
    std::fs::write(dir.path().join("train.csv"), table(300, 11, 0.0)).unwrap();
    ok(shipyard(&home, &["data", "add", dir.path().join("train.csv").to_str().unwrap(), "--name", "churn"]));
    ok(shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn@production"]));
    // A pipeline that stays busy: its smoke test waits for a server that never answers.
    let slow = dir.path().join("slow.yaml");
    std::fs::write(
        &slow,
        "pipeline: 1\nname: slow\nsteps:\n  - validate: {data: 'dataset:churn'}\n  - smoke_test: {deployment: churn-api, data: train.csv, drop: [y], endpoint: 'http://127.0.0.1:9', timeout_seconds: 120}\n    needs: [validate]\n",
    )
    .unwrap();
    let config = dir.path().join("monitors.yaml");
    std::fs::write(
        &config,
        format!(
            "monitors: 1\ninterval_seconds: 1\nrules:\n  - {{name: any-traffic, metric: rows, op: '>=', threshold: 1, min_rows: 1, action: retrain, pipeline: '{}'}}\n",
            slow.display()
        ),
    )
    .unwrap();
    ok(shipyard(&home, &["monitor", "configure", "--deployment", "churn-api", "--config", config.to_str().unwrap()]));
    let mut server = start(&home, &["server", "--monitor-tick-ms", "100"], Arc::new(Mutex::new(String::new())));
    let body = json!({"records": [{"age": 30.0, "income": 50.0, "group": "a"}]});
    let (status, _, answer) = http(&server.addr, "POST", "/predict/churn-api", &[], &body.to_string());
    assert_eq!(status, 200, "{answer}");
    let detail = wait_for("the retrain action", Duration::from_secs(30), || {
        let out = ok(shipyard(&home, &["monitor", "alerts", "--deployment", "churn-api", "--format", "json"]));
        let alerts: Value = serde_json::from_str(&out).unwrap();
        alerts["alerts"].as_array().unwrap().iter().find_map(|a| a["action_detail"].as_str().map(str::to_owned))
    });
    let run_id = detail.strip_prefix("started pipeline run ").unwrap().split_whitespace().next().unwrap().to_owned();
    wait_for("the smoke test to be under way", Duration::from_secs(30), || {
        let out = ok(shipyard(&home, &["pipeline", "status", &run_id, "--format", "json"]));
        let s: Value = serde_json::from_str(&out).unwrap();
        s["steps"].as_array().unwrap().iter().any(|st| st["name"] == "smoke_test").then_some(())
    });
    assert!(server.terminate(), "the server did not exit cleanly");
    let out = ok(shipyard(&home, &["pipeline", "status", &run_id, "--format", "json"]));
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["status"], "KILLED", "{summary:#}");
    assert_eq!(step(&summary, "validate")["status"], "FINISHED");
    assert_eq!(step(&summary, "smoke_test")["status"], "FAILED");
    assert_eq!(step(&summary, "smoke_test")["error"], "interrupted");
}
