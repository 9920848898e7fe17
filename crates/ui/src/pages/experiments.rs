//! `/`: every active experiment, newest activity first, with its run count; `?q=` keeps those
//! whose name holds the text (case-insensitive, as MLflow's `name ILIKE`).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use shipyard_auth::ResourceType;
use shipyard_core::entities::ViewType;

use super::{error_page, layout, path_segment, time};
use crate::UiState;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// Text the name must hold.
    #[serde(default)]
    q: Option<String>,
}

/// At most this many experiments are listed (MLflow's search cap).
const MAX_EXPERIMENTS: i64 = 1_000;

pub async fn page(State(state): State<UiState>, caller: crate::Caller, Query(params): Query<Params>) -> Response {
    let q = params.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let found = state.db.search_experiments(ViewType::ActiveOnly, Some(MAX_EXPERIMENTS), None, &[], None).await;
    let mut experiments = match found {
        Ok(page) => crate::readable(&caller, ResourceType::Experiment, page.items, |e| e.experiment_id.as_str()),
        Err(e) => return error_page(&e),
    };
    if let Some(q) = q {
        let q = q.to_lowercase();
        experiments.retain(|e| e.name.to_lowercase().contains(&q));
    }
    let ids: Vec<String> = experiments.iter().map(|e| e.experiment_id.clone()).collect();
    let activity = match state.db.experiment_activity(&ids).await {
        Ok(a) => a,
        Err(e) => return error_page(&e),
    };
    let mut rows: Vec<_> = experiments.iter().zip(&activity).collect();
    // Newest activity first: a run's start or end, or the experiment's own last change.
    let last = |e: &shipyard_core::entities::Experiment, a: &shipyard_store::overview::ExperimentActivity| {
        a.last_run_time.unwrap_or(e.last_update_time).max(e.last_update_time)
    };
    // Ties (experiments changed in the same millisecond) go newest experiment first, so the
    // order never depends on the store's.
    let id = |e: &shipyard_core::entities::Experiment| e.experiment_id.parse::<i64>().unwrap_or(i64::MIN);
    rows.sort_by_key(|(e, a)| std::cmp::Reverse((last(e, a), id(e))));
    let body = html! {
        h1 { "Experiments" }
        form.search method="get" action="/" {
            input type="text" name="q" value=[q] placeholder="Name contains…" aria-label="Search experiments";
            button type="submit" { "Search" }
        }
        @if rows.is_empty() {
            p.muted { @if q.is_some() { "No experiment's name holds that text." } @else { "No experiments yet." } }
        } @else {
            div.scroll {
                table #experiments {
                    thead { tr { th { "Name" } th.num { "Runs" } th { "Last activity (UTC)" } th { "Created (UTC)" } th { "ID" } } }
                    tbody {
                        @for (experiment, activity) in &rows {
                            tr {
                                td { a href={ "/experiments/" (path_segment(&experiment.experiment_id)) } { (experiment.name) } }
                                td.num { (activity.runs) }
                                td { (time(Some(last(experiment, activity)))) }
                                td { (time(Some(experiment.creation_time))) }
                                td.muted { (experiment.experiment_id) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Experiments", body).into_response()
}
