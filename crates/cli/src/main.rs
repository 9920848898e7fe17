//! The `shipyard` command.
//!
//! One binary for every stage. This file holds the command-line definition and the glue between
//! it and the library crates; it is not a library. Errors are `anyhow` here, at the edge, and
//! printed with their causes.
//!
//! Exit codes, for every command: 0 success, 1 checks ran and failed (a drift, a failed
//! validation), 2 usage or input error (clap's own usage errors included).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use shipyard_server::{AppState, ServerConfig};
use shipyard_store::{ArtifactStore, Database, DatabaseUri};

/// Writes to stdout; a closed pipe (`shipyard ... | head`) ends the program quietly instead of
/// panicking as `print!` would.
macro_rules! out {
    ($($arg:tt)*) => { $crate::emit(&format!($($arg)*)) };
}
/// [`out!`] with a newline.
macro_rules! outln {
    () => { $crate::emit("\n") };
    ($($arg:tt)*) => { $crate::emit(&format!("{}\n", format_args!($($arg)*))) };
}

mod client;
mod data;
mod datasets;
mod deploy;
mod lineage;
mod listen;
mod models;
mod monitor;
mod pipeline;
mod predict;
mod promote;
mod quickstart;
mod rollout;
mod serve;
mod tracking;
mod train;

/// Writes `text` to stdout. On a broken pipe the reader is gone: exit with success, as a
/// program killed by SIGPIPE would have stopped without an error message.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(2);
    }
}
use tracking::{Tracking, print_table};

/// Shipyard: experiment tracking, model registry, serving and monitoring in one binary.
#[derive(Parser)]
#[command(name = "shipyard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tracking and registry server (MLflow's REST API, proxied artifacts).
    Server(Box<ServerArgs>),
    /// List and create experiments.
    #[command(subcommand)]
    Experiments(ExperimentsCommand),
    /// Search runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Profile, validate and compare tables; version datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a model on a table, evaluate it on a held-out split, and record the run.
    Train(Box<train::TrainArgs>),
    /// Score a table with a model (streamed; CSV or Parquet out).
    Predict(Box<predict::PredictArgs>),
    /// Serve one model over the seed's /predict, MLflow's /invocations and the Open Inference
    /// Protocol (KServe, Triton), with /metrics.
    Serve(Box<serve::ServeArgs>),
    /// Commands about registered models: timing, gates, promotion, rollback, history.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Serve registered models under a traffic policy (single, canary, A/B, shadow); list, show
    /// or delete deployments.
    Deploy(Box<deploy::DeployCommand>),
    /// Where a model version came from and went: dataset versions, run, gates, alias moves,
    /// deployments.
    Lineage(Box<lineage::LineageArgs>),
    /// Production monitoring of deployments: configure monitors and alert rules, evaluate,
    /// send ground truth, list alerts, write reports.
    #[command(subcommand)]
    Monitor(Box<monitor::MonitorCommand>),
    /// Run a pipeline file (validate, train, gate, register, promote, deploy, smoke-test,
    /// monitor) with step caching; show how pipeline runs went.
    #[command(subcommand)]
    Pipeline(Box<pipeline::PipelineCommand>),
    /// The whole pipeline on a bundled dataset, from nothing: an embedded server, training,
    /// gates, a canary, live traffic, a drift alert and an automated rollback, narrated.
    Quickstart(Box<quickstart::QuickstartArgs>),
}

/// How a command that ran to the end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command's checks ran and at least one failed: exit status 1.
    ChecksFailed,
}

/// Where a client-side command reads and writes tracking data.
#[derive(Args, Clone)]
struct ClientArgs {
    /// http(s)://host:port for a server, or sqlite:///path / postgresql://... to open the store
    /// directly (default: SHIPYARD_HOME/shipyard.db).
    #[arg(long, env = "SHIPYARD_TRACKING_URI")]
    tracking_uri: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    home: HomeArgs,
}

/// Output of commands that print records: a table for people, JSON for scripts.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// JSON (MLflow's shapes for tracking data).
    Json,
}

