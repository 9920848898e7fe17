//! A supervised pool of Python worker processes serving one model version.
//!
//! Each worker is `python -I -u -c <shim> MODEL_DIR`, its standard input one end of a Unix
//! socket pair (the data channel; its stdout and stderr go to the log, line by line). It says
//! HELLO with its versions, which are judged ([`crate::versions`]) before it may load anything;
//! it is ready when it says READY. A slot task per worker pulls jobs from one bounded queue, so
//! an idle worker takes the next request (no round-robin onto a busy one), one request in
//! flight per worker. The task supervises its worker:
//! - a request past its deadline (counted from when it was queued) answers 504 and the worker,
//!   which Python cannot interrupt, is killed and replaced;
//! - a worker that exits or breaks the socket fails its request (503) and is respawned after a
//!   backoff (0.5 s doubling to 30 s); [`CRASH_LIMIT`] exits within [`CRASH_WINDOW`] break the
//!   pool: it answers every request with the reason, and whoever serves it keeps the version
//!   that served before;
//! - a worker over its memory ceiling after a request is replaced (drain, then restart);
//! - when the pool is dropped (a version swapped out, the server stopping) the queue closes,
//!   each worker finishes what it holds, is told SHUTDOWN, and is killed if still there 5 s on.
//!
//! Workers run with a scrubbed environment (no credentials, no proxies: only a PATH, a private
//! HOME, the locale, and per-worker thread caps for OpenMP / BLAS so N workers do not fight over
//! the cores). Loading a pickle runs its code: only models from the store are served.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::frame::{self, kind};
use crate::versions::{self, Saved};

/// The worker's program.
pub const SHIM: &str = include_str!("shim.py");

/// Worker exits within [`CRASH_WINDOW`] that break the pool.
pub const CRASH_LIMIT: usize = 5;
/// See [`CRASH_LIMIT`].
pub const CRASH_WINDOW: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a worker told to stop may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How a pool runs.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// The interpreter the workers run.
    pub python: PathBuf,
    /// Worker processes (each holds the model: a few hundred MiB for a forest).
    pub workers: usize,
    /// Requests waiting for a worker; more are refused at once (503).
    pub max_queue: usize,
    /// How long a request may take from when it is queued; past it the answer is 504 and the
    /// worker is replaced.
    pub timeout: Duration,
    /// How long a worker may take to start and load the model.
    pub load_timeout: Duration,
    /// A worker whose resident memory exceeds this after a request is replaced; 0: no limit.
    pub max_rss_mib: u64,
    /// OpenMP / BLAS threads per worker.
    pub threads_per_worker: usize,
    /// Load even when the versions differ in a way that makes unpickling unsafe.
    pub allow_version_mismatch: bool,
    /// Rows one model call may take when predictions waiting for a worker are joined (a
    /// forest's call costs about the same for 1 row as for 100); 0 or 1: no joining. Only for
    /// models whose answer has one row per input row (scikit-learn's `predict`).
    pub max_batch_rows: usize,
    /// `Some`: each model runs in its own environment, built by uv from what MLflow logged
    /// with it (`python` is then not used); `None`: every model runs in `python`.
    pub environments: Option<crate::env::UvEnvironments>,
}

/// `python` as a path that works from any folder: a relative path made absolute (without
/// resolving links: a venv's `python` is a link whose location picks the venv), a bare name
/// looked up in this process's `PATH` (workers run with a minimal one, in their own folder).
pub fn resolve_python(python: &Path) -> PathBuf {
    if python.components().count() == 1 && !python.is_absolute() {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join(python)).find(|candidate| candidate.is_file())
        });
        if let Some(found) = found {
            return found;
        }
    }
    std::path::absolute(python).unwrap_or_else(|_| python.to_path_buf())
}

impl PoolSettings {
    /// The defaults, for `python` (resolved by [`resolve_python`]).
    pub fn new(python: PathBuf) -> PoolSettings {
        PoolSettings {
            python: resolve_python(&python),
            workers: 1,
            max_queue: 64,
            timeout: Duration::from_secs(30),
            load_timeout: Duration::from_secs(120),
            max_rss_mib: 0,
            threads_per_worker: 1,
            allow_version_mismatch: false,
            max_batch_rows: 0,
            environments: None,
        }
    }
}

