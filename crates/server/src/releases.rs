//! Shipyard's model-release routes under `/api/shipyard/models/`: what `shipyard models
//! register | validate | promote | rollback | history | set-policy` send when `--tracking-uri`
//! names a server. Each calls the library function the local command calls
//! ([`shipyard_release::Releaser`], [`shipyard_release::store_policy`], the store's alias
//! moves), after the gate has checked the caller's permission on the model; a move records the
//! logged-in user as its actor. Gates run in this process and answer in progress lines
//! ([`crate::streamed`]).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shipyard_core::Error;
use shipyard_promotion::GatePolicy;
use shipyard_release::{DEFAULT_ALIAS, GateRequest, PromoteRequest, Promotion, Validation};

use crate::AppState;
use crate::caller::{Caller, actor};
use crate::error::ApiError;
use crate::streamed::{self, Progress};
use crate::tracking::JsonResult;
use crate::wire::{MlflowRequest, required};

#[derive(Deserialize)]
pub(crate) struct RegisterBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
}

/// `POST /api/shipyard/models/register {"name", "run_id"}`: the run's model (`runs:/RUN/model`)
/// as a new version of `name`, created when missing → `{"model_version": {...}}`.
pub(crate) async fn register(
    State(s): State<AppState>,
    caller: Caller,
    MlflowRequest(r): MlflowRequest<RegisterBody>,
) -> JsonResult {
    let (name, run_id) = (required(&r.name, "name")?, required(&r.run_id, "run_id")?);
    s.db.get_run(run_id).await?;
    let user = actor(&caller, None);
    let version = s.db.register_run_model(name, run_id, Some(&user)).await?;
    s.version_created(&version);
    Ok(Json(json!({ "model_version": version })))
}

#[derive(Deserialize)]
pub(crate) struct PolicyBody {
    #[serde(default)]
    name: Option<String>,
    /// The policy's YAML text.
    #[serde(default)]
    policy: Option<String>,
    /// What to call the text in errors (the client's file name).
    #[serde(default)]
    source: Option<String>,
}

/// `POST /api/shipyard/models/set-policy {"name", "policy": YAML}`: checks the policy and stores
/// it as the one the model's promotions run by default.
pub(crate) async fn set_policy(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<PolicyBody>) -> JsonResult {
    let (name, text) = (required(&r.name, "name")?, required(&r.policy, "policy")?);
    let source = r.source.as_deref().unwrap_or("the policy");
    shipyard_release::store_policy(&s.db, name, text, source).await?;
    Ok(Json(json!({})))
}

/// What the gates of a remote `validate` or `promote` run on.
#[derive(Deserialize)]
pub(crate) struct GateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    /// A policy (YAML) to run instead of the stored one.
    #[serde(default)]
    policy: Option<String>,
    /// Evaluation rows: `dataset:NAME[@VERSION]`.
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    reason: Option<String>,
    /// Who moves the alias, when the server has no logins.
    #[serde(default)]
    actor: Option<String>,
}

impl GateBody {
    fn request(&self) -> Result<GateRequest, ApiError> {
        let (name, version) = (required(&self.name, "name")?, required(&self.version, "version")?);
        let alias = self.alias.as_deref().filter(|a| !a.is_empty()).unwrap_or(DEFAULT_ALIAS);
        let policy = match &self.policy {
            Some(text) => {
                Some(GatePolicy::from_yaml(text, "the policy sent").map_err(|e| ApiError::invalid(e.to_string()))?)
            }
            None => None,
        };
        Ok(GateRequest { policy, data: self.data.clone(), ..GateRequest::stored(name, version, alias) })
    }
}

fn releaser(s: &AppState) -> Result<shipyard_release::Releaser, ApiError> {
    s.releaser
        .clone()
        .ok_or_else(|| ApiError(Error::invalid("this server does not run promotion gates (started with --no-ui?)")))
}

/// A stored gate run as JSON: the report, where it is, and its table as the CLI prints it.
fn validation_json(v: &Validation) -> Value {
    json!({"report": v.report, "report_uri": v.report_uri, "table": v.report.table()})
}

/// `POST /api/shipyard/models/validate {"name", "version", "alias"?, "policy"?, "data"?}`: runs
/// the gates and stores the report; answers in progress lines, the result
/// `{"report", "report_uri", "table"}`.
pub(crate) async fn validate(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<GateBody>) -> Response {
    let (request, releaser) = match (r.request(), releaser(&s)) {
        (Ok(request), Ok(releaser)) => (request, releaser),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let progress = Progress::default();
    progress.set(json!({"stage": "gates"}));
    streamed::answer(async move { Ok(validation_json(&releaser.validate(&request).await?)) }, progress, None)
}

/// `POST /api/shipyard/models/promote {"name", "version", "alias"?, "policy"?, "data"?, "force"?,
/// "reason"?}`: the gates, then the alias moved if they pass (or if forced, with a reason);
/// answers in progress lines, the result `{"outcome": "unchanged" | "blocked" | "moved",
/// "move"?, "stays_at"?, "report"?, "report_uri"?, "table"?}`.
pub(crate) async fn promote(
    State(s): State<AppState>,
    caller: Caller,
    MlflowRequest(r): MlflowRequest<GateBody>,
) -> Response {
    let (gates, releaser) = match (r.request(), releaser(&s)) {
        (Ok(request), Ok(releaser)) => (request, releaser),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let request =
        PromoteRequest { gates, force: r.force, actor: actor(&caller, r.actor.as_deref()), reason: r.reason.clone() };
    let progress = Progress::default();
    progress.set(json!({"stage": "gates"}));
    streamed::answer(
        async move {
            Ok(match releaser.promote(request).await? {
                Promotion::Unchanged => json!({"outcome": "unchanged"}),
                Promotion::Blocked { validation, stays_at } => {
                    let mut value = validation_json(&validation);
                    value["outcome"] = json!("blocked");
                    value["stays_at"] = json!(stays_at);
                    value
                }
                Promotion::Moved { alias_move, validation } => {
                    let mut value = validation.as_ref().map_or_else(|| json!({}), validation_json);
                    value["outcome"] = json!("moved");
                    value["move"] = json!(alias_move);
                    value
                }
            })
        },
        progress,
        None,
    )
}

#[derive(Deserialize)]
pub(crate) struct RollbackBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    actor: Option<String>,
}

/// `POST /api/shipyard/models/rollback {"name", "alias"?, "reason"?}`: the alias back to the
/// version it held before → `{"move": {...}}`.
pub(crate) async fn rollback(
    State(s): State<AppState>,
    caller: Caller,
    MlflowRequest(r): MlflowRequest<RollbackBody>,
) -> JsonResult {
    let name = required(&r.name, "name")?;
    let alias = r.alias.as_deref().filter(|a| !a.is_empty()).unwrap_or(DEFAULT_ALIAS);
    let who = actor(&caller, r.actor.as_deref());
    let moved = s.db.rollback_alias(name, alias, &who, r.reason.as_deref()).await?;
    Ok(Json(json!({ "move": moved })))
}

#[derive(Deserialize)]
pub(crate) struct HistoryQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    alias: Option<String>,
}

/// `GET /api/shipyard/models/history?name=NAME[&alias=ALIAS]` → `{"moves": [...]}`, oldest first.
pub(crate) async fn history(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<HistoryQuery>) -> JsonResult {
    let moves = s.db.alias_history(required(&r.name, "name")?, r.alias.as_deref()).await?;
    Ok(Json(json!({ "moves": moves })))
}
