//! Datasets (`shipyard data add`): `/datasets` lists every dataset with its latest version;
//! `/datasets/{name}` shows its versions and one version's profile (`?version=N`, the latest by
//! default): per column its type, missing share, distinct values, the numeric summary with a
//! histogram (server-drawn SVG) or the most frequent values, and its recorded validations (each
//! suite run on it; the latest expectation by expectation); `/datasets/{name}/drift?reference=
//! A&current=B`: the drift between two versions, as `shipyard data drift dataset:NAME@A
//! dataset:NAME@B` computes it (the same function), with both distributions per column.

use shipyard_auth::ResourceType;
use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use shipyard_core::Error;
use shipyard_data::drift::{DriftOptions, compare_files};
use shipyard_data::table::CsvOptions;
use shipyard_store::datasets::{DatasetValidation, DatasetVersion};

use super::{error_page, layout, number, path_segment, time};
use crate::UiState;

/// The histogram's size, in SVG units.
const HIST_W: f64 = 160.0;
const HIST_H: f64 = 36.0;

#[derive(Debug, Deserialize)]
pub struct Wanted {
    #[serde(default)]
    version: Option<i64>,
}

fn dataset_href(name: &str) -> String {
    format!("/datasets/{}", path_segment(name))
}

/// `/datasets`.
pub async fn list(State(state): State<UiState>, caller: crate::Caller) -> Response {
    let versions = match state.db.list_dataset_versions(None).await {
        Ok(v) => crate::readable(&caller, ResourceType::Dataset, v, |v| v.name.as_str()),
        Err(e) => return error_page(&e),
    };
    // Per name: how many versions, and the latest.
    let mut by_name: BTreeMap<&str, (usize, &DatasetVersion)> = BTreeMap::new();
    for v in &versions {
        let entry = by_name.entry(&v.name).or_insert((0, v));
        entry.0 += 1;
        if v.version > entry.1.version {
            entry.1 = v;
        }
    }
    let body = html! {
        h1 { "Datasets" }
        @if by_name.is_empty() { p.muted #no-datasets { "No datasets: `shipyard data add` records one." } } @else {
            table #datasets {
                thead { tr { th { "Name" } th.num { "Versions" } th.num { "Latest" } th.num { "Rows" } th { "Format" } th { "Added (UTC)" } } }
                tbody {
                    @for (name, (count, latest)) in &by_name {
                        tr {
                            td { a href=(dataset_href(name)) { (name) } }
                            td.num { (count) }
                            td.num { "v" (latest.version) }
                            td.num { (latest.rows) }
                            td { (latest.format) }
                            td { (time(Some(latest.created_time))) }
                        }
                    }
                }
            }
        }
    };
    layout("Datasets", body).into_response()
}

