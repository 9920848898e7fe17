//! `shipyard serve`: one model (and an optional fallback) over the seed's, MLflow's and the
//! Open Inference protocols, as a stateless replica; and the serving options `shipyard server`
//! shares.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use shipyard_core::deployment::Deployment as DeploymentRecord;
use shipyard_runtime::EngineChoice;
use shipyard_serving::catalog::{Catalog, Deployments, Reporting, Source, StoreSource, VersionKey};
use shipyard_serving::conversion::SklearnEngine;
use shipyard_serving::loader::Loader;
use shipyard_serving::prediction_log::LogSettings;
use shipyard_serving::{Limits, ModelSettings, ServedModel, ServingState};

use crate::datasets::DatasetStoreArgs;
use crate::predict::{EngineArg, Fetched, ModelArgs, fetch_model_files};

/// How models are served: limits, batching, cache.
#[derive(Args, Clone, Debug)]
pub struct ServingArgs {
    /// Requests running inference at once; more wait in the queue.
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Requests waiting for an inference slot; beyond it requests get 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Milliseconds a request may wait for an inference slot before it gets 503.
    #[arg(long, default_value_t = 1000)]
    queue_timeout_ms: u64,
    /// Milliseconds the model may take; then the fallback answers, or 504.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Batch concurrent requests into engine runs of up to this many rows (0: off).
    #[arg(long, default_value_t = 0)]
    batch_max_rows: usize,
    /// Milliseconds the first request of a batch waits for more.
    #[arg(long, default_value_t = 2)]
    batch_max_wait_ms: u64,
    /// Answers kept in the prediction cache (0: off).
    #[arg(long, default_value_t = 10_000)]
    cache_entries: usize,
    /// Seconds a cached answer stays valid.
    #[arg(long, default_value_t = 300)]
    cache_ttl_s: u64,
    /// Most rows in one request; more get 413.
    #[arg(long, default_value_t = 100_000)]
    max_rows: usize,
    /// Largest prediction request body in bytes; larger get 413.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_request_bytes: usize,
    /// Milliseconds between reads of the store for moved aliases and changed deployments.
    #[arg(long, default_value_t = 250)]
    sync_interval_ms: u64,
    /// Record no predictions in the prediction log (which monitors read).
    #[arg(long)]
    no_prediction_log: bool,
    /// Share of requests recorded in the prediction log, 0 to 1 (chosen by request id).
    #[arg(long, default_value_t = 1.0)]
    log_sample: f64,
    /// Requests buffered for the prediction log; when it is full, entries are dropped and
    /// counted, never waited for.
    #[arg(long, default_value_t = 10_000)]
    log_buffer: usize,
    /// Hours the prediction log keeps rows (0: forever).
    #[arg(long, default_value_t = 168)]
    log_retention_hours: u64,
    #[command(flatten)]
    pub python: PythonArgs,
    /// Models of runs kept loaded for `POST /predict/{run_id}` (the least recently used leaves).
    #[arg(long, default_value_t = 8)]
    max_run_models: usize,
}

/// How Python models (MLflow python_function models) are loaded: served, scored or gated.
#[derive(Args, Clone, Debug)]
pub struct PythonArgs {
    /// An interpreter with the packages of the Python models to serve (MLflow python_function
    /// models: scikit-learn pickles, custom PythonModels), run as worker processes; without it
    /// such models are refused. Loading a pickle runs its code: serve only models you trust.
    #[arg(long, env = "SHIPYARD_PYTHON")]
    python: Option<PathBuf>,
    /// Worker processes per Python model version (each holds the model in memory).
    #[arg(long, default_value_t = 1)]
    python_workers: usize,
    /// Requests waiting for a Python worker; beyond it requests get 503.
    #[arg(long, default_value_t = 64)]
    python_max_queue: usize,
    /// Replace a Python worker whose resident memory exceeds this many MiB after a request
    /// (0: no limit).
    #[arg(long, default_value_t = 0)]
    python_max_rss_mib: u64,
    /// OpenMP / BLAS threads per Python worker.
    #[arg(long, default_value_t = 1)]
    python_threads: usize,
    /// Rows one call of a scikit-learn model may take when predictions waiting for a Python
    /// worker are joined (a forest costs about the same for 1 row as for 100); 0: no joining.
    #[arg(long, default_value_t = 256)]
    python_max_batch_rows: usize,
    /// Seconds a Python worker may take to start and load its model.
    #[arg(long, default_value_t = 120)]
    python_load_timeout_s: u64,
    /// Where Python models get their interpreter, as MLflow names it: `local`, the one
    /// `--python` names; `uv`, an environment per model built with uv from the
    /// `python_env.yaml` and `requirements.txt` MLflow logged with it, kept under --env-root
    /// by their content and built once (at load, never per request).
    #[arg(long, value_enum, default_value_t = EnvManagerArg::Local)]
    env_manager: EnvManagerArg,
    /// The uv program for `--env-manager uv` (looked up in PATH).
    #[arg(long, env = "SHIPYARD_UV", default_value = "uv")]
    uv: PathBuf,
    /// Where `--env-manager uv` keeps model environments and uv's cache (default:
    /// ~/.cache/shipyard/envs).
    #[arg(long, env = "SHIPYARD_ENV_ROOT")]
    env_root: Option<PathBuf>,
    /// Load a pickle even when the interpreter's Python, scikit-learn, numpy or cloudpickle
    /// version differs from the model's in a way that makes unpickling unsafe.
    #[arg(long)]
    allow_version_mismatch: bool,
    /// How scikit-learn models are served: `auto` converts them to ONNX and serves the
    /// conversion when it gives the model's own answers on the verification rows, else Python
    /// workers; `onnx` serves any conversion; `python` never converts.
    #[arg(long, value_enum, default_value_t = SklearnEngineArg::Auto)]
    sklearn_engine: SklearnEngineArg,
}

