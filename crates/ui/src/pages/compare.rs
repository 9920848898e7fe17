//! `/compare?run=A&run=B...`: runs side by side (from any experiments): their params, metrics
//! and tags in one table each, the rows whose values differ marked (and `diff=1` keeps only
//! those), every metric charted with the runs overlaid, and a scatter of any param or metric
//! against any metric (`compare.js`, from the tables' own values).
//!
//! The runs table's checkboxes and its "Compare" button send here; so can any link.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use shipyard_core::Error;
use shipyard_core::entities::Run;

use super::{charts, duration, error_page, number, path_segment, shell, time};
use crate::UiState;
use crate::series::MAX_RUNS;

/// One row of a comparison: a key and each run's value (absent where the run has none).
struct Row {
    key: String,
    values: Vec<Option<String>>,
    /// The values as numbers, when every present value is one (for the scatter).
    numbers: Vec<Option<f64>>,
}

impl Row {
    fn differs(&self) -> bool {
        self.values.iter().any(|v| v != &self.values[0])
    }
}

/// The rows of `keys`, each run's value found by `value`.
fn rows(runs: &[Run], value: impl Fn(&Run, &str) -> Option<(String, Option<f64>)>) -> Vec<Row> {
    let mut keys: Vec<String> = Vec::new();
    for run in runs {
        for key in run_keys(run, &value) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let found: Vec<Option<(String, Option<f64>)>> = runs.iter().map(|r| value(r, &key)).collect();
            Row {
                values: found.iter().map(|v| v.as_ref().map(|(text, _)| text.clone())).collect(),
                numbers: found.iter().map(|v| v.as_ref().and_then(|(_, n)| *n)).collect(),
                key,
            }
        })
        .collect()
}

/// The keys a run has, as `value` sees them (it answers for the keys of params, metrics or tags).
fn run_keys(run: &Run, value: &impl Fn(&Run, &str) -> Option<(String, Option<f64>)>) -> Vec<String> {
    let all = run
        .data
        .params
        .iter()
        .map(|p| p.key.clone())
        .chain(run.data.metrics.iter().map(|m| m.key.clone()))
        .chain(run.data.tags.iter().map(|t| t.key.clone()));
    all.filter(|k| value(run, k).is_some()).collect()
}

fn param(run: &Run, key: &str) -> Option<(String, Option<f64>)> {
    run.data.params.iter().find(|p| p.key == key).map(|p| (p.value.clone(), p.value.trim().parse().ok()))
}

fn metric(run: &Run, key: &str) -> Option<(String, Option<f64>)> {
    run.data.metrics.iter().find(|m| m.key == key).map(|m| (number(m.value), Some(m.value)))
}

fn tag(run: &Run, key: &str) -> Option<(String, Option<f64>)> {
    if key.starts_with("mlflow.") {
        return None;
    }
    run.data.tags.iter().find(|t| t.key == key).map(|t| (t.value.clone(), None))
}

pub async fn page(State(state): State<UiState>, RawQuery(query): RawQuery) -> Response {
    let mut ids: Vec<String> = Vec::new();
    let mut only_diff = false;
    for (name, value) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "run" if !value.is_empty() && !ids.iter().any(|i| i == value.as_ref()) => ids.push(value.into_owned()),
            "diff" => only_diff = value == "1",
            _ => {}
        }
    }
    if ids.len() < 2 || ids.len() > MAX_RUNS {
        let message = format!("Choose between 2 and {MAX_RUNS} runs to compare ({} chosen).", ids.len());
        return error_page(&Error::InvalidParameter(message));
    }
    let mut runs = Vec::with_capacity(ids.len());
    for id in &ids {
        match state.db.get_run(id).await {
            Ok(run) => runs.push(run),
            Err(e) => return error_page(&e),
        }
    }
    let params = rows(&runs, param);
    let metrics = rows(&runs, metric);
    let tags = rows(&runs, tag);
    let metric_keys: Vec<String> = metrics.iter().map(|r| r.key.clone()).collect();
    let named: Vec<(String, String)> =
        runs.iter().map(|r| (r.info.run_uuid.clone(), r.info.run_name.clone())).collect();
    let toggle = {
        let base: Vec<String> = ids.iter().map(|i| format!("run={}", super::query_value(i))).collect();
        let query = base.join("&");
        if only_diff { format!("/compare?{query}") } else { format!("/compare?{query}&diff=1") }
    };
    let body = html! {
        div.crumbs { a href="/" { "Experiments" } " / " }
        h1 { "Comparing " (runs.len()) " runs" }
        div.scroll {
            table #compare-runs {
                thead { tr { th { "Run" } th { "Status" } th { "Started (UTC)" } th { "Duration" } th { "Experiment" } } }
                tbody {
                    @for run in &runs {
                        tr {
                            td { a href={ "/runs/" (path_segment(&run.info.run_uuid)) } { (run.info.run_name) } }
                            td class={ "status-" (run.info.status.as_str()) } { (run.info.status.as_str()) }
                            td { (time(run.info.start_time)) }
                            td { (duration(run.info.start_time, run.info.end_time)) }
                            td { a href={ "/experiments/" (path_segment(&run.info.experiment_id)) } { (run.info.experiment_id) } }
                        }
                    }
                }
            }
        }
        p {
            a #diff-toggle href=(toggle) {
                @if only_diff { "Show every row" } @else { "Show only the rows that differ" }
            }
        }
        (section("Params", "params", &runs, &params, only_diff))
        (section("Metrics (last value)", "metrics", &runs, &metrics, only_diff))
        (section("Tags", "tags", &runs, &tags, only_diff))
        h2 { "Scatter" }
        div.scatter #scatter {
            div.chart-controls {
                label { "x " select name="scatter-x" {} }
                label { "y " select name="scatter-y" {} }
            }
            div.scatter-plot {}
            noscript { p.muted { "The scatter needs JavaScript; the tables above hold every value." } }
        }
        @if !metric_keys.is_empty() {
            h2 { "Metric charts" }
            (charts(&metric_keys, &named))
        }
    };
    shell("Compare runs", body, &["uPlot.min.css"], &["uPlot.min.js", "charts.js", "compare.js"]).into_response()
}

/// A table of `rows` with a column per run; rows that differ are marked, and with `only_diff`
/// the others are left out. Numeric cells carry their value for the scatter.
fn section(title: &str, id: &str, runs: &[Run], rows: &[Row], only_diff: bool) -> Markup {
    let shown: Vec<&Row> = rows.iter().filter(|r| !only_diff || r.differs()).collect();
    html! {
        h2 { (title) }
        @if shown.is_empty() {
            p.muted { @if rows.is_empty() { "None." } @else { "No differences." } }
        } @else {
            div.scroll {
                table.compare id=(id) {
                    thead { tr { th { "Name" } @for run in runs { th { (run.info.run_name) } } } }
                    tbody {
                        @for row in shown {
                            tr.differs[row.differs()] data-key={ (id) "." (row.key) } {
                                td { (row.key) }
                                @for (value, n) in row.values.iter().zip(&row.numbers) {
                                    td data-value=[n.filter(|n| n.is_finite())] { (value.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
