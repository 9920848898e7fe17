//! The runner on a real SQLite store and artifact folder, with an executor that records what it
//! is asked to do: dependency order, step caching (a second run reuses unchanged steps; a
//! changed input reruns exactly its dependents), `force`, and a failing step that stops its
//! dependents with the error reported.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use shipyard_core::entities::RunStatus;
use shipyard_pipeline::runner::{PipelineRun, StepStatus, status_of};
use shipyard_pipeline::{
    Executor, Options, Pipeline, PipelineSummary, ResolvedStep, StepAction, StepFailure, StepResult,
};
use shipyard_store::{ArtifactStore, Database, DatabaseUri};

/// Answers each step from its inputs, as the real steps would: the same inputs give the same
/// outputs, except that `train` makes a new run and `register` a new version each time.
/// Run and version numbers: each training makes a new run, each registration a new version.
static VERSIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    fail: Option<&'static str>,
}

impl Executor for Recorder {
    fn execute<'a>(&'a self, step: &'a ResolvedStep) -> BoxFuture<'a, Result<StepResult, StepFailure>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(step.name.clone());
            if self.fail == Some(step.name.as_str()) {
                return Err(StepFailure {
                    message: "accuracy 0.61 is below the floor 0.8".into(),
                    log: "gate log".into(),
                });
            }
            let outputs = match &step.action {
                StepAction::Validate(v) => {
                    let text = std::fs::read_to_string(&v.data).unwrap();
                    json!({"data": v.data, "rows": text.lines().count(), "digest": "d"})
                }
                StepAction::Train(t) => {
                    let n = VERSIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let id = format!(
                        "run{n}-{}-{}",
                        t.data,
                        t.candidates.iter().map(|c| c.model.as_str()).collect::<Vec<_>>().join("+")
                    );
                    json!({"run_id": id, "model_uri": format!("runs:/{id}/model"), "metric": "accuracy", "score": 0.9, "candidates": []})
                }
                StepAction::Register(r) => {
                    let v = VERSIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    json!({"name": r.name, "version": v.to_string(), "model_uri": format!("models:/{}/{}", r.name, v)})
                }
                StepAction::Gate(_) => {
                    assert!(step.generated.as_deref().unwrap().contains("max_p99_ms: 100"), "{:?}", step.generated);
                    json!({"passed": true, "checks": 3})
                }
                StepAction::Promote(p) => json!({"alias": "production", "version": p.model, "previous": null}),
                StepAction::Deploy(d) => {
                    json!({"deployment": d.deployment, "path": format!("/predict/{}", d.deployment)})
                }
                StepAction::SmokeTest(_) => {
                    json!({"endpoint": "http://x", "rows": 5, "latency_ms": 1.5, "version": "1"})
                }
                StepAction::Monitor(m) => json!({"deployment": m.deployment, "rules": 2}),
            };
            let outputs: BTreeMap<String, Value> = serde_json::from_value(outputs).unwrap();
            Ok(StepResult { outputs, log: format!("ran {}", step.name) })
        })
    }
}

const SPEC: &str = "pipeline: 1\nname: seed\nconfig:\n  min_accuracy: 0.8\n  max_inference_time: 0.1\nsteps:\n\
    - validate: {data: data.csv}\n\
    - train: {data: '${validate.data}', target: y, candidates: [{model: decision_tree}]}\n\
    - register: {model: '${train.model_uri}', name: m}\n\
    - gate: {model: '${register.model_uri}', data: '${validate.data}'}\n\
    - promote: {model: '${register.model_uri}'}\n  needs: [gate]\n\
    - deploy: {deployment: d, model: 'models:/m@production'}\n  needs: [promote]\n\
    - smoke_test: {deployment: '${deploy.deployment}', data: '${validate.data}'}\n\
    - monitor: {deployment: '${deploy.deployment}', target: y, window: 500}\n";

const ALL: [&str; 8] = ["validate", "train", "register", "gate", "promote", "deploy", "smoke_test", "monitor"];

struct Home {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    db: Database,
    artifacts: ArtifactStore,
}

async fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::write(root.join("data.csv"), "x,y\n1,0\n2,1\n").unwrap();
    let db = Database::connect(&DatabaseUri::Sqlite(root.join("t.db"))).await.unwrap();
    let artifacts = ArtifactStore::open(&root.join("artifacts").display().to_string()).await.unwrap();
    Home { _dir: dir, root, db, artifacts }
}

