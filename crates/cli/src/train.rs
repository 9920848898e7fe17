//! `shipyard train`: fit a native model on a table, evaluate it on a seeded held-out split, and
//! record everything as a tracked run (params, metrics, tags, the input dataset, the model in
//! MLflow's layout, the training profile, evaluation plots).
//!
//! Order of work: every check that can fail on the user's input (data, target, parameters, split)
//! runs before the run is created, so a typo leaves no run behind. Once the run exists, a
//! failure ends it FAILED with the error in the `shipyard.error` tag, and Ctrl-C ends it KILLED.
//! Training runs on the rayon pool (`spawn_blocking`), never on the async reactor.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::RecordBatch;
use clap::Args;
use futures::StreamExt;
use serde_json::json;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::entities::{KeyValue, Metric, RunStatus, now_millis, utc_timestamp};
use shipyard_data::profile::Profile;
use shipyard_data::table::Table;
use shipyard_store::tracking::NewRun;
use shipyard_store::{ArtifactStore, Database};
use shipyard_train::artifacts::{self, ArtifactFile, ModelMeta};
use shipyard_train::evaluate::{self, Evaluation};
use shipyard_train::frame::{Features, Target, Task, Values};
use shipyard_train::params::{ModelKind, Params, SearchSpace};
use shipyard_train::split::{self, Split};
use shipyard_train::{Control, Model, TrainError};

use crate::Format;
use crate::data::ReadArgs;
use crate::datasets::{self, DatasetStoreArgs};
use crate::models::Registered;

