//! The model registry's pages.
//!
//! - `/models`: every registered model with its latest version, its aliases and when it last
//!   changed; `?q=` searches names.
//! - `/models/{name}`: its aliases, its versions (run, status, gates, the engine that serves
//!   it), the **alias history** (every move: when, who, kind, from and to, reason, the gates'
//!   verdict) and the deployments that serve it.
//! - `/models/{name}/versions/{n}`: one version: its lineage (datasets -> run -> version ->
//!   aliases -> deployments), the last gate report (each check: observed, bound, verdict), the
//!   signature from its `MLmodel`, the engine that serves it and why, its tags; and the form
//!   that promotes it through the model's gates.
//!
//! The model's page has the form that rolls an alias back.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use shipyard_auth::ResourceType;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::deployment::{Deployment, ModelRef};
use shipyard_core::entities::{ModelVersion, ModelVersionStatus, RegisteredModel};
use shipyard_store::promotion::AliasMove;

use super::{Notice, error_page, layout, path_segment, time};
use crate::UiState;
use crate::csrf::{FormToken, hidden_field};

/// The version tags Shipyard's gates and loader write.
const GATES_PASSED: &str = "shipyard.gates.passed";
const GATES_REPORT: &str = shipyard_release::REPORT_TAG;
const ENGINE: &str = "shipyard.engine";
const ENGINE_REASON: &str = "shipyard.engine.reason";
/// Versions listed on a model's page.
const VERSIONS_SHOWN: i64 = 200;

#[derive(Debug, Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
}

pub fn model_href(name: &str) -> String {
    format!("/models/{}", path_segment(name))
}

pub fn version_href(name: &str, version: &str) -> String {
    format!("/models/{}/versions/{}", path_segment(name), path_segment(version))
}

fn tag<'a>(version: &'a ModelVersion, key: &str) -> Option<&'a str> {
    version.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

