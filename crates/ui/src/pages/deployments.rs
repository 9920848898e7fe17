//! Deployments, their monitoring and alerts.
//!
//! - `/deployments`: every deployment, its arms and weights, the versions they resolve to now.
//! - `/deployments/{name}`: its arms (and shadow) with weights and resolved versions; the rollout
//!   of its current revision on every serving process; live traffic per version (request rate,
//!   error rate, latency percentiles, shadow agreement) computed in the browser from this
//!   server's own `/metrics`, refreshed every 2 s (`live.js`); the monitor's values over time
//!   (`monitor.js`, from `/ui-api/monitor`); data drift per feature over time as a heat-map
//!   (plain HTML: one row per feature, one cell per evaluation window, marked when drifted); and
//!   the alert timeline with each action and what it changed; forms to set the canary's weight
//!   or end the canary, and to acknowledge an alert.
//! - `/alerts`: every alert of every deployment, newest first, each acknowledgeable.

use shipyard_auth::ResourceType;
use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use shipyard_core::deployment::{Deployment, ModelRef};
use shipyard_core::monitoring::{Alert, MonitorEvaluation};
use shipyard_store::rollout::RolloutTarget;

use super::models::{model_href, reference, version_href};
use super::{Notice, error_page, layout, number, path_segment, shell, status_and_message, time};
use crate::UiState;
use crate::csrf::{FormToken, hidden_field};

/// Evaluations the page reads (the newest), and the heat-map's most columns.
const EVALUATIONS: i64 = 2_000;
const HEATMAP_COLUMNS: usize = 48;
/// Alerts listed.
const ALERTS: i64 = 200;

pub fn deployment_href(name: &str) -> String {
    format!("/deployments/{}", path_segment(name))
}

/// A model reference with what it resolves to now, linked.
async fn target(state: &UiState, r: &ModelRef) -> Markup {
    let resolved = state.db.resolve_model_ref(r).await.ok().flatten();
    html! {
        a href=(model_href(&r.model)) { (r.model) } " " (reference(r))
        @if r.version.is_none() {
            @match &resolved {
                Some(v) => { " → " a.version href=(version_href(&r.model, v)) { "v" (v) } }
                None => { " → " span.bad { "unset" } }
            }
        }
    }
}

/// `/deployments`.
pub async fn list(State(state): State<UiState>, caller: crate::Caller) -> Response {
    let deployments = match state.db.list_deployments().await {
        Ok(d) => crate::readable(&caller, ResourceType::Deployment, d, |d| d.name.as_str()),
        Err(e) => return error_page(&e),
    };
    let mut rows = Vec::new();
    for d in &deployments {
        let mut arms = Vec::new();
        for arm in &d.spec.arms {
            arms.push((target(&state, &arm.target).await, arm.weight));
        }
        let shadow = match &d.spec.shadow {
            Some(s) => Some(target(&state, s).await),
            None => None,
        };
        rows.push((d, arms, shadow));
    }
    let body = html! {
        h1 { "Deployments" }
        @if rows.is_empty() { p.muted #no-deployments { "No deployments: `shipyard deploy` creates one." } } @else {
            table #deployments {
                thead { tr { th { "Name" } th { "Arms" } th { "Shadow" } th.num { "Revision" } th { "Changed (UTC)" } } }
                tbody {
                    @for (d, arms, shadow) in &rows {
                        tr {
                            td { a href=(deployment_href(&d.name)) { (d.name) } }
                            td { @for (t, w) in arms { span.arm { (t) " " strong { (w) "%" } } } }
                            td { @if let Some(s) = shadow { (s) } }
                            td.num { (d.revision) }
                            td { (time(Some(d.last_updated_timestamp))) }
                        }
                    }
                }
            }
        }
        p { a href="/alerts" { "Every alert" } }
    };
    layout("Deployments", body).into_response()
}

