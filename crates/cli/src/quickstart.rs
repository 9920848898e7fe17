//! `shipyard quickstart`: the whole seed pipeline from one command, with real components on a
//! real dataset (`docs/quickstart.md`).
//!
//! In an empty folder (`./shipyard-quickstart`): start an embedded server on a SQLite store, write
//! the bundled Titanic table and two pipeline files, run the pipeline (validate, train three
//! candidates, register, gate, promote, deploy, smoke-test, monitor), send live traffic with its
//! ground truth, run a challenger pipeline that deploys a canary, promote the challenger, send
//! drifted traffic until the drift alert fires, send ground truth that disagrees until the
//! accuracy alert's automated rollback happens, write the reports and `summary.json`. Each phase
//! of the story is a tracked run too (experiment `titanic`, run `quickstart`).
//!
//! The traffic is drawn with a fixed seed, so two quickstarts send the same requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser};
use serde_json::{Value, json};
use shipyard_core::entities::{KeyValue, Metric, Run, RunStatus, now_millis};
use shipyard_pipeline::runner::{PipelineRun, StepStatus};
use shipyard_pipeline::{Options, Pipeline, PipelineSummary};
use shipyard_store::tracking::NewRun;
use shipyard_store::{Database, DatabaseUri};

use crate::datasets::DatasetStoreArgs;
use crate::pipeline::CommandExecutor;

/// The table the quickstart ships: 1,308 Titanic passengers (`scripts/make_quickstart_data.py`
/// says where it comes from and what was changed).
const TITANIC: &[u8] = include_bytes!("../data/titanic.csv");
const DEPLOYMENT: &str = "titanic";
const MODEL: &str = "titanic";
/// Rows per request of the story's traffic.
const BATCH: usize = 10;
/// Predictions each phase sends: live, canary, drifted, degraded (5,000 in all).
const LIVE_ROWS: usize = 1500;
const CANARY_ROWS: usize = 1000;
const DRIFT_ROWS: usize = 1000;
/// The challenger's canary weight, in percent (as the challenger pipeline's deploy step sets it).
const CANARY_WEIGHT: u32 = 20;
/// The canary's share of [`CANARY_ROWS`] single-row requests that counts as "took its weight":
/// 20% +- 5 points, about four binomial standard deviations.
const CANARY_SHARE_TOLERANCE: std::ops::RangeInclusive<f64> = 0.15..=0.25;
const DEGRADED_ROWS: usize = 1500;
/// How long the story waits for the monitors to raise an alert.
const ALERT_WAIT: Duration = Duration::from_secs(45);

#[derive(Args)]
pub struct QuickstartArgs {
    /// The folder for everything: store, artifacts, data, pipeline files, reports, summary.json.
    /// It must be missing or empty.
    #[arg(long, default_value = "shipyard-quickstart")]
    dir: PathBuf,
    /// Port of the embedded server (0 picks a free one; when the default is taken, a free one
    /// is used).
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// End when the story is told instead of serving until Ctrl-C.
    #[arg(long)]
    no_wait: bool,
}

pub fn run(args: QuickstartArgs) -> Result<crate::Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(story(args))
}

/// The folder, made absolute, checked empty and created.
fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    if dir.exists() {
        let mut entries = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: the quickstart starts from nothing. Remove it (rm -rf {}) or pass --dir OTHER",
                dir.display(),
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::create_dir_all(dir.join("reports"))?;
    Ok(dir)
}

/// The embedded server: `shipyard server` on the folder's store, with short monitor and sync
/// intervals so the story moves at a demo's pace.
async fn start(
    dir: &Path,
    port: u16,
) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<()>>)> {
    let home = dir.display().to_string();
    let attempt = async |port: u16| {
        let argv = [
            "shipyard",
            "server",
            "--home",
            &home,
            "--port",
            &port.to_string(),
            "--monitor-tick-ms",
            "200",
            "--sync-interval-ms",
            "100",
        ];
        let crate::Command::Server(args) = crate::Cli::try_parse_from(argv)?.command else {
            unreachable!("parsed a server command")
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, task) = crate::start_server(*args, async move {
            let _ = stopped.await;
        })
        .await?;
        Ok::<_, anyhow::Error>((addr, stop, task))
    };
    match attempt(port).await {
        Err(e) if port == 5000 && format!("{e:#}").contains("in use") => {
            let started = attempt(0).await?;
            outln!("  (port 5000 is taken: serving on {} instead)", started.0);
            Ok(started)
        }
        other => other,
    }
}

