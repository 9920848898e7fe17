//! `/experiments/{id}`: an experiment's runs as a table, paged on the server.
//!
//! The URL holds the view: `filter` (MLflow's search language, parsed by the store's own
//! parser: an error shows above the table, naming what is wrong), `order` (`metrics.acc DESC`,
//! `params.lr`, `attributes.start_time`; a column's header sorts by it), `col` (repeated: the
//! columns shown, `metrics.KEY`, `params.KEY`, `tags.KEY`; by default the experiment's first
//! metrics and params, found over all its runs, not one page), `size` and `page` (the store's
//! page token), `nest=0` (every run its own row).
//!
//! Without a filter, pages hold top-level runs and each parent's child runs (pipeline steps,
//! search trials: runs tagged `mlflow.parentRunId`) sit under it, hidden until its "▸ N
//! children" link opens them (`table.js`; without JavaScript the link lists them as a filtered
//! table). With a filter, every matching run is its own row.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use shipyard_core::Error;
use shipyard_core::entities::{Run, ViewType};
use shipyard_store::overview::{ChildRuns, ExperimentKeys};
use shipyard_store::search::{PARENT_RUN_TAG, RunSearch};

use super::{duration, error_page, number, path_segment, query_value, shell, time};
use crate::UiState;

/// Runs per page unless `size` says otherwise, and the most `size` may ask.
const PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 1_000;
/// Columns shown by default: this many metrics and params.
const DEFAULT_METRICS: usize = 8;
const DEFAULT_PARAMS: usize = 6;
/// Child runs listed under a parent; the rest are one click away (a filter on the parent).
const CHILDREN_SHOWN: i64 = 100;

/// The view the URL asks for.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub filter: String,
    pub order: String,
    pub columns: Vec<Column>,
    pub size: i64,
    pub page: Option<String>,
    /// `nest=0`: every run as its own row, children included, rather than under its parent.
    pub flat: bool,
}

/// Which value of a metric a column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// The latest (greatest step), as MLflow shows.
    Last,
    /// The smallest or largest over every step (the best epoch).
    Min,
    Max,
}

/// A column beside the run's own attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Metric(String, Agg),
    Param(String),
    Tag(String),
}

/// Per (run id, metric key), the range of the values it logged.
pub type Ranges = std::collections::HashMap<(String, String), shipyard_store::overview::MetricRange>;

impl Column {
    fn parse(text: &str) -> Option<Column> {
        let (kind, key) = text.split_once('.')?;
        let key = key.to_owned();
        match kind {
            "metrics" => Some(match key.rsplit_once('@') {
                Some((k, "min")) => Column::Metric(k.to_owned(), Agg::Min),
                Some((k, "max")) => Column::Metric(k.to_owned(), Agg::Max),
                _ => Column::Metric(key, Agg::Last),
            }),
            "params" => Some(Column::Param(key)),
            "tags" => Some(Column::Tag(key)),
            _ => None,
        }
    }

    /// `metrics.KEY` and so on, as the order-by grammar writes it; `None` for a metric's min
    /// or max, which the store does not sort by.
    fn sort_name(&self) -> Option<String> {
        match self {
            Column::Metric(k, Agg::Last) => Some(format!("metrics.{}", quoted(k))),
            Column::Metric(..) => None,
            Column::Param(k) => Some(format!("params.{}", quoted(k))),
            Column::Tag(k) => Some(format!("tags.{}", quoted(k))),
        }
    }

    /// The header's text.
    fn label(&self) -> String {
        match self {
            Column::Metric(k, Agg::Last) | Column::Param(k) | Column::Tag(k) => k.clone(),
            Column::Metric(k, Agg::Min) => format!("{k} (min)"),
            Column::Metric(k, Agg::Max) => format!("{k} (max)"),
        }
    }

    /// The run's value in this column, and whether it is a number.
    fn value(&self, run: &Run, ranges: &Ranges) -> (String, bool) {
        let range = |k: &String| ranges.get(&(run.info.run_uuid.clone(), k.clone()));
        match self {
            Column::Metric(k, Agg::Last) => {
                (run.data.metrics.iter().find(|m| &m.key == k).map(|m| number(m.value)).unwrap_or_default(), true)
            }
            Column::Metric(k, Agg::Min) => (range(k).map(|r| number(r.min)).unwrap_or_default(), true),
            Column::Metric(k, Agg::Max) => (range(k).map(|r| number(r.max)).unwrap_or_default(), true),
            Column::Param(k) => {
                (run.data.params.iter().find(|p| &p.key == k).map(|p| p.value.clone()).unwrap_or_default(), false)
            }
            Column::Tag(k) => {
                (run.data.tags.iter().find(|t| &t.key == k).map(|t| t.value.clone()).unwrap_or_default(), false)
            }
        }
    }
}

