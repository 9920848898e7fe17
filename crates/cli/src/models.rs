//! `shipyard models ...`: commands about one model. Promotion (`validate`, `promote`,
//! `rollback`, `history`, `set-policy`) lives in [`crate::promote`]. `models bench` times a model for real
//! (the seed's `inference_time`): latency per row at batch 1 (p50, p99) and throughput at
//! batches of 1,000 and 10,000 rows, in process, on sample rows from a table.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use shipyard_data::table::Table;

use crate::data::ReadArgs;
use crate::datasets::{self, DatasetStoreArgs};
use crate::predict::{EngineArg, ModelArgs, open_model, with_threads};
use crate::promote;

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Time a model: batch-1 latency (p50, p99) and throughput at 1,000 and 10,000 rows.
    Bench(Box<BenchArgs>),
    /// Run a gate policy on a version; store the report on it (exit 1 when a check fails).
    Validate(Box<promote::ValidateArgs>),
    /// Move an alias (production) to a version if it passes its gates.
    Promote(Box<promote::PromoteArgs>),
    /// Move an alias back to the version it held before.
    Rollback(Box<promote::RollbackArgs>),
    /// Every move of a model's aliases: when, who, from, to, gates.
    History(Box<promote::HistoryArgs>),
    /// Store the gate policy promotions of a model run by default.
    SetPolicy(Box<promote::SetPolicyArgs>),
    /// Register a run's model as a new version of a registered model (created when missing), as
    /// `mlflow.register_model` does.
    Register(Box<RegisterArgs>),
}

#[derive(Args)]
pub struct RegisterArgs {
    /// Registered model name.
    name: String,
    /// The run whose model is registered: runs:/RUN_ID/model.
    #[arg(long)]
    model_uri: String,
    #[arg(long, value_enum, default_value_t = crate::Format::Table)]
    format: crate::Format,
    #[command(flatten)]
    store: DatasetStoreArgs,
    /// With --python, a scikit-learn model is converted to ONNX and verified now (the
    /// conversion kept with the version, the engine tagged), so its first load is quick.
    #[command(flatten)]
    python: crate::serve::PythonArgs,
}

/// A registered model version: name and number.
pub(crate) type Registered = (String, String);

/// Registers `runs:/RUN_ID/model` as a new version of `name`, creating the registered model the
/// first time.
pub(crate) async fn register(db: &shipyard_store::Database, name: &str, run_id: &str) -> Result<Registered> {
    let user = std::env::var("USER").ok();
    let version = db
        .register_run_model(name, run_id, user.as_deref())
        .await
        .with_context(|| format!("registering the model as '{name}'"))?;
    Ok((name.to_owned(), version.version))
}

fn register_command(args: RegisterArgs) -> Result<crate::Outcome> {
    let run_id = match shipyard_runtime::fetch::ModelUri::parse(&args.model_uri)? {
        shipyard_runtime::fetch::ModelUri::Run { run_id, path } if path.trim_matches('/') == "model" => run_id,
        _ => bail!("--model-uri {}: give a run's model, runs:/RUN_ID/model", args.model_uri),
    };
    let remote = args.store.server()?;
    let (name, version) = match &remote {
        Some(server) => {
            let body = json!({"name": args.name, "run_id": run_id});
            let answer = datasets::block_on(server.post("api/shipyard/models/register", &body))?;
            let version = answer["model_version"]["version"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("the server answered without a version"))?;
            (args.name.clone(), version.to_owned())
        }
        None => datasets::with_database(&args.store, async |db| {
            db.get_run(&run_id).await?;
            register(db, &args.name, &run_id).await
        })?,
    };
    // A server serving Python models prepares each version as it is registered.
    let engine = if args.python.given() && remote.is_none() { prepare(&args, &name, &version)? } else { None };
    if args.format == crate::Format::Json {
        outln!(
            "{}",
            json!({"name": name, "version": version, "model_uri": format!("models:/{name}/{version}"), "run_id": run_id,
                   "engine": engine.as_ref().map(|c| json!({"engine": c.engine, "reason": c.reason}))})
        );
    } else {
        outln!("registered: models:/{name}/{version}");
        if let Some(choice) = &engine {
            outln!("engine: {} ({})", choice.engine, choice.reason);
        }
    }
    Ok(crate::Outcome::Success)
}

