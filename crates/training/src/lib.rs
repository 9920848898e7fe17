//! Training runs: a native model fitted on a table, evaluated on a seeded held-out split, and
//! recorded as a tracked run (params, metrics, tags, the input dataset, the model in MLflow's
//! layout, the training profile, evaluation plots); a hyperparameter search as a parent run with
//! one child run per trial. The work of `shipyard train` (and so of a pipeline's train step),
//! for every edge that trains: the CLI parses its flags into a [`TrainRequest`] and prints the
//! [`Trained`] it gets back.
//!
//! Order of work: every check that can fail on the request (data, target, parameters, split)
//! runs before a run is created ([`TrainingError::Input`]), so a typo leaves no run behind. Once
//! the run exists, a failure ends it FAILED with the error in its `shipyard.error` tag, and a
//! cancellation ([`Watch::cancel`]) ends it KILLED. Reading the table and fitting run on the
//! blocking pool, never on the async reactor. `shipyard-train` fits and evaluates (no IO); this
//! crate reads the table (`shipyard-data`) and records (`shipyard-store`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use arrow_array::RecordBatch;
use futures::StreamExt;
use serde_json::json;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::entities::{DatasetInput, KeyValue, Metric, Run, RunStatus, now_millis, utc_timestamp};
use shipyard_data::profile::Profile;
use shipyard_data::table::{CsvOptions, Table};
use shipyard_store::datasets::DatasetVersion;
use shipyard_store::tracking::NewRun;
use shipyard_store::{ArtifactStore, Database};
use shipyard_train::artifacts::{self, ArtifactFile, ModelMeta};
use shipyard_train::evaluate::{self, Evaluation};
use shipyard_train::frame::{Features, Target, Task, Values};
use shipyard_train::params::{ModelKind, Params, SearchSpace};
use shipyard_train::split::{self, Split};
use shipyard_train::{Control, Model, TrainError};

/// Most held-out rows timed one by one for the latency metrics.
const LATENCY_ROWS: usize = 1000;

/// How a search picks its trials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchKind {
    /// Every combination of the parameters' value lists.
    Grid,
    /// A seeded random sample of them.
    Random,
}

impl SearchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchKind::Grid => "grid",
            SearchKind::Random => "random",
        }
    }
}

/// What to train, and how to record it (its JSON form is what a server's `train` route takes).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainRequest {
    /// The table: a CSV or Parquet path this process can read, or `dataset:NAME[@VERSION]`.
    pub data: String,
    #[serde(default)]
    pub csv: CsvOptions,
    /// The column to predict.
    pub target: String,
    /// `logistic_regression`, `linear_regression`, `decision_tree`, `random_forest` or
    /// `gradient_boosting`.
    pub model: String,
    /// `KEY=VALUE` model parameters; a value may be a comma-separated list under a search.
    #[serde(default)]
    pub params: Vec<String>,
    /// Share of the rows held out for evaluation.
    pub test_size: f64,
    /// Seed of the split and of the model's randomness.
    pub seed: u64,
    /// Classification or regression; `None`: decided from the target's type.
    pub task: Option<Task>,
    /// Columns left out of the features.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The experiment (created when missing).
    pub experiment: String,
    pub run_name: Option<String>,
    pub search: Option<SearchKind>,
    /// Trials of a random search (and the most a grid search runs).
    pub trials: Option<usize>,
    /// Cross-validate each trial with K stratified folds of the training rows.
    pub cv: Option<usize>,
    /// The metric that picks the best trial (default: accuracy, or r2 for regression).
    pub metric: Option<String>,
    /// Register the model as a new version of this registered model.
    pub register: Option<String>,
    /// Record the run as a child of this run (`mlflow.parentRunId`).
    pub parent_run: Option<String>,
    /// Who trains (`mlflow.user`, the run's user).
    #[serde(default)]
    pub user: String,
    /// Where the training comes from, as the edge knows it (`mlflow.source.*`, the host, the
    /// git commit of the working folder).
    #[serde(default)]
    pub source_tags: Vec<KeyValue>,
}

