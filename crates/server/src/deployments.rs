//! Shipyard's own REST routes for deployments, under `/api/shipyard/`: what `shipyard serve
//! --deployment NAME --tracking-uri http://...` replicas poll, where they report what they have
//! applied, the rollout status of a deployment or an alias, and the changes `shipyard deploy`
//! sends when its `--tracking-uri` names a server (the store's `deploy`, `set_canary_weight`,
//! `end_canary`, `delete_deployment`, as the local command calls them).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;
use shipyard_core::rollout::ProcessReport;
use shipyard_store::rollout::RolloutTarget;

use crate::AppState;
use crate::caller::{Caller, actor};
use crate::tracking::JsonResult;
use crate::wire::{MlflowRequest, required};

#[derive(Deserialize)]
pub(crate) struct DeploymentName {
    #[serde(default)]
    name: Option<String>,
}

/// `GET /api/shipyard/deployments/get?name=NAME` → `{"deployment": {...}, "resolved_versions":
/// [...]}` (the version each arm, then the shadow, names now).
pub(crate) async fn get_deployment(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<DeploymentName>,
) -> JsonResult {
    let deployment = s.db.get_deployment(required(&r.name, "name")?).await?;
    answer(&s, deployment).await
}

async fn answer(s: &AppState, deployment: shipyard_core::deployment::Deployment) -> JsonResult {
    let versions = s.db.deployment_versions(&deployment.spec).await;
    Ok(Json(json!({ "deployment": deployment, "resolved_versions": versions })))
}

#[derive(Deserialize)]
pub(crate) struct DeployBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    spec: Option<shipyard_core::deployment::DeploymentSpec>,
    #[serde(default)]
    weight: Option<u32>,
    /// Who changes it, when the server has no logins.
    #[serde(default)]
    actor: Option<String>,
}

/// `POST /api/shipyard/deployments/create {"name", "spec"}`: creates the deployment or replaces
/// its policy, once every version it names exists → as `get`.
pub(crate) async fn create_deployment(
    State(s): State<AppState>,
    caller: Caller,
    MlflowRequest(r): MlflowRequest<DeployBody>,
) -> JsonResult {
    let spec = r.spec.ok_or_else(|| crate::wire::missing("spec"))?;
    let deployment = s.db.deploy(required(&r.name, "name")?, &spec, &actor(&caller, r.actor.as_deref())).await?;
    answer(&s, deployment).await
}

/// `POST /api/shipyard/deployments/set-weight {"name", "weight"}`: the canary's percent → as `get`.
pub(crate) async fn set_weight(
    State(s): State<AppState>,
    caller: Caller,
    MlflowRequest(r): MlflowRequest<DeployBody>,
) -> JsonResult {
    let weight = r.weight.ok_or_else(|| crate::wire::missing("weight"))?;
    let who = actor(&caller, r.actor.as_deref());
    let deployment = s.db.set_canary_weight(required(&r.name, "name")?, weight, &who).await?;
    answer(&s, deployment).await
}

/// `POST /api/shipyard/deployments/end-canary {"name"}`: only the primary arm stays → as `get`.
pub(crate) async fn end_canary(
    State(s): State<AppState>,
    caller: Caller,
    MlflowRequest(r): MlflowRequest<DeployBody>,
) -> JsonResult {
    let deployment = s.db.end_canary(required(&r.name, "name")?, &actor(&caller, r.actor.as_deref())).await?;
    answer(&s, deployment).await
}

/// `POST /api/shipyard/deployments/delete {"name"}`: the deployment and its monitors.
pub(crate) async fn delete_deployment(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<DeploymentName>,
) -> JsonResult {
    s.db.delete_deployment(required(&r.name, "name")?).await?;
    Ok(Json(json!({})))
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
    /// For `wait`: how long to wait, in seconds (at most [`MAX_WAIT`]).
    #[serde(default)]
    timeout_seconds: Option<f64>,
}

impl StatusQuery {
    fn target(&self) -> Result<RolloutTarget, shipyard_core::Error> {
        match (&self.name, &self.model) {
            (Some(name), None) => Ok(RolloutTarget::Deployment(name.clone())),
            (None, Some(model)) => Ok(RolloutTarget::Alias {
                model: model.clone(),
                alias: self.alias.clone().unwrap_or_else(|| "production".to_owned()),
            }),
            _ => Err(shipyard_core::Error::invalid(
                "give either 'name' (a deployment) or 'model' (with 'alias', default production)",
            )),
        }
    }
}

/// The longest a `wait` waits.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// `GET /api/shipyard/deployments/status?name=NAME` (or `?model=M&alias=A`) → the rollout
/// status: every serving process concerned, whether it has applied the current revision (or
/// alias version), and whether the rollout is complete.
pub(crate) async fn rollout_status(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<StatusQuery>,
) -> JsonResult {
    Ok(Json(json!({ "status": s.db.rollout_status(&r.target()?).await? })))
}

/// `POST /api/shipyard/deployments/wait {"name"} (or {"model", "alias"}), "timeout_seconds"}`:
/// waits until the change is live on every serving process or the time is up (the store's
/// `wait_for_rollout`, as a local `deploy` waits); answers in progress lines, the result
/// `{"status", "waited_seconds"}`.
pub(crate) async fn wait_for_rollout(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<StatusQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let target = match r.target() {
        Ok(t) => t,
        Err(e) => return crate::error::ApiError(e).into_response(),
    };
    let seconds = r.timeout_seconds.unwrap_or(60.0);
    if !seconds.is_finite() || seconds < 0.0 {
        return crate::error::ApiError::invalid(format!(
            "timeout_seconds is a number of seconds, 0 or more; got {seconds}"
        ))
        .into_response();
    }
    let timeout = std::time::Duration::from_secs_f64(seconds).min(MAX_WAIT);
    let progress = crate::streamed::Progress::default();
    crate::streamed::answer(
        async move {
            let waited = s.db.wait_for_rollout(&target, timeout).await?;
            Ok(json!({"status": waited.status, "waited_seconds": waited.waited.as_secs_f64()}))
        },
        progress,
        None,
    )
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
