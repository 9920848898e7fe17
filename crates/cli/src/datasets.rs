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
use shipyard_core::artifact_path::ArtifactPath;
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

/// Records a suite's results with the dataset version they ran on; returns the record's id.
pub(crate) fn record_validation(
    version: &DatasetVersion,
    suite: &Path,
    report: &shipyard_data::suite::ValidationReport,
    store: &DatasetStoreArgs,
) -> Result<i64> {
    let new = shipyard_store::datasets::NewValidation {
        name: version.name.clone(),
        version: version.version,
        suite: suite.file_name().map_or_else(|| suite.display().to_string(), |n| n.to_string_lossy().into_owned()),
        success: report.success,
        evaluated: report.evaluated_expectations as i64,
        successful: report.successful_expectations as i64,
        quality_score: report.quality_score,
        report: serde_json::to_string(report)?,
        actor: crate::promote::actor(None),
    };
    with_database(store, async |db| Ok(db.record_validation(new).await?.id))
}

/// A file argument: a path, or `dataset:NAME[@VERSION]` resolved to the version's file (fetched
/// into `SHIPYARD_HOME/cache` when its artifact store is remote).
pub fn resolve_input(arg: &Path, store: &DatasetStoreArgs) -> Result<PathBuf> {
    Ok(resolve_dataset(arg, store)?.0)
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
    let schema = shipyard_data::mlflow_schema::colspec(table.schema(), |name| {
        profile.columns.iter().any(|c| c.name == name && c.missing == 0)
    });
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
            db.log_inputs(run_id, vec![version.run_input(&schema)], Vec::new()).await?;
        }
        db.close().await;
        Ok((version, created))
    })
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
