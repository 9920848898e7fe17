//! Releasing model versions: a version validated or promoted through its gates, for every edge
//! that does it (`shipyard models validate|promote`, the web UI's promote form, and a REST route
//! later), so each gathers the same evidence, records the same report and moves the alias the
//! same way.
//!
//! [`Releaser::validate`] and [`Releaser::promote`] read the version, its run and its policy
//! from the store, fetch and load the candidate and the champion on the engine that would serve
//! them, read the evaluation rows and the drift reference (a table, a dataset version or the
//! training profile), judge with [`shipyard_promotion::evaluate`] on the blocking pool, store the
//! report (a JSON artifact under the version's run and `shipyard.gates.*` tags on the version)
//! and, for a promotion that passed or was forced with a reason, move the alias through
//! [`Database::move_alias`], which refuses the move if the alias changed since the gates read
//! it. Rolling back and changing a deployment's canary weight need no evidence: every edge calls
//! the store's own [`Database::rollback_alias`] and [`Database::set_canary_weight`].
//!
//! Waiting until a move is live on every serving process stays with the edge (the CLI waits,
//! the UI shows the rollout), through [`Database::wait_for_rollout`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow_array::RecordBatch;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::entities::{KeyValue, ModelVersion, ModelVersionStatus, Run, now_millis};
use shipyard_core::error::{Error, Result};
use shipyard_data::drift::TableSample;
use shipyard_data::table::{CsvOptions, Table};
use shipyard_promotion::gates::{Champion, Evaluation, Evidence};
use shipyard_promotion::{GatePolicy, GateReport};
use shipyard_runtime::fetch::{self, ModelUri};
pub use shipyard_serving::loader::Loader;
use shipyard_serving::scorer::EngineScorer;
use shipyard_store::promotion::{AliasMove, AliasMoveRequest, MoveKind};
use shipyard_store::{ArtifactStore, Database};

/// The registered model tag holding a model's gate policy (`models set-policy`).
pub const POLICY_TAG: &str = "shipyard.gates.policy";
/// The version tag naming the stored report of its last gate run (`runs:/RUN/gates/...json`).
pub const REPORT_TAG: &str = "shipyard.gates.report";
/// The alias promotions move unless told otherwise.
pub const DEFAULT_ALIAS: &str = "production";

/// The stores a release reads and writes, and how it loads models.
#[derive(Clone)]
pub struct Releaser {
    pub db: Database,
    pub artifacts: ArtifactStore,
    /// Where dataset versions from remote artifact stores are copied to be read.
    pub cache: PathBuf,
    /// How versions are loaded: the gates run each on the engine that would serve it, so its
    /// latency is that engine's.
    pub loader: Loader,
    /// Whether a table may be a path on this machine: true at the command line; false on a
    /// server with logins, where callers name tables as dataset versions only (a path would
    /// let them read the server's own files).
    pub local_paths: bool,
}

/// What to run the gates on.
#[derive(Clone, Debug)]
pub struct GateRequest {
    /// The registered model.
    pub model: String,
    /// The version judged.
    pub version: String,
    /// The alias the version would be promoted to: its holder is the champion.
    pub alias: String,
    /// A policy to run instead of the one stored on the model.
    pub policy: Option<GatePolicy>,
    /// Evaluation rows instead of the policy's `evaluation.data`: a path the server can read,
    /// or `dataset:NAME[@VERSION]`.
    pub data: Option<String>,
    /// How CSV tables are read.
    pub csv: CsvOptions,
}

impl GateRequest {
    /// The gates of `model` version `version` for `alias`, with the stored policy and its data.
    pub fn stored(model: &str, version: &str, alias: &str) -> GateRequest {
        GateRequest {
            model: model.to_owned(),
            version: version.trim().to_owned(),
            alias: alias.to_owned(),
            policy: None,
            data: None,
            csv: CsvOptions::default(),
        }
    }
}

/// A gate run's outcome, stored.
#[derive(Clone, Debug)]
pub struct Validation {
    pub report: GateReport,
    /// Where the report was stored (`runs:/RUN/gates/vN-TIME.json`); `None` when the version
    /// has no run to store it under (its tags still record the verdict).
    pub report_uri: Option<String>,
}

/// A promotion: which alias moves to which version, by whom and why.
#[derive(Clone, Debug)]
pub struct PromoteRequest {
    pub gates: GateRequest,
    /// Move the alias even if gates fail or there is no policy; needs a reason.
    pub force: bool,
    /// Who moves the alias (recorded in its history).
    pub actor: String,
    /// Why (recorded; required with `force`).
    pub reason: Option<String>,
}

