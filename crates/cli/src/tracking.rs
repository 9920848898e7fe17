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

/// Where tracking data is read and written.
pub enum Tracking {
    /// The metadata store, opened in this process.
    Store(Database),
    /// A tracking server.
    Http {
        /// Reused HTTP client.
        client: reqwest::Client,
        /// `http://host:port`, without a trailing slash.
        base: String,
    },
}

impl Tracking {
    /// Opens `uri`, or the default SQLite store under `home`.
    pub async fn open(uri: Option<&str>, home: &Path) -> Result<Self> {
        match uri {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                shipyard_store::artifacts::ensure_tls_provider();
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(60))
                    .build()
                    .context("building the HTTP client")?;
                Ok(Tracking::Http { client, base: u.trim_end_matches('/').to_owned() })
            }
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
        let Tracking::Http { client, base } = self else { bail!("not an HTTP tracking URI") };
        let url = format!("{base}/api/2.0/mlflow/{path}");
        let request = if method == reqwest::Method::GET {
            let query: Vec<(String, String)> = body
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                        .collect()
                })
                .unwrap_or_default();
            client.get(&url).query(&query)
        } else {
            client.request(method, &url).json(&body)
        };
        let response = request.send().await.with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let payload: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = payload["error_code"].as_str().unwrap_or("UNKNOWN");
            let message = payload["message"].as_str().unwrap_or("");
            bail!("{code}: {message} (HTTP {status})");
        }
        Ok(payload)
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
            Tracking::Http { .. } => {
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
            Tracking::Http { .. } => {
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
            Tracking::Http { .. } => {
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
            Tracking::Http { .. } => {
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
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    outln!("{}", line(headers.iter().map(|h| (*h).to_owned()).collect()));
    for row in rows {
        outln!("{}", line(row.clone()));
    }
}