/// `--env-manager`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvManagerArg {
    Local,
    Uv,
}

/// `--sklearn-engine`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SklearnEngineArg {
    Auto,
    Onnx,
    Python,
}

impl PythonArgs {
    /// Whether Python models can be served (an interpreter, or environments built by uv).
    pub fn given(&self) -> bool {
        self.python.is_some() || self.env_manager == EnvManagerArg::Uv
    }

    /// How scikit-learn models are served.
    pub fn sklearn_engine(&self) -> SklearnEngine {
        match self.sklearn_engine {
            SklearnEngineArg::Auto => SklearnEngine::Auto,
            SklearnEngineArg::Onnx => SklearnEngine::Onnx,
            SklearnEngineArg::Python => SklearnEngine::Python,
        }
    }

    /// How models are loaded; a Python model's request may take `timeout`.
    pub fn loader(&self, engine: EngineChoice, timeout: Duration) -> Loader {
        Loader { engine, python: self.pool(timeout), sklearn: self.sklearn_engine() }
    }

    /// How Python models are served, or `None` without an interpreter.
    pub fn pool(&self, timeout: Duration) -> Option<shipyard_pyfunc::PoolSettings> {
        let environments = (self.env_manager == EnvManagerArg::Uv).then(|| shipyard_pyfunc::env::UvEnvironments {
            uv: shipyard_pyfunc::pool::resolve_python(&self.uv),
            root: std::path::absolute(self.env_root.clone().unwrap_or_else(|| {
                let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
                home.join(".cache").join("shipyard").join("envs")
            }))
            .unwrap_or_default(),
        });
        let python = match (&self.python, &environments) {
            (Some(python), _) => python.clone(),
            (None, Some(_)) => PathBuf::from("python3"),
            (None, None) => return None,
        };
        Some(shipyard_pyfunc::PoolSettings {
            environments,
            workers: self.python_workers.max(1),
            max_queue: self.python_max_queue.max(1),
            timeout,
            load_timeout: Duration::from_secs(self.python_load_timeout_s.max(1)),
            max_rss_mib: self.python_max_rss_mib,
            threads_per_worker: self.python_threads.max(1),
            allow_version_mismatch: self.allow_version_mismatch,
            max_batch_rows: self.python_max_batch_rows,
            ..shipyard_pyfunc::PoolSettings::new(python)
        })
    }
}

impl ServingArgs {
    /// How models are loaded.
    pub fn loader(&self, engine: EngineChoice) -> Loader {
        self.python.loader(engine, Duration::from_millis(self.timeout_ms.max(1)))
    }

