//! Shipyard's HTTP server: the MLflow REST API (tracking, logged models, registry), the proxied
//! artifact API, and health endpoints, on one port.
//!
//! - [`wire`]: reading requests (query strings and JSON bodies, lenient as MLflow's parser).
//! - [`error`]: the single mapping from errors to HTTP statuses and MLflow's error body.
//! - `tracking`, `models`, `artifacts`: the handlers, thin layers over `shipyard-store`.
//! - `deployments`: Shipyard's own routes under `/api/shipyard/`: deployments (what replicas
//!   poll), replicas' rollout reports, rollout status.
//! - `feedback`: `POST /api/shipyard/feedback`, ground truth for logged predictions.
//! - `releases`: the CLI's model commands (`register`, `validate`, `promote`, `rollback`,
//!   `history`, `set-policy`) against a server, over `shipyard-release`.
//! - `datasets`: `data add` against a server (the file as the body).
//! - [`monitors`]: `monitor configure|show|evaluate` against a server.
//! - [`training`]: `train` against a server, on its CPU, recorded as the logged-in user.
//! - [`streamed`]: progress lines, then the result, for work that takes minutes.
//!
//! Routes are mounted under `/api/2.0/mlflow/` and, as MLflow does for its UI, `/ajax-api/2.0/mlflow/`.
//! The server holds no state besides its store handles: replicas on one PostgreSQL database and one
//! bucket serve the same data.

mod accounts;
pub mod artifacts;
mod caller;
mod datasets;
mod deployments;
pub mod error;
pub mod feedback;
mod models;
pub mod monitors;
mod releases;
pub mod streamed;
mod tracking;
pub mod training;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use shipyard_auth::{Capability, Locator, Policy, PolicyTable, Requirement, ResourceType, Routes};
use shipyard_core::ErrorCode;
use shipyard_store::{ArtifactStore, Database};

use crate::error::error_response;

pub use shipyard_core::MLFLOW_COMPAT_VERSION;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest JSON request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest artifact upload, in bytes (413 beyond).
    pub max_artifact_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { max_body_bytes: wire::DEFAULT_MAX_BODY_BYTES, max_artifact_bytes: 64 * 1024 * 1024 * 1024 }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The metadata store.
    pub db: Database,
    /// The artifact store.
    pub artifacts: ArtifactStore,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Told of each model version created, `(model, version)` (the binary prepares them for
    /// serving); a full queue drops the notice (the version is prepared at its first load).
    pub versions_created: Option<tokio::sync::mpsc::Sender<(String, String)>>,
    /// Who may do what, when authentication is on (account routes change users and grants
    /// through it).
    pub auth: Option<Arc<shipyard_auth::Authority>>,
    /// Runs promotion gates for remote `models validate|promote` (`None`: those routes answer
    /// that this server does not run them).
    pub releaser: Option<shipyard_release::Releaser>,
    /// Trains models for remote `train` (`None`: the route answers that this server does not).
    pub training: Option<training::Training>,
    /// Configures and evaluates monitors for remote `monitor` commands (`None`: evaluation is
    /// refused; configuration still works, with paths allowed).
    pub monitors: Option<monitors::Monitors>,
}

impl AppState {
    /// Tells the binary a version was registered (it prepares it for serving); a full queue
    /// drops the notice (the version is prepared at its first load).
    pub(crate) fn version_created(&self, version: &shipyard_core::entities::ModelVersion) {
        if let Some(created) = &self.versions_created
            && created.try_send((version.name.clone(), version.version.clone())).is_err()
        {
            tracing::debug!(model = %version.name, version = %version.version, "the preparation queue is full");
        }
    }

    /// After a change of permissions: this process reads them again at once (other replicas
    /// within `shipyard_auth::gate::GRANTS_TTL`).
    pub(crate) fn forget_grants(&self) {
        if let Some(auth) = &self.auth {
            auth.forget_grants();
        }
    }
}