/// `/models`.
pub async fn list(State(state): State<UiState>, caller: crate::Caller, Query(search): Query<Search>) -> Response {
    let q = search.q.trim();
    // A name containing the text, any case (a doubled quote is the grammar's quote; `%` and `_`
    // typed match as LIKE's wildcards).
    let filter = (!q.is_empty()).then(|| format!("name ILIKE '%{}%'", q.replace('\'', "''")));
    let models = match state.db.search_registered_models(filter.as_deref(), Some(1_000), &[], None).await {
        Ok(page) => crate::readable(&caller, ResourceType::RegisteredModel, page.items, |m| m.name.as_str()),
        Err(e) => return error_page(&e),
    };
    let body = html! {
        h1 { "Models" }
        form.search method="get" action="/models" {
            input type="text" name="q" value=(q) placeholder="Name contains…" aria-label="Search models";
            button type="submit" { "Search" }
        }
        @if models.is_empty() { p.muted #no-models { "No registered models." } } @else {
            table #models {
                thead { tr { th { "Name" } th { "Latest version" } th { "Aliases" } th { "Last changed (UTC)" } th { "Description" } } }
                tbody {
                    @for m in &models {
                        tr {
                            td { a href=(model_href(&m.name)) { (m.name) } }
                            td { @if let Some(v) = latest(m) { a href=(version_href(&m.name, &v)) { "v" (v) } } }
                            td { (aliases(&m.name, m)) }
                            td { (time(Some(m.last_updated_timestamp))) }
                            td { (m.description.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    layout("Models", body).into_response()
}

fn latest(m: &RegisteredModel) -> Option<String> {
    m.latest_versions.iter().filter_map(|v| v.version.parse::<i64>().ok()).max().map(|v| v.to_string())
}

fn aliases(name: &str, m: &RegisteredModel) -> Markup {
    html! {
        @for a in &m.aliases {
            a.alias href=(version_href(name, &a.version)) { (a.alias) " → v" (a.version) } " "
        }
    }
}

/// `v3` or `@champion`: how a deployment names the version it serves.
pub fn reference(r: &ModelRef) -> String {
    match (&r.version, &r.alias) {
        (Some(v), _) => format!("v{v}"),
        (None, Some(a)) => format!("@{a}"),
        (None, None) => String::new(),
    }
}

/// One place a deployment serves a model: an arm (with its weight) or the shadow.
struct Serving {
    deployment: String,
    target: ModelRef,
    /// `None` for the shadow.
    weight: Option<u32>,
}

impl Serving {
    fn describe(&self) -> String {
        match self.weight {
            Some(w) => format!("{} at {w}%", reference(&self.target)),
            None => format!("{} as shadow", reference(&self.target)),
        }
    }

    /// Whether it serves `version`, named by number or by one of `aliases`.
    fn serves(&self, version: &str, aliases: &[String]) -> bool {
        match (&self.target.version, &self.target.alias) {
            (Some(v), _) => v == version,
            (None, Some(a)) => aliases.contains(a),
            (None, None) => false,
        }
    }
}

/// The deployments whose arms or shadow serve `name` (by version, or by an alias).
fn serving(deployments: &[Deployment], name: &str) -> Vec<Serving> {
    let mut out = Vec::new();
    for d in deployments {
        for arm in d.spec.arms.iter().filter(|a| a.target.model == name) {
            out.push(Serving { deployment: d.name.clone(), target: arm.target.clone(), weight: Some(arm.weight) });
        }
        if let Some(shadow) = d.spec.shadow.as_ref().filter(|s| s.model == name) {
            out.push(Serving { deployment: d.name.clone(), target: shadow.clone(), weight: None });
        }
    }
    out
}

/// `/models/{name}`.
pub async fn model(
    State(state): State<UiState>,
    Path(name): Path<String>,
    Query(notice): Query<Notice>,
    token: FormToken,
) -> Response {
    let model = match state.db.get_registered_model(&name).await {
        Ok(m) => m,
        Err(e) => return error_page(&e),
    };
    let filter = format!("name = '{}'", name.replace('\'', "''"));
    let order = ["version_number DESC".to_owned()];
    let versions = match state.db.search_model_versions(Some(&filter), Some(VERSIONS_SHOWN), &order, None).await {
        Ok(page) => page.items,
        Err(e) => return error_page(&e),
    };
    let history = match state.db.alias_history(&name, None).await {
        Ok(h) => h,
        Err(e) => return error_page(&e),
    };
    let deployments = match state.db.list_deployments().await {
        Ok(d) => d,
        Err(e) => return error_page(&e),
    };
    let served_by = serving(&deployments, &name);
    let moved: std::collections::BTreeSet<&str> = history.iter().map(|m| m.alias.as_str()).collect();
    let body = html! {
        div.crumbs { a href="/models" { "Models" } " / " }
        (notice.show())
        h1 { (model.name) }
        @if let Some(d) = model.description.as_deref().filter(|d| !d.is_empty()) { p.description { (d) } }
        dl.facts {
            dt { "Aliases" } dd #aliases { @if model.aliases.is_empty() { span.muted { "none" } } (aliases(&name, &model)) }
            dt { "Deployments" } dd #deployments {
                @if served_by.is_empty() { span.muted { "none" } }
                @for s in &served_by { (s.deployment) " (" (s.describe()) ") " }
            }
            dt { "Created (UTC)" } dd { (time(Some(model.creation_timestamp))) }
        }
        h2 { "Versions" }
        table #versions {
            thead { tr { th { "Version" } th { "Registered (UTC)" } th { "Status" } th { "Aliases" } th { "Gates" } th { "Engine" } th { "Run" } } }
            tbody {
                @for v in &versions {
                    tr {
                        td { a href=(version_href(&name, &v.version)) { "v" (v.version) } }
                        td { (time(Some(v.creation_timestamp))) }
                        td { (format!("{:?}", v.status)) }
                        td { (v.aliases.join(", ")) }
                        td { (gates_verdict(tag(v, GATES_PASSED))) }
                        td { (tag(v, ENGINE).unwrap_or("")) }
                        td { @if let Some(run) = &v.run_id { a href={ "/runs/" (path_segment(run)) } { code { (run.get(..8).unwrap_or(run)) } } } }
                    }
                }
            }
        }
        h2 { "Alias history" }
        (history_table(&history))
        @if !moved.is_empty() {
            h2 { "Roll back" }
            form.action #rollback-form method="post" action={ (model_href(&name)) "/rollback" } {
                (hidden_field(&token))
                label { "Alias " select name="alias" { @for a in &moved { option value=(a) { (a) } } } }
                label { "Reason " input type="text" name="reason" maxlength="500" placeholder="recorded in the alias history"; }
                button type="submit" { "Roll back to the previous version" }
            }
        }
    };
    layout(&model.name, body).into_response()
}

fn gates_verdict(passed: Option<&str>) -> Markup {
    html! {
        @match passed {
            Some("true") => span.good { "passed" },
            Some(_) => span.bad { "failed" },
            None => span.muted { "not run" },
        }
    }
}

/// Every move, newest first: when, alias, kind, from and to, who, why, the gates' verdict.
fn history_table(history: &[AliasMove]) -> Markup {
    html! {
        @if history.is_empty() { p.muted #no-moves { "No alias has moved yet." } } @else {
            table #alias-history {
                thead { tr { th { "When (UTC)" } th { "Alias" } th { "Move" } th { "From" } th { "To" } th { "Who" } th { "Reason" } th { "Gates" } } }
                tbody {
                    @for m in history.iter().rev() {
                        tr class={ "move-" (m.kind.as_str()) } {
                            td { (time(Some(m.time))) }
                            td { (m.alias) }
                            td { (m.kind.as_str()) }
                            td { @if let Some(v) = &m.from_version { a href=(version_href(&m.model, v)) { "v" (v) } } }
                            td { @if let Some(v) = &m.to_version { a href=(version_href(&m.model, v)) { "v" (v) } } }
                            td { (m.actor) }
                            td { (m.reason.as_deref().unwrap_or("")) }
                            td { (report_verdict(m.gate_report.as_deref())) }
                        }
                    }
                }
            }
        }
    }
}

fn report_verdict(report: Option<&str>) -> Markup {
    let Some(text) = report else { return html! { span.muted { "—" } } };
    let passed = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v["passed"].as_bool());
    gates_verdict(passed.map(|p| if p { "true" } else { "false" }))
}

/// `/models/{name}/versions/{version}`.
pub async fn version(
    State(state): State<UiState>,
    Path((name, number)): Path<(String, String)>,
    Query(notice): Query<Notice>,
    token: FormToken,
) -> Response {
    let version = match state.db.get_model_version(&name, &number).await {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let run = match &version.run_id {
        Some(id) => state.db.get_run(id).await.ok(),
        None => None,
    };
    let deployments = state.db.list_deployments().await.unwrap_or_default();
    let history = state.db.alias_history(&name, None).await.unwrap_or_default();
    let moves: Vec<AliasMove> = history
        .into_iter()
        .filter(|m| {
            m.to_version.as_deref() == Some(number.as_str()) || m.from_version.as_deref() == Some(number.as_str())
        })
        .collect();
    let served_by: Vec<Serving> =
        serving(&deployments, &name).into_iter().filter(|s| s.serves(&number, &version.aliases)).collect();
    let report = gate_report(&state, &version, &moves).await;
    let mlmodel = match state.db.get_model_version_download_uri(&name, &number).await {
        Ok(uri) => read_mlmodel(&state, &uri).await,
        Err(_) => None,
    };
    let engine = tag(&version, ENGINE);
    let has_policy = state
        .db
        .get_registered_model(&name)
        .await
        .is_ok_and(|m| m.tags.iter().any(|t| t.key == shipyard_release::POLICY_TAG));
    let body = html! {
        div.crumbs { a href="/models" { "Models" } " / " a href=(model_href(&name)) { (name) } " / " }
        (notice.show())
        h1 { (name) " v" (version.version) }
        h2 { "Lineage" }
        ol.lineage #lineage {
            li {
                span.muted { "Data" }
                @if let Some(run) = &run {
                    @if run.inputs.dataset_inputs.is_empty() { span.muted { "none recorded" } }
                    @for input in &run.inputs.dataset_inputs { span { (input.dataset.name) " " code { (input.dataset.digest) } } }
                } @else { span.muted { "unknown" } }
            }
            li {
                span.muted { "Run" }
                @if let Some(run) = &run { a href={ "/runs/" (path_segment(&run.info.run_uuid)) } { (run.info.run_name) } }
                @else { span.muted { "none" } }
            }
            li { span.muted { "Version" } strong { "v" (version.version) } }
            li {
                span.muted { "Aliases" }
                @if version.aliases.is_empty() { span.muted { "none" } }
                @for a in &version.aliases { span.alias { (a) } }
            }
            li {
                span.muted { "Deployments" }
                @if served_by.is_empty() { span.muted { "none" } }
                @for s in &served_by { span { (s.deployment) " (" (s.describe()) ")" } }
            }
        }
        dl.facts #overview {
            dt { "Registered (UTC)" } dd { (time(Some(version.creation_timestamp))) }
            dt { "Status" } dd { (format!("{:?}", version.status)) }
            dt { "Source" } dd { code { (version.source) } }
            @if !version.description.is_empty() { dt { "Description" } dd { (version.description) } }
            dt { "Engine" } dd #engine {
                @if let Some(e) = engine { strong { (e) } @if let Some(why) = tag(&version, ENGINE_REASON) { " — " (why) } }
                @else { span.muted { "not loaded yet (the engine is chosen when a server or gate first loads it)" } }
            }
        }
        h2 { "Gates" }
        (report_section(report.as_ref()))
        @if state.releaser.is_some() && version.status == ModelVersionStatus::Ready {
            (promote_form(&name, &version.version, has_policy, &token))
        }
        h2 { "Signature" }
        (signature_section(mlmodel.as_ref()))
        h2 { "Alias moves to and from this version" }
        (history_table(&moves))
        h2 { "Tags" }
        @if version.tags.is_empty() { p.muted { "None." } } @else {
            table #version-tags {
                thead { tr { th { "Name" } th { "Value" } } }
                tbody { @for t in &version.tags { tr { td { (t.key) } td { (t.value) } } } }
            }
        }
    };
    layout(&format!("{name} v{number}"), body).into_response()
}

