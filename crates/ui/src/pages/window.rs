//! `/deployments/{name}/window?at=T`: the monitor's window of a deployment as it stood at time
//! `T` (ms since the epoch; now without it), computed by the monitor's own code
//! (`Monitor::window_at`) from the rows the prediction log still holds: each feature's drift test,
//! statistic, verdict and the reference's and the window's distributions on common bins, the
//! answers' drift, and every value. The drift heat-map's cells link here.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use shipyard_core::Error;
use shipyard_monitor::window::WindowReport;

use super::deployments::deployment_href;
use super::{drift, error_page, layout, number, time};
use crate::UiState;

#[derive(Debug, Deserialize)]
pub struct WindowQuery {
    at: Option<i64>,
}

/// `GET /deployments/{name}/window?at=T`.
pub async fn page(State(state): State<UiState>, Path(name): Path<String>, Query(q): Query<WindowQuery>) -> Response {
    let Some(monitor) = &state.monitor else {
        return error_page(&Error::invalid("this server does not compute monitor windows"));
    };
    if let Err(e) = state.db.get_deployment(&name).await {
        return error_page(&e);
    }
    let at = q.at.unwrap_or_else(shipyard_core::entities::now_millis);
    let report = match monitor.window_at(&name, at).await {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    let title = format!("{name}: the window at {} UTC", time(Some(at)));
    let body = html! {
        div.crumbs { a href="/deployments" { "Deployments" } " / " a href=(deployment_href(&name)) { (name) } " / " }
        h1 { (title) }
        (facts(&report))
        h2 { "Data drift per feature" }
        (drift_table(&report))
        h2 { "Drift of the answers" }
        @match &report.prediction_drift {
            Some(d) => { (drift::columns_table("prediction-drift", std::slice::from_ref(d))) }
            None => { p.muted { "Not computed: the reference has no target column, or the window has no answers." } }
        }
        h2 { "Values" }
        table #window-values {
            thead { tr { th { "Monitor" } th.num { "Value" } } }
            tbody { @for (k, v) in &report.values { tr { td { (k) } td.num { (number(*v)) } } } }
        }
        @if !report.notes.is_empty() {
            h2 { "Notes" }
            ul #window-notes { @for n in &report.notes { li { (n) } } }
        }
    };
    layout(&title, body).into_response()
}

fn facts(r: &WindowReport) -> Markup {
    html! {
        dl.facts #window-facts {
            dt { "Window" } dd { (r.window) }
            dt { "Rows" } dd { (r.rows) " in " (r.requests) " requests" }
            dt { "Logged (UTC)" } dd { @if r.rows > 0 { (time(r.from_time)) " to " (time(r.to_time)) } @else { span.muted { "no rows: the log holds none from then (retention), or none were logged" } } }
            dt { "Reference" } dd { (r.reference) }
        }
    }
}

fn drift_table(r: &WindowReport) -> Markup {
    match &r.drift {
        Some(drift) => drift::report(drift, "window-drift"),
        None => html! { p.muted #no-window-drift { "No drift computed for this window." } },
    }
}