/// The MLflow REST routes, relative to `/api/2.0/mlflow`, each with its permission.
fn mlflow_routes() -> Routes<AppState> {
    use models as m;
    use shipyard_auth::Capability::{Delete, Read, Update};
    use shipyard_auth::Locator::{Body, BodyList, BodyOr, ExperimentName, LoggedModelPath, Query, QueryOrBody, Run};
    use shipyard_auth::ResourceType::{Experiment, RegisteredModel};
    use tracking as t;
    let on = Policy::on;
    let experiment = |need, at| on(Experiment, need, at);
    let run = |need| on(Experiment, need, Run("run_id"));
    let model = |need| on(RegisteredModel, need, QueryOrBody("name"));
    let logged = |need| on(Experiment, need, LoggedModelPath("model_id"));
    // Searches and lists show only what the caller may read (the handler filters).
    let listing = Policy::Authenticated(Read);
    Routes::new()
        .post(
            "/experiments/create",
            t::create_experiment,
            Policy::Create { kind: Experiment, id_field: "experiment_id" },
        )
        .get("/experiments/get", t::get_experiment, experiment(Read, Query("experiment_id")))
        .get("/experiments/get-by-name", t::get_experiment_by_name, experiment(Read, ExperimentName("experiment_name")))
        .post("/experiments/search", t::search_experiments, listing)
        .get("/experiments/search", t::search_experiments, listing)
        .post("/experiments/update", t::update_experiment, experiment(Update, Body("experiment_id")))
        .post("/experiments/delete", t::delete_experiment, experiment(Delete, Body("experiment_id")))
        .post("/experiments/restore", t::restore_experiment, experiment(Delete, Body("experiment_id")))
        .post("/experiments/set-experiment-tag", t::set_experiment_tag, experiment(Update, Body("experiment_id")))
        .post("/experiments/delete-experiment-tag", t::delete_experiment_tag, experiment(Update, Body("experiment_id")))
        // MLflow's client creates a run in the Default experiment ("0") when it names none.
        .post("/runs/create", t::create_run, experiment(Update, BodyOr("experiment_id", "0")))
        .get("/runs/get", t::get_run, run(Read))
        .post("/runs/update", t::update_run, run(Update))
        .post("/runs/delete", t::delete_run, run(Delete))
        .post("/runs/restore", t::restore_run, run(Delete))
        .post("/runs/log-metric", t::log_metric, run(Update))
        .post("/runs/log-parameter", t::log_param, run(Update))
        .post("/runs/set-tag", t::set_tag, run(Update))
        .post("/runs/delete-tag", t::delete_tag, run(Update))
        .post("/runs/log-batch", t::log_batch, run(Update))
        .post("/runs/log-inputs", t::log_inputs, run(Update))
        .post("/runs/outputs", t::log_outputs, run(Update))
        .post("/runs/search", t::search_runs, experiment(Read, BodyList("experiment_ids")))
        .get("/metrics/get-history", t::get_metric_history, run(Read))
        .get("/artifacts/list", artifacts::list_run_artifacts, run(Read))
        .post("/logged-models", m::create_logged_model, experiment(Update, Body("experiment_id")))
        .post("/logged-models/search", m::search_logged_models, experiment(Read, BodyList("experiment_ids")))
        .get("/logged-models/{model_id}", m::get_logged_model, logged(Read))
        .patch("/logged-models/{model_id}", m::finalize_logged_model, logged(Update))
        .delete("/logged-models/{model_id}", m::delete_logged_model, logged(Delete))
        .patch("/logged-models/{model_id}/tags", m::set_logged_model_tags, logged(Update))
        .delete("/logged-models/{model_id}/tags/{tag_key}", m::delete_logged_model_tag, logged(Update))
        .post("/logged-models/{model_id}/params", m::log_logged_model_params, logged(Update))
        .post(
            "/registered-models/create",
            m::create_registered_model,
            Policy::Create { kind: RegisteredModel, id_field: "registered_model.name" },
        )
        .get("/registered-models/get", m::get_registered_model, model(Read))
        .post("/registered-models/rename", m::rename_registered_model, model(Update))
        .patch("/registered-models/update", m::update_registered_model, model(Update))
        .delete("/registered-models/delete", m::delete_registered_model, model(Delete))
        .get("/registered-models/search", m::search_registered_models, listing)
        .post("/registered-models/get-latest-versions", m::get_latest_versions, model(Read))
        .get("/registered-models/get-latest-versions", m::get_latest_versions, model(Read))
        .post("/registered-models/set-tag", m::set_registered_model_tag, model(Update))
        .delete("/registered-models/delete-tag", m::delete_registered_model_tag, model(Update))
        .post("/registered-models/alias", m::set_registered_model_alias, model(Update))
        .delete("/registered-models/alias", m::delete_registered_model_alias, model(Update))
        .get("/registered-models/alias", m::get_model_version_by_alias, model(Read))
        .post("/model-versions/create", m::create_model_version, model(Update))
        .get("/model-versions/get", m::get_model_version, model(Read))
        .patch("/model-versions/update", m::update_model_version, model(Update))
        .delete("/model-versions/delete", m::delete_model_version, model(Delete))
        .get("/model-versions/search", m::search_model_versions, listing)
        .post("/model-versions/transition-stage", m::transition_model_version_stage, model(Update))
        .get("/model-versions/get-download-uri", m::get_model_version_download_uri, model(Read))
        .post("/model-versions/set-tag", m::set_model_version_tag, model(Update))
        .delete("/model-versions/delete-tag", m::delete_model_version_tag, model(Update))
}

