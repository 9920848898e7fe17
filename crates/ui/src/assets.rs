//! The UI's static files, compiled into the binary: a style sheet and one small script (MLflow's
//! `/#/...` links forwarded to the matching page). Hand-written and small, so there is no
//! build step and nothing to vendor yet.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The files: name, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    ("shipyard.css", "text/css; charset=utf-8", include_str!("../assets/shipyard.css")),
    ("links.js", "text/javascript; charset=utf-8", include_str!("../assets/links.js")),
];

/// The address of a static file, with a version so a new binary's files are fetched anew.
pub fn url(file: &str) -> String {
    format!("/static/{file}?v={}", env!("CARGO_PKG_VERSION"))
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