async fn run(home: &Home, spec: &str, executor: &Recorder, force: bool) -> PipelineSummary {
    std::fs::write(home.root.join("pipeline.yaml"), spec).unwrap();
    let pipeline = Pipeline::from_file(&home.root.join("pipeline.yaml")).unwrap();
    let options = Options { force, user: "tester".into(), trigger: None };
    let stores = shipyard_pipeline::Stores { db: home.db.clone(), artifacts: home.artifacts.clone() };
    let started = PipelineRun::begin(std::sync::Arc::new(stores), pipeline, options).await.unwrap();
    started.execute(executor).await.unwrap()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn with_status(summary: &PipelineSummary, status: StepStatus) -> BTreeSet<String> {
    summary.steps.iter().filter(|s| s.status == status).map(|s| s.name.clone()).collect()
}

fn cached(summary: &PipelineSummary) -> BTreeSet<String> {
    summary.steps.iter().filter(|s| s.cached).map(|s| s.name.clone()).collect()
}

#[tokio::test]
async fn steps_run_in_dependency_order_and_are_recorded_as_child_runs() {
    let home = home().await;
    // Listed out of order: the runner orders by dependency, then file order.
    let shuffled = "pipeline: 1\nname: seed\nconfig:\n  min_accuracy: 0.8\n  max_inference_time: 0.1\nsteps:\n\
        - name: watch\n  monitor: {deployment: '${deploy.deployment}', target: y, window: 500}\n\
        - smoke_test: {deployment: '${deploy.deployment}', data: '${validate.data}'}\n\
        - validate: {data: data.csv}\n\
        - deploy: {deployment: d, model: 'models:/m@production'}\n  needs: [promote]\n\
        - train: {data: '${validate.data}', target: y, candidates: [{model: decision_tree}]}\n\
        - register: {model: '${train.model_uri}', name: m}\n\
        - promote: {model: '${register.model_uri}'}\n  needs: [gate]\n\
        - gate: {model: '${register.model_uri}', data: '${validate.data}'}\n";
    let recorder = Recorder::default();
    let summary = run(&home, shuffled, &recorder, false).await;
    let order = recorder.calls.lock().unwrap().clone();
    assert_eq!(order, ["validate", "train", "register", "gate", "promote", "deploy", "watch", "smoke_test"]);
    assert!(summary.success, "{summary:?}");
    assert_eq!(summary.status, "FINISHED");
    assert!(summary.model_version.as_deref().unwrap().starts_with("m/"));
    assert_eq!(summary.deployment_result.as_ref().unwrap()["path"], "/predict/d");
    assert_eq!(summary.deployment_result.as_ref().unwrap()["smoke_test"]["rows"], 5);
    assert!(summary.errors.is_empty());

    // Each step is a FINISHED child run carrying its outputs; numbers are also metrics.
    let parent = home.db.get_run(&summary.run_id).await.unwrap();
    assert_eq!(parent.info.status, RunStatus::Finished);
    assert!(parent.data.params.iter().any(|p| p.key == "min_accuracy" && p.value == "0.8"));
    for step in &summary.steps {
        let run = home.db.get_run(&step.run_id).await.unwrap();
        assert_eq!(run.info.status, RunStatus::Finished, "{}", step.name);
        let parent_tag = run.data.tags.iter().find(|t| t.key == "mlflow.parentRunId").unwrap();
        assert_eq!(parent_tag.value, summary.run_id);
    }
    let train = home.db.get_run(&summary.steps[1].run_id).await.unwrap();
    assert!(train.data.metrics.iter().any(|m| m.key == "score" && m.value == 0.9));
    assert!(summary.steps[1].outputs["model_uri"].as_str().unwrap().ends_with("data.csv-decision_tree/model"));
    // The reading back gives the same summary.
    let again = status_of(&home.db, &summary.run_id).await.unwrap();
    assert_eq!(serde_json::to_value(&again.steps).unwrap(), serde_json::to_value(&summary.steps).unwrap());
}

#[tokio::test]
async fn an_unchanged_step_reuses_its_outputs_and_a_changed_input_reruns_exactly_its_dependents() {
    let home = home().await;
    let first = Recorder::default();
    let one = run(&home, SPEC, &first, false).await;
    assert!(one.success);
    assert_eq!(first.calls.lock().unwrap().len(), 8);

    // Nothing changed: every step is reused except the smoke test, which checks a live server.
    let second = Recorder::default();
    let two = run(&home, SPEC, &second, false).await;
    assert!(two.success, "{two:?}");
    assert_eq!(*second.calls.lock().unwrap(), ["smoke_test"]);
    assert_eq!(cached(&two), set(&["validate", "train", "register", "gate", "promote", "deploy", "monitor"]));
    let reused = two.steps.iter().find(|s| s.name == "register").unwrap();
    assert_eq!(reused.outputs["version"], one.steps[2].outputs["version"]);
    assert_eq!(reused.cached_from.as_deref(), Some(one.steps[2].run_id.as_str()));

    // Only the monitor's window changed: only the monitor reruns.
    let third = Recorder::default();
    let three = run(&home, &SPEC.replace("window: 500", "window: 800"), &third, false).await;
    assert_eq!(*third.calls.lock().unwrap(), ["smoke_test", "monitor"]);
    assert!(three.success);

    // A changed candidate reruns training and everything downstream of it, not validation.
    let fourth = Recorder::default();
    let four = run(&home, &SPEC.replace("{model: decision_tree}", "{model: random_forest}"), &fourth, false).await;
    // The deployment follows the alias: deploy reruns after promote and records the same
    // outputs, so the monitor, which depends only on deploy, is still reused.
    assert_eq!(*fourth.calls.lock().unwrap(), ["train", "register", "gate", "promote", "deploy", "smoke_test"]);
    assert_eq!(cached(&four), set(&["validate", "monitor"]));
    assert_ne!(four.model_version, one.model_version);

    // Changed data content under the same path: the file is hashed, so everything reruns up to
    // the deployment, whose outputs come out the same.
    std::fs::write(home.root.join("data.csv"), "x,y\n1,0\n2,1\n3,1\n").unwrap();
    let fifth = Recorder::default();
    let five = run(&home, SPEC, &fifth, false).await;
    assert_eq!(*fifth.calls.lock().unwrap(), ALL[..7]);
    assert_eq!(cached(&five), set(&["monitor"]));

    // --force reruns every step.
    let sixth = Recorder::default();
    let six = run(&home, SPEC, &sixth, true).await;
    assert_eq!(*sixth.calls.lock().unwrap(), ALL);
    assert!(cached(&six).is_empty());
}

#[tokio::test]
async fn a_failed_step_stops_its_dependents_and_the_summary_says_which_and_why() {
    let home = home().await;
    let recorder = Recorder { fail: Some("gate"), ..Recorder::default() };
    let summary = run(&home, SPEC, &recorder, false).await;
    assert_eq!(*recorder.calls.lock().unwrap(), ["validate", "train", "register", "gate"]);
    assert!(!summary.success);
    assert_eq!(summary.status, "FAILED");
    assert_eq!(with_status(&summary, StepStatus::Finished), set(&["validate", "train", "register"]));
    assert_eq!(with_status(&summary, StepStatus::Failed), set(&["gate"]));
    assert_eq!(with_status(&summary, StepStatus::Skipped), set(&["promote", "deploy", "smoke_test", "monitor"]));
    assert_eq!(summary.errors[0], "gate: accuracy 0.61 is below the floor 0.8");
    assert_eq!(summary.errors[1], "promote: not run: step 'gate' did not finish");
    assert_eq!(summary.errors[2], "deploy: not run: step 'promote' did not finish");
    assert!(summary.deployment_result.is_none());

    let gate = summary.steps.iter().find(|s| s.name == "gate").unwrap();
    let gate_run = home.db.get_run(&gate.run_id).await.unwrap();
    assert_eq!(gate_run.info.status, RunStatus::Failed);
    assert!(gate_run.data.tags.iter().any(|t| t.key == "shipyard.error" && t.value.contains("below the floor")));
    let root = shipyard_core::artifact_path::ArtifactPath::from_proxied_uri(&gate_run.info.artifact_uri).unwrap();
    let log = shipyard_core::artifact_path::ArtifactPath::parse(&format!("{root}/step/log.txt")).unwrap();
    assert_eq!(home.artifacts.read_all(&log).await.unwrap(), b"gate log");
    let policy = shipyard_core::artifact_path::ArtifactPath::parse(&format!("{root}/step/policy.yaml")).unwrap();
    let policy = String::from_utf8(home.artifacts.read_all(&policy).await.unwrap()).unwrap();
    assert!(policy.contains("min: 0.8") && policy.contains("max_p99_ms: 100"), "{policy}");
    let skipped = summary.steps.iter().find(|s| s.name == "deploy").unwrap();
    assert_eq!(home.db.get_run(&skipped.run_id).await.unwrap().info.status, RunStatus::Killed);

    // A failed step is not a cache entry: the next run tries it again; what finished is reused.
    let retry = Recorder::default();
    let again = run(&home, SPEC, &retry, false).await;
    assert!(again.success, "{again:?}");
    assert_eq!(*retry.calls.lock().unwrap(), ["gate", "promote", "deploy", "smoke_test", "monitor"]);
}

#[tokio::test]
async fn a_missing_file_fails_its_step_with_the_path() {
    let home = home().await;
    let recorder = Recorder::default();
    let summary = run(&home, &SPEC.replace("data: data.csv", "data: nowhere.csv"), &recorder, false).await;
    assert!(recorder.calls.lock().unwrap().is_empty());
    assert!(summary.errors[0].starts_with("validate: "), "{:?}", summary.errors);
    assert!(summary.errors[0].contains(&Path::new(&home.root).join("nowhere.csv").display().to_string()));
    assert_eq!(with_status(&summary, StepStatus::Skipped).len(), 7);
}
