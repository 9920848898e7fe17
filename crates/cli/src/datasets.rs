//! Dataset versions from the command line: `shipyard data add|list|show`, and `dataset:NAME@VERSION`
//! wherever a table file is accepted.
//!
//! The bytes go to the artifact store once per SHA-256 digest (`datasets/sha256/<digest>.<ext>`);
//! the metadata store records each version. Both are opened in this process: the default SQLite
//! store and artifact folder under `SHIPYARD_HOME`, or `--tracking-uri sqlite:///...|postgresql://...`
//! with `--artifacts-destination`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::StreamExt;
use serde_json::json;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::entities::{Dataset, DatasetInput, KeyValue};
use shipyard_data::profile::Profile;
use shipyard_data::table::{Format, Table};
use shipyard_store::datasets::{DatasetVersion, NewDatasetVersion};
use shipyard_store::{ArtifactStore, Database, DatabaseUri};

use crate::HomeArgs;

/// Where dataset versions are recorded and stored.
#[derive(Args, Clone)]
pub struct DatasetStoreArgs {
    /// Metadata store: sqlite:///path or postgresql://... (default: SHIPYARD_HOME/shipyard.db).
    #[arg(long, env = "SHIPYARD_TRACKING_URI")]
    tracking_uri: Option<String>,
    /// Artifact store for the dataset files: a folder, s3://, gs:// or az:// (default:
    /// SHIPYARD_HOME/artifacts).
    #[arg(long, env = "SHIPYARD_ARTIFACTS_DESTINATION")]
    artifacts_destination: Option<String>,
    #[command(flatten)]
    home: HomeArgs,
}

impl DatasetStoreArgs {
    /// The store under `home`, or at the given database and artifact root.
    pub(crate) fn new(home: &Path, tracking_uri: Option<String>, artifacts_destination: Option<String>) -> Self {
        DatasetStoreArgs { tracking_uri, artifacts_destination, home: HomeArgs { home: home.to_path_buf() } }
    }

    pub(crate) fn set_tracking_uri(&mut self, uri: &str) {
        self.tracking_uri = Some(uri.to_owned());
    }

    /// The environment that points a child `shipyard` command at this same store.
    pub(crate) fn child_env(&self) -> Vec<(&'static str, String)> {
        let home = std::path::absolute(&self.home.home).unwrap_or_else(|_| self.home.home.clone());
        let mut env =
            vec![("SHIPYARD_HOME", home.display().to_string()), ("SHIPYARD_ARTIFACTS_DESTINATION", self.destination())];
        if let Some(uri) = &self.tracking_uri {
            env.push(("SHIPYARD_TRACKING_URI", uri.clone()));
        }
        env
    }

    pub(crate) async fn database(&self) -> Result<Database> {
        let uri = match self.tracking_uri.as_deref() {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => bail!(
                "this command writes to the metadata store itself: pass --tracking-uri sqlite:///... or \
                 postgresql://... (the server's --backend-store-uri), not a server URL"
            ),
            Some(u) => DatabaseUri::parse(u)?,
            None => DatabaseUri::Sqlite(self.home.home.join("shipyard.db")),
        };
        Ok(Database::connect(&uri).await?)
    }

    /// The tracking server's URL, when `--tracking-uri` is one.
    pub(crate) fn server_url(&self) -> Option<&str> {
        self.tracking_uri.as_deref().filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    }

    pub(crate) fn destination(&self) -> String {
        self.artifacts_destination.clone().unwrap_or_else(|| {
            let dir = self.home.home.join("artifacts");
            std::path::absolute(&dir).unwrap_or(dir).display().to_string()
        })
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.home.home.join("cache").join("datasets")
    }
}

/// Opens the metadata store, runs `work` on it and closes it, on a runtime made for it.
pub(crate) fn with_database<T>(store: &DatasetStoreArgs, work: impl AsyncFnOnce(&Database) -> Result<T>) -> Result<T> {
    block_on(async {
        let db = store.database().await?;
        let outcome = work(&db).await;
        db.close().await;
        outcome
    })
}

/// Runs an async block on a runtime made for it (data commands run outside one).
pub(crate) fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

/// `NAME` or `NAME@VERSION` (`@latest` too).
pub fn parse_reference(text: &str) -> Result<(String, Option<i64>)> {
    Ok(shipyard_store::datasets::parse_reference(text)?)
}

/// A file argument resolved to a local path, with the dataset version when it named one.
pub fn resolve_dataset(arg: &Path, store: &DatasetStoreArgs) -> Result<(PathBuf, Option<DatasetVersion>)> {
    let Some(reference) = arg.to_str().and_then(|s| s.strip_prefix("dataset:")) else {
        return Ok((arg.to_owned(), None));
    };
    let (name, version) = parse_reference(reference)?;
    block_on(async {
        let db = store.database().await?;
        let v = db.get_dataset_version(&name, version).await?;
        db.close().await;
        let path = v.local_copy(&store.cache_dir()).await?;
        Ok((path, Some(v)))
    })
}

/// A file argument: a path, or `dataset:NAME[@VERSION]` resolved to the version's file (fetched
/// into `SHIPYARD_HOME/cache` when its artifact store is remote).
pub fn resolve_input(arg: &Path, store: &DatasetStoreArgs) -> Result<PathBuf> {
    Ok(resolve_dataset(arg, store)?.0)
}

