//! Shipyard's model server: models of the inference engine (`shipyard-runtime`) over HTTP.
//!
//! Three protocols on one port, over one prediction path ([`served::ServedModel::predict`]):
//! - the seed's: `POST /predict/{model}[/{version}]` ([`protocol::seed`]);
//! - MLflow's scoring server: `POST /invocations`, `GET /ping`, `/health`, `/version`
//!   ([`protocol::mlflow`]);
//! - the Open Inference Protocol v2 of KServe, Triton and MLServer, JSON and the binary tensor
//!   extension ([`protocol::oip`]).
//!
//! Plus `GET /metrics` (Prometheus). Each protocol reads its body into the model's columns
//! ([`input`]), predicts, and renders the answer or the error in its own shape ([`error`]).
//! Requests carry an id (`x-request-id`, accepted or made) that is returned and logged, and,
//! with a [`prediction_log`] attached, every sampled request's inputs and answer are written
//! to the store in the background.
//!
//! The server holds [`Registry`]: the model versions it serves. `shipyard serve` fills it with
//! one model; `shipyard server` with every registered model's `production` version, kept
//! current by [`catalog`], which reports what it has applied ([`rollout`]). [`scorer`] lends a
//! loaded engine to the promotion gates.

pub mod cache;
pub mod catalog;
pub mod conversion;
pub mod deployment;
pub mod error;
pub mod input;
pub mod loader;
pub mod metrics;
pub mod prediction_log;
pub mod protocol;
pub mod python;
pub mod rollout;
pub mod runs;
pub mod scorer;
pub mod served;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use arrow_array::RecordBatch;
pub use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use deployment::Deployment;
pub use error::{ErrorKind, Protocol, ServeError};
pub use metrics::Metrics;
pub use served::{Engine, ModelSettings, Prediction, ServedModel};

/// The request id header, accepted from the client or made, and always returned.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The name of the model that answered.
pub const MODEL_NAME: HeaderName = HeaderName::from_static("x-model-name");
/// The version of the model that answered.
pub const MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");

/// Limits on what a request may hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most rows in one request (413 beyond).
    pub max_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 64 * 1024 * 1024, max_rows: 100_000 }
    }
}

/// The model versions and deployments being served, by name. A deployment's name hides a model
/// of the same name for requests without a version.
#[derive(Default)]
pub struct Registry {
    models: RwLock<HashMap<String, Entry>>,
    deployments: RwLock<HashMap<String, Arc<Deployment>>>,
}

/// Where a request for a name goes.
#[derive(Clone)]
pub enum Route {
    Model(Arc<ServedModel>),
    Deployment(Arc<Deployment>),
}

impl Route {
    /// The body field that keeps a client on one arm, for protocols that must let it through.
    pub fn sticky_field(&self) -> Option<&str> {
        match self {
            Route::Model(_) => None,
            Route::Deployment(d) => d.sticky_field(),
        }
    }
}

struct Entry {
    /// The version requests without a version get.
    current: Arc<ServedModel>,
    versions: BTreeMap<String, Arc<ServedModel>>,
}

fn version_key(model: &ServedModel) -> String {
    model.version.clone().unwrap_or_else(|| "1".to_owned())
}

impl Registry {
    /// Serves `model`, as its name's current version.
    pub fn insert(&self, model: Arc<ServedModel>) {
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        let key = version_key(&model);
        match models.get_mut(&model.name) {
            Some(entry) => {
                // The previous version stays reachable by number only while it is current:
                // requests in flight keep their own `Arc` and finish on it.
                entry.versions.clear();
                entry.versions.insert(key, model.clone());
                entry.current = model;
            }
            None => {
                let mut versions = BTreeMap::new();
                versions.insert(key, model.clone());
                models.insert(model.name.clone(), Entry { current: model, versions });
            }
        }
    }

    /// Stops serving `name`.
    pub fn remove(&self, name: &str) -> bool {
        self.models.write().unwrap_or_else(|e| e.into_inner()).remove(name).is_some()
    }

