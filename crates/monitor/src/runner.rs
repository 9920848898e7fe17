//! Monitors at work: read a deployment's configuration and windows from the store, compute
//! every value, judge the alert rules, and act on the ones that fire (record the alert, POST
//! the webhooks, roll back or close the canary). Runs on demand ([`Monitor::evaluate`]) and on
//! a schedule ([`Monitor::schedule`], inside `shipyard server`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::entities::now_millis;
use shipyard_core::monitoring::{Alert, MonitorEvaluation};
use shipyard_core::{Error, Result};
use shipyard_data::drift::TableSample;
use shipyard_data::profile::Profile;
use shipyard_store::monitoring::PredictionPage;
use shipyard_store::{ArtifactStore, Database};

use crate::config::{Action, MonitorConfig, Rule, Window};
use crate::rules::{RuleState, Verdict, judge};
use crate::window::{FairnessSettings, Reference, WindowAccumulator, WindowReport, needs_labels};

/// Rows read from the store per page.
const PAGE_ROWS: i64 = 10_000;

/// The actor alias moves made by monitors are recorded under.
pub const ACTOR: &str = "shipyard-monitor";

/// Told of every evaluation and alert (the server updates its Prometheus gauges).
pub trait Observer: Send + Sync + 'static {
    fn evaluated(&self, deployment: &str, values: &BTreeMap<String, f64>);
    fn fired(&self, alert: &Alert);
}

/// Starts a pipeline run for a `retrain` action (the `shipyard` binary runs it; this crate does
/// not know how). Returns what was started, e.g. the run's id.
pub trait Retrainer: Send + Sync + 'static {
    fn retrain<'a>(
        &'a self,
        pipeline: &'a str,
        reason: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<String, String>> + Send + 'a>>;
}

/// An observer that does nothing (command-line evaluations).
pub struct Quiet;

impl Observer for Quiet {
    fn evaluated(&self, _: &str, _: &BTreeMap<String, f64>) {}
    fn fired(&self, _: &Alert) {}
}

/// One evaluation of a deployment's monitors.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evaluation {
    pub deployment: String,
    pub time: i64,
    /// One report per distinct window, the configuration's first.
    pub windows: Vec<WindowReport>,
    /// Each rule's verdict, in configuration order.
    pub rules: Vec<RuleOutcome>,
    /// The alerts this evaluation fired.
    pub alerts: Vec<Alert>,
}

impl Evaluation {
    /// The evaluation as a person reads it: each window's monitors and drift, then each rule's
    /// verdict and the alerts fired (what `shipyard monitor evaluate` prints, wherever it ran).
    pub fn text(&self) -> String {
        use shipyard_core::display::{columns, number};
        let mut out = String::new();
        for w in &self.windows {
            out.push_str(&format!(
                "{} of '{}': {} rows, {} requests (reference: {})\n",
                w.window, self.deployment, w.rows, w.requests, w.reference
            ));
            let rows: Vec<Vec<String>> = w
                .values
                .iter()
                .filter(|(k, _)| !k.starts_with("drift_score.") && !k.starts_with("drifted."))
                .map(|(k, v)| vec![k.clone(), number(*v)])
                .collect();
            out.push_str(&columns(&["MONITOR", "VALUE"], &rows));
            if let Some(d) = &w.drift {
                let rows: Vec<Vec<String>> = d
                    .columns
                    .iter()
                    .map(|c| {
                        vec![
                            c.column.clone(),
                            c.test.name().to_owned(),
                            number(c.p_value.unwrap_or(c.statistic)),
                            if c.drift { "DRIFT".to_owned() } else { "ok".to_owned() },
                        ]
                    })
                    .collect();
                out.push('\n');
                out.push_str(&columns(&["FEATURE", "TEST", "SCORE", "VERDICT"], &rows));
            }
            for note in &w.notes {
                out.push_str(&format!("note: {note}\n"));
            }
            out.push('\n');
        }
        let rows: Vec<Vec<String>> = self
            .rules
            .iter()
            .map(|r| vec![r.rule.clone(), r.metric.clone(), r.value.map_or("-".to_owned(), number), r.verdict.clone()])
            .collect();
        out.push_str(&columns(&["RULE", "METRIC", "VALUE", "VERDICT"], &rows));
        for a in &self.alerts {
            out.push_str(&format!("ALERT [{}] {}\n", a.severity, a.message));
            if a.action.is_some() {
                out.push_str(&format!("  action {}\n", a.action_summary()));
            }
        }
        out
    }
}

