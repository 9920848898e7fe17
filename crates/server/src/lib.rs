//! Shipyard's HTTP server: the MLflow REST API (tracking, logged models, registry), the proxied
//! artifact API, and health endpoints, on one port.
//!
//! - [`wire`]: reading requests (query strings and JSON bodies, lenient as MLflow's parser).
//! - [`error`]: the single mapping from errors to HTTP statuses and MLflow's error body.
//! - `tracking`, `models`, `artifacts`: the handlers, thin layers over `shipyard-store`.
//! - `deployments`: Shipyard's own routes under `/api/shipyard/`: deployments (what replicas
//!   poll), replicas' rollout reports, rollout status.
//! - `feedback`: `POST /api/shipyard/feedback`, ground truth for logged predictions.
//!
//! Routes are mounted under `/api/2.0/mlflow/` and, as MLflow does for its UI, `/ajax-api/2.0/mlflow/`.
//! The server holds no state besides its store handles: replicas on one PostgreSQL database and one
//! bucket serve the same data.

pub mod artifacts;
mod deployments;
pub mod error;
pub mod feedback;
mod models;
mod tracking;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
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
}

/// The MLflow REST routes, relative to `/api/2.0/mlflow`.
fn mlflow_routes() -> Router<AppState> {
    use models as m;
    use tracking as t;
    Router::new()
        .route("/experiments/create", post(t::create_experiment))
        .route("/experiments/get", get(t::get_experiment))
        .route("/experiments/get-by-name", get(t::get_experiment_by_name))
        .route("/experiments/search", post(t::search_experiments).get(t::search_experiments))
        .route("/experiments/update", post(t::update_experiment))
        .route("/experiments/delete", post(t::delete_experiment))
        .route("/experiments/restore", post(t::restore_experiment))
        .route("/experiments/set-experiment-tag", post(t::set_experiment_tag))
        .route("/experiments/delete-experiment-tag", post(t::delete_experiment_tag))
        .route("/runs/create", post(t::create_run))
        .route("/runs/get", get(t::get_run))
        .route("/runs/update", post(t::update_run))
        .route("/runs/delete", post(t::delete_run))
        .route("/runs/restore", post(t::restore_run))
        .route("/runs/log-metric", post(t::log_metric))
        .route("/runs/log-parameter", post(t::log_param))
        .route("/runs/set-tag", post(t::set_tag))
        .route("/runs/delete-tag", post(t::delete_tag))
        .route("/runs/log-batch", post(t::log_batch))
        .route("/runs/log-inputs", post(t::log_inputs))
        .route("/runs/outputs", post(t::log_outputs))
        .route("/runs/search", post(t::search_runs))
        .route("/metrics/get-history", get(t::get_metric_history))
        .route("/artifacts/list", get(artifacts::list_run_artifacts))
        .route("/logged-models", post(m::create_logged_model))
        .route("/logged-models/search", post(m::search_logged_models))
        .route(
            "/logged-models/{model_id}",
            get(m::get_logged_model).patch(m::finalize_logged_model).delete(m::delete_logged_model),
        )
        .route("/logged-models/{model_id}/tags", axum::routing::patch(m::set_logged_model_tags))
        .route("/logged-models/{model_id}/tags/{tag_key}", axum::routing::delete(m::delete_logged_model_tag))
        .route("/logged-models/{model_id}/params", post(m::log_logged_model_params))
        .route("/registered-models/create", post(m::create_registered_model))
        .route("/registered-models/get", get(m::get_registered_model))
        .route("/registered-models/rename", post(m::rename_registered_model))
        .route("/registered-models/update", axum::routing::patch(m::update_registered_model))
        .route("/registered-models/delete", axum::routing::delete(m::delete_registered_model))
        .route("/registered-models/search", get(m::search_registered_models))
        .route("/registered-models/get-latest-versions", post(m::get_latest_versions).get(m::get_latest_versions))
        .route("/registered-models/set-tag", post(m::set_registered_model_tag))
        .route("/registered-models/delete-tag", axum::routing::delete(m::delete_registered_model_tag))
        .route(
            "/registered-models/alias",
            post(m::set_registered_model_alias)
                .delete(m::delete_registered_model_alias)
                .get(m::get_model_version_by_alias),
        )
        .route("/model-versions/create", post(m::create_model_version))
        .route("/model-versions/get", get(m::get_model_version))
        .route("/model-versions/update", axum::routing::patch(m::update_model_version))
        .route("/model-versions/delete", axum::routing::delete(m::delete_model_version))
        .route("/model-versions/search", get(m::search_model_versions))
        .route("/model-versions/transition-stage", post(m::transition_model_version_stage))
        .route("/model-versions/get-download-uri", get(m::get_model_version_download_uri))
        .route("/model-versions/set-tag", post(m::set_model_version_tag))
        .route("/model-versions/delete-tag", axum::routing::delete(m::delete_model_version_tag))
}

/// The proxied artifact routes, relative to `/api/2.0/mlflow-artifacts`.
fn artifact_routes() -> Router<AppState> {
    Router::new()
        .route("/artifacts", get(artifacts::list))
        .route("/artifacts/{*path}", get(artifacts::download).put(artifacts::upload).delete(artifacts::delete))
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

/// The whole application.
pub fn router(state: AppState) -> Router {
    let mlflow = mlflow_routes();
    let limit = wire::BodyLimit(state.config.max_body_bytes);
    Router::new()
        .nest("/api/2.0/mlflow", mlflow.clone())
        .nest("/ajax-api/2.0/mlflow", mlflow)
        .nest("/api/2.0/mlflow-artifacts", artifact_routes())
        .nest("/ajax-api/2.0/mlflow-artifacts", artifact_routes())
        .route("/api/shipyard/deployments/get", get(deployments::get_deployment))
        .route("/api/shipyard/deployments/list", get(deployments::list_deployments))
        .route("/api/shipyard/deployments/status", get(deployments::rollout_status))
        .route("/api/shipyard/serving/report", post(deployments::report_process))
        .route("/api/shipyard/serving/withdraw", post(deployments::withdraw_process))
        .route("/api/shipyard/feedback", axum::routing::post(feedback::record_feedback))
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/ajax-api/3.0/mlflow/server-info", get(server_info))
        .route("/health", get(health))
        .route("/version", get(version))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(limit))
        // The router reads bodies itself (streamed, with its own limits).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}