/// The proxied artifact routes, relative to `/api/2.0/mlflow-artifacts`: a path's first
/// segment is its experiment (or `datasets/`, the datasets holding the file).
fn artifact_routes() -> Routes<AppState> {
    use shipyard_auth::Capability::{Delete, Read, Update};
    use shipyard_auth::Locator::ArtifactPath;
    use shipyard_auth::ResourceType::Experiment;
    let at = |need| Policy::on(Experiment, need, ArtifactPath);
    Routes::new()
        .get("/artifacts", artifacts::list, at(Read))
        .get("/artifacts/{*path}", artifacts::download, at(Read))
        .put("/artifacts/{*path}", artifacts::upload, at(Update))
        .delete("/artifacts/{*path}", artifacts::delete, at(Delete))
}

async fn health() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain")], "OK")
}

async fn version() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain")], MLFLOW_COMPAT_VERSION)
}

/// What the `mlflow` client asks before its first artifact transfer: artifacts are proxied,
/// without multipart or presigned transfers.
async fn server_info() -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "artifact_serving_enabled": true,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "model_artifact_presigned_downloads_supported": false,
        "artifacts_presigned_only": false,
        "features_enabled": {},
        "tracking_auth": "",
        "server": "shipyard",
        "server_version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    error_response(StatusCode::NOT_FOUND, ErrorCode::EndpointNotFound, &format!("No endpoint at {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadRequest,
        &format!("Method {method} is not allowed on {}", uri.path()),
    )
}

/// A deployment change: EDIT on the deployment (creating one is open to whoever may create),
/// READ on every model it would serve.
const DEPLOY: &[Requirement] = &[
    Requirement::on(ResourceType::Deployment, Capability::Update, Locator::NewOrExisting("name")),
    Requirement::on(ResourceType::RegisteredModel, Capability::Read, Locator::DeploymentModels),
];

/// A rollout's status: READ on the deployment, or on the model whose alias it follows.
const ROLLOUT_STATUS: &[Requirement] = &[
    Requirement::on(ResourceType::Deployment, Capability::Read, Locator::Optional(&Locator::QueryOrBody("name"))),
    Requirement::on(ResourceType::RegisteredModel, Capability::Read, Locator::Optional(&Locator::QueryOrBody("model"))),
];

/// Registering a run's model: EDIT on the registered model (or creating it), READ on the
/// run's experiment.
const REGISTER: &[Requirement] = &[
    Requirement::on(ResourceType::RegisteredModel, Capability::Update, Locator::NewOrExisting("name")),
    Requirement::on(ResourceType::Experiment, Capability::Read, Locator::Run("run_id")),
];

/// Adding a dataset version: EDIT on the dataset (or creating it), EDIT on the experiment of
/// the run it is logged as an input of (a query parameter: the body is the file).
const ADD_DATASET: &[Requirement] = &[
    Requirement::on(ResourceType::Dataset, Capability::Update, Locator::NewOrExisting("name")),
    Requirement::on(ResourceType::Experiment, Capability::Update, Locator::RunList("run_id")),
];

/// A training: EDIT on its experiment (or creating it), READ on the dataset it reads, EDIT on
/// the model it registers (or creating it) and on its parent run's experiment.
const TRAIN: &[Requirement] = &[
    Requirement::on(ResourceType::Experiment, Capability::Update, Locator::NewOrExisting("experiment")),
    Requirement::on(ResourceType::Dataset, Capability::Read, Locator::DatasetReference("data")),
    Requirement::on(
        ResourceType::RegisteredModel,
        Capability::Update,
        Locator::Optional(&Locator::NewOrExisting("register")),
    ),
    Requirement::on(ResourceType::Experiment, Capability::Update, Locator::Optional(&Locator::Run("parent_run"))),
];