/// `/datasets/{name}`.
pub async fn page(State(state): State<UiState>, Path(name): Path<String>, Query(wanted): Query<Wanted>) -> Response {
    let mut versions = match state.db.list_dataset_versions(Some(&name)).await {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    let shown = match state.db.get_dataset_version(&name, wanted.version).await {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let columns = shown.profile["columns"].as_array().cloned().unwrap_or_default();
    let validations = match state.db.dataset_validations(&name, shown.version, VALIDATIONS_SHOWN).await {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let body = html! {
        div.crumbs { a href="/datasets" { "Datasets" } " / " }
        h1 { (name) " v" (shown.version) }
        dl.facts #dataset-overview {
            dt { "Rows" } dd { (shown.rows) }
            dt { "Digest" } dd { code { (shown.digest) } }
            dt { "Source" } dd { code { (shown.source) } }
            dt { "Format" } dd { (shown.format) ", " (shown.size_bytes) " bytes" }
            @if let Some(d) = &shown.description { dt { "Description" } dd { (d) } }
        }
        h2 { "Versions" }
        table #dataset-versions {
            thead { tr { th { "Version" } th.num { "Rows" } th { "Digest" } th { "Added (UTC)" } } }
            tbody {
                @for v in &versions {
                    tr.selected[v.version == shown.version] {
                        td { a href={ (dataset_href(&name)) "?version=" (v.version) } { "v" (v.version) } }
                        td.num { (v.rows) }
                        td { code { (v.digest.get(..12).unwrap_or(&v.digest)) } }
                        td { (time(Some(v.created_time))) }
                    }
                }
            }
        }
        @if versions.len() >= 2 {
            @let previous = versions.iter().map(|v| v.version).filter(|v| *v < shown.version).max().unwrap_or(versions[versions.len() - 1].version);
            form.action #drift-form method="get" action={ (dataset_href(&name)) "/drift" } {
                label { "Drift from " select name="reference" { @for v in &versions { option value=(v.version) selected[v.version == previous] { "v" (v.version) } } } }
                label { " to " select name="current" { @for v in &versions { option value=(v.version) selected[v.version == shown.version] { "v" (v.version) } } } }
                button type="submit" { "Compare the versions" }
            }
        }
        h2 { "Validations of v" (shown.version) }
        (validations_section(&name, shown.version, &validations))
        h2 { "Profile of v" (shown.version) }
        @if columns.is_empty() { p.muted { "No profile was recorded." } } @else {
            div.scroll {
                table #profile {
                    thead { tr { th { "Column" } th { "Type" } th.num { "Missing" } th.num { "Distinct" } th { "Summary" } th { "Distribution" } } }
                    tbody { @for c in &columns { (profile_row(c)) } }
                }
            }
        }
    };
    layout(&format!("{name} v{}", shown.version), body).into_response()
}

/// Validations listed on a version's page.
const VALIDATIONS_SHOWN: i64 = 20;

