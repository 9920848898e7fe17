//! Shipyard's monitor routes under `/api/shipyard/monitors/`: what `shipyard monitor configure |
//! show | evaluate` send when `--tracking-uri` names a server. Configuring calls
//! [`shipyard_monitor::configure`] as the local command does; evaluating runs this server's
//! [`shipyard_monitor::Monitor`] (alerts, their actions and webhooks included) and answers in
//! progress lines with the evaluation and its text.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use shipyard_core::Error;

use crate::AppState;
use crate::error::ApiError;
use crate::tracking::JsonResult;
use crate::wire::{MlflowRequest, required};

/// What monitors need on a server: the monitor that evaluates on request, and whether a
/// configuration may name a path of this machine.
#[derive(Clone)]
pub struct Monitors {
    pub monitor: Arc<shipyard_monitor::Monitor>,
    /// False with logins: callers name reference tables as dataset versions only.
    pub local_paths: bool,
}

#[derive(Deserialize)]
pub(crate) struct ConfigureBody {
    #[serde(default)]
    deployment: Option<String>,
    /// The configuration's YAML text.
    #[serde(default)]
    config: Option<String>,
    /// What to call the text in errors (the client's file name).
    #[serde(default)]
    source: Option<String>,
}

/// `POST /api/shipyard/monitors/configure {"deployment", "config": YAML, "source"?}` → `{"rules",
/// "window", "interval_seconds"}` of the stored configuration.
pub(crate) async fn configure(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<ConfigureBody>) -> JsonResult {
    let deployment = required(&r.deployment, "deployment")?;
    let text = required(&r.config, "config")?;
    let source = r.source.as_deref().unwrap_or("the configuration sent");
    let local_paths = s.monitors.as_ref().is_none_or(|m| m.local_paths);
    let parsed = shipyard_monitor::configure(&s.db, deployment, text, source, local_paths).await?;
    Ok(Json(json!({
        "rules": parsed.rules.len(),
        "window": parsed.window.to_string(),
        "interval_seconds": parsed.interval_seconds,
    })))
}

#[derive(Deserialize)]
pub(crate) struct DeploymentQuery {
    #[serde(default)]
    deployment: Option<String>,
}

/// `GET /api/shipyard/monitors/get?deployment=NAME` → `{"config": YAML}` (404 when it has none).
pub(crate) async fn get(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<DeploymentQuery>) -> JsonResult {
    let deployment = required(&r.deployment, "deployment")?;
    match s.db.get_monitor(deployment).await? {
        Some(text) => Ok(Json(json!({ "config": text }))),
        None => Err(Error::not_found(format!("deployment '{deployment}' has no monitors")).into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct AcknowledgeBody {
    #[serde(default)]
    id: Option<i64>,
    /// Who is on it, when the server has no logins.
    #[serde(default)]
    actor: Option<String>,
}

/// `POST /api/shipyard/alerts/acknowledge {"id"}`: someone is on the alert (the logged-in user)
/// → `{"alert": {...}}` as stored (the first acknowledgement stays).
pub(crate) async fn acknowledge(
    State(s): State<AppState>,
    caller: crate::caller::Caller,
    MlflowRequest(r): MlflowRequest<AcknowledgeBody>,
) -> JsonResult {
    let id = r.id.ok_or_else(|| crate::wire::missing("id"))?;
    let alert = s.db.acknowledge_alert(id, &crate::caller::actor(&caller, r.actor.as_deref())).await?;
    Ok(Json(json!({ "alert": alert })))
}

/// `POST /api/shipyard/monitors/evaluate {"deployment"}`: evaluates the deployment's monitors now
/// (firing alerts and their actions as a scheduled evaluation does) → progress lines, then
/// `{"evaluation", "text"}`.
pub(crate) async fn evaluate(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<DeploymentQuery>) -> Response {
    let deployment = match required(&r.deployment, "deployment") {
        Ok(d) => d.to_owned(),
        Err(e) => return e.into_response(),
    };
    let Some(monitors) = s.monitors.clone() else {
        return ApiError::invalid("this server does not evaluate monitors").into_response();
    };
    crate::streamed::answer(
        async move {
            let evaluation = monitors.monitor.evaluate(&deployment).await?;
            Ok(json!({"evaluation": evaluation, "text": evaluation.text()}))
        },
        crate::streamed::Progress::default(),
        None,
    )
}
