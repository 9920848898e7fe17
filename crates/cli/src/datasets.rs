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
use shipyard_store::datasets::DatasetVersion;
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
                "this command works on the metadata store itself, not through a server yet: pass \
                 --tracking-uri sqlite:///... or postgresql://... (the server's --backend-store-uri)"
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

    /// The tracking server, with the credentials of the environment, when `--tracking-uri`
    /// is one: the command then asks the server to do its work.
    pub(crate) fn server(&self) -> Result<Option<crate::client::Server>> {
        self.server_url().map(crate::client::Server::connect).transpose()
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

/// A file argument resolved to a local path, with the dataset version when it named one (its
/// file fetched into the cache from the artifact store, or from the server the tracking URI
/// names).
pub fn resolve_dataset(arg: &Path, store: &DatasetStoreArgs) -> Result<(PathBuf, Option<DatasetVersion>)> {
    let Some(reference) = arg.to_str().and_then(|s| s.strip_prefix("dataset:")) else {
        return Ok((arg.to_owned(), None));
    };
    let (name, version) = parse_reference(reference)?;
    if let Some(server) = store.server()? {
        return block_on(async {
            let v = crate::tracking::dataset_version(&server, &name, version).await?;
            let path = download(&server, &v, &store.cache_dir()).await?;
            Ok((path, Some(v)))
        });
    }
    block_on(async {
        let db = store.database().await?;
        let v = db.get_dataset_version(&name, version).await?;
        db.close().await;
        let path = v.local_copy(&store.cache_dir()).await?;
        Ok((path, Some(v)))
    })
}

/// A dataset version's file from the server's artifact API, kept in `cache` under its digest
/// (fetched once; a partial download never takes the final name).
async fn download(server: &crate::client::Server, v: &DatasetVersion, cache: &Path) -> Result<PathBuf> {
    let target = cache.join(format!("{}.{}", v.digest, v.format));
    if target.is_file() {
        return Ok(target);
    }
    tokio::fs::create_dir_all(cache).await.with_context(|| format!("creating {}", cache.display()))?;
    let encoded: Vec<String> = v
        .artifact_path
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string())
        .collect();
    let route = format!("api/2.0/mlflow-artifacts/artifacts/{}", encoded.join("/"));
    let response = server
        .request(reqwest::Method::GET, &route)
        .send()
        .await
        .with_context(|| format!("downloading dataset:{}@{}", v.name, v.version))?;
    if !response.status().is_success() {
        bail!("downloading dataset:{}@{}: HTTP {}", v.name, v.version, response.status());
    }
    let partial = target.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial).await.with_context(|| format!("writing {}", partial.display()))?;
    let mut stream = response.bytes_stream();
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("downloading dataset:{}@{}", v.name, v.version))?;
        file.write_all(&chunk).await.with_context(|| format!("writing {}", partial.display()))?;
    }
    file.flush().await?;
    drop(file);
    tokio::fs::rename(&partial, &target).await.with_context(|| format!("writing {}", target.display()))?;
    Ok(target)
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
    if let Some(server) = store.server()? {
        let answer = block_on(server.post("api/shipyard/datasets/validations", &serde_json::to_value(&new)?))?;
        return answer["validation"]["id"].as_i64().context("the server answered without the validation's id");
    }
    with_database(store, async |db| Ok(db.record_validation(new).await?.id))
}

/// A file argument: a path, or `dataset:NAME[@VERSION]` resolved to the version's file (fetched
/// into `SHIPYARD_HOME/cache` when its artifact store is remote).
pub fn resolve_input(arg: &Path, store: &DatasetStoreArgs) -> Result<PathBuf> {
    Ok(resolve_dataset(arg, store)?.0)
}

/// What `data add` records: a file as the next version of a dataset.
pub struct AddRequest<'a> {
    pub file: &'a Path,
    pub name: &'a str,
    pub description: Option<String>,
    pub run_id: Option<String>,
    pub read: &'a crate::data::ReadArgs,
}