/// What the edge sees while a training runs, and how it stops one.
#[derive(Clone)]
pub struct Watch {
    /// Called with (done, total) as trees or iterations finish, from the training thread.
    pub progress: Arc<dyn Fn(usize, usize) + Send + Sync>,
    /// Set to stop: the training ends at its next check and the run ends KILLED.
    pub cancel: Arc<AtomicBool>,
}

impl Default for Watch {
    fn default() -> Self {
        Watch { progress: Arc::new(|_, _| {}), cancel: Arc::default() }
    }
}

/// Why a training did not produce a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    /// The request cannot be trained (a bad table, target, parameter or option): no run exists.
    #[error("{0}")]
    Input(String),
    /// The run (or the search's parent run) ended FAILED or KILLED; the message says which.
    #[error("{message}")]
    Ended { run_id: String, status: RunStatus, message: String },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] shipyard_core::Error),
}

type Result<T, E = TrainingError> = std::result::Result<T, E>;

fn input(e: impl std::fmt::Display) -> TrainingError {
    TrainingError::Input(e.to_string())
}

/// A finished training: a single run, or a search's parent with its trials (its JSON form is
/// what a server's `train` route answers).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Trained {
    /// The run (the search's parent run): its model is `runs:/RUN_ID/model`.
    pub run_id: String,
    pub model: ModelKind,
    pub task: Task,
    /// The table as given: `dataset:NAME@VERSION` or the file's path.
    pub data: String,
    pub train_rows: usize,
    pub test_rows: usize,
    /// The held-out metrics, training time and latency (the best trial's for a search).
    pub metrics: Vec<(String, f64)>,
    /// What the fit reports (iterations, convergence).
    pub fit: serde_json::Value,
    /// `(name, version)` when the model was registered.
    pub registered: Option<(String, String)>,
    pub search: Option<Searched>,
}

/// A search's trials.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Searched {
    pub kind: SearchKind,
    /// The metric that picked the best trial; `cv_METRIC_mean` decided with cross-validation.
    pub metric: String,
    pub cross_validated: bool,
    pub trials: Vec<Trial>,
    /// The index of the best trial.
    pub best: usize,
}

/// One trial of a search.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Trial {
    pub run_id: String,
    /// The searched parameters' values.
    pub params: Vec<(String, String)>,
    pub score: f64,
    pub metrics: Vec<(String, f64)>,
}

/// The stores a training records into.
#[derive(Clone)]
pub struct Trainer {
    pub db: Database,
    pub artifacts: ArtifactStore,
    /// Where dataset versions from remote artifact stores are copied to be read.
    pub cache: PathBuf,
    /// Whether the table may be a path on this machine: true at the command line; false on a
    /// server with logins, where callers name tables as dataset versions only.
    pub local_paths: bool,
}

/// Everything checked and decoded before a run exists.
struct Prepared {
    kind: ModelKind,
    /// One parameter set per trial (one without a search).
    trials: Vec<Params>,
    /// The searched values per parameter (none without a search).
    space: SearchSpace,
    /// The metric that picks the best trial.
    metric: String,
    features: Features,
    target: Target,
    split: Split,
    batches: Vec<RecordBatch>,
    schema: arrow_schema::SchemaRef,
    input: DatasetInput,
    data_display: String,
    target_name: String,
}

/// What one training produced.
struct Fitted {
    model: Model,
    evaluation: Evaluation,
    training_time_s: f64,
    latency_ms: (f64, f64),
    /// Per metric: cross-validation mean and standard deviation.
    cv: Vec<(String, f64, f64)>,
}

impl Fitted {
    /// The trial's score on `metric`: the cross-validation mean when there is one.
    fn score(&self, metric: &str) -> Option<f64> {
        match self.cv.iter().find(|(n, ..)| n == metric) {
            Some((_, mean, _)) => Some(*mean),
            None => self.evaluation.metrics.iter().find(|(n, _)| n == metric).map(|(_, v)| *v),
        }
    }

