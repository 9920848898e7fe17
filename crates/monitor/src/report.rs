//! A deployment's monitoring report as one self-contained HTML file (inline SVG, no network):
//! the window's values, drift per feature with both histograms, performance and drift over
//! time as a line chart, the fairness table and the alert timeline.

use std::fmt::Write as _;

use serde::Serialize;
use shipyard_core::entities::utc_seconds;
use shipyard_core::monitoring::{Alert, MonitorEvaluation};
use shipyard_data::report::{drift_table, escape, num_cell, page};

use crate::window::WindowReport;

/// Everything a report shows; its JSON form is `monitor report --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub deployment: String,
    /// Milliseconds since the epoch.
    pub generated: i64,
    pub window: WindowReport,
    /// Past evaluations of the configured window, oldest first.
    pub history: Vec<MonitorEvaluation>,
    /// Alerts, newest first.
    pub alerts: Vec<Alert>,
}

/// The series drawn over time, when present.
const SERIES: &[(&str, &str)] = &[
    ("accuracy", "#1b7f3b"),
    ("f1_macro", "#4c78a8"),
    ("drift_share", "#b00020"),
    ("prediction_mean", "#f58518"),
    ("rmse", "#54a24b"),
    ("mae", "#9d755d"),
    ("demographic_parity_difference", "#b279a2"),
];

/// A named, coloured series of `(time, value)` points.
type Series<'a> = (&'a str, &'a str, Vec<(i64, f64)>);

/// Lines of `history` values over time, in one inline SVG.
fn line_chart(history: &[MonitorEvaluation]) -> String {
    let (width, height, pad) = (720.0, 220.0, 30.0);
    let series: Vec<Series> = SERIES
        .iter()
        .map(|(name, colour)| {
            (
                *name,
                *colour,
                history.iter().filter_map(|e| e.values.get(*name).map(|v| (e.time, *v))).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, _, points)| !points.is_empty())
        .collect();
    if series.is_empty() || history.len() < 2 {
        return "<p class=\"muted\">Fewer than two evaluations so far: nothing to draw over time.</p>".to_owned();
    }
    let t0 = history.first().map_or(0, |e| e.time) as f64;
    let t1 = (history.last().map_or(0, |e| e.time) as f64).max(t0 + 1.0);
    let vmax = series.iter().flat_map(|(_, _, p)| p.iter().map(|(_, v)| *v)).fold(1.0f64, f64::max);
    let vmin = series.iter().flat_map(|(_, _, p)| p.iter().map(|(_, v)| *v)).fold(0.0f64, f64::min);
    let x = |t: i64| pad + (t as f64 - t0) / (t1 - t0) * (width - 2.0 * pad);
    let y = |v: f64| height - pad - (v - vmin) / (vmax - vmin).max(1e-12) * (height - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\
         <line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#999\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{0}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"{pad}\" font-size=\"10\">{vmax:.2}</text><text x=\"2\" y=\"{0}\" font-size=\"10\">{vmin:.2}</text>\
         <text x=\"{pad}\" y=\"{2}\" font-size=\"10\">{3}</text><text x=\"{4}\" y=\"{2}\" font-size=\"10\">{5}</text>",
        height - pad,
        width - pad,
        height - 8.0,
        utc_seconds(t0 as i64),
        width - pad - 110.0,
        utc_seconds(t1 as i64),
    );
    let mut legend = String::from("<p class=\"legend\">");
    for (name, colour, points) in &series {
        let path: Vec<String> = points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{name}</title></polyline>",
            path.join(" ")
        );
        let _ = write!(legend, "<span style=\"background:{colour}\"></span>{name}");
    }
    svg.push_str("</svg>");
    legend.push_str("</p>");
    legend + &svg
}

