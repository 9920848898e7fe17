//! Keeping a server's models and deployments in line with the store.
//!
//! `shipyard server` serves every registered model's `production` version under the model's
//! name, and every deployment under its own; `shipyard serve --deployment NAME` serves one
//! deployment. [`Catalog::sync`] reads what should be served (one query for the alias's
//! targets, one for the deployments, one per alias a deployment follows), loads each version
//! not yet loaded (files copied from the artifact store into a temporary folder, compiled on
//! the blocking pool, warmed by one prediction), and only then swaps the new routes in: requests in flight finish on the
//! version they started with, and no request ever waits for a load.
//!
//! Versions that leave service stay loaded, warm, for [`WARM_FOR`], so a rollback to one of them
//! is a pointer swap: with the default poll of 250 ms it takes effect in well under a second. A
//! version that fails to load is logged, what served before keeps serving, and the load is
//! retried after a pause. [`Catalog::watch`] repeats the sync every interval.
//!
//! Per-model settings come from the registered model's tags, read when a version is loaded:
//! `shipyard.serving.max_batch_rows`, `.max_batch_wait_ms`, `.max_concurrency`, `.max_queue`,
//! `.timeout_ms`, `.cache_entries`, and for Python models `.python_workers`,
//! `.python_max_queue`, `.python_max_rss_mib`, `.python_threads`, `.python_max_batch_rows`
//! (numbers; others are logged and ignored).
//!
//! As it syncs, the catalog keeps this process's rollout report ([`crate::rollout`]): per
//! deployment the revision read and whether it serves, per version loading / ready / failed
//! with the error. [`Catalog::report`] writes it through the source on every change and every
//! heartbeat, so commands that change what is served can wait until it is live here.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shipyard_core::Error;
use shipyard_core::deployment::{Deployment as Spec, ModelRef};
use shipyard_core::entities::KeyValue;
use shipyard_core::rollout::{
    AliasModelState, DeploymentScope, DeploymentState, LoadState, ProcessReport, VersionState,
};
use shipyard_runtime::EngineChoice;
use shipyard_runtime::fetch::{self, ModelUri};
use shipyard_store::{ArtifactStore, Database};

use crate::conversion::SklearnEngine;
use crate::loader::{Choice, KEPT_RECORD, Loader};
use crate::rollout::StatusBoard;
use crate::runs::RunModels;
use crate::{Deployment, ModelSettings, ServedModel, ServingState};

/// Where a run's model is, for `POST /predict/{run_id}`: the seed logs it as `model`.
pub const RUN_MODEL_PATH: &str = "model";

/// How long a version that failed to load is left alone.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long a version out of service stays loaded for a quick return.
pub const WARM_FOR: Duration = Duration::from_secs(600);

/// Which deployments a server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deployments {
    All,
    Only(String),
    None,
}

/// A registered version: (model, version).
pub type VersionKey = (String, String);

/// Where a catalog reads what to serve and fetches the models: the store itself
/// ([`StoreSource`]), or a tracking server over HTTP (the CLI's replica source).
pub trait Source: Send + Sync + 'static {
    /// Every `(model, version)` the alias points at.
    fn alias_targets(&self, alias: &str) -> impl Future<Output = Result<Vec<VersionKey>, Error>> + Send;
    /// The deployments named by `which`.
    fn deployments(&self, which: &Deployments) -> impl Future<Output = Result<Vec<Spec>, Error>> + Send;
    /// The version an alias points at, `None` when it is not set.
    fn alias_version(&self, model: &str, alias: &str) -> impl Future<Output = Result<Option<String>, Error>> + Send;
    /// A version's serving settings: its registered model's tags, then its own (which win).
    fn serving_tags(&self, model: &str, version: &str) -> impl Future<Output = Result<Vec<KeyValue>, Error>> + Send;
    /// Copies a version's files into `dir`; the path to load.
    fn fetch(&self, model: &str, version: &str, dir: &Path) -> impl Future<Output = Result<PathBuf, Error>> + Send;
    /// Copies the model a run logged as `model` (`runs:/RUN_ID/model`) into `dir`; the path to load.
    fn fetch_run(&self, run_id: &str, dir: &Path) -> impl Future<Output = Result<PathBuf, Error>> + Send;
    /// Keeps the files of `dir`, a new conversion of the model `uri` names, with that model's
    /// files in the store ([`shipyard_pyfunc::convert::CACHE_DIR`]).
    fn keep_conversion(&self, uri: &ModelUri, dir: &Path) -> impl Future<Output = Result<(), Error>> + Send;
    /// Tags a version with the engine that serves it and why ([`ENGINE_TAG`]).
    fn record_engine(
        &self,
        model: &str,
        version: &str,
        choice: &Choice,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Records this process's rollout report.
    fn report(&self, report: &ProcessReport) -> impl Future<Output = Result<(), Error>> + Send;
    /// Removes this process's report: it stops.
    fn withdraw(&self, id: &str) -> impl Future<Output = Result<(), Error>> + Send;
}

