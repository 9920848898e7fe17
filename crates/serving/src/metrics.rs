//! Prometheus metrics of the model server, exposed at `GET /metrics`.
//!
//! Names follow Prometheus' conventions (`../shared/anchors/research.md` §6): one `shipyard_`
//! prefix, base units (seconds), counters ending in `_total`, requests counted when they end,
//! labels of low cardinality (model, version, protocol, status code; never a request id).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// A served model version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub version: String,
}

/// One finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub version: String,
    pub protocol: String,
    pub code: u16,
}

/// Request latency, by route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub model: String,
    pub version: String,
    pub protocol: String,
}

/// A deployment's request and where it went (`arm`, `shadow`, `shadow_dropped`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub deployment: String,
    pub model: String,
    pub version: String,
    pub role: String,
}

/// A request turned away, and why (`queue_full`, `queue_timeout`, `timeout`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    pub model: String,
    pub reason: String,
}

/// Rows of the prediction log by what became of them (`written`, `dropped`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabels {
    pub outcome: String,
}

/// One monitor's latest value for a deployment.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MonitorLabels {
    pub deployment: String,
    pub metric: String,
}

/// An alert rule that fired.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub deployment: String,
    pub rule: String,
    pub severity: String,
}

/// A Python model version's workers in one state (`alive`, `busy`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerStateLabels {
    pub model: String,
    pub version: String,
    pub state: String,
}

/// One Python worker slot of a model version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub model: String,
    pub version: String,
    pub worker: String,
}

/// A Python model version's pool, read when the metrics are scraped.
struct WatchedPool {
    labels: ModelLabels,
    stats: std::sync::Weak<shipyard_pyfunc::PoolStats>,
    /// Restarts already counted.
    restarts: u64,
    /// Worker slots whose memory was reported.
    slots: Vec<usize>,
}