/// A rule's verdict, for display.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleOutcome {
    pub rule: String,
    pub metric: String,
    pub value: Option<f64>,
    /// The value's confidence bounds, when it is an estimate: the rule judged the bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<crate::intervals::Interval>,
    pub verdict: String,
}

/// The training profile stored with a run (`shipyard train` writes it), as a drift reference.
pub async fn training_sample(artifacts: &ArtifactStore, run_root: &str) -> Result<TableSample> {
    let root = ArtifactPath::from_proxied_uri(run_root)?;
    let path = root.join(&ArtifactPath::parse("profile/training_profile.json")?);
    let bytes = artifacts.read_all(&path).await?;
    let profile: Profile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("the training profile at {path} is unreadable: {e}")))?;
    TableSample::from_profile(&profile).map_err(|e| Error::invalid(format!("the training profile at {path}: {e}")))
}

/// What `shipyard monitor configure` does, at any edge: checks the configuration (YAML; `origin`
/// names it in errors) and its reference (a dataset version must exist; a path must be a file,
/// and is refused when `local_paths` is false: a server with logins reads no caller's path),
/// then stores it as the deployment's monitors.
pub async fn configure(
    db: &Database,
    deployment: &str,
    text: &str,
    origin: &str,
    local_paths: bool,
) -> Result<MonitorConfig> {
    let parsed = MonitorConfig::from_yaml(text, origin).map_err(|e| Error::invalid(e.to_string()))?;
    db.get_deployment(deployment).await?;
    match parsed.reference.as_deref() {
        None | Some("training") => {}
        Some(r) => match r.strip_prefix("dataset:") {
            Some(d) => {
                let (name, version) = shipyard_store::datasets::parse_reference(d)?;
                db.get_dataset_version(&name, version).await?;
            }
            None if !local_paths => {
                return Err(Error::invalid(format!(
                    "{origin}: reference '{r}' is a path: this server reads tables only as dataset versions \
                     (dataset:NAME[@VERSION])"
                )));
            }
            None if !std::path::Path::new(r).is_file() => {
                return Err(Error::invalid(format!("{origin}: reference: no file {r}")));
            }
            None => {}
        },
    }
    db.put_monitor(deployment, text).await?;
    Ok(parsed)
}

/// A stored configuration, parsed; errors name the deployment.
fn parse_config(text: &str, deployment: &str) -> Result<MonitorConfig> {
    MonitorConfig::from_yaml(text, &format!("the monitors of '{deployment}'"))
        .map_err(|e| Error::invalid(e.to_string()))
}

/// A reference's source (table or model version), the primary version, the target column.
type ReferenceKey = (String, String, Option<String>);

/// Monitors over one store.
pub struct Monitor {
    db: Database,
    artifacts: ArtifactStore,
    /// Where dataset versions from remote artifact stores are copied to be read.
    cache: std::path::PathBuf,
    webhooks: crate::webhook::Webhooks,
    /// The key deliveries are signed with: the configured one, else the store's shared secret
    /// (read at the first delivery).
    signing_key: Arc<tokio::sync::OnceCell<Arc<[u8]>>>,
    observer: Arc<dyn Observer>,
    /// Rule state by (deployment, rule).
    states: Mutex<HashMap<(String, String), RuleState>>,
    references: Mutex<HashMap<ReferenceKey, Arc<Reference>>>,
    /// Webhook deliveries not yet finished.
    deliveries: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Runs `retrain` actions; without one they fail, saying so.
    retrainer: Option<Arc<dyn Retrainer>>,
}

fn blocking_failed(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("a monitor computation failed: {e}"))
}