/// What a worker said about the model once loaded.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ModelInfo {
    /// MLmodel's `python_function.loader_module` (`mlflow.sklearn`, `mlflow.pyfunc.model`, ...).
    #[serde(default)]
    pub loader_module: Option<String>,
    #[serde(default)]
    pub has_signature: bool,
    /// A classifier's `classes_`, as JSON values (numbers or strings).
    #[serde(default)]
    pub classes: Option<Vec<Value>>,
    /// The estimator's `feature_names_in_`: the columns it was fitted on, in order.
    #[serde(default)]
    pub feature_names: Option<Vec<String>>,
    /// The estimator's `n_features_in_`.
    #[serde(default)]
    pub n_features: Option<usize>,
    /// The worker's Python version.
    #[serde(skip)]
    pub python: String,
    /// The worker's versions of the model's pinned packages.
    #[serde(skip)]
    pub packages: BTreeMap<String, Option<String>>,
}

/// A request for the model.
#[derive(Clone, Debug)]
pub enum Request {
    /// Predict the rows of `batch`, as a DataFrame (or, `positional`, as a 2-D array).
    Predict { batch: RecordBatch, positional: bool },
    /// An MLflow `/invocations` request, answered by MLflow's own scoring function.
    Invoke { content_type: String, body: bytes::Bytes },
}

impl Request {
    /// The rows of a prediction that may join a batch.
    fn batch_rows(&self) -> Option<usize> {
        match self {
            Request::Predict { batch, .. } => Some(batch.num_rows()),
            Request::Invoke { .. } => None,
        }
    }

    /// Predictions joined into one (their rows in order), when they can be.
    fn joined<'a>(requests: impl Iterator<Item = &'a Request>) -> Option<Request> {
        let mut batches = Vec::new();
        let mut positional = None;
        for request in requests {
            let Request::Predict { batch, positional: p } = request else { return None };
            if positional.is_some_and(|q| q != *p) {
                return None;
            }
            positional = Some(*p);
            batches.push(batch.clone());
        }
        let schema = batches.first()?.schema();
        let batch = arrow_select::concat::concat_batches(&schema, &batches).ok()?;
        Some(Request::Predict { batch, positional: positional.unwrap_or(false) })
    }
}

/// The model's answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A tabular prediction (an array, a Series or a DataFrame), as columns.
    Table(RecordBatch),
    /// A prediction that is not a table, as MLflow renders it to JSON.
    Json(Value),
    /// MLflow's answer to an `/invocations` request.
    Invoked { status: u16, mimetype: String, body: Vec<u8> },
}

/// Why a request got no answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PoolError {
    /// Every worker is busy and the queue is full (503).
    #[error("{0}")]
    Overloaded(String),
    /// The model took longer than the deadline (504).
    #[error("{0}")]
    Timeout(String),
    /// The worker died during the request (503; the next request goes to its replacement).
    #[error("{0}")]
    WorkerLost(String),
    /// The pool no longer serves: its workers crash in a loop, or it stopped (503).
    #[error("{0}")]
    Broken(String),
    /// The model refused the input (a client error).
    #[error("{0}")]
    Refused(String),
    /// The worker failed on something other than the input (500).
    #[error("{0}")]
    Model(String),
    /// The pool could not start: the interpreter, the versions, or the model's load.
    #[error("{0}")]
    Start(String),
}

/// The pool's state, for metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Workers started and ready.
    pub alive: AtomicI64,
    /// Workers answering a request.
    pub busy: AtomicI64,
    /// Requests waiting for a worker.
    pub queued: AtomicI64,
    /// Workers replaced (crashed, timed out, over their memory ceiling).
    pub restarts: AtomicU64,
    /// Resident memory per worker slot, in bytes, as last read.
    pub rss: Mutex<BTreeMap<usize, u64>>,
}

struct Job {
    request: Request,
    deadline: Instant,
    reply: oneshot::Sender<Result<Answer, PoolError>>,
}

struct Shared {
    model_dir: PathBuf,
    saved: Saved,
    settings: PoolSettings,
    /// The model version, for logs and messages.
    label: String,
    queue: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    stats: Arc<PoolStats>,
    crashes: Mutex<VecDeque<Instant>>,
    broken: Mutex<Option<String>>,
    closed: AtomicBool,
    /// The workers' HOME and working folder.
    home: tempfile::TempDir,
}

/// A model version's workers and their queue.
pub struct Pool {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    /// What the first worker said about the model.
    pub info: ModelInfo,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The queue closes with `jobs`; slots waiting out a backoff see this.
        self.shared.closed.store(true, Ordering::SeqCst);
    }
}

