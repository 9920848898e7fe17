//! Shipyard's own REST routes for deployments, under `/api/shipyard/`: what `shipyard serve
//! --deployment NAME --tracking-uri http://...` replicas poll. Read-only: deployments are
//! changed with `shipyard deploy` on the store.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::tracking::JsonResult;
use crate::wire::{MlflowRequest, required};

#[derive(Deserialize)]
pub(crate) struct DeploymentName {
    #[serde(default)]
    name: Option<String>,
}

/// `GET /api/shipyard/deployments/get?name=NAME` → `{"deployment": {...}}`.
pub(crate) async fn get_deployment(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<DeploymentName>,
) -> JsonResult {
    let deployment = s.db.get_deployment(required(&r.name, "name")?).await?;
    Ok(Json(json!({ "deployment": deployment })))
}

/// `GET /api/shipyard/deployments/list` → `{"deployments": [...]}`.
pub(crate) async fn list_deployments(State(s): State<AppState>) -> JsonResult {
    Ok(Json(json!({ "deployments": s.db.list_deployments().await? })))
}