/// The metadata and artifact stores, opened in this process.
pub struct StoreSource {
    pub db: Database,
    pub artifacts: ArtifactStore,
}

impl Source for StoreSource {
    async fn alias_targets(&self, alias: &str) -> Result<Vec<VersionKey>, Error> {
        self.db.alias_targets(alias).await
    }

    async fn deployments(&self, which: &Deployments) -> Result<Vec<Spec>, Error> {
        match which {
            Deployments::None => Ok(Vec::new()),
            Deployments::All => self.db.list_deployments().await,
            Deployments::Only(name) => Ok(vec![self.db.get_deployment(name).await?]),
        }
    }

    async fn alias_version(&self, model: &str, alias: &str) -> Result<Option<String>, Error> {
        self.db.current_alias_version(model, alias).await
    }

    async fn serving_tags(&self, model: &str, version: &str) -> Result<Vec<KeyValue>, Error> {
        let mut tags = self.db.get_registered_model(model).await?.tags;
        tags.extend(self.db.get_model_version(model, version).await?.tags);
        Ok(tags)
    }

    async fn keep_conversion(&self, uri: &ModelUri, dir: &Path) -> Result<(), Error> {
        let (db, artifacts) = (&self.db, &self.artifacts);
        match fetch::store_beside(uri, db, artifacts, shipyard_pyfunc::convert::CACHE_DIR, dir, KEPT_RECORD).await {
            Ok(_) => Ok(()),
            Err(fetch::FetchError::Store(e)) => Err(e),
            Err(e) => Err(Error::Unavailable(e.to_string())),
        }
    }

    async fn fetch(&self, model: &str, version: &str, dir: &Path) -> Result<PathBuf, Error> {
        let uri = ModelUri::Version { name: model.to_owned(), version: version.to_owned() };
        let (path, _) = fetch::fetch_model(&uri, &self.db, &self.artifacts, dir)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(path)
    }

    async fn fetch_run(&self, run_id: &str, dir: &Path) -> Result<PathBuf, Error> {
        let uri = ModelUri::Run { run_id: run_id.to_owned(), path: RUN_MODEL_PATH.to_owned() };
        match fetch::fetch_model(&uri, &self.db, &self.artifacts, dir).await {
            Ok((path, _)) => Ok(path),
            Err(fetch::FetchError::Store(e)) => Err(e),
            Err(e) => Err(Error::Unavailable(e.to_string())),
        }
    }

    async fn record_engine(&self, model: &str, version: &str, choice: &Choice) -> Result<(), Error> {
        for (key, value) in choice.tags() {
            self.db.set_model_version_tag(model, version, &KeyValue { key: key.into(), value }).await?;
        }
        Ok(())
    }

    async fn report(&self, report: &ProcessReport) -> Result<(), Error> {
        self.db.report_serving_process(report).await
    }

    async fn withdraw(&self, id: &str) -> Result<(), Error> {
        self.db.remove_serving_process(id).await
    }
}

struct Loaded {
    model: Arc<ServedModel>,
    /// When it was last part of what is served.
    last_wanted: Instant,
}

/// Where the served models come from.
pub struct Catalog<S: Source> {
    source: Arc<S>,
    /// The alias whose versions are served under their model's name (`None`: no models).
    pub alias: Option<String>,
    pub deployments: Deployments,
    pub loader: Loader,
    pub settings: ModelSettings,
    loaded: HashMap<VersionKey, Loaded>,
    /// Versions whose last load failed: when, and the error.
    failed: HashMap<VersionKey, (Instant, String)>,
    /// What each served deployment was built from: its revision and resolved versions.
    built: HashMap<String, (i64, Vec<VersionKey>)>,
    /// Per model served under the alias, the version it served before the current one: what
    /// serves again if the current one fails after taking traffic.
    previous: HashMap<String, VersionKey>,
    /// This process's rollout report.
    board: Arc<StatusBoard>,
}

