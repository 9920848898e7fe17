//! How a drift comparison reads: a summary line, then per column its test, statistic, p-value,
//! threshold, verdict, and both sides' distributions on common bins as a server-drawn SVG (the
//! reference behind, the compared table in front). Shared by a past monitor window and the drift
//! between two dataset versions.

use maud::{Markup, html};
use shipyard_data::drift::{ColumnDrift, DriftReport, Histogram};

use super::number;

/// A histogram's size, in pixels.
const HIST_W: f64 = 220.0;
const HIST_H: f64 = 48.0;

/// The whole report: its summary and the table of its columns (`id` names the table).
pub fn report(drift: &DriftReport, id: &str) -> Markup {
    html! {
        p #drift-summary {
            (drift.drifted_columns) " of " (drift.columns.len() - drift.undecided_columns) " decided columns drifted"
            " (share " (number(drift.share_drifted)) ")"
            @if drift.undecided_columns > 0 { "; " (drift.undecided_columns) " undecided (too few rows)" }
            "; " (drift.reference_rows) " reference rows, " (drift.current_rows) " compared."
        }
        (columns_table(id, &drift.columns))
        @if !drift.skipped.is_empty() {
            p.muted { "Not tested: " @for s in &drift.skipped { (s.column) " (" (s.reason) ") " } }
        }
        @if !drift.unmatched_columns.is_empty() {
            p.muted { "Not in the reference, not tested: " (drift.unmatched_columns.join(", ")) }
        }
    }
}

pub fn columns_table(id: &str, columns: &[ColumnDrift]) -> Markup {
    html! {
        p.muted { span.legend-reference { "■ reference" } " " span.legend-current { "■ compared" } " (shares of each side's rows)" }
        table id=(id) {
            thead { tr { th { "Column" } th { "Test" } th.num { "Statistic" } th.num { "p-value" } th.num { "Threshold" } th { "Verdict" } th { "Distributions" } } }
            tbody {
                @for c in columns {
                    tr data-column=(c.column) {
                        td { (c.column) }
                        td { (c.test.name()) }
                        td.num { (number(c.statistic)) }
                        td.num { (c.p_value.map(number).unwrap_or_default()) }
                        td.num { (number(c.threshold)) }
                        td {
                            @if let Some(why) = &c.undecided { span.muted title=(why) { "undecided" } }
                            @else if c.drift { span.bad { "drifted" } }
                            @else { span.good { "no drift" } }
                        }
                        td { (histogram(&c.histogram)) }
                    }
                }
            }
        }
    }
}

/// Both sides' shares per bin, as pairs of bars: the reference behind, the window in front.
fn histogram(h: &Histogram) -> Markup {
    let top = h.reference.iter().chain(&h.current).copied().fold(0.0, f64::max);
    if h.bins.is_empty() || top <= 0.0 {
        return html! {};
    }
    let bin = HIST_W / h.bins.len() as f64;
    let bar = |share: f64| (share / top * (HIST_H - 1.0)).max(if share > 0.0 { 1.0 } else { 0.0 });
    html! {
        svg.histogram xmlns="http://www.w3.org/2000/svg" width=(HIST_W) height=(HIST_H) viewBox={ "0 0 " (HIST_W) " " (HIST_H) } role="img" aria-label="the reference's and the window's distributions" {
            @for (i, label) in h.bins.iter().enumerate() {
                @let (r, c) = (h.reference.get(i).copied().unwrap_or(0.0), h.current.get(i).copied().unwrap_or(0.0));
                @let x = i as f64 * bin;
                g {
                    title { (label) ": reference " (number(r)) ", window " (number(c)) }
                    rect.reference x=(format!("{x:.1}")) y=(format!("{:.1}", HIST_H - bar(r))) width=(format!("{:.1}", (bin - 1.0).max(1.0))) height=(format!("{:.1}", bar(r))) {}
                    rect.current x=(format!("{:.1}", x + bin * 0.25)) y=(format!("{:.1}", HIST_H - bar(c))) width=(format!("{:.1}", (bin * 0.5 - 0.5).max(1.0))) height=(format!("{:.1}", bar(c))) {}
                }
            }
        }
    }
}
