//! A model version being served: its limits, its cache, its batcher, and the one path every
//! protocol's prediction takes.
//!
//! A prediction goes: cache lookup → admission (a free slot, or a bounded wait in the queue,
//! else 503) → the engine on the rayon pool (never on the async reactor), alone or batched with
//! other requests → within the timeout, else the fallback model or 504 → cache insert.

use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{Value, json};
use shipyard_runtime::{Inputs, LoadedModel, Output, OutputSpec, PredictError, SignatureKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::cache::PredictionCache;
use crate::error::{ErrorKind, ServeError};
use crate::input::{self, Extra, Kind, Schema};
use crate::metrics::{Metrics, ModelLabels, ShedLabels};
use crate::python::PythonModel;

/// What answers a served version: Shipyard's engines in this process, or Python workers.
#[derive(Clone)]
pub enum Engine {
    Native(Arc<LoadedModel>),
    /// A scikit-learn model's verified ONNX conversion on Shipyard's engine. It answers as the
    /// scikit-learn model does (labels and probabilities, or values), not under the graph's
    /// output names.
    Converted(Arc<LoadedModel>),
    Python(Arc<PythonModel>),
}

impl From<LoadedModel> for Engine {
    fn from(model: LoadedModel) -> Engine {
        Engine::Native(Arc::new(model))
    }
}

impl From<PythonModel> for Engine {
    fn from(model: PythonModel) -> Engine {
        Engine::Python(Arc::new(model))
    }
}

impl Engine {
    /// The columns the model reads.
    pub fn inputs(&self) -> &Inputs {
        match self {
            Engine::Native(m) | Engine::Converted(m) => &m.inputs,
            Engine::Python(m) => &m.inputs,
        }
    }

    /// A classifier's labels, when the model says them.
    pub fn classes(&self) -> Option<Vec<String>> {
        match self {
            Engine::Native(m) | Engine::Converted(m) => m.classes(),
            Engine::Python(m) => m.classes.clone(),
        }
    }

    /// The outputs under their own names and types (an ONNX graph's, a Python model's one).
    pub fn output_specs(&self) -> Option<Vec<OutputSpec>> {
        match self {
            Engine::Native(m) => m.graph_output_specs(),
            Engine::Converted(_) => None,
            Engine::Python(m) => Some(vec![OutputSpec {
                name: crate::python::OUTPUT_NAME.into(),
                datatype: m.output_datatype(),
                shape: vec![-1],
            }]),
        }
    }

    /// The Open Inference Protocol's platform name.
    pub fn platform(&self) -> &'static str {
        match self {
            Engine::Native(m) => m.platform(),
            Engine::Converted(_) => "mlflow_sklearn",
            Engine::Python(_) => "mlflow_pyfunc",
        }
    }

    /// The kind of the MLflow signature's inputs.
    pub fn signature(&self) -> SignatureKind {
        match self {
            Engine::Native(m) => m.signature,
            Engine::Converted(_) => SignatureKind::Columns,
            Engine::Python(_) => SignatureKind::Columns,
        }
    }

    /// The engine's name, for logs and version tags.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Native(m) => m.engine_name,
            Engine::Converted(_) => "onnx-converted",
            Engine::Python(_) => "python",
        }
    }

    /// The Python model, when Python workers answer.
    pub fn python(&self) -> Option<&PythonModel> {
        match self {
            Engine::Native(_) | Engine::Converted(_) => None,
            Engine::Python(m) => Some(m),
        }
    }
}

/// How one model is served.
#[derive(Clone, Debug)]
pub struct ModelSettings {
    /// Requests running at once; more wait in the queue.
    pub max_concurrency: usize,
    /// Requests waiting for a slot; more are answered 503 at once.
    pub max_queue: usize,
    /// How long a request may wait for a slot before it is answered 503.
    pub queue_timeout: Duration,
    /// How long the model may take once a request runs; then the fallback answers, or 504.
    pub timeout: Duration,
    /// Rows per engine run when batching requests together; 0 or 1 turns batching off.
    pub max_batch_rows: usize,
    /// How long the first request of a batch waits for company.
    pub max_batch_wait: Duration,
    /// Answers kept in the prediction cache; 0 turns it off.
    pub cache_entries: usize,
    /// How long a cached answer stays valid.
    pub cache_ttl: Duration,
}

impl Default for ModelSettings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        ModelSettings {
            max_concurrency: (4 * cores).max(4),
            max_queue: 256,
            queue_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
            max_batch_rows: 0,
            max_batch_wait: Duration::from_millis(2),
            cache_entries: 10_000,
            cache_ttl: Duration::from_secs(300),
        }
    }
}

