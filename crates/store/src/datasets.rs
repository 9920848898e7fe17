//! Dataset versions: named, numbered, content-addressed tables.
//!
//! A dataset version records where a file's bytes are (stored once per SHA-256 digest in the
//! artifact store, under `datasets/sha256/`), its row count, schema and profile (as JSON the data
//! layer produced; this crate does not interpret them), where it came from and when. Versions of
//! a name are numbered from 1 in the transaction that inserts them; adding bytes identical to the
//! latest version returns that version instead of a new one.

use serde::Serialize;
use shipyard_core::entities::now_millis;
use shipyard_core::{Error, Result};

use crate::db::{Conn, Database};
use crate::sql::Row;

/// What `shipyard data add` records.
#[derive(Debug, Clone)]
pub struct NewDatasetVersion {
    pub name: String,
    /// Hex SHA-256 of the file's bytes.
    pub digest: String,
    /// `csv` or `parquet`.
    pub format: String,
    pub rows: i64,
    pub size_bytes: i64,
    /// JSON.
    pub schema: String,
    /// JSON.
    pub profile: String,
    /// Where the file was added from.
    pub source: String,
    /// The artifact store the bytes are in, and their path there.
    pub artifact_root: String,
    pub artifact_path: String,
    pub description: Option<String>,
}

/// A recorded dataset version.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetVersion {
    pub name: String,
    pub version: i64,
    pub digest: String,
    pub format: String,
    pub rows: i64,
    pub size_bytes: i64,
    pub schema: serde_json::Value,
    /// Left out of listings.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub profile: serde_json::Value,
    pub source: String,
    pub artifact_root: String,
    pub artifact_path: String,
    pub created_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Dataset names: letters, digits, `.`, `_` and `-`, up to 256 characters, so that
/// `dataset:NAME@VERSION` always parses.
pub fn validate_dataset_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("Invalid dataset name '{name}': use 1 to 256 letters, digits, '.', '_' or '-'")))
    }
}

fn not_found(name: &str, version: Option<i64>) -> Error {
    match version {
        Some(v) => Error::not_found(format!("Dataset '{name}' has no version {v}")),
        None => Error::not_found(format!("No dataset named '{name}'")),
    }
}

const COLUMNS: &str = "name, version, digest, format, rows, size_bytes, schema_json, source, artifact_root, \
                       artifact_path, created_time, description";

fn from_row(row: &Row, with_profile: bool) -> Result<DatasetVersion> {
    let json = |col: &str| -> Result<serde_json::Value> {
        let text: String = row.get(col)?;
        serde_json::from_str(&text).map_err(|e| Error::Internal(format!("stored {col} is not JSON: {e}")))
    };
    Ok(DatasetVersion {
        name: row.get("name")?,
        version: row.get("version")?,
        digest: row.get("digest")?,
        format: row.get("format")?,
        rows: row.get("rows")?,
        size_bytes: row.get("size_bytes")?,
        schema: json("schema_json")?,
        profile: if with_profile { json("profile_json")? } else { serde_json::Value::Null },
        source: row.get("source")?,
        artifact_root: row.get("artifact_root")?,
        artifact_path: row.get("artifact_path")?,
        created_time: row.get("created_time")?,
        description: row.get::<Option<String>>("description")?,
    })
}

async fn latest(c: &mut Conn<'_>, name: &str) -> Result<Option<DatasetVersion>> {
    let sql = c.stmt(
        &format!("SELECT {COLUMNS}, profile_json FROM dataset_versions WHERE name = $1 ORDER BY version DESC LIMIT 1"),
        [name.into()],
    );
    c.fetch_optional(sql).await?.map(|r| from_row(&r, true)).transpose()
}