impl Pool {
    /// Starts the workers of the model in `model_dir` (`label` names it in logs), returning once
    /// the first is ready (the others start in the background), or why none could start.
    pub async fn start(
        model_dir: PathBuf,
        saved: Saved,
        settings: PoolSettings,
        label: String,
    ) -> Result<Pool, PoolError> {
        let home = tempfile::Builder::new()
            .prefix("shipyard-worker-")
            .tempdir()
            .map_err(|e| PoolError::Start(format!("creating the workers' home folder: {e}")))?;
        let (jobs, queue) = mpsc::channel(settings.max_queue.max(1));
        // Workers run in their own folder: the model's path must not be relative.
        let model_dir = std::path::absolute(&model_dir).unwrap_or(model_dir);
        let shared = Arc::new(Shared {
            model_dir,
            saved,
            label,
            queue: tokio::sync::Mutex::new(queue),
            stats: Arc::new(PoolStats::default()),
            crashes: Mutex::new(VecDeque::new()),
            broken: Mutex::new(None),
            closed: AtomicBool::new(false),
            home,
            settings,
        });
        let (first_tx, first_rx) = oneshot::channel();
        tokio::spawn(run_slot(shared.clone(), 0, Some(first_tx)));
        let info = first_rx.await.unwrap_or_else(|_| Err(PoolError::Start("the first worker's task ended".into())))?;
        for slot in 1..shared.settings.workers.max(1) {
            tokio::spawn(run_slot(shared.clone(), slot, None));
        }
        Ok(Pool { jobs, shared, info })
    }

    /// Answers `request` with the next free worker, within the pool's deadline.
    pub async fn call(&self, request: Request) -> Result<Answer, PoolError> {
        if let Some(reason) = self.broken() {
            return Err(PoolError::Broken(reason));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job { request, deadline: Instant::now() + self.shared.settings.timeout, reply };
        let stats = &self.shared.stats;
        stats.queued.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.jobs.try_send(job) {
            stats.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => PoolError::Overloaded(format!(
                    "all {} Python worker(s) of {} are busy and {} request(s) are waiting; retry later",
                    self.shared.settings.workers.max(1),
                    self.shared.label,
                    self.shared.settings.max_queue.max(1)
                )),
                mpsc::error::TrySendError::Closed(_) => PoolError::Broken(format!("{} has stopped", self.shared.label)),
            });
        }
        answer.await.unwrap_or_else(|_| {
            Err(self.broken().map_or_else(
                || PoolError::WorkerLost(format!("the worker of {} ended without an answer", self.shared.label)),
                PoolError::Broken,
            ))
        })
    }

    /// Why the pool no longer serves, if it does not.
    pub fn broken(&self) -> Option<String> {
        self.shared.broken.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a worker is ready to take a request.
    pub fn ready(&self) -> bool {
        self.broken().is_none() && self.shared.stats.alive.load(Ordering::SeqCst) > 0
    }

    /// The pool's counters.
    pub fn stats(&self) -> Arc<PoolStats> {
        self.shared.stats.clone()
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &PoolSettings {
        &self.shared.settings
    }
}

/// How a worker's service ended.
enum End {
    /// The queue closed and the worker finished its work: stop it.
    Drained,
    /// Replace the worker without counting a crash (memory ceiling).
    Recycle,
    /// The worker overran a deadline and was killed.
    TimedOut,
    /// The worker exited or broke the socket.
    Crashed(String),
}

/// One worker slot: starts a worker, serves jobs with it, and replaces it until the pool closes
/// or breaks. `first` receives the outcome of the first start.
async fn run_slot(shared: Arc<Shared>, slot: usize, mut first: Option<oneshot::Sender<Result<ModelInfo, PoolError>>>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if shared.closed.load(Ordering::SeqCst) || shared.broken.lock().map(|b| b.is_some()).unwrap_or(true) {
            return;
        }
        let started = tokio::time::timeout(shared.settings.load_timeout, Worker::start(&shared, slot)).await;
        let started = started.unwrap_or_else(|_| {
            Err(PoolError::Start(format!(
                "the worker did not load {} within {} s",
                shared.label,
                shared.settings.load_timeout.as_secs()
            )))
        });
        let reason = match started {
            Ok((mut worker, info)) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(info));
                }
                shared.stats.alive.fetch_add(1, Ordering::SeqCst);
                let end = worker.serve(&shared, slot).await;
                shared.stats.alive.fetch_sub(1, Ordering::SeqCst);
                shared.stats.rss.lock().unwrap_or_else(|e| e.into_inner()).remove(&slot);
                match end {
                    End::Drained => {
                        worker.stop().await;
                        return;
                    }
                    End::Recycle => {
                        shared.stats.restarts.fetch_add(1, Ordering::SeqCst);
                        worker.stop().await;
                        backoff = FIRST_BACKOFF;
                        continue;
                    }
                    End::TimedOut => {
                        shared.stats.restarts.fetch_add(1, Ordering::SeqCst);
                        worker.kill().await;
                        backoff = FIRST_BACKOFF;
                        continue;
                    }
                    End::Crashed(reason) => {
                        shared.stats.restarts.fetch_add(1, Ordering::SeqCst);
                        worker.kill().await;
                        reason
                    }
                }
            }
            Err(e) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(e));
                    return;
                }
                e.to_string()
            }
        };
        tracing::warn!(model = %shared.label, slot, "Python worker lost: {reason}");
        if shared.note_crash(&reason) {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Shared {
    /// `job`, unless its client has gone or its deadline passed while it waited (then answered).
    fn live(&self, job: Job) -> Option<Job> {
        if job.reply.is_closed() {
            return None;
        }
        if Instant::now() >= job.deadline {
            let _ = job.reply.send(Err(PoolError::Timeout(format!(
                "the request waited {} ms for a free worker of {}",
                self.settings.timeout.as_millis(),
                self.label
            ))));
            return None;
        }
        Some(job)
    }

    /// Records a worker's exit; whether the pool is now broken (and every waiting request is
    /// answered with why).
    fn note_crash(&self, reason: &str) -> bool {
        let now = Instant::now();
        let mut crashes = self.crashes.lock().unwrap_or_else(|e| e.into_inner());
        crashes.push_back(now);
        while crashes.front().is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW) {
            crashes.pop_front();
        }
        if crashes.len() < CRASH_LIMIT {
            return false;
        }
        let message = format!(
            "{} is not served: its Python workers exited {} times within {} s (last: {reason})",
            self.label,
            crashes.len(),
            CRASH_WINDOW.as_secs()
        );
        tracing::error!(model = %self.label, "{message}");
        *self.broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
        drop(crashes);
        let shared = self.queue.try_lock();
        if let Ok(mut queue) = shared {
            while let Ok(job) = queue.try_recv() {
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                let _ = job.reply.send(Err(PoolError::Broken(message.clone())));
            }
        }
        true
    }
}