/// Records the file as a version of the dataset ([`shipyard_datasets::add`] on the stores, or
/// on the server the tracking URI names, the file uploaded); the version, and whether it is new.
pub fn add(request: AddRequest<'_>, store: &DatasetStoreArgs) -> Result<(DatasetVersion, bool)> {
    shipyard_store::datasets::validate_dataset_name(request.name)?;
    let source = std::path::absolute(request.file).unwrap_or_else(|_| request.file.to_owned()).display().to_string();
    if let Some(server) = store.server()? {
        return block_on(upload(&server, &request, &source));
    }
    let add = shipyard_datasets::AddRequest {
        file: request.file.to_owned(),
        source,
        name: request.name.to_owned(),
        description: request.description.clone(),
        run_id: request.run_id.clone(),
        csv: request.read.options()?,
    };
    block_on(async {
        let db = store.database().await?;
        let destination = store.destination();
        let artifacts = ArtifactStore::open(&destination).await?;
        let stores = shipyard_datasets::Stores { db: &db, artifacts: &artifacts, destination: &destination };
        let added = shipyard_datasets::add(stores, add).await;
        db.close().await;
        Ok(added?)
    })
}

/// Sends the file to the server's `datasets/add`, streamed.
async fn upload(
    server: &crate::client::Server,
    request: &AddRequest<'_>,
    source: &str,
) -> Result<(DatasetVersion, bool)> {
    let mut query: Vec<(&str, String)> = vec![("name", request.name.to_owned()), ("source", source.to_owned())];
    if let Some(d) = &request.description {
        query.push(("description", d.clone()));
    }
    if let Some(r) = &request.run_id {
        query.push(("run_id", r.clone()));
    }
    query.extend(request.read.query());
    let file =
        tokio::fs::File::open(request.file).await.with_context(|| format!("reading {}", request.file.display()))?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    let http = server.request(reqwest::Method::POST, "api/shipyard/datasets/add").query(&query).body(body);
    let answer = server.send(http, "datasets/add").await?;
    let version: DatasetVersion =
        serde_json::from_value(answer["dataset_version"].clone()).context("reading the server's dataset version")?;
    Ok((version, answer["created"].as_bool().unwrap_or(false)))
}

/// A table argument for a server: `dataset:NAME[@VERSION]` as it is; a local file is added to
/// the server as a version of the dataset named after it (the same bytes make no new version)
/// and named by that version, since a server reads no file of the client's.
pub fn remote_table(server: &crate::client::Server, path: &Path, read: &crate::data::ReadArgs) -> Result<String> {
    if let Some(reference) = path.to_str().filter(|p| p.starts_with("dataset:")) {
        return Ok(reference.to_owned());
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    let name = if name.is_empty() { "upload".to_owned() } else { name };
    let source = std::path::absolute(path).unwrap_or_else(|_| path.to_owned()).display().to_string();
    let request = AddRequest { file: path, name: &name, description: None, run_id: None, read };
    let (version, created) = block_on(upload(server, &request, &source))?;
    let reference = format!("dataset:{}@{}", version.name, version.version);
    eprintln!("{} {} to the server as {reference}", if created { "added" } else { "found" }, path.display());
    Ok(reference)
}

pub fn list(name: Option<&str>, store: &DatasetStoreArgs) -> Result<Vec<DatasetVersion>> {
    if let Some(server) = store.server()? {
        let query: Vec<(&str, &str)> = name.map(|n| vec![("name", n)]).unwrap_or_default();
        let answer = block_on(server.get("api/shipyard/datasets/list", &query))?;
        return serde_json::from_value(answer["dataset_versions"].clone()).context("reading the server's datasets");
    }
    block_on(async {
        let db = store.database().await?;
        let versions = db.list_dataset_versions(name).await?;
        db.close().await;
        Ok(versions)
    })
}

/// A version and its `shown` newest validations.
pub fn show_with_validations(
    reference: &str,
    shown: i64,
    store: &DatasetStoreArgs,
) -> Result<(DatasetVersion, Vec<shipyard_store::datasets::DatasetValidation>)> {
    let (name, version) = parse_reference(reference.strip_prefix("dataset:").unwrap_or(reference))?;
    if let Some(server) = store.server()? {
        let version = version.map(|v| v.to_string());
        let shown = shown.to_string();
        let mut query = vec![("name", name.as_str()), ("validations", shown.as_str())];
        if let Some(v) = &version {
            query.push(("version", v.as_str()));
        }
        let answer = block_on(server.get("api/shipyard/datasets/get", &query))?;
        let v = serde_json::from_value(answer["dataset_version"].clone()).context("reading the server's dataset")?;
        let validations = serde_json::from_value(answer["validations"].clone()).unwrap_or_default();
        return Ok((v, validations));
    }
    with_database(store, async |db| {
        let v = db.get_dataset_version(&name, version).await?;
        let validations = db.dataset_validations(&v.name, v.version, shown).await?;
        Ok((v, validations))
    })
}