impl Monitor {
    /// `cache` is where dataset versions in remote artifact stores are copied to be read.
    pub fn new(
        db: Database,
        artifacts: ArtifactStore,
        cache: std::path::PathBuf,
        observer: Arc<dyn Observer>,
    ) -> Result<Monitor> {
        shipyard_store::artifacts::ensure_tls_provider();
        let webhooks =
            crate::webhook::Webhooks::new(crate::webhook::EgressPolicy::default()).map_err(Error::Internal)?;
        Ok(Monitor {
            db,
            artifacts,
            cache,
            webhooks,
            signing_key: Arc::new(tokio::sync::OnceCell::new()),
            observer,
            states: Mutex::new(HashMap::new()),
            references: Mutex::new(HashMap::new()),
            deliveries: Mutex::new(Vec::new()),
            retrainer: None,
        })
    }

    /// Lets `retrain` actions start pipeline runs.
    pub fn with_retrainer(mut self, retrainer: Arc<dyn Retrainer>) -> Monitor {
        self.retrainer = Some(retrainer);
        self
    }

    /// Webhooks delivered under `settings` (by default: public addresses only, signed with the
    /// store's shared secret).
    pub fn with_webhooks(mut self, settings: crate::webhook::WebhookSettings) -> Result<Monitor> {
        self.webhooks = crate::webhook::Webhooks::new(settings.policy).map_err(Error::InvalidParameter)?;
        if let Some(key) = settings.signing_key {
            self.signing_key = Arc::new(tokio::sync::OnceCell::new_with(Some(Arc::from(key.into_bytes()))));
        }
        Ok(self)
    }

    /// The stored configuration of `deployment`.
    pub async fn config(&self, deployment: &str) -> Result<MonitorConfig> {
        let text = self.db.get_monitor(deployment).await?.ok_or_else(|| {
            Error::not_found(format!(
                "deployment '{deployment}' has no monitors: `shipyard monitor configure --deployment {deployment}`"
            ))
        })?;
        parse_config(&text, deployment)
    }

