//! The seed's addressing: `POST /predict/{run_id}` serves the model the run logged as `model`
//! (`runs:/{run_id}/model`) when no served model or deployment has that name. Loaded on the
//! first request (others for the same run wait for that load rather than starting their own),
//! then kept warm; at most `capacity` such models, the least recently used leaving first. A run
//! that cannot be served is remembered for [`RETRY_AFTER`], so a client retrying in a loop does
//! not reload a model on every request.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use lru::LruCache;
use shipyard_core::Error;

use crate::error::{ErrorKind, ServeError};
use crate::loader::Loader;
use crate::{ModelSettings, ServedModel, ServingState};

/// Copies a run's model into a folder; the path to load.
pub type FetchRun = Arc<dyn Fn(String, PathBuf) -> BoxFuture<'static, Result<PathBuf, Error>> + Send + Sync>;
/// Keeps a new conversion of a run's model (the folder's files) with the model in the store.
pub type KeepRunConversion = Arc<dyn Fn(String, PathBuf) -> BoxFuture<'static, Result<(), Error>> + Send + Sync>;

/// How long a run that could not be served is not tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Whether `name` reads as a run id (32 lowercase hexadecimal digits, as MLflow and Shipyard
/// make them).
pub fn is_run_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Models of runs, served by run id.
pub struct RunModels {
    fetch: FetchRun,
    keep: KeepRunConversion,
    loader: Loader,
    settings: ModelSettings,
    models: Mutex<LruCache<String, Arc<ServedModel>>>,
    failed: Mutex<HashMap<String, (Instant, ServeError)>>,
    /// One load at a time: loads are rare, and a request for a run being loaded waits for it.
    loading: tokio::sync::Mutex<()>,
}

impl RunModels {
    pub fn new(
        fetch: FetchRun,
        keep: KeepRunConversion,
        loader: Loader,
        settings: ModelSettings,
        capacity: usize,
    ) -> RunModels {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        RunModels {
            fetch,
            keep,
            loader,
            settings,
            models: Mutex::new(LruCache::new(capacity)),
            failed: Mutex::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self, run_id: &str) -> Option<Arc<ServedModel>> {
        self.models.lock().unwrap_or_else(|e| e.into_inner()).get(run_id).cloned()
    }

    fn recent_failure(&self, run_id: &str) -> Option<ServeError> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.get(run_id).filter(|(at, _)| at.elapsed() < RETRY_AFTER).map(|(_, e)| e.clone())
    }

    /// The run's model, loading it if needed.
    pub async fn get(&self, state: &ServingState, run_id: &str) -> Result<Arc<ServedModel>, ServeError> {
        if let Some(model) = self.cached(run_id) {
            return Ok(model);
        }
        let _loading = self.loading.lock().await;
        if let Some(model) = self.cached(run_id) {
            return Ok(model);
        }
        if let Some(e) = self.recent_failure(run_id) {
            return Err(e);
        }
        match self.load(state, run_id).await {
            Ok(model) => {
                self.models.lock().unwrap_or_else(|e| e.into_inner()).put(run_id.to_owned(), model.clone());
                tracing::info!(run_id, engine = model.engine.name(), "serving the model of run {run_id}");
                Ok(model)
            }
            Err(e) => {
                tracing::warn!(run_id, "cannot serve the model of run {run_id}: {}", e.message);
                let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                failed.retain(|_, (at, _)| at.elapsed() < RETRY_AFTER);
                failed.insert(run_id.to_owned(), (Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    async fn load(&self, state: &ServingState, run_id: &str) -> Result<Arc<ServedModel>, ServeError> {
        let dir = tempfile::tempdir().map_err(|e| ServeError::internal(format!("creating a temporary folder: {e}")))?;
        let path = (self.fetch)(run_id.to_owned(), dir.path().to_path_buf()).await.map_err(|e| match e {
            Error::NotFound(_) | Error::InvalidParameter(_) => ServeError::not_found(format!(
                "no model or deployment is named '{run_id}', and no run {run_id} with a model logged as '{}' was found: {e}",
                crate::catalog::RUN_MODEL_PATH
            )),
            other => ServeError { kind: ErrorKind::Overloaded, message: format!("fetching the model of run {run_id}: {other}") },
        })?;
        let loaded = self
            .loader
            .load(path, Some(dir), &format!("run {run_id}"))
            .await
            .map_err(|e| ServeError::internal(format!("the model of run {run_id} cannot be served: {e}")))?;
        if let Some(conversion) = &loaded.new_conversion
            && let Err(e) = (self.keep)(run_id.to_owned(), conversion.path().to_path_buf()).await
        {
            tracing::warn!(run_id, "cannot keep the conversion with the run's model: {e}");
        }
        let served =
            ServedModel::new(run_id.to_owned(), None, loaded.engine, self.settings.clone(), None, &state.metrics);
        let _ = served.engine_choice.set(loaded.choice);
        served.warm_up().await;
        Ok(served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_32_lowercase_hex_digits() {
        assert!(is_run_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_run_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_run_id("churn"));
        assert!(!is_run_id("0123456789abcdef0123456789abcde"));
    }
}
