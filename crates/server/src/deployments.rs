//! Shipyard's own REST routes for deployments, under `/api/shipyard/`: what `shipyard serve
//! --deployment NAME --tracking-uri http://...` replicas poll, where they report what they have
//! applied, and the rollout status of a deployment or an alias. Deployments are changed with
//! `shipyard deploy` on the store.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;
use shipyard_core::rollout::ProcessReport;
use shipyard_store::rollout::RolloutTarget;

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
pub(crate) async fn list_deployments(State(s): State<AppState>, caller: crate::caller::Caller) -> JsonResult {
    let all = s.db.list_deployments().await?;
    let shown = crate::caller::readable(&caller, shipyard_auth::ResourceType::Deployment, all, |d| d.name.as_str());
    Ok(Json(json!({ "deployments": shown })))
}

#[derive(Deserialize)]
pub(crate) struct StatusQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    alias: Option<String>,
}

/// `GET /api/shipyard/deployments/status?name=NAME` (or `?model=M&alias=A`) → the rollout
/// status: every serving process concerned, whether it has applied the current revision (or
/// alias target) with every version ready, and where it is stuck.
pub(crate) async fn rollout_status(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<StatusQuery>,
) -> JsonResult {
    let target = match (&r.name, &r.model) {
        (Some(name), None) => RolloutTarget::Deployment(name.clone()),
        (None, Some(model)) => RolloutTarget::Alias {
            model: model.clone(),
            alias: r.alias.clone().unwrap_or_else(|| "production".to_owned()),
        },
        _ => {
            return Err(shipyard_core::Error::invalid(
                "give either 'name' (a deployment) or 'model' (with 'alias', default production)",
            )
            .into());
        }
    };
    Ok(Json(json!({ "status": s.db.rollout_status(&target).await? })))
}

#[derive(Deserialize)]
pub(crate) struct Report {
    process: Option<ProcessReport>,
}

/// `POST /api/shipyard/serving/report {"process": {...}}`: a replica that reads this server
/// records what it has applied (stamped with this server's clock).
pub(crate) async fn report_process(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<Report>) -> JsonResult {
    let report =
        r.process.ok_or_else(|| shipyard_core::Error::invalid("missing value for required parameter 'process'"))?;
    s.db.report_serving_process(&report).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(crate) struct Withdraw {
    #[serde(default)]
    id: Option<String>,
}

/// `POST /api/shipyard/serving/withdraw {"id": ...}`: a replica stopping removes its report.
pub(crate) async fn withdraw_process(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<Withdraw>,
) -> JsonResult {
    s.db.remove_serving_process(required(&r.id, "id")?).await?;
    Ok(Json(json!({})))
}
