//! The UI's actions: promote a version through its gates, roll an alias back, set or end a
//! canary, acknowledge an alert. Each is a POST from a plain HTML form (checked by [`csrf`]
//! before it gets here) that calls the same library function as its CLI command
//! (`Releaser::promote`, `Database::rollback_alias`, `Database::set_canary_weight`,
//! `Database::end_canary`, `Database::acknowledge_alert`), so it is recorded the same way, then
//! redirects to the page it came from with a notice (`?done=...`): reloading never repeats it.
//!
//! [`csrf`]: crate::csrf

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use shipyard_core::Error;
use shipyard_release::{DEFAULT_ALIAS, GateRequest, PromoteRequest, Promotion};
use shipyard_store::promotion::MoveKind;

use crate::UiState;
use crate::pages::deployments::deployment_href;
use crate::pages::models::{model_href, version_href};
use crate::pages::{error_page, layout, query_value};

/// Who the UI's actions are recorded as when the server has no logins.
pub const UI_ACTOR: &str = "web UI";

/// The logged-in user an action is recorded as (`web UI` without `--auth`).
fn actor(caller: &Option<axum::Extension<shipyard_auth::Access>>) -> String {
    caller.as_ref().map_or_else(|| UI_ACTOR.to_owned(), |a| a.principal.user.username.clone())
}

