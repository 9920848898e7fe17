//! Inside `shipyard server`: serve every registered model's `production` version, and follow
//! the alias when it moves.
//!
//! [`Catalog::sync`] reads the aliases from the store, copies each new version's files out of
//! the artifact store into a temporary folder, loads it on the blocking pool and swaps it in
//! (requests in flight finish on the version they started with). A version that fails to load
//! is logged, the previous one keeps serving, and the load is retried after a pause.
//! [`Catalog::watch`] repeats the sync every interval.
//!
//! Per-model settings come from the registered model's tags, read when a version is loaded:
//! `shipyard.serving.max_batch_rows`, `.max_batch_wait_ms`, `.max_concurrency`, `.max_queue`,
//! `.timeout_ms`, `.cache_entries` (numbers; others are logged and ignored).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shipyard_core::entities::KeyValue;
use shipyard_runtime::fetch::{self, ModelUri};
use shipyard_runtime::{EngineChoice, LoadedModel};
use shipyard_store::{ArtifactStore, Database};

use crate::{ModelSettings, ServedModel, ServingState};

/// How long a version that failed to load is left alone.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Where the served models come from.
pub struct Catalog {
    pub db: Database,
    pub artifacts: ArtifactStore,
    /// The alias whose version is served.
    pub alias: String,
    pub engine: EngineChoice,
    pub settings: ModelSettings,
    failed: HashMap<(String, String), Instant>,
}

/// What one sync changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub loaded: Vec<(String, String)>,
    pub removed: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl Catalog {
    pub fn new(
        db: Database,
        artifacts: ArtifactStore,
        alias: &str,
        engine: EngineChoice,
        settings: ModelSettings,
    ) -> Catalog {
        Catalog { db, artifacts, alias: alias.to_owned(), engine, settings, failed: HashMap::new() }
    }

    /// The `(model, version, tags)` the alias points at.
    async fn targets(&self) -> Result<Vec<(String, String, Vec<KeyValue>)>, shipyard_core::Error> {
        let mut targets = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.db.search_registered_models(None, Some(1000), &[], token.as_deref()).await?;
            for model in page.items {
                if let Some(alias) = model.aliases.iter().find(|a| a.alias == self.alias) {
                    targets.push((model.name.clone(), alias.version.clone(), model.tags.clone()));
                }
            }
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(targets),
            }
        }
    }

    /// Brings the served models in line with the store.
    pub async fn sync(&mut self, state: &ServingState) -> Result<SyncReport, shipyard_core::Error> {
        let targets = self.targets().await?;
        let mut report = SyncReport::default();
        for current in state.registry.current() {
            if !targets.iter().any(|(name, _, _)| *name == current.name) {
                state.registry.remove(&current.name);
                tracing::info!(model = %current.name, "no longer serving: the '{}' alias is gone", self.alias);
                report.removed.push(current.name.clone());
            }
        }
        for (name, version, tags) in targets {
            let serving = state.registry.get(&name, None).ok().and_then(|m| m.version.clone());
            if serving.as_deref() == Some(version.as_str()) {
                continue;
            }
            let key = (name.clone(), version.clone());
            if self.failed.get(&key).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
                continue;
            }
            match self.load(&name, &version, settings_from_tags(&self.settings, &name, &tags), &state.metrics).await {
                Ok(model) => {
                    state.registry.insert(model);
                    self.failed.remove(&key);
                    tracing::info!(model = %name, version = %version, "serving ({} alias)", self.alias);
                    report.loaded.push(key);
                }
                Err(message) => {
                    tracing::warn!(model = %name, version = %version, "cannot serve: {message}");
                    self.failed.insert(key.clone(), Instant::now());
                    report.failed.push(key);
                }
            }
        }
        Ok(report)
    }

    async fn load(
        &self,
        name: &str,
        version: &str,
        settings: ModelSettings,
        metrics: &crate::Metrics,
    ) -> Result<Arc<ServedModel>, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary folder: {e}"))?;
        let uri = ModelUri::Version { name: name.to_owned(), version: version.to_owned() };
        let (path, _) =
            fetch::fetch_model(&uri, &self.db, &self.artifacts, dir.path()).await.map_err(|e| e.to_string())?;
        let engine = self.engine;
        // Loading compiles the model: CPU work, off the reactor. The files can go afterwards.
        let model = tokio::task::spawn_blocking(move || LoadedModel::load(&path, engine))
            .await
            .map_err(|e| format!("the loading task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        drop(dir);
        Ok(ServedModel::new(name.to_owned(), Some(version.to_owned()), model, settings, None, metrics))
    }

    /// Syncs now and then every `interval`, until the task is dropped.
    pub fn watch(mut self, state: Arc<ServingState>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = self.sync(&state).await {
                    tracing::warn!("reading the served models from the store: {e}");
                }
            }
        })
    }
}

/// The tag prefix of per-model serving settings.
pub const SETTINGS_TAG_PREFIX: &str = "shipyard.serving.";

/// `defaults`, with the registered model's `shipyard.serving.*` tags applied.
pub fn settings_from_tags(defaults: &ModelSettings, model: &str, tags: &[KeyValue]) -> ModelSettings {
    let mut settings = defaults.clone();
    for tag in tags {
        let Some(key) = tag.key.strip_prefix(SETTINGS_TAG_PREFIX) else { continue };
        let Ok(n) = tag.value.trim().parse::<u64>() else {
            tracing::warn!(model, "ignoring tag {}={:?}: not a whole number", tag.key, tag.value);
            continue;
        };
        let count = usize::try_from(n).unwrap_or(usize::MAX);
        match key {
            "max_batch_rows" => settings.max_batch_rows = count,
            "max_batch_wait_ms" => settings.max_batch_wait = Duration::from_millis(n),
            "max_concurrency" => settings.max_concurrency = count.max(1),
            "max_queue" => settings.max_queue = count,
            "timeout_ms" => settings.timeout = Duration::from_millis(n.max(1)),
            "cache_entries" => settings.cache_entries = count,
            other => tracing::warn!(model, "ignoring tag {SETTINGS_TAG_PREFIX}{other}: not a serving setting"),
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_override_the_serving_settings() {
        let tag = |k: &str, v: &str| KeyValue { key: k.into(), value: v.into() };
        let tags = [
            tag("shipyard.serving.max_batch_rows", "64"),
            tag("shipyard.serving.timeout_ms", "250"),
            tag("shipyard.serving.cache_entries", "lots"),
            tag("owner", "team-a"),
        ];
        let defaults = ModelSettings::default();
        let settings = settings_from_tags(&defaults, "m", &tags);
        assert_eq!(settings.max_batch_rows, 64);
        assert_eq!(settings.timeout, Duration::from_millis(250));
        assert_eq!(settings.cache_entries, defaults.cache_entries);
    }
}
