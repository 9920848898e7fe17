//! `shipyard pipeline run FILE [--force]` and `shipyard pipeline status [RUN]`: the seed's
//! pipeline as a declared, cached, recorded sequence of steps (`docs/pipelines.md`).
//!
//! The runner (`shipyard-pipeline`) orders, hashes and records the steps; this module does each
//! step's work by running this same binary's commands (`data add`, `train`, `models validate`,
//! `deploy`, ...) with `--format json`, so a pipeline step does exactly what the command does,
//! and its output is the step's log. Generated files (a gate policy, a monitor configuration)
//! are written to a scratch folder that lives as long as the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow_array::{Array, RecordBatch};
use clap::{Args, Subcommand};
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use shipyard_pipeline::runner::{PipelineRun, StepStatus, recent_runs, status_of};
use shipyard_pipeline::spec::{StepAction, TrainStep};
use shipyard_pipeline::{
    Executor, Options, Pipeline, PipelineSummary, ResolvedStep, StepFailure, StepResult, Stores, Tracker,
};
use shipyard_store::{ArtifactStore, Database};

use crate::Format;
use crate::datasets::DatasetStoreArgs;
use crate::tracking::print_table;

#[derive(Subcommand)]
pub enum PipelineCommand {
    /// Run a pipeline file: its steps in dependency order, each unchanged step's recorded
    /// outputs reused (exit 1 when a step fails).
    Run(RunArgs),
    /// How a pipeline run went (default: list the newest runs).
    Status {
        /// The pipeline run's id.
        run: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// The pipeline file (YAML).
    file: PathBuf,
    /// Run every step, even those whose inputs did not change.
    #[arg(long)]
    force: bool,
    /// What started the run (e.g. "nightly cron"), recorded on it as `shipyard.pipeline.trigger`.
    #[arg(long)]
    trigger: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

pub fn run(cmd: PipelineCommand) -> Result<crate::Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cmd {
            PipelineCommand::Run(args) => run_file(args).await,
            PipelineCommand::Status { run, format, store } => status(run, format, store).await,
        }
    })
}

/// Where the steps' commands find the store: the pipeline's `mlflow_uri` when it gives one,
/// else the command's own store arguments.
fn step_store(pipeline: &Pipeline, store: &DatasetStoreArgs) -> DatasetStoreArgs {
    let mut store = store.clone();
    if let Some(uri) = &pipeline.config.mlflow_uri {
        store.set_tracking_uri(uri);
    }
    store
}

/// Where a pipeline run is recorded: the stores, or the server the tracking URI names (its
/// steps' commands then go through the same server).
async fn tracker(store: &DatasetStoreArgs) -> Result<(Arc<dyn Tracker>, Option<Database>)> {
    Ok(match store.server()? {
        Some(server) => (Arc::new(crate::tracking::ServerTracker(server)), None),
        None => {
            let db = store.database().await?;
            let artifacts = ArtifactStore::open(&store.destination()).await?;
            (Arc::new(Stores { db: db.clone(), artifacts }), Some(db))
        }
    })
}

async fn run_file(args: RunArgs) -> Result<crate::Outcome> {
    let pipeline = Pipeline::from_file(&args.file)?;
    let store = step_store(&pipeline, &args.store);
    let (tracker, db) = tracker(&store).await?;
    let executor = CommandExecutor::new(&store)?;
    let options = Options { force: args.force, user: crate::promote::actor(None), trigger: args.trigger };
    let started = PipelineRun::begin(tracker.clone(), pipeline, options).await?;
    let run_id = started.run_id().to_owned();
    eprintln!("pipeline run {run_id}");
    // Ctrl-C drops the running step: its command is killed (kill_on_drop) and the runs end KILLED.
    let summary = tokio::select! {
        summary = started.execute(&executor) => summary?,
        _ = tokio::signal::ctrl_c() => {
            shipyard_pipeline::runner::abandon(tracker.as_ref(), &run_id).await?;
            eprintln!("interrupted: pipeline run {run_id} ended KILLED");
            status_of(tracker.as_ref(), &run_id).await?
        }
    };
    if let Some(db) = db {
        db.close().await;
    }
    print_summary(&summary, args.format)?;
    Ok(if summary.success { crate::Outcome::Success } else { crate::Outcome::ChecksFailed })
}

