//! Model URIs, and bringing a model's files from the store to a local folder.
//!
//! `models:/NAME/VERSION`, `models:/NAME@ALIAS`, `runs:/RUN_ID/PATH`, `mlflow-artifacts:/PATH`
//! and local paths (a model directory or an `.onnx` file). A registered version's files are
//! wherever its `storage_location` (or `source`) points: a run's artifacts, a logged model's.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_store::{ArtifactStore, Database};

/// A model reference as users write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelUri {
    Version {
        name: String,
        version: String,
    },
    Alias {
        name: String,
        alias: String,
    },
    Run {
        run_id: String,
        path: String,
    },
    /// A proxied artifact path (`mlflow-artifacts:/...`).
    Artifacts(String),
    Local(PathBuf),
}

/// Why a model could not be found or fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    BadUri(String),
    #[error(transparent)]
    Store(#[from] shipyard_core::Error),
    #[error("writing {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl ModelUri {
    pub fn parse(uri: &str) -> Result<ModelUri, FetchError> {
        if let Some(rest) = uri.strip_prefix("models:/") {
            if let Some((name, alias)) = rest.split_once('@') {
                if name.is_empty() || alias.is_empty() || alias.contains('/') {
                    return Err(FetchError::BadUri(format!("{uri}: expected models:/NAME@ALIAS")));
                }
                return Ok(ModelUri::Alias { name: name.into(), alias: alias.into() });
            }
            let (name, version) = rest.rsplit_once('/').ok_or_else(|| {
                FetchError::BadUri(format!("{uri}: expected models:/NAME/VERSION or models:/NAME@ALIAS"))
            })?;
            if name.is_empty() || version.is_empty() {
                return Err(FetchError::BadUri(format!("{uri}: expected models:/NAME/VERSION")));
            }
            return Ok(ModelUri::Version { name: name.into(), version: version.into() });
        }
        if let Some(rest) = uri.strip_prefix("runs:/") {
            let (run_id, path) =
                rest.split_once('/').ok_or_else(|| FetchError::BadUri(format!("{uri}: expected runs:/RUN_ID/PATH")))?;
            if run_id.is_empty() {
                return Err(FetchError::BadUri(format!("{uri}: expected runs:/RUN_ID/PATH")));
            }
            return Ok(ModelUri::Run { run_id: run_id.into(), path: path.trim_end_matches('/').into() });
        }
        if uri.starts_with("mlflow-artifacts:") {
            return Ok(ModelUri::Artifacts(uri.into()));
        }
        if let Some((scheme, _)) = uri.split_once("://")
            && scheme != "file"
        {
            return Err(FetchError::BadUri(format!(
                "{uri}: unknown model URI; use models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or a local path"
            )));
        }
        Ok(ModelUri::Local(PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri))))
    }

    /// Whether resolving needs the store.
    pub fn is_remote(&self) -> bool {
        !matches!(self, ModelUri::Local(_))
    }
}

/// The artifact folder a URI names, with the registered version's name and number if any.
pub async fn locate(uri: &ModelUri, db: &Database) -> Result<(ArtifactPath, Option<(String, String)>), FetchError> {
    match uri {
        ModelUri::Version { name, version } => {
            let location = db.get_model_version_download_uri(name, version).await?;
            Ok((source_path(&location, db).await?, Some((name.clone(), version.clone()))))
        }
        ModelUri::Alias { name, alias } => {
            let version = db.get_model_version_by_alias(name, alias).await?;
            let location = db.get_model_version_download_uri(name, &version.version).await?;
            Ok((source_path(&location, db).await?, Some((name.clone(), version.version))))
        }
        ModelUri::Run { run_id, path } => Ok((run_path(run_id, path, db).await?, None)),
        ModelUri::Artifacts(uri) => Ok((ArtifactPath::from_proxied_uri(uri)?, None)),
        ModelUri::Local(p) => Err(FetchError::BadUri(format!("{} is a local path", p.display()))),
    }
}

/// `runs:/ID/PATH`: a model the run logged under that name (MLflow 3 keeps those as logged
/// models, outside the run's artifacts), else the run's artifacts at PATH.
async fn run_path(run_id: &str, path: &str, db: &Database) -> Result<ArtifactPath, FetchError> {
    let run = db.get_run(run_id).await?;
    if !path.is_empty() && !path.contains('/') && !path.contains('\'') {
        let filter = format!("source_run_id = '{run_id}' AND name = '{path}'");
        let page = db
            .search_logged_models(std::slice::from_ref(&run.info.experiment_id), Some(&filter), &[], Some(1), None)
            .await?;
        if let Some(model) = page.items.first() {
            return Ok(ArtifactPath::from_proxied_uri(&model.info.artifact_uri)?);
        }
    }
    let root = ArtifactPath::from_proxied_uri(&run.info.artifact_uri)?;
    Ok(if path.is_empty() { root } else { root.join(&ArtifactPath::parse(path)?) })
}