fn pipeline_text(name: &str, endpoint: &str, steps: &str) -> String {
    format!(
        "# Written by `shipyard quickstart` (reference: docs/pipelines.md). Run it again with\n\
         #   shipyard pipeline run {name}.yaml --home .   (from this folder, with the server up)\n\
         pipeline: 1\n\
         name: {name}\n\
         experiment: titanic\n\
         config:                        # the seed's configuration\n\
         \x20 deployment_endpoint: {endpoint}\n\
         \x20 min_accuracy: 0.75\n\
         \x20 max_inference_time: 0.1     # seconds\n\
         \x20 alert_thresholds: {{min_accuracy: 0.75, max_drift: 0.3}}\n\
         steps:\n\
         \x20 - validate: {{data: data/titanic.csv, dataset: titanic, suite: suite.yaml}}\n\
         {steps}"
    )
}

const MAIN_STEPS: &str = "  - train:
      data: ${validate.data}
      target: survived
      candidates:
        - {model: logistic_regression}
        - {model: decision_tree, params: {max_depth: 5}}
        - {model: random_forest, params: {n_estimators: 100, max_depth: 8}}
  - register: {model: '${train.model_uri}', name: titanic}
  - gate: {model: '${register.model_uri}', data: '${validate.data}', target: survived, champion_tolerance: 0.05}
  - promote: {model: '${register.model_uri}'}
    needs: [gate]
  - deploy: {deployment: titanic, model: 'models:/titanic@production'}
    needs: [promote]
  - smoke_test: {deployment: '${deploy.deployment}', data: '${validate.data}', drop: [survived]}
  - monitor:
      deployment: ${deploy.deployment}
      target: survived
      sensitive_column: sex
      positive_label: '1'
      window: 500
      interval_seconds: 1
      min_rows: 200
      accuracy_action: rollback
";

const CHALLENGER_STEPS: &str = "  - train:
      data: ${validate.data}
      target: survived
      candidates:
        - {model: gradient_boosting, params: {max_iter: 100, max_depth: 3}}
  - register: {model: '${train.model_uri}', name: titanic}
  - gate: {model: '${register.model_uri}', data: '${validate.data}', target: survived, champion_tolerance: 0.05}
  - deploy: {deployment: titanic, model: 'models:/titanic@production', canary: '${register.model_uri}', weight: 20}
    needs: [gate]
  - smoke_test: {deployment: '${deploy.deployment}', data: '${validate.data}', drop: [survived]}
";

/// The bundled table as request records (without the target) and their true labels.
fn passengers(path: &Path) -> Result<(Vec<Value>, Vec<i64>)> {
    let mut table = shipyard_data::table::Table::open(path, &shipyard_data::table::CsvOptions::default())?;
    let batches = table.read_all()?;
    let mut records = Vec::new();
    let mut labels = Vec::new();
    for batch in &batches {
        records.extend(crate::pipeline::batch_records(batch, &["survived".to_owned()], usize::MAX)?);
        let column = batch.column_by_name("survived").ok_or_else(|| anyhow!("the table has no survived column"))?;
        let column = arrow_cast::cast(column, &arrow_schema::DataType::Int64)?;
        let ints = column
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .ok_or_else(|| anyhow!("survived is not a number"))?;
        labels.extend(ints.iter().map(|v| v.unwrap_or_default()));
    }
    Ok((records, labels))
}

/// A seeded stream of row indices (xorshift64*): the story's traffic is the same every time.
/// A few lines instead of a `rand` dependency the binary does not otherwise need.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// What one request of the story got back.
struct Answer {
    request_id: String,
    version: String,
    predictions: Vec<i64>,
    labels: Vec<i64>,
}