/// The report as one HTML page.
pub fn html(report: &Report) -> String {
    let w = &report.window;
    let mut body = String::new();
    let span = match (w.from_time, w.to_time) {
        (Some(a), Some(b)) => format!(", logged {} to {} UTC", utc_seconds(a), utc_seconds(b)),
        _ => String::new(),
    };
    let _ = write!(
        body,
        "<h1>Monitoring: {}</h1><p>The {}: {} rows from {} requests{span}. Reference: {}. Generated {} UTC.</p>",
        escape(&report.deployment),
        escape(&w.window),
        w.rows,
        w.requests,
        escape(&w.reference),
        utc_seconds(report.generated)
    );
    body.push_str(
        "<h2>Monitors</h2><table class=\"sortable\"><thead><tr><th>Monitor</th><th>Value</th></tr></thead><tbody>",
    );
    for (k, v) in w.values.iter().filter(|(k, _)| !k.starts_with("drift_score.") && !k.starts_with("drifted.")) {
        let _ = write!(body, "<tr><td>{}</td>{}</tr>", escape(k), num_cell(*v));
    }
    body.push_str("</tbody></table>");
    if !w.notes.is_empty() {
        body.push_str("<ul class=\"muted\">");
        for n in &w.notes {
            let _ = write!(body, "<li>{}</li>", escape(n));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Data drift per feature</h2>");
    match &w.drift {
        Some(d) => {
            let _ = write!(
                body,
                "<p>{} of {} features drifted (share {:.3}).</p>",
                d.drifted_columns,
                d.columns.len(),
                d.share_drifted
            );
            body.push_str(&drift_table(d));
        }
        None => body.push_str("<p class=\"muted\">Not computed (see the notes above).</p>"),
    }
    if let Some(p) = &w.prediction_drift {
        let _ = write!(
            body,
            "<h2>Prediction drift</h2><p>The answers against the training target <code>{}</code>: {} {:.4} ({}).</p>",
            escape(&p.column),
            p.test.name(),
            p.p_value.unwrap_or(p.statistic),
            if p.drift { "<span class=\"drift\">drift</span>" } else { "<span class=\"ok\">no drift</span>" }
        );
    }
    body.push_str("<h2>Over time</h2>");
    body.push_str(&line_chart(&report.history));
    body.push_str("<h2>Fairness</h2>");
    match &w.fairness {
        Some(f) => {
            let _ = write!(
                body,
                "<p>Positive label <code>{}</code>. Demographic parity difference {:.4}, equal opportunity difference {:.4}, \
                 disparate impact ratio {}.</p><table class=\"sortable\"><thead><tr><th>Group</th><th>Rows</th>\
                 <th>Selection rate</th><th>True positive rate</th></tr></thead><tbody>",
                escape(&f.positive_label),
                f.demographic_parity_difference,
                f.equal_opportunity_difference,
                f.disparate_impact_ratio.map_or("undefined".to_owned(), |r| format!("{r:.4}"))
            );
            for g in &f.groups {
                let _ = write!(
                    body,
                    "<tr><td>{}</td>{}{}{}</tr>",
                    escape(&g.group),
                    num_cell(g.rows as f64),
                    num_cell(g.selection_rate),
                    num_cell(g.true_positive_rate)
                );
            }
            body.push_str("</tbody></table>");
        }
        None => body.push_str(
            "<p class=\"muted\">No fairness table: set <code>sensitive_column</code> in the monitor configuration and send ground truth.</p>",
        ),
    }
    body.push_str("<h2>Alerts</h2>");
    if report.alerts.is_empty() {
        body.push_str("<p class=\"muted\">No alert has fired.</p>");
    } else {
        body.push_str(
            "<table class=\"sortable\"><thead><tr><th>Fired (UTC)</th><th>Rule</th><th>Severity</th><th>Message</th>\
             <th>Action</th></tr></thead><tbody>",
        );
        for a in &report.alerts {
            let action = a.action_summary();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                utc_seconds(a.fired_time),
                escape(&a.rule),
                if a.severity == "high" { "drift" } else { "" },
                escape(&a.severity),
                escape(&a.message),
                escape(&action)
            );
        }
        body.push_str("</tbody></table>");
    }
    page(&format!("Shipyard monitoring: {}", report.deployment), &body)
}