/// Shipyard's own routes under `/api/shipyard/` and the public ones.
fn shipyard_routes() -> Routes<AppState> {
    use shipyard_auth::Capability::{Delete, Read, Update, Use};
    use shipyard_auth::Locator::{Body, Query, QueryOrBody};
    use shipyard_auth::ResourceType::{Dataset, Deployment, RegisteredModel};
    let model = |need| Policy::on(RegisteredModel, need, QueryOrBody("name"));
    let deployment = |need| Policy::on(Deployment, need, Body("name"));
    Routes::new()
        .get("/api/shipyard/deployments/get", deployments::get_deployment, Policy::on(Deployment, Read, Query("name")))
        .get("/api/shipyard/deployments/list", deployments::list_deployments, Policy::Authenticated(Read))
        .post("/api/shipyard/deployments/create", deployments::create_deployment, Policy::All(DEPLOY))
        .post("/api/shipyard/deployments/set-weight", deployments::set_weight, deployment(Update))
        .post("/api/shipyard/deployments/end-canary", deployments::end_canary, deployment(Update))
        .post("/api/shipyard/deployments/delete", deployments::delete_deployment, deployment(Delete))
        .get("/api/shipyard/deployments/status", deployments::rollout_status, Policy::All(ROLLOUT_STATUS))
        .post("/api/shipyard/deployments/wait", deployments::wait_for_rollout, Policy::All(ROLLOUT_STATUS))
        // Serving replicas report what they applied: a replica's credential is an admin's.
        .post("/api/shipyard/serving/report", deployments::report_process, Policy::Admin)
        .post("/api/shipyard/serving/withdraw", deployments::withdraw_process, Policy::Admin)
        .post("/api/shipyard/feedback", feedback::record_feedback, Policy::on(Deployment, Use, Query("deployment")))
        .post("/api/shipyard/models/register", releases::register, Policy::All(REGISTER))
        .post("/api/shipyard/models/set-policy", releases::set_policy, model(Update))
        // Validation stores its report on the version.
        .post("/api/shipyard/models/validate", releases::validate, model(Update))
        .post("/api/shipyard/models/promote", releases::promote, model(Update))
        .post("/api/shipyard/models/rollback", releases::rollback, model(Update))
        .get("/api/shipyard/models/history", releases::history, model(Read))
        .post("/api/shipyard/datasets/add", datasets::add, Policy::All(ADD_DATASET))
        .get("/api/shipyard/datasets/get", datasets::get, Policy::on(Dataset, Read, Query("name")))
        .get("/api/shipyard/datasets/list", datasets::list, Policy::Authenticated(Read))
        .post(
            "/api/shipyard/datasets/validations",
            datasets::record_validation,
            Policy::on(Dataset, Update, Body("name")),
        )
        .post("/api/shipyard/train", training::train, Policy::All(TRAIN))
        .post(
            "/api/shipyard/monitors/configure",
            monitors::configure,
            Policy::on(Deployment, Update, Body("deployment")),
        )
        .get("/api/shipyard/monitors/get", monitors::get, Policy::on(Deployment, Read, Query("deployment")))
        // An evaluation fires alerts and their actions (a rollback, a retraining).
        .post("/api/shipyard/monitors/evaluate", monitors::evaluate, Policy::on(Deployment, Update, Body("deployment")))
        .post(
            "/api/shipyard/alerts/acknowledge",
            monitors::acknowledge,
            Policy::on(Deployment, Update, Locator::Alert("id")),
        )
        // Capability discovery is public, as in MLflow (no tenant data in it).
        .get("/api/3.0/mlflow/server-info", server_info, Policy::Public)
        .get("/ajax-api/3.0/mlflow/server-info", server_info, Policy::Public)
        .get("/health", health, Policy::Public)
        .get("/version", version, Policy::Public)
}

/// Every route with its permission.
fn all_routes() -> Routes<AppState> {
    let mlflow = mlflow_routes();
    Routes::new()
        .nest("/api/2.0/mlflow", mlflow.clone())
        .nest("/ajax-api/2.0/mlflow", mlflow)
        .nest("/api/2.0/mlflow-artifacts", artifact_routes())
        .nest("/ajax-api/2.0/mlflow-artifacts", artifact_routes())
        .nest("", shipyard_routes())
        .nest("/api", accounts::routes())
        .nest("/ajax-api", accounts::routes())
}

/// Every route's permission (what [`app`] enforces through the binary's gate).
pub fn policies() -> PolicyTable {
    all_routes().build().1
}

/// The whole application and every route's permission.
pub fn app(state: AppState) -> (Router, PolicyTable) {
    let limit = wire::BodyLimit(state.config.max_body_bytes);
    let (router, table) = all_routes().build();
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(limit))
        // The router reads bodies itself (streamed, with its own limits).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    (router, table)
}

/// The whole application (its permissions enforced by the binary when authentication is on).
pub fn router(state: AppState) -> Router {
    app(state).0
}