/// A form field as given: trimmed, `None` when empty.
fn given(field: Option<String>) -> Option<String> {
    field.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Where an action sends the browser afterwards: `page` with the notice `done` (and the alias).
fn back(page: &str, done: &str, alias: Option<&str>) -> Response {
    let alias = alias.map(|a| format!("&alias={}", query_value(a))).unwrap_or_default();
    Redirect::to(&format!("{page}?done={done}{alias}")).into_response()
}

/// An action's answer: back to `page` with its notice when it was done, else the error's page.
fn answer<T>(result: shipyard_core::Result<T>, page: &str, done: &str, alias: Option<&str>) -> Response {
    match result {
        Ok(_) => back(page, done, alias),
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct PromoteForm {
    alias: Option<String>,
    reason: Option<String>,
    /// A checkbox: present when ticked.
    force: Option<String>,
}

/// `POST /models/{name}/versions/{version}/promote`: the gates run on the stored policy (one
/// gate run at a time per server; another gets 503), the report is stored on the version, and
/// the alias moves if they passed or the promotion was forced with a reason.
pub async fn promote(
    State(state): State<UiState>,
    caller: Option<axum::Extension<shipyard_auth::Access>>,
    Path((name, version)): Path<(String, String)>,
    Form(form): Form<PromoteForm>,
) -> Response {
    let Some(releaser) = &state.releaser else {
        return error_page(&Error::invalid("this server does not run gates: promote with `shipyard models promote`"));
    };
    let Some(_running) = state.heavy_permit() else { return busy() };
    let alias = given(form.alias).unwrap_or_else(|| DEFAULT_ALIAS.to_owned());
    let request = PromoteRequest {
        gates: GateRequest::stored(&name, &version, &alias),
        force: form.force.is_some(),
        actor: actor(&caller),
        reason: given(form.reason),
    };
    let page = version_href(&name, &version);
    match releaser.promote(request).await {
        Ok(Promotion::Unchanged) => back(&page, "unchanged", Some(&alias)),
        Ok(Promotion::Blocked { .. }) => back(&page, "blocked", Some(&alias)),
        Ok(Promotion::Moved { alias_move, .. }) => {
            let done = if alias_move.kind == MoveKind::Force { "forced" } else { "promoted" };
            back(&page, done, Some(&alias))
        }
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct RollbackForm {
    alias: Option<String>,
    reason: Option<String>,
}

/// `POST /models/{name}/rollback`: the alias goes back to the version it held before its last
/// move, recorded as a rollback.
pub async fn rollback(
    State(state): State<UiState>,
    caller: Option<axum::Extension<shipyard_auth::Access>>,
    Path(name): Path<String>,
    Form(form): Form<RollbackForm>,
) -> Response {
    let alias = given(form.alias).unwrap_or_else(|| DEFAULT_ALIAS.to_owned());
    let reason = given(form.reason);
    let moved = state.db.rollback_alias(&name, &alias, &actor(&caller), reason.as_deref()).await;
    answer(moved, &model_href(&name), "rolled-back", Some(&alias))
}

#[derive(Debug, Deserialize)]
pub struct WeightForm {
    weight: Option<String>,
}

/// `POST /deployments/{name}/weight`: the canary's share, in percent.
pub async fn set_weight(
    State(state): State<UiState>,
    caller: Option<axum::Extension<shipyard_auth::Access>>,
    Path(name): Path<String>,
    Form(form): Form<WeightForm>,
) -> Response {
    let text = given(form.weight).unwrap_or_default();
    let Ok(weight) = text.parse::<u32>() else {
        return error_page(&Error::invalid(format!("weight: a whole percent from 0 to 100, not '{text}'")));
    };
    answer(state.db.set_canary_weight(&name, weight, &actor(&caller)).await, &deployment_href(&name), "weight", None)
}

/// `POST /deployments/{name}/end-canary`: only the primary arm stays, with every request.
pub async fn end_canary(
    State(state): State<UiState>,
    caller: Option<axum::Extension<shipyard_auth::Access>>,
    Path(name): Path<String>,
) -> Response {
    answer(state.db.end_canary(&name, &actor(&caller)).await, &deployment_href(&name), "ended", None)
}

#[derive(Debug, Deserialize)]
pub struct AcknowledgeForm {
    /// The page to go back to: `/alerts` or a deployment's page.
    back: Option<String>,
}

/// `POST /alerts/{id}/acknowledge`.
pub async fn acknowledge(
    State(state): State<UiState>,
    caller: Option<axum::Extension<shipyard_auth::Access>>,
    Path(id): Path<i64>,
    Form(form): Form<AcknowledgeForm>,
) -> Response {
    // Only this UI's own pages: never an address elsewhere.
    let page = given(form.back)
        .filter(|p| {
            p == "/alerts" || p.strip_prefix("/deployments/").is_some_and(|rest| !rest.contains(['/', '\\', '?', '#']))
        })
        .unwrap_or_else(|| "/alerts".to_owned());
    answer(state.db.acknowledge_alert(id, &actor(&caller)).await, &page, "acknowledged", None)
}

/// 503: a heavy request (a gate run, a drift between datasets) is under way.
pub fn busy() -> Response {
    let body = html! { h1 { "Busy" } p.error #busy { "Another gate run or comparison is under way on this server: try again when it is done." } };
    (StatusCode::SERVICE_UNAVAILABLE, layout("Busy", body)).into_response()
}

/// What a notice code (`?done=...`) says; unknown codes say nothing.
pub fn notice(done: Option<&str>, alias: Option<&str>) -> maud::Markup {
    let alias = alias.unwrap_or(DEFAULT_ALIAS);
    let (class, text) = match done {
        Some("promoted") => ("good", format!("The gates passed: {alias} now points at this version.")),
        Some("forced") => ("bad", format!("Forced: {alias} now points at this version; the reason is recorded.")),
        Some("blocked") => ("bad", format!("Not promoted: a gate failed (the report is below); {alias} did not move.")),
        Some("unchanged") => ("muted", format!("{alias} already points at this version: nothing moved.")),
        Some("rolled-back") => ("good", format!("{alias} rolled back to the version it held before.")),
        Some("weight") => ("good", "The canary's weight changed; serving processes apply it within their poll.".into()),
        Some("ended") => ("good", "The canary ended: every request goes to the primary arm.".into()),
        Some("acknowledged") => ("good", "Alert acknowledged.".into()),
        _ => return html! {},
    };
    html! { p #notice class={ "notice " (class) } { (text) } }
}