/// A key as the search grammar needs it: plain when it is a plain identifier, else in
/// back-ticks (MLflow's quoting for keys with spaces, dots or dashes).
fn quoted(key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !key.is_empty() {
        key.to_owned()
    } else {
        format!("`{key}`")
    }
}

impl View {
    /// The view a query string asks for.
    pub fn parse(query: &str) -> View {
        let mut view = View { size: PAGE_SIZE, ..View::default() };
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "filter" => view.filter = value.trim().to_owned(),
                "order" => view.order = value.trim().to_owned(),
                "col" => view.columns.extend(Column::parse(value.trim().trim_matches('`'))),
                "size" => view.size = value.parse().unwrap_or(PAGE_SIZE).clamp(1, MAX_PAGE_SIZE),
                "page" if !value.is_empty() => view.page = Some(value.into_owned()),
                "nest" => view.flat = value == "0",
                _ => {}
            }
        }
        view
    }

    /// This view's query string (without `?`).
    fn query(&self) -> String {
        let mut parts = Vec::new();
        if !self.filter.is_empty() {
            parts.push(format!("filter={}", query_value(&self.filter)));
        }
        if !self.order.is_empty() {
            parts.push(format!("order={}", query_value(&self.order)));
        }
        for c in &self.columns {
            parts.push(format!("col={}", query_value(&plain_name(c))));
        }
        if self.size != PAGE_SIZE {
            parts.push(format!("size={}", self.size));
        }
        if let Some(page) = &self.page {
            parts.push(format!("page={}", query_value(page)));
        }
        if self.flat {
            parts.push("nest=0".into());
        }
        parts.join("&")
    }

    /// Whether child runs show under their parents: unless asked flat, and without a filter
    /// (a filter's matches are shown as they are, children among them).
    fn grouped(&self) -> bool {
        !self.flat && self.filter.is_empty()
    }

    /// This view's address for the experiment, with `change` applied.
    fn href(&self, experiment_id: &str, change: impl FnOnce(&mut View)) -> String {
        let mut view = self.clone();
        change(&mut view);
        let base = format!("/experiments/{}", path_segment(experiment_id));
        let query = view.query();
        if query.is_empty() { base } else { format!("{base}?{query}") }
    }

    /// The CSV export of every run this view matches (its filter, order and columns).
    fn csv_href(&self, experiment_id: &str) -> String {
        let view = View { page: None, size: PAGE_SIZE, ..self.clone() };
        format!("/experiments/{}/runs.csv?{}", path_segment(experiment_id), view.query())
    }
}

/// The default columns: the experiment's first metrics and params.
fn default_columns(keys: &ExperimentKeys) -> Vec<Column> {
    keys.metrics
        .iter()
        .take(DEFAULT_METRICS)
        .map(|k| Column::Metric(k.clone(), Agg::Last))
        .chain(keys.params.iter().take(DEFAULT_PARAMS).map(|k| Column::Param(k.clone())))
        .collect()
}