    /// Serves `deployment`, replacing the one of the same name (requests in flight finish on
    /// the one they started with).
    pub fn set_deployment(&self, deployment: Arc<Deployment>) {
        let mut all = self.deployments.write().unwrap_or_else(|e| e.into_inner());
        all.insert(deployment.name.clone(), deployment);
    }

    /// Stops serving the deployment `name`.
    pub fn remove_deployment(&self, name: &str) -> bool {
        self.deployments.write().unwrap_or_else(|e| e.into_inner()).remove(name).is_some()
    }

    /// The deployment `name`, if served.
    pub fn deployment(&self, name: &str) -> Option<Arc<Deployment>> {
        self.deployments.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Every served deployment, by name.
    pub fn deployments(&self) -> Vec<Arc<Deployment>> {
        let all = self.deployments.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<Deployment>> = all.values().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Where a prediction for `name` (and `version`) goes: a deployment's traffic policy, or a
    /// model. With a version, a deployment answers with that member version.
    pub fn route(&self, name: &str, version: Option<&str>) -> Result<Route, ServeError> {
        if let Some(d) = self.deployment(name) {
            let Some(v) = version else { return Ok(Route::Deployment(d)) };
            let member = d.members().into_iter().find(|(m, _)| m.version.as_deref() == Some(v));
            return member.map(|(m, _)| Route::Model(m)).ok_or_else(|| {
                let versions: Vec<String> = d.members().iter().filter_map(|(m, _)| m.version.clone()).collect();
                ServeError::not_found(format!(
                    "deployment '{name}' serves no version '{v}' (it serves: {})",
                    versions.join(", ")
                ))
            });
        }
        self.get_model(name, version).map(Route::Model)
    }

    /// The served version of `name` (`version`, or the current one); for a deployment, its
    /// primary arm or the member with that version.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ServedModel>, ServeError> {
        match self.route(name, version)? {
            Route::Model(m) => Ok(m),
            Route::Deployment(d) => Ok(d.primary().clone()),
        }
    }

    /// What `/invocations` (which names no model) scores: the only deployment, else the only
    /// model.
    pub fn single(&self) -> Result<Route, ServeError> {
        let deployments = self.deployments();
        if let [one] = deployments.as_slice() {
            return Ok(Route::Deployment(one.clone()));
        }
        let current = self.current();
        let names: Vec<&str> =
            deployments.iter().map(|d| d.name.as_str()).chain(current.iter().map(|m| m.name.as_str())).collect();
        match (deployments.len(), current.as_slice()) {
            (0, [one]) => Ok(Route::Model(one.clone())),
            (0, []) => Err(ServeError::not_found("no model is served")),
            _ => Err(ServeError::not_found(format!(
                "{} models and deployments are served ({}); /invocations needs exactly one: use /predict/{{name}} or /v2/models/{{name}}/infer",
                names.len(),
                names.join(", ")
            ))),
        }
    }

    /// Nothing is served.
    pub fn is_empty(&self) -> bool {
        self.models.read().unwrap_or_else(|e| e.into_inner()).is_empty()
            && self.deployments.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// The served model `name` (`version`, or the current one), ignoring deployments.
    pub fn get_model(&self, name: &str, version: Option<&str>) -> Result<Arc<ServedModel>, ServeError> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = models.get(name) else {
            let mut names: Vec<&str> = models.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(ServeError::not_found(format!(
                "no model named '{name}' is served (served: {})",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            )));
        };
        match version {
            None => Ok(entry.current.clone()),
            Some(v) => entry.versions.get(v).cloned().ok_or_else(|| {
                ServeError::not_found(format!(
                    "model '{name}' has no version '{v}' being served (served: {})",
                    entry.versions.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }),
        }
    }

    /// The versions of `name` being served.
    pub fn versions(&self, name: &str) -> Vec<String> {
        if let Some(d) = self.deployment(name) {
            return d.members().iter().filter_map(|(m, _)| m.version.clone()).collect();
        }
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        models.get(name).map(|e| e.versions.keys().cloned().collect()).unwrap_or_default()
    }

    /// Every current model, by name.
    pub fn current(&self) -> Vec<Arc<ServedModel>> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<Arc<ServedModel>> = models.values().map(|e| e.current.clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// What every serving handler can reach.
pub struct ServingState {
    pub registry: Registry,
    pub metrics: Metrics,
    pub limits: Limits,
    /// The prediction log, once one is attached.
    log: std::sync::OnceLock<prediction_log::PredictionLog>,
    /// Models served by run id, once enabled.
    runs: std::sync::OnceLock<runs::RunModels>,
}

impl ServingState {
    pub fn new(limits: Limits) -> Arc<ServingState> {
        Arc::new(ServingState {
            registry: Registry::default(),
            metrics: Metrics::new(),
            limits,
            log: std::sync::OnceLock::new(),
            runs: std::sync::OnceLock::new(),
        })
    }

    /// Serves `POST /predict/{run_id}` from `runs` from now on (once).
    pub fn serve_runs(&self, runs: runs::RunModels) {
        let _ = self.runs.set(runs);
    }

    /// Where a seed request for `name` goes: a served model or deployment, else (when enabled
    /// and `name` is a run id) the run's model.
    pub async fn route_seed(&self, name: &str, version: Option<&str>) -> Result<Route, ServeError> {
        match self.registry.route(name, version) {
            Err(e) if e.kind == ErrorKind::NotFound && version.is_none() && runs::is_run_id(name) => {
                match self.runs.get() {
                    Some(runs) => runs.get(self, name).await.map(Route::Model),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// Logs every (sampled) prediction from now on into `db`; returns the writer, to stop
    /// after the server has stopped. `None` if a log is already attached.
    pub fn attach_log(
        &self,
        db: shipyard_store::Database,
        settings: prediction_log::LogSettings,
    ) -> Option<prediction_log::LogWriter> {
        if self.log.get().is_some() {
            return None;
        }
        let (log, writer) = prediction_log::PredictionLog::start(db, settings, &self.metrics);
        self.log.set(log).ok()?;
        Some(writer)
    }
}

/// `{model}` or `{model}/versions/{version}` (`{model}/{version}` for the seed's route).
#[derive(Debug, serde::Deserialize)]
pub struct ModelPath {
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// A request's id.
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

/// Accepts a sane `x-request-id` (1 to 128 visible ASCII characters) or makes one; returns it on
/// the answer and keeps it in the request's extensions and the log span.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id: Arc<str> = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        // A made id is a UUIDv7: time-ordered, so the prediction log's request-id index grows at
        // its right edge instead of dirtying a random page per logged row.
        .map_or_else(|| Arc::from(uuid::Uuid::now_v7().simple().to_string()), Arc::from);
    request.extensions_mut().insert(RequestId(id.clone()));
    // Info level: every event logged while handling the request (a fallback, a model failure)
    // carries the id.
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Reads a body of at most `limit` bytes.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<bytes::Bytes, ServeError> {
    let too_large = || ServeError::too_large(format!("the request body is larger than {limit} bytes"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            too_large()
        } else {
            ServeError::malformed(format!("reading the request body: {inner}"))
        }
    })
}

/// What a prediction handler received.
pub(crate) struct Incoming<'a> {
    pub id: &'a RequestId,
    pub headers: &'a HeaderMap,
    pub body: Body,
}

/// The flow of every prediction request, whatever its protocol: the model (or why there is
/// none), the body within its limit, `parse` into the model's batch (plus whatever the protocol
/// keeps of the request for its answer), the prediction, `render` of the answer; errors in the
/// protocol's shape. Every request is counted in the metrics when it ends.
pub(crate) async fn predict_request<Kept>(
    state: &ServingState,
    protocol: Protocol,
    route: Result<Route, ServeError>,
    incoming: Incoming<'_>,
    parse: impl FnOnce(&ServedModel, &[u8]) -> Result<(Kept, RecordBatch), ServeError>,
    render: impl FnOnce(Kept, &Prediction) -> Result<serde_json::Value, ServeError>,
) -> Response {
    let started = Instant::now();
    let Incoming { id, headers, body } = incoming;
    let route = match route {
        Ok(route) => route,
        Err(e) => return finish(state, protocol, None, started, protocol.error_response(&e, &id.0)),
    };
    let bytes = match read_body(body, headers, state.limits.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(e) => return finish(state, protocol, None, started, protocol.error_response(&e, &id.0)),
    };
    let (model, deployment) = match &route {
        Route::Model(m) => (m.clone(), None),
        Route::Deployment(d) => {
            let key = d.sticky_value(protocol, headers, &bytes);
            (d.pick(key.as_deref()).clone(), Some(d))
        }
    };
    let log = state.log.get().filter(|log| log.sampled(&id.0));
    let (response, answered_by, answered) = if protocol == Protocol::Mlflow
        && let Some(python) = model.engine.python()
    {
        let (response, answered) = invoke_python(python, headers, &bytes, &id.0, log.is_some(), |bytes| {
            parse(&model, bytes).ok().map(|(_, batch)| batch)
        })
        .await;
        (response, model.clone(), answered)
    } else {
        let mut logged_batch = None;
        let answer = async {
            let (kept, batch) = parse(&model, &bytes)?;
            let copy = deployment.filter(|d| d.has_shadow()).map(|_| batch.clone());
            logged_batch = log.map(|_| batch.clone());
            let prediction = model.predict(batch).await?;
            if let (Some(d), Some(copy)) = (deployment, copy) {
                d.shadow(copy, &prediction, &id.0);
            }
            let body = render(kept, &prediction)?;
            Ok::<_, ServeError>((prediction, body))
        }
        .await;
        let response = match &answer {
            Ok((_, body)) => protocol.json(body),
            Err(e) => protocol.error_response(e, &id.0),
        };
        let answered_by = answer.as_ref().map_or(&model, |(p, _)| &p.answered_by).clone();
        (response, answered_by, logged_batch.zip(answer.ok().map(|(p, _)| p.output)))
    };
    if let Some(log) = log {
        // Handed over before the answer leaves, so an acknowledged prediction is in the buffer.
        log.record(prediction_log::Entry {
            deployment: deployment.map_or(&model.logged_as.0, |d| &d.logged_name).clone(),
            request_id: id.0.clone(),
            time: shipyard_core::entities::now_millis(),
            model: answered_by.clone(),
            status: response.status().as_u16(),
            latency: started.elapsed(),
            answered,
        });
    }
    finish(state, protocol, Some(&answered_by), started, response)
}

/// An `/invocations` request for a Python model: MLflow's own scoring function answers, in the
/// worker, byte for byte as `mlflow models serve`. With `logged`, also the rows as Shipyard
/// reads them (`parse`) and the answer as MLflow wrote it, for the prediction log, when both
/// parse and agree on the rows.
async fn invoke_python(
    python: &python::PythonModel,
    headers: &HeaderMap,
    bytes: &bytes::Bytes,
    request_id: &str,
    logged: bool,
    parse: impl FnOnce(&[u8]) -> Option<RecordBatch>,
) -> (Response, Option<(RecordBatch, Arc<shipyard_runtime::Output>)>) {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let invoked = python.invoke(content_type, bytes.clone()).await;
    let response = match &invoked {
        Ok((status, mimetype, body)) => (
            axum::http::StatusCode::from_u16(*status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, mimetype.clone())],
            body.clone(),
        )
            .into_response(),
        Err(e) => Protocol::Mlflow.error_response(e, request_id),
    };
    let answered = invoked.ok().filter(|(status, _, _)| logged && *status == 200).and_then(|(_, _, body)| {
        let output = python::output_of_mlflow_answer(&body, python.classes.as_deref())?;
        let batch = parse(bytes)?;
        (batch.num_rows() == output.rows()).then(|| (batch, Arc::new(output)))
    });
    (response, answered)
}

/// Counts a finished prediction request and adds the model headers.
fn finish(
    state: &ServingState,
    protocol: Protocol,
    model: Option<&ServedModel>,
    started: Instant,
    mut response: Response,
) -> Response {
    let empty = metrics::ModelLabels { model: String::new(), version: String::new() };
    let labels = model.map_or(&empty, |m| &m.labels);
    state.metrics.request(labels, protocol.as_str(), response.status().as_u16(), started.elapsed());
    if let Some(model) = model {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&model.name) {
            headers.insert(MODEL_NAME, v);
        }
        if let Some(Ok(v)) = model.version.as_deref().map(HeaderValue::from_str) {
            headers.insert(MODEL_VERSION, v);
        }
    }
    response
}

async fn metrics_text(State(state): State<Arc<ServingState>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

/// The serving routes. With `mlflow_health`, also MLflow's `/health` and `/version` (left out
/// inside `shipyard server`, which answers those itself).
pub fn router(state: Arc<ServingState>, mlflow_health: bool) -> Router {
    app(state, mlflow_health, true).0
}

/// The serving routes and each one's permission: predicting needs USE on the deployment (or
/// the registered model served by alias) named in the path, reading its metadata READ; health
/// is public, and `/metrics` too unless `public_metrics` is false (then admins only).
pub fn app(
    state: Arc<ServingState>,
    mlflow_health: bool,
    public_metrics: bool,
) -> (Router, shipyard_auth::PolicyTable) {
    let (router, table) = routes(mlflow_health, public_metrics).build();
    (router.layer(axum::middleware::from_fn(request_id)).with_state(state), table)
}

/// The serving routes' permissions (see [`app`]).
pub fn policies(mlflow_health: bool, public_metrics: bool) -> shipyard_auth::PolicyTable {
    routes(mlflow_health, public_metrics).build().1
}

fn routes(mlflow_health: bool, public_metrics: bool) -> shipyard_auth::Routes<Arc<ServingState>> {
    use protocol::{mlflow, oip, seed};
    use shipyard_auth::Capability::{Read, Use};
    use shipyard_auth::Locator::{Served, Workspace};
    use shipyard_auth::{Policy, ResourceType, Routes};
    let served = |need| Policy::on(ResourceType::Deployment, need, Served("model"));
    let metrics = if public_metrics { Policy::Public } else { Policy::Admin };
    let mut routes = Routes::new()
        .post("/predict/{model}", seed::predict, served(Use))
        .post("/predict/{model}/{version}", seed::predict, served(Use))
        // MLflow's scoring route names no model: it answers with the only one served, which
        // only holders of a workspace grant (or admins) may use.
        .post("/invocations", mlflow::invocations, Policy::on(ResourceType::Workspace, Use, Workspace))
        .get("/ping", mlflow::ping, Policy::Public)
        .get("/v2", oip::server_metadata, Policy::Public)
        .get("/v2/health/live", oip::live, Policy::Public)
        .get("/v2/health/ready", oip::ready, Policy::Public)
        .get("/v2/models/{model}", oip::model_metadata, served(Read))
        .get("/v2/models/{model}/ready", oip::model_ready, served(Read))
        .post("/v2/models/{model}/infer", oip::infer, served(Use))
        .get("/v2/models/{model}/versions/{version}", oip::model_metadata, served(Read))
        .get("/v2/models/{model}/versions/{version}/ready", oip::model_ready, served(Read))
        .post("/v2/models/{model}/versions/{version}/infer", oip::infer, served(Use))
        .get("/metrics", metrics_text, metrics);
    if mlflow_health {
        routes = routes.get("/health", mlflow::ping, Policy::Public).get("/version", mlflow::version, Policy::Public);
    }
    routes
}