/// A request waiting in the batcher.
struct Job {
    batch: RecordBatch,
    reply: oneshot::Sender<Result<Output, PredictError>>,
}

/// Bounded admission: `max_concurrency` slots and a queue of `max_queue` waiters.
struct Limiter {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queue: usize,
    queue_timeout: Duration,
    depth: Gauge,
    in_flight: Gauge,
    waited: Histogram,
    queue_full: Counter,
    queue_timed_out: Counter,
}

/// A request's slot; frees it when dropped.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    in_flight: Gauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl Limiter {
    async fn admit(&self) -> Result<Admitted, ServeError> {
        let started = Instant::now();
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    self.queue_full.inc();
                    return Err(ServeError::overloaded(
                        "the server is at its concurrency limit and its queue is full; retry later",
                    ));
                }
                self.depth.inc();
                let waited = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                self.depth.dec();
                match waited {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        self.queue_timed_out.inc();
                        return Err(ServeError::overloaded(format!(
                            "no inference slot became free within {} ms; retry later",
                            self.queue_timeout.as_millis()
                        )));
                    }
                }
            }
        };
        self.waited.observe(started.elapsed().as_secs_f64());
        self.in_flight.inc();
        Ok(Admitted { _permit: permit, in_flight: self.in_flight.clone() })
    }
}

/// What a prediction returns.
pub struct Prediction {
    pub output: Arc<Output>,
    /// The version that answered (the fallback's when it did).
    pub answered_by: Arc<ServedModel>,
    pub cached: bool,
}

/// A model version being served.
pub struct ServedModel {
    pub name: String,
    /// The registered version, or `None` for a model served from a file.
    pub version: Option<String>,
    /// `name` and `version`, shared: what the prediction log records for each request, without
    /// a copy.
    pub(crate) logged_as: (Arc<str>, Option<Arc<str>>),
    pub engine: Engine,
    /// Which engine was chosen and why, when the loader said.
    pub engine_choice: std::sync::OnceLock<crate::loader::Choice>,
    pub schema: Schema,
    pub settings: ModelSettings,
    /// A classifier's labels, when the model says them.
    pub classes: Option<Vec<String>>,
    pub labels: ModelLabels,
    pub fallback: Option<Arc<ServedModel>>,
    limiter: Limiter,
    cache: Option<PredictionCache>,
    batcher: Option<mpsc::Sender<Job>>,
    cache_hits: Counter,
    cache_misses: Counter,
    fallbacks: Counter,
    timeouts: Counter,
    batch_rows: Histogram,
    loaded: Gauge,
}

impl Drop for ServedModel {
    fn drop(&mut self) {
        self.loaded.set(0);
    }
}

impl ServedModel {
    /// Serves `model`. Starts its batcher when batching is on (Shipyard's engines only), so it
    /// must be called within a tokio runtime.
    pub fn new(
        name: String,
        version: Option<String>,
        model: impl Into<Engine>,
        settings: ModelSettings,
        fallback: Option<Arc<ServedModel>>,
        metrics: &Metrics,
    ) -> Arc<ServedModel> {
        let labels = ModelLabels { model: name.clone(), version: version.clone().unwrap_or_default() };
        let shed = |reason: &str| {
            metrics.shed.get_or_create(&ShedLabels { model: name.clone(), reason: reason.into() }).clone()
        };
        let limiter = Limiter {
            slots: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            max_queue: settings.max_queue,
            queue_timeout: settings.queue_timeout,
            depth: metrics.queue_depth.get_or_create(&labels).clone(),
            in_flight: metrics.in_flight.get_or_create(&labels).clone(),
            waited: metrics.queue_duration.get_or_create(&labels).clone(),
            queue_full: shed("queue_full"),
            queue_timed_out: shed("queue_timeout"),
        };
        let engine: Engine = model.into();
        let batch_rows = metrics.batch_rows.get_or_create(&labels).clone();
        let native = match &engine {
            Engine::Native(model) | Engine::Converted(model) => Some(model.clone()),
            Engine::Python(_) => None,
        };
        let batcher = native.filter(|_| settings.max_batch_rows > 1).map(|model| {
            let (tx, rx) = mpsc::channel(settings.max_concurrency.max(1));
            tokio::spawn(batch_loop(
                rx,
                model,
                settings.max_batch_rows,
                settings.max_batch_wait,
                limiter.in_flight.clone(),
                batch_rows.clone(),
            ));
            tx
        });
        let cache = NonZeroUsize::new(settings.cache_entries).map(|n| PredictionCache::new(n, settings.cache_ttl));
        let classes = engine.classes();
        if let Engine::Python(python) = &engine {
            metrics.watch_pool(&labels, &python.pool.stats());
        }
        let loaded = metrics.loaded.get_or_create(&labels).clone();
        loaded.set(1);
        Arc::new(ServedModel {
            schema: Schema::of(engine.inputs()),
            cache_hits: metrics.cache_hits.get_or_create(&labels).clone(),
            cache_misses: metrics.cache_misses.get_or_create(&labels).clone(),
            fallbacks: metrics.fallbacks.get_or_create(&labels).clone(),
            timeouts: shed("timeout"),
            logged_as: (Arc::from(name.as_str()), version.as_deref().map(Arc::from)),
            name,
            version,
            engine,
            engine_choice: std::sync::OnceLock::new(),
            settings,
            classes,
            labels,
            fallback,
            limiter,
            cache,
            batcher,
            batch_rows,
            loaded,
        })
    }