/// What one sync changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub loaded: Vec<VersionKey>,
    pub removed: Vec<String>,
    pub failed: Vec<VersionKey>,
    /// Deployments (re)built.
    pub deployments: Vec<String>,
}

impl<S: Source> Catalog<S> {
    pub fn new(
        source: S,
        alias: Option<&str>,
        deployments: Deployments,
        engine: EngineChoice,
        settings: ModelSettings,
    ) -> Catalog<S> {
        let scope = match &deployments {
            Deployments::All => DeploymentScope::All,
            Deployments::Only(name) => DeploymentScope::Only(name.clone()),
            Deployments::None => DeploymentScope::None,
        };
        let kind = if alias.is_some() { "server" } else { "replica" };
        Catalog {
            source: Arc::new(source),
            alias: alias.map(str::to_owned),
            board: StatusBoard::new(kind, alias, scope),
            deployments,
            loader: Loader { engine, python: None, sklearn: Default::default() },
            settings,
            loaded: HashMap::new(),
            failed: HashMap::new(),
            built: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// Loads models with `loader` (Python models, scikit-learn conversions).
    pub fn with_loader(mut self, loader: Loader) -> Catalog<S> {
        self.loader = loader;
        self
    }

    /// Prepares versions as they are registered ([`prepare_registered`]), with this catalog's
    /// source and loader.
    pub fn prepare_registered(
        &self,
        registered: tokio::sync::mpsc::Receiver<VersionKey>,
    ) -> tokio::task::JoinHandle<()> {
        prepare_registered(self.source.clone(), self.loader.clone(), self.settings.clone(), registered)
    }

    /// The models of runs addressed by run id (`POST /predict/{run_id}`), loaded as this
    /// catalog loads versions; at most `capacity` kept.
    pub fn run_models(&self, capacity: usize) -> RunModels {
        let source = self.source.clone();
        let fetch: crate::runs::FetchRun = Arc::new(move |run_id: String, dir: PathBuf| {
            let source = source.clone();
            Box::pin(async move { source.fetch_run(&run_id, &dir).await })
        });
        let source = self.source.clone();
        let keep: crate::runs::KeepRunConversion = Arc::new(move |run_id: String, dir: PathBuf| {
            let source = source.clone();
            Box::pin(async move {
                let uri = ModelUri::Run { run_id, path: RUN_MODEL_PATH.to_owned() };
                source.keep_conversion(&uri, &dir).await
            })
        });
        RunModels::new(fetch, keep, self.loader.clone(), self.settings.clone(), capacity)
    }

    /// A reference's version now (`None`: its alias is not set).
    async fn resolve(&self, r: &ModelRef) -> Result<Option<VersionKey>, Error> {
        match (&r.version, &r.alias) {
            (Some(v), _) => Ok(Some((r.model.clone(), v.clone()))),
            (None, Some(a)) => Ok(self.source.alias_version(&r.model, a).await?.map(|v| (r.model.clone(), v))),
            (None, None) => Ok(None),
        }
    }

    /// Loads `key` unless it is loaded or failed recently; whether it is available.
    async fn ensure(&mut self, key: &VersionKey, state: &ServingState, report: &mut SyncReport) -> bool {
        if let Some(l) = self.loaded.get_mut(key) {
            l.last_wanted = Instant::now();
            return true;
        }
        if self.failed.get(key).is_some_and(|(at, _)| at.elapsed() < RETRY_AFTER) {
            return false;
        }
        match self.load(&key.0, &key.1, &state.metrics).await {
            Ok(model) => {
                self.failed.remove(key);
                self.loaded.insert(key.clone(), Loaded { model, last_wanted: Instant::now() });
                report.loaded.push(key.clone());
                true
            }
            Err(message) => {
                tracing::warn!(model = %key.0, version = %key.1, "cannot serve: {message}");
                self.failed.insert(key.clone(), (Instant::now(), message));
                report.failed.push(key.clone());
                false
            }
        }
    }

    /// Python versions whose workers crash in a loop (the pool's breaker is open) have failed:
    /// they leave the loaded versions and are reported failed with the reason; a load is tried
    /// again after [`RETRY_AFTER`], with new workers. (A deployment keeps its arms meanwhile:
    /// its monitors and rollout decide; the failed arm answers 503 with the reason.)
    fn drop_broken(&mut self, report: &mut SyncReport) {
        let broken: Vec<(VersionKey, String)> = self
            .loaded
            .iter()
            .filter_map(|(key, l)| Some((key.clone(), l.model.engine.python()?.pool.broken()?)))
            .collect();
        for (key, reason) in broken {
            tracing::error!(model = %key.0, version = %key.1, "failed while serving: {reason}");
            self.loaded.remove(&key);
            // A deployment with it is rebuilt once it is loaded again (with new workers).
            self.built.retain(|_, (_, keys)| !keys.contains(&key));
            self.failed.insert(key.clone(), (Instant::now(), format!("failed while serving: {reason}")));
            report.failed.push(key);
        }
    }

    /// Serves again the version `key`'s model served before `key`, which has failed.
    async fn fall_back(&mut self, key: &VersionKey, state: &ServingState, report: &mut SyncReport) {
        let Some(before) = self.previous.get(&key.0).cloned().filter(|b| b != key) else { return };
        if self.ensure(&before, state, report).await
            && let Some(model) = self.model(&before)
        {
            state.registry.insert(model);
            tracing::warn!(
                model = %key.0,
                "version {} failed: serving version {} again until it recovers or the alias moves",
                key.1,
                before.1
            );
        }
    }

    fn model(&self, key: &VersionKey) -> Option<Arc<ServedModel>> {
        self.loaded.get(key).map(|l| l.model.clone())
    }

    /// Brings the served models and deployments in line with the store.
    pub async fn sync(&mut self, state: &ServingState) -> Result<SyncReport, Error> {
        let mut report = SyncReport::default();
        // 1. Read what should be served.
        let targets = match &self.alias {
            Some(alias) => self.source.alias_targets(alias).await?,
            None => Vec::new(),
        };
        let specs = self.source.deployments(&self.deployments).await?;
        let mut resolved: Vec<(Spec, Vec<Option<VersionKey>>)> = Vec::with_capacity(specs.len());
        for spec in specs {
            let mut keys = Vec::new();
            for r in spec.spec.refs() {
                keys.push(self.resolve(r).await.unwrap_or_else(|e| {
                    tracing::warn!(deployment = %spec.name, "cannot resolve {r}: {e}");
                    None
                }));
            }
            resolved.push((spec, keys));
        }
        // 2. Load what is missing, before anything is swapped; the report follows each load.
        // (An unchanged report is not written again: the board compares.)
        self.drop_broken(&mut report);
        self.publish(&targets, &resolved, state);
        let wanted: Vec<VersionKey> =
            targets.iter().chain(resolved.iter().flat_map(|(_, keys)| keys.iter().flatten())).cloned().collect();
        for key in &wanted {
            self.ensure(key, state, &mut report).await;
            self.publish(&targets, &resolved, state);
        }
        // 3. Swap: models under the alias.
        let alias = self.alias.clone().unwrap_or_default();
        for current in state.registry.current() {
            if !targets.iter().any(|(name, _)| *name == current.name) {
                state.registry.remove(&current.name);
                tracing::info!(model = %current.name, "no longer serving: the '{alias}' alias is gone");
                report.removed.push(current.name.clone());
            }
        }
        for key in &targets {
            let serving = state.registry.get_model(&key.0, None).ok().and_then(|m| m.version.clone());
            if serving.as_deref() == Some(key.1.as_str()) {
                if !self.loaded.contains_key(key) {
                    // It failed while serving (its workers crash in a loop): the version before
                    // it serves again, until the alias moves or a retry loads it afresh.
                    self.fall_back(key, state, &mut report).await;
                }
                continue;
            }
            if let Some(model) = self.model(key) {
                if let Some(old) = serving {
                    self.previous.insert(key.0.clone(), (key.0.clone(), old));
                }
                state.registry.insert(model);
                tracing::info!(model = %key.0, version = %key.1, "serving ({alias} alias)");
            }
        }
        // 4. Swap: deployments, each whole once all its versions are loaded.
        let names: BTreeSet<String> = resolved.iter().map(|(s, _)| s.name.clone()).collect();
        for d in state.registry.deployments() {
            if !names.contains(&d.name) {
                state.registry.remove_deployment(&d.name);
                self.built.remove(&d.name);
                tracing::info!(deployment = %d.name, "no longer serving: the deployment was deleted");
                report.removed.push(d.name.clone());
            }
        }
        for (spec, keys) in &resolved {
            let Some(keys) = keys.iter().cloned().collect::<Option<Vec<VersionKey>>>() else {
                tracing::warn!(deployment = %spec.name, "a version it names cannot be resolved: keeping what it served");
                continue;
            };
            if self.built.get(&spec.name) == Some(&(spec.revision, keys.clone())) {
                continue;
            }
            let models: Option<Vec<Arc<ServedModel>>> = keys.iter().map(|k| self.model(k)).collect();
            let Some(models) = models else { continue };
            let arms: Vec<(Arc<ServedModel>, u32)> =
                models.iter().zip(&spec.spec.arms).map(|(m, arm)| (m.clone(), arm.weight)).collect();
            let shadow = spec.spec.shadow.as_ref().and_then(|_| models.get(spec.spec.arms.len()).cloned());
            let Some(built) = Deployment::new(
                spec.name.clone(),
                spec.revision,
                arms,
                shadow,
                spec.spec.sticky.clone(),
                &state.metrics,
            ) else {
                continue;
            };
            state.registry.set_deployment(Arc::new(built));
            let shown: Vec<String> = keys.iter().map(|(m, v)| format!("{m}/{v}")).collect();
            tracing::info!(deployment = %spec.name, revision = spec.revision, "serving deployment: {}", shown.join(", "));
            self.built.insert(spec.name.clone(), (spec.revision, keys));
            report.deployments.push(spec.name.clone());
        }
        // 5. Versions out of service stay warm for a while, then go.
        let now = Instant::now();
        self.loaded.retain(|_, l| now.duration_since(l.last_wanted) < WARM_FOR);
        self.publish(&targets, &resolved, state);
        Ok(report)
    }

    /// Where `key` is in this process.
    fn version_state(&self, model: &str, key: Option<&VersionKey>) -> VersionState {
        let (state, error) = match key {
            None => (LoadState::Loading, None),
            Some(k) if self.loaded.contains_key(k) => (LoadState::Ready, None),
            Some(k) => match self.failed.get(k) {
                Some((_, e)) => (LoadState::Failed, Some(e.clone())),
                None => (LoadState::Loading, None),
            },
        };
        VersionState { model: model.to_owned(), version: key.map(|k| k.1.clone()), state, error }
    }

    /// Puts what this process has read and applied on its rollout report.
    fn publish(&self, targets: &[VersionKey], resolved: &[(Spec, Vec<Option<VersionKey>>)], state: &ServingState) {
        let models = targets
            .iter()
            .map(|key| {
                let serving = state.registry.get_model(&key.0, None).ok().and_then(|m| m.version.clone());
                AliasModelState {
                    wanted: self.version_state(&key.0, Some(key)),
                    applied: serving.as_deref() == Some(key.1.as_str()),
                }
            })
            .collect();
        let deployments = resolved
            .iter()
            .map(|(spec, keys)| {
                let built = self.built.get(&spec.name);
                let applied = built.is_some_and(|(revision, versions)| {
                    *revision == spec.revision
                        && versions.len() == keys.len()
                        && versions.iter().zip(keys).all(|(v, k)| k.as_ref() == Some(v))
                });
                DeploymentState {
                    name: spec.name.clone(),
                    revision: spec.revision,
                    applied,
                    serving_revision: built.map(|(revision, _)| *revision),
                    arms: spec.spec.refs().zip(keys).map(|(r, k)| self.version_state(&r.model, k.as_ref())).collect(),
                }
            })
            .collect();
        self.board.update(models, deployments);
    }

    /// This process's rollout report (to set its address once bound).
    pub fn status_board(&self) -> Arc<StatusBoard> {
        self.board.clone()
    }

    /// Starts writing this process's rollout report through the source: at once, on every
    /// change and every heartbeat, until [`Reporting::stop`].
    pub fn report(&self) -> Reporting<S> {
        let (source, board) = (self.source.clone(), self.board.clone());
        let task = tokio::spawn(async move {
            let mut failing = false;
            loop {
                match source.report(&board.snapshot()).await {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        tracing::warn!("cannot record this process's rollout status: {e}");
                        failing = true;
                    }
                    Err(_) => {}
                }
                board.next_report().await;
            }
        });
        Reporting { task, source: self.source.clone(), board: self.board.clone() }
    }

    async fn load(&self, name: &str, version: &str, metrics: &crate::Metrics) -> Result<Arc<ServedModel>, String> {
        let tags = self.source.serving_tags(name, version).await.unwrap_or_default();
        let mut loader = self.loader.clone();
        let settings = settings_from_tags(&self.settings, &mut loader, name, &tags);
        let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary folder: {e}"))?;
        let path = self.source.fetch(name, version, dir.path()).await.map_err(|e| e.to_string())?;
        let loaded = loader.load(path, Some(dir), &format!("{name}/{version}")).await?;
        if let Some(conversion) = &loaded.new_conversion {
            let uri = ModelUri::Version { name: name.to_owned(), version: version.to_owned() };
            if let Err(e) = self.source.keep_conversion(&uri, conversion.path()).await {
                tracing::warn!(model = name, version, "cannot keep the conversion with the version: {e}");
            }
        }
        if let Err(e) = self.source.record_engine(name, version, &loaded.choice).await {
            tracing::warn!(model = name, version, "cannot tag the version with its engine: {e}");
        }
        let served =
            ServedModel::new(name.to_owned(), Some(version.to_owned()), loaded.engine, settings, None, metrics);
        let _ = served.engine_choice.set(loaded.choice);
        served.warm_up().await;
        Ok(served)
    }

    /// Syncs now and then every `interval`, until the task is dropped.
    pub fn watch(mut self, state: Arc<ServingState>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = self.sync(&state).await {
                    tracing::warn!("reading what to serve from the store: {e}");
                }
            }
        })
    }
}