/// The form that promotes a version through the model's stored gate policy.
fn promote_form(name: &str, version: &str, has_policy: bool, token: &FormToken) -> Markup {
    html! {
        form.action #promote-form method="post" action={ (version_href(name, version)) "/promote" } {
            (hidden_field(token))
            label { "Alias " input type="text" name="alias" value=(shipyard_release::DEFAULT_ALIAS) required maxlength="255"; }
            label { "Reason " input type="text" name="reason" maxlength="500" placeholder="recorded in the alias history"; }
            label { input type="checkbox" name="force"; " force past failing gates (needs a reason)" }
            button type="submit" { "Run the gates and promote" }
        }
        p.muted #policy-note {
            @if has_policy { "The gates run the policy stored on " (name) " (shipyard models set-policy), on the engine that would serve each version; the report is stored with the version." }
            @else { (name) " has no gate policy: only a forced promotion with a reason moves an alias. Store one with shipyard models set-policy." }
        }
    }
}

/// The version's latest gate report: the artifact its `shipyard.gates.report` tag names (the
/// last `models validate` or `promote`), else the report of the last move to it.
async fn gate_report(state: &UiState, version: &ModelVersion, moves: &[AliasMove]) -> Option<serde_json::Value> {
    if let (Some(location), Some(store)) = (tag(version, GATES_REPORT), &state.artifacts)
        && let Some((run_id, relative)) = location.strip_prefix("runs:/").and_then(|rest| rest.split_once('/'))
        && let Ok(run) = state.db.get_run(run_id).await
        && let (Ok(root), Ok(rel)) =
            (ArtifactPath::from_proxied_uri(&run.info.artifact_uri), ArtifactPath::parse(relative))
        && let Ok(bytes) = store.read_all(&root.join(&rel)).await
        && let Ok(report) = serde_json::from_slice(&bytes)
    {
        return Some(report);
    }
    moves
        .iter()
        .rev()
        .filter(|m| m.to_version.as_deref() == Some(version.version.as_str()))
        .find_map(|m| m.gate_report.as_deref().and_then(|t| serde_json::from_str(t).ok()))
}