    /// Runs the engine once on a row of neutral values (0, "", false) before the version takes
    /// traffic, so the first real request does not pay for state built on first use. A model
    /// that refuses such a row is simply left cold.
    pub async fn warm_up(&self) {
        let (Engine::Native(model) | Engine::Converted(model)) = &self.engine else { return };
        let row: Vec<Value> = if self.schema.positional {
            let Some(width) = self.schema.width else { return };
            vec![json!(0.0); width]
        } else {
            let neutral = |kind: Kind| match kind {
                Kind::Number => json!(0.0),
                Kind::Text => json!(""),
                Kind::Bool => json!(false),
            };
            self.schema.columns.iter().map(|c| neutral(c.kind)).collect()
        };
        let Ok(batch) = input::from_rows(&self.schema, None, &[Value::Array(row)], "warm-up", Extra::Ignore, 1) else {
            return;
        };
        let model = model.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || model.predict(&[batch])).await {
            tracing::debug!(model = %self.name, "warm-up prediction refused: {e}");
        }
    }

    /// Predicts the rows of `batch`.
    pub async fn predict(self: &Arc<Self>, batch: RecordBatch) -> Result<Prediction, ServeError> {
        let key = self.cache.as_ref().and_then(|_| PredictionCache::key(&batch));
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            if let Some(output) = cache.get(key) {
                self.cache_hits.inc();
                return Ok(Prediction { output, answered_by: self.clone(), cached: true });
            }
            self.cache_misses.inc();
        }
        let admitted = self.limiter.admit().await?;
        let outcome = tokio::time::timeout(self.settings.timeout, self.run(batch.clone())).await;
        drop(admitted);
        let failure = match outcome {
            Ok(Ok(output)) => {
                let output = Arc::new(output);
                if let (Some(cache), Some(key)) = (&self.cache, key) {
                    cache.insert(key, output.clone());
                }
                return Ok(Prediction { output, answered_by: self.clone(), cached: false });
            }
            Ok(Err(e)) => e,
            Err(_) => {
                self.timeouts.inc();
                ServeError {
                    kind: ErrorKind::Timeout,
                    message: format!("the model did not answer within {} ms", self.settings.timeout.as_millis()),
                }
            }
        };
        match &self.fallback {
            Some(fallback) if !failure.is_client_error() => {
                tracing::warn!(model = %self.name, "answering with the fallback model: {}", failure.message);
                self.fallbacks.inc();
                Box::pin(fallback.predict(batch)).await
            }
            _ => Err(failure),
        }
    }

    /// Runs the engine: Shipyard's on the rayon pool, alone or through the batcher; Python
    /// through its workers.
    async fn run(&self, batch: RecordBatch) -> Result<Output, ServeError> {
        let model = match &self.engine {
            Engine::Native(model) => model,
            Engine::Converted(model) => {
                let output = self.run_native(model, batch).await?;
                return Ok(without_graph(output));
            }
            Engine::Python(model) => return model.predict(batch).await,
        };
        self.run_native(model, batch).await
    }

    /// Runs Shipyard's engine on the rayon pool, alone or through the batcher.
    async fn run_native(&self, model: &Arc<LoadedModel>, batch: RecordBatch) -> Result<Output, ServeError> {
        let (reply, answer) = oneshot::channel();
        match &self.batcher {
            Some(batcher) => {
                if batcher.send(Job { batch, reply }).await.is_err() {
                    return Err(ServeError::from(PredictError::Model("the batcher stopped".into())));
                }
            }
            None => {
                let model = model.clone();
                let rows = self.batch_rows.clone();
                rayon::spawn(move || {
                    rows.observe(batch.num_rows() as f64);
                    let _ = reply.send(guarded(|| model.predict(std::slice::from_ref(&batch))));
                });
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(PredictError::Model("the inference task ended without an answer".into())))
            .map_err(ServeError::from)
    }
}

