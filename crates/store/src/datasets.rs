//! Dataset versions: named, numbered, content-addressed tables.
//!
//! A dataset version records where a file's bytes are (stored once per SHA-256 digest in the
//! artifact store, under `datasets/sha256/`), its row count, schema and profile (as JSON the data
//! layer produced; this crate does not interpret them), where it came from and when. Versions of
//! a name are numbered from 1 in the transaction that inserts them; adding bytes identical to the
//! latest version returns that version instead of a new one. A version's validations (an
//! expectation suite's results on it) are recorded beside it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;
use shipyard_core::entities::{Dataset, DatasetInput, KeyValue, now_millis};
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetVersion {
    pub name: String,
    pub version: i64,
    pub digest: String,
    pub format: String,
    pub rows: i64,
    pub size_bytes: i64,
    pub schema: serde_json::Value,
    /// Left out of listings.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub profile: serde_json::Value,
    pub source: String,
    pub artifact_root: String,
    pub artifact_path: String,
    pub created_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A suite's results on a dataset version, as `shipyard data validate dataset:NAME@V` records
/// them (the report is the data layer's JSON; this crate does not interpret it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewValidation {
    pub name: String,
    pub version: i64,
    /// Which suite: its file name as given.
    pub suite: String,
    pub success: bool,
    pub evaluated: i64,
    pub successful: i64,
    pub quality_score: f64,
    /// JSON.
    pub report: String,
    #[serde(default)]
    pub actor: String,
}

/// A recorded validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetValidation {
    pub id: i64,
    pub name: String,
    pub version: i64,
    pub suite: String,
    pub success: bool,
    pub evaluated: i64,
    pub successful: i64,
    pub quality_score: f64,
    pub report: serde_json::Value,
    pub actor: String,
    pub time: i64,
}

fn validation_from_row(row: &Row) -> Result<DatasetValidation> {
    let text: String = row.get("report")?;
    Ok(DatasetValidation {
        id: row.get("id")?,
        name: row.get("name")?,
        version: row.get("version")?,
        suite: row.get("suite")?,
        success: row.get::<i64>("success")? != 0,
        evaluated: row.get("evaluated")?,
        successful: row.get("successful")?,
        quality_score: row.get("quality_score")?,
        report: serde_json::from_str(&text).map_err(|e| Error::Internal(format!("stored report is not JSON: {e}")))?,
        actor: row.get("actor")?,
        time: row.get("time")?,
    })
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

    /// Records a suite's results on a version (which must exist); returns them with their id.
    pub async fn record_validation(&self, new: NewValidation) -> Result<DatasetValidation> {
        serde_json::from_str::<serde_json::Value>(&new.report)
            .map_err(|e| Error::invalid(format!("report: not JSON: {e}")))?;
        self.write(move |c| {
            Box::pin(async move {
                let exists = c.stmt(
                    "SELECT version FROM dataset_versions WHERE name = $1 AND version = $2",
                    [new.name.as_str().into(), new.version.into()],
                );
                if c.fetch_optional(exists).await?.is_none() {
                    return Err(not_found(&new.name, Some(new.version)));
                }
                let insert = c.stmt(
                    "INSERT INTO dataset_validations (name, version, suite, success, evaluated, successful, \
                        quality_score, report, actor, time) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                    [
                        new.name.as_str().into(),
                        new.version.into(),
                        new.suite.as_str().into(),
                        i64::from(new.success).into(),
                        new.evaluated.into(),
                        new.successful.into(),
                        new.quality_score.into(),
                        new.report.as_str().into(),
                        new.actor.as_str().into(),
                        now_millis().into(),
                    ],
                );
                let id: i64 = c.fetch_one(insert).await?.get("id")?;
                let read = c.stmt("SELECT * FROM dataset_validations WHERE id = $1", [id.into()]);
                validation_from_row(&c.fetch_one(read).await?)
            })
        })
        .await
    }

    /// The validations of a version, newest first, at most `limit`.
    pub async fn dataset_validations(&self, name: &str, version: i64, limit: i64) -> Result<Vec<DatasetValidation>> {
        let name = name.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT * FROM dataset_validations WHERE name = $1 AND version = $2 ORDER BY id DESC LIMIT $3",
                    [name.into(), version.into(), limit.max(1).into()],
                );
                c.fetch_all(sql).await?.iter().map(validation_from_row).collect()
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
    /// The dataset version in MLflow's dataset form, as a run input: `mlflow` clients see it in
    /// `run.inputs.dataset_inputs`. Local files use MLflow's `local` source type, so
    /// `mlflow.data.get_source(...)` resolves them.
    pub fn run_input(&self, schema: &serde_json::Value) -> DatasetInput {
        let v = self;
        let root = v.artifact_root.strip_prefix("file://").unwrap_or(&v.artifact_root);
        let (source_type, source) = if root.contains("://") {
            (
                "shipyard",
                json!({"uri": format!("dataset:{}@{}", v.name, v.version), "artifact_uri": format!("{root}/{}", v.artifact_path)}),
            )
        } else {
            ("local", json!({"uri": Path::new(root).join(&v.artifact_path).display().to_string()}))
        };
        DatasetInput {
            tags: vec![KeyValue { key: "mlflow.data.context".into(), value: "training".into() }],
            dataset: Dataset {
                name: v.name.clone(),
                // MLflow keeps digests to 36 characters: the first 128 bits of the SHA-256.
                digest: v.digest[..32.min(v.digest.len())].to_owned(),
                source_type: source_type.into(),
                source: source.to_string(),
                schema: Some(schema.to_string()),
                profile: Some(json!({"num_rows": v.rows, "shipyard_version": v.version}).to_string()),
            },
        }
    }

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

/// A plain file as an MLflow dataset input (`local` source), named after the file.
pub fn file_run_input(path: &Path, digest: &str, rows: u64, schema: &serde_json::Value) -> DatasetInput {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("dataset").to_owned();
    DatasetInput {
        tags: vec![KeyValue { key: "mlflow.data.context".into(), value: "training".into() }],
        dataset: Dataset {
            name,
            digest: digest[..32.min(digest.len())].to_owned(),
            source_type: "local".into(),
            source: json!({"uri": absolute.display().to_string()}).to_string(),
            schema: Some(schema.to_string()),
            profile: Some(json!({"num_rows": rows}).to_string()),
        },
    }
}
