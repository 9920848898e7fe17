//! `/experiments/{id}`: an experiment's runs as a table, paged on the server.
//!
//! The URL holds the view: `filter` (MLflow's search language, parsed by the store's own
//! parser: an error shows above the table, naming what is wrong), `order` (`metrics.acc DESC`,
//! `params.lr`, `attributes.start_time`; a column's header sorts by it), `col` (repeated: the
//! columns shown, `metrics.KEY`, `params.KEY`, `tags.KEY`; by default the experiment's first
//! metrics and params, found over all its runs, not one page), `size` and `page` (the store's
//! page token).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use shipyard_core::Error;
use shipyard_core::entities::{Run, ViewType};
use shipyard_store::overview::ExperimentKeys;

use super::{duration, error_page, layout, number, path_segment, query_value, time};
use crate::UiState;

/// Runs per page unless `size` says otherwise, and the most `size` may ask.
const PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 1_000;
/// Columns shown by default: this many metrics and params.
const DEFAULT_METRICS: usize = 8;
const DEFAULT_PARAMS: usize = 6;

/// The view the URL asks for.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub filter: String,
    pub order: String,
    pub columns: Vec<Column>,
    pub size: i64,
    pub page: Option<String>,
}

/// A column beside the run's own attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Metric(String),
    Param(String),
    Tag(String),
}

impl Column {
    fn parse(text: &str) -> Option<Column> {
        let (kind, key) = text.split_once('.')?;
        let key = key.to_owned();
        match kind {
            "metrics" => Some(Column::Metric(key)),
            "params" => Some(Column::Param(key)),
            "tags" => Some(Column::Tag(key)),
            _ => None,
        }
    }

    /// `metrics.KEY` and so on, as the URL and the order-by grammar write it.
    fn name(&self) -> String {
        match self {
            Column::Metric(k) => format!("metrics.{}", quoted(k)),
            Column::Param(k) => format!("params.{}", quoted(k)),
            Column::Tag(k) => format!("tags.{}", quoted(k)),
        }
    }

    fn key(&self) -> &str {
        match self {
            Column::Metric(k) | Column::Param(k) | Column::Tag(k) => k,
        }
    }

    fn value(&self, run: &Run) -> (String, bool) {
        match self {
            Column::Metric(k) => {
                (run.data.metrics.iter().find(|m| &m.key == k).map(|m| number(m.value)).unwrap_or_default(), true)
            }
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
                _ => {}
            }
        }
        view
    }

    /// This view's address for the experiment, with `change` applied.
    fn href(&self, experiment_id: &str, change: impl FnOnce(&mut View)) -> String {
        let mut view = self.clone();
        change(&mut view);
        let mut parts = Vec::new();
        if !view.filter.is_empty() {
            parts.push(format!("filter={}", query_value(&view.filter)));
        }
        if !view.order.is_empty() {
            parts.push(format!("order={}", query_value(&view.order)));
        }
        for c in &view.columns {
            parts.push(format!("col={}", query_value(&plain_name(c))));
        }
        if view.size != PAGE_SIZE {
            parts.push(format!("size={}", view.size));
        }
        if let Some(page) = &view.page {
            parts.push(format!("page={}", query_value(page)));
        }
        let base = format!("/experiments/{}", path_segment(experiment_id));
        if parts.is_empty() { base } else { format!("{base}?{}", parts.join("&")) }
    }
}

/// The default columns: the experiment's first metrics and params.
fn default_columns(keys: &ExperimentKeys) -> Vec<Column> {
    keys.metrics
        .iter()
        .take(DEFAULT_METRICS)
        .map(|k| Column::Metric(k.clone()))
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
    let order: Vec<String> = if view.order.is_empty() { Vec::new() } else { vec![view.order.clone()] };
    let searched = state
        .db
        .search_runs(
            std::slice::from_ref(&experiment_id),
            Some(view.filter.as_str()).filter(|f| !f.is_empty()),
            ViewType::ActiveOnly,
            Some(view.size),
            &order,
            view.page.as_deref(),
        )
        .await;
    let (runs, next, problem) = match searched {
        Ok(page) => (page.items, page.next_page_token, None),
        // The filter, the order or the page token is wrong: said above the table.
        Err(Error::InvalidParameter(message)) => (Vec::new(), None, Some(message)),
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
        (table(&experiment_id, &view, &runs))
        div.pager {
            @if view.page.is_some() { a #first-page href=(view.href(&experiment_id, |v| v.page = None)) { "First page" } }
            @if let Some(token) = &next {
                a #next-page href=(view.href(&experiment_id, |v| v.page = Some(token.clone()))) { "Next page" }
            }
            span.muted { (runs.len()) " runs on this page" }
        }
    };
    (status, layout(&experiment.name, body)).into_response()
}

fn plain_name(c: &Column) -> String {
    match c {
        Column::Metric(k) => format!("metrics.{k}"),
        Column::Param(k) => format!("params.{k}"),
        Column::Tag(k) => format!("tags.{k}"),
    }
}

/// Every key of the experiment as a checkbox: the chosen columns, sent back in the URL.
fn columns_picker(experiment_id: &str, view: &View, keys: &ExperimentKeys) -> Markup {
    let groups =
        [("Metrics", "metrics", &keys.metrics), ("Params", "params", &keys.params), ("Tags", "tags", &keys.tags)];
    html! {
        details.columns {
            summary { "Columns" }
            form method="get" action={ "/experiments/" (path_segment(experiment_id)) } {
                @if !view.filter.is_empty() { input type="hidden" name="filter" value=(view.filter); }
                @if !view.order.is_empty() { input type="hidden" name="order" value=(view.order); }
                @for (title, prefix, list) in groups {
                    @if !list.is_empty() {
                        fieldset {
                            legend { (title) }
                            @for key in list.iter() {
                                @let name = format!("{prefix}.{key}");
                                label {
                                    input type="checkbox" name="col" value=(name)
                                        checked[view.columns.iter().any(|c| plain_name(c) == name)];
                                    " " (key)
                                }
                                " "
                            }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
        }
    }
}

/// The runs, with a header per column that sorts by it (descending first, then ascending).
fn table(experiment_id: &str, view: &View, runs: &[Run]) -> Markup {
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
                        th { a href=(sort("attributes.run_name".into())) { "Run" } }
                        th { a href=(sort("attributes.status".into())) { "Status" } }
                        th { a href=(sort("attributes.start_time".into())) { "Started (UTC)" } }
                        th { "Duration" }
                        th { a href=(sort("attributes.user_id".into())) { "User" } }
                        @for c in &view.columns {
                            @let numeric = matches!(c, Column::Metric(_));
                            th class=[numeric.then_some("num")] title=(plain_name(c)) {
                                a href=(sort(c.name())) { (c.key()) }
                            }
                        }
                    }
                }
                tbody {
                    @for run in runs {
                        tr {
                            td { a href={ "/runs/" (path_segment(&run.info.run_uuid)) } { (run.info.run_name) } }
                            td class={ "status-" (run.info.status.as_str()) } { (run.info.status.as_str()) }
                            td { (time(run.info.start_time)) }
                            td { (duration(run.info.start_time, run.info.end_time)) }
                            td { (run.info.user_id) }
                            @for c in &view.columns {
                                @let (value, numeric) = c.value(run);
                                td class=[numeric.then_some("num")] { (value) }
                            }
                        }
                    }
                }
            }
        }
    }
}
