//! `/runs/{id}`: one run: its overview (status, times, user, source, git commit, parent), the
//! datasets it used, its params, its metrics (the latest value and step of each), a chart of
//! each metric's history, and its tags.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{chart_layout, charts, duration, error_page, number, path_segment, time};
use crate::UiState;

/// MLflow's tags that the overview shows by name.
const SOURCE: &str = "mlflow.source.name";
const COMMIT: &str = "mlflow.source.git.commit";
const PARENT: &str = "mlflow.parentRunId";
const PIPELINE_ROLE: &str = shipyard_pipeline::runner::tags::ROLE;

pub async fn page(State(state): State<UiState>, Path(run_id): Path<String>) -> Response {
    let run = match state.db.get_run(&run_id).await {
        Ok(run) => run,
        Err(e) => return error_page(&e),
    };
    let experiment = match state.db.get_experiment(&run.info.experiment_id).await {
        Ok(e) => e,
        Err(e) => return error_page(&e),
    };
    let tag = |key: &str| run.data.tags.iter().find(|t| t.key == key).map(|t| t.value.clone());
    let mut params = run.data.params.clone();
    params.sort_by(|a, b| a.key.cmp(&b.key));
    let mut metrics = run.data.metrics.clone();
    metrics.sort_by(|a, b| a.key.cmp(&b.key));
    let mut tags = run.data.tags.clone();
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    let info = &run.info;
    let body = html! {
        div.crumbs {
            a href="/" { "Experiments" } " / "
            a href={ "/experiments/" (path_segment(&experiment.experiment_id)) } { (experiment.name) } " / "
        }
        h1 { (info.run_name) }
        dl.facts #overview {
            dt { "Status" } dd class={ "status-" (info.status.as_str()) } { (info.status.as_str()) }
            dt { "Run ID" } dd { code { (info.run_uuid) } }
            dt { "Started (UTC)" } dd { (time(info.start_time)) }
            dt { "Ended (UTC)" } dd { (time(info.end_time)) }
            dt { "Duration" } dd { (duration(info.start_time, info.end_time)) }
            dt { "User" } dd { (info.user_id) }
            @if let Some(source) = tag(SOURCE) { dt { "Source" } dd { (source) } }
            @if let Some(commit) = tag(COMMIT) { dt { "Git commit" } dd { code { (commit) } } }
            @if tag(PIPELINE_ROLE).as_deref() == Some("pipeline") {
                dt { "Pipeline" } dd { a #pipeline-view href={ "/pipelines/" (path_segment(&info.run_uuid)) } { "Steps as a graph" } }
            }
            @if let Some(parent) = tag(PARENT) {
                dt { "Parent run" } dd { a href={ "/runs/" (path_segment(&parent)) } { code { (parent) } } }
            }
            dt { "Artifacts" } dd {
                a #browse-artifacts href={ "/runs/" (path_segment(&info.run_uuid)) "/artifacts" } { "Browse" }
                " " code { (info.artifact_uri) }
            }
        }
        @if !run.inputs.dataset_inputs.is_empty() {
            h2 { "Datasets" }
            table #datasets {
                thead { tr { th { "Name" } th { "Digest" } th { "Context" } th { "Source" } } }
                tbody {
                    @for input in &run.inputs.dataset_inputs {
                        tr {
                            td { (input.dataset.name) }
                            td { code { (input.dataset.digest) } }
                            td { (input.tags.iter().find(|t| t.key == "mlflow.data.context").map(|t| t.value.as_str()).unwrap_or("")) }
                            td { (input.dataset.source_type) }
                        }
                    }
                }
            }
        }
        h2 { "Params" }
        @if params.is_empty() { p.muted { "None." } } @else {
            table #params {
                thead { tr { th { "Name" } th { "Value" } } }
                tbody { @for p in &params { tr { td { (p.key) } td { (p.value) } } } }
            }
        }
        h2 { "Metrics" }
        @if metrics.is_empty() { p.muted { "None." } } @else {
            table #metrics {
                thead { tr { th { "Name" } th.num { "Last value" } th.num { "Step" } th { "Logged (UTC)" } } }
                tbody {
                    @for m in &metrics {
                        tr { td { (m.key) } td.num { (number(m.value)) } td.num { (m.step) } td { (time(Some(m.timestamp))) } }
                    }
                }
            }
        }
        @if !metrics.is_empty() {
            h2 { "Charts" }
            (charts(&metrics.iter().map(|m| m.key.clone()).collect::<Vec<_>>(), &[(info.run_uuid.clone(), info.run_name.clone())]))
        }
        h2 { "Tags" }
        @if tags.is_empty() { p.muted { "None." } } @else {
            table #tags {
                thead { tr { th { "Name" } th { "Value" } } }
                tbody { @for t in &tags { tr { td { (t.key) } td { (t.value) } } } }
            }
        }
    };
    chart_layout(&info.run_name, body).into_response()
}
