//! Self-contained HTML reports: one file, no network, charts as inline SVG, tables sortable by a
//! click on a header (a few lines of inline script).

use std::fmt::Write as _;
use std::path::Path;

use crate::drift::{DriftReport, Histogram};
use crate::profile::Profile;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}\
th{cursor:pointer;background:#f4f4f4;user-select:none}th:hover{background:#e8e8e8}\
.drift{color:#b00020;font-weight:600}.ok{color:#1b7f3b}.num{font-variant-numeric:tabular-nums;text-align:right}\
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}.muted{color:#777}";

/// Sorts a table by the clicked column; numeric when every cell parses as a number.
const SORT_SCRIPT: &str = "document.querySelectorAll('table.sortable th').forEach((th,i)=>{th.addEventListener('click',()=>{\
const tb=th.closest('table').tBodies[0];const rows=[...tb.rows];const asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';\
const key=r=>{const c=r.cells[i];return c.dataset.v!==undefined?c.dataset.v:c.textContent.trim()};\
const num=rows.every(r=>key(r)===''||!isNaN(parseFloat(key(r))));\
rows.sort((a,b)=>{let x=key(a),y=key(b);if(num){x=parseFloat(x);y=parseFloat(y);x=isNaN(x)?-Infinity:x;y=isNaN(y)?-Infinity:y;}\
return (x<y?-1:x>y?1:0)*(asc?1:-1)});rows.forEach(r=>tb.appendChild(r))})});";

const REF_COLOUR: &str = "#4c78a8";
const CUR_COLOUR: &str = "#f58518";

/// Two distributions as grouped bars, in a small inline SVG.
pub fn histogram_svg(h: &Histogram) -> String {
    let (width, height) = (260.0, 70.0);
    let n = h.bins.len().max(1) as f64;
    let max = h.reference.iter().chain(&h.current).cloned().fold(0.0f64, f64::max).max(1e-12);
    let slot = width / n;
    let bar = (slot / 2.0 - 0.5).max(0.5);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    for (i, label) in h.bins.iter().enumerate() {
        let x = i as f64 * slot;
        for (j, (share, colour)) in [(h.reference[i], REF_COLOUR), (h.current[i], CUR_COLOUR)].into_iter().enumerate() {
            let bh = share / max * (height - 2.0);
            let _ = write!(
                svg,
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{bar:.2}\" height=\"{bh:.2}\" fill=\"{colour}\"><title>{}: {} {:.2}%</title></rect>",
                x + j as f64 * (bar + 0.5),
                height - bh,
                escape(label),
                if j == 0 { "reference" } else { "current" },
                share * 100.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A whole HTML page around `body`, with the report style and the sorting script.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\
         <body>{body}<script>{SORT_SCRIPT}</script></body></html>\n",
        escape(title)
    )
}

/// A numeric table cell that sorts by its value.
pub fn num_cell(v: f64) -> String {
    let shown = shipyard_core::display::number(v);
    format!("<td class=\"num\" data-v=\"{v}\">{shown}</td>")
}

/// The drift report as one HTML page.
pub fn drift_html(report: &DriftReport, reference: &Path, current: &Path) -> String {
    let mut body = String::new();
    let verdict = if report.dataset_drift {
        "<span class=\"drift\">Dataset drift</span>"
    } else {
        "<span class=\"ok\">No dataset drift</span>"
    };
    let _ = write!(
        body,
        "<h1>Data drift</h1><p>Reference <code>{}</code> ({} rows) against current <code>{}</code> ({} rows).</p>\
         <p>{verdict}: {} of {} columns drifted (share {:.3}; the dataset drifts at {}).</p>",
        escape(&reference.display().to_string()),
        report.reference_rows,
        escape(&current.display().to_string()),
        report.current_rows,
        report.drifted_columns,
        report.columns.len(),
        report.share_drifted,
        report.drift_share,
    );
    body.push_str(&drift_table(report));
    page("Shipyard data drift", &body)
}

/// The per-column drift table (test, statistic, verdict, both histograms) and the columns not
/// tested.
pub fn drift_table(report: &DriftReport) -> String {
    let mut body = format!(
        "<p class=\"legend\">Histograms:<span style=\"background:{REF_COLOUR}\"></span>reference\
         <span style=\"background:{CUR_COLOUR}\"></span>current. Click a header to sort.</p>\
         <table class=\"sortable\"><thead><tr><th>Column</th><th>Kind</th><th>Test</th><th>Statistic</th><th>p-value</th>\
         <th>Threshold</th><th>Verdict</th><th>Distributions</th><th>Notes</th></tr></thead><tbody>"
    );
    for c in &report.columns {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td>{}{}{}<td data-v=\"{}\" class=\"{}\">{}</td><td>{}</td><td class=\"muted\">{}</td></tr>",
            escape(&c.column),
            format!("{:?}", c.kind).to_lowercase(),
            c.test.name(),
            num_cell(c.statistic),
            c.p_value.map(num_cell).unwrap_or_else(|| "<td class=\"num\" data-v=\"\">-</td>".into()),
            num_cell(c.threshold),
            u8::from(c.drift),
            if c.drift { "drift" } else { "ok" },
            match (c.drift, c.undecided.is_some()) {
                (_, true) => "undecided",
                (true, false) => "drift",
                (false, false) => "ok",
            },
            histogram_svg(&c.histogram),
            escape(&column_notes(c).join("; ")),
        );
    }
    body.push_str("</tbody></table>");
    if !report.skipped.is_empty() {
        body.push_str("<h2>Not tested</h2><ul>");
        for s in &report.skipped {
            let _ = write!(body, "<li><code>{}</code>: {}</li>", escape(&s.column), escape(&s.reason));
        }
        body.push_str("</ul>");
    }
    body
}

/// A column's notes, with what the calibrated preset could see and why it did not decide.
fn column_notes(c: &crate::drift::ColumnDrift) -> Vec<String> {
    let mut notes = c.notes.clone();
    if let Some(p) = c.power {
        let unit = if p.unit == "sd" { "standard deviations" } else { "of a category's share" };
        notes.push(format!(
            "{} current values at level {}: detects a shift of {} {unit}",
            p.current_count,
            shipyard_core::display::number(p.level),
            shipyard_core::display::number(p.detectable)
        ));
    }
    if let Some(why) = &c.undecided {
        notes.push(format!("undecided: {why}"));
    }
    notes
}

/// Bars of one distribution, in a small inline SVG.
fn counts_svg(labels: &[String], counts: &[u64]) -> String {
    let total = counts.iter().sum::<u64>().max(1) as f64;
    let h = Histogram {
        bins: labels.to_vec(),
        reference: counts.iter().map(|c| *c as f64 / total).collect(),
        current: vec![0.0; counts.len()],
    };
    histogram_svg(&h)
}

fn opt_cell(v: Option<f64>) -> String {
    v.map(num_cell).unwrap_or_else(|| "<td class=\"num\" data-v=\"\"></td>".into())
}

/// A profile as one HTML page.
pub fn profile_html(profile: &Profile, source: &Path) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Data profile</h1><p><code>{}</code>: {} rows, {} columns. Click a header to sort.</p>\
         <table class=\"sortable\"><thead><tr><th>Column</th><th>Type</th><th>Count</th><th>Missing</th><th>Distinct</th>\
         <th>Min</th><th>Max</th><th>Mean</th><th>Std</th><th>Median</th><th>Distribution</th><th>Exact</th></tr></thead><tbody>",
        escape(&source.display().to_string()),
        profile.rows,
        profile.columns.len()
    );
    for c in &profile.columns {
        let n = c.numeric.as_ref();
        let median = n.and_then(|s| s.quantiles.iter().find(|q| q.q == 0.5).map(|q| q.value));
        let chart = match (n.and_then(|s| s.histogram.as_ref()), &c.top_values) {
            (Some(h), _) => {
                let labels: Vec<String> = h.edges.windows(2).map(|w| format!("[{}, {})", w[0], w[1])).collect();
                counts_svg(&labels, &h.counts)
            }
            (None, Some(top)) => {
                let labels: Vec<String> = top.values.iter().map(|t| t.value.clone()).collect();
                let counts: Vec<u64> = top.values.iter().map(|t| t.count).collect();
                counts_svg(&labels, &counts)
            }
            _ => String::new(),
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td>{}{}{}{}{}{}{}{}<td>{chart}</td><td>{}</td></tr>",
            escape(&c.name),
            escape(&c.data_type),
            num_cell(c.count as f64),
            num_cell(c.missing as f64),
            num_cell(c.distinct as f64),
            opt_cell(n.and_then(|s| s.min)),
            opt_cell(n.and_then(|s| s.max)),
            opt_cell(n.and_then(|s| s.mean)),
            opt_cell(n.and_then(|s| s.std)),
            opt_cell(median),
            if c.exact { "yes" } else { "sketch" },
        );
    }
    body.push_str("</tbody></table>");
    page("Shipyard data profile", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
    }

    #[test]
    fn svg_has_a_bar_per_bin_and_table() {
        let h = Histogram { bins: vec!["a".into(), "<b>".into()], reference: vec![0.5, 0.5], current: vec![1.0, 0.0] };
        let svg = histogram_svg(&h);
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
    }
}
