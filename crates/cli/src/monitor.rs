//! `shipyard monitor`: configure a deployment's monitors, evaluate them on demand, send ground
//! truth, list alerts, and write reports. `shipyard server` evaluates the same monitors on
//! their schedule (see `docs/monitoring.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shipyard_core::entities::utc_seconds;
use shipyard_core::monitoring::Actual;
use shipyard_monitor::{Monitor, Quiet, Window};
use shipyard_store::monitoring::PredictionPage;
use shipyard_store::{ArtifactStore, Database};

use crate::Format;
use crate::datasets::{DatasetStoreArgs, block_on, with_database};
use crate::tracking::print_table;

#[derive(Subcommand)]
pub enum MonitorCommand {
    /// Set a deployment's monitors and alert rules (YAML; without --config, the seed's
    /// defaults: accuracy < 0.8, drift_share > 0.1).
    Configure {
        #[arg(long)]
        deployment: String,
        /// The configuration file (docs/monitoring.md).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Print a deployment's monitor configuration.
    Show {
        #[arg(long)]
        deployment: String,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Evaluate a deployment's monitors now: every value, each rule's verdict; rules that fire
    /// raise alerts and run their actions, as the scheduled evaluation does. Exit status 1 when
    /// an alert fired.
    Evaluate {
        #[arg(long)]
        deployment: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        webhooks: WebhookArgs,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Record ground truth from a CSV file with columns request_id, actual and optionally row.
    Feedback {
        #[arg(long)]
        deployment: String,
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// The newest rows of a deployment's prediction log, with their ground truth.
    Log {
        #[arg(long)]
        deployment: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Print the key webhook deliveries are signed with when no SHIPYARD_WEBHOOK_SECRET or
    /// --webhook-secret-file is given (the store makes it once; receivers verify
    /// X-Shipyard-Signature with it: docs/monitoring.md).
    WebhookSecret {
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Alerts, newest first.
    Alerts {
        #[arg(long)]
        deployment: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Acknowledge an alert (someone is on it): recorded with who did it, shown with the alert.
    Ack {
        /// The alert's id (`shipyard monitor alerts`).
        id: i64,
        /// Who acknowledges it (default: $USER).
        #[arg(long)]
        actor: Option<String>,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// A report of one window: drift per feature with histograms, performance over time, the
    /// fairness table, the alert timeline. Self-contained HTML, or JSON.
    Report {
        #[arg(long)]
        deployment: String,
        /// last:N (predictions) or minutes:N (default: the configuration's window).
        #[arg(long)]
        window: Option<String>,
        /// The output file (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Json,
}

/// Where a monitor's webhooks may be delivered, and how they are signed.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct WebhookArgs {
    /// Let webhooks reach this address, network (CIDR) or host name although it is not public
    /// (loopback, private, link-local...); repeatable, or comma-separated.
    #[arg(long = "webhook-allow", value_name = "ADDRESS|CIDR|HOST", env = "SHIPYARD_WEBHOOK_ALLOW")]
    pub allow: Vec<String>,
    /// Send webhooks through this proxy (http://host:port); proxy environment variables are
    /// otherwise ignored.
    #[arg(long = "webhook-proxy", env = "SHIPYARD_WEBHOOK_PROXY")]
    pub proxy: Option<String>,
    /// A file holding the key webhooks are signed with (default: the SHIPYARD_WEBHOOK_SECRET
    /// variable, else a key the store makes once: `shipyard monitor webhook-secret`).
    #[arg(long = "webhook-secret-file")]
    pub secret_file: Option<PathBuf>,
}

impl WebhookArgs {
    pub fn settings(&self) -> Result<shipyard_monitor::webhook::WebhookSettings> {
        let policy = shipyard_monitor::webhook::EgressPolicy::parse(&self.allow, self.proxy.clone())
            .map_err(anyhow::Error::msg)?;
        let signing_key = match &self.secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the webhook secret {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("SHIPYARD_WEBHOOK_SECRET").ok().filter(|s| !s.is_empty()),
        };
        Ok(shipyard_monitor::webhook::WebhookSettings { policy, signing_key })
    }
}

/// Ground-truth rows sent to a server per request.
const FEEDBACK_PART: usize = 5_000;

/// What a refused part of a feedback file says: its lines (the store numbers items from 0 in
/// the part it was given), what was recorded before it, and that sending the file again is safe.
fn feedback_refused(file: &Path, first: usize, count: usize, recorded_before: u64) -> String {
    // Line 1 is the header.
    let line = first + 2;
    let mut text = format!(
        "{}: lines {line}-{} were not recorded (feedback[N] below is line {line} + N)",
        file.display(),
        line + count - 1
    );
    if recorded_before > 0 {
        text.push_str(&format!(
            "; the {recorded_before} row(s) of the lines before them were recorded, and sending the file again \
             is safe (ground truth is replaced, not added)"
        ));
    }
    text
}

/// Opens both stores for a command that reads models' runs and artifacts.
fn with_monitor<T>(
    store: &DatasetStoreArgs,
    webhooks: &WebhookArgs,
    work: impl AsyncFnOnce(&Monitor, &Database) -> Result<T>,
) -> Result<T> {
    let webhooks = webhooks.settings()?;
    block_on(async {
        let db = store.database().await?;
        let artifacts = ArtifactStore::open(&store.destination()).await?;
        let retrainer = crate::pipeline::InProcessRetrainer::new(db.clone(), artifacts.clone(), store.clone());
        let monitor = Monitor::new(db.clone(), artifacts, store.cache_dir(), Arc::new(Quiet))?
            .with_retrainer(retrainer.clone())
            .with_webhooks(webhooks)?;
        let outcome = work(&monitor, &db).await;
        monitor.deliveries_done().await;
        // A `retrain` action's pipeline run finishes before the command exits.
        retrainer.finished().await;
        db.close().await;
        outcome
    })
}

pub fn run(command: MonitorCommand) -> Result<crate::Outcome> {
    match command {
        MonitorCommand::Configure { deployment, config, store } => {
            let (text, origin) = match &config {
                Some(path) => (
                    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
                    path.display().to_string(),
                ),
                None => ("monitors: 1\n".to_owned(), "the default configuration".to_owned()),
            };
            let (rules, window, interval) = match store.server()? {
                Some(server) => {
                    let body = serde_json::json!({"deployment": deployment, "config": text, "source": origin});
                    let answer = block_on(server.post("api/shipyard/monitors/configure", &body))?;
                    (
                        answer["rules"].as_u64().unwrap_or(0) as usize,
                        answer["window"].as_str().unwrap_or("").to_owned(),
                        answer["interval_seconds"].as_u64().unwrap_or(0),
                    )
                }
                None => {
                    let parsed = with_database(&store, async |db| {
                        Ok(shipyard_monitor::configure(db, &deployment, &text, &origin, true).await?)
                    })?;
                    (parsed.rules.len(), parsed.window.to_string(), parsed.interval_seconds)
                }
            };
            outln!(
                "Monitors of '{deployment}': {rules} rule(s) over the {window}, evaluated every {interval} s by \
                 `shipyard server`"
            );
            Ok(crate::Outcome::Success)
        }
        MonitorCommand::Show { deployment, store } => {
            let text = match store.server()? {
                Some(server) => {
                    let answer =
                        block_on(server.get("api/shipyard/monitors/get", &[("deployment", deployment.as_str())]))?;
                    answer["config"].as_str().map(str::to_owned)
                }
                None => with_database(&store, async |db| Ok(db.get_monitor(&deployment).await?))?,
            };
            match text {
                Some(text) => out!("{text}"),
                None => bail!(
                    "deployment '{deployment}' has no monitors: `shipyard monitor configure --deployment {deployment}`"
                ),
            }
            Ok(crate::Outcome::Success)
        }
        MonitorCommand::Evaluate { deployment, format, webhooks, store } => {
            // (evaluation as JSON, its text, alerts fired)
            let (json, text, alerts) = match store.server()? {
                Some(server) => {
                    let body = serde_json::json!({ "deployment": deployment });
                    let answer = block_on(server.long_call("api/shipyard/monitors/evaluate", &body, |_| {}))?;
                    let alerts = answer["evaluation"]["alerts"].as_array().map_or(0, Vec::len);
                    (answer["evaluation"].clone(), answer["text"].as_str().unwrap_or("").to_owned(), alerts)
                }
                None => {
                    let e = with_monitor(&store, &webhooks, async |m, _| Ok(m.evaluate(&deployment).await?))?;
                    (serde_json::to_value(&e)?, e.text(), e.alerts.len())
                }
            };
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&json)?),
                Format::Table => out!("{text}"),
            }
            Ok(if alerts == 0 { crate::Outcome::Success } else { crate::Outcome::ChecksFailed })
        }
        MonitorCommand::Feedback { deployment, file, store } => {
            let actuals = read_feedback(&file)?;
            let n = actuals.len();
            let recorded = match store.server()? {
                Some(server) => block_on(async {
                    let route = format!(
                        "api/shipyard/feedback?deployment={}",
                        percent_encoding::utf8_percent_encode(&deployment, percent_encoding::NON_ALPHANUMERIC)
                    );
                    let mut recorded = 0;
                    // In parts well under a server's body limit; each part is recorded whole or
                    // not at all, and sending a part again replaces what it recorded.
                    for (k, part) in actuals.chunks(FEEDBACK_PART).enumerate() {
                        let answer = server
                            .post(&route, &serde_json::json!({ "feedback": part }))
                            .await
                            .with_context(|| feedback_refused(&file, k * FEEDBACK_PART, part.len(), recorded))?;
                        recorded += answer["recorded"].as_u64().unwrap_or(0);
                    }
                    Ok(recorded)
                })?,
                None => with_database(&store, async |db| {
                    db.get_deployment(&deployment).await?;
                    let recorded = db
                        .record_actuals(Some(&deployment), actuals)
                        .await
                        .with_context(|| feedback_refused(&file, 0, n, 0))?;
                    Ok(recorded as u64)
                })?,
            };
            outln!("Recorded ground truth for {recorded} row(s) of '{deployment}' ({n} line(s) of {})", file.display());
            Ok(crate::Outcome::Success)
        }
        MonitorCommand::Log { deployment, limit, format, store } => {
            let page = PredictionPage { deployment: deployment.clone(), before_id: None, limit };
            let rows = with_database(&store, async |db| Ok(db.prediction_page(page).await?))?;
            match format {
                Format::Json => {
                    outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "predictions": rows }))?)
                }
                Format::Table => {
                    let table: Vec<Vec<String>> = rows
                        .iter()
                        .map(|p| {
                            let r = &p.record;
                            vec![
                                utc_seconds(r.time),
                                format!("{}#{}", r.request_id, r.row),
                                format!("{}/{}", r.model, r.version.as_deref().unwrap_or("-")),
                                r.status.to_string(),
                                format!("{:.2}", r.latency_us as f64 / 1000.0),
                                r.inputs.clone().unwrap_or_default(),
                                r.prediction.clone().unwrap_or_default(),
                                p.actual.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    print_table(
                        &["TIME (UTC)", "REQUEST#ROW", "VERSION", "STATUS", "MS", "INPUTS", "PREDICTION", "ACTUAL"],
                        &table,
                    );
                }
            }
            Ok(crate::Outcome::Success)
        }
        MonitorCommand::WebhookSecret { store } => {
            let secret = with_database(&store, async |db| {
                Ok(db.shared_secret(shipyard_monitor::webhook::SIGNING_SECRET).await?)
            })?;
            outln!("{secret}");
            Ok(crate::Outcome::Success)
        }
        MonitorCommand::Alerts { deployment, limit, format, store } => {
            let alerts = with_database(&store, async |db| Ok(db.alerts(deployment.as_deref(), limit).await?))?;
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "alerts": alerts }))?),
                Format::Table => {
                    let rows: Vec<Vec<String>> = alerts
                        .iter()
                        .map(|a| {
                            vec![
                                a.id.to_string(),
                                utc_seconds(a.fired_time),
                                a.deployment.clone(),
                                a.rule.clone(),
                                a.severity.clone(),
                                a.message.clone(),
                                a.action_summary(),
                                a.acknowledged_by.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    print_table(
                        &[
                            "ID",
                            "FIRED (UTC)",
                            "DEPLOYMENT",
                            "RULE",
                            "SEVERITY",
                            "MESSAGE",
                            "ACTION",
                            "ACKNOWLEDGED BY",
                        ],
                        &rows,
                    );
                }
            }
            Ok(crate::Outcome::Success)
        }
        MonitorCommand::Ack { id, actor, store } => {
            let actor = crate::promote::actor(actor);
            let alert: shipyard_core::monitoring::Alert = match store.server()? {
                Some(server) => {
                    let body = serde_json::json!({"id": id, "actor": actor});
                    let answer = block_on(server.post("api/shipyard/alerts/acknowledge", &body))?;
                    serde_json::from_value(answer["alert"].clone()).context("reading the server's alert")?
                }
                None => with_database(&store, async |db| Ok(db.acknowledge_alert(id, &actor).await?))?,
            };
            let by = alert.acknowledged_by.as_deref().unwrap_or("");
            let when = alert.acknowledged_time.map(utc_seconds).unwrap_or_default();
            outln!("alert {id} ({} on '{}') acknowledged by {by} at {when} UTC", alert.rule, alert.deployment);
            Ok(crate::Outcome::Success)
        }
        MonitorCommand::Report { deployment, window, output, format, store } => {
            let window = window.as_deref().map(Window::parse).transpose().map_err(anyhow::Error::msg)?;
            let report =
                with_monitor(&store, &WebhookArgs::default(), async |m, _| Ok(m.report(&deployment, window).await?))?;
            let text = match format {
                ReportFormat::Json => serde_json::to_string_pretty(&report)?,
                ReportFormat::Html => shipyard_monitor::report::html(&report),
            };
            match output {
                Some(path) => {
                    crate::data::write_atomically(&path, text.as_bytes())?;
                    eprintln!("Wrote the report of '{deployment}' to {}", path.display());
                }
                None => out!("{text}"),
            }
            Ok(crate::Outcome::Success)
        }
    }
}

/// Reads `request_id,actual[,row]` lines; the actual value stays a number when it reads as one.
fn read_feedback(path: &Path) -> Result<Vec<Actual>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: reading the header", path.display()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(id_col), Some(actual_col)) = (col("request_id"), col("actual")) else {
        bail!("{}: the header must name the columns request_id and actual (and optionally row)", path.display());
    };
    let row_col = col("row");
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{}: line {line}", path.display()))?;
        let field = |c: usize| record.get(c).map(str::trim).unwrap_or("");
        let request_id = field(id_col).to_owned();
        if request_id.is_empty() {
            bail!("{}: line {line}: request_id is empty", path.display());
        }
        let raw = field(actual_col);
        if raw.is_empty() {
            bail!("{}: line {line}: actual is empty", path.display());
        }
        let actual = match (raw.parse::<i64>(), raw.parse::<f64>()) {
            (Ok(i), _) => serde_json::Value::from(i),
            (_, Ok(v)) if v.is_finite() => serde_json::Value::from(v),
            _ => serde_json::Value::from(raw),
        };
        let row = match row_col.map(field).filter(|r| !r.is_empty()) {
            Some(r) => Some(
                r.parse::<i64>()
                    .with_context(|| format!("{}: line {line}: row '{r}' is not a whole number", path.display()))?,
            ),
            None => None,
        };
        out.push(Actual { request_id, row, actual });
    }
    if out.is_empty() {
        bail!("{}: no feedback lines", path.display());
    }
    Ok(out)
}