/// What a promotion did.
#[derive(Clone, Debug)]
pub enum Promotion {
    /// The alias points at the version already: nothing ran, nothing moved.
    Unchanged,
    /// A gate failed and the promotion was not forced: the alias stays at `stays_at`.
    Blocked { validation: Validation, stays_at: Option<String> },
    /// The alias moved (`validation` is `None` for a forced move without a policy).
    Moved { alias_move: AliasMove, validation: Option<Validation> },
}

/// How long a Python model may take over the evaluation rows (set on the loader by the edge).
pub const PYTHON_GATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Everything the gates read, gathered.
struct Gathered {
    version: ModelVersion,
    run: Option<Run>,
    policy: GatePolicy,
    candidate: EngineScorer,
    champion: Option<(String, EngineScorer)>,
    champion_alias: String,
    evaluation: Option<(String, Vec<RecordBatch>)>,
    target: Option<String>,
    drift_reference: Option<std::result::Result<(String, TableSample), String>>,
    /// The alias's version when the gates started (a promotion expects it unchanged).
    alias_before: Option<String>,
}

/// Checks a gate policy (YAML) and stores it on the registered model as the one its
/// promotions run by default; `source` names the text in errors (a file name).
pub async fn store_policy(db: &Database, model: &str, text: &str, source: &str) -> Result<GatePolicy> {
    let policy = GatePolicy::from_yaml(text, source).map_err(|e| Error::invalid(e.to_string()))?;
    db.set_registered_model_tag(model, &KeyValue::new(POLICY_TAG, text)).await?;
    Ok(policy)
}

impl Releaser {
    /// Runs the gates of a version and stores the report; fails when there is no policy.
    pub async fn validate(&self, request: &GateRequest) -> Result<Validation> {
        let gathered = self.gather(request, true).await?.ok_or_else(|| no_policy(&request.model))?;
        let (report, gathered) = judge(gathered).await?;
        let report_uri = self.record_report(&report, gathered.run.as_ref()).await?;
        Ok(Validation { report, report_uri })
    }