/// Prepares a newly registered version for serving, as its first load would: a scikit-learn
/// model is converted and verified (or its kept conversion read), the conversion kept with the
/// version's files and the engine tagged on it, without starting Python workers. `None` when
/// the version is not a scikit-learn model. The version's `shipyard.serving.sklearn_engine`
/// tag applies.
pub async fn prepare_version<S: Source>(
    source: &S,
    loader: &Loader,
    settings: &ModelSettings,
    name: &str,
    version: &str,
) -> Result<Option<Choice>, String> {
    let tags = source.serving_tags(name, version).await.map_err(|e| e.to_string())?;
    let mut loader = loader.clone();
    settings_from_tags(settings, &mut loader, name, &tags);
    let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary folder: {e}"))?;
    let path = source.fetch(name, version, dir.path()).await.map_err(|e| e.to_string())?;
    let Some((choice, conversion)) = loader.prepare(&path, &format!("{name}/{version}")).await else {
        return Ok(None);
    };
    if let Some(conversion) = conversion {
        let uri = ModelUri::Version { name: name.to_owned(), version: version.to_owned() };
        source.keep_conversion(&uri, conversion.path()).await.map_err(|e| e.to_string())?;
    }
    source.record_engine(name, version, &choice).await.map_err(|e| e.to_string())?;
    Ok(Some(choice))
}

