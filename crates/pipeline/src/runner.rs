//! Runs a pipeline and reads back how runs went.
//!
//! A pipeline run is a parent run (tag `shipyard.pipeline`) in the pipeline's experiment, with
//! a child run per step (`mlflow.parentRunId`). Each step's inputs are resolved (references
//! replaced, paths made absolute), then hashed with the contents of the files and dataset
//! versions they name and the outputs of the steps it depends on; a FINISHED step run with the
//! same hash (`shipyard.pipeline.input_hash`)
//! lends its outputs and the step is not run again, unless `force`. A failed step ends FAILED
//! with its error; the steps that depend on it end KILLED, tagged with the reason, and are
//! reported SKIPPED. Everything the summary says is read back from these runs, so
//! `pipeline status` and the end of `pipeline run` print the same thing.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use shipyard_core::entities::{KeyValue, Metric, Run, RunStatus, now_millis};
use shipyard_core::{Error, Result};
use shipyard_store::tracking::NewRun;

use crate::tracker::{RunReader, Tracker};

use crate::spec::{Pipeline, ResolvedStep, Step, StepAction, gate_policy, monitor_config, to_yaml};

/// Tags the runner writes and reads.
pub mod tags {
    /// On the parent: the pipeline's name.
    pub const PIPELINE: &str = "shipyard.pipeline";
    /// `pipeline` on the parent run, `step` on a step's run.
    pub const ROLE: &str = "shipyard.pipeline.role";
    /// On the parent: what started the run (a person, or an alert).
    pub const TRIGGER: &str = "shipyard.pipeline.trigger";
    /// On a step's run: its place in the pipeline's order (0, 1, ...).
    pub const POSITION: &str = "shipyard.pipeline.position";
    /// On a step's run: the step's name and kind.
    pub const STEP: &str = "shipyard.pipeline.step";
    pub const KIND: &str = "shipyard.pipeline.kind";
    /// On a step's run: the steps it waits for, comma-separated (the pipeline's graph).
    pub const NEEDS: &str = "shipyard.pipeline.needs";
    /// On a step's run: the SHA-256 of its resolved inputs.
    pub const INPUT_HASH: &str = "shipyard.pipeline.input_hash";
    /// On a step's run: its outputs (JSON object).
    pub const OUTPUTS: &str = "shipyard.pipeline.outputs";
    /// On a step's run served from the cache: the run whose outputs it reused.
    pub const CACHED_FROM: &str = "shipyard.pipeline.cached_from";
    /// On a step's run that did not run: why.
    pub const SKIPPED: &str = "shipyard.pipeline.skipped";
    /// On a failed run: the error.
    pub const ERROR: &str = "shipyard.error";
    pub const PARENT: &str = "mlflow.parentRunId";
}

/// What a step produced: its outputs, and what it printed (kept as the run's `step/log.txt`).
#[derive(Debug, Default)]
pub struct StepResult {
    pub outputs: BTreeMap<String, Value>,
    pub log: String,
}

/// Why a step failed, and what it printed.
#[derive(Debug, Default)]
pub struct StepFailure {
    pub message: String,
    pub log: String,
}

impl StepFailure {
    pub fn new(message: impl Into<String>) -> StepFailure {
        StepFailure { message: message.into(), log: String::new() }
    }
}

/// Does the work of one step.
pub trait Executor: Send + Sync {
    fn execute<'a>(&'a self, step: &'a ResolvedStep) -> BoxFuture<'a, std::result::Result<StepResult, StepFailure>>;
}

/// How a pipeline is run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run every step even if an identical one finished before.
    pub force: bool,
    /// Who runs it.
    pub user: String,
    /// What started it, recorded on the parent run (e.g. an alert).
    pub trigger: Option<String>,
}

/// How a step came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StepStatus {
    Running,
    Finished,
    Failed,
    /// Not run because a step it depends on failed.
    Skipped,
}