/// Every recorded validation of the version, and the latest one expectation by expectation.
fn validations_section(name: &str, version: i64, validations: &[DatasetValidation]) -> Markup {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    html! {
        @if let Some(latest) = validations.first() {
            table #validations {
                thead { tr { th { "When (UTC)" } th { "Suite" } th { "Result" } th.num { "Expectations met" } th.num { "Quality score" } th { "By" } } }
                tbody {
                    @for v in validations {
                        tr {
                            td { (time(Some(v.time))) }
                            td { (v.suite) }
                            td { @if v.success { span.good { "passed" } } @else { span.bad { "failed" } } }
                            td.num { (v.successful) " of " (v.evaluated) }
                            td.num { (number(v.quality_score)) }
                            td { (v.actor) }
                        }
                    }
                }
            }
            h3 { "The latest, expectation by expectation" }
            div.scroll {
                table #expectations {
                    thead { tr { th { "Column" } th { "Expectation" } th { "Result" } th { "Observed" } th { "Expected" } th.num { "Unexpected rows" } } }
                    tbody {
                        @for r in latest.report["results"].as_array().map(Vec::as_slice).unwrap_or_default() {
                            tr {
                                td { (r["column"].as_str().unwrap_or("(table)")) }
                                td { (text(&r["expectation"])) }
                                td { @if r["success"].as_bool() == Some(true) { span.good { "met" } } @else { span.bad { "failed" } } }
                                td { code { (text(&r["observed"])) } }
                                td { code { (text(&r["expected"])) } }
                                td.num { (r["unexpected_count"].as_u64().map(|c| c.to_string()).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        } @else {
            p.muted #no-validations {
                "None recorded: " code { "shipyard data validate dataset:" (name) "@" (version) " --suite FILE" } " records one, as a pipeline's validate step does."
            }
        }
    }
}

fn profile_row(c: &Value) -> Markup {
    let num = |v: &Value| v.as_f64().map(number).unwrap_or_default();
    let n = &c["numeric"];
    html! {
        tr data-column=(c["name"].as_str().unwrap_or("")) {
            td { (c["name"].as_str().unwrap_or("")) }
            td { (c["data_type"].as_str().unwrap_or("")) }
            td.num { (format!("{:.1}%", c["missing_fraction"].as_f64().unwrap_or(0.0) * 100.0)) }
            td.num { (c["distinct"].as_u64().map(|d| d.to_string()).unwrap_or_default()) }
            td {
                @if n.is_object() {
                    "min " (num(&n["min"])) ", mean " (num(&n["mean"])) ", max " (num(&n["max"])) ", std " (num(&n["std"]))
                } @else if let Some(top) = c["top_values"]["values"].as_array() {
                    @for t in top.iter().take(5) {
                        span.output { (t["value"].as_str().map(str::to_owned).unwrap_or_else(|| t["value"].to_string())) " (" (t["count"]) ")" }
                    }
                }
            }
            td { @if n.is_object() { (histogram(&n["histogram"])) } }
        }
    }
}

/// A histogram's counts as bars.
fn histogram(h: &Value) -> Markup {
    let counts: Vec<f64> =
        h["counts"].as_array().map(|c| c.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
    let top = counts.iter().copied().fold(0.0, f64::max);
    if counts.is_empty() || top <= 0.0 {
        return html! {};
    }
    let bar = HIST_W / counts.len() as f64;
    html! {
        svg.histogram xmlns="http://www.w3.org/2000/svg" width=(HIST_W) height=(HIST_H) viewBox={ "0 0 " (HIST_W) " " (HIST_H) } role="img" aria-label="histogram" {
            @for (i, c) in counts.iter().enumerate() {
                @let h = (c / top * (HIST_H - 1.0)).max(if *c > 0.0 { 1.0 } else { 0.0 });
                rect x=(format!("{:.1}", i as f64 * bar)) y=(format!("{:.1}", HIST_H - h)) width=(format!("{:.1}", (bar - 1.0).max(1.0))) height=(format!("{h:.1}")) {
                    title { (c) }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DriftQuery {
    reference: Option<i64>,
    current: Option<i64>,
}

/// `/datasets/{name}/drift?reference=A&current=B` (B: the latest by default; A: the version
/// before B): both versions' files read on the blocking pool (one comparison at a time per
/// server) and compared with `shipyard data drift`'s defaults.
pub async fn drift(State(state): State<UiState>, Path(name): Path<String>, Query(q): Query<DriftQuery>) -> Response {
    let current = match state.db.get_dataset_version(&name, q.current).await {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let Some(wanted) = q.reference.or_else(|| (current.version > 1).then(|| current.version - 1)) else {
        return error_page(&Error::invalid(format!("'{name}' has one version: nothing to compare it with")));
    };
    let reference = match state.db.get_dataset_version(&name, Some(wanted)).await {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let Some(_permit) = state.heavy_permit() else { return crate::actions::busy() };
    let paths = match (reference.local_copy(&state.cache).await, current.local_copy(&state.cache).await) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(e), _) | (_, Err(e)) => return error_page(&e),
    };
    let compared = tokio::task::spawn_blocking(move || {
        compare_files(&paths.0, &paths.1, &CsvOptions::default(), &DriftOptions::default())
    })
    .await;
    let report = match compared {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error_page(&Error::invalid(e.to_string())),
        Err(e) => return error_page(&Error::Internal(format!("the comparison failed: {e}"))),
    };
    let title = format!("{name}: v{} to v{}", reference.version, current.version);
    let body = html! {
        div.crumbs { a href="/datasets" { "Datasets" } " / " a href=(dataset_href(&name)) { (name) } " / " }
        h1 { (title) }
        p.muted { "What " code { "shipyard data drift dataset:" (name) "@" (reference.version) " dataset:" (name) "@" (current.version) } " reports: v" (reference.version) " is the reference." }
        (super::drift::report(&report, "dataset-drift"))
    };
    layout(&title, body).into_response()
}