async fn status(run: Option<String>, format: Format, store: DatasetStoreArgs) -> Result<crate::Outcome> {
    let (tracker, db) = tracker(&store).await?;
    let reader: &dyn shipyard_pipeline::RunReader = tracker.as_ref();
    let result = match run {
        Some(id) => status_of(reader, &id).await.map(|s| print_summary(&s, format)),
        None => recent_runs(reader, 20).await.map(|runs| {
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|r| {
                    let tag = |k: &str| r.data.tags.iter().find(|t| t.key == k).map(|t| t.value.clone());
                    vec![
                        r.info.run_uuid.clone(),
                        tag("shipyard.pipeline").unwrap_or_default(),
                        format!("{:?}", r.info.status).to_uppercase(),
                        r.info.start_time.map(shipyard_core::entities::utc_timestamp).unwrap_or_default(),
                        tag("shipyard.pipeline.trigger").unwrap_or_default(),
                    ]
                })
                .collect();
            match format {
                Format::Json => {
                    let list: Vec<Value> = rows
                        .iter()
                        .map(|r| json!({"run_id": r[0], "pipeline": r[1], "status": r[2], "start": r[3], "trigger": r[4]}))
                        .collect();
                    outln!("{}", serde_json::to_string_pretty(&json!({"runs": list})).unwrap_or_default());
                }
                Format::Table => print_table(&["RUN", "PIPELINE", "STATUS", "STARTED", "TRIGGER"], &rows),
            }
            Ok(())
        }),
    };
    if let Some(db) = db {
        db.close().await;
    }
    result??;
    Ok(crate::Outcome::Success)
}

