//! The UI's static files, compiled into the binary: a style sheet, small hand-written
//! scripts (MLflow's `/#/...` links forwarded; the metric charts; the runs table's expanders) and uPlot, the chart library,
//! vendored from its npm package `uplot@1.6.32` (MIT; the licence is beside it in
//! `assets/vendor/uplot/`, and its banner stays in the file). No build step, no CDN.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The files: name, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    ("shipyard.css", CSS, include_str!("../assets/shipyard.css")),
    ("links.js", JS, include_str!("../assets/links.js")),
    ("charts.js", JS, include_str!("../assets/charts.js")),
    ("table.js", JS, include_str!("../assets/table.js")),
    ("compare.js", JS, include_str!("../assets/compare.js")),
    ("live.js", JS, include_str!("../assets/live.js")),
    ("monitor.js", JS, include_str!("../assets/monitor.js")),
    ("uPlot.min.js", JS, include_str!("../assets/vendor/uplot/uPlot.iife.min.js")),
    ("uPlot.min.css", CSS, include_str!("../assets/vendor/uplot/uPlot.min.css")),
    ("favicon.svg", "image/svg+xml", include_str!("../assets/favicon.svg")),
    ("uPlot.LICENSE.txt", "text/plain; charset=utf-8", include_str!("../assets/vendor/uplot/LICENSE")),
];

/// Every file's size in bytes, for the budget the UI keeps (JavaScript and CSS together).
pub fn total_bytes() -> usize {
    FILES.iter().map(|(_, _, body)| body.len()).sum()
}

/// The address of a static file, with its content's hash, so a changed file is fetched anew
/// even under the same version number.
pub fn url(file: &str) -> String {
    static HASHES: std::sync::LazyLock<Vec<u64>> =
        std::sync::LazyLock::new(|| FILES.iter().map(|(_, _, body)| fnv1a(body.as_bytes())).collect());
    let hash = FILES.iter().position(|(name, _, _)| *name == file).map(|i| HASHES[i]).unwrap_or(0);
    format!("/static/{file}?v={hash:016x}")
}

/// FNV-1a, 64 bits: a cache key, not a security property.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// `GET /static/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=3600")], *body)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