fn report_section(report: Option<&serde_json::Value>) -> Markup {
    let Some(report) = report else {
        return html! { p.muted #no-gates { "No gate report: `shipyard models validate` or `promote` writes one." } };
    };
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Number(n) => n.as_f64().map(super::number).unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    };
    html! {
        p #gate-verdict {
            @if report["passed"].as_bool() == Some(true) { span.good { "Every check passed" } } @else { span.bad { "Failed: " (report_failures(&checks)) } }
            @if let Some(champion) = report["champion"].as_object() {
                " · champion " (text(&champion["alias"])) " v" (text(&champion["version"]))
            }
            @if let Some(evaluation) = report["evaluation"].as_object() {
                " · evaluated on " (text(&evaluation["rows"])) " rows of " code { (text(&evaluation["source"])) }
            }
        }
        table #gate-checks {
            thead { tr { th { "Gate" } th { "Check" } th.num { "Observed" } th { "Bound" } th { "Verdict" } th { "Detail" } } }
            tbody {
                @for c in &checks {
                    tr {
                        td { (text(&c["gate"])) }
                        td { (text(&c["name"])) }
                        td.num { (text(&c["observed"])) }
                        td { (text(&c["bound"])) }
                        td { @if c["passed"].as_bool() == Some(true) { span.good { "pass" } } @else { span.bad { "fail" } } }
                        td { (text(&c["detail"])) }
                    }
                }
            }
        }
    }
}