/// Most held-out rows timed one by one for the latency metrics.
const LATENCY_ROWS: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskArg {
    /// Classes for strings, booleans and integers with few distinct values; values otherwise.
    Auto,
    Classification,
    Regression,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchKind {
    Grid,
    Random,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Training table: a CSV or Parquet file, or dataset:NAME[@VERSION].
    #[arg(long)]
    data: PathBuf,
    /// The column to predict.
    #[arg(long)]
    target: String,
    /// logistic_regression, linear_regression, decision_tree, random_forest or gradient_boosting.
    #[arg(long)]
    model: String,
    /// A model parameter (repeatable), e.g. --param max_depth=8.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Share of the rows held out for evaluation.
    #[arg(long, default_value_t = 0.2)]
    test_size: f64,
    /// Seed of the split and of the model's randomness.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Classification or regression (auto decides from the target's type).
    #[arg(long, value_enum, default_value_t = TaskArg::Auto)]
    task: TaskArg,
    /// Columns to leave out of the features (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Experiment to record the run in (created when missing).
    #[arg(long, default_value = "Default")]
    experiment: String,
    /// The run's name (generated when absent).
    #[arg(long)]
    run_name: Option<String>,
    /// Hyperparameter search over --param value lists (--param max_depth=4,8,16): every
    /// combination (grid) or a seeded random sample of them; each trial is a child run.
    #[arg(long, value_enum)]
    search: Option<SearchKind>,
    /// Trials of a random search (and the most a grid search runs).
    #[arg(long)]
    trials: Option<usize>,
    /// Cross-validate each trial with K stratified folds of the training rows.
    #[arg(long, value_name = "K")]
    cv: Option<usize>,
    /// The metric that picks the best trial (default: accuracy, or r2 for regression).
    #[arg(long)]
    metric: Option<String>,
    /// Register the trained model (`runs:/RUN_ID/model`) as a new version of this registered
    /// model (created when missing), as MLflow's `registered_model_name` does.
    #[arg(long, value_name = "NAME")]
    register: Option<String>,
    /// Record the run (the search's parent run) as a child of this run (`mlflow.parentRunId`),
    /// as a pipeline's train step does.
    #[arg(long, value_name = "RUN_ID")]
    parent_run: Option<String>,
    /// Output: a summary table, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

/// Everything checked and decoded before a run exists.
struct Prepared {
    kind: ModelKind,
    /// One parameter set per trial (one without --search).
    trials: Vec<Params>,
    /// The searched values per parameter (none without --search).
    space: SearchSpace,
    /// The metric that picks the best trial.
    metric: String,
    features: Features,
    target: Target,
    split: Split,
    batches: Vec<RecordBatch>,
    schema: arrow_schema::SchemaRef,
    input: shipyard_core::entities::DatasetInput,
    data_display: String,
    target_name: String,
}

/// `KEY=VALUE` pairs; values may be comma-separated lists only under --search.
fn parse_params(raw: &[String], search: bool) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("--param {p}: expected KEY=VALUE"))?;
            if v.contains(',') && !search {
                bail!("--param {p}: a list of values needs --search grid|random");
            }
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// The parameter sets to train: one, or the search's trials (each checked now).
fn trials(args: &TrainArgs, kind: ModelKind, task: Task) -> Result<(Vec<Params>, SearchSpace)> {
    let given = parse_params(&args.params, args.search.is_some())?;
    let Some(search) = args.search else {
        return Ok((vec![Params::resolve(kind, task, &given)?], SearchSpace { axes: Vec::new() }));
    };
    let space = SearchSpace::parse(&given);
    let points = match search {
        SearchKind::Grid => space.grid(args.trials.unwrap_or(usize::MAX)),
        SearchKind::Random => {
            let n = args.trials.ok_or_else(|| anyhow!("--search random needs --trials N"))?;
            space.random(n, args.seed)
        }
    };
    if points.is_empty() || args.trials == Some(0) {
        bail!("the search has no trials: give --trials N above 0");
    }
    let trials = points.iter().map(|p| Params::resolve(kind, task, p)).collect::<Result<Vec<_>, _>>()?;
    Ok((trials, space))
}

/// The selection metric, checked against the task's metric names.
fn selection_metric(args: &TrainArgs, task: Task) -> Result<String> {
    let known: &[&str] = match task {
        Task::Classification => &evaluate::CLASSIFICATION_METRICS,
        Task::Regression => &evaluate::REGRESSION_METRICS,
    };
    let metric = args.metric.clone().unwrap_or_else(|| if task == Task::Regression { "r2" } else { "accuracy" }.into());
    if !known.contains(&metric.as_str()) {
        bail!("--metric {metric}: not a {} metric; choose one of {}", task.as_str(), known.join(", "));
    }
    Ok(metric)
}

fn prepare(args: &TrainArgs) -> Result<Prepared> {
    let kind = ModelKind::parse(&args.model)?;
    let (path, version) = datasets::resolve_dataset(&args.data, &args.store)?;
    let mut table = Table::open(&path, &args.read.options()?)?;
    let schema = table.schema().clone();
    let batches = table.read_all()?;
    let forced = match (args.task, kind.fixed_task()) {
        (TaskArg::Classification, _) => Some(Task::Classification),
        (TaskArg::Regression, _) => Some(Task::Regression),
        (TaskArg::Auto, fixed) => fixed,
    };
    if let Some(missing) = args.exclude.iter().find(|c| schema.field_with_name(c).is_err()) {
        bail!("--exclude {missing}: no such column in {}", path.display());
    }
    if args.exclude.contains(&args.target) {
        bail!("--exclude {}: that is the target column", args.target);
    }
    let target = Target::from_batches(&batches, &args.target, forced)?;
    let mut skip: Vec<&str> = args.exclude.iter().map(String::as_str).collect();
    skip.push(&args.target);
    let features = Features::from_batches(&batches, None, &skip)?;
    features.check_not_all_missing()?;
    if features.columns.is_empty() {
        bail!("no feature columns: the table has only the target (and excluded) columns");
    }
    let (trials, space) = trials(args, kind, target.task())?;
    let metric = selection_metric(args, target.task())?;
    if args.cv.is_some_and(|k| k < 2) {
        bail!("--cv must be at least 2 folds");
    }
    let split = split::train_test_split(&target, args.test_size, args.seed)?;
    let input = match &version {
        Some(v) => {
            let schema_json = datasets::colspec(&schema, |_| false);
            datasets::mlflow_input(v, &schema_json)
        }
        None => {
            let (digest, _) = shipyard_data::digest::sha256_file(&path)?;
            let schema_json = datasets::colspec(&schema, |_| false);
            datasets::file_input(&path, &digest, features.rows as u64, &schema_json)
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
        input,
        data_display,
        target_name: args.target.clone(),
    })
}

/// The training rows of the input table, for the profile.
fn training_batches(batches: &[RecordBatch], schema: &arrow_schema::SchemaRef, rows: &[usize]) -> Result<RecordBatch> {
    let all = arrow_select::concat::concat_batches(schema, batches)?;
    let indices = arrow_array::UInt64Array::from(rows.iter().map(|&r| r as u64).collect::<Vec<_>>());
    Ok(arrow_select::take::take_record_batch(&all, &indices)?)
}

/// Tags every training run carries: who, where, with what.
fn run_tags(prepared: &Prepared) -> Vec<KeyValue> {
    let mut tags = vec![
        KeyValue::new("mlflow.source.name", "shipyard train"),
        KeyValue::new("mlflow.source.type", "LOCAL"),
        KeyValue::new("mlflow.user", std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
        KeyValue::new("shipyard.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("shipyard.model_kind", prepared.kind.as_str()),
        KeyValue::new("shipyard.task", prepared.target.task().as_str()),
    ];
    if let Some(host) = hostname() {
        tags.push(KeyValue::new("shipyard.host", host));
    }
    if let Some(commit) = git_commit() {
        tags.push(KeyValue::new("mlflow.source.git.commit", commit));
    }
    tags
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// The commit checked out when the working directory is inside a git work tree.
fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && text.len() == 40).then_some(text)
}

/// What one training produced.
struct Trained {
    model: Model,
    evaluation: Evaluation,
    training_time_s: f64,
    latency_ms: (f64, f64),
    /// Per metric: cross-validation mean and standard deviation (with --cv).
    cv: Vec<(String, f64, f64)>,
}

impl Trained {
    /// The trial's score on `metric`: the cross-validation mean when there is one.
    fn score(&self, metric: &str) -> Option<f64> {
        match self.cv.iter().find(|(n, ..)| n == metric) {
            Some((_, mean, _)) => Some(*mean),
            None => self.evaluation.metrics.iter().find(|(n, _)| n == metric).map(|(_, v)| *v),
        }
    }
}

/// Trains and evaluates on the prepared split (blocking; runs on the rayon pool), after
/// cross-validating on the training rows when `cv` folds are asked for.
fn fit_and_evaluate(
    prepared: &Prepared,
    params: &Params,
    cv: Option<usize>,
    seed: u64,
    control: &Control,
) -> Result<Trained, TrainError> {
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
    Ok(Trained { model, evaluation, training_time_s, latency_ms, cv })
}

pub fn run(args: TrainArgs) -> Result<crate::Outcome> {
    let prepared = Arc::new(prepare(&args)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(record(args, prepared))
}

async fn record(args: TrainArgs, prepared: Arc<Prepared>) -> Result<crate::Outcome> {
    let db = args.store.database().await?;
    let destination = args.store.destination();
    let artifacts = ArtifactStore::open(&destination).await?;
    let experiment_id = match db.get_experiment_by_name(&args.experiment).await {
        Ok(e) => e.experiment_id,
        Err(shipyard_core::Error::NotFound(_)) if args.experiment != "Default" => {
            db.create_experiment(&args.experiment, None, &[]).await?
        }
        Err(shipyard_core::Error::NotFound(_)) => "0".to_owned(),
        Err(e) => return Err(e.into()),
    };
    if let Some(parent) = &args.parent_run {
        db.get_run(parent).await.with_context(|| format!("--parent-run {parent}"))?;
    }
    let new_run = |name: Option<String>, extra: Vec<KeyValue>| {
        let mut tags = run_tags(&prepared);
        if let Some(parent) = &args.parent_run
            && !extra.iter().any(|t| t.key == "mlflow.parentRunId")
        {
            tags.push(KeyValue::new("mlflow.parentRunId", parent.clone()));
        }
        tags.extend(extra);
        NewRun {
            experiment_id: experiment_id.clone(),
            user_id: std::env::var("USER").unwrap_or_default(),
            run_name: name,
            start_time: None,
            tags,
        }
    };
    if args.search.is_none() {
        let run = db.create_run(new_run(args.run_name.clone(), Vec::new())).await?;
        let result = train_in_run(&args, &prepared, &prepared.trials[0], &db, &artifacts, &run).await;
        let trained = end_run(&db, &run.info.run_uuid, result).await;
        let registered = match &trained {
            Ok(_) => register(&db, args.register.as_deref(), &run.info.run_uuid).await,
            Err(_) => Ok(None),
        };
        db.close().await;
        print_summary(&args, &prepared, &run.info.run_uuid, &trained?, registered?.as_ref());
        return Ok(crate::Outcome::Success);
    }

    // A search: a parent run, one child run per trial, the best marked on the parent.
    let parent = db.create_run(new_run(args.run_name.clone(), vec![KeyValue::new("shipyard.search", "true")])).await?;
    let parent_id = parent.info.run_uuid.clone();
    let searched = search(&args, &prepared, &db, &artifacts, &parent, &new_run).await;
    let status = match &searched {
        Ok(_) => RunStatus::Finished,
        Err(e) if is_interrupted(e) => RunStatus::Killed,
        Err(_) => RunStatus::Failed,
    };
    db.update_run(&parent_id, Some(status), Some(now_millis()), None).await?;
    let registered =
        if searched.is_ok() { register(&db, args.register.as_deref(), &parent_id).await } else { Ok(None) };
    db.close().await;
    let (trials, best) = searched.map_err(|e| anyhow!("{e:#}\nsearch run {parent_id} ended {status:?}"))?;
    print_search(&args, &prepared, &parent_id, &trials, best, registered?.as_ref());
    Ok(crate::Outcome::Success)
}

/// Registers the run's model when `--register NAME` was given.
async fn register(db: &Database, name: Option<&str>, run_id: &str) -> Result<Option<Registered>> {
    match name {
        Some(name) => Ok(Some(crate::models::register(db, name, run_id).await?)),
        None => Ok(None),
    }
}

fn is_interrupted(e: &anyhow::Error) -> bool {
    e.downcast_ref::<TrainError>().is_some_and(|t| matches!(t, TrainError::Interrupted))
}

/// Ends a run FINISHED, KILLED (interrupted) or FAILED (the error kept in `shipyard.error`).
async fn end_run(db: &Database, run_id: &str, result: Result<Trained>) -> Result<Trained> {
    let (status, result) = match result {
        Ok(t) => (RunStatus::Finished, Ok(t)),
        Err(e) if is_interrupted(&e) => {
            (RunStatus::Killed, Err(anyhow!(TrainError::Interrupted).context(format!("run {run_id} ended KILLED"))))
        }
        Err(e) => {
            let message: String = format!("{e:#}").chars().take(5000).collect();
            let _ = db.set_tag(run_id, KeyValue::new("shipyard.error", message)).await;
            (RunStatus::Failed, Err(anyhow!("{e:#}\nrun {run_id} ended FAILED")))
        }
    };
    db.update_run(run_id, Some(status), Some(now_millis()), None).await?;
    result
}

/// One finished trial of a search.
struct TrialResult {
    run_id: String,
    params: Vec<(String, String)>,
    score: f64,
    trained: Trained,
}

async fn search(
    args: &TrainArgs,
    prepared: &Arc<Prepared>,
    db: &Database,
    artifacts: &ArtifactStore,
    parent: &shipyard_core::entities::Run,
    new_run: &impl Fn(Option<String>, Vec<KeyValue>) -> NewRun,
) -> Result<(Vec<TrialResult>, usize)> {
    let parent_id = parent.info.run_uuid.clone();
    let mut params = vec![
        KeyValue::new("model", prepared.kind.as_str()),
        KeyValue::new("target", args.target.clone()),
        KeyValue::new("search", if args.search == Some(SearchKind::Random) { "random" } else { "grid" }),
        KeyValue::new("trials", prepared.trials.len().to_string()),
        KeyValue::new("metric", prepared.metric.clone()),
        KeyValue::new("cv", args.cv.map_or("none".into(), |k| k.to_string())),
        KeyValue::new("seed", args.seed.to_string()),
    ];
    params.extend(
        prepared.space.axes.iter().map(|(name, values)| KeyValue::new(format!("space.{name}"), values.join(","))),
    );
    db.log_batch(&parent_id, Vec::new(), params, Vec::new()).await?;
    db.log_inputs(&parent_id, vec![prepared.input.clone()], Vec::new()).await?;
    let searched: Vec<&str> = prepared.space.axes.iter().map(|(n, _)| n.as_str()).collect();
    let mut results = Vec::with_capacity(prepared.trials.len());
    for (i, trial) in prepared.trials.iter().enumerate() {
        let name = format!("{}-trial-{}", parent.info.run_name, i + 1);
        let run =
            db.create_run(new_run(Some(name), vec![KeyValue::new("mlflow.parentRunId", parent_id.clone())])).await?;
        let result = train_in_run(args, prepared, trial, db, artifacts, &run).await;
        let trained = end_run(db, &run.info.run_uuid, result).await?;
        let score = trained.score(&prepared.metric).unwrap_or(f64::NAN);
        let shown = trial.to_strings().into_iter().filter(|(k, _)| searched.contains(&k.as_str())).collect();
        results.push(TrialResult { run_id: run.info.run_uuid.clone(), params: shown, score, trained });
    }
    let higher = evaluate::higher_is_better(&prepared.metric);
    let best = (0..results.len())
        .filter(|&i| !results[i].score.is_nan())
        .reduce(|a, b| {
            let better = if higher { results[b].score > results[a].score } else { results[b].score < results[a].score };
            if better { b } else { a }
        })
        .ok_or_else(|| anyhow!("no trial produced the metric {}", prepared.metric))?;
    let winner = &results[best];
    let mut metrics = vec![Metric {
        key: format!("best_{}", prepared.metric),
        value: winner.score,
        timestamp: now_millis(),
        ..Metric::default()
    }];
    metrics.extend(winner.trained.evaluation.metrics.iter().map(|(k, v)| Metric {
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
    db.log_batch(&parent_id, metrics, best_params, tags).await?;
    // The parent carries a copy of the best model: runs:/PARENT/model is the search's result.
    let child = db.get_run(&winner.run_id).await?;
    let from = ArtifactPath::from_proxied_uri(&child.info.artifact_uri)?;
    let to = ArtifactPath::from_proxied_uri(&parent.info.artifact_uri)?;
    for folder in ["model", "evaluation", "profile"] {
        let sub = ArtifactPath::parse(folder)?;
        artifacts.copy_tree(&from.join(&sub), &to.join(&sub)).await?;
    }
    Ok((results, best))
}

async fn train_in_run(
    args: &TrainArgs,
    prepared: &Arc<Prepared>,
    trial: &Params,
    db: &Database,
    artifacts: &ArtifactStore,
    run: &shipyard_core::entities::Run,
) -> Result<Trained> {
    let run_id = run.info.run_uuid.clone();
    let mut params: Vec<KeyValue> = vec![
        KeyValue::new("model", prepared.kind.as_str()),
        KeyValue::new("target", args.target.clone()),
        KeyValue::new("task", prepared.target.task().as_str()),
        KeyValue::new("test_size", args.test_size.to_string()),
        KeyValue::new("seed", args.seed.to_string()),
        KeyValue::new("data", prepared.data_display.clone()),
        KeyValue::new("features", prepared.features.specs.len().to_string()),
        KeyValue::new("train_rows", prepared.split.train.len().to_string()),
        KeyValue::new("test_rows", prepared.split.test.len().to_string()),
    ];
    if let Some(k) = args.cv {
        params.push(KeyValue::new("cv", k.to_string()));
    }
    params.extend(trial.to_strings().into_iter().map(|(k, v)| KeyValue::new(k, v)));
    db.log_batch(&run_id, Vec::new(), params, Vec::new()).await?;
    db.log_inputs(&run_id, vec![prepared.input.clone()], Vec::new()).await?;

    let cancel = Arc::new(AtomicBool::new(false));
    let bar = progress_bar();
    let job = {
        let (prepared, cancel, bar, seed) = (prepared.clone(), cancel.clone(), bar.clone(), args.seed);
        let (trial, cv) = (trial.clone(), args.cv);
        tokio::task::spawn_blocking(move || {
            let progress = move |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            };
            let control = Control { progress: &progress, cancel: &cancel };
            fit_and_evaluate(&prepared, &trial, cv, seed, &control)
        })
    };
    tokio::pin!(job);
    let trained = tokio::select! {
        joined = &mut job => joined,
        _ = tokio::signal::ctrl_c() => {
            cancel.store(true, Ordering::Relaxed);
            bar.abandon_with_message("interrupted");
            (&mut job).await
        }
    };
    bar.finish_and_clear();
    let trained = trained.map_err(|e| anyhow!("training thread failed: {e}"))??;

    let timestamp = now_millis();
    let mut metrics: Vec<Metric> = trained
        .evaluation
        .metrics
        .iter()
        .map(|(k, v)| Metric { key: k.clone(), value: *v, timestamp, ..Metric::default() })
        .collect();
    for (key, value) in [
        ("training_time_s", trained.training_time_s),
        ("inference_latency_p50_ms", trained.latency_ms.0),
        ("inference_latency_p99_ms", trained.latency_ms.1),
    ] {
        metrics.push(Metric { key: key.into(), value, timestamp, ..Metric::default() });
    }
    for (name, mean, std) in &trained.cv {
        metrics.push(Metric { key: format!("cv_{name}_mean"), value: *mean, timestamp, ..Metric::default() });
        metrics.push(Metric { key: format!("cv_{name}_std"), value: *std, timestamp, ..Metric::default() });
    }
    db.log_batch(&run_id, metrics, Vec::new(), Vec::new()).await?;

    let files = run_files(prepared, &trained, &run_id)?;
    let root = ArtifactPath::from_proxied_uri(&run.info.artifact_uri)?;
    for (path, bytes) in files {
        let full = ArtifactPath::parse(&format!("{root}/{path}"))?;
        let body = futures::stream::once(async move { Ok::<_, shipyard_core::Error>(bytes::Bytes::from(bytes)) });
        artifacts.put(&full, body.boxed()).await.with_context(|| format!("storing artifact {path}"))?;
    }
    let history = json!([{
        "run_id": run_id, "artifact_path": "model", "utc_time_created": utc_timestamp(timestamp),
        "flavors": {"shipyard": {"kind": prepared.kind.as_str()}}
    }]);
    db.set_tag(&run_id, KeyValue::new("mlflow.log-model.history", history.to_string())).await?;
    Ok(trained)
}

/// The model directory, the training profile and the evaluation files.
fn run_files(prepared: &Prepared, trained: &Trained, run_id: &str) -> Result<Vec<ArtifactFile>> {
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
    let mut files = artifacts::model_directory(&trained.model, &meta, &example, &optional);
    let training = training_batches(&prepared.batches, &prepared.schema, train_rows)?;
    let profile = Profile::of_batches(&prepared.schema, std::slice::from_ref(&training))?;
    files.push(("profile/training_profile.json".into(), serde_json::to_vec(&profile)?));
    if let Some(m) = &trained.evaluation.classification {
        files.extend(artifacts::confusion_matrix_files(&trained.model, m));
    }
    files.extend(artifacts::importance_files(&trained.model));
    Ok(files)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("training {bar:40} {pos}/{len} [{elapsed_precise}]") {
        bar.set_style(style);
    }
    bar
}

fn print_summary(
    args: &TrainArgs,
    prepared: &Prepared,
    run_id: &str,
    trained: &Trained,
    registered: Option<&Registered>,
) {
    let mut metrics = trained.evaluation.metrics.clone();
    metrics.push(("training_time_s".into(), trained.training_time_s));
    metrics.push(("inference_latency_p50_ms".into(), trained.latency_ms.0));
    metrics.push(("inference_latency_p99_ms".into(), trained.latency_ms.1));
    if args.format == Format::Json {
        let out = json!({
            "run_id": run_id,
            "model_uri": format!("runs:/{run_id}/model"),
            "model": prepared.kind.as_str(),
            "task": prepared.target.task().as_str(),
            "train_rows": prepared.split.train.len(),
            "test_rows": prepared.split.test.len(),
            "metrics": metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "fit": trained.model.fit_info,
            "registered_model": registered.map(|(name, version)| json!({"name": name, "version": version})),
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    outln!(
        "{} ({}) on {}: {} rows to train, {} held out",
        prepared.kind,
        prepared.target.task().as_str(),
        prepared.data_display,
        prepared.split.train.len(),
        prepared.split.test.len()
    );
    let width = metrics.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &metrics {
        outln!("  {k:<width$}  {}", shipyard_core::display::number(*v));
    }
    outln!("model: runs:/{run_id}/model");
    if let Some((name, version)) = registered {
        outln!("registered: models:/{name}/{version}");
    }
    outln!("{run_id}");
}

fn print_search(
    args: &TrainArgs,
    prepared: &Prepared,
    parent_id: &str,
    trials: &[TrialResult],
    best: usize,
    registered: Option<&Registered>,
) {
    let metric = &prepared.metric;
    let scored = if args.cv.is_some() { format!("cv_{metric}_mean") } else { metric.clone() };
    if args.format == Format::Json {
        let out = json!({
            "run_id": parent_id,
            "model_uri": format!("runs:/{parent_id}/model"),
            "best_run_id": trials[best].run_id,
            "metric": metric,
            "trials": trials.iter().map(|t| json!({
                "run_id": t.run_id,
                "params": t.params.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "score": t.score,
                "metrics": t.trained.evaluation.metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "registered_model": registered.map(|(name, version)| json!({"name": name, "version": version})),
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    outln!(
        "{} search over {} trial(s) of {} on {}, by {scored}:",
        if args.search == Some(SearchKind::Random) { "random" } else { "grid" },
        trials.len(),
        prepared.kind,
        prepared.data_display
    );
    for (i, t) in trials.iter().enumerate() {
        let params: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mark = if i == best { "*" } else { " " };
        outln!("{mark} {}  {}  {}", t.run_id, shipyard_core::display::number(t.score), params.join(" "));
    }
    outln!("best: runs:/{}/model (copied to runs:/{parent_id}/model)", trials[best].run_id);
    if let Some((name, version)) = registered {
        outln!("registered: models:/{name}/{version}");
    }
    outln!("{parent_id}");
}
