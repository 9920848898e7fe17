//! `shipyard train`: the flags become a [`TrainRequest`]; the training and its recording as a
//! tracked run are [`shipyard_training::Trainer`]'s, in this process or, with `--tracking-uri
//! http(s)://...`, on the server (its `/api/shipyard/train` runs the same code; a local table
//! is added to the server as a dataset version first). This file adds what only a terminal has: the user, the host and the git
//! commit of the working folder as the run's source, a progress bar, Ctrl-C (the run ends
//! KILLED), and the summary printed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use shipyard_core::entities::KeyValue;
use shipyard_store::ArtifactStore;
use shipyard_train::frame::Task;
use shipyard_training::{SearchKind as Search, TrainRequest, Trained, Trainer, Watch};

use crate::Format;
use crate::data::ReadArgs;
use crate::datasets::DatasetStoreArgs;

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

impl TrainArgs {
    fn request(&self) -> Result<TrainRequest> {
        let user = std::env::var("USER").unwrap_or_default();
        let mut source_tags =
            vec![KeyValue::new("mlflow.source.name", "shipyard train"), KeyValue::new("mlflow.source.type", "LOCAL")];
        if let Some(host) = hostname() {
            source_tags.push(KeyValue::new("shipyard.host", host));
        }
        if let Some(commit) = git_commit() {
            source_tags.push(KeyValue::new("mlflow.source.git.commit", commit));
        }
        Ok(TrainRequest {
            data: self.data.display().to_string(),
            csv: self.read.options()?,
            target: self.target.clone(),
            model: self.model.clone(),
            params: self.params.clone(),
            test_size: self.test_size,
            seed: self.seed,
            task: match self.task {
                TaskArg::Auto => None,
                TaskArg::Classification => Some(Task::Classification),
                TaskArg::Regression => Some(Task::Regression),
            },
            exclude: self.exclude.clone(),
            experiment: self.experiment.clone(),
            run_name: self.run_name.clone(),
            search: self.search.map(|s| match s {
                SearchKind::Grid => Search::Grid,
                SearchKind::Random => Search::Random,
            }),
            trials: self.trials,
            cv: self.cv,
            metric: self.metric.clone(),
            register: self.register.clone(),
            parent_run: self.parent_run.clone(),
            user,
            source_tags,
        })
    }
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

pub fn run(args: TrainArgs) -> Result<crate::Outcome> {
    let mut request = args.request()?;
    let trained = match args.store.server()? {
        Some(server) => {
            request.data = crate::datasets::remote_table(&server, &args.data, &args.read)?;
            train_remotely(&server, &request)?
        }
        None => train_locally(&args, request)?,
    };
    match &trained.search {
        None => print_summary(&args, &trained),
        Some(_) => print_search(&args, &trained),
    }
    Ok(crate::Outcome::Success)
}

fn train_locally(args: &TrainArgs, request: TrainRequest) -> Result<Trained> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let trainer = Trainer {
            db: args.store.database().await?,
            artifacts: ArtifactStore::open(&args.store.destination()).await?,
            cache: args.store.cache_dir(),
            local_paths: true,
        };
        let bar = progress_bar();
        let cancel = Arc::new(AtomicBool::new(false));
        let watch = Watch {
            progress: Arc::new({
                let bar = bar.clone();
                move |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                }
            }),
            cancel: cancel.clone(),
        };
        // Ctrl-C stops the training at its next check; the run ends KILLED.
        let interrupt = tokio::spawn({
            let bar = bar.clone();
            async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    cancel.store(true, Ordering::Relaxed);
                    bar.abandon_with_message("interrupted");
                }
            }
        });
        let trained = trainer.train(request, watch).await;
        interrupt.abort();
        bar.finish_and_clear();
        trainer.db.close().await;
        Ok::<_, anyhow::Error>(trained?)
    })
}

/// Trains on the server (its `/api/shipyard/train`), showing its progress; Ctrl-C closes the
/// connection, which stops the training there (the run ends KILLED).
fn train_remotely(server: &crate::client::Server, request: &TrainRequest) -> Result<Trained> {
    let body = serde_json::to_value(request)?;
    crate::datasets::block_on(async {
        let bar = progress_bar();
        let call = server.long_call("api/shipyard/train", &body, |p| {
            if let (Some(done), Some(total)) = (p["done"].as_u64(), p["total"].as_u64()) {
                bar.set_length(total);
                bar.set_position(done);
            }
        });
        let answer = tokio::select! {
            answer = call => answer,
            _ = tokio::signal::ctrl_c() => {
                bar.abandon_with_message("interrupted");
                anyhow::bail!("interrupted: the server stops the training (its run ends KILLED)");
            }
        };
        bar.finish_and_clear();
        serde_json::from_value(answer?).context("reading the server's training result")
    })
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("training {bar:40} {pos}/{len} [{elapsed_precise}]") {
        bar.set_style(style);
    }
    bar
}

fn registered_json(trained: &Trained) -> serde_json::Value {
    trained
        .registered
        .as_ref()
        .map_or(serde_json::Value::Null, |(name, version)| json!({"name": name, "version": version}))
}

fn print_summary(args: &TrainArgs, trained: &Trained) {
    let run_id = &trained.run_id;
    if args.format == Format::Json {
        let out = json!({
            "run_id": run_id,
            "model_uri": format!("runs:/{run_id}/model"),
            "model": trained.model.as_str(),
            "task": trained.task.as_str(),
            "train_rows": trained.train_rows,
            "test_rows": trained.test_rows,
            "metrics": trained.metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "fit": trained.fit,
            "registered_model": registered_json(trained),
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    outln!(
        "{} ({}) on {}: {} rows to train, {} held out",
        trained.model,
        trained.task.as_str(),
        trained.data,
        trained.train_rows,
        trained.test_rows
    );
    let width = trained.metrics.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &trained.metrics {
        outln!("  {k:<width$}  {}", shipyard_core::display::number(*v));
    }
    outln!("model: runs:/{run_id}/model");
    if let Some((name, version)) = &trained.registered {
        outln!("registered: models:/{name}/{version}");
    }
    outln!("{run_id}");
}

fn print_search(args: &TrainArgs, trained: &Trained) {
    let Some(search) = &trained.search else { return };
    let (parent_id, trials, best) = (&trained.run_id, &search.trials, search.best);
    let metric = &search.metric;
    let scored = if search.cross_validated { format!("cv_{metric}_mean") } else { metric.clone() };
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
                "metrics": t.metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "registered_model": registered_json(trained),
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    outln!(
        "{} search over {} trial(s) of {} on {}, by {scored}:",
        search.kind.as_str(),
        trials.len(),
        trained.model,
        trained.data
    );
    for (i, t) in trials.iter().enumerate() {
        let params: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mark = if i == best { "*" } else { " " };
        outln!("{mark} {}  {}  {}", t.run_id, shipyard_core::display::number(t.score), params.join(" "));
    }
    outln!("best: runs:/{}/model (copied to runs:/{parent_id}/model)", trials[best].run_id);
    if let Some((name, version)) = &trained.registered {
        outln!("registered: models:/{name}/{version}");
    }
    outln!("{parent_id}");
}