/// Prepares each version received (`(model, version)`, sent as versions are registered) with
/// [`prepare_version`], one at a time, until the senders are gone.
pub fn prepare_registered<S: Source>(
    source: Arc<S>,
    loader: Loader,
    settings: ModelSettings,
    mut registered: tokio::sync::mpsc::Receiver<VersionKey>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((name, version)) = registered.recv().await {
            match prepare_version(source.as_ref(), &loader, &settings, &name, &version).await {
                Ok(Some(choice)) => {
                    tracing::info!(model = %name, version = %version, "prepared: {} ({})", choice.engine, choice.reason)
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(model = %name, version = %version, "cannot prepare the version: {e}"),
            }
        }
    })
}

/// The task writing a process's rollout report.
pub struct Reporting<S: Source> {
    task: tokio::task::JoinHandle<()>,
    source: Arc<S>,
    board: Arc<StatusBoard>,
}

impl<S: Source> Reporting<S> {
    /// Records where the process listens, once bound.
    pub fn set_address(&self, address: std::net::SocketAddr) {
        self.board.set_address(address.to_string());
    }

    /// Stops reporting and removes the report: a process that stops cleanly is not waited for.
    pub async fn stop(self) {
        self.task.abort();
        if let Err(e) = self.source.withdraw(&self.board.id()).await {
            tracing::warn!("cannot remove this process's rollout status: {e}");
        }
    }
}

