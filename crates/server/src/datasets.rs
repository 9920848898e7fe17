//! Dataset routes under `/api/shipyard/datasets/`: `get` (a version), `validations` (a suite's
//! results recorded on a version) and `add`.
//!
//! `POST /api/shipyard/datasets/add?name=NAME`: what `shipyard data add --tracking-uri
//! http(s)://...` sends. The body is the table file itself (CSV or Parquet), streamed to a
//! temporary file within the artifact upload limit; then [`shipyard_datasets::add`] hashes,
//! profiles, stores and records it, as the local command does. The query carries the rest:
//! `description`, `run_id` (the run that read it), `source` (the file's path on the client,
//! recorded), and how CSV is read (`delimiter`, `no_header`, `infer_rows`, `null_marker`
//! repeated).

use axum::Json;
use axum::extract::{Request, State};
use futures::StreamExt;
use serde_json::json;
use shipyard_core::Error;
use shipyard_data::table::CsvOptions;
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::error::ApiError;
use crate::tracking::JsonResult;

/// The query of an upload, read by hand: `null_marker` repeats.
struct AddQuery {
    name: Option<String>,
    description: Option<String>,
    run_id: Option<String>,
    source: Option<String>,
    csv: CsvOptions,
}

fn add_query(query: &str) -> Result<AddQuery, ApiError> {
    let mut q = AddQuery { name: None, description: None, run_id: None, source: None, csv: CsvOptions::default() };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "name" => q.name = Some(value),
            "description" => q.description = Some(value).filter(|v| !v.is_empty()),
            "run_id" => q.run_id = Some(value).filter(|v| !v.is_empty()),
            "source" => q.source = Some(value).filter(|v| !v.is_empty()),
            "delimiter" => match value.as_bytes() {
                [b] if b.is_ascii() => q.csv.delimiter = *b,
                _ => return Err(ApiError::invalid(format!("delimiter must be one ASCII character, got '{value}'"))),
            },
            "no_header" => q.csv.has_header = !matches!(value.as_str(), "true" | "1"),
            "infer_rows" => {
                q.csv.infer_rows = value
                    .parse()
                    .map_err(|_| ApiError::invalid(format!("infer_rows must be a whole number, got '{value}'")))?;
            }
            "null_marker" => q.csv.null_markers.push(value),
            _ => {}
        }
    }
    Ok(q)
}

/// `POST /api/shipyard/datasets/add?name=NAME&...` with the file as the body →
/// `{"dataset_version": {...}, "created": bool}` (`false`: the same bytes as the latest version).
pub(crate) async fn add(State(s): State<AppState>, request: Request) -> JsonResult {
    let q = add_query(request.uri().query().unwrap_or(""))?;
    let name = crate::wire::required(&q.name, "name")?.to_owned();
    let limit = s.config.max_artifact_bytes;
    let upload = tempfile::NamedTempFile::new()
        .map_err(|e| Error::Internal(format!("creating a temporary file for the upload: {e}")))?;
    let mut file = tokio::fs::File::from_std(
        upload.reopen().map_err(|e| Error::Internal(format!("opening the upload's temporary file: {e}")))?,
    );
    let mut body = request.into_body().into_data_stream();
    let mut seen: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("upload interrupted: {e}")))?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(Error::TooLarge(format!("The table exceeds the upload limit of {limit} bytes")).into());
        }
        file.write_all(&chunk).await.map_err(|e| Error::Internal(format!("writing the upload: {e}")))?;
    }
    file.flush().await.map_err(|e| Error::Internal(format!("writing the upload: {e}")))?;
    drop(file);
    if seen == 0 {
        return Err(ApiError::invalid("the body is empty: send the table file (CSV or Parquet) as the body"));
    }
    let source = q.source.clone().unwrap_or_else(|| format!("upload to dataset '{name}'"));
    let request = shipyard_datasets::AddRequest {
        file: upload.path().to_path_buf(),
        source,
        name,
        description: q.description,
        run_id: q.run_id,
        csv: q.csv,
    };
    let stores = shipyard_datasets::Stores { db: &s.db, artifacts: &s.artifacts, destination: s.artifacts.uri() };
    let (version, created) = shipyard_datasets::add(stores, request).await?;
    Ok(Json(json!({ "dataset_version": version, "created": created })))
}

#[derive(serde::Deserialize)]
pub(crate) struct VersionQuery {
    #[serde(default)]
    name: Option<String>,
    /// A number; the latest when absent.
    #[serde(default)]
    version: Option<String>,
    /// How many of the version's latest validations to add (`validations` in the answer).
    #[serde(default)]
    validations: Option<String>,
}

/// `GET /api/shipyard/datasets/get?name=NAME[&version=N][&validations=K]` →
/// `{"dataset_version": {...}, "validations": [...]}` (the latest version when none is given;
/// its K newest validations, none unless asked).
pub(crate) async fn get(
    State(s): State<AppState>,
    crate::wire::MlflowRequest(q): crate::wire::MlflowRequest<VersionQuery>,
) -> JsonResult {
    let name = crate::wire::required(&q.name, "name")?;
    let version = match q.version.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => {
            Some(v.parse::<i64>().map_err(|_| ApiError::invalid(format!("version must be a number, got '{v}'")))?)
        }
        None => None,
    };
    let found = s.db.get_dataset_version(name, version).await?;
    let shown: i64 = q.validations.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0).clamp(0, 1000);
    let validations =
        if shown > 0 { s.db.dataset_validations(&found.name, found.version, shown).await? } else { Vec::new() };
    Ok(Json(json!({ "dataset_version": found, "validations": validations })))
}

/// `POST /api/shipyard/datasets/validations {name, version, suite, success, evaluated, successful,
/// quality_score, report}`: records a suite's results on a version (what `data validate` does
/// after running the suite), as the logged-in user → `{"validation": {...}}`.
pub(crate) async fn record_validation(
    State(s): State<AppState>,
    caller: crate::caller::Caller,
    crate::wire::MlflowRequest(mut new): crate::wire::MlflowRequest<shipyard_store::datasets::NewValidation>,
) -> JsonResult {
    new.actor = crate::caller::actor(&caller, Some(&new.actor));
    s.db.get_dataset_version(&new.name, Some(new.version)).await?;
    let recorded = s.db.record_validation(new).await?;
    Ok(Json(json!({ "validation": recorded })))
}

#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    name: Option<String>,
}

/// `GET /api/shipyard/datasets/list[?name=NAME]` → `{"dataset_versions": [...]}`: every version
/// (of one dataset) the caller may read.
pub(crate) async fn list(
    State(s): State<AppState>,
    caller: crate::caller::Caller,
    crate::wire::MlflowRequest(q): crate::wire::MlflowRequest<ListQuery>,
) -> JsonResult {
    let all = s.db.list_dataset_versions(q.name.as_deref().filter(|n| !n.is_empty())).await?;
    let shown = crate::caller::readable(&caller, shipyard_auth::ResourceType::Dataset, all, |v| v.name.as_str());
    Ok(Json(json!({ "dataset_versions": shown })))
}
