//! MLflow's proxied artifact API: upload, download, list and delete files under the artifact root.
//!
//! `mlflow-artifacts:/<path>` URIs map to `/api/2.0/mlflow-artifacts/artifacts/<path>`. Every path
//! is parsed into an [`ArtifactPath`] first (traversal and encoding tricks are refused with 400),
//! bodies stream in and out, and downloads are sent as attachments with `nosniff`, so an artifact
//! can never run as a page on the server's origin.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use shipyard_core::Error;
use shipyard_core::artifact_path::ArtifactPath;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::tracking::{JsonResult, empty};
use crate::wire::{MlflowRequest, run_id};

/// The content type an artifact is served with: scripts and markup as plain text.
fn content_type(path: &ArtifactPath) -> String {
    let guess = mime_guess::from_path(path.file_name().unwrap_or("")).first();
    match guess {
        Some(m) if m.type_() == mime_guess::mime::IMAGE && m.subtype() != "svg" => m.essence_str().to_owned(),
        Some(m)
            if m.type_() == mime_guess::mime::TEXT
                || matches!(m.subtype().as_str(), "json" | "xml" | "javascript" | "x-yaml" | "yaml" | "svg") =>
        {
            "text/plain".to_owned()
        }
        _ if matches!(path.file_name(), Some("MLmodel" | "requirements.txt")) => "text/plain".to_owned(),
        _ => "application/octet-stream".to_owned(),
    }
}

/// `PUT .../artifacts/<path>`: stores the body.
pub(crate) async fn upload(State(s): State<AppState>, Path(raw): Path<String>, req: Request) -> JsonResult {
    let path = ArtifactPath::parse(&raw)?;
    let limit = s.config.max_artifact_bytes;
    let mut seen: u64 = 0;
    let body = req.into_body().into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("upload interrupted: {e}")))?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(Error::TooLarge(format!("Artifact exceeds the upload limit of {limit} bytes")));
        }
        Ok(chunk)
    });
    s.artifacts.put(&path, body).await?;
    empty()
}

/// `GET .../artifacts/<path>`: streams the file.
pub(crate) async fn download(State(s): State<AppState>, Path(raw): Path<String>) -> ApiResult<Response> {
    let path = ArtifactPath::parse(&raw)?;
    let file = s.artifacts.get(&path).await?;
    let name = path.file_name().unwrap_or("artifact").replace(['"', '\\'], "_");
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let content_type = HeaderValue::from_str(&content_type(&path))
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, HeaderValue::from(file.size)),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        Body::from_stream(file.stream),
    )
        .into_response())
}

/// `DELETE .../artifacts/<path>`: deletes a file or a folder.
pub(crate) async fn delete(State(s): State<AppState>, Path(raw): Path<String>) -> JsonResult {
    let path = ArtifactPath::parse(&raw)?;
    if path.is_root() {
        return Err(ApiError::invalid("Refusing to delete the artifact root"));
    }
    s.artifacts.delete(&path).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    path: Option<String>,
}

/// `GET .../artifacts?path=<dir>`: lists a folder; a missing folder is an empty listing.
pub(crate) async fn list(State(s): State<AppState>, MlflowRequest(q): MlflowRequest<ListQuery>) -> JsonResult {
    let dir = ArtifactPath::parse(q.path.as_deref().unwrap_or(""))?;
    let files = s.artifacts.list(&dir).await?;
    Ok(Json(if files.is_empty() { json!({}) } else { json!({ "files": files }) }))
}

#[derive(Deserialize)]
pub(crate) struct RunListQuery {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

/// Maps an `mlflow-artifacts:/...` URI to a path under the artifact root.
pub(crate) fn proxied_path(uri: &str) -> ApiResult<ArtifactPath> {
    Ok(ArtifactPath::from_proxied_uri(uri)?)
}

/// `GET /api/2.0/mlflow/artifacts/list?run_id=...&path=...`: lists a folder of a run's artifacts,
/// with paths relative to the run's artifact root.
pub(crate) async fn list_run_artifacts(
    State(s): State<AppState>,
    MlflowRequest(q): MlflowRequest<RunListQuery>,
) -> JsonResult {
    let run = s.db.get_run(run_id(&q.run_id, &q.run_uuid)?).await?;
    let root = proxied_path(&run.info.artifact_uri)?;
    let rel = ArtifactPath::parse(q.path.as_deref().unwrap_or(""))?;
    let files = s.artifacts.list(&root.join(&rel)).await?;
    let prefix = rel.to_string();
    let files: Vec<_> = files
        .into_iter()
        .map(|mut f| {
            if !prefix.is_empty() {
                f.path = format!("{prefix}/{}", f.path);
            }
            f
        })
        .collect();
    let mut out = json!({ "root_uri": run.info.artifact_uri });
    if !files.is_empty() {
        out["files"] = json!(files);
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_uris_map_under_the_root() {
        assert_eq!(proxied_path("mlflow-artifacts:/1/abc/artifacts").unwrap().to_string(), "1/abc/artifacts");
        assert_eq!(proxied_path("mlflow-artifacts://host:5000/1/x").unwrap().to_string(), "1/x");
        assert!(proxied_path("s3://bucket/x").is_err());
        assert!(proxied_path("mlflow-artifacts:/1/../../etc").is_err());
    }

    #[test]
    fn markup_is_served_as_plain_text() {
        let ct = |p: &str| content_type(&ArtifactPath::parse(p).unwrap());
        assert_eq!(ct("a/index.html"), "text/plain");
        assert_eq!(ct("x.svg"), "text/plain");
        assert_eq!(ct("x.js"), "text/plain");
        assert_eq!(ct("notes.txt"), "text/plain");
        assert_eq!(ct("MLmodel"), "text/plain");
        assert_eq!(ct("model.skops"), "application/octet-stream");
        assert_eq!(ct("plot.png"), "image/png");
    }
}