/// `/deployments/{name}`.
pub async fn page(
    State(state): State<UiState>,
    Path(name): Path<String>,
    Query(notice): Query<Notice>,
    Query(range): Query<RangeQuery>,
    token: FormToken,
) -> Response {
    let Some((range, since)) = range.resolve() else {
        return error_page(&shipyard_core::Error::invalid(format!(
            "range: one of {}, not '{}'",
            RANGES.iter().map(|(k, _, _)| *k).collect::<Vec<_>>().join(", "),
            range.range.as_deref().unwrap_or("")
        )));
    };
    let deployment = match state.db.get_deployment(&name).await {
        Ok(d) => d,
        Err(e) => return error_page(&e),
    };
    let rollout = state.db.rollout_status(&RolloutTarget::Deployment(name.clone())).await.ok();
    let evaluations = match state.db.evaluations(&name, since, EVALUATIONS).await {
        Ok(e) => e,
        Err(e) => return error_page(&e),
    };
    let alerts = match state.db.alerts(Some(&name), ALERTS).await {
        Ok(a) => a,
        Err(e) => return error_page(&e),
    };
    let monitored = matches!(state.db.get_monitor(&name).await, Ok(Some(_)));
    let arms = arms_table(&state, &deployment).await;
    let models: BTreeSet<&str> = deployment
        .spec
        .arms
        .iter()
        .map(|a| a.target.model.as_str())
        .chain(deployment.spec.shadow.iter().map(|s| s.model.as_str()))
        .collect();
    let keys: Vec<String> = evaluations.last().map(|e| e.values.keys().cloned().collect()).unwrap_or_default();
    let href = deployment_href(&name);
    let arms_count = deployment.spec.arms.len();
    let canary_weight = deployment.spec.arms.get(1).map_or(0, |a| a.weight);
    let body = html! {
        div.crumbs { a href="/deployments" { "Deployments" } " / " }
        (notice.show())
        h1 { (name) }
        p.muted { "Revision " (deployment.revision) ", changed " (time(Some(deployment.last_updated_timestamp))) " UTC" }
        h2 { "Arms" }
        (arms)
        @if arms_count == 2 {
            form.action #weight-form method="post" action={ (href) "/weight" } {
                (hidden_field(&token))
                label { "Canary share (%) " input type="number" name="weight" min="0" max="100" step="1" value=(canary_weight) required; }
                button type="submit" { "Set the canary's weight" }
            }
        }
        @if arms_count >= 2 {
            form.action #end-canary-form method="post" action={ (href) "/end-canary" } {
                (hidden_field(&token))
                button type="submit" { "End the canary: every request to the primary" }
            }
        }
        h2 { "Rollout" }
        @match &rollout {
            Some(status) => {
                p #rollout-summary {
                    @if status.complete { span.good { "Applied" } } @else { span.bad { "In progress" } }
                    " on " (status.applied) " of " (status.live) " live serving processes"
                }
                @if !status.processes.is_empty() {
                    table #rollout {
                        thead { tr { th { "Process" } th { "State" } th { "Detail" } th.num { "Last heard" } } }
                        tbody {
                            @for p in &status.processes {
                                tr {
                                    td { (p.process) }
                                    td { (format!("{:?}", p.verdict).to_lowercase()) }
                                    td { (p.detail) }
                                    td.num { (format!("{:.1} s ago", p.heartbeat_age_ms as f64 / 1e3)) }
                                }
                            }
                        }
                    }
                }
            }
            None => { p.muted { "No rollout information." } }
        }
        h2 { "Live traffic" }
        div #live data-deployment=(name) data-models=(models.into_iter().collect::<Vec<_>>().join(" ")) {
            p.muted.live-note { "From this server's /metrics, every 2 s: rates over the last interval, latency percentiles from its histogram." }
            table #live-table {
                thead { tr { th { "Model" } th { "Version" } th.num { "Requests/s" } th.num { "Errors" } th.num { "p50 ms" } th.num { "p95 ms" } th.num { "p99 ms" } th.num { "Shadow agreement" } } }
                tbody {}
            }
            noscript { p.muted { "Live traffic needs JavaScript; /metrics has the counters." } }
        }
        h2 { "Monitoring" }
        form.search #range-form method="get" action=(href) {
            label { "Time range " select name="range" { @for (key, label, _) in RANGES { option value=(key) selected[*key == range] { (label) } } } }
            button type="submit" { "Show" }
        }
        @if !monitored && evaluations.is_empty() && range == "all" {
            p.muted #no-monitor { "No monitor: `shipyard monitor configure` sets one up." }
        } @else {
            p.muted { (evaluations.len()) " evaluations" @if let Some(last) = evaluations.last() { ", the last at " (time(Some(last.time))) " UTC" } "." }
            (heatmap(&name, &evaluations))
            div #monitor-charts data-deployment=(name) data-since=(since) data-keys=(keys.join(" ")) {}
        }
        h2 { "Alerts" }
        (alerts_table(&alerts, false, &token, &href))
    };
    shell(&name, body, &["uPlot.min.css"], &["uPlot.min.js", "live.js", "monitor.js"]).into_response()
}