    pub fn settings(&self) -> ModelSettings {
        let defaults = ModelSettings::default();
        ModelSettings {
            max_concurrency: self.max_concurrency.unwrap_or(defaults.max_concurrency).max(1),
            max_queue: self.max_queue,
            queue_timeout: Duration::from_millis(self.queue_timeout_ms),
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            max_batch_rows: self.batch_max_rows,
            max_batch_wait: Duration::from_millis(self.batch_max_wait_ms),
            cache_entries: self.cache_entries,
            cache_ttl: Duration::from_secs(self.cache_ttl_s),
        }
    }

    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms.max(10))
    }

    /// How the prediction log runs, or `None` when it is off.
    pub fn log_settings(&self) -> Option<LogSettings> {
        if self.no_prediction_log || self.log_sample <= 0.0 {
            return None;
        }
        Some(LogSettings {
            capacity: self.log_buffer.max(1),
            sample: self.log_sample.min(1.0),
            retention: (self.log_retention_hours > 0).then(|| Duration::from_secs(self.log_retention_hours * 3600)),
            ..LogSettings::default()
        })
    }

    pub fn limits(&self) -> Limits {
        Limits { max_body_bytes: self.max_request_bytes, max_rows: self.max_rows.max(1) }
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// The model: a model directory, an .onnx file, runs:/RUN_ID/PATH, models:/NAME/VERSION or
    /// models:/NAME@ALIAS.
    #[arg(long, required_unless_present = "deployment", conflicts_with = "deployment")]
    model: Option<String>,
    /// Serve this deployment (`shipyard deploy`) as a replica, following its changes; needs
    /// --tracking-uri naming the metadata store (sqlite:///... or postgresql://...).
    #[arg(long)]
    deployment: Option<String>,
    /// Which engine runs ONNX models.
    #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
    engine: EngineArg,
    /// Threads for inference (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// The name the model is served under (default: the registered model's name, else the
    /// file or folder name).
    #[arg(long)]
    name: Option<String>,
    /// A model that answers when the primary fails or times out (any model URI).
    #[arg(long)]
    fallback: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    #[command(flatten)]
    serving: ServingArgs,
    #[command(flatten)]
    listener: crate::listen::ListenerArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

/// The name a model is served under when none is given.
fn default_name(version: &Option<(String, String)>, uri: &str) -> String {
    if let Some((name, _)) = version {
        return name.clone();
    }
    let path = Path::new(uri.trim_end_matches('/'));
    path.file_stem().and_then(|s| s.to_str()).filter(|s| !s.is_empty()).unwrap_or("model").to_owned()
}

pub fn run(args: ServeArgs) -> Result<crate::Outcome> {
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build_global()
            .context("sizing the inference thread pool")?;
    }
    if let Some(deployment) = args.deployment.clone() {
        return run_deployment(args, deployment);
    }
    let model_args = ModelArgs {
        model: args.model.clone().ok_or_else(|| anyhow::anyhow!("give --model or --deployment"))?,
        engine: args.engine,
        threads: args.threads,
    };
    let primary = fetch_model_files(&model_args, &args.store)?;
    let fallback = match &args.fallback {
        Some(uri) => {
            let fallback_args = ModelArgs { model: uri.clone(), engine: args.engine, threads: None };
            Some((fetch_model_files(&fallback_args, &args.store)?, uri.clone()))
        }
        None => None,
    };
    let name = args.name.clone().unwrap_or_else(|| default_name(&primary.version, &model_args.model));
    let addr = resolve(&args.host, args.port)?;
    let listener = args.listener.settings()?;
    let scheme = listener.scheme();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        let state = ServingState::new(args.serving.limits());
        let settings = args.serving.settings();
        let loader = args.serving.loader(EngineChoice::from(args.engine));
        // Models are loaded before the port opens: ready means ready.
        let load = async |fetched: Fetched, uri: &str| {
            let loaded = loader
                .load(fetched.path, fetched.files, uri)
                .await
                .map_err(|e| anyhow::anyhow!("loading {uri}: {e}"))?;
            crate::predict::keep_new_conversion(uri, &args.store, &loaded).await;
            Ok::<_, anyhow::Error>((loaded.engine, loaded.choice))
        };
        let fallback = match fallback {
            Some((fetched, uri)) => {
                let fallback_name = default_name(&fetched.version, &uri);
                let version = fetched.version.clone().map(|(_, v)| v);
                let (engine, choice) = load(fetched, &uri).await?;
                let served = ServedModel::new(fallback_name, version, engine, settings.clone(), None, &state.metrics);
                let _ = served.engine_choice.set(choice);
                Some(served)
            }
            None => None,
        };
        let version = primary.version.clone().map(|(_, v)| v);
        let (engine, choice) = load(primary, &model_args.model).await?;
        let engine_name = engine.name();
        let served = ServedModel::new(name.clone(), version.clone(), engine, settings, fallback, &state.metrics);
        let _ = served.engine_choice.set(choice);
        served.warm_up().await;
        state.registry.insert(served);
        let router = shipyard_serving::router(state.clone(), true);
        serve_until_signal(router, addr, listener, |bound| {
            tracing::info!(
                "Shipyard serving model '{name}'{} ({engine_name} engine) on {scheme}://{bound}",
                version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default()
            );
        })
        .await
    })?;
    Ok(crate::Outcome::Success)
}