/// A version's source or storage location as an artifact path.
async fn source_path(location: &str, db: &Database) -> Result<ArtifactPath, FetchError> {
    if let Some(rest) = location.strip_prefix("runs:/") {
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        return run_path(run_id, path.trim_end_matches('/'), db).await;
    }
    Ok(ArtifactPath::from_proxied_uri(location)?)
}

/// Brings the model `uri` names from the store into the folder `dir`: the path to load (a
/// model folder, or a single file such as `runs:/ID/model.onnx`) and the registered name and
/// version when there is one.
pub async fn fetch_model(
    uri: &ModelUri,
    db: &Database,
    artifacts: &ArtifactStore,
    dir: &Path,
) -> Result<(PathBuf, Option<(String, String)>), FetchError> {
    let (root, version) = locate(uri, db).await?;
    let target = dir.join("model");
    if download_tree(artifacts, &root, &target).await? > 0 {
        return Ok((target, version));
    }
    // Not a folder: a single file.
    let name = root.to_string().rsplit('/').next().unwrap_or("model.onnx").to_owned();
    let mut download = artifacts.get(&root).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = download.stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    let file = dir.join(if name.is_empty() { "model.onnx".to_owned() } else { name });
    tokio::fs::write(&file, bytes).await.map_err(|e| FetchError::Io { path: file.display().to_string(), source: e })?;
    Ok((file, version))
}

/// Copies the files of the local folder `dir` (not its subfolders) into the folder `sub` of
/// the model `uri` names, in the store: what a load learned about the model (its conversion)
/// kept with its files. `record`, the file readers go by, is written last. The number of
/// files copied.
pub async fn store_beside(
    uri: &ModelUri,
    db: &Database,
    artifacts: &ArtifactStore,
    sub: &str,
    dir: &Path,
    record: &str,
) -> Result<usize, FetchError> {
    let (root, _) = locate(uri, db).await?;
    let target = root.join(&ArtifactPath::parse(sub)?);
    let io = |path: &Path, source| FetchError::Io { path: path.display().to_string(), source };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        if entry.file_type().map_err(|e| io(dir, e))?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort_by_key(|p| p.file_name().is_some_and(|n| n == record));
    for file in &files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = tokio::fs::read(file).await.map_err(|e| io(file, e))?;
        let body = futures::stream::once(async move { Ok::<_, shipyard_core::Error>(bytes::Bytes::from(bytes)) });
        artifacts.put(&target.join(&ArtifactPath::parse(&name)?), body).await?;
    }
    Ok(files.len())
}

/// Copies every file under `root` into `dest`, keeping the layout. Files land under a
/// temporary name first and are renamed when complete.
pub async fn download_tree(artifacts: &ArtifactStore, root: &ArtifactPath, dest: &Path) -> Result<usize, FetchError> {
    let io = |path: &Path, source| FetchError::Io { path: path.display().to_string(), source };
    let mut pending = vec![(root.clone(), dest.to_path_buf())];
    let mut files = 0;
    while let Some((dir, local)) = pending.pop() {
        tokio::fs::create_dir_all(&local).await.map_err(|e| io(&local, e))?;
        for entry in artifacts.list(&dir).await? {
            let child = dir.join(&ArtifactPath::parse(&entry.path)?);
            // Listed names are single path components: they cannot leave `dest`.
            let target = local.join(&entry.path);
            if entry.is_dir {
                pending.push((child, target));
                continue;
            }
            let mut download = artifacts.get(&child).await?;
            let partial = local.join(format!(".{}.partial", entry.path));
            let mut bytes = Vec::with_capacity(download.size as usize);
            while let Some(chunk) = download.stream.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            tokio::fs::write(&partial, &bytes).await.map_err(|e| io(&partial, e))?;
            tokio::fs::rename(&partial, &target).await.map_err(|e| io(&target, e))?;
            files += 1;
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_uri_form() {
        assert_eq!(
            ModelUri::parse("models:/churn/3").unwrap(),
            ModelUri::Version { name: "churn".into(), version: "3".into() }
        );
        assert_eq!(
            ModelUri::parse("models:/churn@production").unwrap(),
            ModelUri::Alias { name: "churn".into(), alias: "production".into() }
        );
        assert_eq!(
            ModelUri::parse("runs:/abc/model/").unwrap(),
            ModelUri::Run { run_id: "abc".into(), path: "model".into() }
        );
        assert_eq!(ModelUri::parse("./m.onnx").unwrap(), ModelUri::Local("./m.onnx".into()));
        assert!(ModelUri::parse("models:/churn").is_err());
        assert!(ModelUri::parse("s3://bucket/m").is_err());
    }
}