    /// Promotes a version: runs its gates (unless there is no policy and the promotion is
    /// forced), stores the report, and moves the alias if they passed or `force` is set with a
    /// reason. The move is refused if the alias changed while the gates ran.
    pub async fn promote(&self, request: PromoteRequest) -> Result<Promotion> {
        let gates = &request.gates;
        if request.force && request.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(Error::invalid("a forced promotion needs a reason, which is recorded"));
        }
        let current = self.db.current_alias_version(&gates.model, &gates.alias).await?;
        if current.as_deref() == Some(gates.version.as_str()) {
            return Ok(Promotion::Unchanged);
        }
        let (validation, expected) = match self.gather(gates, !request.force).await? {
            Some(gathered) => {
                let (report, gathered) = judge(gathered).await?;
                let report_uri = self.record_report(&report, gathered.run.as_ref()).await?;
                (Some(Validation { report, report_uri }), gathered.alias_before)
            }
            None => (None, current),
        };
        let passed = validation.as_ref().is_some_and(|v| v.report.passed);
        if !passed && !request.force {
            let validation = validation.ok_or_else(|| no_policy(&gates.model))?;
            return Ok(Promotion::Blocked { validation, stays_at: expected });
        }
        let gate_report = validation
            .as_ref()
            .map(|v| serde_json::to_string(&v.report))
            .transpose()
            .map_err(|e| Error::Internal(format!("writing the gate report: {e}")))?;
        let alias_move = self
            .db
            .move_alias(AliasMoveRequest {
                model: gates.model.clone(),
                alias: gates.alias.clone(),
                to_version: gates.version.clone(),
                kind: if passed { MoveKind::Promote } else { MoveKind::Force },
                expected_from: Some(expected),
                actor: request.actor,
                reason: request.reason,
                gate_report,
            })
            .await?;
        Ok(Promotion::Moved { alias_move, validation })
    }

    /// Reads the version, the policy, both models and the rows. `None` when there is no policy
    /// and `require_policy` is false (a forced promotion).
    async fn gather(&self, request: &GateRequest, require_policy: bool) -> Result<Option<Gathered>> {
        let (name, alias) = (request.model.as_str(), request.alias.as_str());
        let version = self.db.get_model_version(name, &request.version).await?;
        if version.status != ModelVersionStatus::Ready {
            return Err(Error::invalid(format!(
                "version {} of '{name}' is {}, not READY",
                version.version,
                version.status.as_str()
            )));
        }
        let run = match &version.run_id {
            Some(id) => {
                Some(self.db.get_run(id).await.map_err(|e| context(e, &format!("reading run {id} of the version")))?)
            }
            None => None,
        };
        let model = self.db.get_registered_model(name).await?;
        let alias_before = self.db.current_alias_version(name, alias).await?;
        let policy = match &request.policy {
            Some(policy) => policy.clone(),
            None => match model.tags.iter().find(|t| t.key == POLICY_TAG) {
                Some(tag) => GatePolicy::from_yaml(&tag.value, &format!("the policy stored on '{name}'"))
                    .map_err(|e| Error::invalid(e.to_string()))?,
                None if require_policy => return Err(no_policy(name)),
                None => return Ok(None),
            },
        };
        let evaluation_source =
            request.data.clone().or_else(|| policy.evaluation.as_ref().and_then(|e| e.data.clone()));
        let evaluation = match evaluation_source {
            Some(source) if policy.needs_evaluation_data() => {
                let path = self.resolve_table(&source).await?;
                let csv = request.csv.clone();
                let batches = blocking(move || Table::open(&path, &csv).and_then(|mut t| t.read_all()))
                    .await?
                    .map_err(|e| Error::invalid(format!("reading the evaluation rows {source}: {e}")))?;
                Some((source, batches))
            }
            _ => None,
        };
        let run_param =
            |key: &str| run.as_ref().and_then(|r| r.data.params.iter().find(|p| p.key == key).map(|p| p.value.clone()));
        let target = policy.evaluation.as_ref().and_then(|e| e.target.clone()).or_else(|| run_param("target"));
        let champion_alias = policy.champion_alias(alias).unwrap_or(alias).to_owned();
        let drift_reference = match policy.drift.as_ref().map(|d| d.reference.as_deref().unwrap_or("training")) {
            None => None,
            Some("training") => Some(match &run {
                None => Err("the version has no run, so no training profile: give drift.reference".to_owned()),
                Some(run) => training_profile(&self.artifacts, &run.info.artifact_uri).await,
            }),
            Some(source) => {
                let path = self.resolve_table(source).await?;
                let csv = request.csv.clone();
                let sample = blocking(move || {
                    Table::open(&path, &csv).and_then(|mut t| TableSample::read(&mut t)).map_err(|e| e.to_string())
                })
                .await?;
                Some(sample.map(|s| (source.to_owned(), s)))
            }
        };
        let candidate = self.load_version(name, &request.version).await?;
        // The champion is loaded only for the gates that compare with it.
        let compares = policy.champion.is_some() || policy.signature.is_some();
        let champion = match self.db.current_alias_version(name, &champion_alias).await? {
            Some(v) if compares => {
                let model = self.load_version(name, &v).await?;
                Some((v, model))
            }
            _ => None,
        };
        Ok(Some(Gathered {
            version,
            run,
            policy,
            candidate,
            champion,
            champion_alias,
            evaluation,
            target,
            drift_reference,
            alias_before,
        }))
    }

    /// A table argument as a local path: a path as it is, or `dataset:NAME[@VERSION]`'s file
    /// (copied into the cache when its artifact store is remote).
    pub async fn resolve_table(&self, source: &str) -> Result<PathBuf> {
        let Some(reference) = source.strip_prefix("dataset:") else {
            if !self.local_paths {
                return Err(Error::invalid(format!(
                    "'{source}' is a path: this server reads tables only as dataset versions (dataset:NAME[@VERSION]); \
                     add the file with `shipyard data add`"
                )));
            }
            return Ok(PathBuf::from(source));
        };
        let (name, version) = shipyard_store::datasets::parse_reference(reference)?;
        let v = self.db.get_dataset_version(&name, version).await?;
        v.local_copy(&self.cache).await
    }

    /// Fetches and loads a registered version on the engine that serves it (a Python model's
    /// workers run on the current runtime, which must outlive the model), keeping a new
    /// conversion with the version and tagging the engine, as a server's load does.
    async fn load_version(&self, name: &str, version: &str) -> Result<EngineScorer> {
        let dir = tempfile::tempdir()
            .map_err(|e| Error::Internal(format!("creating a temporary folder for the model: {e}")))?;
        let uri = ModelUri::Version { name: name.to_owned(), version: version.to_owned() };
        let (path, _) = fetch::fetch_model(&uri, &self.db, &self.artifacts, dir.path())
            .await
            .map_err(|e| Error::invalid(format!("fetching models:/{name}/{version}: {e}")))?;
        let loaded = self
            .loader
            .load(path, Some(dir), &format!("{name}/{version}"))
            .await
            .map_err(|e| Error::invalid(format!("loading models:/{name}/{version}: {e}")))?;
        if let Some(conversion) = &loaded.new_conversion {
            let (sub, record) = (shipyard_pyfunc::convert::CACHE_DIR, shipyard_serving::loader::KEPT_RECORD);
            if let Err(e) = fetch::store_beside(&uri, &self.db, &self.artifacts, sub, conversion.path(), record).await {
                tracing::warn!("cannot keep the conversion with models:/{name}/{version}: {e}");
            }
        }
        for (key, value) in loaded.choice.tags() {
            self.db.set_model_version_tag(name, version, &KeyValue { key: key.into(), value }).await?;
        }
        Ok(EngineScorer { engine: loaded.engine, runtime: tokio::runtime::Handle::current() })
    }

    /// Stores the report: a JSON artifact under the version's run and `shipyard.gates.*` tags on
    /// the version. Returns the artifact's URI.
    async fn record_report(&self, report: &GateReport, run: Option<&Run>) -> Result<Option<String>> {
        let body =
            serde_json::to_vec_pretty(report).map_err(|e| Error::Internal(format!("writing the gate report: {e}")))?;
        let mut location = None;
        if let Some(run) = run {
            let relative = format!("gates/v{}-{}.json", report.version, now_millis());
            let root = ArtifactPath::from_proxied_uri(&run.info.artifact_uri)?;
            let path = root.join(&ArtifactPath::parse(&relative)?);
            let stream = futures::stream::once(async move { Ok::<_, Error>(bytes::Bytes::from(body)) });
            self.artifacts.put(&path, Box::pin(stream)).await.map_err(|e| context(e, "storing the gate report"))?;
            location = Some(format!("runs:/{}/{relative}", run.info.run_uuid));
        }
        let mut tags = vec![
            KeyValue::new("shipyard.gates.passed", report.passed.to_string()),
            KeyValue::new("shipyard.gates.failed", report.failures().join(",")),
            KeyValue::new("shipyard.gates.time", now_millis().to_string()),
        ];
        if let Some(l) = &location {
            tags.push(KeyValue::new(REPORT_TAG, l.clone()));
        }
        for tag in &tags {
            self.db.set_model_version_tag(&report.model, &report.version, tag).await?;
        }
        Ok(location)
    }
}