/// Serves `router` on `addr` until Ctrl-C or SIGTERM; `announce` says where once bound.
async fn serve_until_signal(
    router: shipyard_serving::Router,
    addr: SocketAddr,
    listener: shipyard_listener::Settings,
    announce: impl FnOnce(SocketAddr),
) -> Result<()> {
    shipyard_listener::serve(router, addr, listener, crate::shutdown_signal(), announce)
        .await
        .with_context(|| format!("serving on {addr}"))?;
    tracing::info!("Shipyard model server stopped");
    Ok(())
}

/// `shipyard serve --deployment NAME`: a replica serving one deployment, from the store or a
/// tracking server, and following its changes (policy, moved aliases) within the sync interval.
fn run_deployment(args: ServeArgs, name: String) -> Result<crate::Outcome> {
    let addr = resolve(&args.host, args.port)?;
    // TLS files are read before anything is loaded: a bad one stops the command at once.
    args.listener.settings()?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        match args.store.server_url() {
            Some(url) => {
                let tracking = crate::tracking::Tracking::open(Some(url), Path::new(".")).await?;
                replicate(HttpSource(tracking), None, &args, &name, addr).await
            }
            None => {
                let db = args.store.database().await?;
                let artifacts = shipyard_store::ArtifactStore::open(&args.store.destination()).await?;
                let log = db.clone();
                replicate(StoreSource { db, artifacts }, Some(log), &args, &name, addr).await
            }
        }
    })?;
    Ok(crate::Outcome::Success)
}

/// Serves the deployment `name` from `source`; with `log`, records predictions there.
async fn replicate<S: Source>(
    source: S,
    log: Option<shipyard_store::Database>,
    args: &ServeArgs,
    name: &str,
    addr: SocketAddr,
) -> Result<()> {
    let state = ServingState::new(args.serving.limits());
    let writer = log.zip(args.serving.log_settings()).and_then(|(db, settings)| state.attach_log(db, settings));
    let mut catalog = Catalog::new(
        source,
        None,
        Deployments::Only(name.to_owned()),
        EngineChoice::from(args.engine),
        args.serving.settings(),
    )
    .with_loader(args.serving.loader(EngineChoice::from(args.engine)));
    // What this replica has applied is reported from the start, loads included.
    let reporting = catalog.report();
    // Loaded before the port opens: ready means ready.
    let report = catalog.sync(&state).await.with_context(|| format!("reading deployment '{name}'"));
    let report = match report {
        Ok(report) if report.failed.is_empty() && state.registry.deployment(name).is_some() => report,
        other => {
            reporting.stop().await;
            other?;
            anyhow::bail!("deployment '{name}' cannot be served: see the warnings above");
        }
    };
    drop(report);
    catalog.watch(state.clone(), args.serving.sync_interval());
    let router = shipyard_serving::router(state.clone(), true);
    let listener = args.listener.settings()?;
    let scheme = listener.scheme();
    let served = serve_until_signal(router, addr, listener, |bound| {
        reporting.set_address(bound);
        tracing::info!("Shipyard serving deployment '{name}' on {scheme}://{bound}");
    })
    .await;
    reporting.stop().await;
    if let Some(writer) = writer {
        writer.stop().await;
    }
    served
}

/// Monitor values and alerts as the server's Prometheus gauges and counters.
pub struct GaugeObserver(pub Arc<ServingState>);

impl shipyard_monitor::Observer for GaugeObserver {
    fn evaluated(&self, deployment: &str, values: &std::collections::BTreeMap<String, f64>) {
        for (metric, value) in values {
            self.0.metrics.set_monitor_value(deployment, metric, *value);
        }
    }

    fn fired(&self, alert: &shipyard_core::monitoring::Alert) {
        self.0.metrics.alert_fired(&alert.deployment, &alert.rule, &alert.severity);
    }
}

/// A tracking server as a replica's source: Shipyard's deployment route, MLflow's alias and
/// registered-model routes, and the proxied artifact API for the files.
struct HttpSource(crate::tracking::Tracking);

fn unavailable(e: anyhow::Error) -> shipyard_core::Error {
    shipyard_core::Error::Unavailable(format!("{e:#}"))
}

impl Source for HttpSource {
    async fn alias_targets(&self, _alias: &str) -> Result<Vec<VersionKey>, shipyard_core::Error> {
        // A replica serves one deployment, never a whole alias.
        Ok(Vec::new())
    }