/// The environment a worker gets: nothing of Shipyard's own (no credentials, no proxies).
pub(crate) fn worker_env(settings: &PoolSettings, home: &Path) -> Vec<(&'static str, String)> {
    let threads = settings.threads_per_worker.max(1).to_string();
    let mut env = vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME", home.display().to_string()),
        ("TMPDIR", home.display().to_string()),
        ("LANG", "C.UTF-8".to_owned()),
        ("LC_ALL", "C.UTF-8".to_owned()),
        ("PYTHONNOUSERSITE", "1".to_owned()),
        ("PYTHONDONTWRITEBYTECODE", "1".to_owned()),
        ("GIT_PYTHON_REFRESH", "quiet".to_owned()),
    ];
    for var in
        ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"]
    {
        env.push((var, threads.clone()));
    }
    if settings.allow_version_mismatch {
        env.push(("SHIPYARD_ALLOW_VERSION_MISMATCH", "1".to_owned()));
    }
    env
}

#[derive(Deserialize)]
struct Hello {
    pid: u32,
    python: String,
    #[serde(default)]
    packages: BTreeMap<String, Option<String>>,
}

#[derive(Deserialize)]
struct Failure {
    message: String,
    #[serde(default)]
    traceback: Option<String>,
    #[serde(default)]
    client: bool,
}

/// A running worker process and its socket.
struct Worker {
    child: Child,
    socket: UnixStream,
    pid: u32,
}

