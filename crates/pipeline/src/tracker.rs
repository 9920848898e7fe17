//! Where a pipeline run is recorded and read back: the stores opened in this process
//! ([`Stores`]), or a tracking server (the `shipyard` binary implements [`Tracker`] over MLflow's
//! REST API, so `pipeline run --tracking-uri https://...` records through the server with the
//! caller's permissions). The runner only ever goes through these traits, so both record the
//! same runs, tags and artifacts.

use futures::future::BoxFuture;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::entities::{KeyValue, Metric, Run, RunStatus, ViewType, now_millis};
use shipyard_core::{Error, Result};
use shipyard_store::tracking::{NewRun, Page};
use shipyard_store::{ArtifactStore, Database};

/// Reading runs: what `pipeline status` needs.
pub trait RunReader: Send + Sync {
    /// One run.
    fn run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Run>>;
    /// Active runs of `experiment_ids` matching `filter` (MLflow's search), a page at a time.
    fn search<'a>(
        &'a self,
        experiment_ids: &'a [String],
        filter: &'a str,
        max_results: i64,
        order_by: &'a [String],
        page_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page<Run>>>;
    /// The ids of the active experiments (at most 1,000).
    fn experiment_ids(&self) -> BoxFuture<'_, Result<Vec<String>>>;
}

/// Recording runs: what `pipeline run` writes.
pub trait Tracker: RunReader {
    /// The id of the experiment named `name`, created when missing.
    fn experiment<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String>>;
    fn create_run(&self, new: NewRun) -> BoxFuture<'_, Result<Run>>;
    fn log_batch<'a>(
        &'a self,
        run_id: &'a str,
        metrics: Vec<Metric>,
        params: Vec<KeyValue>,
        tags: Vec<KeyValue>,
    ) -> BoxFuture<'a, Result<()>>;
    fn set_tag<'a>(&'a self, run_id: &'a str, tag: KeyValue) -> BoxFuture<'a, Result<()>>;
    /// Ends a run with `status`, now.
    fn end_run<'a>(&'a self, run_id: &'a str, status: RunStatus) -> BoxFuture<'a, Result<()>>;
    /// Writes a text file under the run's artifacts.
    fn put_text<'a>(&'a self, run: &'a Run, path: &'a str, text: String) -> BoxFuture<'a, Result<()>>;
    /// A dataset version's number and digest (the latest when `version` is `None`).
    fn dataset_digest<'a>(&'a self, name: &'a str, version: Option<i64>) -> BoxFuture<'a, Result<(i64, String)>>;
}

impl RunReader for Database {
    fn run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Run>> {
        Box::pin(self.get_run(run_id))
    }

    fn search<'a>(
        &'a self,
        experiment_ids: &'a [String],
        filter: &'a str,
        max_results: i64,
        order_by: &'a [String],
        page_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page<Run>>> {
        Box::pin(self.search_runs(
            experiment_ids,
            Some(filter),
            ViewType::ActiveOnly,
            Some(max_results),
            order_by,
            page_token,
        ))
    }

    fn experiment_ids(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let page = self.search_experiments(ViewType::ActiveOnly, Some(1000), None, &[], None).await?;
            Ok(page.items.into_iter().map(|e| e.experiment_id).collect())
        })
    }
}

/// The metadata and artifact stores of this process.
#[derive(Clone)]
pub struct Stores {
    pub db: Database,
    pub artifacts: ArtifactStore,
}

impl RunReader for Stores {
    fn run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Run>> {
        self.db.run(run_id)
    }

    fn search<'a>(
        &'a self,
        experiment_ids: &'a [String],
        filter: &'a str,
        max_results: i64,
        order_by: &'a [String],
        page_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page<Run>>> {
        self.db.search(experiment_ids, filter, max_results, order_by, page_token)
    }

    fn experiment_ids(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        self.db.experiment_ids()
    }
}

impl Tracker for Stores {
    fn experiment<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let db = &self.db;
            match db.get_experiment_by_name(name).await {
                Ok(e) => Ok(e.experiment_id),
                Err(Error::NotFound(_)) => match db.create_experiment(name, None, &[]).await {
                    Ok(id) => Ok(id),
                    // Another run created it meanwhile.
                    Err(Error::AlreadyExists(_)) => Ok(db.get_experiment_by_name(name).await?.experiment_id),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        })
    }

    fn create_run(&self, new: NewRun) -> BoxFuture<'_, Result<Run>> {
        Box::pin(self.db.create_run(new))
    }

    fn log_batch<'a>(
        &'a self,
        run_id: &'a str,
        metrics: Vec<Metric>,
        params: Vec<KeyValue>,
        tags: Vec<KeyValue>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.db.log_batch(run_id, metrics, params, tags))
    }

    fn set_tag<'a>(&'a self, run_id: &'a str, tag: KeyValue) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.db.set_tag(run_id, tag))
    }

    fn end_run<'a>(&'a self, run_id: &'a str, status: RunStatus) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.db.update_run(run_id, Some(status), Some(now_millis()), None).await?;
            Ok(())
        })
    }

    fn put_text<'a>(&'a self, run: &'a Run, path: &'a str, text: String) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let root = ArtifactPath::from_proxied_uri(&run.info.artifact_uri)?;
            let full = ArtifactPath::parse(&format!("{root}/{path}"))?;
            let body = futures::stream::once(async move { Ok::<_, Error>(bytes::Bytes::from(text)) });
            self.artifacts.put(&full, Box::pin(body)).await?;
            Ok(())
        })
    }

    fn dataset_digest<'a>(&'a self, name: &'a str, version: Option<i64>) -> BoxFuture<'a, Result<(i64, String)>> {
        Box::pin(async move {
            let found = self.db.get_dataset_version(name, version).await?;
            Ok((found.version, found.digest))
        })
    }
}
