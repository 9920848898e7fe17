//! Client-side access to tracking data, for commands that take `--tracking-uri`.
//!
//! `http(s)://...` talks to a Shipyard (or MLflow) server over its REST API; `sqlite:///...` and
//! `postgresql://...` open the store directly; no URI means the SQLite file under
//! `SHIPYARD_HOME`. Results come back as MLflow's JSON shapes either way, so commands print the
//! same thing whichever way the data was reached.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use shipyard_core::entities::ViewType;
use shipyard_store::{Database, DatabaseUri};

use crate::client::Server;

/// Where tracking data is read and written.
pub enum Tracking {
    /// The metadata store, opened in this process.
    Store(Database),
    /// A tracking server, reached with the credentials of the environment.
    Http(Server),
}

impl Tracking {
    /// Opens `uri`, or the default SQLite store under `home`.
    pub async fn open(uri: Option<&str>, home: &Path) -> Result<Self> {
        match uri {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(Tracking::Http(Server::connect(u)?)),
            Some(u) => {
                let db_uri = DatabaseUri::parse(u)?;
                Ok(Tracking::Store(Database::connect(&db_uri).await?))
            }
            None => Ok(Tracking::Store(Database::connect(&DatabaseUri::Sqlite(home.join("shipyard.db"))).await?)),
        }
    }

    /// Calls an MLflow endpoint (`path` under `/api/2.0/mlflow/`) and returns its JSON answer;
    /// an MLflow error body becomes an error carrying its code and message.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        self.request(method, &format!("api/2.0/mlflow/{path}"), body).await
    }

    /// Calls `route` (under the server's root) with `body` as the query (GET) or JSON body.
    async fn request(&self, method: reqwest::Method, route: &str, body: Value) -> Result<Value> {
        let Tracking::Http(server) = self else { bail!("not an HTTP tracking URI") };
        let request = if method == reqwest::Method::GET {
            let query: Vec<(String, String)> = body
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                        .collect()
                })
                .unwrap_or_default();
            server.request(method, route).query(&query)
        } else {
            server.request(method, route).json(&body)
        };
        server.send(request, route).await
    }

    /// Every active experiment, newest first.
    pub async fn list_experiments(&self) -> Result<Vec<Value>> {
        match self {
            Tracking::Store(db) => {
                let mut out = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let page =
                        db.search_experiments(ViewType::ActiveOnly, Some(1000), None, &[], token.as_deref()).await?;
                    out.extend(page.items.iter().map(|e| json!(e)));
                    match page.next_page_token {
                        Some(t) => token = Some(t),
                        None => return Ok(out),
                    }
                }
            }
            Tracking::Http(_) => {
                let mut out = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let mut body = json!({"max_results": 1000, "view_type": "ACTIVE_ONLY"});
                    if let Some(t) = &token {
                        body["page_token"] = json!(t);
                    }
                    let page = self.call(reqwest::Method::POST, "experiments/search", body).await?;
                    out.extend(page["experiments"].as_array().cloned().unwrap_or_default());
                    match page["next_page_token"].as_str() {
                        Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                        _ => return Ok(out),
                    }
                }
            }
        }
    }

    /// Creates an experiment and returns its id.
    pub async fn create_experiment(&self, name: &str) -> Result<String> {
        match self {
            Tracking::Store(db) => Ok(db.create_experiment(name, None, &[]).await?),
            Tracking::Http(_) => {
                let answer = self.call(reqwest::Method::POST, "experiments/create", json!({ "name": name })).await?;
                answer["experiment_id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no experiment_id in answer"))
            }
        }
    }

    /// The id of an experiment given by id or by name.
    pub async fn experiment_id(&self, id_or_name: &str) -> Result<String> {
        if id_or_name.chars().all(|c| c.is_ascii_digit()) {
            return Ok(id_or_name.to_owned());
        }
        match self {
            Tracking::Store(db) => Ok(db.get_experiment_by_name(id_or_name).await?.experiment_id),
            Tracking::Http(_) => {
                let answer = self
                    .call(reqwest::Method::GET, "experiments/get-by-name", json!({ "experiment_name": id_or_name }))
                    .await?;
                answer["experiment"]["experiment_id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("no experiment in answer"))
            }
        }
    }

    /// Runs of an experiment matching `filter`, in MLflow's default order.
    pub async fn search_runs(&self, experiment_id: &str, filter: Option<&str>, max_results: i64) -> Result<Vec<Value>> {
        match self {
            Tracking::Store(db) => {
                let page = db
                    .search_runs(
                        &[experiment_id.to_owned()],
                        filter,
                        ViewType::ActiveOnly,
                        Some(max_results),
                        &[],
                        None,
                    )
                    .await?;
                Ok(page.items.iter().map(|r| json!(r)).collect())
            }
            Tracking::Http(_) => {
                let body = json!({
                    "experiment_ids": [experiment_id],
                    "filter": filter.unwrap_or(""),
                    "max_results": max_results,
                    "run_view_type": "ACTIVE_ONLY",
                });
                let page = self.call(reqwest::Method::POST, "runs/search", body).await?;
                Ok(page["runs"].as_array().cloned().unwrap_or_default())
            }
        }
    }
}