fn report_failures(checks: &[serde_json::Value]) -> String {
    checks
        .iter()
        .filter(|c| c["passed"].as_bool() != Some(true))
        .map(|c| format!("{}:{}", c["gate"].as_str().unwrap_or("?"), c["name"].as_str().unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The version's `MLmodel` file, parsed, when its files are in this server's artifact store.
async fn read_mlmodel(state: &UiState, uri: &str) -> Option<serde_json::Value> {
    let store = state.artifacts.as_ref()?;
    let root = ArtifactPath::from_proxied_uri(uri).ok()?;
    let bytes = store.read_all(&root.join(&ArtifactPath::parse("MLmodel").ok()?)).await.ok()?;
    serde_norway::from_slice(&bytes).ok()
}

fn signature_section(mlmodel: Option<&serde_json::Value>) -> Markup {
    let Some(ml) = mlmodel else {
        return html! { p.muted #no-signature { "The model's MLmodel file is not in this server's artifact store." } };
    };
    let flavors: Vec<String> = ml["flavors"].as_object().map(|f| f.keys().cloned().collect()).unwrap_or_default();
    let specs = |side: &str| -> Vec<serde_json::Value> {
        ml["signature"][side]
            .as_str()
            .and_then(|s| serde_json::from_str::<Vec<serde_json::Value>>(s).ok())
            .unwrap_or_default()
    };
    let (inputs, outputs) = (specs("inputs"), specs("outputs"));
    let describe = |spec: &serde_json::Value| {
        let ty = spec["type"].as_str().unwrap_or("");
        if ty == "tensor" {
            format!("tensor {} {}", spec["tensor-spec"]["dtype"].as_str().unwrap_or(""), spec["tensor-spec"]["shape"])
        } else {
            ty.to_owned()
        }
    };
    html! {
        p { "Flavors: " (flavors.join(", ")) }
        @if inputs.is_empty() { p.muted #no-signature { "No signature was logged with this model." } } @else {
            table #signature {
                thead { tr { th { "Side" } th { "Name" } th { "Type" } th { "Required" } } }
                tbody {
                    @for (side, list) in [("input", &inputs), ("output", &outputs)] {
                        @for spec in list.iter() {
                            tr {
                                td { (side) }
                                td { (spec["name"].as_str().unwrap_or("")) }
                                td { (describe(spec)) }
                                td { @if spec["required"].as_bool() == Some(false) { "no" } @else { "yes" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipyard_core::deployment::{Arm, DeploymentSpec};

    #[test]
    fn deployments_serving_a_model_are_found_by_version_alias_and_shadow() {
        let spec = DeploymentSpec {
            arms: vec![
                Arm { target: ModelRef::alias("churn", "champion"), weight: 90 },
                Arm { target: ModelRef::version("churn", "4"), weight: 10 },
            ],
            shadow: Some(ModelRef::version("churn", "5")),
            sticky: None,
        };
        let d = Deployment {
            name: "web".into(),
            spec,
            revision: 1,
            creation_timestamp: 0,
            last_updated_timestamp: 0,
            updated_by: None,
        };
        let found = serving(&[d], "churn");
        assert_eq!(
            found.iter().map(Serving::describe).collect::<Vec<_>>(),
            ["@champion at 90%", "v4 at 10%", "v5 as shadow"]
        );
        assert!(serving(&[], "churn").is_empty());
    }
}
