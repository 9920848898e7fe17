//! Dataset versions made from table files: what `shipyard data add` does, wherever it runs (in
//! the CLI on the stores, or on a server for `data add --tracking-uri http(s)://...`).
//!
//! A file is hashed (SHA-256) and profiled on the blocking pool, its bytes stored in the
//! artifact store once per digest (`datasets/sha256/<digest>.<csv|parquet>`: identical bytes
//! under any name are not copied again), and the version recorded with its schema (MLflow's
//! colspec), profile and row count. `shipyard-data` reads and profiles; `shipyard-store` keeps.

use std::path::PathBuf;

use futures::StreamExt;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::{Error, Result};
use shipyard_data::error::DataError;
use shipyard_data::profile::Profile;
use shipyard_data::table::{CsvOptions, Format, Table};
use shipyard_store::datasets::{DatasetVersion, NewDatasetVersion};
use shipyard_store::{ArtifactStore, Database};

/// A table file to record as a version of a dataset.
pub struct AddRequest {
    /// The file, readable here.
    pub file: PathBuf,
    /// What errors and the version call the file: its path where the user has it.
    pub source: String,
    pub name: String,
    pub description: Option<String>,
    /// A run that read this data: the version is logged as its input.
    pub run_id: Option<String>,
    pub csv: CsvOptions,
}

/// Where versions are kept.
pub struct Stores<'a> {
    pub db: &'a Database,
    pub artifacts: &'a ArtifactStore,
    /// The artifact store's root as recorded with each version (where its file is).
    pub destination: &'a str,
}

/// A file's digest, size, format, schema and profile: everything recorded that is read from
/// the bytes.
struct Described {
    digest: String,
    size: u64,
    format: &'static str,
    schema: serde_json::Value,
    profile: Profile,
}

/// Hashes and profiles `file` on two threads (both read the whole file).
fn describe(file: &std::path::Path, csv: &CsvOptions) -> std::result::Result<Described, DataError> {
    let (digest, profiled) = std::thread::scope(|s| {
        let digest = s.spawn(|| shipyard_data::digest::sha256_file(file));
        let profiled = Table::open(file, csv).and_then(|mut t| {
            let p = Profile::of_table(&mut t)?;
            Ok((t, p))
        });
        (digest.join().unwrap_or_else(|_| Err(DataError::invalid("hashing failed"))), profiled)
    });
    let ((digest, size), (table, profile)) = (digest?, profiled?);
    let format = match table.format() {
        Format::Csv => "csv",
        Format::Parquet => "parquet",
    };
    let schema = shipyard_data::mlflow_schema::colspec(table.schema(), |name| {
        profile.columns.iter().any(|c| c.name == name && c.missing == 0)
    });
    Ok(Described { digest, size, format, schema, profile })
}

/// Records `request.file` as the next version of `request.name` (the same bytes as the latest
/// version make no new one: `created` is false). Returns the version and whether it is new.
pub async fn add(stores: Stores<'_>, request: AddRequest) -> Result<(DatasetVersion, bool)> {
    shipyard_store::datasets::validate_dataset_name(&request.name)?;
    let (file, csv, source) = (request.file.clone(), request.csv.clone(), request.source.clone());
    let described = tokio::task::spawn_blocking(move || describe(&file, &csv))
        .await
        .map_err(|e| Error::Internal(format!("profiling the table stopped: {e}")))?
        .map_err(|e| match e {
            // The file as the user knows it, not where this process read it.
            DataError::Input { message, .. } => Error::invalid(format!("{source}: {message}")),
            DataError::Invalid(message) => Error::invalid(message),
        })?;
    let artifact_path = format!("datasets/sha256/{}.{}", described.digest, described.format);
    let path = ArtifactPath::parse(&artifact_path)?;
    let stored = match stores.artifacts.get(&path).await {
        Ok(_) => true,
        Err(Error::NotFound(_)) => false,
        Err(e) => return Err(e),
    };
    if !stored {
        let f = tokio::fs::File::open(&request.file)
            .await
            .map_err(|e| Error::Internal(format!("reading {}: {e}", request.file.display())))?;
        let shown = request.source.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20)
            .map(move |r| r.map_err(|e| Error::Internal(format!("reading {shown}: {e}"))));
        stores.artifacts.put(&path, stream).await?;
    }
    let profile =
        serde_json::to_string(&described.profile).map_err(|e| Error::Internal(format!("writing the profile: {e}")))?;
    let (version, created) = stores
        .db
        .create_dataset_version(NewDatasetVersion {
            name: request.name.clone(),
            digest: described.digest,
            format: described.format.to_owned(),
            rows: described.profile.rows as i64,
            size_bytes: described.size as i64,
            schema: described.schema.to_string(),
            profile,
            source: request.source.clone(),
            artifact_root: stores.destination.to_owned(),
            artifact_path,
            description: request.description.clone(),
        })
        .await?;
    if let Some(run_id) = &request.run_id {
        stores.db.log_inputs(run_id, vec![version.run_input(&described.schema)], Vec::new()).await?;
    }
    Ok((version, created))
}