pub async fn page(
    State(state): State<UiState>,
    Path(experiment_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut view = View::parse(query.as_deref().unwrap_or(""));
    let experiment = match state.db.get_experiment(&experiment_id).await {
        Ok(e) => e,
        Err(e) => return error_page(&e),
    };
    let keys = match state.db.experiment_keys(&experiment_id).await {
        Ok(k) => k,
        Err(e) => return error_page(&e),
    };
    let explicit_columns = !view.columns.is_empty();
    if !explicit_columns {
        view.columns = default_columns(&keys);
    }
    let searched = search(&state, &experiment_id, &view, view.page.clone(), view.grouped()).await;
    let (runs, next, problem) = match searched {
        Ok(page) => (page.items, page.next_page_token, None),
        // The filter, the order or the page token is wrong: said above the table.
        Err(Error::InvalidParameter(message)) => (Vec::new(), None, Some(message)),
        Err(e) => return error_page(&e),
    };
    let children = if view.grouped() {
        let parents: Vec<String> = runs.iter().map(|r| r.info.run_uuid.clone()).collect();
        match state.db.child_runs(&parents, CHILDREN_SHOWN).await {
            Ok(c) => c,
            Err(e) => return error_page(&e),
        }
    } else {
        ChildRuns::default()
    };
    let shown: Vec<Run> = runs.iter().chain(children.shown.values().flatten()).cloned().collect();
    let ranges = match metric_ranges(&state, &view, &shown).await {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    let status = if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = html! {
        div.crumbs { a href="/" { "Experiments" } " / " }
        h1 { (experiment.name) }
        form.search method="get" action={ "/experiments/" (path_segment(&experiment_id)) } {
            input type="text" name="filter" value=(view.filter)
                placeholder="metrics.accuracy > 0.9 AND params.model = 'forest'" aria-label="Filter runs";
            @if !view.order.is_empty() { input type="hidden" name="order" value=(view.order); }
            @if explicit_columns {
                @for c in &view.columns { input type="hidden" name="col" value=(plain_name(c)); }
            }
            button type="submit" { "Filter" }
        }
        @if let Some(message) = &problem { p.error #filter-error { (message) } }
        (columns_picker(&experiment_id, &view, &keys))
        p.muted #grouping {
            @if view.grouped() {
                "Child runs (pipeline steps, search trials) are under their parents. "
                a href=(view.href(&experiment_id, |v| { v.flat = true; v.page = None; })) { "Show every run as its own row" }
            } @else if view.flat {
                a href=(view.href(&experiment_id, |v| { v.flat = false; v.page = None; })) { "Group child runs under their parents" }
            }
        }
        form #compare-form method="get" action="/compare" {
            button type="submit" #compare-button { "Compare selected runs" }
        }
        (table(&experiment_id, &view, &runs, &children, &ranges))
        div.pager {
            @if view.page.is_some() { a #first-page href=(view.href(&experiment_id, |v| v.page = None)) { "First page" } }
            @if let Some(token) = &next {
                a #next-page href=(view.href(&experiment_id, |v| v.page = Some(token.clone()))) { "Next page" }
            }
            span.muted { (runs.len()) " runs on this page" }
            a #csv href=(view.csv_href(&experiment_id)) { "Download every matching run (CSV)" }
        }
    };
    (status, shell(&experiment.name, body, &[], &["table.js"])).into_response()
}

/// The ranges the view's min and max columns need, for `runs`.
pub async fn metric_ranges(state: &UiState, view: &View, runs: &[Run]) -> Result<Ranges, Error> {
    let keys: Vec<String> = view
        .columns
        .iter()
        .filter_map(|c| match c {
            Column::Metric(k, Agg::Min | Agg::Max) => Some(k.clone()),
            _ => None,
        })
        .collect();
    if keys.is_empty() {
        return Ok(Ranges::new());
    }
    let ids: Vec<String> = runs.iter().map(|r| r.info.run_uuid.clone()).collect();
    state.db.metric_ranges(&ids, &keys).await
}

fn plain_name(c: &Column) -> String {
    match c {
        Column::Metric(k, Agg::Last) => format!("metrics.{k}"),
        Column::Metric(k, Agg::Min) => format!("metrics.{k}@min"),
        Column::Metric(k, Agg::Max) => format!("metrics.{k}@max"),
        Column::Param(k) => format!("params.{k}"),
        Column::Tag(k) => format!("tags.{k}"),
    }
}

/// Every key of the experiment as a checkbox: the chosen columns, sent back in the URL.
fn columns_picker(experiment_id: &str, view: &View, keys: &ExperimentKeys) -> Markup {
    let groups = [("Params", "params", &keys.params), ("Tags", "tags", &keys.tags)];
    html! {
        details.columns {
            summary { "Columns" }
            form method="get" action={ "/experiments/" (path_segment(experiment_id)) } {
                @if !view.filter.is_empty() { input type="hidden" name="filter" value=(view.filter); }
                @if !view.order.is_empty() { input type="hidden" name="order" value=(view.order); }
                @if !keys.metrics.is_empty() {
                    fieldset {
                        legend { "Metrics: last, min, max" }
                        @for key in &keys.metrics {
                            span.metric-choice {
                                (key) " "
                                @for (suffix, label) in [("", "last"), ("@min", "min"), ("@max", "max")] {
                                    (column_choice(view, &format!("metrics.{key}{suffix}"), label))
                                }
                            }
                        }
                    }
                }
                @for (title, prefix, list) in groups {
                    @if !list.is_empty() {
                        fieldset {
                            legend { (title) }
                            @for key in list.iter() {
                                (column_choice(view, &format!("{prefix}.{key}"), key))
                            }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
        }
    }
}

/// One column's checkbox, ticked when the view shows it.
fn column_choice(view: &View, name: &str, label: &str) -> Markup {
    html! {
        label {
            input type="checkbox" name="col" value=(name) checked[view.columns.iter().any(|c| plain_name(c) == name)];
            " " (label)
        }
        " "
    }
}

/// The runs, with a header per column that sorts by it (descending first, then ascending).
fn table(experiment_id: &str, view: &View, runs: &[Run], children: &ChildRuns, ranges: &Ranges) -> Markup {
    let sort = |key: String| {
        let descending = format!("{key} DESC");
        let next = if view.order == descending { format!("{key} ASC") } else { descending };
        view.href(experiment_id, |v| {
            v.order = next;
            v.page = None;
        })
    };
    html! {
        div.scroll {
            table #runs {
                thead {
                    tr {
                        th.pick { span.visually-hidden { "Compare" } }
                        th { a href=(sort("attributes.run_name".into())) { "Run" } }
                        th { a href=(sort("attributes.status".into())) { "Status" } }
                        th { a href=(sort("attributes.start_time".into())) { "Started (UTC)" } }
                        th { "Duration" }
                        th { a href=(sort("attributes.user_id".into())) { "User" } }
                        @for c in &view.columns {
                            @let numeric = matches!(c, Column::Metric(..));
                            th class=[numeric.then_some("num")] title=(plain_name(c)) {
                                @if let Some(name) = c.sort_name() { a href=(sort(name)) { (c.label()) } }
                                @else { (c.label()) }
                            }
                        }
                    }
                }
                tbody {
                    @for run in runs {
                        @let id = &run.info.run_uuid;
                        @let count = children.counts.get(id).copied().unwrap_or(0);
                        (row(view, run, ranges, None, (count > 0).then(|| children_link(experiment_id, view, id, count))))
                        @if let Some(kids) = children.shown.get(id) {
                            @for child in kids { (row(view, child, ranges, Some(id), None)) }
                            @if count > kids.len() as i64 {
                                tr.child.more data-parent=(id) hidden {
                                    td colspan=(6 + view.columns.len()) {
                                        a href=(children_href(experiment_id, view, id)) { "All " (count) " child runs" }
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

/// A filter that lists the children of `parent`.
fn children_href(experiment_id: &str, view: &View, parent: &str) -> String {
    view.href(experiment_id, |v| {
        v.filter = format!("tags.`{PARENT_RUN_TAG}` = '{parent}'");
        v.page = None;
    })
}

/// The toggle of a parent's children: a link to them that `table.js` turns into an expander.
fn children_link(experiment_id: &str, view: &View, parent: &str, count: i64) -> Markup {
    html! {
        " "
        a.children-toggle href=(children_href(experiment_id, view, parent)) data-parent=(parent) aria-expanded="false" {
            "▸ " (count) @if count == 1 { " child" } @else { " children" }
        }
    }
}

/// One run's row; a child's row is hidden under its parent until expanded.
fn row(view: &View, run: &Run, ranges: &Ranges, parent: Option<&String>, toggle: Option<Markup>) -> Markup {
    html! {
        tr.child[parent.is_some()] data-parent=[parent] hidden[parent.is_some()] {
            td.pick {
                input type="checkbox" name="run" value=(run.info.run_uuid) form="compare-form"
                    aria-label={ "Compare " (run.info.run_name) };
            }
            td.name {
                @if parent.is_some() { span.indent { "↳ " } }
                a href={ "/runs/" (path_segment(&run.info.run_uuid)) } { (run.info.run_name) }
                @if let Some(toggle) = toggle { (toggle) }
            }
            td class={ "status-" (run.info.status.as_str()) } { (run.info.status.as_str()) }
            td { (time(run.info.start_time)) }
            td { (duration(run.info.start_time, run.info.end_time)) }
            td { (run.info.user_id) }
            @for c in &view.columns {
                @let (value, numeric) = c.value(run, ranges);
                td class=[numeric.then_some("num")] { (value) }
            }
        }
    }
}

/// Runs per page of the CSV export.
const EXPORT_PAGE: i64 = 1_000;

/// `/experiments/{id}/runs.csv`: every run the view matches, not one page: the store is read a
/// thousand runs at a time and each page is written out as it comes, so the export's memory
/// does not grow with the experiment. Columns: the run's own (id, name, status, start, end,
/// user), then the view's. A filter the store refuses is a 400 naming the problem, before any
/// row is sent.
pub async fn csv_export(
    State(state): State<UiState>,
    Path(experiment_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut view = View::parse(query.as_deref().unwrap_or(""));
    view.size = EXPORT_PAGE;
    view.page = None;
    if let Err(e) = state.db.get_experiment(&experiment_id).await {
        return error_page(&e);
    }
    if view.columns.is_empty() {
        match state.db.experiment_keys(&experiment_id).await {
            Ok(keys) => view.columns = default_columns(&keys),
            Err(e) => return error_page(&e),
        }
    }
    let first = match search(&state, &experiment_id, &view, None, false).await {
        Ok(page) => page,
        Err(Error::InvalidParameter(message)) => return (StatusCode::BAD_REQUEST, message).into_response(),
        Err(e) => return error_page(&e),
    };
    let mut header: Vec<String> =
        ["run_id", "run_name", "status", "start_time", "end_time", "user"].map(str::to_owned).to_vec();
    header.extend(view.columns.iter().map(plain_name));
    let context = std::sync::Arc::new((state, experiment_id.clone(), view));
    let pages = futures::stream::unfold(Some((first, Some(header))), move |next| {
        let context = context.clone();
        async move {
            let (page, header) = next?;
            let (state, experiment_id, view) = context.as_ref();
            let ranges = match metric_ranges(state, view, &page.items).await {
                Ok(r) => r,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
            };
            let chunk = csv_rows(header, &page.items, view, &ranges);
            let following = match page.next_page_token {
                None => None,
                Some(token) => match search(state, experiment_id, view, Some(token), false).await {
                    Ok(page) => Some((page, None)),
                    Err(e) => {
                        tracing::error!("the CSV export of experiment {experiment_id} stopped: {e}");
                        return Some((Err(std::io::Error::other(e.to_string())), None));
                    }
                },
            };
            Some((chunk.map(bytes::Bytes::from), following))
        }
    });
    let name = format!("attachment; filename=\"experiment-{experiment_id}-runs.csv\"");
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, name),
        ],
        axum::body::Body::from_stream(pages),
    )
        .into_response()
}

/// One page of the view's runs.
async fn search(
    state: &UiState,
    experiment_id: &str,
    view: &View,
    page: Option<String>,
    top_level_only: bool,
) -> Result<shipyard_store::tracking::Page<Run>, Error> {
    let order: Vec<String> = if view.order.is_empty() { Vec::new() } else { vec![view.order.clone()] };
    state
        .db
        .search_runs_with(RunSearch {
            experiment_ids: &[experiment_id.to_owned()],
            filter: Some(view.filter.as_str()).filter(|f| !f.is_empty()),
            view: ViewType::ActiveOnly,
            max_results: Some(view.size),
            order_by: &order,
            page_token: page.as_deref(),
            top_level_only,
        })
        .await
}

/// `runs` as CSV lines (the header first when given); metric values in full precision.
fn csv_rows(header: Option<Vec<String>>, runs: &[Run], view: &View, ranges: &Ranges) -> std::io::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    if let Some(header) = header {
        out.write_record(&header)?;
    }
    for run in runs {
        let mut record = vec![
            run.info.run_uuid.clone(),
            run.info.run_name.clone(),
            run.info.status.as_str().to_owned(),
            run.info.start_time.map(shipyard_core::entities::utc_timestamp).unwrap_or_default(),
            run.info.end_time.map(shipyard_core::entities::utc_timestamp).unwrap_or_default(),
            run.info.user_id.clone(),
        ];
        record.extend(view.columns.iter().map(|c| exact_value(c, run, ranges)));
        out.write_record(&record)?;
    }
    out.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
}

/// A column's value for export: numbers as Rust prints them (the shortest text that reads
/// back as the same double), not rounded for display.
fn exact_value(column: &Column, run: &Run, ranges: &Ranges) -> String {
    let range = |k: &String| ranges.get(&(run.info.run_uuid.clone(), k.clone()));
    match column {
        Column::Metric(k, Agg::Last) => {
            run.data.metrics.iter().find(|m| &m.key == k).map(|m| m.value.to_string()).unwrap_or_default()
        }
        Column::Metric(k, Agg::Min) => range(k).map(|r| r.min.to_string()).unwrap_or_default(),
        Column::Metric(k, Agg::Max) => range(k).map(|r| r.max.to_string()).unwrap_or_default(),
        other => other.value(run, ranges).0,
    }
}