/// MLflow's column types for a dataset's `mlflow_colspec` schema.
fn mlflow_type(arrow: &arrow_schema::DataType) -> &'static str {
    use arrow_schema::DataType as T;
    match arrow {
        T::Int8 | T::Int16 | T::Int32 | T::UInt8 | T::UInt16 => "integer",
        T::Int64 | T::UInt32 | T::UInt64 => "long",
        T::Float16 | T::Float32 => "float",
        T::Float64 | T::Decimal32(..) | T::Decimal64(..) | T::Decimal128(..) | T::Decimal256(..) => "double",
        T::Boolean => "boolean",
        T::Date32 | T::Date64 | T::Timestamp(..) => "datetime",
        T::Binary | T::LargeBinary | T::BinaryView | T::FixedSizeBinary(_) => "binary",
        _ => "string",
    }
}

/// What `data add` does: hash, profile, store the bytes once, record the version.
pub struct AddRequest<'a> {
    pub file: &'a Path,
    pub name: &'a str,
    pub description: Option<String>,
    pub run_id: Option<String>,
    pub csv: shipyard_data::table::CsvOptions,
}

pub fn add(request: AddRequest<'_>, store: &DatasetStoreArgs) -> Result<(DatasetVersion, bool)> {
    shipyard_store::datasets::validate_dataset_name(request.name)?;
    let file = request.file;
    // Hash and profile on two threads: both read the whole file.
    let (digest, profiled) = std::thread::scope(|s| {
        let digest = s.spawn(|| shipyard_data::digest::sha256_file(file));
        let profiled = Table::open(file, &request.csv).and_then(|mut t| {
            let p = Profile::of_table(&mut t)?;
            Ok((t, p))
        });
        (digest.join().unwrap_or_else(|_| Err(shipyard_data::error::DataError::invalid("hashing failed"))), profiled)
    });
    let ((digest, size), (table, profile)) = (digest?, profiled?);
    let format = match table.format() {
        Format::Csv => "csv",
        Format::Parquet => "parquet",
    };
    let schema = colspec(table.schema(), |name| profile.columns.iter().any(|c| c.name == name && c.missing == 0));
    let source = std::path::absolute(file).unwrap_or_else(|_| file.to_owned()).display().to_string();
    let artifact_path = format!("datasets/sha256/{digest}.{format}");
    block_on(async {
        let db = store.database().await?;
        let destination = store.destination();
        let artifacts = ArtifactStore::open(&destination).await?;
        let path = ArtifactPath::parse(&artifact_path)?;
        // Stored once per digest: identical bytes under any name are not copied again.
        let stored = match artifacts.get(&path).await {
            Ok(_) => true,
            Err(shipyard_core::Error::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if !stored {
            let f = tokio::fs::File::open(file).await.with_context(|| format!("reading {}", file.display()))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20)
                .map(|r| r.map_err(|e| shipyard_core::Error::Internal(format!("reading {}: {e}", file.display()))));
            artifacts.put(&path, stream).await?;
        }
        let (version, created) = db
            .create_dataset_version(NewDatasetVersion {
                name: request.name.to_owned(),
                digest: digest.clone(),
                format: format.to_owned(),
                rows: profile.rows as i64,
                size_bytes: size as i64,
                schema: schema.to_string(),
                profile: serde_json::to_string(&profile)?,
                source: source.clone(),
                artifact_root: destination.clone(),
                artifact_path: artifact_path.clone(),
                description: request.description.clone(),
            })
            .await?;
        if let Some(run_id) = &request.run_id {
            db.log_inputs(run_id, vec![mlflow_input(&version, &schema)], Vec::new()).await?;
        }
        db.close().await;
        Ok((version, created))
    })
}

/// The dataset version in MLflow's dataset form, as a run input: `mlflow` clients see it in
/// `run.inputs.dataset_inputs`. Local files use MLflow's `local` source type, so
/// `mlflow.data.get_source(...)` resolves them.
pub(crate) fn mlflow_input(v: &DatasetVersion, schema: &serde_json::Value) -> DatasetInput {
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

pub fn list(name: Option<&str>, store: &DatasetStoreArgs) -> Result<Vec<DatasetVersion>> {
    block_on(async {
        let db = store.database().await?;
        let versions = db.list_dataset_versions(name).await?;
        db.close().await;
        Ok(versions)
    })
}

pub fn show(reference: &str, store: &DatasetStoreArgs) -> Result<DatasetVersion> {
    let (name, version) = parse_reference(reference.strip_prefix("dataset:").unwrap_or(reference))?;
    block_on(async {
        let db = store.database().await?;
        let v = db.get_dataset_version(&name, version).await?;
        db.close().await;
        Ok(v)
    })
}

/// A plain file as an MLflow dataset input (`local` source), named after the file.
pub(crate) fn file_input(path: &Path, digest: &str, rows: u64, schema: &serde_json::Value) -> DatasetInput {
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

/// A table schema in MLflow's `mlflow_colspec` form.
pub(crate) fn colspec(schema: &arrow_schema::Schema, required: impl Fn(&str) -> bool) -> serde_json::Value {
    json!({
        "mlflow_colspec": schema.fields().iter().map(|f| json!({
            "name": f.name(), "type": mlflow_type(f.data_type()), "required": !f.is_nullable() || required(f.name())
        })).collect::<Vec<_>>()
    })
}