/// Prints rows as aligned columns.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    out!("{}", shipyard_core::display::columns(headers, rows));
}

/// Fetching a model's files from a tracking server, for `--tracking-uri http://...`.
impl Tracking {
    /// The proxied artifact location (`mlflow-artifacts:/...`) a model URI names, with the
    /// registered name and version when it is one.
    pub async fn model_location(&self, uri: &shipyard_runtime::ModelUri) -> Result<(String, Option<(String, String)>)> {
        use shipyard_runtime::ModelUri;
        let version_location = |name: String, version: String| async move {
            let answer = self
                .call(
                    reqwest::Method::GET,
                    "model-versions/get-download-uri",
                    json!({"name": name, "version": version}),
                )
                .await?;
            let location = answer["artifact_uri"].as_str().ok_or_else(|| anyhow!("the server gave no artifact_uri"))?;
            Ok::<_, anyhow::Error>((location.to_owned(), Some((name, version))))
        };
        let (location, version) = match uri {
            ModelUri::Version { name, version } => version_location(name.clone(), version.clone()).await?,
            ModelUri::Alias { name, alias } => {
                let answer = self
                    .call(reqwest::Method::GET, "registered-models/alias", json!({"name": name, "alias": alias}))
                    .await?;
                let version = answer["model_version"]["version"]
                    .as_str()
                    .ok_or_else(|| anyhow!("the server gave no version for {name}@{alias}"))?;
                version_location(name.clone(), version.to_owned()).await?
            }
            ModelUri::Run { run_id, path } => (self.run_location(run_id, path).await?, None),
            ModelUri::Artifacts(u) => (u.clone(), None),
            ModelUri::Local(p) => bail!("{} is a local path", p.display()),
        };
        // A version registered from a run keeps `runs:/` as its source.
        if let Some(rest) = location.strip_prefix("runs:/") {
            let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok((self.run_location(run_id, path.trim_end_matches('/')).await?, version));
        }
        Ok((location, version))
    }

    /// `runs:/RUN_ID/PATH`: a model the run logged under that name (MLflow 3 keeps those as
    /// logged models, outside the run's artifacts), else the run's artifacts at PATH.
    async fn run_location(&self, run_id: &str, path: &str) -> Result<String> {
        let answer = self.call(reqwest::Method::GET, "runs/get", json!({"run_id": run_id})).await?;
        let root = answer["run"]["info"]["artifact_uri"]
            .as_str()
            .ok_or_else(|| anyhow!("run {run_id} has no artifact_uri"))?;
        if !path.is_empty() && !path.contains('/') && !path.contains('\'') {
            let experiment = answer["run"]["info"]["experiment_id"].as_str().unwrap_or("0");
            let search = json!({
                "experiment_ids": [experiment],
                "filter": format!("source_run_id = '{run_id}' AND name = '{path}'"),
                "max_results": 1,
            });
            // A server without logged models (MLflow 2) answers 404: the run's artifacts then.
            if let Ok(found) = self.call(reqwest::Method::POST, "logged-models/search", search).await
                && let Some(uri) = found["models"][0]["info"]["artifact_uri"].as_str()
            {
                return Ok(uri.to_owned());
            }
        }
        Ok(if path.is_empty() { root.to_owned() } else { format!("{}/{path}", root.trim_end_matches('/')) })
    }