    /// The metrics a run records and a summary shows.
    fn metrics(&self) -> Vec<(String, f64)> {
        let mut metrics = self.evaluation.metrics.clone();
        metrics.push(("training_time_s".into(), self.training_time_s));
        metrics.push(("inference_latency_p50_ms".into(), self.latency_ms.0));
        metrics.push(("inference_latency_p99_ms".into(), self.latency_ms.1));
        metrics
    }
}

/// `KEY=VALUE` pairs; values may be comma-separated lists only under a search.
fn parse_params(raw: &[String], search: bool) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|p| {
            let (k, v) =
                p.split_once('=').ok_or_else(|| TrainingError::Input(format!("--param {p}: expected KEY=VALUE")))?;
            if v.contains(',') && !search {
                return Err(TrainingError::Input(format!("--param {p}: a list of values needs --search grid|random")));
            }
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// The parameter sets to train: one, or the search's trials (each checked now).
fn trials(request: &TrainRequest, kind: ModelKind, task: Task) -> Result<(Vec<Params>, SearchSpace)> {
    let given = parse_params(&request.params, request.search.is_some())?;
    let Some(search) = request.search else {
        return Ok((vec![Params::resolve(kind, task, &given).map_err(input)?], SearchSpace { axes: Vec::new() }));
    };
    let space = SearchSpace::parse(&given);
    let points = match search {
        SearchKind::Grid => space.grid(request.trials.unwrap_or(usize::MAX)),
        SearchKind::Random => {
            let n = request.trials.ok_or_else(|| input("--search random needs --trials N"))?;
            space.random(n, request.seed)
        }
    };
    if points.is_empty() || request.trials == Some(0) {
        return Err(input("the search has no trials: give --trials N above 0"));
    }
    let trials = points.iter().map(|p| Params::resolve(kind, task, p)).collect::<Result<Vec<_>, _>>().map_err(input)?;
    Ok((trials, space))
}

/// The selection metric, checked against the task's metric names.
fn selection_metric(request: &TrainRequest, task: Task) -> Result<String> {
    let known: &[&str] = match task {
        Task::Classification => &evaluate::CLASSIFICATION_METRICS,
        Task::Regression => &evaluate::REGRESSION_METRICS,
    };
    let metric =
        request.metric.clone().unwrap_or_else(|| if task == Task::Regression { "r2" } else { "accuracy" }.into());
    if !known.contains(&metric.as_str()) {
        return Err(TrainingError::Input(format!(
            "--metric {metric}: not a {} metric; choose one of {}",
            task.as_str(),
            known.join(", ")
        )));
    }
    Ok(metric)
}

/// Reads the table and checks everything about the request (blocking: reads the whole table).
fn prepare(request: &TrainRequest, path: PathBuf, version: Option<DatasetVersion>) -> Result<Prepared> {
    let kind = ModelKind::parse(&request.model).map_err(input)?;
    let mut table = Table::open(&path, &request.csv).map_err(input)?;
    let schema = table.schema().clone();
    let batches = table.read_all().map_err(input)?;
    let forced = request.task.or(kind.fixed_task());
    if let Some(missing) = request.exclude.iter().find(|c| schema.field_with_name(c).is_err()) {
        return Err(TrainingError::Input(format!("--exclude {missing}: no such column in {}", path.display())));
    }
    if request.exclude.contains(&request.target) {
        return Err(TrainingError::Input(format!("--exclude {}: that is the target column", request.target)));
    }
    let target = Target::from_batches(&batches, &request.target, forced).map_err(input)?;
    let mut skip: Vec<&str> = request.exclude.iter().map(String::as_str).collect();
    skip.push(&request.target);
    let features = Features::from_batches(&batches, None, &skip).map_err(input)?;
    features.check_not_all_missing().map_err(input)?;
    if features.columns.is_empty() {
        return Err(input("no feature columns: the table has only the target (and excluded) columns"));
    }
    let (trials, space) = trials(request, kind, target.task())?;
    let metric = selection_metric(request, target.task())?;
    if request.cv.is_some_and(|k| k < 2) {
        return Err(input("--cv must be at least 2 folds"));
    }
    let split = split::train_test_split(&target, request.test_size, request.seed).map_err(input)?;
    let schema_json = shipyard_data::mlflow_schema::colspec(&schema, |_| false);
    let input_record = match &version {
        Some(v) => v.run_input(&schema_json),
        None => {
            let (digest, _) = shipyard_data::digest::sha256_file(&path).map_err(input)?;
            shipyard_store::datasets::file_run_input(&path, &digest, features.rows as u64, &schema_json)
        }
    };
    let data_display = match &version {
        Some(v) => format!("dataset:{}@{}", v.name, v.version),
        None => path.display().to_string(),
    };
    Ok(Prepared {
        kind,
        trials,
        space,
        metric,
        features,
        target,
        split,
        batches,
        schema,
        input: input_record,
        data_display,
        target_name: request.target.clone(),
    })
}

/// The training rows of the input table, for the profile.
fn training_batches(
    batches: &[RecordBatch],
    schema: &arrow_schema::SchemaRef,
    rows: &[usize],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let all = arrow_select::concat::concat_batches(schema, batches)?;
    let indices = arrow_array::UInt64Array::from(rows.iter().map(|&r| r as u64).collect::<Vec<_>>());
    arrow_select::take::take_record_batch(&all, &indices)
}

/// Trains and evaluates on the prepared split (blocking; runs on the rayon pool), after
/// cross-validating on the training rows when `cv` folds are asked for.
fn fit_and_evaluate(
    prepared: &Prepared,
    params: &Params,
    cv: Option<usize>,
    seed: u64,
    control: &Control,
) -> Result<Fitted, TrainError> {
    let (train_rows, test_rows) = (&prepared.split.train, &prepared.split.test);
    let (kind, target_name) = (prepared.kind, prepared.target_name.as_str());
    let cv = match cv {
        Some(k) => evaluate::cross_validate(
            kind,
            params,
            &prepared.features,
            &prepared.target,
            target_name,
            train_rows,
            k,
            seed,
            control,
        )?,
        None => Vec::new(),
    };
    let train_features = prepared.features.take(train_rows);
    let train_target = prepared.target.take(train_rows);
    let start = Instant::now();
    let model = shipyard_train::model::train(kind, params, &train_features, &train_target, target_name, seed, control)?;
    let training_time_s = start.elapsed().as_secs_f64();
    let test_features = prepared.features.take(test_rows);
    let evaluation = evaluate::evaluate(&model, &test_features, &prepared.target.take(test_rows))?;
    let latency_ms = evaluate::latency_ms(&model, &test_features, LATENCY_ROWS)?;
    Ok(Fitted { model, evaluation, training_time_s, latency_ms, cv })
}

/// Why a run's training failed, kept apart from a cancellation.
enum RunFailure {
    Interrupted,
    Failed(String),
}

impl From<shipyard_core::Error> for RunFailure {
    fn from(e: shipyard_core::Error) -> Self {
        RunFailure::Failed(e.to_string())
    }
}

impl Trainer {
    /// Trains as `request` says and records it; `watch` reports progress and can cancel.
    pub async fn train(&self, request: TrainRequest, watch: Watch) -> Result<Trained> {
        let (path, version) = self.resolve(&request.data).await?;
        let prepared = {
            let request = request.clone();
            tokio::task::spawn_blocking(move || prepare(&request, path, version))
                .await
                .map_err(|e| TrainingError::Input(format!("reading the table failed: {e}")))??
        };
        let prepared = Arc::new(prepared);
        let experiment_id = match self.db.get_experiment_by_name(&request.experiment).await {
            Ok(e) => e.experiment_id,
            Err(shipyard_core::Error::NotFound(_)) if request.experiment != "Default" => {
                self.db.create_experiment(&request.experiment, None, &[]).await?
            }
            Err(shipyard_core::Error::NotFound(_)) => "0".to_owned(),
            Err(e) => return Err(e.into()),
        };
        if let Some(parent) = &request.parent_run {
            self.db.get_run(parent).await.map_err(|e| TrainingError::Input(format!("--parent-run {parent}: {e}")))?;
        }
        let new_run = |name: Option<String>, extra: Vec<KeyValue>| {
            let mut tags = run_tags(&request, &prepared);
            if let Some(parent) = &request.parent_run
                && !extra.iter().any(|t| t.key == "mlflow.parentRunId")
            {
                tags.push(KeyValue::new("mlflow.parentRunId", parent.clone()));
            }
            tags.extend(extra);
            NewRun {
                experiment_id: experiment_id.clone(),
                user_id: request.user.clone(),
                run_name: name,
                start_time: None,
                tags,
            }
        };
        let summary = |run_id: &str, fitted: &Fitted| Trained {
            run_id: run_id.to_owned(),
            model: prepared.kind,
            task: prepared.target.task(),
            data: prepared.data_display.clone(),
            train_rows: prepared.split.train.len(),
            test_rows: prepared.split.test.len(),
            metrics: fitted.metrics(),
            fit: serde_json::to_value(&fitted.model.fit_info).unwrap_or_default(),
            registered: None,
            search: None,
        };
        let Some(kind) = request.search else {
            let run = self.db.create_run(new_run(request.run_name.clone(), Vec::new())).await?;
            let run_id = run.info.run_uuid.clone();
            let result = self.train_in_run(&request, &prepared, &prepared.trials[0], &run, &watch).await;
            let fitted = self.end_run(&run_id, result).await?;
            let mut trained = summary(&run_id, &fitted);
            trained.registered = self.register(request.register.as_deref(), &run_id, &request.user).await?;
            return Ok(trained);
        };

        // A search: a parent run, one child run per trial, the best marked on the parent.
        let parent = self
            .db
            .create_run(new_run(request.run_name.clone(), vec![KeyValue::new("shipyard.search", "true")]))
            .await?;
        let parent_id = parent.info.run_uuid.clone();
        let searched = self.search(&request, &prepared, &parent, &new_run, &watch).await;
        let status = match &searched {
            Ok(_) => RunStatus::Finished,
            Err(RunFailure::Interrupted) => RunStatus::Killed,
            Err(RunFailure::Failed(_)) => RunStatus::Failed,
        };
        self.db.update_run(&parent_id, Some(status), Some(now_millis()), None).await?;
        let (trials, best, fitted) = match searched {
            Ok(found) => found,
            Err(e) => {
                let why = match e {
                    RunFailure::Interrupted => TrainError::Interrupted.to_string(),
                    RunFailure::Failed(m) => m,
                };
                return Err(TrainingError::Ended {
                    run_id: parent_id.clone(),
                    status,
                    message: format!("{why}\nsearch run {parent_id} ended {status:?}"),
                });
            }
        };
        let mut trained = summary(&parent_id, &fitted);
        trained.search = Some(Searched {
            kind,
            metric: prepared.metric.clone(),
            cross_validated: request.cv.is_some(),
            trials,
            best,
        });
        trained.registered = self.register(request.register.as_deref(), &parent_id, &request.user).await?;
        Ok(trained)
    }

    /// The table as a local path, with the dataset version when it named one.
    async fn resolve(&self, data: &str) -> Result<(PathBuf, Option<DatasetVersion>)> {
        let Some(reference) = data.strip_prefix("dataset:") else {
            if !self.local_paths {
                return Err(TrainingError::Input(format!(
                    "'{data}' is a path: this server reads tables only as dataset versions (dataset:NAME[@VERSION]); \
                     add the file with `shipyard data add`"
                )));
            }
            return Ok((PathBuf::from(data), None));
        };
        let (name, version) = shipyard_store::datasets::parse_reference(reference).map_err(input)?;
        let v = self.db.get_dataset_version(&name, version).await.map_err(input)?;
        let path = v.local_copy(&self.cache).await?;
        Ok((path, Some(v)))
    }

    /// Registers the run's model when the request names a registered model.
    async fn register(&self, name: Option<&str>, run_id: &str, user: &str) -> Result<Option<(String, String)>> {
        let Some(name) = name else { return Ok(None) };
        let version = self.db.register_run_model(name, run_id, Some(user).filter(|u| !u.is_empty())).await.map_err(
            |e| match e {
                shipyard_core::Error::InvalidParameter(m) => {
                    shipyard_core::Error::InvalidParameter(format!("registering the model as '{name}': {m}"))
                }
                other => other,
            },
        )?;
        Ok(Some((name.to_owned(), version.version)))
    }

    /// Ends a run FINISHED, KILLED (cancelled) or FAILED (the error kept in `shipyard.error`).
    async fn end_run(&self, run_id: &str, result: Result<Fitted, RunFailure>) -> Result<Fitted> {
        let (status, result) = match result {
            Ok(t) => (RunStatus::Finished, Ok(t)),
            Err(RunFailure::Interrupted) => (RunStatus::Killed, Err(format!("{}", TrainError::Interrupted))),
            Err(RunFailure::Failed(message)) => {
                let kept: String = message.chars().take(5000).collect();
                let _ = self.db.set_tag(run_id, KeyValue::new("shipyard.error", kept)).await;
                (RunStatus::Failed, Err(message))
            }
        };
        self.db.update_run(run_id, Some(status), Some(now_millis()), None).await?;
        result.map_err(|why| TrainingError::Ended {
            run_id: run_id.to_owned(),
            status,
            message: match status {
                RunStatus::Killed => format!("run {run_id} ended KILLED: {why}"),
                _ => format!("{why}\nrun {run_id} ended FAILED"),
            },
        })
    }

    async fn search(
        &self,
        request: &TrainRequest,
        prepared: &Arc<Prepared>,
        parent: &Run,
        new_run: &impl Fn(Option<String>, Vec<KeyValue>) -> NewRun,
        watch: &Watch,
    ) -> Result<(Vec<Trial>, usize, Fitted), RunFailure> {
        let parent_id = parent.info.run_uuid.clone();
        let mut params = vec![
            KeyValue::new("model", prepared.kind.as_str()),
            KeyValue::new("target", request.target.clone()),
            KeyValue::new("search", request.search.map_or("grid", SearchKind::as_str)),
            KeyValue::new("trials", prepared.trials.len().to_string()),
            KeyValue::new("metric", prepared.metric.clone()),
            KeyValue::new("cv", request.cv.map_or("none".into(), |k| k.to_string())),
            KeyValue::new("seed", request.seed.to_string()),
        ];
        params.extend(
            prepared.space.axes.iter().map(|(name, values)| KeyValue::new(format!("space.{name}"), values.join(","))),
        );
        self.db.log_batch(&parent_id, Vec::new(), params, Vec::new()).await?;
        self.db.log_inputs(&parent_id, vec![prepared.input.clone()], Vec::new()).await?;
        let searched: Vec<&str> = prepared.space.axes.iter().map(|(n, _)| n.as_str()).collect();
        let mut trials = Vec::with_capacity(prepared.trials.len());
        let mut fitted_trials = Vec::with_capacity(prepared.trials.len());
        for (i, trial) in prepared.trials.iter().enumerate() {
            let name = format!("{}-trial-{}", parent.info.run_name, i + 1);
            let run = self
                .db
                .create_run(new_run(Some(name), vec![KeyValue::new("mlflow.parentRunId", parent_id.clone())]))
                .await?;
            let result = self.train_in_run(request, prepared, trial, &run, watch).await;
            let interrupted = matches!(result, Err(RunFailure::Interrupted));
            let fitted = match self.end_run(&run.info.run_uuid, result).await {
                Ok(f) => f,
                Err(_) if interrupted => return Err(RunFailure::Interrupted),
                Err(e) => return Err(RunFailure::Failed(e.to_string())),
            };
            let score = fitted.score(&prepared.metric).unwrap_or(f64::NAN);
            let shown = trial.to_strings().into_iter().filter(|(k, _)| searched.contains(&k.as_str())).collect();
            trials.push(Trial {
                run_id: run.info.run_uuid.clone(),
                params: shown,
                score,
                metrics: fitted.evaluation.metrics.clone(),
            });
            fitted_trials.push(fitted);
        }
        let higher = evaluate::higher_is_better(&prepared.metric);
        let best = (0..trials.len())
            .filter(|&i| !trials[i].score.is_nan())
            .reduce(|a, b| {
                let better = if higher { trials[b].score > trials[a].score } else { trials[b].score < trials[a].score };
                if better { b } else { a }
            })
            .ok_or_else(|| RunFailure::Failed(format!("no trial produced the metric {}", prepared.metric)))?;
        let winner = &trials[best];
        let mut metrics = vec![Metric {
            key: format!("best_{}", prepared.metric),
            value: winner.score,
            timestamp: now_millis(),
            ..Metric::default()
        }];
        metrics.extend(winner.metrics.iter().map(|(k, v)| Metric {
            key: k.clone(),
            value: *v,
            timestamp: now_millis(),
            ..Metric::default()
        }));
        let best_params = winner.params.iter().map(|(k, v)| KeyValue::new(format!("best.{k}"), v.clone())).collect();
        let tags = vec![
            KeyValue::new("shipyard.best_run_id", winner.run_id.clone()),
            KeyValue::new("shipyard.best_model_uri", format!("runs:/{}/model", winner.run_id)),
        ];
        self.db.log_batch(&parent_id, metrics, best_params, tags).await?;
        // The parent carries a copy of the best model: runs:/PARENT/model is the search's result.
        let child = self.db.get_run(&winner.run_id).await?;
        let from = ArtifactPath::from_proxied_uri(&child.info.artifact_uri)?;
        let to = ArtifactPath::from_proxied_uri(&parent.info.artifact_uri)?;
        for folder in ["model", "evaluation", "profile"] {
            let sub = ArtifactPath::parse(folder)?;
            self.artifacts.copy_tree(&from.join(&sub), &to.join(&sub)).await?;
        }
        let fitted = fitted_trials.swap_remove(best);
        Ok((trials, best, fitted))
    }

    async fn train_in_run(
        &self,
        request: &TrainRequest,
        prepared: &Arc<Prepared>,
        trial: &Params,
        run: &Run,
        watch: &Watch,
    ) -> Result<Fitted, RunFailure> {
        let run_id = run.info.run_uuid.clone();
        let mut params: Vec<KeyValue> = vec![
            KeyValue::new("model", prepared.kind.as_str()),
            KeyValue::new("target", request.target.clone()),
            KeyValue::new("task", prepared.target.task().as_str()),
            KeyValue::new("test_size", request.test_size.to_string()),
            KeyValue::new("seed", request.seed.to_string()),
            KeyValue::new("data", prepared.data_display.clone()),
            KeyValue::new("features", prepared.features.specs.len().to_string()),
            KeyValue::new("train_rows", prepared.split.train.len().to_string()),
            KeyValue::new("test_rows", prepared.split.test.len().to_string()),
        ];
        if let Some(k) = request.cv {
            params.push(KeyValue::new("cv", k.to_string()));
        }
        params.extend(trial.to_strings().into_iter().map(|(k, v)| KeyValue::new(k, v)));
        self.db.log_batch(&run_id, Vec::new(), params, Vec::new()).await?;
        self.db.log_inputs(&run_id, vec![prepared.input.clone()], Vec::new()).await?;

        let job = {
            let (prepared, watch, seed, cv) = (prepared.clone(), watch.clone(), request.seed, request.cv);
            let trial = trial.clone();
            tokio::task::spawn_blocking(move || {
                let progress = move |done: usize, total: usize| (watch.progress)(done, total);
                let control = Control { progress: &progress, cancel: &watch.cancel };
                fit_and_evaluate(&prepared, &trial, cv, seed, &control)
            })
        };
        let fitted = match job.await {
            Ok(Ok(f)) => f,
            Ok(Err(TrainError::Interrupted)) => return Err(RunFailure::Interrupted),
            Ok(Err(e)) => return Err(RunFailure::Failed(e.to_string())),
            Err(e) => return Err(RunFailure::Failed(format!("training thread failed: {e}"))),
        };

        let timestamp = now_millis();
        let mut metrics: Vec<Metric> = fitted
            .metrics()
            .into_iter()
            .map(|(key, value)| Metric { key, value, timestamp, ..Metric::default() })
            .collect();
        for (name, mean, std) in &fitted.cv {
            metrics.push(Metric { key: format!("cv_{name}_mean"), value: *mean, timestamp, ..Metric::default() });
            metrics.push(Metric { key: format!("cv_{name}_std"), value: *std, timestamp, ..Metric::default() });
        }
        self.db.log_batch(&run_id, metrics, Vec::new(), Vec::new()).await?;

        let files = run_files(prepared, &fitted, &run_id).map_err(RunFailure::Failed)?;
        let root = ArtifactPath::from_proxied_uri(&run.info.artifact_uri)?;
        for (path, bytes) in files {
            let full = ArtifactPath::parse(&format!("{root}/{path}"))?;
            let body = futures::stream::once(async move { Ok::<_, shipyard_core::Error>(bytes::Bytes::from(bytes)) });
            self.artifacts
                .put(&full, body.boxed())
                .await
                .map_err(|e| RunFailure::Failed(format!("storing artifact {path}: {e}")))?;
        }
        let history = json!([{
            "run_id": run_id, "artifact_path": "model", "utc_time_created": utc_timestamp(timestamp),
            "flavors": {"shipyard": {"kind": prepared.kind.as_str()}}
        }]);
        self.db.set_tag(&run_id, KeyValue::new("mlflow.log-model.history", history.to_string())).await?;
        Ok(fitted)
    }
}

/// Tags every training run carries: who, where from, with what.
fn run_tags(request: &TrainRequest, prepared: &Prepared) -> Vec<KeyValue> {
    let mut tags = request.source_tags.clone();
    tags.extend([
        KeyValue::new("mlflow.user", if request.user.is_empty() { "unknown" } else { &request.user }),
        KeyValue::new("shipyard.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("shipyard.model_kind", prepared.kind.as_str()),
        KeyValue::new("shipyard.task", prepared.target.task().as_str()),
    ]);
    tags
}

/// The model directory, the training profile and the evaluation files.
fn run_files(prepared: &Prepared, fitted: &Fitted, run_id: &str) -> Result<Vec<ArtifactFile>, String> {
    let train_rows = &prepared.split.train;
    let example = prepared.features.take(&train_rows[..train_rows.len().min(artifacts::EXAMPLE_ROWS)]);
    let optional: Vec<bool> = prepared
        .features
        .columns
        .iter()
        .map(|c| match c {
            Values::Numeric(v) => train_rows.iter().any(|&r| v[r].is_nan()),
            Values::Categorical { codes, .. } => {
                train_rows.iter().any(|&r| codes[r] == shipyard_train::frame::MISSING_CODE)
            }
        })
        .collect();
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    let created = utc_timestamp(now_millis());
    let meta = ModelMeta {
        run_id,
        model_uuid: &uuid,
        utc_time_created: &created,
        shipyard_version: env!("CARGO_PKG_VERSION"),
    };
    let mut files = artifacts::model_directory(&fitted.model, &meta, &example, &optional);
    let training = training_batches(&prepared.batches, &prepared.schema, train_rows).map_err(|e| e.to_string())?;
    let profile = Profile::of_batches(&prepared.schema, std::slice::from_ref(&training)).map_err(|e| e.to_string())?;
    files.push((
        "profile/training_profile.json".into(),
        serde_json::to_vec(&profile).map_err(|e| format!("writing the training profile: {e}"))?,
    ));
    if let Some(m) = &fitted.evaluation.classification {
        files.extend(artifacts::confusion_matrix_files(&fitted.model, m));
    }
    files.extend(artifacts::importance_files(&fitted.model));
    Ok(files)
}