struct Story {
    dir: PathBuf,
    url: String,
    http: reqwest::Client,
    db: Database,
    /// Runs the story's commands through its server, as a team's laptop would.
    executor: CommandExecutor,
    /// Runs commands that read the store itself (the monitoring report).
    local: CommandExecutor,
    records: Vec<Value>,
    labels: Vec<i64>,
    draw: Draw,
    served: usize,
    /// The quickstart's own run; each phase is a child run.
    parent: Run,
    steps: Vec<Value>,
}

impl Story {
    /// POSTs JSON to the server: the status, headers and JSON answer (null when not JSON).
    async fn post(&self, path: &str, body: &Value) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Value)> {
        let response = self.http.post(format!("{}{path}", self.url)).json(body).send().await?;
        let (status, headers) = (response.status(), response.headers().clone());
        Ok((status, headers, response.json().await.unwrap_or(Value::Null)))
    }

    /// Sends `rows` rows (drawn from the table, changed by `shift`) in requests of `batch`.
    async fn traffic(&mut self, rows: usize, batch: usize, shift: Option<&dyn Fn(&mut Value)>) -> Result<Vec<Answer>> {
        let batch = batch.max(1);
        let mut answers = Vec::with_capacity(rows / batch + 1);
        let mut left = rows;
        while left > 0 {
            let n = left.min(batch);
            left -= n;
            let picks: Vec<usize> = (0..n).map(|_| self.draw.below(self.records.len())).collect();
            let records: Vec<Value> = picks
                .iter()
                .map(|&i| {
                    let mut r = self.records[i].clone();
                    if let Some(shift) = shift {
                        shift(&mut r);
                    }
                    r
                })
                .collect();
            let (status, headers, body) =
                self.post(&format!("/predict/{DEPLOYMENT}"), &json!({ "records": records })).await?;
            let (request_id, version) = (header(&headers, "x-request-id"), header(&headers, "x-model-version"));
            if !status.is_success() {
                bail!("/predict/{DEPLOYMENT} answered {status}: {body}");
            }
            let predictions: Vec<i64> = body["predictions"]
                .as_array()
                .map(|p| p.iter().map(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()).unwrap_or(-1)).collect())
                .unwrap_or_default();
            self.served += predictions.len();
            answers.push(Answer {
                request_id,
                version,
                predictions,
                labels: picks.iter().map(|&i| self.labels[i]).collect(),
            });
        }
        Ok(answers)
    }

    /// Sends ground truth for the answers (`wrong`: flips this share of them), retrying while
    /// the newest requests are still on their way into the prediction log.
    async fn feedback(&self, answers: &[Answer], wrong: f64) -> Result<usize> {
        let mut flips = Draw(7);
        let items: Vec<Value> = answers
            .iter()
            .map(|a| {
                let actual: Vec<i64> = a
                    .labels
                    .iter()
                    .zip(&a.predictions)
                    .map(
                        |(&label, &predicted)| {
                            if (flips.below(1000) as f64) < wrong * 1000.0 { 1 - predicted } else { label }
                        },
                    )
                    .collect();
                json!({"request_id": a.request_id, "actual": actual})
            })
            .collect();
        let began = Instant::now();
        loop {
            let (status, _, body) = self.post("/api/shipyard/feedback", &json!({ "feedback": items })).await?;
            if status.is_success() {
                return Ok(body["recorded"].as_u64().unwrap_or_default() as usize);
            }
            if began.elapsed() > Duration::from_secs(10) {
                bail!("the server refused the ground truth: {status} {body}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The newest alert of `rule` fired after `since`, waiting for it.
    async fn alert(&self, rule: &str, since: i64) -> Result<Option<shipyard_core::monitoring::Alert>> {
        let began = Instant::now();
        while began.elapsed() < ALERT_WAIT {
            let alerts = self.db.alerts(Some(DEPLOYMENT), 50).await?;
            // An alert is recorded before its action runs: wait for the action's outcome too.
            if let Some(a) = alerts.into_iter().find(|a| a.rule == rule && a.fired_time >= since)
                && (a.action.is_none() || a.action_status.is_some())
            {
                return Ok(Some(a));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(None)
    }

    /// The newest evaluation after `since` that has `metric`, waiting for it.
    async fn evaluated(&self, metric: &str, since: i64) -> Result<Option<f64>> {
        let began = Instant::now();
        while began.elapsed() < ALERT_WAIT {
            let found = self.db.evaluations(DEPLOYMENT, since, 100).await?;
            if let Some(v) = found.iter().rev().find_map(|e| e.values.get(metric).copied()) {
                return Ok(Some(v));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(None)
    }

    /// Runs a pipeline file in this process; its steps join the summary's. A failed pipeline
    /// ends the story.
    async fn pipeline(&mut self, file: &Path, prefix: &str) -> Result<PipelineSummary> {
        let pipeline = Pipeline::from_file(file)?;
        let options =
            Options { force: false, user: crate::promote::actor(None), trigger: Some("shipyard quickstart".into()) };
        let server = crate::tracking::ServerTracker(crate::client::Server::connect(&self.url)?);
        let started = PipelineRun::begin(std::sync::Arc::new(server), pipeline, options).await?;
        let summary = started.execute(&self.executor).await?;
        for step in &summary.steps {
            let status = serde_json::to_value(step.status).unwrap_or(Value::Null);
            self.steps.push(json!({"name": format!("{prefix}{}", step.name), "status": status, "run_id": step.run_id, "cached": step.cached}));
            let detail = match (&step.error, step.status) {
                (Some(e), _) => e.clone(),
                (None, StepStatus::Finished) => describe_step(&step.kind, &step.outputs),
                _ => String::new(),
            };
            let mark = match (step.status, step.cached) {
                (StepStatus::Finished, true) => "cached",
                (StepStatus::Finished, false) => "ok",
                (StepStatus::Skipped, _) => "skipped",
                _ => "FAILED",
            };
            outln!("  {:<11} {:<7} {:>6.2}s  {detail}", step.name, mark, step.duration_s);
        }
        if !summary.success {
            bail!("pipeline {} failed: {}", summary.pipeline, summary.errors.join("; "));
        }
        Ok(summary)
    }

    /// Starts a phase of the story as a child run of the quickstart's run.
    async fn phase(&self, name: &str) -> Result<Run> {
        Ok(self
            .db
            .create_run(NewRun {
                experiment_id: self.parent.info.experiment_id.clone(),
                user_id: crate::promote::actor(None),
                run_name: Some(format!("quickstart.{name}")),
                start_time: None,
                tags: vec![
                    KeyValue::new("mlflow.parentRunId", self.parent.info.run_uuid.clone()),
                    KeyValue::new("mlflow.source.name", "shipyard quickstart"),
                ],
            })
            .await?)
    }

    /// Ends a phase with its measurements; it finished when `ok`.
    async fn end_phase(&mut self, run: &Run, name: &str, ok: bool, metrics: &[(&str, f64)], note: &str) -> Result<()> {
        let timestamp = now_millis();
        let metrics = metrics
            .iter()
            .map(|(k, v)| Metric { key: (*k).to_owned(), value: *v, timestamp, ..Metric::default() })
            .collect();
        let tags = vec![KeyValue::new("shipyard.quickstart.note", note)];
        self.db.log_batch(&run.info.run_uuid, metrics, Vec::new(), tags).await?;
        let status = if ok { RunStatus::Finished } else { RunStatus::Failed };
        self.db.update_run(&run.info.run_uuid, Some(status), Some(now_millis()), None).await?;
        self.steps.push(json!({"name": name, "status": if ok { "FINISHED" } else { "FAILED" }, "run_id": run.info.run_uuid, "cached": false}));
        Ok(())
    }

    /// Runs `shipyard ARGS...` through the quickstart's server; its standard output.
    async fn command(&self, args: &[&str]) -> Result<String> {
        self.run_with(&self.executor, args).await
    }

    /// Runs `shipyard ARGS...` with `executor`; its standard output.
    async fn run_with(&self, executor: &CommandExecutor, args: &[&str]) -> Result<String> {
        let mut log = String::new();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let ran = executor.shipyard(&mut log, &args).await.map_err(|f| anyhow!(f.message))?;
        if ran.code != 0 {
            bail!("shipyard {}: {}", args.join(" "), ran.error());
        }
        Ok(ran.stdout)
    }

    /// Which version holds `production`.
    async fn production(&self) -> Result<String> {
        Ok(self.db.get_model_version_by_alias(MODEL, "production").await?.version)
    }
}

/// One line about a finished step.
fn describe_step(kind: &str, outputs: &BTreeMap<String, Value>) -> String {
    let get =
        |k: &str| outputs.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default();
    let number = |k: &str| outputs.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    match kind {
        "validate" => {
            format!("{} rows, {} expectations met, recorded as {}", get("rows"), get("expectations"), get("data"))
        }
        "train" => {
            let candidates = outputs.get("candidates").and_then(Value::as_array).cloned().unwrap_or_default();
            let scores: Vec<String> = candidates
                .iter()
                .map(|c| {
                    format!("{} {:.3}", c["model"].as_str().unwrap_or("?"), c["score"].as_f64().unwrap_or(f64::NAN))
                })
                .collect();
            format!("{} by {}: best {}", scores.join(", "), get("metric"), get("model"))
        }
        "register" => format!("registered {}", get("model_uri")),
        "gate" => format!("{} gate checks passed", get("checks")),
        "promote" => format!("production -> version {}", get("version")),
        "deploy" => format!("deployment {} at {}", get("deployment"), get("path")),
        "smoke_test" => {
            format!("{} rows answered by version {} in {:.1} ms", get("rows"), get("version"), number("latency_ms"))
        }
        "monitor" => format!("{} alert rules on {}", get("rules"), get("deployment")),
        _ => String::new(),
    }
}

/// A response header's value as text (empty when absent).
fn header(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Share of answers that match their labels.
fn accuracy(answers: &[Answer]) -> f64 {
    let (mut right, mut all) = (0usize, 0usize);
    for a in answers {
        for (p, l) in a.predictions.iter().zip(&a.labels) {
            right += usize::from(p == l);
            all += 1;
        }
    }
    right as f64 / all.max(1) as f64
}

async fn story(args: QuickstartArgs) -> Result<crate::Outcome> {
    let began = Instant::now();
    let dir = prepare_dir(&args.dir)?;
    let data = dir.join("data").join("titanic.csv");
    std::fs::write(&data, TITANIC).with_context(|| format!("writing {}", data.display()))?;
    outln!("Shipyard quickstart in {}", dir.display());
    outln!("  data: 1,308 Titanic passengers (OpenML 40945), target `survived`, sensitive attribute `sex`");

    let (addr, stop, server) = start(&dir, args.port).await?;
    let url = format!("http://{addr}");
    outln!("  server: {url} (SQLite store and artifacts under {})", dir.display());

    let store = DatasetStoreArgs::new(&dir, None, None);
    let db = Database::connect(&DatabaseUri::Sqlite(dir.join("shipyard.db"))).await?;
    // The pipelines' steps and the story's commands go through the server.
    let executor = CommandExecutor::new(&DatasetStoreArgs::new(&dir, Some(url.clone()), None))?;
    let local = CommandExecutor::new(&store)?;
    let (records, labels) = passengers(&data)?;
    let experiment_id = match db.get_experiment_by_name("titanic").await {
        Ok(e) => e.experiment_id,
        Err(_) => db.create_experiment("titanic", None, &[]).await?,
    };
    let parent = db
        .create_run(NewRun {
            experiment_id,
            user_id: crate::promote::actor(None),
            run_name: Some("quickstart".into()),
            start_time: None,
            tags: vec![KeyValue::new("mlflow.source.name", "shipyard quickstart")],
        })
        .await?;
    let mut story = Story {
        dir: dir.clone(),
        url: url.clone(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        db,
        executor,
        local,
        records,
        labels,
        draw: Draw(0x5eed_2026),
        served: 0,
        parent,
        steps: Vec::new(),
    };
    let mut told = Told::default();
    let error = tell(&mut story, &mut told).await.err().map(|e| format!("{e:#}"));
    let outcome = finish(&mut story, &told, error, began).await;

    if args.no_wait {
        let _ = stop.send(());
    } else {
        outln!("\nThe server keeps serving at {url}: press Ctrl-C to stop it.");
        crate::shutdown_signal().await;
        let _ = stop.send(());
    }
    let served = server.await.map_err(|e| anyhow!("the server task failed: {e}"))?;
    story.db.close().await;
    served?;
    outcome
}

/// What the story established, for summary.json.
#[derive(Default)]
struct Told {
    gates_passed: bool,
    drift_alert_fired: bool,
    rolled_back: bool,
    /// The canary's share of the canary phase's predictions.
    canary_share: Option<f64>,
    reports: Vec<(String, PathBuf)>,
}

/// Tells the story, recording in `told` what it established so far.
async fn tell(s: &mut Story, told: &mut Told) -> Result<()> {
    s.command(&[
        "data",
        "suite",
        "infer",
        &s.dir.join("data/titanic.csv").display().to_string(),
        "-o",
        &s.dir.join("suite.yaml").display().to_string(),
    ])
    .await?;
    let main = s.dir.join("titanic.yaml");
    std::fs::write(&main, pipeline_text("titanic", &s.url, MAIN_STEPS))?;
    let challenger = s.dir.join("titanic-challenger.yaml");
    std::fs::write(&challenger, pipeline_text("titanic-challenger", &s.url, CHALLENGER_STEPS))?;

    outln!(
        "\n1. The pipeline ({}): validate, train, gate, register, promote, deploy, smoke-test, monitor",
        main.display()
    );
    let first = s.pipeline(&main, "").await?;
    let gate_passed =
        |p: &PipelineSummary| p.steps.iter().any(|st| st.kind == "gate" && st.status == StepStatus::Finished);
    told.gates_passed = gate_passed(&first);
    let champion = s.production().await?;

    outln!("\n2. Live traffic: {LIVE_ROWS} passengers in requests of {BATCH}, then their ground truth");
    let run = s.phase("live_traffic").await?;
    let since = now_millis();
    let answers = s.traffic(LIVE_ROWS, BATCH, None).await?;
    let served_accuracy = accuracy(&answers);
    let recorded = s.feedback(&answers, 0.0).await?;
    let monitored = s.evaluated("accuracy", since).await?.unwrap_or(f64::NAN);
    let raised: Vec<String> =
        s.db.alerts(Some(DEPLOYMENT), 50)
            .await?
            .into_iter()
            .filter(|a| a.fired_time >= since)
            .map(|a| a.message)
            .collect();
    let verdict = if raised.is_empty() { "no alert".to_owned() } else { format!("alerts: {}", raised.join("; ")) };
    outln!(
        "  {} predictions by version {champion}; {recorded} labels sent; accuracy {served_accuracy:.3}; the monitors measure {monitored:.3} over their window: {verdict}",
        LIVE_ROWS
    );
    s.end_phase(
        &run,
        "live_traffic",
        true,
        &[("predictions", LIVE_ROWS as f64), ("accuracy", served_accuracy), ("monitored_accuracy", monitored)],
        "in-distribution traffic with its ground truth",
    )
    .await?;

    outln!(
        "\n3. A challenger ({}): the unchanged data step is reused; the new model goes out as a 20% canary",
        challenger.display()
    );
    let second = s.pipeline(&challenger, "challenger.").await?;
    told.gates_passed &= gate_passed(&second);
    let candidate =
        second.model_version.clone().and_then(|v| v.rsplit('/').next().map(str::to_owned)).unwrap_or_default();
    let run = s.phase("canary").await?;
    // One passenger per request: each prediction draws its arm, so the share is binomial over
    // 1,000 draws (a standard deviation of 1.3 points at 20%).
    let answers = s.traffic(CANARY_ROWS, 1, None).await?;
    let on_canary: usize = answers.iter().filter(|a| a.version == candidate).map(|a| a.predictions.len()).sum();
    let share = on_canary as f64 / CANARY_ROWS as f64;
    told.canary_share = Some(share);
    if !CANARY_SHARE_TOLERANCE.contains(&share) {
        s.end_phase(
            &run,
            "canary",
            false,
            &[("predictions", CANARY_ROWS as f64), ("canary_share", share)],
            &format!("the canary answered {:.1}% of predictions, not about {CANARY_WEIGHT}%", share * 100.0),
        )
        .await?;
        bail!(
            "the canary (version {candidate}) answered {on_canary} of {CANARY_ROWS} predictions ({:.1}%), outside              {:.0}% to {:.0}% of a {CANARY_WEIGHT}% canary: it was not promoted",
            share * 100.0,
            CANARY_SHARE_TOLERANCE.start() * 100.0,
            CANARY_SHARE_TOLERANCE.end() * 100.0
        );
    }
    s.command(&[
        "models",
        "promote",
        MODEL,
        "--version",
        &candidate,
        "--actor",
        "shipyard-quickstart",
        "--reason",
        &format!("canary: {on_canary} of {CANARY_ROWS} predictions answered without error"),
    ])
    .await?;
    s.command(&["deploy", DEPLOYMENT, "--model", &format!("models:/{MODEL}@production")]).await?;
    outln!(
        "  {CANARY_ROWS} predictions: {:.1}% answered by the canary (version {candidate}), all without error; version {candidate} promoted to production and the canary ended",
        share * 100.0
    );
    s.end_phase(
        &run,
        "canary",
        true,
        &[("predictions", CANARY_ROWS as f64), ("canary_share", share)],
        &format!("version {candidate} canaried at 20%, then promoted"),
    )
    .await?;

    outln!(
        "\n4. The world shifts: {DRIFT_ROWS} requests from older passengers paying far higher fares, in third class"
    );
    let run = s.phase("drift").await?;
    let since = now_millis();
    let shift = |r: &mut Value| {
        if let Some(age) = r.get("age").and_then(Value::as_f64) {
            r["age"] = json!(age + 30.0);
        }
        if let Some(fare) = r.get("fare").and_then(Value::as_f64) {
            r["fare"] = json!(fare * 4.0 + 40.0);
        }
        r["pclass"] = json!(3);
        r["sibsp"] = json!(3);
    };
    s.traffic(DRIFT_ROWS, BATCH, Some(&shift)).await?;
    let drift = s.alert("data-drift", since).await?;
    told.drift_alert_fired = drift.is_some();
    match &drift {
        Some(a) => outln!("  alert '{}' ({}): {}", a.rule, a.severity, a.message),
        None => outln!("  no drift alert within {}s", ALERT_WAIT.as_secs()),
    }
    let value = drift.as_ref().map_or(f64::NAN, |a| a.value);
    s.end_phase(
        &run,
        "drift",
        drift.is_some(),
        &[("predictions", DRIFT_ROWS as f64), ("drift_share", value)],
        "drifted traffic until the drift alert",
    )
    .await?;

    outln!("\n5. Ground truth turns against version {candidate}: {DEGRADED_ROWS} predictions, 60% of labels disagree");
    let run = s.phase("rollback").await?;
    let since = now_millis();
    let answers = s.traffic(DEGRADED_ROWS, BATCH, None).await?;
    s.feedback(&answers, 0.6).await?;
    let alert = s.alert("accuracy", since).await?;
    let after = s.production().await?;
    told.rolled_back =
        alert.as_ref().is_some_and(|a| a.action_status.as_deref() == Some("succeeded")) && after == champion;
    match &alert {
        Some(a) => outln!("  alert '{}' ({}): {}\n  action: {}", a.rule, a.severity, a.message, a.action_summary()),
        None => outln!("  no accuracy alert within {}s", ALERT_WAIT.as_secs()),
    }
    // The server follows the alias within its sync interval.
    let mut answered_by = String::new();
    let waited = Instant::now();
    while told.rolled_back && waited.elapsed() < Duration::from_secs(10) {
        let (_, headers, _) = s.post(&format!("/predict/{DEPLOYMENT}"), &json!({"records": [s.records[0]]})).await?;
        answered_by = header(&headers, "x-model-version");
        if answered_by == champion {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if told.rolled_back {
        outln!("  production is back on version {champion}; the next request was answered by version {answered_by}");
    }
    let value = alert.as_ref().map_or(f64::NAN, |a| a.value);
    s.end_phase(
        &run,
        "rollback",
        told.rolled_back,
        &[("predictions", DEGRADED_ROWS as f64), ("monitored_accuracy", value)],
        "degraded ground truth until the automated rollback",
    )
    .await?;

    outln!("\n6. Reports");
    let monitoring = s.dir.join("reports/monitoring.html");
    // The report reads the prediction log itself.
    s.run_with(&s.local, &["monitor", "report", "--deployment", DEPLOYMENT, "-o", &monitoring.display().to_string()])
        .await?;
    told.reports.push(("monitoring".into(), monitoring));
    let profile = s
        .command(&["data", "profile", &s.dir.join("data/titanic.csv").display().to_string(), "--format", "html"])
        .await?;
    let profile_report = s.dir.join("reports/data-profile.html");
    crate::data::write_atomically(&profile_report, profile.as_bytes())?;
    told.reports.push(("data_profile".into(), profile_report));
    for (name, path) in &told.reports {
        outln!("  {name}: {}", path.display());
    }
    Ok(())
}

/// Writes summary.json and the closing narration; the outcome is a success when the whole
/// story was told.
async fn finish(s: &mut Story, told: &Told, error: Option<String>, began: Instant) -> Result<crate::Outcome> {
    let complete = error.is_none() && told.gates_passed && told.drift_alert_fired && told.rolled_back;
    let status = if complete { RunStatus::Finished } else { RunStatus::Failed };
    s.db.update_run(&s.parent.info.run_uuid, Some(status), Some(now_millis()), None).await?;
    let summary = json!({
        "gates_passed": told.gates_passed,
        "served_predictions": s.served,
        "canary_share": told.canary_share,
        "drift_alert_fired": told.drift_alert_fired,
        "rolled_back": told.rolled_back,
        "steps": s.steps,
        "server_url": s.url,
        "ui_url": format!("{}/experiments/{}", s.url, s.parent.info.experiment_id),
        "run_id": s.parent.info.run_uuid,
        "reports": told.reports.iter().map(|(k, p)| (k.clone(), json!(p.display().to_string()))).collect::<serde_json::Map<_, _>>(),
        "seconds": began.elapsed().as_secs_f64(),
        "error": error,
    });
    let path = s.dir.join("summary.json");
    crate::data::write_atomically(&path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    if let Some(e) = &error {
        outln!("\nThe story stopped: {e}");
    }
    outln!(
        "\nSummary ({:.1}s): gates passed: {}, predictions served: {}, drift alert: {}, rolled back: {}",
        began.elapsed().as_secs_f64(),
        told.gates_passed,
        s.served,
        told.drift_alert_fired,
        told.rolled_back
    );
    outln!("  summary:     {}", path.display());
    outln!(
        "  predict:     curl -s {}/predict/{DEPLOYMENT} -H 'content-type: application/json' -d '{{\"records\": [{{\"pclass\": 1, \"sex\": \"female\", \"age\": 29, \"sibsp\": 0, \"parch\": 0, \"fare\": 211.3, \"embarked\": \"S\"}}]}}'",
        s.url
    );
    outln!("  web UI:      {}/experiments/{}", s.url, s.parent.info.experiment_id);
    outln!("  metrics:     {}/metrics", s.url);
    outln!("  MLflow:      MLFLOW_TRACKING_URI={} (experiment `titanic`)", s.url);
    outln!("  next:        shipyard pipeline status --home {}", s.dir.display());
    outln!("               shipyard models history {MODEL} --home {}", s.dir.display());
    outln!("               shipyard monitor alerts --deployment {DEPLOYMENT} --home {}", s.dir.display());
    Ok(if complete { crate::Outcome::Success } else { crate::Outcome::ChecksFailed })
}