    /// Downloads every file under the proxied artifact `location` into `dest` through the
    /// server's `mlflow-artifacts` API; a location that is one file lands as `dest/<name>`.
    /// Returns the local path of the model (the folder, or the single file).
    pub async fn download_model(&self, location: &str, dest: &Path) -> Result<std::path::PathBuf> {
        let Tracking::Http(server) = self else { bail!("not an HTTP tracking URI") };
        let root = shipyard_core::artifact_path::ArtifactPath::from_proxied_uri(location)?;
        let encode = |p: &str| {
            p.split('/')
                .map(|s| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        let list = |dir: String| async move {
            let request = server
                .request(reqwest::Method::GET, "api/2.0/mlflow-artifacts/artifacts")
                .query(&[("path", dir.as_str())]);
            let body = server.send(request, &format!("listing {dir}")).await?;
            Ok::<_, anyhow::Error>(body["files"].as_array().cloned().unwrap_or_default())
        };
        let fetch = |path: String, target: std::path::PathBuf| async move {
            let route = format!("api/2.0/mlflow-artifacts/artifacts/{}", encode(&path));
            let response = server
                .request(reqwest::Method::GET, &route)
                .send()
                .await
                .with_context(|| format!("downloading {path}"))?;
            if !response.status().is_success() {
                bail!("downloading {path}: HTTP {}", response.status());
            }
            let bytes = response.bytes().await?;
            let partial = target.with_extension("partial");
            tokio::fs::write(&partial, &bytes).await.with_context(|| format!("writing {}", partial.display()))?;
            tokio::fs::rename(&partial, &target).await.with_context(|| format!("writing {}", target.display()))?;
            Ok::<_, anyhow::Error>(())
        };
        let top = root.to_string();
        let entries = list(top.clone()).await?;
        if entries.is_empty() {
            let name = top.rsplit('/').next().unwrap_or("model.onnx").to_owned();
            tokio::fs::create_dir_all(dest).await?;
            let target = dest.join(&name);
            fetch(top, target.clone()).await?;
            return Ok(target);
        }
        let model_dir = dest.join("model");
        let mut pending = vec![(top, model_dir.clone(), entries)];
        while let Some((dir, local, entries)) = pending.pop() {
            tokio::fs::create_dir_all(&local).await?;
            for entry in entries {
                let raw = entry["path"].as_str().unwrap_or_default();
                // Servers answer with names relative to the listed folder; keep the last part only,
                // so nothing lands outside `dest`.
                let name = raw.rsplit('/').next().unwrap_or_default();
                if name.is_empty() || name == "." || name == ".." {
                    bail!("the server listed an invalid artifact name {raw:?}");
                }
                let child = format!("{dir}/{name}");
                if entry["is_dir"].as_bool().unwrap_or(false) {
                    let inner = list(child.clone()).await?;
                    pending.push((child, local.join(name), inner));
                } else {
                    fetch(child, local.join(name)).await?;
                }
            }
        }
        Ok(model_dir)
    }
}

/// What a deployment replica reads from a tracking server (`serve --deployment NAME
/// --tracking-uri http://...`).
impl Tracking {
    /// A deployment, from Shipyard's `/api/shipyard/deployments/get`.
    pub async fn deployment(&self, name: &str) -> Result<shipyard_core::deployment::Deployment> {
        let answer = self.request(reqwest::Method::GET, "api/shipyard/deployments/get", json!({"name": name})).await?;
        serde_json::from_value(answer["deployment"].clone()).context("reading the deployment")
    }

    /// Records a replica's rollout report on the server.
    pub async fn report_serving_process(&self, report: &shipyard_core::rollout::ProcessReport) -> Result<()> {
        self.request(reqwest::Method::POST, "api/shipyard/serving/report", json!({ "process": report })).await?;
        Ok(())
    }

    /// Removes a replica's rollout report from the server.
    pub async fn remove_serving_process(&self, id: &str) -> Result<()> {
        self.request(reqwest::Method::POST, "api/shipyard/serving/withdraw", json!({ "id": id })).await?;
        Ok(())
    }

    /// The version `model@alias` points at; `None` when the alias is not set.
    pub async fn alias_version(&self, model: &str, alias: &str) -> Result<Option<String>> {
        let answer =
            self.call(reqwest::Method::GET, "registered-models/alias", json!({"name": model, "alias": alias})).await;
        match answer {
            Ok(v) => Ok(v["model_version"]["version"].as_str().map(str::to_owned)),
            // MLflow answers an unset alias with INVALID_PARAMETER_VALUE "... alias X not found".
            Err(e) if e.to_string().starts_with("INVALID_PARAMETER_VALUE") && e.to_string().contains("not found") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A registered model's tags.
    pub async fn registered_model_tags(&self, model: &str) -> Result<Vec<shipyard_core::entities::KeyValue>> {
        let answer = self.call(reqwest::Method::GET, "registered-models/get", json!({"name": model})).await?;
        Ok(serde_json::from_value(answer["registered_model"]["tags"].clone()).unwrap_or_default())
    }

    /// A registered model version's tags.
    pub async fn model_version_tags(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Vec<shipyard_core::entities::KeyValue>> {
        let answer =
            self.call(reqwest::Method::GET, "model-versions/get", json!({"name": model, "version": version})).await?;
        Ok(serde_json::from_value(answer["model_version"]["tags"].clone()).unwrap_or_default())
    }

    /// Uploads the files of the local folder `dir` (not its subfolders) into the folder `sub`
    /// of the artifact folder `location` (a model's), through the proxied artifact API;
    /// `record` last.
    pub async fn upload_beside(&self, location: &str, sub: &str, dir: &Path, record: &str) -> Result<usize> {
        let Tracking::Http(server) = self else { bail!("not an HTTP tracking URI") };
        let root = shipyard_core::artifact_path::ArtifactPath::from_proxied_uri(location)?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                files.push(entry.path());
            }
        }
        files.sort_by_key(|p| p.file_name().is_some_and(|n| n == record));
        for file in &files {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let path = format!("{root}/{sub}/{name}");
            let encoded: Vec<String> = path
                .split('/')
                .map(|s| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string())
                .collect();
            let route = format!("api/2.0/mlflow-artifacts/artifacts/{}", encoded.join("/"));
            let bytes = tokio::fs::read(file).await.with_context(|| format!("reading {}", file.display()))?;
            let response = server
                .request(reqwest::Method::PUT, &route)
                .body(bytes)
                .send()
                .await
                .with_context(|| format!("uploading {path}"))?;
            if !response.status().is_success() {
                bail!("uploading {path}: HTTP {}", response.status());
            }
        }
        Ok(files.len())
    }

    /// Sets a tag on a registered model version (MLflow's `model-versions/set-tag`).
    pub async fn set_model_version_tag(&self, model: &str, version: &str, key: &str, value: &str) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            "model-versions/set-tag",
            json!({"name": model, "version": version, "key": key, "value": value}),
        )
        .await?;
        Ok(())
    }
}

/// A pipeline run recorded through a tracking server's MLflow REST API (`pipeline run
/// --tracking-uri https://...`): the runner in `shipyard-pipeline` does the work; this only
/// carries each call to the server, with the caller's credentials and permissions.
pub struct ServerTracker(pub Server);

type Boxed<'a, T> = futures::future::BoxFuture<'a, shipyard_core::Result<T>>;

impl ServerTracker {
    async fn post(&self, route: &str, body: Value) -> shipyard_core::Result<Value> {
        self.0.post(&format!("api/2.0/mlflow/{route}"), &body).await.map_err(crate::client::core_error)
    }

