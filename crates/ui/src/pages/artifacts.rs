//! `/runs/{id}/artifacts?path=...`: a run's artifacts: the folder's files and folders, and a
//! preview of the chosen file, chosen by its name: text, code, JSON (pretty-printed), YAML and
//! MLmodel files as text; CSV and TSV as a table; images (Shipyard's SVG plots among them) as
//! images. A preview reads only the file's head ([`PREVIEW_BYTES`]), so a 2 GB log opens as fast
//! as a small one (MLflow's UI hangs on large previews: mlflow#3384, #7508, #4865); every file
//! can be downloaded whole.
//!
//! `/runs/{id}/artifacts/raw?path=...` gives a file's bytes. Only images are sent with their own
//! type (for the preview's `<img>`); everything else is an attachment, and every raw answer
//! carries a sandboxing Content Security Policy, so an HTML or SVG artifact opened directly can
//! run no script in the UI's origin.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use maud::{Markup, html};
use serde::Deserialize;
use shipyard_core::Error;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::entities::FileInfo;
use shipyard_store::ArtifactStore;

use super::{error_page, layout, path_segment, query_value, status_and_message};
use crate::UiState;

/// How much of a file a text or table preview reads.
pub const PREVIEW_BYTES: usize = 256 * 1024;
/// The largest image shown inline; larger ones are only offered for download.
pub const IMAGE_PREVIEW_BYTES: u64 = 10 * 1024 * 1024;
/// Rows a CSV preview shows.
const TABLE_ROWS: usize = 500;
/// The policy of raw artifact answers: nothing runs, nothing loads, the origin is opaque.
const RAW_POLICY: &str = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox";

#[derive(Debug, Deserialize)]
pub struct Wanted {
    #[serde(default)]
    path: String,
    #[serde(default)]
    download: Option<String>,
}

/// How a file is previewed, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Json,
    Table(u8),
    Image(&'static str),
    None,
}

fn kind(name: &str) -> Kind {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "json" | "ipynb" => Kind::Json,
        "csv" => Kind::Table(b','),
        "tsv" => Kind::Table(b'\t'),
        "png" => Kind::Image("image/png"),
        "jpg" | "jpeg" => Kind::Image("image/jpeg"),
        "gif" => Kind::Image("image/gif"),
        "webp" => Kind::Image("image/webp"),
        "bmp" => Kind::Image("image/bmp"),
        "svg" => Kind::Image("image/svg+xml"),
        "txt" | "log" | "md" | "py" | "yaml" | "yml" | "toml" | "cfg" | "ini" | "xml" | "html" | "htm" | "sql"
        | "sh" | "r" | "js" | "ts" | "rs" | "java" | "scala" | "go" | "c" | "h" | "cpp" | "out" | "err"
        | "properties" | "conf" | "jsonl" => Kind::Text,
        _ if matches!(lower.as_str(), "mlmodel" | "mlproject" | "license" | "readme" | "dockerfile") => Kind::Text,
        _ => Kind::None,
    }
}

/// The run's artifact folder in the server's store, or why the UI cannot read it.
async fn run_root(state: &UiState, run_id: &str) -> Result<(ArtifactStore, ArtifactPath, String), Error> {
    let run = state.db.get_run(run_id).await?;
    let Some(store) = state.artifacts.clone() else {
        return Err(Error::NotFound("this server has no artifact store".into()));
    };
    let root = ArtifactPath::from_proxied_uri(&run.info.artifact_uri).map_err(|_| {
        Error::NotFound(format!(
            "the run's artifacts are at {}, which this server does not serve (only mlflow-artifacts: locations)",
            run.info.artifact_uri
        ))
    })?;
    Ok((store, root, run.info.run_name))
}

/// The head of a file: at most `limit` bytes, and the file's size.
async fn head(store: &ArtifactStore, path: &ArtifactPath, limit: usize) -> Result<(Vec<u8>, u64), Error> {
    let download = store.get(path).await?;
    let mut stream = download.stream;
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match stream.next().await {
            Some(chunk) => bytes.extend_from_slice(&chunk?),
            None => break,
        }
    }
    bytes.truncate(limit);
    Ok((bytes, download.size))
}

