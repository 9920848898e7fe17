//! `/pipelines/{run_id}`: one pipeline run: its steps as a graph (each step a box coloured by
//! its status, an arrow from each step it waited for; drawn here as SVG, no script) and as a
//! table (kind, status, whether its outputs came from the cache, time, outputs, error, its run).
//! The facts come from `shipyard_pipeline::runner::status_of`, the function behind
//! `shipyard pipeline status`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use shipyard_pipeline::runner::{StepStatus, StepSummary, status_of};

use super::{error_page, layout, path_segment};
use crate::UiState;

/// A step box's size and the gaps between boxes, in SVG units.
const BOX_W: usize = 210;
const BOX_H: usize = 46;
const GAP_X: usize = 60;
const GAP_Y: usize = 18;

fn status_name(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Finished => "finished",
        StepStatus::Failed => "failed",
        StepStatus::Running => "running",
        StepStatus::Skipped => "skipped",
    }
}

/// Each step's column (the longest chain of steps it waits for) and row within the column. A
/// run recorded before steps kept what they wait for has no edges: its steps are laid out in
/// one row, in their order.
fn layout_steps(steps: &[StepSummary]) -> Vec<(usize, usize)> {
    if !edges_recorded(steps) {
        return (0..steps.len()).map(|i| (i, 0)).collect();
    }
    let mut column: BTreeMap<&str, usize> = BTreeMap::new();
    // Steps are in dependency order, so a step's needs are placed before it.
    for s in steps {
        let c = s.needs.iter().filter_map(|n| column.get(n.as_str())).map(|c| c + 1).max().unwrap_or(0);
        column.insert(&s.name, c);
    }
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    steps
        .iter()
        .map(|s| {
            let c = column[s.name.as_str()];
            let r = rows.entry(c).or_default();
            *r += 1;
            (c, *r - 1)
        })
        .collect()
}

/// Whether the run recorded what its steps wait for (the first step never waits, so a run
/// whose steps all wait for nothing either has independent steps or did not record them: the
/// tag is then absent, which `needs` cannot tell apart; one step with needs settles it).
fn edges_recorded(steps: &[StepSummary]) -> bool {
    steps.len() < 2 || steps.iter().any(|s| !s.needs.is_empty())
}

fn graph(steps: &[StepSummary]) -> Markup {
    let places = layout_steps(steps);
    let at: BTreeMap<&str, (usize, usize)> = steps.iter().zip(&places).map(|(s, p)| (s.name.as_str(), *p)).collect();
    let columns = places.iter().map(|p| p.0 + 1).max().unwrap_or(1);
    let rows = places.iter().map(|p| p.1 + 1).max().unwrap_or(1);
    let (width, height) = (columns * (BOX_W + GAP_X) - GAP_X + 2, rows * (BOX_H + GAP_Y) - GAP_Y + 2);
    let x = |c: usize| 1 + c * (BOX_W + GAP_X);
    let y = |r: usize| 1 + r * (BOX_H + GAP_Y);
    html! {
        @if !edges_recorded(steps) {
            p.muted { "This run did not record what its steps wait for (runs before Shipyard kept it): steps in order." }
        }
        div.scroll {
            svg.pipeline-graph #pipeline-graph xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
                viewBox={ "0 0 " (width) " " (height) } role="img" aria-label="The pipeline's steps and what each waited for" {
                defs {
                    marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto" {
                        path d="M0,0 L10,5 L0,10 z" class="edge-head" {}
                    }
                }
                @for s in steps {
                    @for need in &s.needs {
                        @if let (Some((c0, r0)), Some((c1, r1))) = (at.get(need.as_str()), at.get(s.name.as_str())) {
                            @let (x0, y0) = (x(*c0) + BOX_W, y(*r0) + BOX_H / 2);
                            @let (x1, y1) = (x(*c1), y(*r1) + BOX_H / 2);
                            path.edge data-from=(need) data-to=(s.name) marker-end="url(#arrow)"
                                d={ "M" (x0) "," (y0) " C" (x0 + GAP_X / 2) "," (y0) " " (x1 - GAP_X / 2) "," (y1) " " (x1) "," (y1) } {}
                        }
                    }
                }
                @for (s, (c, r)) in steps.iter().zip(&places) {
                    g class={ "step step-" (status_name(s.status)) } data-step=(s.name) {
                        a href={ "/runs/" (path_segment(&s.run_id)) } {
                            rect x=(x(*c)) y=(y(*r)) width=(BOX_W) height=(BOX_H) rx="6" {}
                            text x=(x(*c) + 10) y=(y(*r) + 19) class="step-name" { (s.name) }
                            text x=(x(*c) + 10) y=(y(*r) + 36) class="step-detail" {
                                (s.kind) " · " (status_name(s.status)) @if s.cached { " · cached" } " · " (format!("{:.1} s", s.duration_s))
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn page(State(state): State<UiState>, Path(run_id): Path<String>) -> Response {
    let summary = match status_of(&state.db, &run_id).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    let body = html! {
        div.crumbs {
            a href="/" { "Experiments" } " / "
            a href={ "/experiments/" (path_segment(&summary.experiment_id)) } { "pipeline runs" } " / "
        }
        h1 { "Pipeline " (summary.pipeline) }
        dl.facts #pipeline-summary {
            dt { "Status" } dd class={ "status-" (summary.status) } { (summary.status) }
            dt { "Run" } dd { a href={ "/runs/" (path_segment(&summary.run_id)) } { code { (summary.run_id) } } }
            dt { "Took" } dd { (format!("{:.1} s", summary.duration_s)) }
            @if let Some(t) = &summary.trigger { dt { "Started by" } dd { (t) } }
            @if let Some(v) = &summary.model_version { dt { "Registered" } dd { (v) } }
        }
        @for e in &summary.errors { p.error { (e) } }
        h2 { "Steps" }
        (graph(&summary.steps))
        table #steps {
            thead { tr { th { "Step" } th { "Kind" } th { "Status" } th { "Cached" } th.num { "Seconds" } th { "Outputs" } th { "Error" } } }
            tbody {
                @for s in &summary.steps {
                    tr {
                        td { a href={ "/runs/" (path_segment(&s.run_id)) } { (s.name) } }
                        td { (s.kind) }
                        td class={ "step-status-" (status_name(s.status)) } { (status_name(s.status)) }
                        td { @if s.cached { "yes" } @else { "no" } }
                        td.num { (format!("{:.2}", s.duration_s)) }
                        td.outputs {
                            @for (k, v) in &s.outputs {
                                span.output { (k) ": " (match v { serde_json::Value::String(t) => t.clone(), other => other.to_string() }) } " "
                            }
                        }
                        td { (s.error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    };
    layout(&format!("Pipeline {}", summary.pipeline), body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, needs: &[&str]) -> StepSummary {
        StepSummary {
            name: name.into(),
            kind: "train".into(),
            status: StepStatus::Finished,
            run_id: "r".into(),
            cached: false,
            cached_from: None,
            duration_s: 1.0,
            outputs: Default::default(),
            error: None,
            needs: needs.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn steps_are_placed_after_everything_they_wait_for() {
        let steps = [step("data", &[]), step("a", &["data"]), step("b", &["data"]), step("pick", &["a", "b"])];
        assert_eq!(layout_steps(&steps), [(0, 0), (1, 0), (1, 1), (2, 0)]);
        let unrecorded = [step("a", &[]), step("b", &[]), step("c", &[])];
        assert_eq!(layout_steps(&unrecorded), [(0, 0), (1, 0), (2, 0)]);
    }
}