    /// The reference of `deployment` now: the configured table or dataset version, else the
    /// training profile of its primary arm's version. The target column is the configured one,
    /// else the `target` parameter of that version's run.
    pub async fn reference(&self, deployment: &str, config: &MonitorConfig) -> Result<Arc<Reference>> {
        let record = self.db.get_deployment(deployment).await?;
        let primary = record
            .spec
            .arms
            .first()
            .ok_or_else(|| Error::invalid(format!("deployment '{deployment}' has no arm")))?
            .target
            .clone();
        let version = self.db.resolve_model_ref(&primary).await?.ok_or_else(|| {
            Error::invalid(format!("{primary} (the primary arm of '{deployment}') names no version now"))
        })?;
        let uri = format!("models:/{}/{version}", primary.model);
        // What the reference is, resolved now (a dataset name without a version follows its latest).
        let table = match config.reference.as_deref() {
            None | Some("training") => None,
            Some(r) => Some(match r.strip_prefix("dataset:") {
                Some(d) => {
                    let (name, v) = shipyard_store::datasets::parse_reference(d)?;
                    let dv = self.db.get_dataset_version(&name, v).await?;
                    (format!("dataset:{}@{}", dv.name, dv.version), Some(dv))
                }
                None => (r.to_owned(), None),
            }),
        };
        let key =
            (table.as_ref().map_or_else(|| uri.clone(), |(name, _)| name.clone()), uri.clone(), config.target.clone());
        if let Some(r) = self.references.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(r.clone());
        }
        let mv = self.db.get_model_version(&primary.model, &version).await?;
        let run = match mv.run_id.filter(|r| !r.is_empty()) {
            Some(id) => Some(self.db.get_run(&id).await?),
            None => None,
        };
        let target = config.target.clone().or_else(|| {
            run.as_ref().and_then(|r| r.data.params.iter().find(|p| p.key == "target").map(|p| p.value.clone()))
        });
        let (source, sample) = match table {
            None => {
                let run = run.ok_or_else(|| {
                    Error::invalid(format!(
                        "{uri} has no run, so no training profile to compare the traffic with: set `reference`"
                    ))
                })?;
                let sample = training_sample(&self.artifacts, &run.info.artifact_uri).await.map_err(|e| {
                    Error::invalid(format!("{uri}: no usable training profile on run {} ({e})", run.info.run_uuid))
                })?;
                (format!("training profile of {uri}"), sample)
            }
            Some((name, dataset)) => {
                let path = match dataset {
                    Some(dv) => dv.local_copy(&self.cache).await?,
                    None => std::path::PathBuf::from(&name),
                };
                let read = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || {
                        let mut table = shipyard_data::table::Table::open(&path, &Default::default())?;
                        TableSample::read(&mut table)
                    })
                };
                let sample = read
                    .await
                    .map_err(blocking_failed)?
                    .map_err(|e| Error::invalid(format!("the monitors' reference {name}: {e}")))?;
                (name, sample)
            }
        };
        let reference = Arc::new(Reference::new(source, sample, target.as_deref()));
        self.references.lock().unwrap_or_else(|e| e.into_inner()).insert(key, reference.clone());
        Ok(reference)
    }

    /// When the deployment's last successful action happened: windows start after it, so rows
    /// answered by the version an action replaced are not judged again.
    async fn last_action_time(&self, deployment: &str) -> Result<Option<i64>> {
        let alerts = self.db.alerts(Some(deployment), 200).await?;
        Ok(alerts.iter().find(|a| a.action_status.as_deref() == Some("succeeded")).map(|a| a.fired_time))
    }

    /// The deployment's configuration, or the defaults when it has none (reports and past
    /// windows work on any deployment).
    async fn config_or_default(&self, deployment: &str) -> Result<MonitorConfig> {
        Ok(match self.db.get_monitor(deployment).await? {
            Some(text) => parse_config(&text, deployment)?,
            None => MonitorConfig::default(),
        })
    }

    /// Computes one window of `deployment`'s log, ending now.
    pub async fn window(
        &self,
        deployment: &str,
        window: Window,
        config: &MonitorConfig,
        reference: Arc<Reference>,
        not_before: Option<i64>,
    ) -> Result<WindowReport> {
        self.window_ending(deployment, window, config, reference, not_before, None).await
    }

    /// The configured window of `deployment` as it stood at `time` (ms since the epoch): the
    /// rows logged up to then, against the reference, with every drift histogram; what a past
    /// evaluation saw, while the log still holds its rows. Judges no rule, records nothing.
    pub async fn window_at(&self, deployment: &str, time: i64) -> Result<WindowReport> {
        let config = self.config_or_default(deployment).await?;
        let reference = self.reference(deployment, &config).await?;
        self.window_ending(deployment, config.window, &config, reference, None, Some(time)).await
    }

    /// One window of the log ending at `end` (now when `None`).
    async fn window_ending(
        &self,
        deployment: &str,
        window: Window,
        config: &MonitorConfig,
        reference: Arc<Reference>,
        not_before: Option<i64>,
        end: Option<i64>,
    ) -> Result<WindowReport> {
        let fairness = FairnessSettings {
            sensitive_column: config.sensitive_column.clone(),
            positive_label: config.positive_label.clone(),
        };
        let end_time = end.unwrap_or_else(now_millis);
        let since = match window {
            Window::Minutes(m) => Some(end_time - i64::try_from(m.saturating_mul(60_000)).unwrap_or(i64::MAX)),
            Window::Last(_) => None,
        };
        let since = match (since, not_before) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        // The next page is read from the store while the previous one is folded on the
        // blocking pool.
        let mut idle = Some(WindowAccumulator::new(window, reference, fairness));
        let mut folding: Option<tokio::task::JoinHandle<WindowAccumulator>> = None;
        let mut taken: u64 = 0;
        let mut before = match end {
            // Nothing logged by then: an empty window.
            Some(time) => Some(self.db.prediction_id_after(deployment, time).await?.unwrap_or(i64::MIN)),
            None => None,
        };
        loop {
            let limit = match window {
                Window::Last(n) => PAGE_ROWS.min(i64::try_from(n.saturating_sub(taken)).unwrap_or(i64::MAX)),
                Window::Minutes(_) => PAGE_ROWS,
            };
            if limit <= 0 {
                break;
            }
            // Pages walk the log newest first by id; the first row older than the time bound
            // ends the window (see `PredictionPage`).
            let mut page = self
                .db
                .prediction_page(PredictionPage { deployment: deployment.to_owned(), before_id: before, limit })
                .await?;
            let full = page.len() as i64 == limit;
            before = page.last().map(|p| p.id);
            let read = page.len();
            if let Some(since) = since {
                page.retain(|p| p.record.time >= since);
            }
            let ended = page.len() < read || !full;
            taken += page.len() as u64;
            if !page.is_empty() {
                let mut acc = match folding.take() {
                    Some(f) => f.await.map_err(blocking_failed)?,
                    None => idle.take().ok_or_else(|| Error::Internal("the window was lost".to_owned()))?,
                };
                folding = Some(tokio::task::spawn_blocking(move || {
                    acc.push(&page);
                    acc
                }));
            }
            if ended {
                break;
            }
        }
        let acc = match folding {
            Some(f) => f.await.map_err(blocking_failed)?,
            None => idle.ok_or_else(|| Error::Internal("the window was lost".to_owned()))?,
        };
        let judging = config.judging();
        tokio::task::spawn_blocking(move || acc.finish(&judging)).await.map_err(blocking_failed)
    }

    /// Computes every window of `deployment`, judges its rules, and acts on those that fire.
    pub async fn evaluate(&self, deployment: &str) -> Result<Evaluation> {
        let config = self.config(deployment).await?;
        let reference = self.reference(deployment, &config).await?;
        let not_before = self.last_action_time(deployment).await?;
        let mut windows = Vec::new();
        for w in config.windows() {
            windows.push((w, self.window(deployment, w, &config, reference.clone(), not_before).await?));
        }
        let time = now_millis();
        let main = &windows[0].1;
        self.db
            .record_evaluation(&MonitorEvaluation {
                deployment: deployment.to_owned(),
                time,
                values: main.values.clone(),
            })
            .await?;
        self.observer.evaluated(deployment, &main.values);
        let mut rules = Vec::new();
        let mut alerts = Vec::new();
        for rule in &config.rules {
            let w = rule.window.unwrap_or(config.window);
            let Some((_, report)) = windows.iter().find(|(x, _)| *x == w) else { continue };
            let value = report.values.get(&rule.metric).copied();
            let interval = report.intervals.get(&rule.metric).copied();
            let rows = if needs_labels(&rule.metric) {
                report.values.get("labeled_rows").copied().unwrap_or(0.0) as u64
            } else {
                report.rows
            };
            let key = (deployment.to_owned(), rule.name.clone());
            let known = self.states.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&key);
            if !known {
                // The cooldown survives restarts: the last firing is in the store.
                let last = self.db.alerts(Some(deployment), 500).await?;
                let last_fired = last.iter().find(|a| a.rule == rule.name).map(|a| a.fired_time);
                self.states
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key.clone())
                    .or_insert(RuleState { consecutive: 0, last_fired });
            }
            let verdict = {
                let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
                let state = states.entry(key).or_default();
                judge(rule, value, interval.as_ref(), rows, state, time)
            };
            let shown = match &verdict {
                Verdict::NotJudged(why) => format!("not judged: {why}"),
                Verdict::Clear => "ok".to_owned(),
                Verdict::Holding { consecutive, cooling_down: true } => {
                    format!("holding ({consecutive}), cooling down")
                }
                Verdict::Holding { consecutive, .. } => format!("holding ({consecutive} of {})", rule.consecutive),
                Verdict::Fire { .. } => "FIRED".to_owned(),
            };
            rules.push(RuleOutcome {
                rule: rule.name.clone(),
                metric: rule.metric.clone(),
                value,
                interval,
                verdict: shown,
            });
            if let Verdict::Fire { value, message } = verdict {
                let alert = Alert {
                    id: 0,
                    deployment: deployment.to_owned(),
                    rule: rule.name.clone(),
                    metric: rule.metric.clone(),
                    value,
                    comparator: rule.op.as_str().to_owned(),
                    threshold: rule.threshold,
                    severity: rule.severity.as_str().to_owned(),
                    fired_time: time,
                    message: format!("{message} over the {w} of '{deployment}'"),
                    action: rule.action.map(|a| a.as_str().to_owned()),
                    action_status: None,
                    action_detail: None,
                    acknowledged_by: None,
                    acknowledged_time: None,
                };
                let mut alert = self.db.record_alert(alert).await?;
                tracing::warn!(target: "shipyard::alert", deployment, rule = %alert.rule, severity = %alert.severity, "{}", alert.message);
                if let Some(action) = rule.action {
                    let (status, detail) = match self.act(deployment, rule, &alert.message).await {
                        Ok(detail) => ("succeeded", detail),
                        Err(e) => ("failed", e.to_string()),
                    };
                    tracing::warn!(target: "shipyard::alert", deployment, action = action.as_str(), status, "{detail}");
                    self.db.record_alert_action(alert.id, status, &detail).await?;
                    alert.action_status = Some(status.to_owned());
                    alert.action_detail = Some(detail);
                }
                self.observer.fired(&alert);
                for hook in &config.webhooks {
                    let delivery = tokio::spawn(post_webhook(
                        Delivery {
                            webhooks: self.webhooks.clone(),
                            signing_key: self.signing_key.clone(),
                            db: self.db.clone(),
                        },
                        hook.url.clone(),
                        hook.attempts,
                        alert.clone(),
                        report.values.clone(),
                    ));
                    let mut deliveries = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
                    deliveries.retain(|d| !d.is_finished());
                    deliveries.push(delivery);
                }
                alerts.push(alert);
            }
        }
        Ok(Evaluation {
            deployment: deployment.to_owned(),
            time,
            windows: windows.into_iter().map(|(_, r)| r).collect(),
            rules,
            alerts,
        })
    }

    /// A report of one window (the configured one unless `window` is given), with the
    /// evaluation history and the alerts. Judges no rule.
    pub async fn report(&self, deployment: &str, window: Option<Window>) -> Result<crate::report::Report> {
        let config = self.config_or_default(deployment).await?;
        let reference = self.reference(deployment, &config).await?;
        let window = window.unwrap_or(config.window);
        let report = self.window(deployment, window, &config, reference, None).await?;
        let history = self.db.evaluations(deployment, 0, 2_000).await?;
        let alerts = self.db.alerts(Some(deployment), 500).await?;
        Ok(crate::report::Report {
            deployment: deployment.to_owned(),
            generated: now_millis(),
            window: report,
            history,
            alerts,
        })
    }

    /// Waits for the webhook deliveries under way (a command waits before it exits).
    pub async fn deliveries_done(&self) {
        let pending: Vec<_> = std::mem::take(&mut *self.deliveries.lock().unwrap_or_else(|e| e.into_inner()));
        for d in pending {
            let _ = d.await;
        }
    }

    /// Carries out `action` on `deployment`; returns what was done.
    async fn act(&self, deployment: &str, rule: &Rule, reason: &str) -> Result<String> {
        let record = self.db.get_deployment(deployment).await?;
        let Some(action) = rule.action else { return Ok(String::new()) };
        match action {
            Action::Rollback => {
                let primary =
                    &record.spec.arms.first().ok_or_else(|| Error::invalid("the deployment has no arm"))?.target;
                let Some(alias) = &primary.alias else {
                    return Err(Error::invalid(format!(
                        "the primary arm {primary} pins a version; only an alias can be rolled back"
                    )));
                };
                let moved = self.db.rollback_alias(&primary.model, alias, ACTOR, Some(reason)).await?;
                Ok(format!(
                    "models:/{}@{alias} rolled back from version {} to version {}",
                    primary.model,
                    moved.from_version.as_deref().unwrap_or("-"),
                    moved.to_version.as_deref().unwrap_or("-")
                ))
            }
            Action::ZeroCanary => {
                let updated = self.db.set_canary_weight(deployment, 0, ACTOR).await?;
                let primary = updated.spec.arms.first().map(|a| a.target.to_string()).unwrap_or_default();
                Ok(format!("every request of '{deployment}' now goes to {primary} (revision {})", updated.revision))
            }
            Action::Retrain => {
                let pipeline = rule.pipeline.as_deref().ok_or_else(|| Error::invalid("the rule names no pipeline"))?;
                let retrainer = self.retrainer.as_ref().ok_or_else(|| {
                    Error::invalid("this process cannot start pipelines (run the monitors in `shipyard server`)")
                })?;
                let trigger = format!("alert '{}' on deployment '{deployment}': {reason}", rule.name);
                retrainer.retrain(pipeline, &trigger).await.map_err(Error::invalid)
            }
        }
    }

    /// Evaluates every monitored deployment when its interval has passed, checking each `tick`,
    /// until the task is aborted.
    pub fn schedule(self: Arc<Self>, tick: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut last: HashMap<String, std::time::Instant> = HashMap::new();
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let monitors = match self.db.list_monitors().await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("monitors: cannot read the configurations: {e}");
                        continue;
                    }
                };
                for (deployment, text) in monitors {
                    let interval = match MonitorConfig::from_yaml(&text, &deployment) {
                        Ok(c) => Duration::from_secs(c.interval_seconds),
                        Err(e) => {
                            tracing::warn!("monitors of '{deployment}': {e}");
                            continue;
                        }
                    };
                    if last.get(&deployment).is_some_and(|t| t.elapsed() < interval) {
                        continue;
                    }
                    last.insert(deployment.clone(), std::time::Instant::now());
                    if let Err(e) = self.evaluate(&deployment).await {
                        tracing::warn!("monitors of '{deployment}' could not be evaluated: {e}");
                    }
                }
            }
        })
    }
}