/// The tag prefix of per-model serving settings.
pub const SETTINGS_TAG_PREFIX: &str = "shipyard.serving.";

/// `defaults`, with the `shipyard.serving.*` tags applied (the registered model's, then the
/// version's); `loader` takes `sklearn_engine` (`auto`, `onnx` or `python`) and, when Python
/// models are served, the `python_*` ones.
pub fn settings_from_tags(
    defaults: &ModelSettings,
    loader: &mut Loader,
    model: &str,
    tags: &[KeyValue],
) -> ModelSettings {
    let mut settings = defaults.clone();
    let mut python = loader.python.as_mut();
    for tag in tags {
        let Some(key) = tag.key.strip_prefix(SETTINGS_TAG_PREFIX) else { continue };
        if key == "sklearn_engine" {
            match tag.value.trim().parse::<SklearnEngine>() {
                Ok(engine) => loader.sklearn = engine,
                Err(e) => tracing::warn!(model, "ignoring tag {}: {e}", tag.key),
            }
            continue;
        }
        let Ok(n) = tag.value.trim().parse::<u64>() else {
            tracing::warn!(model, "ignoring tag {}={:?}: not a whole number", tag.key, tag.value);
            continue;
        };
        let count = usize::try_from(n).unwrap_or(usize::MAX);
        match (key, python.as_deref_mut()) {
            ("max_batch_rows", _) => settings.max_batch_rows = count,
            ("max_batch_wait_ms", _) => settings.max_batch_wait = Duration::from_millis(n),
            ("max_concurrency", _) => settings.max_concurrency = count.max(1),
            ("max_queue", _) => settings.max_queue = count,
            ("timeout_ms", python) => {
                settings.timeout = Duration::from_millis(n.max(1));
                if let Some(python) = python {
                    python.timeout = settings.timeout;
                }
            }
            ("cache_entries", _) => settings.cache_entries = count,
            ("python_workers", Some(python)) => python.workers = count.max(1),
            ("python_max_queue", Some(python)) => python.max_queue = count.max(1),
            ("python_max_rss_mib", Some(python)) => python.max_rss_mib = n,
            ("python_threads", Some(python)) => python.threads_per_worker = count.max(1),
            ("python_max_batch_rows", Some(python)) => python.max_batch_rows = count,
            (
                "python_workers"
                | "python_max_queue"
                | "python_max_rss_mib"
                | "python_threads"
                | "python_max_batch_rows",
                None,
            ) => {}
            (other, _) => tracing::warn!(model, "ignoring tag {SETTINGS_TAG_PREFIX}{other}: not a serving setting"),
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_override_the_serving_settings() {
        let tag = |k: &str, v: &str| KeyValue { key: k.into(), value: v.into() };
        let tags = [
            tag("shipyard.serving.max_batch_rows", "64"),
            tag("shipyard.serving.timeout_ms", "250"),
            tag("shipyard.serving.cache_entries", "lots"),
            tag("owner", "team-a"),
        ];
        let defaults = ModelSettings::default();
        let mut loader = Loader { engine: EngineChoice::Auto, python: None, sklearn: SklearnEngine::Auto };
        let settings = settings_from_tags(&defaults, &mut loader, "m", &tags);
        assert_eq!(settings.max_batch_rows, 64);
        assert_eq!(settings.timeout, Duration::from_millis(250));
        assert_eq!(settings.cache_entries, defaults.cache_entries);
        let mut loader = Loader {
            engine: EngineChoice::Auto,
            python: Some(shipyard_pyfunc::PoolSettings::new("python3".into())),
            sklearn: SklearnEngine::Auto,
        };
        let tags = [
            tag("shipyard.serving.python_workers", "3"),
            tag("shipyard.serving.timeout_ms", "900"),
            tag("shipyard.serving.sklearn_engine", "python"),
        ];
        settings_from_tags(&defaults, &mut loader, "m", &tags);
        let python = loader.python.as_ref().unwrap();
        assert_eq!((python.workers, python.timeout), (3, Duration::from_millis(900)));
        assert_eq!(loader.sklearn, SklearnEngine::Python);
    }
}
