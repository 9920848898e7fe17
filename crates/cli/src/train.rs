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
use shipyard_train::params::{ModelKind, Params};
use shipyard_train::split::{self, Split};
use shipyard_train::{Control, Model, TrainError};

use crate::Format;
use crate::data::ReadArgs;
use crate::datasets::{self, DatasetStoreArgs};

/// Most held-out rows timed one by one for the latency metrics.
const LATENCY_ROWS: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskArg {
    /// Classes for strings, booleans and integers with few distinct values; values otherwise.
    Auto,
    Classification,
    Regression,
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
    params: Params,
    features: Features,
    target: Target,
    split: Split,
    batches: Vec<RecordBatch>,
    schema: arrow_schema::SchemaRef,
    input: shipyard_core::entities::DatasetInput,
    data_display: String,
    target_name: String,
}

/// `KEY=VALUE` pairs.
fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("--param {p}: expected KEY=VALUE"))?;
            if v.contains(',') {
                bail!("--param {p}: a list of values needs --search (hyperparameter search)");
            }
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
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
    let params = Params::resolve(kind, target.task(), &parse_params(&args.params)?)?;
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
        params,
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
}

/// Trains and evaluates on the prepared split (blocking; runs on the rayon pool).
fn fit_and_evaluate(
    prepared: &Prepared,
    params: &Params,
    train_rows: &[usize],
    test_rows: &[usize],
    seed: u64,
    control: &Control,
) -> Result<Trained, TrainError> {
    let train_features = prepared.features.take(train_rows);
    let train_target = prepared.target.take(train_rows);
    let start = Instant::now();
    let model = shipyard_train::model::train(
        prepared.kind,
        params,
        &train_features,
        &train_target,
        &prepared.target_name,
        seed,
        control,
    )?;
    let training_time_s = start.elapsed().as_secs_f64();
    let test_features = prepared.features.take(test_rows);
    let evaluation = evaluate::evaluate(&model, &test_features, &prepared.target.take(test_rows))?;
    let latency_ms = evaluate::latency_ms(&model, &test_features, LATENCY_ROWS)?;
    Ok(Trained { model, evaluation, training_time_s, latency_ms })
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
    let run = db
        .create_run(NewRun {
            experiment_id,
            user_id: std::env::var("USER").unwrap_or_default(),
            run_name: args.run_name.clone(),
            start_time: None,
            tags: run_tags(&prepared),
        })
        .await?;
    let run_id = run.info.run_uuid.clone();
    let result = train_in_run(&args, &prepared, &db, &artifacts, &run).await;
    let (status, outcome) = match &result {
        Ok(_) => (RunStatus::Finished, Ok(())),
        Err(e) if e.downcast_ref::<TrainError>().is_some_and(|t| matches!(t, TrainError::Interrupted)) => {
            (RunStatus::Killed, Err(anyhow!("training interrupted; run {run_id} ended KILLED")))
        }
        Err(e) => {
            let message: String = format!("{e:#}").chars().take(5000).collect();
            let _ = db.set_tag(&run_id, KeyValue::new("shipyard.error", message)).await;
            (RunStatus::Failed, Err(anyhow!("{e:#}\nrun {run_id} ended FAILED")))
        }
    };
    db.update_run(&run_id, Some(status), Some(now_millis()), None).await?;
    db.close().await;
    outcome?;
    let trained = result?;
    print_summary(&args, &prepared, &run_id, &trained);
    Ok(crate::Outcome::Success)
}

async fn train_in_run(
    args: &TrainArgs,
    prepared: &Arc<Prepared>,
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
    params.extend(prepared.params.to_strings().into_iter().map(|(k, v)| KeyValue::new(k, v)));
    db.log_batch(&run_id, Vec::new(), params, Vec::new()).await?;
    db.log_inputs(&run_id, vec![prepared.input.clone()], Vec::new()).await?;

    let cancel = Arc::new(AtomicBool::new(false));
    let bar = progress_bar();
    let job = {
        let (prepared, cancel, bar, seed) = (prepared.clone(), cancel.clone(), bar.clone(), args.seed);
        tokio::task::spawn_blocking(move || {
            let progress = move |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            };
            let control = Control { progress: &progress, cancel: &cancel };
            fit_and_evaluate(&prepared, &prepared.params, &prepared.split.train, &prepared.split.test, seed, &control)
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

fn print_summary(args: &TrainArgs, prepared: &Prepared, run_id: &str, trained: &Trained) {
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
        outln!("  {k:<width$}  {}", crate::data::short(*v));
    }
    outln!("model: runs:/{run_id}/model");
    outln!("{run_id}");
}