async fn arms_table(state: &UiState, d: &Deployment) -> Markup {
    let mut rows = Vec::new();
    for (i, arm) in d.spec.arms.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "canary" };
        rows.push((role, target(state, &arm.target).await, Some(arm.weight)));
    }
    if let Some(s) = &d.spec.shadow {
        rows.push(("shadow", target(state, s).await, None));
    }
    html! {
        table #arms {
            thead { tr { th { "Role" } th { "Model" } th { "Traffic" } } }
            tbody {
                @for (role, t, weight) in &rows {
                    tr {
                        td { (role) }
                        td { (t) }
                        td {
                            @match weight {
                                Some(w) => { progress.weight value=(w) max="100" { (w) "%" } " " (w) "%" }
                                None => { span.muted { "a copy of every request (answers not returned)" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Drift per feature over time: rows are features, columns are evaluation windows (the newest
/// [`HEATMAP_COLUMNS`] groups of evaluations); a cell is marked when the feature drifted in any
/// evaluation of its group, and its title gives the smallest drift score seen.
fn heatmap(name: &str, evaluations: &[MonitorEvaluation]) -> Markup {
    let features: BTreeSet<&str> =
        evaluations.iter().flat_map(|e| e.values.keys()).filter_map(|k| k.strip_prefix("drifted.")).collect();
    if features.is_empty() || evaluations.is_empty() {
        return html! { p.muted #no-drift { "No data drift results yet." } };
    }
    let per_column = evaluations.len().div_ceil(HEATMAP_COLUMNS);
    let columns: Vec<&[MonitorEvaluation]> = evaluations.chunks(per_column).collect();
    html! {
        div.scroll {
            table.heatmap #drift-heatmap {
                thead {
                    tr {
                        th { "Feature" }
                        @for c in &columns { th.tick title={ (time(c.first().map(|e| e.time))) " to " (time(c.last().map(|e| e.time))) } {} }
                    }
                }
                tbody {
                    @for f in &features {
                        tr data-feature=(f) {
                            td { (f) }
                            @for c in &columns {
                                @let drifted = c.iter().any(|e| e.values.get(&format!("drifted.{f}")).is_some_and(|v| *v > 0.0));
                                @let score = c.iter().filter_map(|e| e.values.get(&format!("drift_score.{f}"))).copied().fold(f64::INFINITY, f64::min);
                                @let at = c.last().map_or(0, |e| e.time);
                                td.cell.drifted[drifted] {
                                    a href={ (deployment_href(name)) "/window?at=" (at) } title={ (f) ": " @if drifted { "drifted" } @else { "no drift" } @if score.is_finite() { ", score " (number(score)) } " (" (time(c.first().map(|e| e.time))) "): open the window's histograms" } {}
                                }
                            }
                        }
                    }
                }
            }
        }
        p.muted { "Each column is a window of " (per_column) " evaluation(s), oldest on the left; a dark cell is a drifted feature. A cell opens the monitor's window as it stood at its last evaluation, with each feature's histograms." }
    }
}

/// Alerts with what their actions did; `with_deployment` adds a column naming the deployment.
/// Each row's acknowledgement: who and when, or the button (which comes back to `back`).
fn alerts_table(alerts: &[Alert], with_deployment: bool, token: &FormToken, back: &str) -> Markup {
    html! {
        @if alerts.is_empty() { p.muted #no-alerts { "No alert has fired." } } @else {
            table #alerts {
                thead {
                    tr {
                        th { "Fired (UTC)" }
                        @if with_deployment { th { "Deployment" } }
                        th { "Rule" } th { "Severity" } th { "Value" } th { "Action" } th { "Message" } th { "Acknowledged" }
                    }
                }
                tbody {
                    @for a in alerts {
                        tr class={ "severity-" (a.severity) } {
                            td { (time(Some(a.fired_time))) }
                            @if with_deployment { td { a href=(deployment_href(&a.deployment)) { (a.deployment) } } }
                            td { (a.rule) }
                            td { (a.severity) }
                            td { (a.metric) " = " (number(a.value)) " " (a.comparator) " " (number(a.threshold)) }
                            td.action {
                                @if let Some(action) = &a.action {
                                    (action) " "
                                    @match a.action_status.as_deref() {
                                        Some("succeeded") => span.good { "succeeded" },
                                        Some(other) => span.bad { (other) },
                                        None => span.muted { "pending" },
                                    }
                                    @if let Some(detail) = &a.action_detail { br; span.muted { (detail) } }
                                    @if let Some((href, label)) = changed(a) { br; a.changed href=(href) { "→ " (label) } }
                                }
                            }
                            td { (a.message) }
                            td.ack {
                                @if let Some(by) = &a.acknowledged_by {
                                    (by) br; span.muted { (time(a.acknowledged_time)) }
                                } @else {
                                    form.inline method="post" action={ "/alerts/" (a.id) "/acknowledge" } {
                                        (hidden_field(token))
                                        input type="hidden" name="back" value=(back);
                                        button type="submit" { "Acknowledge" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where what an alert's action changed is shown: the alias history a rollback moved, the
/// deployment a zeroed canary changed, the pipeline run a retraining started.
fn changed(a: &Alert) -> Option<(String, &'static str)> {
    if a.action_status.as_deref() != Some("succeeded") {
        return None;
    }
    let detail = a.action_detail.as_deref().unwrap_or("");
    match a.action.as_deref()? {
        "rollback" => {
            // "models:/NAME@ALIAS rolled back from version A to version B"
            let model = detail.strip_prefix("models:/")?.split_once(" rolled back")?.0.rsplit_once('@')?.0;
            Some((format!("{}#alias-history", model_href(model)), "the alias history"))
        }
        "zero_canary" => Some((deployment_href(&a.deployment), "the deployment")),
        "retrain" => {
            let run = detail.split("pipeline run ").nth(1)?.split_whitespace().next()?;
            run.bytes().all(|b| b.is_ascii_hexdigit()).then(|| (format!("/pipelines/{run}"), "the pipeline run"))
        }
        _ => None,
    }
}

/// `/alerts`.
pub async fn all_alerts(
    State(state): State<UiState>,
    caller: crate::Caller,
    Query(notice): Query<Notice>,
    token: FormToken,
) -> Response {
    let alerts = match state.db.alerts(None, ALERTS).await {
        Ok(a) => crate::readable(&caller, ResourceType::Deployment, a, |a| a.deployment.as_str()),
        Err(e) => return error_page(&e),
    };
    let body = html! {
        (notice.show())
        h1 { "Alerts" }
        (alerts_table(&alerts, true, &token, "/alerts"))
    };
    layout("Alerts", body).into_response()
}

#[derive(Debug, Deserialize)]
pub struct MonitorQuery {
    deployment: String,
    /// Only evaluations from this time on (ms since the epoch).
    #[serde(default)]
    since: i64,
}

/// The monitoring section's time ranges: the key in the URL, its label, its length in ms (0:
/// everything the page reads).
const RANGES: &[(&str, &str, i64)] = &[
    ("1h", "last hour", 3_600_000),
    ("24h", "last 24 hours", 86_400_000),
    ("7d", "last 7 days", 7 * 86_400_000),
    ("30d", "last 30 days", 30 * 86_400_000),
    ("all", "everything", 0),
];

#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    range: Option<String>,
}

impl RangeQuery {
    /// The range's key and the time it starts at (0 for everything); `None` for an unknown key.
    fn resolve(&self) -> Option<(&'static str, i64)> {
        let wanted = self.range.as_deref().unwrap_or("all");
        let (key, _, length) = RANGES.iter().find(|(k, _, _)| *k == wanted)?;
        let since = if *length == 0 { 0 } else { shipyard_core::entities::now_millis() - length };
        Some((key, since))
    }
}

#[derive(Debug, Serialize)]
struct MonitorSeries {
    time: Vec<i64>,
    values: std::collections::BTreeMap<String, Vec<Option<f64>>>,
}

/// `GET /ui-api/monitor?deployment=NAME`: the monitor's values over time, columnar.
pub async fn monitor_series(State(state): State<UiState>, Query(q): Query<MonitorQuery>) -> Response {
    if let Err(e) = state.db.get_deployment(&q.deployment).await {
        let (status, message) = status_and_message(&e);
        return (status, Json(serde_json::json!({ "error": message }))).into_response();
    }
    let evaluations = match state.db.evaluations(&q.deployment, q.since, EVALUATIONS).await {
        Ok(e) => e,
        Err(e) => {
            let (status, message) = status_and_message(&e);
            return (status, Json(serde_json::json!({ "error": message }))).into_response();
        }
    };
    let keys: BTreeSet<&String> = evaluations.iter().flat_map(|e| e.values.keys()).collect();
    let values = keys
        .into_iter()
        .map(|k| (k.clone(), evaluations.iter().map(|e| e.values.get(k).copied().filter(|v| v.is_finite())).collect()))
        .collect();
    Json(MonitorSeries { time: evaluations.iter().map(|e| e.time).collect(), values }).into_response()
}