    async fn get(&self, route: &str, query: &[(&str, &str)]) -> shipyard_core::Result<Value> {
        self.0.get(&format!("api/2.0/mlflow/{route}"), query).await.map_err(crate::client::core_error)
    }
}

fn read<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> shipyard_core::Result<T> {
    serde_json::from_value(value)
        .map_err(|e| shipyard_core::Error::Internal(format!("the server's {what} could not be read: {e}")))
}

impl shipyard_pipeline::RunReader for ServerTracker {
    fn run<'a>(&'a self, run_id: &'a str) -> Boxed<'a, shipyard_core::entities::Run> {
        Box::pin(async move { read(self.get("runs/get", &[("run_id", run_id)]).await?["run"].take(), "run") })
    }

    fn search<'a>(
        &'a self,
        experiment_ids: &'a [String],
        filter: &'a str,
        max_results: i64,
        order_by: &'a [String],
        page_token: Option<&'a str>,
    ) -> Boxed<'a, shipyard_store::tracking::Page<shipyard_core::entities::Run>> {
        Box::pin(async move {
            let mut body = json!({
                "experiment_ids": experiment_ids,
                "filter": filter,
                "max_results": max_results,
                "order_by": order_by,
                "run_view_type": "ACTIVE_ONLY",
            });
            if let Some(token) = page_token {
                body["page_token"] = json!(token);
            }
            let mut answer = self.post("runs/search", body).await?;
            let items = if answer["runs"].is_null() { Vec::new() } else { read(answer["runs"].take(), "runs")? };
            let next_page_token = answer["next_page_token"].as_str().filter(|t| !t.is_empty()).map(str::to_owned);
            Ok(shipyard_store::tracking::Page { items, next_page_token })
        })
    }

    fn experiment_ids(&self) -> Boxed<'_, Vec<String>> {
        Box::pin(async move {
            let body = json!({"max_results": 1000, "view_type": "ACTIVE_ONLY"});
            let answer = self.post("experiments/search", body).await?;
            Ok(answer["experiments"]
                .as_array()
                .map(|all| all.iter().filter_map(|e| e["experiment_id"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default())
        })
    }
}

impl shipyard_pipeline::Tracker for ServerTracker {
    fn experiment<'a>(&'a self, name: &'a str) -> Boxed<'a, String> {
        Box::pin(async move {
            let by_name = async || {
                let answer = self.get("experiments/get-by-name", &[("experiment_name", name)]).await?;
                Ok::<_, shipyard_core::Error>(answer["experiment"]["experiment_id"].as_str().unwrap_or("").to_owned())
            };
            match by_name().await {
                Ok(id) => Ok(id),
                Err(shipyard_core::Error::NotFound(_)) => {
                    match self.post("experiments/create", json!({ "name": name })).await {
                        Ok(answer) => Ok(answer["experiment_id"].as_str().unwrap_or("").to_owned()),
                        // Another run created it meanwhile.
                        Err(shipyard_core::Error::AlreadyExists(_)) => by_name().await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        })
    }

    fn create_run(&self, new: shipyard_store::tracking::NewRun) -> Boxed<'_, shipyard_core::entities::Run> {
        Box::pin(async move {
            let body = json!({
                "experiment_id": new.experiment_id,
                "user_id": new.user_id,
                "run_name": new.run_name,
                "start_time": new.start_time.unwrap_or_else(shipyard_core::entities::now_millis),
                "tags": new.tags,
            });
            read(self.post("runs/create", body).await?["run"].take(), "run")
        })
    }

    fn log_batch<'a>(
        &'a self,
        run_id: &'a str,
        metrics: Vec<shipyard_core::entities::Metric>,
        params: Vec<shipyard_core::entities::KeyValue>,
        tags: Vec<shipyard_core::entities::KeyValue>,
    ) -> Boxed<'a, ()> {
        Box::pin(async move {
            let body = json!({"run_id": run_id, "metrics": metrics, "params": params, "tags": tags});
            self.post("runs/log-batch", body).await.map(drop)
        })
    }

    fn set_tag<'a>(&'a self, run_id: &'a str, tag: shipyard_core::entities::KeyValue) -> Boxed<'a, ()> {
        Box::pin(async move {
            let body = json!({"run_id": run_id, "key": tag.key, "value": tag.value});
            self.post("runs/set-tag", body).await.map(drop)
        })
    }

    fn end_run<'a>(&'a self, run_id: &'a str, status: shipyard_core::entities::RunStatus) -> Boxed<'a, ()> {
        Box::pin(async move {
            let body = json!({"run_id": run_id, "status": status, "end_time": shipyard_core::entities::now_millis()});
            self.post("runs/update", body).await.map(drop)
        })
    }

    fn put_text<'a>(&'a self, run: &'a shipyard_core::entities::Run, path: &'a str, text: String) -> Boxed<'a, ()> {
        Box::pin(async move {
            let root = shipyard_core::artifact_path::ArtifactPath::from_proxied_uri(&run.info.artifact_uri)?;
            let full = format!("{root}/{path}");
            let encoded: Vec<String> = full
                .split('/')
                .map(|s| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string())
                .collect();
            let request = self
                .0
                .request(reqwest::Method::PUT, &format!("api/2.0/mlflow-artifacts/artifacts/{}", encoded.join("/")))
                .body(text);
            self.0.send(request, &format!("uploading {full}")).await.map(drop).map_err(crate::client::core_error)
        })
    }

    fn dataset_digest<'a>(&'a self, name: &'a str, version: Option<i64>) -> Boxed<'a, (i64, String)> {
        Box::pin(async move {
            let found = dataset_version(&self.0, name, version).await.map_err(crate::client::core_error)?;
            Ok((found.version, found.digest))
        })
    }
}

/// A dataset version from a server (`/api/shipyard/datasets/get`; the latest when `version` is
/// `None`).
pub async fn dataset_version(
    server: &Server,
    name: &str,
    version: Option<i64>,
) -> Result<shipyard_store::datasets::DatasetVersion> {
    let version = version.map(|v| v.to_string());
    let mut query = vec![("name", name)];
    if let Some(v) = &version {
        query.push(("version", v.as_str()));
    }
    let answer = server.get("api/shipyard/datasets/get", &query).await?;
    serde_json::from_value(answer["dataset_version"].clone()).context("reading the server's dataset version")
}
