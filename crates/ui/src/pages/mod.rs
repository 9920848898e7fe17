//! The pages, and what they share: the layout, how values read, how a store error shows.
//!
//! - [`experiments`]: `/`, every experiment with its run count and last activity, searchable.
//! - [`runs`]: `/experiments/{id}`, the runs table: MLflow's filter language, sort, chosen
//!   columns and server-side pages, all in the URL.
//! - [`run`]: `/runs/{id}`, one run: overview, dataset inputs, params, metrics, charts, tags.
//! - [`compare`]: `/compare?run=..`, runs side by side: differing params, metrics and tags
//!   marked, metric charts overlaid, a scatter of any param or metric against a metric.
//! - [`models`]: `/models`, a model (versions, aliases, alias history, deployments), a version
//!   (lineage, gate report, signature, engine).
//! - [`deployments`]: `/deployments`, a deployment (arms, rollout, live traffic, monitor values,
//!   drift heat-map, alerts), `/alerts`.
//! - [`drift`]: how a drift comparison reads (summary, per-column verdicts, paired histograms).
//! - [`window`]: `/deployments/{name}/window?at=T`, a past monitor window: drift per feature
//!   with the reference's and the window's histograms (the heat-map's cells link here).
//! - [`datasets`]: `/datasets`, a dataset's versions and a version's profile.
//! - [`pipelines`]: `/pipelines/{run}`, a pipeline run's steps as a graph and a table.
//! - [`artifacts`]: `/runs/{id}/artifacts`, a run's files with previews read from their head.

pub mod artifacts;
pub mod compare;
pub mod datasets;
pub mod deployments;
pub mod drift;
pub mod experiments;
pub mod login;
pub mod models;
pub mod pipelines;
pub mod run;
pub mod runs;
pub mod window;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use shipyard_core::Error;

use crate::assets;

/// A whole page: the shell around `body`, titled `title`.
pub fn layout(title: &str, body: Markup) -> Markup {
    shell(title, body, &[], &[])
}

/// A page with metric charts: the shell plus uPlot and the charts script.
pub fn chart_layout(title: &str, body: Markup) -> Markup {
    shell(title, body, &["uPlot.min.css"], &["uPlot.min.js", "charts.js"])
}

tokio::task_local! {
    /// Who is signed in (their name and the page's form token, for the sign-out button), for
    /// the page being rendered; set by [`signed_in`].
    static SIGNED_IN: Option<(String, crate::csrf::FormToken)>;
}

/// The middleware that tells [`shell`] who is signed in (with `--auth`), so every page's header
/// shows the user and a sign-out button without each handler passing them along.
pub async fn signed_in(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let user = request.extensions().get::<shipyard_auth::Access>().map(|a| a.principal.user.username.clone());
    let token = request.extensions().get::<crate::csrf::FormToken>().cloned().unwrap_or_default();
    SIGNED_IN.scope(user.map(|u| (u, token)), next.run(request)).await
}