/// `output` without the graph's own outputs: answered as a scikit-learn model is.
fn without_graph(output: Output) -> Output {
    match output {
        Output::Classes { classes, labels, probabilities, .. } => {
            Output::Classes { classes, labels, probabilities, graph: None }
        }
        Output::Values { columns, values, .. } => Output::Values { columns, values, graph: None },
    }
}

/// Runs `work`, turning a panic into a model error: a bug in a kernel must not take the
/// server down (rayon aborts the process on a panic in a spawned task).
fn guarded(work: impl FnOnce() -> Result<Output, PredictError>) -> Result<Output, PredictError> {
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(PredictError::Model("the engine panicked; this is a bug".into())))
}

/// Collects requests into engine runs of at most `max_rows` rows. A batch takes every request
/// already waiting, then waits (at most `max_wait` after its first request) only while other
/// admitted requests are neither in it nor in an engine run: a lone request never waits, and
/// requests that arrive while the engine is busy form the next batch.
async fn batch_loop(
    mut rx: mpsc::Receiver<Job>,
    model: Arc<LoadedModel>,
    max_rows: usize,
    max_wait: Duration,
    in_flight: Gauge,
    batch_rows: Histogram,
) {
    // Requests handed to an engine run and not yet answered.
    let running = Arc::new(AtomicUsize::new(0));
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut rows = first.batch.num_rows();
        let mut jobs = vec![first];
        let coming = |jobs: &Vec<Job>| {
            usize::try_from(in_flight.get()).unwrap_or(0) > jobs.len() + running.load(Ordering::SeqCst)
        };
        while rows < max_rows {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(_) if coming(&jobs) => tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten(),
                Err(_) => None,
            };
            let Some(job) = next else { break };
            rows += job.batch.num_rows();
            jobs.push(job);
        }
        running.fetch_add(jobs.len(), Ordering::SeqCst);
        let model = model.clone();
        let batch_rows = batch_rows.clone();
        let running = running.clone();
        rayon::spawn(move || run_jobs(&model, jobs, rows, &batch_rows, &running));
    }
}

/// One engine run for `jobs`, each answered with its own rows. If the batch fails on a
/// client's input, each request runs alone, so one bad request fails only itself.
fn run_jobs(model: &LoadedModel, jobs: Vec<Job>, rows: usize, batch_rows: &Histogram, running: &AtomicUsize) {
    let answer = |job: Job, result: Result<Output, PredictError>| {
        let _ = job.reply.send(result);
        running.fetch_sub(1, Ordering::SeqCst);
    };
    if jobs.len() > 1 {
        let batches: Vec<RecordBatch> = jobs.iter().map(|j| j.batch.clone()).collect();
        batch_rows.observe(rows as f64);
        if let Ok(output) = guarded(|| model.predict(&batches)) {
            let mut start = 0;
            for job in jobs {
                let n = job.batch.num_rows();
                answer(job, Ok(slice(&output, start, n)));
                start += n;
            }
            return;
        }
    }
    for job in jobs {
        batch_rows.observe(job.batch.num_rows() as f64);
        let result = guarded(|| model.predict(std::slice::from_ref(&job.batch)));
        answer(job, result);
    }
}

/// Rows `start..start + len` of `output`.
pub fn slice(output: &Output, start: usize, len: usize) -> Output {
    match output {
        Output::Classes { classes, labels, probabilities, graph } => {
            let k = classes.len();
            Output::Classes {
                classes: classes.clone(),
                labels: labels[start..start + len].to_vec(),
                probabilities: probabilities[start * k..(start + len) * k].to_vec(),
                graph: graph.as_ref().map(|g| g.slice_rows(start, len)),
            }
        }
        Output::Values { columns, values, graph } => Output::Values {
            columns: *columns,
            values: values[start * columns..(start + len) * columns].to_vec(),
            graph: graph.as_ref().map(|g| g.slice_rows(start, len)),
        },
    }
}