impl Database {
    /// Records a new version of a dataset, or returns the latest one unchanged (`false`) when it
    /// has the same digest.
    pub async fn create_dataset_version(&self, new: NewDatasetVersion) -> Result<(DatasetVersion, bool)> {
        validate_dataset_name(&new.name)?;
        self.write(move |c| {
            Box::pin(async move {
                if let Some(last) = latest(c, &new.name).await?
                    && last.digest == new.digest
                {
                    return Ok((last, false));
                }
                let next = c.stmt(
                    "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM dataset_versions WHERE name = $1",
                    [new.name.as_str().into()],
                );
                let version: i64 = c.fetch_one(next).await?.get("next")?;
                let insert = c.stmt(
                    "INSERT INTO dataset_versions (name, version, digest, format, rows, size_bytes, schema_json, \
                        profile_json, source, artifact_root, artifact_path, created_time, description) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    [
                        new.name.as_str().into(),
                        version.into(),
                        new.digest.as_str().into(),
                        new.format.as_str().into(),
                        new.rows.into(),
                        new.size_bytes.into(),
                        new.schema.as_str().into(),
                        new.profile.as_str().into(),
                        new.source.as_str().into(),
                        new.artifact_root.as_str().into(),
                        new.artifact_path.as_str().into(),
                        now_millis().into(),
                        new.description.clone().into(),
                    ],
                );
                c.execute(insert).await.map_err(|e| match e {
                    crate::db::DbError::Unique(_) => Error::Conflict(format!(
                        "Dataset '{}' version {version} was just added by someone else; retry",
                        new.name
                    )),
                    other => other.into(),
                })?;
                let created = latest(c, &new.name).await?.ok_or_else(|| not_found(&new.name, Some(version)))?;
                Ok((created, true))
            })
        })
        .await
    }

    /// A version of a dataset, the latest when `version` is `None`.
    pub async fn get_dataset_version(&self, name: &str, version: Option<i64>) -> Result<DatasetVersion> {
        let name = name.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                match version {
                    None => latest(c, &name).await?.ok_or_else(|| not_found(&name, None)),
                    Some(v) => {
                        let sql = c.stmt(
                            &format!(
                                "SELECT {COLUMNS}, profile_json FROM dataset_versions WHERE name = $1 AND version = $2"
                            ),
                            [name.as_str().into(), v.into()],
                        );
                        c.fetch_optional(sql)
                            .await?
                            .map(|r| from_row(&r, true))
                            .transpose()?
                            .ok_or_else(|| not_found(&name, Some(v)))
                    }
                }
            })
        })
        .await
    }

    /// Every version of every dataset (or of one), by name then version, without profiles.
    pub async fn list_dataset_versions(&self, name: Option<&str>) -> Result<Vec<DatasetVersion>> {
        let name = name.map(str::to_owned);
        self.read(move |c| {
            Box::pin(async move {
                let sql = match &name {
                    Some(n) => c.stmt(
                        &format!("SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 ORDER BY name, version"),
                        [n.as_str().into()],
                    ),
                    None => c.stmt(&format!("SELECT {COLUMNS} FROM dataset_versions ORDER BY name, version"), []),
                };
                c.fetch_all(sql).await?.iter().map(|r| from_row(r, false)).collect()
            })
        })
        .await
    }
}

/// `NAME` or `NAME@VERSION` (`@latest` too): a dataset reference without its `dataset:` prefix.
pub fn parse_reference(text: &str) -> Result<(String, Option<i64>)> {
    match text.rsplit_once('@') {
        Some((name, "latest")) => Ok((name.to_owned(), None)),
        Some((name, v)) => match v.parse::<i64>().ok().filter(|v| *v > 0) {
            Some(version) => Ok((name.to_owned(), Some(version))),
            None => {
                Err(Error::invalid(format!("'{text}': the version after '@' must be a positive number or 'latest'")))
            }
        },
        None => Ok((text.to_owned(), None)),
    }
}

impl DatasetVersion {
    /// A local path holding the version's bytes: the file itself in a local artifact store,
    /// else a copy fetched once into `cache` (named by digest, written whole or not at all).
    pub async fn local_copy(&self, cache: &std::path::Path) -> Result<std::path::PathBuf> {
        use futures::StreamExt;
        let root = self.artifact_root.strip_prefix("file://").unwrap_or(&self.artifact_root);
        if !root.contains("://") {
            let path = std::path::Path::new(root).join(&self.artifact_path);
            if path.is_file() {
                return Ok(path);
            }
            return Err(Error::not_found(format!(
                "dataset {}@{}: its file {} is missing",
                self.name,
                self.version,
                path.display()
            )));
        }
        let io = |what: &str, e: std::io::Error| Error::Internal(format!("{what}: {e}"));
        let ext = std::path::Path::new(&self.artifact_path).extension().and_then(|e| e.to_str()).unwrap_or("bin");
        let target = cache.join(format!("{}.{ext}", self.digest));
        if target.is_file() {
            return Ok(target);
        }
        std::fs::create_dir_all(cache).map_err(|e| io(&format!("creating {}", cache.display()), e))?;
        let artifacts = crate::ArtifactStore::open(&self.artifact_root).await?;
        let path = shipyard_core::artifact_path::ArtifactPath::parse(&self.artifact_path)?;
        let mut download = artifacts.get(&path).await?;
        let tmp =
            tempfile::NamedTempFile::new_in(cache).map_err(|e| io(&format!("writing in {}", cache.display()), e))?;
        let file = tmp.reopen().map_err(|e| io("reopening a temporary file", e))?;
        let mut file = tokio::fs::File::from_std(file);
        while let Some(chunk) = download.stream.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk?)
                .await
                .map_err(|e| io("writing a dataset copy", e))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(|e| io("writing a dataset copy", e))?;
        tmp.persist(&target).map_err(|e| io(&format!("writing {}", target.display()), e.error))?;
        Ok(target)
    }
}