/// A page with extra static files: style sheets `styles`, scripts `scripts` (deferred).
pub fn shell(title: &str, body: Markup, styles: &[&str], scripts: &[&str]) -> Markup {
    let signed_in = SIGNED_IN.try_with(Clone::clone).ok().flatten();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Shipyard" }
                link rel="icon" type="image/svg+xml" href=(assets::url("favicon.svg"));
                link rel="stylesheet" href=(assets::url("shipyard.css"));
                @for file in styles { link rel="stylesheet" href=(assets::url(file)); }
                script src=(assets::url("links.js")) {}
                @for file in scripts { script src=(assets::url(file)) defer {} }
            }
            body {
                header.top {
                    a.brand href="/" { "Shipyard" }
                    nav { a href="/" { "Experiments" } a href="/models" { "Models" } a href="/datasets" { "Datasets" } a href="/deployments" { "Deployments" } a href="/alerts" { "Alerts" } }
                    @if let Some((user, token)) = &signed_in {
                        form.account method="post" action="/logout" {
                            span #signed-in { (user) }
                            (crate::csrf::hidden_field(token))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The UI's one mapping from an error to what the user is told: a missing entity is 404, a
/// bad request 400 (both with their message), the rest 500 with a generic message (the error
/// itself goes to the log).
pub fn status_and_message(error: &Error) -> (StatusCode, String) {
    match error {
        Error::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
        Error::InvalidParameter(m) => (StatusCode::BAD_REQUEST, m.clone()),
        other => {
            tracing::error!("a UI request failed: {other}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the server failed to read the store; the error is in its log".into())
        }
    }
}

/// What an action left to say on the page it sent the browser back to (`?done=...`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Notice {
    pub done: Option<String>,
    pub alias: Option<String>,
}

impl Notice {
    pub fn show(&self) -> Markup {
        crate::actions::notice(self.done.as_deref(), self.alias.as_deref())
    }
}

/// A store error as a page (see [`status_and_message`]).
pub fn error_page(error: &Error) -> Response {
    let (status, message) = status_and_message(error);
    (status, layout("Error", html! { h1 { "Not shown" } p.error { (message) } })).into_response()
}

/// Buckets a chart asks for over a metric's whole history (a zoom asks for its width's worth):
/// fixed, so the page can name the first charts' requests before any script runs.
const WHOLE_HISTORY_BUCKETS: usize = 1500;
/// Charts whose whole-history series the page preloads (those in view first).
const PRELOADED_CHARTS: usize = 4;

/// The series request `charts.js` makes for a chart's whole history on the step axis, encoded
/// as its `URLSearchParams` encodes it (the browser reuses a preload only for the same URL).
fn whole_history_url(runs: &[(String, String)], key: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (id, _) in runs {
        q.append_pair("run", id);
    }
    q.append_pair("key", key).append_pair("x", "step").append_pair("buckets", &WHOLE_HISTORY_BUCKETS.to_string());
    format!("/ui-api/series?{}", q.finish())
}

/// The charts of `keys` for the runs `runs` (id, name): the axis, smoothing and scale controls
/// and one chart per key, drawn by `charts.js` from the series endpoint when scrolled to. The
/// first charts' series are preloaded: their requests start while the scripts still load.
pub fn charts(keys: &[String], runs: &[(String, String)]) -> Markup {
    let ids = runs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(" ");
    html! {
        @for key in keys.iter().take(PRELOADED_CHARTS) {
            link rel="preload" as="fetch" crossorigin="anonymous" href=(whole_history_url(runs, key));
        }
        section.charts #charts data-buckets=(WHOLE_HISTORY_BUCKETS) {
            div.chart-controls {
                label { "x axis " select name="x" {
                    option value="step" selected { "step" }
                    option value="time" { "wall time" }
                    option value="relative" { "relative time" }
                } }
                label { "smoothing " input type="range" name="smooth" min="0" max="0.99" step="0.01" value="0"; }
                label { input type="checkbox" name="log"; " log scale" }
                span.muted { "drag across a chart to zoom, double-click to see it whole" }
            }
            @for (id, name) in runs { span hidden data-run-name=(id) { (name) } }
            div.chart-grid {
                @for key in keys {
                    figure.chart data-key=(key) data-runs=(ids) {
                        figcaption { (key) }
                        div.chart-plot {}
                    }
                }
            }
            noscript { p.muted { "The charts need JavaScript; the tables show each value." } }
        }
    }
}

/// A time in ms as UTC, to the second.
pub fn time(millis: Option<i64>) -> String {
    millis.map(shipyard_core::entities::utc_seconds).unwrap_or_default()
}

/// A duration in ms, short (`850 ms`, `12.4 s`, `3 min 05 s`, `2 h 10 min`).
pub fn duration(start: Option<i64>, end: Option<i64>) -> String {
    let (Some(start), Some(end)) = (start, end) else { return String::new() };
    let ms = (end - start).max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1e3),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1_000),
        _ => format!("{} h {:02} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// A metric value as people read it.
pub fn number(v: f64) -> String {
    shipyard_core::display::number(v)
}

/// `text` made safe inside a URL's query.
pub fn query_value(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `text` made safe as one path segment.
pub fn path_segment(text: &str) -> String {
    query_value(text)
}