#[derive(Subcommand)]
enum ExperimentsCommand {
    /// List active experiments.
    List(ClientArgs),
    /// Create an experiment; prints its id.
    Create {
        /// Experiment name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// List the runs of an experiment, newest first.
    List {
        /// Experiment id or name.
        #[arg(long)]
        experiment: String,
        /// Search filter, e.g. "metrics.accuracy > 0.9 AND params.model = 'rf'".
        #[arg(long)]
        filter: Option<String>,
        /// Most runs to list.
        #[arg(long, default_value_t = 100)]
        max_results: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Where Shipyard keeps its data when no URI is given.
#[derive(Args, Clone)]
pub struct HomeArgs {
    /// Folder for the default SQLite database and artifacts.
    #[arg(long, env = "SHIPYARD_HOME", default_value = "./shipyard-data", global = true)]
    pub home: PathBuf,
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Metadata database: sqlite:///path/shipyard.db or postgresql://user:pass@host:port/db
    /// (default: SHIPYARD_HOME/shipyard.db).
    #[arg(long, env = "SHIPYARD_BACKEND_STORE_URI")]
    backend_store_uri: Option<String>,
    /// Artifact root: a folder, file://, s3://bucket/prefix, gs://bucket/prefix or
    /// az://container/prefix (default: SHIPYARD_HOME/artifacts).
    #[arg(long, env = "SHIPYARD_ARTIFACTS_DESTINATION")]
    artifacts_destination: Option<String>,
    /// Largest JSON request body in bytes; larger ones get 413.
    #[arg(long, default_value_t = shipyard_server::wire::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Largest artifact upload in bytes; larger ones get 413.
    #[arg(long, default_value_t = 64 * 1024 * 1024 * 1024)]
    max_artifact_bytes: u64,
    /// Serve every registered model's version with this alias at /predict/{model}, /v2/... and
    /// /metrics, following the alias when it moves; and every deployment at /predict/{name}.
    #[arg(long, default_value = "production")]
    serve_alias: String,
    /// Serve no models: tracking and registry only.
    #[arg(long)]
    no_model_serving: bool,
    /// Serve no web UI (by default at `/` on the same port).
    #[arg(long)]
    no_ui: bool,
    /// Do not evaluate deployments' monitors on their schedule.
    #[arg(long)]
    no_monitors: bool,
    /// Milliseconds between checks for monitors whose interval has passed.
    #[arg(long, default_value_t = 1000, hide = true)]
    monitor_tick_ms: u64,
    /// Trainings clients may run on this server at once (`shipyard train --tracking-uri` to it);
    /// more are refused with 503 until one ends.
    #[arg(long, default_value_t = 2)]
    max_trainings: usize,
    /// Print every route this server would serve with its permission (JSON) and exit.
    #[arg(long)]
    routes: bool,
    #[command(flatten)]
    serving: serve::ServingArgs,
    #[command(flatten)]
    listener: listen::ListenerArgs,
    #[command(flatten)]
    webhooks: monitor::WebhookArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    home: HomeArgs,
}

/// Logins and permissions (docs/security.md).
#[derive(Args, Clone, Debug, Default)]
struct AuthArgs {
    /// Require a login: users with passwords or API tokens, MLflow 3.17's permissions. The
    /// first start makes an admin from SHIPYARD_ADMIN_PASSWORD (and SHIPYARD_ADMIN_USERNAME,
    /// default `admin`).
    #[arg(long, env = "SHIPYARD_AUTH")]
    auth: bool,
    /// Listen on a non-loopback address without --auth (something in front authenticates).
    #[arg(long, conflicts_with = "auth")]
    insecure_no_auth: bool,
    /// What users may do with what nothing grants them: READ (MLflow's default), USE, EDIT,
    /// MANAGE or NO_PERMISSIONS.
    #[arg(long, default_value = "READ")]
    auth_default_permission: String,
    /// Answer /metrics to admins only (by default it is public, for Prometheus).
    #[arg(long)]
    private_metrics: bool,
}

impl AuthArgs {
    /// The authority when --auth is on (the first admin made if needed); refuses a
    /// non-loopback address without it.
    async fn authority(
        &self,
        db: &Database,
        addr: std::net::SocketAddr,
    ) -> Result<Option<Arc<shipyard_auth::Authority>>> {
        if !self.auth {
            if !addr.ip().is_loopback() && !self.insecure_no_auth {
                anyhow::bail!(
                    "refusing to listen on {addr} without authentication: anyone who can reach it could change \
                     or delete everything. Pass --auth, or --insecure-no-auth if a proxy in front authenticates"
                );
            }
            return Ok(None);
        }
        let default = shipyard_auth::Permission::parse(&self.auth_default_permission).map_err(anyhow::Error::msg)?;
        if default == shipyard_auth::Permission::Deny {
            anyhow::bail!("--auth-default-permission cannot be DENY: use NO_PERMISSIONS");
        }
        let username = std::env::var(shipyard_auth::accounts::ADMIN_USERNAME_VAR)
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "admin".to_owned());
        let password = std::env::var(shipyard_auth::accounts::ADMIN_PASSWORD_VAR).ok();
        match shipyard_auth::accounts::bootstrap_admin(db, &username, password.as_deref()).await? {
            shipyard_auth::accounts::Bootstrap::Created(name) => tracing::info!("made the first admin, '{name}'"),
            shipyard_auth::accounts::Bootstrap::Existing => {}
        }
        let authenticator = shipyard_auth::Authenticator::new(db.clone(), shipyard_auth::AuthSettings::default());
        Ok(Some(shipyard_auth::Authority::new(authenticator, default)))
    }
}

/// Standard error for log events, one line per event: a newline or carriage return inside an
/// event (a name a client chose, an error's text) is written as `\n` / `\r`, so no request can
/// forge a log line (CWE-117). The formatter hands each event over in one write.
struct OneLineStderr;

impl std::io::Write for OneLineStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, ends_line) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (buf, false),
        };
        let mut line = Vec::with_capacity(buf.len() + 8);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(b),
            }
        }
        if ends_line {
            line.push(b'\n');
        }
        std::io::Write::write_all(&mut std::io::stderr().lock(), &line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut std::io::stderr())
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The server narrates; client-side commands print only their results (and warnings).
    // The quickstart narrates itself: alerts and steps are part of its story, not warnings.
    let default_filter = match cli.command {
        Command::Server(_) | Command::Serve(_) => "info,sqlx=warn",
        Command::Quickstart(_) => "warn,shipyard::alert=off,shipyard::pipeline=off",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHIPYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(|| OneLineStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        // CPU-bound table work runs on plain threads, outside any async runtime.
        Command::Data(cmd) => data::run(cmd),
        Command::Train(args) => train::run(*args),
        Command::Predict(args) => predict::run(*args),
        Command::Models(cmd) => models::run(cmd),
        Command::Deploy(cmd) => deploy::run(*cmd),
        Command::Lineage(args) => lineage::run(*args),
        Command::Monitor(cmd) => monitor::run(*cmd),
        Command::Pipeline(cmd) => pipeline::run(*cmd),
        Command::Quickstart(args) => quickstart::run(*args),
        Command::Serve(args) => serve::run(*args),
        command => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(async {
                match command {
                    Command::Server(args) => run_server(*args).await,
                    Command::Experiments(cmd) => experiments(cmd).await,
                    Command::Runs(cmd) => runs(cmd).await,
                    Command::Data(_)
                    | Command::Train(_)
                    | Command::Predict(_)
                    | Command::Models(_)
                    | Command::Deploy(_)
                    | Command::Lineage(_)
                    | Command::Monitor(_)
                    | Command::Pipeline(_)
                    | Command::Quickstart(_)
                    | Command::Serve(_) => {
                        unreachable!("handled above")
                    }
                }
                .map(|()| Outcome::Success)
            }),
            Err(e) => Err(anyhow::anyhow!("cannot start the async runtime: {e}")),
        },
    };
    match result {
        Ok(Outcome::Success) => std::process::ExitCode::SUCCESS,
        Ok(Outcome::ChecksFailed) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn experiments(cmd: ExperimentsCommand) -> Result<()> {
    match cmd {
        ExperimentsCommand::List(args) => {
            let tracking = Tracking::open(args.tracking_uri.as_deref(), &args.home.home).await?;
            let experiments = tracking.list_experiments().await?;
            if args.format == Format::Json {
                outln!("{}", serde_json::to_string_pretty(&experiments)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = experiments
                .iter()
                .map(|e| vec![text(&e["experiment_id"]), text(&e["name"]), text(&e["artifact_location"])])
                .collect();
            print_table(&["ID", "NAME", "ARTIFACT LOCATION"], &rows);
            Ok(())
        }
        ExperimentsCommand::Create { name, client } => {
            let tracking = Tracking::open(client.tracking_uri.as_deref(), &client.home.home).await?;
            let id = tracking.create_experiment(&name).await?;
            if client.format == Format::Json {
                outln!("{}", serde_json::json!({ "experiment_id": id }));
            } else {
                outln!("{id}");
            }
            Ok(())
        }
    }
}

async fn runs(cmd: RunsCommand) -> Result<()> {
    match cmd {
        RunsCommand::List { experiment, filter, max_results, client } => {
            let tracking = Tracking::open(client.tracking_uri.as_deref(), &client.home.home).await?;
            let experiment_id = tracking.experiment_id(&experiment).await?;
            let runs = tracking.search_runs(&experiment_id, filter.as_deref(), max_results).await?;
            if client.format == Format::Json {
                outln!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|r| {
                    let metrics = r["data"]["metrics"]
                        .as_array()
                        .map(|ms| ms.iter().map(|m| format!("{}={}", text(&m["key"]), m["value"])).collect::<Vec<_>>())
                        .unwrap_or_default()
                        .join(" ");
                    vec![text(&r["info"]["run_id"]), text(&r["info"]["run_name"]), text(&r["info"]["status"]), metrics]
                })
                .collect();
            print_table(&["RUN ID", "NAME", "STATUS", "METRICS"], &rows);
            Ok(())
        }
    }
}

/// A JSON value as display text (strings without quotes).
fn text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| if v.is_null() { String::new() } else { v.to_string() }, str::to_owned)
}

/// The default database URI under the home folder.
fn default_database(home: &std::path::Path) -> DatabaseUri {
    DatabaseUri::Sqlite(home.join("shipyard.db"))
}

async fn run_server(args: ServerArgs) -> Result<()> {
    if args.routes {
        let mut policies = shipyard_server::policies();
        if !args.no_ui {
            policies = policies.merge(shipyard_ui::policies());
        }
        if !args.no_model_serving {
            policies = policies.merge(shipyard_serving::policies(false, !args.auth.private_metrics));
        }
        outln!("{}", serde_json::to_string_pretty(&policies.to_json())?);
        return Ok(());
    }
    let (_, running) = start_server(args, shutdown_signal()).await?;
    running.await.map_err(|e| anyhow::anyhow!("the server task failed: {e}"))?
}

/// Opens the stores, starts serving in a task and returns the bound address; the task ends
/// (having written the prediction log and closed the store) after `shutdown` resolves.
pub(crate) async fn start_server(
    args: ServerArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<Result<()>>)> {
    let database_uri = match &args.backend_store_uri {
        Some(uri) => DatabaseUri::parse(uri)?,
        None => default_database(&args.home.home),
    };
    let destination =
        args.artifacts_destination.clone().unwrap_or_else(|| args.home.home.join("artifacts").display().to_string());
    let db = Database::connect(&database_uri)
        .await
        .with_context(|| format!("opening the metadata store {}", database_uri.display()))?;
    let artifacts =
        ArtifactStore::open(&destination).await.with_context(|| format!("opening the artifact store {destination}"))?;
    let addr = serve::resolve(&args.host, args.port)?;
    let listener = args.listener.settings()?;
    let scheme = listener.scheme();
    let webhooks = args.webhooks.settings()?;
    let authority = args.auth.authority(&db, addr).await?;
    let artifacts_for_serving = artifacts.clone();
    // New versions are prepared for serving (a scikit-learn model converted and verified) as
    // they are registered, when this server serves Python models.
    let (versions_created, registered) = if args.no_model_serving || !args.serving.python.given() {
        (None, None)
    } else {
        let (sender, receiver) = tokio::sync::mpsc::channel(256);
        (Some(sender), Some(receiver))
    };
    // Promotion gates run in this process (the UI's promote form, remote `models promote`),
    // loading models as serving does; with logins, callers name tables as dataset versions.
    let releaser = shipyard_release::Releaser {
        db: db.clone(),
        artifacts: artifacts_for_serving.clone(),
        cache: args.home.home.join("cache").join("datasets"),
        loader: args.serving.python.loader(shipyard_runtime::EngineChoice::Auto, shipyard_release::PYTHON_GATE_TIMEOUT),
        local_paths: authority.is_none(),
    };
    // Remote `monitor evaluate` runs a monitor of its own in this process, as the local command
    // does (the last firing of each rule is read back from the store).
    let evaluator_retrainer = pipeline::InProcessRetrainer::new(
        db.clone(),
        artifacts_for_serving.clone(),
        datasets::DatasetStoreArgs::new(&args.home.home, args.backend_store_uri.clone(), Some(destination.clone())),
    );
    let evaluator = shipyard_monitor::Monitor::new(
        db.clone(),
        artifacts_for_serving.clone(),
        args.home.home.join("cache").join("datasets"),
        Arc::new(shipyard_monitor::Quiet),
    )?
    .with_retrainer(evaluator_retrainer.clone())
    .with_webhooks(webhooks.clone())?;
    let state = AppState {
        db: db.clone(),
        artifacts,
        config: Arc::new(ServerConfig {
            max_body_bytes: args.max_body_bytes,
            max_artifact_bytes: args.max_artifact_bytes,
        }),
        versions_created,
        auth: authority.clone(),
        releaser: Some(releaser.clone()),
        training: Some(shipyard_server::training::Training::new(
            shipyard_training::Trainer {
                db: db.clone(),
                artifacts: artifacts_for_serving.clone(),
                cache: args.home.home.join("cache").join("datasets"),
                local_paths: authority.is_none(),
            },
            args.max_trainings,
        )),
        monitors: Some(shipyard_server::monitors::Monitors {
            monitor: Arc::new(evaluator),
            local_paths: authority.is_none(),
        }),
    };
    let store_display = database_uri.display();
    let (mut app, mut policies) = shipyard_server::app(state);
    if !args.no_ui {
        // A past monitor window (the drift heat-map's click-through) is computed by a monitor
        // of its own: it only reads, so it needs neither the schedule nor the gauges.
        let windows = shipyard_monitor::Monitor::new(
            db.clone(),
            artifacts_for_serving.clone(),
            args.home.home.join("cache").join("datasets"),
            Arc::new(shipyard_monitor::Quiet),
        )?;
        let (ui, ui_policies) = shipyard_ui::app(
            shipyard_ui::UiState::new(db.clone(), Some(artifacts_for_serving.clone()), Some(releaser))
                .with_auth(authority.clone())
                .with_monitor(Arc::new(windows))
                .with_cache(args.home.home.join("cache").join("datasets")),
        );
        app = app.merge(ui);
        policies = policies.merge(ui_policies);
    }
    let mut log_writer = None;
    let mut serving_state = None;
    let mut reporting = None;
    if !args.no_model_serving {
        let (serving, reporter) = serve::catalog_state(
            db.clone(),
            artifacts_for_serving.clone(),
            &args.serve_alias,
            &args.serving,
            args.serving.sync_interval(),
            registered,
        )
        .await?;
        log_writer = args.serving.log_settings().and_then(|settings| serving.attach_log(db.clone(), settings));
        let (serving_routes, serving_policies) =
            shipyard_serving::app(serving.clone(), false, !args.auth.private_metrics);
        app = app.merge(serving_routes);
        policies = policies.merge(serving_policies);
        serving_state = Some(serving);
        reporting = Some(reporter);
    }
    // Every route passes the gate when authentication is on.
    if let Some(authority) = authority {
        let login = (!args.no_ui).then_some(shipyard_ui::LOGIN_PAGE);
        let gate = shipyard_auth::Gate::new(authority, policies, args.max_body_bytes, login);
        app = app.layer(axum::middleware::from_fn_with_state(gate, shipyard_auth::gate::enforce));
    }
    let mut retraining = None;
    let monitors = if args.no_monitors {
        None
    } else {
        let observer: Arc<dyn shipyard_monitor::Observer> = match serving_state {
            Some(s) => Arc::new(serve::GaugeObserver(s)),
            None => Arc::new(shipyard_monitor::Quiet),
        };
        let cache = args.home.home.join("cache").join("datasets");
        let store =
            datasets::DatasetStoreArgs::new(&args.home.home, args.backend_store_uri.clone(), Some(destination.clone()));
        let retrainer = pipeline::InProcessRetrainer::new(db.clone(), artifacts_for_serving.clone(), store);
        retraining = Some(retrainer.clone());
        let monitor = Arc::new(
            shipyard_monitor::Monitor::new(db.clone(), artifacts_for_serving, cache, observer)?
                .with_retrainer(retrainer)
                .with_webhooks(webhooks)?,
        );
        Some(monitor.schedule(std::time::Duration::from_millis(args.monitor_tick_ms.max(10))))
    };
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let served = shipyard_listener::serve(app, addr, listener, shutdown, |bound| {
            if let Some(r) = &reporting {
                r.set_address(bound);
            }
            tracing::info!(
                "Shipyard server listening on {scheme}://{bound} (metadata: {store_display}, artifacts: {destination})"
            );
            let _ = bound_tx.send(bound);
        })
        .await
        .with_context(|| format!("serving on {addr}"));
        if let Some(task) = monitors {
            task.abort();
        }
        // No longer serving: nothing waits for this process.
        if let Some(r) = reporting {
            r.stop().await;
        }
        // A retraining run still going is stopped and recorded KILLED, not left RUNNING.
        if let Some(retrainer) = retraining {
            retrainer.stop().await;
        }
        evaluator_retrainer.stop().await;
        // In-flight requests have finished: what they handed to the log is written before exit.
        if let Some(writer) = log_writer {
            writer.stop().await;
        }
        db.close().await;
        tracing::info!("Shipyard server stopped");
        served
    });
    match bound_rx.await {
        Ok(bound) => Ok((bound, task)),
        // The task ended before binding: its error says why.
        Err(_) => match task.await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(anyhow::anyhow!("the server stopped before listening")),
            Err(e) => Err(anyhow::anyhow!("the server task failed: {e}")),
        },
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