/// One step of a pipeline run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    pub name: String,
    pub kind: String,
    pub status: StepStatus,
    pub run_id: String,
    /// Its outputs were reused from an identical earlier step.
    pub cached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
    pub duration_s: f64,
    #[serde(default)]
    pub outputs: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The steps it waited for (empty for runs recorded before this was kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

/// The seed's `pipeline_results`, with the steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineSummary {
    pub pipeline: String,
    pub run_id: String,
    pub experiment_id: String,
    /// FINISHED, FAILED or RUNNING.
    pub status: String,
    pub success: bool,
    /// The version the pipeline registered, `NAME/VERSION`.
    pub model_version: Option<String>,
    /// The deploy step's outputs, with the smoke test's under `smoke_test`.
    pub deployment_result: Option<Value>,
    pub errors: Vec<String>,
    pub steps: Vec<StepSummary>,
    pub duration_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

/// A pipeline run that has its parent run and is ready to execute.
pub struct PipelineRun {
    tracker: Arc<dyn Tracker>,
    pipeline: Pipeline,
    options: Options,
    parent: Run,
}

/// The seed configuration as flat params (`alert_thresholds.max_drift`, ...).
fn config_params(pipeline: &Pipeline) -> Vec<KeyValue> {
    let mut params = Vec::new();
    if let Ok(Value::Object(map)) = serde_json::to_value(&pipeline.config) {
        for (key, value) in map {
            match value {
                Value::Object(inner) => {
                    params.extend(inner.into_iter().map(|(k, v)| KeyValue::new(format!("{key}.{k}"), value_text(&v))))
                }
                other => params.push(KeyValue::new(key, value_text(&other))),
            }
        }
    }
    params
}

fn value_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// Text cut to a tag's limit.
fn clip(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl PipelineRun {
    /// Creates the pipeline's parent run (and experiment). Nothing runs yet.
    pub async fn begin(tracker: Arc<dyn Tracker>, pipeline: Pipeline, options: Options) -> Result<Self> {
        let experiment_id = tracker.experiment(&pipeline.experiment).await?;
        let mut run_tags = vec![
            KeyValue::new(tags::PIPELINE, pipeline.name.clone()),
            KeyValue::new(tags::ROLE, "pipeline"),
            KeyValue::new("mlflow.source.name", "shipyard pipeline"),
            KeyValue::new("mlflow.source.type", "LOCAL"),
            KeyValue::new("mlflow.user", options.user.clone()),
        ];
        if let Some(file) = &pipeline.file {
            run_tags.push(KeyValue::new("shipyard.pipeline.file", file.display().to_string()));
        }
        if let Some(trigger) = &options.trigger {
            run_tags.push(KeyValue::new(tags::TRIGGER, clip(trigger, 5000)));
        }
        let parent = tracker
            .create_run(NewRun {
                experiment_id,
                user_id: options.user.clone(),
                run_name: Some(format!("pipeline-{}", pipeline.name)),
                start_time: None,
                tags: run_tags,
            })
            .await?;
        let mut params = config_params(&pipeline);
        params.push(KeyValue::new("force", options.force.to_string()));
        tracker.log_batch(&parent.info.run_uuid, Vec::new(), params, Vec::new()).await?;
        tracker.put_text(&parent, "pipeline.yaml", pipeline.text.clone()).await?;
        Ok(PipelineRun { tracker, pipeline, options, parent })
    }

    pub fn run_id(&self) -> &str {
        &self.parent.info.run_id
    }

    /// Runs the steps in order and ends the parent run; the summary as [`status`] reads it.
    pub async fn execute(self, executor: &dyn Executor) -> Result<PipelineSummary> {
        let parent_id = self.parent.info.run_uuid.clone();
        let mut outputs: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        for step in &self.pipeline.steps {
            let blocked = step.depends_on.iter().find(|d| failed.contains_key(*d));
            if let Some(blocker) = blocked {
                let reason = format!("step '{blocker}' did not finish");
                self.skip(step, &reason).await?;
                failed.insert(step.name.clone(), reason);
                continue;
            }
            match self.run_step(step, &outputs, executor).await? {
                Ok(out) => {
                    outputs.insert(step.name.clone(), out);
                }
                Err(message) => {
                    failed.insert(step.name.clone(), message);
                }
            }
        }
        let status = if failed.is_empty() { RunStatus::Finished } else { RunStatus::Failed };
        self.tracker.end_run(&parent_id, status).await?;
        let summary = status_of(self.tracker.as_ref(), &parent_id).await?;
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        self.tracker.put_text(&self.parent, "summary.json", text).await?;
        Ok(summary)
    }

    fn new_step_run(&self, step: &Step) -> NewRun {
        let position = self.pipeline.steps.iter().position(|s| s.name == step.name).unwrap_or_default();
        NewRun {
            experiment_id: self.parent.info.experiment_id.clone(),
            user_id: self.options.user.clone(),
            run_name: Some(format!("{}.{}", self.pipeline.name, step.name)),
            start_time: None,
            tags: vec![
                KeyValue::new(tags::PARENT, self.parent.info.run_uuid.clone()),
                KeyValue::new(tags::PIPELINE, self.pipeline.name.clone()),
                KeyValue::new(tags::ROLE, "step"),
                KeyValue::new(tags::STEP, step.name.clone()),
                KeyValue::new(tags::POSITION, position.to_string()),
                KeyValue::new(tags::KIND, step.action.kind()),
                KeyValue::new(tags::NEEDS, step.depends_on.iter().cloned().collect::<Vec<_>>().join(",")),
                KeyValue::new("mlflow.source.name", "shipyard pipeline"),
            ],
        }
    }

    async fn skip(&self, step: &Step, reason: &str) -> Result<()> {
        let run = self.tracker.create_run(self.new_step_run(step)).await?;
        self.tracker.set_tag(&run.info.run_uuid, KeyValue::new(tags::SKIPPED, reason)).await?;
        self.tracker.end_run(&run.info.run_uuid, RunStatus::Killed).await?;
        tracing::info!(target: "shipyard::pipeline", "{}: skipped ({reason})", step.name);
        Ok(())
    }

    /// Runs (or reuses) one step. The outer error is the store's; the inner one the step's.
    async fn run_step(
        &self,
        step: &Step,
        outputs: &BTreeMap<String, BTreeMap<String, Value>>,
        executor: &dyn Executor,
    ) -> Result<std::result::Result<BTreeMap<String, Value>, String>> {
        let run = self.tracker.create_run(self.new_step_run(step)).await?;
        let run_id = run.info.run_uuid.clone();
        let fail =
            async |message: String, log: String| -> Result<std::result::Result<BTreeMap<String, Value>, String>> {
                if !log.is_empty() {
                    self.tracker.put_text(&run, "step/log.txt", log).await?;
                }
                self.tracker.set_tag(&run_id, KeyValue::new(tags::ERROR, clip(&message, 5000))).await?;
                self.tracker.end_run(&run_id, RunStatus::Failed).await?;
                tracing::warn!(target: "shipyard::pipeline", "{}: failed: {message}", step.name);
                Ok(Err(message))
            };
        let action = match self.pipeline.resolve(step, outputs) {
            Ok(a) => a,
            Err(message) => return fail(message, String::new()).await,
        };
        let generated = match &action {
            StepAction::Gate(g) if g.policy.is_none() => Some(to_yaml(&gate_policy(g, &self.pipeline.config))),
            StepAction::Monitor(m) if m.config.is_none() => {
                Some(to_yaml(&monitor_config(m, &self.pipeline.config, self.pipeline.file.as_deref())))
            }
            _ => None,
        };
        let upstream: BTreeMap<&String, Option<&BTreeMap<String, Value>>> =
            step.depends_on.iter().map(|d| (d, outputs.get(d))).collect();
        let upstream = serde_json::to_value(upstream).unwrap_or(Value::Null);
        let hash =
            input_hash(self.tracker.as_ref(), &self.pipeline, step, &action, generated.as_deref(), upstream).await;
        let inputs = serde_json::to_string_pretty(&action.inputs()).unwrap_or_default();
        self.tracker.put_text(&run, "step/inputs.json", inputs).await?;
        if let Some(text) = &generated {
            let name = if matches!(action, StepAction::Gate(_)) { "step/policy.yaml" } else { "step/monitors.yaml" };
            self.tracker.put_text(&run, name, text.clone()).await?;
        }
        let hash = match hash {
            Ok(h) => h,
            Err(message) => return fail(message, String::new()).await,
        };
        self.tracker.set_tag(&run_id, KeyValue::new(tags::INPUT_HASH, hash.clone())).await?;
        if !self.options.force
            && action.cacheable()
            && let Some((from, reused)) = self.cached(&hash, &run_id).await?
        {
            self.finish(&run_id, &reused, Some(&from)).await?;
            tracing::info!(target: "shipyard::pipeline", "{}: unchanged, outputs of run {from} reused", step.name);
            return Ok(Ok(reused));
        }
        tracing::info!(target: "shipyard::pipeline", "{}: running ({})", step.name, action.kind());
        let resolved = ResolvedStep {
            name: step.name.clone(),
            action,
            generated,
            run_id: run_id.clone(),
            experiment: self.pipeline.experiment.clone(),
            config: self.pipeline.config.clone(),
            pipeline_file: self.pipeline.file.clone(),
        };
        match executor.execute(&resolved).await {
            Ok(result) => {
                if !result.log.is_empty() {
                    self.tracker.put_text(&run, "step/log.txt", result.log).await?;
                }
                self.finish(&run_id, &result.outputs, None).await?;
                Ok(Ok(result.outputs))
            }
            Err(failure) => fail(failure.message, failure.log).await,
        }
    }

    /// A FINISHED run of an identical step, and its outputs.
    async fn cached(&self, hash: &str, this_run: &str) -> Result<Option<(String, BTreeMap<String, Value>)>> {
        let filter = format!("tags.`{}` = '{hash}' AND attributes.status = 'FINISHED'", tags::INPUT_HASH);
        let page =
            self.tracker.search(std::slice::from_ref(&self.parent.info.experiment_id), &filter, 5, &[], None).await?;
        for run in page.items.into_iter().filter(|r| r.info.run_uuid != this_run) {
            let reused = tag(&run, tags::OUTPUTS).and_then(|t| serde_json::from_str(t).ok());
            if let Some(reused) = reused {
                let from = tag(&run, tags::CACHED_FROM).unwrap_or(&run.info.run_uuid).to_owned();
                return Ok(Some((from, reused)));
            }
        }
        Ok(None)
    }

    /// Records a step's outputs (numbers also as metrics) and ends its run FINISHED.
    async fn finish(&self, run_id: &str, outputs: &BTreeMap<String, Value>, cached_from: Option<&str>) -> Result<()> {
        let text = serde_json::to_string(outputs).unwrap_or_default();
        if text.len() > shipyard_core::validation::MAX_TAG_VAL_LENGTH {
            return Err(Error::invalid(format!("the step's outputs take {} bytes: too many to record", text.len())));
        }
        let mut run_tags = vec![KeyValue::new(tags::OUTPUTS, text)];
        if let Some(from) = cached_from {
            run_tags.push(KeyValue::new(tags::CACHED_FROM, from));
        }
        let timestamp = now_millis();
        let metrics = outputs
            .iter()
            .filter_map(|(k, v)| {
                v.as_f64().map(|value| Metric { key: k.clone(), value, timestamp, ..Metric::default() })
            })
            .collect();
        self.tracker.log_batch(run_id, metrics, Vec::new(), run_tags).await?;
        self.tracker.end_run(run_id, RunStatus::Finished).await?;
        Ok(())
    }
}

fn tag<'a>(run: &'a Run, key: &str) -> Option<&'a str> {
    run.data.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

/// SHA-256 over what decides a step's result: the step's name and kind, the
/// resolved inputs, the generated file, the seed settings the kind reads, the contents of the
/// files and dataset versions it names, the outputs of the steps it depends on, and Shipyard's
/// version. A step that reran with the same outputs leaves its dependents' hashes unchanged.
/// The pipeline's name is not in it: pipelines that share an experiment share identical steps
/// (a challenger pipeline reuses the champion's data validation).
async fn input_hash(
    tracker: &dyn Tracker,
    pipeline: &Pipeline,
    step: &Step,
    action: &StepAction,
    generated: Option<&str>,
    upstream: Value,
) -> std::result::Result<String, String> {
    let mut contents = Vec::new();
    for path in action.paths() {
        let digest = match path.strip_prefix("dataset:") {
            Some(reference) => {
                let (name, version) =
                    shipyard_store::datasets::parse_reference(reference).map_err(|e| e.to_string())?;
                let (number, digest) =
                    tracker.dataset_digest(&name, version).await.map_err(|e| format!("{path}: {e}"))?;
                format!("dataset {name}@{number} {digest}")
            }
            None => {
                let p = std::path::PathBuf::from(&path);
                let digest = tokio::task::spawn_blocking(move || file_digest(&p))
                    .await
                    .map_err(|e| format!("hashing {path}: {e}"))?
                    .map_err(|e| format!("{path}: {e}"))?;
                format!("file {digest}")
            }
        };
        contents.push(Value::String(digest));
    }
    let config_read = match action {
        StepAction::Gate(_) | StepAction::Promote(_) => {
            serde_json::json!([pipeline.config.min_accuracy, pipeline.config.max_inference_time])
        }
        StepAction::SmokeTest(_) => serde_json::json!(pipeline.config.deployment_endpoint),
        StepAction::Monitor(_) => serde_json::to_value(&pipeline.config.alert_thresholds).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let material = serde_json::json!({
        "step": step.name,
        "kind": action.kind(),
        "inputs": action.inputs(),
        "generated": generated,
        "config": config_read,
        "contents": contents,
        "upstream": upstream,
        "shipyard": env!("CARGO_PKG_VERSION"),
    });
    let mut hasher = Sha256::new();
    hasher.update(material.to_string().as_bytes());
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-256 of a file's bytes, streamed.
fn file_digest(path: &std::path::Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// How a pipeline run went, read from its runs.
pub async fn status_of(db: &dyn RunReader, run_id: &str) -> Result<PipelineSummary> {
    let parent = db.run(run_id).await?;
    let Some(pipeline) = tag(&parent, tags::PIPELINE).map(str::to_owned) else {
        return Err(Error::invalid(format!("run {run_id} is not a pipeline run")));
    };
    if tag(&parent, tags::ROLE) != Some("pipeline") {
        return Err(Error::invalid(format!("run {run_id} is a step of a pipeline run, not the pipeline run")));
    }
    let mut children = step_runs(db, &parent, "").await?;
    // Steps start in order, but several may start within one millisecond.
    children.sort_by_key(|c| tag(c, tags::POSITION).and_then(|p| p.parse::<usize>().ok()).unwrap_or(usize::MAX));
    let seconds = |r: &Run| match (r.info.start_time, r.info.end_time) {
        (Some(s), Some(e)) => (e - s) as f64 / 1000.0,
        (Some(s), None) => (now_millis() - s) as f64 / 1000.0,
        _ => 0.0,
    };
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    for child in children.iter().filter(|c| tag(c, tags::STEP).is_some()) {
        let name = tag(child, tags::STEP).unwrap_or_default().to_owned();
        let skipped = tag(child, tags::SKIPPED);
        let status = match (child.info.status, skipped) {
            (_, Some(_)) => StepStatus::Skipped,
            (RunStatus::Finished, _) => StepStatus::Finished,
            (RunStatus::Running | RunStatus::Scheduled, _) => StepStatus::Running,
            _ => StepStatus::Failed,
        };
        let error = match status {
            StepStatus::Skipped => skipped.map(|s| format!("not run: {s}")),
            StepStatus::Failed => Some(tag(child, tags::ERROR).unwrap_or("the step ended without an error").to_owned()),
            _ => None,
        };
        if let Some(e) = &error {
            errors.push(format!("{name}: {e}"));
        }
        steps.push(StepSummary {
            kind: tag(child, tags::KIND).unwrap_or_default().to_owned(),
            status,
            run_id: child.info.run_uuid.clone(),
            cached: tag(child, tags::CACHED_FROM).is_some(),
            cached_from: tag(child, tags::CACHED_FROM).map(str::to_owned),
            duration_s: seconds(child),
            outputs: tag(child, tags::OUTPUTS).and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default(),
            error,
            needs: tag(child, tags::NEEDS)
                .map(|n| n.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
            name,
        });
    }
    let of_kind = |kind: &str| steps.iter().rev().find(|s| s.kind == kind && s.status == StepStatus::Finished);
    let model_version = of_kind("register").and_then(|s| {
        Some(format!("{}/{}", value_text(s.outputs.get("name")?), value_text(s.outputs.get("version")?)))
    });
    let deployment_result = of_kind("deploy").map(|d| {
        let mut result = serde_json::to_value(&d.outputs).unwrap_or(Value::Null);
        if let Some(smoke) = of_kind("smoke_test") {
            result["smoke_test"] = serde_json::to_value(&smoke.outputs).unwrap_or(Value::Null);
        }
        result
    });
    let status = match parent.info.status {
        RunStatus::Running | RunStatus::Scheduled => "RUNNING",
        RunStatus::Finished => "FINISHED",
        RunStatus::Killed => "KILLED",
        RunStatus::Failed => "FAILED",
    };
    Ok(PipelineSummary {
        pipeline,
        run_id: run_id.to_owned(),
        experiment_id: parent.info.experiment_id.clone(),
        status: status.to_owned(),
        success: status == "FINISHED" && steps.iter().all(|s| s.status == StepStatus::Finished),
        model_version,
        deployment_result,
        errors,
        duration_s: seconds(&parent),
        trigger: tag(&parent, tags::TRIGGER).map(str::to_owned),
        steps,
    })
}

/// Every step run of the pipeline run `parent` matching `also` (more of a search filter, from
/// its `AND`; empty for all), by start time, read page by page.
async fn step_runs(db: &dyn RunReader, parent: &Run, also: &str) -> Result<Vec<Run>> {
    let filter = format!("tags.`{}` = '{}'{also}", tags::PARENT, parent.info.run_uuid);
    let mut runs = Vec::new();
    let mut token: Option<String> = None;
    let order = ["attributes.start_time ASC".to_owned()];
    loop {
        let page = db
            .search(std::slice::from_ref(&parent.info.experiment_id), &filter, 1000, &order, token.as_deref())
            .await?;
        runs.extend(page.items);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(runs),
        }
    }
}

/// Ends an interrupted pipeline run: its parent and any step still running end KILLED, so no
/// run is left RUNNING by a pipeline that stopped.
pub async fn abandon(tracker: &dyn Tracker, run_id: &str) -> Result<()> {
    let parent = tracker.run(run_id).await?;
    let running = step_runs(tracker, &parent, " AND attributes.status = 'RUNNING'").await?;
    for run in running.iter().map(|r| r.info.run_uuid.as_str()).chain(std::iter::once(run_id)) {
        tracker.set_tag(run, KeyValue::new(tags::ERROR, "interrupted")).await?;
        tracker.end_run(run, RunStatus::Killed).await?;
    }
    Ok(())
}

/// The newest pipeline runs (parent runs), newest first.
pub async fn recent_runs(db: &dyn RunReader, limit: i64) -> Result<Vec<Run>> {
    let ids = db.experiment_ids().await?;
    let filter = format!("tags.`{}` = 'pipeline'", tags::ROLE);
    Ok(db.search(&ids, &filter, limit.max(1), &[], None).await?.items)
}