/// What a delivery task needs: the client, and the signing key (or where to read it).
struct Delivery {
    webhooks: crate::webhook::Webhooks,
    signing_key: Arc<tokio::sync::OnceCell<Arc<[u8]>>>,
    db: Database,
}

impl Delivery {
    async fn key(&self) -> Result<Arc<[u8]>> {
        self.signing_key
            .get_or_try_init(|| async {
                let secret = self.db.shared_secret(crate::webhook::SIGNING_SECRET).await?;
                Ok::<_, Error>(Arc::from(secret.into_bytes()))
            })
            .await
            .cloned()
    }
}

/// POSTs `alert` as JSON to `url`, signed, retrying with exponential backoff (250 ms, 500 ms,
/// ...) until a 2xx answer or `attempts` tries; an address the egress policy refuses is not
/// retried. Every attempt carries the same delivery id.
async fn post_webhook(delivery: Delivery, url: String, attempts: u32, alert: Alert, values: BTreeMap<String, f64>) {
    let body = serde_json::json!({
        "source": "shipyard",
        "status": "firing",
        "alert": alert,
        "values": values,
    });
    let body = body.to_string().into_bytes();
    let key = match delivery.key().await {
        Ok(key) => key,
        Err(e) => {
            tracing::error!("webhook {url}: alert {} not delivered: no signing key ({e})", alert.id);
            return;
        }
    };
    let delivery_id = uuid::Uuid::new_v4().simple().to_string();
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=attempts.max(1) {
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let signature = crate::webhook::sign(&key, &delivery_id, timestamp, &body);
        match delivery.webhooks.deliver(&url, &body, &signature).await {
            Ok(_) => return,
            Err(e) if !e.retryable() => {
                tracing::error!("webhook: alert {} not delivered: {e}", alert.id);
                return;
            }
            Err(e) => tracing::warn!("webhook: attempt {attempt}: {e}"),
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    tracing::error!("webhook {url}: alert {} not delivered after {attempts} attempts", alert.id);
}