impl Worker {
    /// Spawns a worker, judges its versions, lets it load the model and waits for READY.
    async fn start(shared: &Shared, slot: usize) -> Result<(Worker, ModelInfo), PoolError> {
        let start_error = |what: &str, e: &dyn std::fmt::Display| PoolError::Start(format!("{what}: {e}"));
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| start_error("creating the worker's socket", &e))?;
        ours.set_nonblocking(true).map_err(|e| start_error("creating the worker's socket", &e))?;
        let socket = UnixStream::from_std(ours).map_err(|e| start_error("creating the worker's socket", &e))?;
        let settings = &shared.settings;
        let mut command = Command::new(&settings.python);
        command
            .arg("-I")
            .arg("-u")
            .arg("-c")
            .arg(SHIM)
            .arg(&shared.model_dir)
            .env_clear()
            .envs(worker_env(settings, shared.home.path()))
            .current_dir(shared.home.path())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| start_error(&format!("starting the Python interpreter {}", settings.python.display()), &e))?;
        let pid = child.id().unwrap_or_default();
        let label = format!("{} worker {slot}", shared.label);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_log(out, label.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_log(err, label));
        }
        let mut worker = Worker { child, socket, pid };
        match worker.handshake(shared).await {
            Ok(info) => Ok((worker, info)),
            Err(e) => {
                worker.kill().await;
                Err(e)
            }
        }
    }

    async fn handshake(&mut self, shared: &Shared) -> Result<ModelInfo, PoolError> {
        let (k, body) = self.receive_or_exit().await.map_err(PoolError::Start)?;
        if k != kind::HELLO {
            return Err(PoolError::Start(format!("the worker began with frame kind {k}, not HELLO")));
        }
        let hello: Hello =
            serde_json::from_slice(&body).map_err(|e| PoolError::Start(format!("the worker's HELLO: {e}")))?;
        self.pid = hello.pid;
        let problems = versions::unsafe_differences(&shared.saved, &hello.python, &hello.packages);
        if !problems.is_empty() && !shared.settings.allow_version_mismatch {
            let _ = frame::write(&mut self.socket, kind::SHUTDOWN, &[]).await;
            return Err(PoolError::Start(format!(
                "{} is not loaded with {}: {} (unpickling across these versions is unsafe; use an environment with the model's versions, or allow the mismatch explicitly)",
                shared.label,
                shared.settings.python.display(),
                problems.join("; ")
            )));
        }
        for problem in &problems {
            tracing::warn!(model = %shared.label, "loading despite a version difference: {problem}");
        }
        frame::write(&mut self.socket, kind::LOAD, &[]).await.map_err(|e| PoolError::Start(format!("{e}")))?;
        let (k, body) = self.receive_or_exit().await.map_err(PoolError::Start)?;
        match k {
            kind::READY => {
                let mut info: ModelInfo =
                    serde_json::from_slice(&body).map_err(|e| PoolError::Start(format!("the worker's READY: {e}")))?;
                info.python = hello.python;
                info.packages = hello.packages;
                Ok(info)
            }
            kind::ERROR => {
                let failure: Failure = serde_json::from_slice(&body).unwrap_or(Failure {
                    message: String::from_utf8_lossy(&body).into(),
                    traceback: None,
                    client: false,
                });
                if let Some(tb) = &failure.traceback {
                    tracing::warn!(model = %shared.label, "loading failed:\n{tb}");
                }
                Err(PoolError::Start(format!("loading {} in Python failed: {}", shared.label, failure.message)))
            }
            other => Err(PoolError::Start(format!("the worker answered its load with frame kind {other}"))),
        }
    }

    /// The next frame, or why there is none (the worker's exit status when it exited).
    async fn receive_or_exit(&mut self) -> Result<(u8, Vec<u8>), String> {
        match frame::read(&mut self.socket).await {
            Ok(frame) => Ok(frame),
            Err(e) => {
                let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
                Err(match status {
                    Ok(Ok(status)) => format!("the worker exited ({status}); see its log above"),
                    _ => format!("the worker's socket failed: {e}"),
                })
            }
        }
    }

    /// Serves jobs until the queue closes, or the worker must be replaced. With batching on,
    /// predictions already waiting when the worker takes one join it in one model call (never
    /// waiting for more), each answered with its own rows.
    async fn serve(&mut self, shared: &Shared, slot: usize) -> End {
        // A job taken from the queue that could not join the batch before it.
        let mut carried: Option<Job> = None;
        loop {
            let job = match carried.take() {
                Some(job) => Some(job),
                None => tokio::select! {
                    job = async { shared.queue.lock().await.recv().await } => job.inspect(|_| {
                        shared.stats.queued.fetch_sub(1, Ordering::SeqCst);
                    }),
                    status = self.child.wait() => {
                        return End::Crashed(match status {
                            Ok(s) => format!("exited while idle ({s})"),
                            Err(e) => format!("cannot be waited for: {e}"),
                        });
                    }
                },
            };
            let Some(job) = job else { return End::Drained };
            let Some(job) = shared.live(job) else { continue };
            let mut jobs = vec![job];
            if let Some(mut rows) = jobs[0].request.batch_rows().filter(|_| shared.settings.max_batch_rows > 1)
                && let Ok(mut queue) = shared.queue.try_lock()
            {
                while rows < shared.settings.max_batch_rows {
                    let Ok(next) = queue.try_recv() else { break };
                    shared.stats.queued.fetch_sub(1, Ordering::SeqCst);
                    let Some(next) = shared.live(next) else { continue };
                    match next.request.batch_rows() {
                        Some(n) if rows + n <= shared.settings.max_batch_rows => {
                            rows += n;
                            jobs.push(next);
                        }
                        _ => {
                            carried = Some(next);
                            break;
                        }
                    }
                }
            }
            shared.stats.busy.fetch_add(1, Ordering::SeqCst);
            let end = self.answer(shared, jobs).await;
            shared.stats.busy.fetch_sub(1, Ordering::SeqCst);
            if let Some(end) = end {
                if let Some(job) = carried.take() {
                    let _ = job.reply.send(Err(PoolError::WorkerLost(format!(
                        "the Python worker of {} is being replaced; retry",
                        shared.label
                    ))));
                }
                return end;
            }
            if let Some(rss) = resident_bytes(self.pid) {
                shared.stats.rss.lock().unwrap_or_else(|e| e.into_inner()).insert(slot, rss);
                let ceiling = shared.settings.max_rss_mib.saturating_mul(1 << 20);
                if ceiling > 0 && rss > ceiling {
                    tracing::info!(model = %shared.label, slot, "replacing a worker at {} MiB (limit {} MiB)", rss >> 20, shared.settings.max_rss_mib);
                    if let Some(job) = carried.take() {
                        let _ = job.reply.send(Err(PoolError::WorkerLost(format!(
                            "the Python worker of {} is being replaced; retry",
                            shared.label
                        ))));
                    }
                    return End::Recycle;
                }
            }
        }
    }

    /// Answers `jobs` (one request, or predictions to run as one), within the earliest
    /// deadline; `Some` when the worker must be replaced.
    async fn answer(&mut self, shared: &Shared, jobs: Vec<Job>) -> Option<End> {
        let deadline = jobs.iter().map(|j| j.deadline).min().unwrap_or_else(Instant::now);
        let request = match &jobs[..] {
            [one] => one.request.clone(),
            many => match Request::joined(many.iter().map(|j| &j.request)) {
                Some(joined) => joined,
                None => {
                    // Cannot be joined (it should): one at a time.
                    for job in jobs {
                        if let Some(end) = Box::pin(self.answer(shared, vec![job])).await {
                            return Some(end);
                        }
                    }
                    return None;
                }
            },
        };
        let outcome = tokio::select! {
            outcome = self.exchange(&request) => Some(outcome),
            () = tokio::time::sleep_until(deadline) => None,
        };
        match outcome {
            None => {
                for job in jobs {
                    let _ = job.reply.send(Err(PoolError::Timeout(format!(
                        "{} did not answer within {} ms; its worker was stopped and is being replaced",
                        shared.label,
                        shared.settings.timeout.as_millis()
                    ))));
                }
                Some(End::TimedOut)
            }
            Some(Err(Exchange::Lost(reason))) => {
                let reason = self.exit_reason(reason).await;
                for job in jobs {
                    let _ = job.reply.send(Err(PoolError::WorkerLost(format!(
                        "the Python worker of {} {reason} during the request; it is being replaced",
                        shared.label
                    ))));
                }
                Some(End::Crashed(reason))
            }
            Some(Err(Exchange::Failed(PoolError::Refused(_)))) if jobs.len() > 1 => {
                // One request's rows were refused: each alone, so it fails only itself.
                for job in jobs {
                    if let Some(end) = Box::pin(self.answer(shared, vec![job])).await {
                        return Some(end);
                    }
                }
                None
            }
            Some(Err(Exchange::Failed(e))) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
                None
            }
            Some(Ok(Answer::Table(table)))
                if jobs.len() > 1 && table.num_rows() == request.batch_rows().unwrap_or(0) =>
            {
                let mut offset = 0;
                for job in jobs {
                    let n = job.request.batch_rows().unwrap_or(0);
                    let _ = job.reply.send(Ok(Answer::Table(table.slice(offset, n))));
                    offset += n;
                }
                None
            }
            Some(Ok(answer)) if jobs.len() == 1 => {
                for job in jobs {
                    let _ = job.reply.send(Ok(answer.clone()));
                }
                None
            }
            Some(Ok(_)) => {
                // An answer that is not one row per row: each alone.
                for job in jobs {
                    if let Some(end) = Box::pin(self.answer(shared, vec![job])).await {
                        return Some(end);
                    }
                }
                None
            }
        }
    }

    /// Why the worker stopped answering: its exit status, if it exited.
    async fn exit_reason(&mut self, io: String) -> String {
        match tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await {
            Ok(Ok(status)) => format!("exited ({status})"),
            _ => format!("broke its socket ({io})"),
        }
    }

    /// Sends one request and reads its answer.
    async fn exchange(&mut self, request: &Request) -> Result<Answer, Exchange> {
        let lost = |e: std::io::Error| Exchange::Lost(e.to_string());
        match request {
            Request::Predict { batch, positional } => {
                let data = frame::ipc_encode(batch)
                    .map_err(|e| Exchange::Failed(PoolError::Model(format!("encoding the request: {e}"))))?;
                let header = frame::header(&json!({"positional": positional}));
                frame::write(&mut self.socket, kind::PREDICT, &[&header, &data]).await.map_err(lost)?;
            }
            Request::Invoke { content_type, body } => {
                let header = frame::header(&json!({"content_type": content_type}));
                frame::write(&mut self.socket, kind::INVOKE, &[&header, body]).await.map_err(lost)?;
            }
        }
        let (k, body) = frame::read(&mut self.socket).await.map_err(lost)?;
        let bad = |what: String| Exchange::Failed(PoolError::Model(what));
        match k {
            kind::TABLE => frame::ipc_decode(&body)
                .map(Answer::Table)
                .map_err(|e| bad(format!("the worker's answer is not an Arrow stream: {e}"))),
            kind::JSON => serde_json::from_slice(&body)
                .map(Answer::Json)
                .map_err(|e| bad(format!("the worker's answer is not JSON: {e}"))),
            kind::INVOKED => {
                let (header, data) = frame::split_header(&body).map_err(bad)?;
                Ok(Answer::Invoked {
                    status: header["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(500),
                    mimetype: header["mimetype"].as_str().unwrap_or("application/json").to_owned(),
                    body: data.to_vec(),
                })
            }
            kind::FAILED => {
                let failure: Failure =
                    serde_json::from_slice(&body).map_err(|e| bad(format!("the worker's error: {e}")))?;
                if let Some(tb) = failure.traceback.filter(|_| !failure.client) {
                    tracing::warn!("the Python model failed:\n{tb}");
                }
                Err(Exchange::Failed(if failure.client {
                    PoolError::Refused(failure.message)
                } else {
                    PoolError::Model(failure.message)
                }))
            }
            other => Err(bad(format!("the worker answered with frame kind {other}"))),
        }
    }

    /// Asks the worker to stop, then kills it if it has not within the grace period.
    async fn stop(&mut self) {
        let _ = frame::write(&mut self.socket, kind::SHUTDOWN, &[]).await;
        if tokio::time::timeout(STOP_GRACE, self.child.wait()).await.is_err() {
            self.kill().await;
        }
    }

    async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

enum Exchange {
    /// The socket broke: the worker is gone or unusable.
    Lost(String),
    /// The worker answered with an error; it can take the next request.
    Failed(PoolError),
}

/// A process's resident memory, from `/proc`.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Copies a worker's output to the log, a line at a time.
async fn forward_log(stream: impl AsyncRead + Unpin, label: String) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "shipyard::python", worker = %label, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters_resolve_from_any_folder_without_following_links() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(resolve_python(Path::new(".venv/bin/python")), cwd.join(".venv/bin/python"));
        assert_eq!(resolve_python(Path::new("/opt/py/bin/python3")), PathBuf::from("/opt/py/bin/python3"));
        let sh = resolve_python(Path::new("sh"));
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
    }
}