    async fn deployments(&self, which: &Deployments) -> Result<Vec<DeploymentRecord>, shipyard_core::Error> {
        match which {
            Deployments::Only(name) => Ok(vec![self.0.deployment(name).await.map_err(unavailable)?]),
            Deployments::All | Deployments::None => Ok(Vec::new()),
        }
    }

    async fn alias_version(&self, model: &str, alias: &str) -> Result<Option<String>, shipyard_core::Error> {
        self.0.alias_version(model, alias).await.map_err(unavailable)
    }

    async fn serving_tags(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Vec<shipyard_core::entities::KeyValue>, shipyard_core::Error> {
        let mut tags = self.0.registered_model_tags(model).await.map_err(unavailable)?;
        tags.extend(self.0.model_version_tags(model, version).await.map_err(unavailable)?);
        Ok(tags)
    }

    async fn keep_conversion(&self, uri: &shipyard_runtime::ModelUri, dir: &Path) -> Result<(), shipyard_core::Error> {
        let (location, _) = self.0.model_location(uri).await.map_err(unavailable)?;
        self.0
            .upload_beside(&location, shipyard_pyfunc::convert::CACHE_DIR, dir, shipyard_serving::loader::KEPT_RECORD)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn fetch(&self, model: &str, version: &str, dir: &Path) -> Result<PathBuf, shipyard_core::Error> {
        let uri = shipyard_runtime::ModelUri::Version { name: model.to_owned(), version: version.to_owned() };
        let (location, _) = self.0.model_location(&uri).await.map_err(unavailable)?;
        self.0.download_model(&location, dir).await.map_err(unavailable)
    }

    async fn fetch_run(&self, run_id: &str, dir: &Path) -> Result<PathBuf, shipyard_core::Error> {
        let uri = shipyard_runtime::ModelUri::Run {
            run_id: run_id.to_owned(),
            path: shipyard_serving::catalog::RUN_MODEL_PATH.to_owned(),
        };
        let (location, _) = self.0.model_location(&uri).await.map_err(unavailable)?;
        self.0.download_model(&location, dir).await.map_err(unavailable)
    }

    async fn record_engine(
        &self,
        model: &str,
        version: &str,
        choice: &shipyard_serving::loader::Choice,
    ) -> Result<(), shipyard_core::Error> {
        for (key, value) in choice.tags() {
            self.0.set_model_version_tag(model, version, key, &value).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn report(&self, report: &shipyard_core::rollout::ProcessReport) -> Result<(), shipyard_core::Error> {
        self.0.report_serving_process(report).await.map_err(unavailable)
    }

    async fn withdraw(&self, id: &str) -> Result<(), shipyard_core::Error> {
        self.0.remove_serving_process(id).await.map_err(unavailable)
    }
}

/// The serving state of `shipyard server`: every registered model's `alias` version and every
/// deployment, kept current by a watcher that polls the store every `interval`; and the task
/// reporting what it has applied (stop it when the server stops).
pub async fn catalog_state(
    db: shipyard_store::Database,
    artifacts: shipyard_store::ArtifactStore,
    alias: &str,
    serving: &ServingArgs,
    interval: Duration,
    registered: Option<tokio::sync::mpsc::Receiver<VersionKey>>,
) -> Result<(Arc<ServingState>, Reporting<StoreSource>)> {
    let state = ServingState::new(serving.limits());
    let mut catalog = Catalog::new(
        StoreSource { db, artifacts },
        Some(alias),
        Deployments::All,
        EngineChoice::Auto,
        serving.settings(),
    )
    .with_loader(serving.loader(EngineChoice::Auto));
    state.serve_runs(catalog.run_models(serving.max_run_models));
    if let Some(registered) = registered {
        catalog.prepare_registered(registered);
    }
    let reporting = catalog.report();
    // The first sync before the port opens, so models are ready when the server is.
    let report = match catalog.sync(&state).await.context("reading the models to serve") {
        Ok(report) => report,
        Err(e) => {
            reporting.stop().await;
            return Err(e);
        }
    };
    if !report.loaded.is_empty() {
        tracing::info!(
            "serving {} model(s) with the '{alias}' alias: {}",
            report.loaded.len(),
            report.loaded.iter().map(|(n, v)| format!("{n}/{v}")).collect::<Vec<_>>().join(", ")
        );
    }
    catalog.watch(state.clone(), interval);
    Ok((state, reporting))
}

/// The address `host:port` names.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    format!("{host}:{port}")
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (host, port).to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or(())
        })
        .map_err(|()| anyhow::anyhow!("cannot resolve the listen address {host}:{port}"))
}