/// The outputs worth a glance in a table.
fn glance(outputs: &std::collections::BTreeMap<String, Value>) -> String {
    outputs
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "candidates" | "digest" | "checks"))
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_summary(summary: &PipelineSummary, format: Format) -> Result<()> {
    if format == Format::Json {
        outln!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = summary
        .steps
        .iter()
        .map(|s| {
            let status = match (s.status, s.cached) {
                (StepStatus::Finished, true) => "CACHED".to_owned(),
                (status, _) => {
                    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
                }
            };
            let detail = s.error.clone().unwrap_or_else(|| glance(&s.outputs));
            vec![s.name.clone(), status, format!("{:.2}s", s.duration_s), s.run_id.clone(), detail]
        })
        .collect();
    outln!("pipeline {} (run {}): {}", summary.pipeline, summary.run_id, summary.status);
    print_table(&["STEP", "STATUS", "TIME", "RUN", "OUTPUTS / ERROR"], &rows);
    if let Some(v) = &summary.model_version {
        outln!("model version: {v}");
    }
    if summary.success {
        outln!("success in {:.1}s", summary.duration_s);
    } else if summary.status != "RUNNING" {
        outln!("failed: {}", summary.errors.first().map(String::as_str).unwrap_or("see the steps"));
    }
    Ok(())
}

/// Runs each step as one of this binary's commands.
pub(crate) struct CommandExecutor {
    exe: PathBuf,
    store: DatasetStoreArgs,
    env: Vec<(&'static str, String)>,
    scratch: tempfile::TempDir,
    http: reqwest::Client,
}

/// One finished command.
pub(crate) struct Ran {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    stderr: String,
}

impl Ran {
    /// The command's `error: ...` lines, or its whole standard error.
    pub(crate) fn error(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().filter_map(|l| l.strip_prefix("error: ")).collect();
        if lines.is_empty() { self.stderr.trim().to_owned() } else { lines.join("; ") }
    }

    fn json(&self) -> std::result::Result<Value, StepFailure> {
        serde_json::from_str(&self.stdout)
            .map_err(|e| StepFailure::new(format!("the command printed no JSON ({e}): {}", self.stdout.trim())))
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `models:/NAME/VERSION` as (name, version).
fn version_of(uri: &str) -> std::result::Result<(String, String), StepFailure> {
    match shipyard_runtime::fetch::ModelUri::parse(uri) {
        Ok(shipyard_runtime::fetch::ModelUri::Version { name, version }) => Ok((name, version)),
        _ => Err(StepFailure::new(format!("'{uri}': expected a registered version, models:/NAME/VERSION"))),
    }
}

impl CommandExecutor {
    pub(crate) fn new(store: &DatasetStoreArgs) -> Result<CommandExecutor> {
        let exe = std::env::current_exe().context("finding the shipyard binary")?;
        let scratch = tempfile::Builder::new().prefix("shipyard-pipeline-").tempdir()?;
        shipyard_store::artifacts::ensure_tls_provider();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(CommandExecutor { exe, store: store.clone(), env: store.child_env(), scratch, http })
    }

    /// Runs `shipyard ARGS...`, logging the command line and what it printed to stderr.
    pub(crate) async fn shipyard(&self, log: &mut String, args: &[String]) -> std::result::Result<Ran, StepFailure> {
        log.push_str(&format!("$ shipyard {}\n", args.join(" ")));
        let mut command = tokio::process::Command::new(&self.exe);
        command.args(args).envs(self.env.iter().map(|(k, v)| (*k, v.as_str()))).env("SHIPYARD_LOG", "warn");
        command.stdin(std::process::Stdio::null()).kill_on_drop(true);
        let out =
            command.output().await.map_err(|e| StepFailure::new(format!("cannot run {}: {e}", self.exe.display())))?;
        let ran = Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        log.push_str(&ran.stderr);
        log.push_str(&format!("(exit {})\n", ran.code));
        Ok(ran)
    }

    /// Runs a command that must succeed and print JSON.
    async fn json(&self, log: &mut String, args: &[String]) -> std::result::Result<Value, StepFailure> {
        let ran = self.shipyard(log, args).await?;
        if ran.code != 0 {
            return Err(StepFailure::new(ran.error()));
        }
        ran.json()
    }

    fn scratch_file(&self, step: &ResolvedStep, name: &str, text: &str) -> std::result::Result<String, StepFailure> {
        let path = self.scratch.path().join(format!("{}-{name}", step.run_id));
        std::fs::write(&path, text).map_err(|e| StepFailure::new(format!("writing {}: {e}", path.display())))?;
        Ok(path.display().to_string())
    }

    async fn step(&self, step: &ResolvedStep, log: &mut String) -> std::result::Result<Value, StepFailure> {
        let s = |v: &str| v.to_owned();
        match &step.action {
            StepAction::Validate(v) => {
                let (data, rows, digest) = match (&v.dataset, v.data.strip_prefix("dataset:")) {
                    (Some(_), Some(_)) => {
                        return Err(StepFailure::new(format!(
                            "`dataset` names the dataset a file is recorded as; '{}' already is one",
                            v.data
                        )));
                    }
                    (Some(name), None) => {
                        let out = self
                            .json(
                                log,
                                &[
                                    s("data"),
                                    s("add"),
                                    v.data.clone(),
                                    s("--name"),
                                    name.clone(),
                                    s("--format"),
                                    s("json"),
                                ],
                            )
                            .await?;
                        (format!("dataset:{name}@{}", out["version"]), out["rows"].clone(), out["digest"].clone())
                    }
                    (None, Some(reference)) => {
                        let out =
                            self.json(log, &[s("data"), s("show"), s(reference), s("--format"), s("json")]).await?;
                        (
                            format!("dataset:{}@{}", text(&out["name"]), out["version"]),
                            out["rows"].clone(),
                            out["digest"].clone(),
                        )
                    }
                    (None, None) => {
                        let out = self
                            .json(log, &[s("data"), s("profile"), v.data.clone(), s("--format"), s("json")])
                            .await?;
                        let path = PathBuf::from(&v.data);
                        let digest = tokio::task::spawn_blocking(move || shipyard_data::digest::sha256_file(&path))
                            .await
                            .map_err(|e| StepFailure::new(e.to_string()))?
                            .map_err(|e| StepFailure::new(e.to_string()))?;
                        (v.data.clone(), out["rows"].clone(), Value::String(digest.0))
                    }
                };
                let mut outputs = json!({"data": data, "rows": rows, "digest": digest});
                if let Some(suite) = &v.suite {
                    let ran = self
                        .shipyard(
                            log,
                            &[
                                s("data"),
                                s("validate"),
                                data.clone(),
                                s("--suite"),
                                suite.clone(),
                                s("--format"),
                                s("json"),
                            ],
                        )
                        .await?;
                    if ran.code == 2 {
                        return Err(StepFailure::new(ran.error()));
                    }
                    let report = ran.json()?;
                    let failed: Vec<String> = report["results"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .filter(|x| x["success"] == false)
                                .map(|x| {
                                    format!(
                                        "{}{}",
                                        text(&x["expectation"]),
                                        x.get("column").map(|c| format!(" ({})", text(c))).unwrap_or_default()
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if ran.code != 0 || report["success"] != true {
                        return Err(StepFailure::new(format!(
                            "{} of {} expectations failed: {}",
                            failed.len(),
                            report["evaluated_expectations"],
                            failed.join(", ")
                        )));
                    }
                    outputs["expectations"] = report["successful_expectations"].clone();
                }
                Ok(outputs)
            }
            StepAction::Train(t) => self.train(step, t, log).await,
            StepAction::Register(r) => {
                let out = self
                    .json(
                        log,
                        &[
                            s("models"),
                            s("register"),
                            r.name.clone(),
                            s("--model-uri"),
                            r.model.clone(),
                            s("--format"),
                            s("json"),
                        ],
                    )
                    .await?;
                Ok(json!({"name": out["name"], "version": out["version"], "model_uri": out["model_uri"]}))
            }
            StepAction::Gate(g) => {
                let (name, _) = version_of(&g.model)?;
                let policy = match (&g.policy, &step.generated) {
                    (Some(p), _) => p.clone(),
                    (None, Some(text)) => self.scratch_file(step, "policy.yaml", text)?,
                    (None, None) => return Err(StepFailure::new("no gate policy")),
                };
                self.shipyard(log, &[s("models"), s("set-policy"), name.clone(), s("--policy"), policy.clone()])
                    .await
                    .and_then(|ran| if ran.code == 0 { Ok(()) } else { Err(StepFailure::new(ran.error())) })?;
                let mut args = vec![s("models"), s("validate"), g.model.clone(), s("--format"), s("json")];
                if let Some(alias) = &g.alias {
                    args.extend([s("--alias"), alias.clone()]);
                }
                if let (Some(data), Some(_)) = (&g.data, &g.policy) {
                    args.extend([s("--data"), data.clone()]);
                }
                let ran = self.shipyard(log, &args).await?;
                if ran.code == 2 {
                    return Err(StepFailure::new(ran.error()));
                }
                let report = ran.json()?;
                let checks = report["checks"].as_array().cloned().unwrap_or_default();
                if ran.code != 0 || report["passed"] != true {
                    let failed: Vec<String> = checks
                        .iter()
                        .filter(|c| c["passed"] == false)
                        .map(|c| {
                            let detail = text(&c["detail"]);
                            format!(
                                "{}:{} observed {} against {}{}",
                                text(&c["gate"]),
                                text(&c["name"]),
                                text(&c["observed"]),
                                text(&c["bound"]),
                                if detail.is_empty() { String::new() } else { format!(" ({detail})") }
                            )
                        })
                        .collect();
                    return Err(StepFailure::new(format!("gates failed: {}", failed.join("; "))));
                }
                Ok(json!({"passed": true, "checks": checks.len(), "report_uri": report["report_uri"]}))
            }
            StepAction::Promote(p) => {
                let (name, version) = version_of(&p.model)?;
                let alias = p.alias.clone().unwrap_or_else(|| s("production"));
                let reason = format!("pipeline step {} (run {}) after its gates passed", step.name, step.run_id);
                let out = self
                    .json(
                        log,
                        &[
                            s("models"),
                            s("promote"),
                            name,
                            s("--version"),
                            version,
                            s("--alias"),
                            alias.clone(),
                            s("--actor"),
                            s("shipyard-pipeline"),
                            s("--reason"),
                            reason,
                            s("--format"),
                            s("json"),
                        ],
                    )
                    .await?;
                Ok(
                    json!({"alias": alias, "version": out["move"]["to_version"], "previous": out["move"]["from_version"]}),
                )
            }
            StepAction::Deploy(d) => {
                let mut args =
                    vec![s("deploy"), d.deployment.clone(), s("--model"), d.model.clone(), s("--format"), s("json")];
                if let Some(canary) = &d.canary {
                    args.extend([s("--canary"), canary.clone()]);
                    if let Some(w) = d.weight {
                        args.extend([s("--weight"), w.to_string()]);
                    }
                }
                self.json(log, &args).await?;
                Ok(json!({"deployment": d.deployment, "path": format!("/predict/{}", d.deployment)}))
            }
            StepAction::SmokeTest(t) => self.smoke_test(step, t, log).await,
            StepAction::Monitor(m) => {
                let config = match (&m.config, &step.generated) {
                    (Some(p), _) => p.clone(),
                    (None, Some(text)) => self.scratch_file(step, "monitors.yaml", text)?,
                    (None, None) => return Err(StepFailure::new("no monitor configuration")),
                };
                let ran = self
                    .shipyard(
                        log,
                        &[
                            s("monitor"),
                            s("configure"),
                            s("--deployment"),
                            m.deployment.clone(),
                            s("--config"),
                            config.clone(),
                        ],
                    )
                    .await?;
                if ran.code != 0 {
                    return Err(StepFailure::new(ran.error()));
                }
                let text = std::fs::read_to_string(&config).map_err(|e| StepFailure::new(format!("{config}: {e}")))?;
                let parsed = shipyard_monitor::MonitorConfig::from_yaml(&text, &config)
                    .map_err(|e| StepFailure::new(e.to_string()))?;
                Ok(json!({"deployment": m.deployment, "rules": parsed.rules.len()}))
            }
        }
    }

    /// Trains each candidate as a child run of the step's run and keeps the best.
    async fn train(
        &self,
        step: &ResolvedStep,
        t: &TrainStep,
        log: &mut String,
    ) -> std::result::Result<Value, StepFailure> {
        let mut candidates = Vec::new();
        let mut best: Option<(f64, String, String)> = None;
        let mut errors = Vec::new();
        let mut metric = t.metric.clone();
        for (i, c) in t.candidates.iter().enumerate() {
            let mut args = vec![
                "train".to_owned(),
                "--data".into(),
                t.data.clone(),
                "--target".into(),
                t.target.clone(),
                "--model".into(),
                c.model.clone(),
                "--experiment".into(),
                step.experiment.clone(),
                "--run-name".into(),
                format!("{}-{}-{}", step.name, i + 1, c.model),
                "--parent-run".into(),
                step.run_id.clone(),
                "--format".into(),
                "json".into(),
            ];
            for (k, v) in &c.params {
                args.extend(["--param".to_owned(), format!("{k}={v}")]);
            }
            if let Some(x) = t.test_size {
                args.extend(["--test-size".to_owned(), x.to_string()]);
            }
            if let Some(x) = t.seed {
                args.extend(["--seed".to_owned(), x.to_string()]);
            }
            if !t.exclude.is_empty() {
                args.extend(["--exclude".to_owned(), t.exclude.join(",")]);
            }
            let out = match self.json(log, &args).await {
                Ok(out) => out,
                Err(e) => {
                    errors.push(format!("{} (candidate {}): {}", c.model, i + 1, e.message));
                    candidates.push(json!({"model": c.model, "error": e.message}));
                    continue;
                }
            };
            let task = text(&out["task"]);
            let m = metric
                .get_or_insert_with(|| if task == "regression" { "r2".into() } else { "accuracy".into() })
                .clone();
            let score = out["metrics"][&m].as_f64().unwrap_or(f64::NAN);
            let run_id = text(&out["run_id"]);
            candidates.push(json!({"model": c.model, "run_id": run_id, "score": score}));
            let higher = shipyard_train::evaluate::higher_is_better(&m);
            let better = match &best {
                None => !score.is_nan(),
                Some((b, ..)) => !score.is_nan() && if higher { score > *b } else { score < *b },
            };
            if better {
                best = Some((score, run_id, c.model.clone()));
            }
        }
        let Some((score, run_id, model)) = best else {
            return Err(StepFailure::new(format!("no candidate trained: {}", errors.join("; "))));
        };
        Ok(json!({
            "run_id": run_id, "model_uri": format!("runs:/{run_id}/model"), "model": model,
            "metric": metric, "score": score, "candidates": candidates,
        }))
    }

    /// The deployment's current revision and the versions its arms resolve to now, from the
    /// store (`None` when the store does not hold it: the endpoint serves another store).
    async fn deployed_versions(&self, name: &str) -> Option<(i64, Vec<String>)> {
        if let Some(server) = self.store.server().ok()? {
            let answer = server.get("api/shipyard/deployments/get", &[("name", name)]).await.ok()?;
            let arms = answer["deployment"]["spec"]["arms"].as_array()?.len();
            let versions: Vec<String> = serde_json::from_value(answer["resolved_versions"].clone()).ok()?;
            // An arm whose alias names no version yet: nothing to compare with.
            if versions.iter().take(arms).any(|v| v.starts_with("unresolved")) {
                return None;
            }
            return Some((answer["deployment"]["revision"].as_i64()?, versions.into_iter().take(arms).collect()));
        }
        let db = self.store.database().await.ok()?;
        let found = async {
            let d = db.get_deployment(name).await.ok()?;
            let mut versions = Vec::new();
            for arm in &d.spec.arms {
                versions.push(db.resolve_model_ref(&arm.target).await.ok()??);
            }
            Some((d.revision, versions))
        }
        .await;
        db.close().await;
        found
    }

    /// POSTs the table's first rows to the deployment until a version of its current revision
    /// answers (the deploy step waits for the rollout, but `--no-wait` or another writer may
    /// leave a server behind) or the timeout passes.
    async fn smoke_test(
        &self,
        step: &ResolvedStep,
        t: &shipyard_pipeline::spec::SmokeTestStep,
        log: &mut String,
    ) -> std::result::Result<Value, StepFailure> {
        let endpoint = t.endpoint.clone().or_else(|| step.config.deployment_endpoint.clone()).ok_or_else(|| {
            StepFailure::new("no endpoint: set the seed's `config.deployment_endpoint` or the step's `endpoint`")
        })?;
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let rows = t.rows.unwrap_or(5).max(1);
        let (data, drop, store) = (PathBuf::from(&t.data), t.drop.clone(), self.store.clone());
        let records = tokio::task::spawn_blocking(move || first_records(&data, &drop, rows, &store))
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?
            .map_err(|e| StepFailure::new(format!("{e:#}")))?;
        let url = format!("{endpoint}/predict/{}", t.deployment);
        // The tracking server's own endpoint gets the caller's credentials and CA; no other does.
        let server = match self.store.server_url() {
            Some(tracking) if same_origin(tracking, &endpoint) => {
                Some(crate::client::Server::connect(&endpoint).map_err(|e| StepFailure::new(format!("{e:#}")))?)
            }
            _ => None,
        };
        let expected = self.deployed_versions(&t.deployment).await;
        let body = json!({"records": records});
        let deadline = Instant::now() + Duration::from_secs(t.timeout_seconds.unwrap_or(30));
        let mut last;
        loop {
            let began = Instant::now();
            let request = match &server {
                Some(server) => server.request(reqwest::Method::POST, &format!("predict/{}", t.deployment)),
                None => self.http.post(&url),
            };
            match request.json(&body).send().await {
                Ok(response) => {
                    let status = response.status();
                    let version = response
                        .headers()
                        .get(shipyard_serving::MODEL_VERSION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let answer = response.text().await.unwrap_or_default();
                    let latency_ms = began.elapsed().as_secs_f64() * 1000.0;
                    log.push_str(&format!("POST {url} ({} rows): {status} in {latency_ms:.1} ms\n", records.len()));
                    if status.is_success() {
                        let parsed: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
                        let answered = parsed["predictions"].as_array().map_or(0, Vec::len);
                        if answered != records.len() {
                            return Err(StepFailure::new(format!(
                                "{url} answered {answered} predictions for {} rows: {answer}",
                                records.len()
                            )));
                        }
                        match &expected {
                            Some((revision, versions)) if !versions.contains(&version) => {
                                last = format!(
                                    "answered by version '{version}', but revision {revision} of deployment '{}' \
                                     serves version(s) {}",
                                    t.deployment,
                                    versions.join(", ")
                                );
                            }
                            _ => {
                                return Ok(json!({
                                    "endpoint": url, "rows": answered, "latency_ms": latency_ms, "version": version,
                                    "revision": expected.as_ref().map(|(r, _)| *r),
                                }));
                            }
                        }
                    } else {
                        last = format!("{status}: {}", answer.chars().take(500).collect::<String>());
                    }
                    // A 4xx other than "not served yet" is the request's fault: waiting will not help.
                    if status.is_client_error() && status != reqwest::StatusCode::NOT_FOUND {
                        return Err(StepFailure::new(format!("{url} refused the rows: {last}")));
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(StepFailure::new(format!("{url} did not answer within the timeout; last: {last}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether two URLs share scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

impl Executor for CommandExecutor {
    fn execute<'a>(&'a self, step: &'a ResolvedStep) -> BoxFuture<'a, std::result::Result<StepResult, StepFailure>> {
        Box::pin(async move {
            let mut log = String::new();
            match self.step(step, &mut log).await {
                Ok(Value::Object(map)) => Ok(StepResult { outputs: map.into_iter().collect(), log }),
                Ok(other) => Ok(StepResult { outputs: [("value".to_owned(), other)].into_iter().collect(), log }),
                Err(mut failure) => {
                    failure.log = log;
                    Err(failure)
                }
            }
        })
    }
}

/// The first `n` rows of a table as JSON records, without the `drop` columns; missing values
/// are left out of their record.
pub(crate) fn first_records(data: &Path, drop: &[String], n: usize, store: &DatasetStoreArgs) -> Result<Vec<Value>> {
    let path = crate::datasets::resolve_input(data, store)?;
    let mut table = shipyard_data::table::Table::open(&path, &shipyard_data::table::CsvOptions::default())?;
    let mut first: Vec<RecordBatch> = Vec::new();
    // The scan reads on after `n` rows (it cannot stop early) but keeps nothing more.
    table.scan(
        |_| (),
        |(), (_, batch)| {
            if first.iter().map(RecordBatch::num_rows).sum::<usize>() < n {
                first.push(batch.clone());
            }
            Ok(())
        },
    )?;
    let mut records = Vec::with_capacity(n);
    for batch in &first {
        records.extend(batch_records(batch, drop, n - records.len())?);
    }
    if records.is_empty() {
        bail!("{}: no rows", data.display());
    }
    Ok(records)
}

/// Up to `n` rows of a batch as JSON records (numbers as numbers, the rest as text).
pub(crate) fn batch_records(batch: &RecordBatch, drop: &[String], n: usize) -> Result<Vec<Value>> {
    let schema = batch.schema();
    let mut columns = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if drop.iter().any(|d| d == field.name()) {
            continue;
        }
        let numeric = field.data_type().is_numeric();
        let cast = if numeric {
            arrow_cast::cast(column, &arrow_schema::DataType::Float64)?
        } else {
            arrow_cast::cast(column, &arrow_schema::DataType::Utf8)?
        };
        columns.push((field.name().clone(), numeric, cast));
    }
    let rows = batch.num_rows().min(n);
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut record = Map::new();
        for (name, numeric, array) in &columns {
            // A missing value is an explicit null: a request of one row whose value is missing
            // still names the column (a record without the key is a missing column).
            let value = if array.is_null(row) {
                Value::Null
            } else if *numeric {
                let v = array.as_any().downcast_ref::<arrow_array::Float64Array>().map(|a| a.value(row));
                v.and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
            } else {
                let v = array.as_any().downcast_ref::<arrow_array::StringArray>().map(|a| a.value(row).to_owned());
                v.map_or(Value::Null, Value::String)
            };
            record.insert(name.clone(), value);
        }
        out.push(Value::Object(record));
    }
    Ok(out)
}

/// Starts pipeline runs for monitors' `retrain` actions in this process: the parent run is
/// created at once (its id goes into the alert's action detail) and the steps run in the
/// background.
pub(crate) struct InProcessRetrainer {
    stores: Stores,
    store: DatasetStoreArgs,
    /// The runs started, by parent run id.
    runs: std::sync::Mutex<Vec<(String, tokio::task::JoinHandle<()>)>>,
}

impl InProcessRetrainer {
    pub(crate) fn new(db: Database, artifacts: ArtifactStore, store: DatasetStoreArgs) -> Arc<InProcessRetrainer> {
        Arc::new(InProcessRetrainer {
            stores: Stores { db, artifacts },
            store,
            runs: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Waits for the runs started so far.
    pub(crate) async fn finished(&self) {
        let pending: Vec<_> = std::mem::take(&mut *self.runs.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, run) in pending {
            let _ = run.await;
        }
    }

    /// Stops the runs still going (the server is stopping): each one's running command is
    /// killed and its runs end KILLED, so none is left RUNNING.
    pub(crate) async fn stop(&self) {
        let pending: Vec<_> = std::mem::take(&mut *self.runs.lock().unwrap_or_else(|e| e.into_inner()));
        for (run_id, run) in pending.into_iter().filter(|(_, r)| !r.is_finished()) {
            run.abort();
            let _ = run.await;
            match shipyard_pipeline::runner::abandon(&self.stores, &run_id).await {
                Ok(()) => tracing::info!("retraining pipeline run {run_id} stopped with the server (KILLED)"),
                Err(e) => tracing::warn!("retraining pipeline run {run_id}: could not record its stop: {e}"),
            }
        }
    }
}

impl shipyard_monitor::Retrainer for InProcessRetrainer {
    fn retrain<'a>(
        &'a self,
        pipeline: &'a str,
        reason: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let spec = Pipeline::from_file(Path::new(pipeline)).map_err(|e| e.to_string())?;
            if spec.config.mlflow_uri.is_some() {
                tracing::info!(
                    "retrain: {pipeline} names its own store (config.mlflow_uri); using this server's store"
                );
            }
            let executor = CommandExecutor::new(&self.store).map_err(|e| format!("{e:#}"))?;
            let options = Options { force: false, user: "shipyard-monitor".into(), trigger: Some(reason.to_owned()) };
            let started =
                PipelineRun::begin(Arc::new(self.stores.clone()), spec, options).await.map_err(|e| e.to_string())?;
            let run_id = started.run_id().to_owned();
            let handle = tokio::spawn(async move {
                match started.execute(&executor).await {
                    Ok(summary) if summary.success => {
                        tracing::info!("retraining pipeline run {} finished", summary.run_id);
                    }
                    Ok(summary) => {
                        tracing::warn!(
                            "retraining pipeline run {} failed: {}",
                            summary.run_id,
                            summary.errors.join("; ")
                        );
                    }
                    Err(e) => tracing::warn!("retraining pipeline run: {e}"),
                }
            });
            let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            runs.retain(|(_, r)| !r.is_finished());
            runs.push((run_id.clone(), handle));
            Ok(format!("started pipeline run {run_id} ({pipeline})"))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn rows_become_records_with_numbers_text_and_missing_values_as_nulls() {
        let batch = RecordBatch::try_from_iter([
            ("age", Arc::new(Float64Array::from(vec![Some(29.5), None])) as ArrayRef),
            ("pclass", Arc::new(Int64Array::from(vec![1, 3])) as ArrayRef),
            ("sex", Arc::new(StringArray::from(vec![Some("female"), None])) as ArrayRef),
            ("survived", Arc::new(Int64Array::from(vec![1, 0])) as ArrayRef),
        ])
        .unwrap();
        let records = batch_records(&batch, &["survived".to_owned()], 5).unwrap();
        assert_eq!(
            records,
            vec![
                json!({"age": 29.5, "pclass": 1.0, "sex": "female"}),
                json!({"age": null, "pclass": 3.0, "sex": null})
            ]
        );
        assert_eq!(
            batch_records(&batch, &[], 1).unwrap(),
            vec![json!({"age": 29.5, "pclass": 1.0, "sex": "female", "survived": 1.0})]
        );
    }

    #[test]
    fn a_command_error_is_its_error_lines() {
        let ran =
            Ran { code: 2, stdout: String::new(), stderr: "warning: x\nerror: no such file\nerror: second\n".into() };
        assert_eq!(ran.error(), "no such file; second");
        let bare = Ran { code: 2, stdout: "not json".into(), stderr: "  plain failure \n".into() };
        assert_eq!(bare.error(), "plain failure");
        assert!(bare.json().unwrap_err().message.contains("printed no JSON"));
        assert!(version_of("runs:/abc/model").unwrap_err().message.contains("models:/NAME/VERSION"));
        assert_eq!(version_of("models:/titanic/2").unwrap(), ("titanic".to_owned(), "2".to_owned()));
    }
}