/// Prepares a registered version for serving as `shipyard server` does on registration.
fn prepare(args: &RegisterArgs, name: &str, version: &str) -> Result<Option<shipyard_serving::loader::Choice>> {
    let loader = args.python.loader(shipyard_runtime::EngineChoice::Auto, std::time::Duration::from_secs(600));
    datasets::block_on(async {
        let db = args.store.database().await?;
        let artifacts = shipyard_store::ArtifactStore::open(&args.store.destination()).await?;
        let source = shipyard_serving::catalog::StoreSource { db, artifacts };
        let defaults = shipyard_serving::ModelSettings::default();
        let prepared = shipyard_serving::catalog::prepare_version(&source, &loader, &defaults, name, version).await;
        source.db.close().await;
        prepared.map_err(|e| anyhow::anyhow!("preparing models:/{name}/{version} for serving: {e}"))
    })
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchFormat {
    Table,
    Json,
}

#[derive(Args)]
pub struct BenchArgs {
    /// The model: a model directory, an .onnx file, runs:/RUN_ID/PATH, models:/NAME/VERSION or
    /// models:/NAME@ALIAS.
    model: String,
    /// Which engine runs ONNX models.
    #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
    engine: EngineArg,
    /// Threads for inference (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Sample rows (CSV, Parquet or dataset:NAME[@VERSION]); batches cycle through them.
    #[arg(long)]
    data: PathBuf,
    /// Use at most this many sample rows.
    #[arg(long)]
    rows: Option<usize>,
    /// Single-row predictions timed for the latency percentiles.
    #[arg(long, default_value_t = 2000)]
    repeat: usize,
    #[arg(long, value_enum, default_value_t = BenchFormat::Table)]
    format: BenchFormat,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

pub fn run(cmd: ModelsCommand) -> Result<crate::Outcome> {
    match cmd {
        ModelsCommand::Bench(args) => bench(*args),
        ModelsCommand::Validate(args) => promote::validate(*args),
        ModelsCommand::Promote(args) => promote::promote(*args),
        ModelsCommand::Rollback(args) => promote::rollback(*args),
        ModelsCommand::History(args) => promote::history(*args),
        ModelsCommand::SetPolicy(args) => promote::set_policy(*args),
        ModelsCommand::Register(args) => register_command(*args),
    }
}

fn bench(args: BenchArgs) -> Result<crate::Outcome> {
    let started = Instant::now();
    let model_args = ModelArgs { model: args.model.clone(), engine: args.engine, threads: args.threads };
    let opened = open_model(&model_args, &args.store)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let model = &opened.model;
    let path = datasets::resolve_input(&args.data, &args.store)?;
    let batches = Table::open(&path, &args.read.options()?)?.read_all()?;
    let mut sample = model.features(&batches)?;
    if let Some(n) = args.rows {
        sample = sample.take(&(0..n.min(sample.rows)).collect::<Vec<_>>());
    }
    if sample.rows == 0 {
        bail!("{}: no rows to time the model on", path.display());
    }
    let report = with_threads(args.threads, || {
        shipyard_runtime::bench::measure(model, &sample, args.repeat, &[1_000, 10_000])
    })??;
    match args.format {
        BenchFormat::Json => {
            let mut out = serde_json::to_value(&report)?;
            if let Some(o) = out.as_object_mut() {
                o.insert("model".into(), json!(args.model));
                o.insert("engine".into(), json!(model.engine_name));
                o.insert("load_ms".into(), json!(load_ms));
                if let Some((name, version)) = &opened.version {
                    o.insert("registered".into(), json!({"name": name, "version": version}));
                }
                o.insert("threads".into(), json!(args.threads.unwrap_or_else(rayon::current_num_threads)));
            }
            println!("{out}");
        }
        BenchFormat::Table => {
            println!("model      {} ({} engine, loaded in {load_ms:.1} ms)", args.model, model.engine_name);
            println!(
                "batch 1    p50 {:.1} us   p99 {:.1} us   ({} runs)",
                report.batch1.p50_us, report.batch1.p99_us, report.batch1.runs
            );
            for b in &report.batches {
                println!(
                    "batch {:<5}{:>9.3} ms   {:>12.0} rows/s   ({} runs)",
                    b.rows, b.median_ms, b.rows_per_s, b.runs
                );
            }
        }
    }
    Ok(crate::Outcome::Success)
}