fn size(bytes: u64) -> String {
    match bytes {
        0..1_024 => format!("{bytes} B"),
        1_024..1_048_576 => format!("{:.1} KB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}

/// The folder holding `path` (the root holds itself).
fn parent(path: &ArtifactPath) -> ArtifactPath {
    let segments = path.segments();
    ArtifactPath::parse(&segments[..segments.len().saturating_sub(1)].join("/"))
        .unwrap_or_else(|_| ArtifactPath::root())
}

fn page_href(run_id: &str, path: &str) -> String {
    format!("/runs/{}/artifacts?path={}", path_segment(run_id), query_value(path))
}

fn raw_href(run_id: &str, path: &str, download: bool) -> String {
    let tail = if download { "&download=1" } else { "" };
    format!("/runs/{}/artifacts/raw?path={}{tail}", path_segment(run_id), query_value(path))
}

pub async fn page(State(state): State<UiState>, Path(run_id): Path<String>, Query(wanted): Query<Wanted>) -> Response {
    let (store, root, run_name) = match run_root(&state, &run_id).await {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    let rel = match ArtifactPath::parse(&wanted.path) {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    // A file is previewed beside its folder's listing; a folder is listed.
    let listing_here = match store.list(&root.join(&rel)).await {
        Ok(l) => l,
        Err(e) => return error_page(&e),
    };
    let (folder, file) =
        if listing_here.is_empty() && !rel.is_root() { (parent(&rel), Some(rel.clone())) } else { (rel.clone(), None) };
    let listing = if file.is_some() {
        match store.list(&root.join(&folder)).await {
            Ok(l) => l,
            Err(e) => return error_page(&e),
        }
    } else {
        listing_here
    };
    let preview = match &file {
        Some(f) => match preview(&store, &root, &run_id, f).await {
            Ok(p) => Some(p),
            Err(e) => return error_page(&e),
        },
        None => None,
    };
    let body = html! {
        div.crumbs {
            a href={ "/runs/" (path_segment(&run_id)) } { (run_name) } " / "
            a href=(page_href(&run_id, "")) { "artifacts" }
            @for (i, segment) in rel.segments().iter().enumerate() {
                " / " a href=(page_href(&run_id, &rel.segments()[..=i].join("/"))) { (segment) }
            }
        }
        h1 { "Artifacts of " (run_name) }
        div.artifacts {
            (listing_table(&run_id, &folder, &listing, file.as_ref()))
            @if let Some(p) = preview { div.preview #preview { (p) } }
        }
    };
    layout(&format!("Artifacts · {run_name}"), body).into_response()
}

fn listing_table(run_id: &str, folder: &ArtifactPath, listing: &[FileInfo], open: Option<&ArtifactPath>) -> Markup {
    let full = |name: &str| if folder.is_root() { name.to_owned() } else { format!("{folder}/{name}") };
    html! {
        @if listing.is_empty() { p.muted #no-artifacts { "No artifacts here." } } @else {
            table #artifact-list {
                thead { tr { th { "Name" } th.num { "Size" } } }
                tbody {
                    @if !folder.is_root() {
                        tr { td { a href=(page_href(run_id, &parent(folder).to_string())) { ".." } } td {} }
                    }
                    @for f in listing {
                        @let path = full(&f.path);
                        @let selected = open.is_some_and(|o| o.to_string() == path);
                        tr.selected[selected] {
                            td {
                                a href=(page_href(run_id, &path)) { (f.path) @if f.is_dir { "/" } }
                            }
                            td.num { @if let Some(s) = f.file_size { (size(s)) } }
                        }
                    }
                }
            }
        }
    }
}

async fn preview(
    store: &ArtifactStore,
    root: &ArtifactPath,
    run_id: &str,
    file: &ArtifactPath,
) -> Result<Markup, Error> {
    let name = file.file_name().unwrap_or("");
    let path = file.to_string();
    let full = root.join(file);
    let download = html! { a.download href=(raw_href(run_id, &path, true)) { "Download" } };
    let kind = kind(name);
    if let Kind::Image(_) = kind {
        let total = store.get(&full).await?.size;
        return Ok(html! {
            div.preview-head { strong { (name) } " " span.muted { (size(total)) } " " (download) }
            @if total <= IMAGE_PREVIEW_BYTES {
                img.artifact-image src=(raw_href(run_id, &path, false)) alt=(name);
            } @else { p.muted { "Too large to show here." } }
        });
    }
    if kind == Kind::None {
        let total = store.get(&full).await?.size;
        return Ok(html! {
            div.preview-head { strong { (name) } " " span.muted { (size(total)) } " " (download) }
            p.muted { "No preview for this kind of file." }
        });
    }
    let (bytes, total) = head(store, &full, PREVIEW_BYTES).await?;
    let cut = (bytes.len() as u64) < total;
    let text = String::from_utf8_lossy(&bytes);
    let shown = match kind {
        Kind::Json if !cut => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_string()),
            Err(_) => text.to_string(),
        },
        _ => text.to_string(),
    };
    let body = match kind {
        Kind::Table(delimiter) => csv_table(&bytes, delimiter, cut),
        _ => html! { pre.artifact-text { (shown) } },
    };
    Ok(html! {
        div.preview-head {
            strong { (name) } " " span.muted { (size(total)) } " " (download)
            @if cut { p.muted.cut { "Showing the first " (size(bytes.len() as u64)) " of " (size(total)) "." } }
        }
        (body)
    })
}

/// The head of a CSV file as a table: the first row as headers, then up to [`TABLE_ROWS`] rows
/// (the last, cut, line of a partial read left out).
fn csv_table(bytes: &[u8], delimiter: u8, cut: bool) -> Markup {
    let usable = if cut { bytes.iter().rposition(|b| *b == b'\n').map_or(bytes, |i| &bytes[..i]) } else { bytes };
    let mut reader =
        csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(usable);
    let headers: Vec<String> = reader.headers().map(|h| h.iter().map(str::to_owned).collect()).unwrap_or_default();
    let mut rows = Vec::new();
    let mut more = false;
    for record in reader.records() {
        let Ok(record) = record else { break };
        if rows.len() == TABLE_ROWS {
            more = true;
            break;
        }
        rows.push(record.iter().map(str::to_owned).collect::<Vec<_>>());
    }
    html! {
        div.scroll {
            table #artifact-table {
                thead { tr { @for h in &headers { th { (h) } } } }
                tbody { @for r in &rows { tr { @for v in r { td { (v) } } } } }
            }
        }
        @if more || cut { p.muted { "The first " (rows.len()) " rows." } }
    }
}

/// `/runs/{id}/artifacts/raw?path=...[&download=1]`.
pub async fn raw(State(state): State<UiState>, Path(run_id): Path<String>, Query(wanted): Query<Wanted>) -> Response {
    let fail = |e: &Error| status_and_message(e).into_response();
    let (store, root) = match run_root(&state, &run_id).await {
        Ok((store, root, _)) => (store, root),
        Err(e) => return fail(&e),
    };
    let rel = match ArtifactPath::parse(&wanted.path) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let download = match store.get(&root.join(&rel)).await {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let name = rel.file_name().unwrap_or("artifact").to_owned();
    let inline = match kind(&name) {
        Kind::Image(content_type) if wanted.download.is_none() => Some(content_type),
        _ => None,
    };
    let mut response = Response::new(Body::from_stream(download.stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(inline.unwrap_or("application/octet-stream")));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
    if inline.is_none() {
        let ascii: String =
            name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '_' }).collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(RAW_POLICY));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_previewed_by_their_name() {
        assert_eq!(kind("metrics.json"), Kind::Json);
        assert_eq!(kind("data/train.CSV"), Kind::Table(b','));
        assert_eq!(kind("MLmodel"), Kind::Text);
        assert_eq!(kind("roc.svg"), Kind::Image("image/svg+xml"));
        assert_eq!(kind("model.pkl"), Kind::None);
        assert_eq!(size(1_536), "1.5 KB");
    }
}