/// A gauge holding a float.
pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to 10 s: a forest row is tens of µs, MLflow's p99 is hundreds of ms.
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn batch_histogram() -> Histogram {
    // Rows per engine run: 1, 2, 4, ... 65,536 (BentoML's exponential buckets).
    Histogram::new((0..17).map(|i| f64::from(1u32 << i)))
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<LatencyLabels>,
    pub queue_duration: HistogramFamily<ModelLabels>,
    pub batch_rows: HistogramFamily<ModelLabels>,
    pub cache_hits: Family<ModelLabels, Counter>,
    pub cache_misses: Family<ModelLabels, Counter>,
    pub queue_depth: Family<ModelLabels, Gauge>,
    pub in_flight: Family<ModelLabels, Gauge>,
    pub shed: Family<ShedLabels, Counter>,
    pub fallbacks: Family<ModelLabels, Counter>,
    pub loaded: Family<ModelLabels, Gauge>,
    pub routed: Family<RouteLabels, Counter>,
    pub prediction_log: Family<LogLabels, Counter>,
    pub monitor_values: Family<MonitorLabels, FloatGauge>,
    pub alerts: Family<AlertLabels, Counter>,
    pub python_workers: Family<WorkerStateLabels, Gauge>,
    pub python_queue_depth: Family<ModelLabels, Gauge>,
    pub python_restarts: Family<ModelLabels, Counter>,
    pub python_resident_bytes: Family<WorkerLabels, Gauge>,
    pools: std::sync::Mutex<Vec<WatchedPool>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("shipyard");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration: HistogramFamily<LatencyLabels> = Family::new_with_constructor(latency_histogram);
        let queue_duration: HistogramFamily<ModelLabels> = Family::new_with_constructor(latency_histogram);
        let batch_rows: HistogramFamily<ModelLabels> = Family::new_with_constructor(batch_histogram);
        let cache_hits = Family::<ModelLabels, Counter>::default();
        let cache_misses = Family::<ModelLabels, Counter>::default();
        let queue_depth = Family::<ModelLabels, Gauge>::default();
        let in_flight = Family::<ModelLabels, Gauge>::default();
        let shed = Family::<ShedLabels, Counter>::default();
        let fallbacks = Family::<ModelLabels, Counter>::default();
        let loaded = Family::<ModelLabels, Gauge>::default();
        let routed = Family::<RouteLabels, Counter>::default();
        let prediction_log = Family::<LogLabels, Counter>::default();
        let monitor_values = Family::<MonitorLabels, FloatGauge>::default();
        let alerts = Family::<AlertLabels, Counter>::default();
        let python_workers = Family::<WorkerStateLabels, Gauge>::default();
        let python_queue_depth = Family::<ModelLabels, Gauge>::default();
        let python_restarts = Family::<ModelLabels, Counter>::default();
        let python_resident_bytes = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "python_workers",
            "Python worker processes of a model version, started and ready (alive) and answering a request (busy)",
            python_workers.clone(),
        );
        registry.register(
            "python_queue_depth",
            "Requests waiting for a Python worker of a model version",
            python_queue_depth.clone(),
        );
        registry.register(
            "python_worker_restarts",
            "Python workers replaced after an exit, a missed deadline or their memory limit",
            python_restarts.clone(),
        );
        registry.register(
            "python_worker_resident_bytes",
            "Resident memory of each Python worker, read after its last request",
            python_resident_bytes.clone(),
        );
        registry.register(
            "inference_requests",
            "Prediction requests, counted when they end, by model, version, protocol and HTTP status",
            requests.clone(),
        );
        registry.register(
            "inference_request_duration_seconds",
            "Time from reading a prediction request to its answer",
            request_duration.clone(),
        );
        registry.register(
            "inference_queue_duration_seconds",
            "Time a request waited for a free inference slot",
            queue_duration.clone(),
        );
        registry.register("inference_batch_rows", "Rows per run of the engine (after batching)", batch_rows.clone());
        registry.register("prediction_cache_hits", "Answers served from the prediction cache", cache_hits.clone());
        registry.register("prediction_cache_misses", "Cacheable requests not in the cache", cache_misses.clone());
        registry.register("inference_queue_depth", "Requests waiting for an inference slot", queue_depth.clone());
        registry.register("inference_in_flight_requests", "Requests admitted and not yet answered", in_flight.clone());
        registry.register(
            "inference_shed_requests",
            "Requests answered 503/504 by load shedding (queue_full, queue_timeout, timeout)",
            shed.clone(),
        );
        registry.register("inference_fallbacks", "Requests the fallback model answered", fallbacks.clone());
        registry.register("model_loaded", "1 for each model version being served", loaded.clone());
        registry.register(
            "deployment_routed_requests",
            "Requests of a deployment by the version they went to, as an arm, a shadow copy, or a dropped shadow copy; \
             and the shadow's answers: agreed, disagreed or failed",
            routed.clone(),
        );
        registry.register(
            "prediction_log_rows",
            "Rows of the prediction log: written to the store, dropped because the buffer was full, or failed to write",
            prediction_log.clone(),
        );
        registry.register(
            "monitor_value",
            "The latest value of each monitor of a deployment (drift, performance, fairness, latency)",
            monitor_values.clone(),
        );
        registry.register("monitor_alerts", "Alert rules that fired, by deployment, rule and severity", alerts.clone());
        registry.register(
            "build",
            "Shipyard's version",
            Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            queue_duration,
            batch_rows,
            cache_hits,
            cache_misses,
            queue_depth,
            in_flight,
            shed,
            fallbacks,
            loaded,
            routed,
            prediction_log,
            monitor_values,
            alerts,
            python_workers,
            python_queue_depth,
            python_restarts,
            python_resident_bytes,
            pools: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Reports a Python model version's pool from now on, until it is dropped.
    pub fn watch_pool(&self, labels: &ModelLabels, stats: &std::sync::Arc<shipyard_pyfunc::PoolStats>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.push(WatchedPool {
            labels: labels.clone(),
            stats: std::sync::Arc::downgrade(stats),
            restarts: 0,
            slots: Vec::new(),
        });
    }

    /// Copies each watched pool's counters into its metrics; forgets the pools that are gone.
    fn refresh_pools(&self) {
        use std::sync::atomic::Ordering;
        let state = |l: &ModelLabels, state: &str| WorkerStateLabels {
            model: l.model.clone(),
            version: l.version.clone(),
            state: state.to_owned(),
        };
        let worker = |l: &ModelLabels, slot: usize| WorkerLabels {
            model: l.model.clone(),
            version: l.version.clone(),
            worker: slot.to_string(),
        };
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain_mut(|pool| {
            let Some(stats) = pool.stats.upgrade() else {
                self.python_workers.remove(&state(&pool.labels, "alive"));
                self.python_workers.remove(&state(&pool.labels, "busy"));
                self.python_queue_depth.remove(&pool.labels);
                for slot in &pool.slots {
                    self.python_resident_bytes.remove(&worker(&pool.labels, *slot));
                }
                return false;
            };
            self.python_workers.get_or_create(&state(&pool.labels, "alive")).set(stats.alive.load(Ordering::SeqCst));
            self.python_workers.get_or_create(&state(&pool.labels, "busy")).set(stats.busy.load(Ordering::SeqCst));
            self.python_queue_depth.get_or_create(&pool.labels).set(stats.queued.load(Ordering::SeqCst).max(0));
            let restarts = stats.restarts.load(Ordering::SeqCst);
            self.python_restarts.get_or_create(&pool.labels).inc_by(restarts.saturating_sub(pool.restarts));
            pool.restarts = restarts;
            let rss = stats.rss.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for slot in pool.slots.iter().filter(|s| !rss.contains_key(s)) {
                self.python_resident_bytes.remove(&worker(&pool.labels, *slot));
            }
            for (slot, bytes) in &rss {
                self.python_resident_bytes
                    .get_or_create(&worker(&pool.labels, *slot))
                    .set(i64::try_from(*bytes).unwrap_or(i64::MAX));
            }
            pool.slots = rss.keys().copied().collect();
            true
        });
    }

    /// The counter of prediction-log rows with `outcome`.
    pub fn log_rows(&self, outcome: &str) -> Counter {
        self.prediction_log.get_or_create(&LogLabels { outcome: outcome.to_owned() }).clone()
    }

    /// Sets a deployment's monitor gauge.
    pub fn set_monitor_value(&self, deployment: &str, metric: &str, value: f64) {
        let labels = MonitorLabels { deployment: deployment.to_owned(), metric: metric.to_owned() };
        self.monitor_values.get_or_create(&labels).set(value);
    }

    /// Counts a fired alert.
    pub fn alert_fired(&self, deployment: &str, rule: &str, severity: &str) {
        let labels =
            AlertLabels { deployment: deployment.to_owned(), rule: rule.to_owned(), severity: severity.to_owned() };
        self.alerts.get_or_create(&labels).inc();
    }

    /// The counter of a deployment's requests sent to `model` as `role` (`arm`, `shadow`,
    /// `shadow_dropped`, and the shadow's answers `shadow_agreed`, `shadow_disagreed`,
    /// `shadow_failed`); deployments keep it, so requests count without building labels.
    pub fn routed(&self, deployment: &str, model: &ModelLabels, role: &str) -> Counter {
        self.routed
            .get_or_create(&RouteLabels {
                deployment: deployment.to_owned(),
                model: model.model.clone(),
                version: model.version.clone(),
                role: role.to_owned(),
            })
            .clone()
    }

    /// Records a finished request.
    pub fn request(&self, model: &ModelLabels, protocol: &str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                model: model.model.clone(),
                version: model.version.clone(),
                protocol: protocol.to_owned(),
                code,
            })
            .inc();
        self.request_duration
            .get_or_create(&LatencyLabels {
                model: model.model.clone(),
                version: model.version.clone(),
                protocol: protocol.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.refresh_pools();
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