/// Judges the gathered evidence on the blocking pool (the gates run both models over the
/// evaluation rows); gives the evidence back for recording.
async fn judge(gathered: Gathered) -> Result<(GateReport, Gathered)> {
    blocking(move || {
        let g = &gathered;
        let metrics: BTreeMap<String, f64> = g
            .run
            .as_ref()
            .map(|r| r.data.metrics.iter().map(|m| (m.key.clone(), m.value)).collect())
            .unwrap_or_default();
        let evidence = Evidence {
            model: &g.version.name,
            version: &g.version.version,
            run_id: g.version.run_id.as_deref(),
            candidate: &g.candidate,
            run_metrics: &metrics,
            champion: g.champion.as_ref().map(|(v, m)| Champion { alias: &g.champion_alias, version: v, model: m }),
            evaluation: g.evaluation.as_ref().map(|(source, batches)| Evaluation {
                source,
                batches,
                target: g.target.as_deref(),
            }),
            drift_reference: g.drift_reference.clone(),
        };
        let report = shipyard_promotion::evaluate(&g.policy, &evidence);
        (report, gathered)
    })
    .await
}

/// Runs blocking work (table reads, the gates) on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Internal(format!("the gate task failed: {e}")))
}

/// The profile `shipyard train` stored of the training rows, as a drift reference.
async fn training_profile(
    artifacts: &ArtifactStore,
    run_root: &str,
) -> std::result::Result<(String, TableSample), String> {
    shipyard_monitor::runner::training_sample(artifacts, run_root)
        .await
        .map(|s| ("the training profile".to_owned(), s))
        .map_err(|e| {
            format!("no training profile on the version's run ({e}); give drift.reference (a table or dataset)")
        })
}

fn no_policy(name: &str) -> Error {
    Error::invalid(format!(
        "'{name}' has no gate policy: store one with `shipyard models set-policy {name} --policy FILE`, give one \
         (--policy FILE), or promote with --force and a reason"
    ))
}

/// `error` with what was being done in front, keeping its kind.
fn context(error: Error, doing: &str) -> Error {
    match error {
        Error::NotFound(m) => Error::NotFound(format!("{doing}: {m}")),
        Error::Unavailable(m) => Error::Unavailable(format!("{doing}: {m}")),
        Error::Internal(m) => Error::Internal(format!("{doing}: {m}")),
        other => Error::invalid(format!("{doing}: {other}")),
    }
}
