//! Tracking: experiments, runs and what runs log (metrics, params, tags, datasets, models).
//!
//! The operations and their checks follow MLflow's SQL store (`sqlalchemy_store.py`), so that the
//! `mlflow` client sees the same results and the same errors. Every write is one transaction:
//! a `log-batch` lands whole or not at all. Each public method checks its input first, then runs
//! its statements in one [`Database::read`] or [`Database::write`].

use std::collections::HashMap;

use shipyard_core::entities::{
    Dataset, DatasetInput, Experiment, KeyValue, LifecycleStage, Metric, ModelInput, ModelOutput, Run, RunData,
    RunInfo, RunInputs, RunOutputs, RunStatus, new_run_id, now_millis,
};
use shipyard_core::validation::{self, KeyKind};
use shipyard_core::{Error, Result};

use crate::db::{Conn, Database, DbError};
use crate::sql::{Arg, Row, Sql};

/// The logical artifact location of an experiment. Artifacts are always proxied through the
/// server (`mlflow-artifacts:`), so the physical destination can change without touching rows.
pub fn experiment_artifact_location(experiment_id: i64) -> String {
    format!("mlflow-artifacts:/{experiment_id}")
}

/// Parses an experiment id as MLflow's SQL store does.
pub(crate) fn parse_experiment_id(id: &str) -> Result<i64> {
    id.trim().parse::<i64>().map_err(|_| Error::invalid(format!("Invalid experiment ID: '{id}'")))
}

/// What a client sends to create a run.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// Experiment id; the Default experiment when empty.
    pub experiment_id: String,
    /// Who starts it.
    pub user_id: String,
    /// Display name; taken from the `mlflow.runName` tag or generated when absent.
    pub run_name: Option<String>,
    /// Start time in ms; now when absent.
    pub start_time: Option<i64>,
    /// Initial tags.
    pub tags: Vec<KeyValue>,
}

/// A page of results and the token of the next page, if any.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The results.
    pub items: Vec<T>,
    /// Opaque token for the next page.
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` fetched items: the extra item only says there is more.
    pub(crate) fn from_overfetch(mut items: Vec<T>, offset: i64, limit: i64) -> Self {
        let next_page_token = if items.len() as i64 > limit {
            items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            Some(page_token(offset.saturating_add(limit)))
        } else {
            None
        };
        Page { items, next_page_token }
    }
}

/// Encodes an offset as a page token (base64 of `{"offset": N}`, as MLflow).
pub(crate) fn page_token(offset: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

/// Decodes a page token into an offset; an empty token is offset 0.
pub(crate) fn parse_page_token(token: Option<&str>) -> Result<i64> {
    use base64::Engine;
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let bad = || Error::invalid(format!("Invalid page token, could not base64-decode: '{token}'"));
    let bytes = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| bad())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        Error::invalid(format!("Invalid page token, decoded value={}", String::from_utf8_lossy(&bytes)))
    })?;
    match value.get("offset").and_then(serde_json::Value::as_i64) {
        Some(o) if o >= 0 => Ok(o),
        _ => Err(Error::invalid(format!(
            "Invalid page token, parsed value={value} does not contain a non-negative 'offset'"
        ))),
    }
}

/// A run's stored row, before its data is attached.
pub(crate) struct RunRow {
    pub(crate) info: RunInfo,
    pub(crate) experiment_id: i64,
    /// The integer key per-run tables use.
    pub(crate) key: i64,
}

pub(crate) const RUN_COLUMNS: &str = "runs.run_key, runs.run_uuid, runs.experiment_id, runs.name, runs.user_id, runs.status, \
     runs.start_time, runs.end_time, runs.artifact_uri, runs.lifecycle_stage";

pub(crate) fn run_row(row: &Row) -> Result<RunRow> {
    let run_id: String = row.get("run_uuid")?;
    let experiment_id: i64 = row.get("experiment_id")?;
    let status: String = row.get("status")?;
    let stage: String = row.get("lifecycle_stage")?;
    Ok(RunRow {
        info: RunInfo {
            run_uuid: run_id.clone(),
            experiment_id: experiment_id.to_string(),
            run_name: row.get("name")?,
            user_id: row.get("user_id")?,
            status: RunStatus::parse(&status)
                .ok_or_else(|| Error::Internal(format!("unknown run status '{status}' in the database")))?,
            start_time: row.get("start_time")?,
            end_time: row.get("end_time")?,
            artifact_uri: row.get("artifact_uri")?,
            lifecycle_stage: LifecycleStage::parse(&stage)
                .ok_or_else(|| Error::Internal(format!("unknown lifecycle stage '{stage}' in the database")))?,
            run_id,
        },
        experiment_id,
        key: row.get("run_key")?,
    })
}

/// Converts a metric value to its stored form: NaN is stored as 0 with `is_nan`, infinities as
/// the largest finite doubles (SQL cannot hold them), as MLflow does.
pub(crate) fn stored_metric_value(v: f64) -> (f64, i64) {
    if v.is_nan() {
        (0.0, 1)
    } else if v.is_infinite() {
        (if v > 0.0 { f64::MAX } else { f64::MIN }, 0)
    } else {
        (v, 0)
    }
}

pub(crate) fn metric_from_row(row: &Row) -> Result<Metric> {
    let is_nan: i64 = row.get("is_nan")?;
    let value: f64 = row.get("value")?;
    Ok(Metric {
        key: row.get("key")?,
        value: if is_nan != 0 { f64::NAN } else { value },
        timestamp: row.get("timestamp")?,
        step: row.get("step")?,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    })
}

/// Groups rows of `(<owner>, key, value)` by owner.
pub(crate) fn group_key_values<K>(rows: &[Row], owner: &str) -> Result<HashMap<K, Vec<KeyValue>>>
where
    K: crate::sql::FromValue + Eq + std::hash::Hash,
{
    let mut out: HashMap<K, Vec<KeyValue>> = HashMap::new();
    for row in rows {
        out.entry(row.get(owner)?).or_default().push(KeyValue { key: row.get("key")?, value: row.get("value")? });
    }
    Ok(out)
}

/// Random run names as MLflow's client-less default: `adjective-noun-NNN`.
fn generate_run_name() -> String {
    const ADJECTIVES: &[&str] = &[
        "able", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fair", "fast", "gentle", "glad",
        "grand", "keen", "kind", "lucky", "merry", "neat", "noble", "proud", "quick", "quiet", "rare", "sharp", "shy",
        "smart", "swift", "tidy", "vast", "warm", "wise", "zesty",
    ];
    const NOUNS: &[&str] = &[
        "ant", "bass", "bat", "bear", "bee", "cat", "colt", "crab", "crow", "deer", "dove", "duck", "eel", "finch",
        "fox", "goat", "hare", "hawk", "lark", "lynx", "mink", "mole", "moth", "newt", "owl", "ram", "seal", "slug",
        "snail", "swan", "toad", "wolf",
    ];
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    format!(
        "{}-{}-{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        NOUNS[b[1] as usize % NOUNS.len()],
        u16::from_le_bytes([b[2], b[3]]) % 1000
    )
}

fn experiment_not_found(id: &str) -> Error {
    Error::not_found(format!("No Experiment with id={id} exists"))
}

fn run_not_found(run_id: &str) -> Error {
    Error::not_found(format!("Run with id={run_id} not found"))
}

/// Reads experiments selected by `sql` (which selects `e.*` or `*`), with their tags.
pub(crate) async fn experiments_where(c: &mut Conn<'_>, sql: Sql) -> Result<Vec<Experiment>> {
    let rows = c.fetch_all(sql).await?;
    let mut experiments = Vec::with_capacity(rows.len());
    for row in &rows {
        let stage: String = row.get("lifecycle_stage")?;
        experiments.push(Experiment {
            experiment_id: row.get::<i64>("experiment_id")?.to_string(),
            name: row.get("name")?,
            artifact_location: row.get("artifact_location")?,
            lifecycle_stage: LifecycleStage::parse(&stage)
                .ok_or_else(|| Error::Internal(format!("unknown lifecycle stage '{stage}'")))?,
            last_update_time: row.get("last_update_time")?,
            creation_time: row.get("creation_time")?,
            tags: Vec::new(),
            workspace: "default",
        });
    }
    if experiments.is_empty() {
        return Ok(experiments);
    }
    let mut tags_sql = c.sql("SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id IN (");
    let ids = tags_sql.args(experiments.iter().map(|e| e.experiment_id.parse::<i64>().unwrap_or(-1)));
    tags_sql.push(&ids).push(") ORDER BY key");
    let mut by_id: HashMap<String, Vec<KeyValue>> = HashMap::new();
    for row in &c.fetch_all(tags_sql).await? {
        by_id
            .entry(row.get::<i64>("experiment_id")?.to_string())
            .or_default()
            .push(KeyValue { key: row.get("key")?, value: row.get("value")? });
    }
    for e in &mut experiments {
        e.tags = by_id.remove(&e.experiment_id).unwrap_or_default();
    }
    Ok(experiments)
}

/// The experiment with id `id`, if any.
pub(crate) async fn experiment_by_id(c: &mut Conn<'_>, id: i64) -> Result<Option<Experiment>> {
    let sql = c.stmt("SELECT * FROM experiments WHERE experiment_id = $1", [id.into()]);
    Ok(experiments_where(c, sql).await?.pop())
}

/// The run row with id `run_id`, or `NotFound`.
pub(crate) async fn run_by_id(c: &mut Conn<'_>, run_id: &str, lock: bool) -> Result<RunRow> {
    let lock = if lock { c.dialect().for_update() } else { "" };
    let sql = c.stmt(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_uuid = $1{lock}"), [run_id.into()]);
    let row = c.fetch_optional(sql).await?.ok_or_else(|| run_not_found(run_id))?;
    run_row(&row)
}

/// Reads a run inside a write transaction, locking it on PostgreSQL, and checks it is active.
pub(crate) async fn active_run_for_update(c: &mut Conn<'_>, run_id: &str) -> Result<RunRow> {
    let row = run_by_id(c, run_id, true).await?;
    if row.info.lifecycle_stage != LifecycleStage::Active {
        return Err(Error::invalid(format!(
            "The run {run_id} must be in the 'active' state. Current state is {}.",
            row.info.lifecycle_stage.as_str()
        )));
    }
    Ok(row)
}

/// Attaches metrics, params, tags, inputs and outputs to run rows, in a fixed number of queries
/// whatever the number of runs.
pub(crate) async fn attach_run_data(c: &mut Conn<'_>, rows: Vec<RunRow>) -> Result<Vec<Run>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<i64> = rows.iter().map(|r| r.key).collect();
    let by_runs = |c: &Conn<'_>, head: &str, tail: &str| {
        let mut sql = c.sql(head);
        let list = sql.args(keys.iter().copied());
        sql.push(&list).push(tail);
        sql
    };
    let params =
        c.fetch_all(by_runs(c, "SELECT run_key, key, value FROM params WHERE run_key IN (", ") ORDER BY key")).await?;
    let tags =
        c.fetch_all(by_runs(c, "SELECT run_key, key, value FROM tags WHERE run_key IN (", ") ORDER BY key")).await?;
    let metrics = c
        .fetch_all(by_runs(
            c,
            "SELECT run_key, key, value, is_nan, timestamp, step FROM latest_metrics WHERE run_key IN (",
            ") ORDER BY key",
        ))
        .await?;
    let datasets = c
        .fetch_all(by_runs(
            c,
            "SELECT i.run_key, i.dataset_uuid, d.name, d.digest, d.source_type, d.source, d.schema_json, d.profile_json \
             FROM run_dataset_inputs i JOIN datasets d ON d.dataset_uuid = i.dataset_uuid WHERE i.run_key IN (",
            ") ORDER BY d.name, d.digest",
        ))
        .await?;
    let input_tags = c
        .fetch_all(by_runs(
            c,
            "SELECT run_key, dataset_uuid, key, value FROM run_dataset_input_tags WHERE run_key IN (",
            ") ORDER BY key",
        ))
        .await?;
    let model_inputs =
        c.fetch_all(by_runs(c, "SELECT run_key, model_id FROM run_model_inputs WHERE run_key IN (", ")")).await?;
    let model_outputs = c
        .fetch_all(by_runs(c, "SELECT run_key, model_id, step FROM run_model_outputs WHERE run_key IN (", ")"))
        .await?;

    let mut params: HashMap<i64, _> = group_key_values(&params, "run_key")?;
    let mut tags: HashMap<i64, _> = group_key_values(&tags, "run_key")?;
    let mut metrics_by: HashMap<i64, Vec<Metric>> = HashMap::new();
    for row in &metrics {
        metrics_by.entry(row.get("run_key")?).or_default().push(metric_from_row(row)?);
    }
    let mut input_tags_by: HashMap<(i64, String), Vec<KeyValue>> = HashMap::new();
    for row in &input_tags {
        input_tags_by
            .entry((row.get("run_key")?, row.get("dataset_uuid")?))
            .or_default()
            .push(KeyValue { key: row.get("key")?, value: row.get("value")? });
    }
    let mut datasets_by: HashMap<i64, Vec<DatasetInput>> = HashMap::new();
    for row in &datasets {
        let run: i64 = row.get("run_key")?;
        let dataset_uuid: String = row.get("dataset_uuid")?;
        let tags = input_tags_by.remove(&(run, dataset_uuid)).unwrap_or_default();
        datasets_by.entry(run).or_default().push(DatasetInput {
            tags,
            dataset: Dataset {
                name: row.get("name")?,
                digest: row.get("digest")?,
                source_type: row.get("source_type")?,
                source: row.get("source")?,
                schema: row.get("schema_json")?,
                profile: row.get("profile_json")?,
            },
        });
    }
    let mut model_inputs_by: HashMap<i64, Vec<ModelInput>> = HashMap::new();
    for row in &model_inputs {
        model_inputs_by.entry(row.get("run_key")?).or_default().push(ModelInput { model_id: row.get("model_id")? });
    }
    let mut model_outputs_by: HashMap<i64, Vec<ModelOutput>> = HashMap::new();
    for row in &model_outputs {
        model_outputs_by
            .entry(row.get("run_key")?)
            .or_default()
            .push(ModelOutput { model_id: row.get("model_id")?, step: row.get("step")? });
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let id = r.key;
            Run {
                info: r.info,
                data: RunData {
                    metrics: metrics_by.remove(&id).unwrap_or_default(),
                    params: params.remove(&id).unwrap_or_default(),
                    tags: tags.remove(&id).unwrap_or_default(),
                },
                inputs: RunInputs {
                    dataset_inputs: datasets_by.remove(&id).unwrap_or_default(),
                    model_inputs: model_inputs_by.remove(&id).unwrap_or_default(),
                },
                outputs: RunOutputs { model_outputs: model_outputs_by.remove(&id).unwrap_or_default() },
            }
        })
        .collect())
}

/// Whether an insert failed on a unique constraint; other failures pass through.
pub(crate) fn unique_violation<T>(r: Result<T, DbError>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(DbError::Unique(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Database {
    // ----- experiments -----

    /// Creates an experiment and returns its id.
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KeyValue],
    ) -> Result<String> {
        validation::validate_name("experiment", name)?;
        let location = artifact_location.filter(|l| !l.is_empty()).map(str::to_owned);
        if let Some(loc) = &location {
            validate_artifact_location(loc)?;
        }
        for tag in tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::check_length("experiment tag value", &tag.value, validation::MAX_EXPERIMENT_TAG_VAL_LENGTH)?;
        }
        let (name, tags) = (name.to_owned(), tags.to_vec());
        self.write(move |c| {
            Box::pin(async move {
                let now = now_millis();
                let insert = c.stmt(
                    "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
                     VALUES ($1, $2, 'active', $3, $3) RETURNING experiment_id",
                    [name.as_str().into(), location.clone().unwrap_or_default().into(), now.into()],
                );
                let Some(row) = unique_violation(c.fetch_one(insert).await)? else {
                    return Err(Error::AlreadyExists(format!("Experiment(name={name}) already exists.")));
                };
                let id: i64 = row.get("experiment_id")?;
                if location.is_none() {
                    let update = c.stmt(
                        "UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2",
                        [experiment_artifact_location(id).into(), id.into()],
                    );
                    c.execute(update).await?;
                }
                for tag in &tags {
                    upsert_experiment_tag(c, id, tag).await?;
                }
                Ok(id.to_string())
            })
        })
        .await
    }

    /// Gets an experiment by id.
    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment> {
        let id = parse_experiment_id(experiment_id)?;
        let shown = experiment_id.to_owned();
        self.read(move |c| {
            Box::pin(async move { experiment_by_id(c, id).await?.ok_or_else(|| experiment_not_found(&shown)) })
        })
        .await
    }

    /// Gets an experiment by name (active or deleted).
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        let name = name.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT * FROM experiments WHERE name = $1", [name.as_str().into()]);
                experiments_where(c, sql)
                    .await?
                    .pop()
                    .ok_or_else(|| Error::not_found(format!("Could not find experiment with name '{name}'")))
            })
        })
        .await
    }

    /// Renames an experiment.
    pub async fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> Result<()> {
        validation::validate_name("experiment", new_name)?;
        let id = parse_experiment_id(experiment_id)?;
        let (shown, new_name) = (experiment_id.to_owned(), new_name.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let experiment = experiment_by_id(c, id).await?.ok_or_else(|| experiment_not_found(&shown))?;
                if experiment.lifecycle_stage != LifecycleStage::Active {
                    return Err(Error::invalid(format!(
                        "Cannot rename a non-active experiment. The experiment {shown} must be in the 'active' state. Current state is deleted."
                    )));
                }
                let update = c.stmt(
                    "UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
                    [new_name.as_str().into(), now_millis().into(), id.into()],
                );
                if unique_violation(c.execute(update).await)?.is_none() {
                    return Err(Error::AlreadyExists(format!("Experiment(name={new_name}) already exists.")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Soft-deletes an experiment and its runs.
    pub async fn delete_experiment(&self, experiment_id: &str) -> Result<()> {
        self.set_experiment_stage(experiment_id, LifecycleStage::Deleted).await
    }

    /// Restores a soft-deleted experiment and the runs deleted with it.
    pub async fn restore_experiment(&self, experiment_id: &str) -> Result<()> {
        self.set_experiment_stage(experiment_id, LifecycleStage::Active).await
    }

    async fn set_experiment_stage(&self, experiment_id: &str, stage: LifecycleStage) -> Result<()> {
        let id = parse_experiment_id(experiment_id)?;
        if id == 0 && stage == LifecycleStage::Deleted {
            return Err(Error::invalid(
                "Cannot delete the default experiment '0'. This is an internally reserved experiment.",
            ));
        }
        let shown = experiment_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let experiment = experiment_by_id(c, id).await?.ok_or_else(|| experiment_not_found(&shown))?;
                if experiment.lifecycle_stage == stage {
                    return Err(Error::invalid(format!(
                        "Cannot {} experiment {shown}: it is already {}.",
                        if stage == LifecycleStage::Deleted { "delete" } else { "restore" },
                        stage.as_str()
                    )));
                }
                let now = now_millis();
                let update = c.stmt(
                    "UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE experiment_id = $3",
                    [stage.as_str().into(), now.into(), id.into()],
                );
                c.execute(update).await?;
                // Runs follow their experiment; a restore brings back the runs the delete took.
                let (from, deleted_time) = match stage {
                    LifecycleStage::Deleted => ("active", Arg::Int(now)),
                    LifecycleStage::Active => ("deleted", Arg::NullInt),
                };
                let runs = c.stmt(
                    "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE experiment_id = $3 AND lifecycle_stage = $4",
                    [stage.as_str().into(), deleted_time, id.into(), from.into()],
                );
                c.execute(runs).await?;
                Ok(())
            })
        })
        .await
    }

    /// Sets an experiment tag.
    pub async fn set_experiment_tag(&self, experiment_id: &str, tag: &KeyValue) -> Result<()> {
        validation::validate_key(KeyKind::Tag, &tag.key)?;
        validation::check_length("experiment tag value", &tag.value, validation::MAX_EXPERIMENT_TAG_VAL_LENGTH)?;
        let id = parse_experiment_id(experiment_id)?;
        let (shown, tag) = (experiment_id.to_owned(), tag.clone());
        self.write(move |c| {
            Box::pin(async move {
                let experiment = experiment_by_id(c, id).await?.ok_or_else(|| experiment_not_found(&shown))?;
                check_experiment_active(&experiment)?;
                upsert_experiment_tag(c, id, &tag).await
            })
        })
        .await
    }

    /// Deletes an experiment tag.
    pub async fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> Result<()> {
        let id = parse_experiment_id(experiment_id)?;
        let (shown, key) = (experiment_id.to_owned(), key.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let experiment = experiment_by_id(c, id).await?.ok_or_else(|| experiment_not_found(&shown))?;
                check_experiment_active(&experiment)?;
                let delete = c.stmt(
                    "DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2",
                    [id.into(), key.as_str().into()],
                );
                if c.execute(delete).await? == 0 {
                    return Err(Error::not_found(format!("No tag with name: {key} in experiment with id {shown}")));
                }
                Ok(())
            })
        })
        .await
    }

    // ----- runs -----

    /// Creates a run.
    pub async fn create_run(&self, new: NewRun) -> Result<Run> {
        let experiment_shown = if new.experiment_id.is_empty() { "0".to_owned() } else { new.experiment_id.clone() };
        let experiment_id = parse_experiment_id(&experiment_shown)?;
        for tag in &new.tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_tag_value(&tag.key, &tag.value)?;
        }
        let tag_name = new.tags.iter().rev().find(|t| t.key == "mlflow.runName").map(|t| t.value.clone());
        let run_name = match (new.run_name.filter(|n| !n.is_empty()), tag_name) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::invalid(format!(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='{a}', mlflow.runName='{b}')."
                )));
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => generate_run_name(),
        };
        let run_id = new_run_id();
        let start_time = new.start_time.unwrap_or_else(now_millis);
        let mut tags: Vec<KeyValue> = new.tags.into_iter().filter(|t| t.key != "mlflow.runName").collect();
        tags.push(KeyValue::new("mlflow.runName", run_name.clone()));
        let user_id = new.user_id;
        self.write(move |c| {
            Box::pin(async move {
                let experiment =
                    experiment_by_id(c, experiment_id).await?.ok_or_else(|| experiment_not_found(&experiment_shown))?;
                check_experiment_active(&experiment)?;
                let artifact_uri = format!("{}/{run_id}/artifacts", experiment.artifact_location.trim_end_matches('/'));
                let insert = c.stmt(
                    "INSERT INTO runs (run_uuid, experiment_id, name, user_id, status, start_time, artifact_uri, lifecycle_stage) \
                     VALUES ($1, $2, $3, $4, 'RUNNING', $5, $6, 'active')",
                    [
                        run_id.as_str().into(),
                        experiment_id.into(),
                        run_name.as_str().into(),
                        user_id.as_str().into(),
                        start_time.into(),
                        artifact_uri.as_str().into(),
                    ],
                );
                c.execute(insert).await?;
                let row = run_by_id(c, &run_id, false).await?;
                upsert_tags(c, row.key, &tags).await?;
                Ok(attach_run_data(c, vec![row]).await?.remove(0))
            })
        })
        .await
    }

    /// Gets a run with its data, inputs and outputs.
    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        let run_id = run_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let row = run_by_id(c, &run_id, false).await?;
                Ok(attach_run_data(c, vec![row]).await?.remove(0))
            })
        })
        .await
    }

    /// Updates a run's status, end time and name; returns the new info.
    pub async fn update_run(
        &self,
        run_id: &str,
        status: Option<RunStatus>,
        end_time: Option<i64>,
        run_name: Option<&str>,
    ) -> Result<RunInfo> {
        let run_id = run_id.to_owned();
        let run_name = run_name.filter(|n| !n.is_empty()).map(str::to_owned);
        self.write(move |c| {
            Box::pin(async move {
                let row = active_run_for_update(c, &run_id).await?;
                let status = status.unwrap_or(row.info.status);
                let end_time = end_time.or(row.info.end_time);
                let name = run_name.clone().unwrap_or_else(|| row.info.run_name.clone());
                let update = c.stmt(
                    "UPDATE runs SET status = $1, end_time = $2, name = $3 WHERE run_uuid = $4",
                    [status.as_str().into(), end_time.into(), name.as_str().into(), run_id.as_str().into()],
                );
                c.execute(update).await?;
                if run_name.is_some() {
                    upsert_tags(c, row.key, &[KeyValue::new("mlflow.runName", name.clone())]).await?;
                }
                Ok(RunInfo { status, end_time, run_name: name, ..row.info })
            })
        })
        .await
    }

    /// Soft-deletes a run.
    pub async fn delete_run(&self, run_id: &str) -> Result<()> {
        self.set_run_stage(run_id, LifecycleStage::Deleted).await
    }

    /// Restores a soft-deleted run.
    pub async fn restore_run(&self, run_id: &str) -> Result<()> {
        self.set_run_stage(run_id, LifecycleStage::Active).await
    }

    async fn set_run_stage(&self, run_id: &str, stage: LifecycleStage) -> Result<()> {
        let run_id = run_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let deleted_time = if stage == LifecycleStage::Deleted { Arg::Int(now_millis()) } else { Arg::NullInt };
                let update = c.stmt(
                    "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE run_uuid = $3",
                    [stage.as_str().into(), deleted_time, run_id.as_str().into()],
                );
                if c.execute(update).await? == 0 {
                    return Err(run_not_found(&run_id));
                }
                Ok(())
            })
        })
        .await
    }

    /// Logs one metric value.
    pub async fn log_metric(&self, run_id: &str, metric: Metric) -> Result<()> {
        self.log_batch(run_id, vec![metric], Vec::new(), Vec::new()).await
    }

    /// Logs one param.
    pub async fn log_param(&self, run_id: &str, param: KeyValue) -> Result<()> {
        self.log_batch(run_id, Vec::new(), vec![param], Vec::new()).await
    }

    /// Sets one tag.
    pub async fn set_tag(&self, run_id: &str, tag: KeyValue) -> Result<()> {
        self.log_batch(run_id, Vec::new(), Vec::new(), vec![tag]).await
    }

    /// Deletes a tag of a run.
    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        let (run_id, key) = (run_id.to_owned(), key.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let run = active_run_for_update(c, &run_id).await?;
                let delete =
                    c.stmt("DELETE FROM tags WHERE run_key = $1 AND key = $2", [run.key.into(), key.as_str().into()]);
                if c.execute(delete).await? == 0 {
                    return Err(Error::not_found(format!("No tag with name: {key} in run with id {run_id}")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Logs metrics, params and tags in one transaction. Params may be logged again with the same
    /// value but never changed; metric values that repeat exactly are stored once; the latest
    /// value of each metric is kept up to date.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<KeyValue>,
        tags: Vec<KeyValue>,
    ) -> Result<()> {
        validation::validate_batch_sizes(metrics.len(), params.len(), tags.len())?;
        for m in &metrics {
            validation::validate_key(KeyKind::Metric, &m.key)?;
        }
        for p in &params {
            validation::validate_key(KeyKind::Param, &p.key)?;
            validation::validate_param_value(&p.key, &p.value)?;
        }
        for t in &tags {
            validation::validate_key(KeyKind::Tag, &t.key)?;
            validation::validate_tag_value(&t.key, &t.value)?;
        }
        // The same param twice in one batch must agree.
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for p in &params {
            if let Some(prev) = seen.insert(&p.key, &p.value)
                && prev != p.value
            {
                return Err(Error::invalid(format!(
                    "Duplicate parameter keys have been submitted: [{}]. Please ensure the request contains only one param value per param key.",
                    p.key
                )));
            }
        }
        let run_id = run_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let run = active_run_for_update(c, &run_id).await?;
                if !params.is_empty() {
                    insert_params(c, run.key, &run_id, &params).await?;
                }
                if !tags.is_empty() {
                    upsert_tags(c, run.key, &tags).await?;
                    if let Some(name) = tags.iter().rev().find(|t| t.key == "mlflow.runName") {
                        let rename = c.stmt(
                            "UPDATE runs SET name = $1 WHERE run_uuid = $2",
                            [name.value.as_str().into(), run_id.as_str().into()],
                        );
                        c.execute(rename).await?;
                    }
                }
                if !metrics.is_empty() {
                    insert_metrics(c, run.key, &metrics).await?;
                    crate::logged_models::insert_model_metrics(c, &run_id, &metrics).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Records datasets (and logged models) as inputs of a run.
    pub async fn log_inputs(&self, run_id: &str, datasets: Vec<DatasetInput>, models: Vec<ModelInput>) -> Result<()> {
        for input in &datasets {
            let d = &input.dataset;
            validation::check_length("dataset name", &d.name, validation::MAX_DATASET_NAME_SIZE)?;
            validation::check_length("dataset digest", &d.digest, validation::MAX_DATASET_DIGEST_SIZE)?;
            validation::check_length("dataset source", &d.source, validation::MAX_DATASET_SOURCE_SIZE)?;
            validation::check_length(
                "dataset schema",
                d.schema.as_deref().unwrap_or(""),
                validation::MAX_DATASET_SCHEMA_SIZE,
            )?;
            validation::check_length(
                "dataset profile",
                d.profile.as_deref().unwrap_or(""),
                validation::MAX_DATASET_PROFILE_SIZE,
            )?;
            for t in &input.tags {
                validation::check_length("input tag key", &t.key, validation::MAX_INPUT_TAG_KEY_SIZE)?;
                validation::check_length("input tag value", &t.value, validation::MAX_INPUT_TAG_VALUE_SIZE)?;
            }
        }
        let run_id = run_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let run = active_run_for_update(c, &run_id).await?;
                for input in &datasets {
                    let dataset_uuid = dataset_uuid(c, run.experiment_id, &input.dataset).await?;
                    let link = c.stmt(
                        "INSERT INTO run_dataset_inputs (run_key, dataset_uuid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        [run.key.into(), dataset_uuid.as_str().into()],
                    );
                    // As MLflow: the tags of an input are those it was first logged with.
                    if c.execute(link).await? > 0 && !input.tags.is_empty() {
                        let rows = input
                            .tags
                            .iter()
                            .map(|t| {
                                [
                                    Arg::from(run.key),
                                    dataset_uuid.as_str().into(),
                                    t.key.as_str().into(),
                                    t.value.as_str().into(),
                                ]
                            })
                            .collect();
                        insert_rows(
                            c,
                            "INSERT INTO run_dataset_input_tags (run_key, dataset_uuid, key, value) VALUES ",
                            " ON CONFLICT DO NOTHING",
                            rows,
                        )
                        .await?;
                    }
                }
                let rows = models.iter().map(|m| [Arg::from(run.key), m.model_id.as_str().into()]).collect();
                insert_rows(
                    c,
                    "INSERT INTO run_model_inputs (run_key, model_id) VALUES ",
                    " ON CONFLICT DO NOTHING",
                    rows,
                )
                .await
            })
        })
        .await
    }

    /// Records logged models as outputs of a run.
    pub async fn log_outputs(&self, run_id: &str, models: Vec<ModelOutput>) -> Result<()> {
        let run_id = run_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let run = active_run_for_update(c, &run_id).await?;
                let rows =
                    models.iter().map(|m| [Arg::from(run.key), m.model_id.as_str().into(), m.step.into()]).collect();
                insert_rows(
                    c,
                    "INSERT INTO run_model_outputs (run_key, model_id, step) VALUES ",
                    " ON CONFLICT (run_key, model_id) DO UPDATE SET step = excluded.step",
                    rows,
                )
                .await
            })
        })
        .await
    }

    /// The values of one metric of a run, in step then time order, a page at a time.
    pub async fn get_metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<Metric>> {
        let offset = parse_page_token(page_token)?;
        let limit = max_results.unwrap_or(i64::MAX / 2);
        if limit <= 0 {
            return Err(Error::invalid(format!(
                "Invalid value {limit} for parameter 'max_results' supplied. It must be a positive integer"
            )));
        }
        let (run_id, key) = (run_id.to_owned(), key.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let run = run_by_id(c, &run_id, false).await?;
                let sql = c.stmt(
                    "SELECT key, value, is_nan, timestamp, step FROM metrics WHERE run_key = $1 AND key = $2 \
                     ORDER BY step, timestamp, value LIMIT $3 OFFSET $4",
                    [run.key.into(), key.as_str().into(), limit.saturating_add(1).into(), offset.into()],
                );
                let items = c.fetch_all(sql).await?.iter().map(metric_from_row).collect::<Result<Vec<_>>>()?;
                Ok(Page::from_overfetch(items, offset, limit))
            })
        })
        .await
    }
}

fn check_experiment_active(experiment: &Experiment) -> Result<()> {
    if experiment.lifecycle_stage != LifecycleStage::Active {
        return Err(Error::invalid(format!(
            "The experiment {} must be in the 'active' state. Current state is {}.",
            experiment.experiment_id,
            experiment.lifecycle_stage.as_str()
        )));
    }
    Ok(())
}

/// Refuses experiment artifact locations that would make the server or a client write where it
/// must not (MLflow advisories CVE-2023-1176, CVE-2024-1483, CVE-2024-1594).
fn validate_artifact_location(location: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("Invalid artifact location '{location}': {why}")));
    if location.starts_with("runs:") || location.starts_with("models:") {
        return bad("'runs:' and 'models:' URIs are not artifact locations");
    }
    if location.contains('#') || location.contains('?') {
        return bad("fragments and query strings are not allowed");
    }
    if location.split(['/', '\\']).any(|seg| seg == "..") {
        return bad("'..' segments are not allowed");
    }
    validation::check_length("artifact_location", location, 4096)
}

async fn upsert_experiment_tag(c: &mut Conn<'_>, experiment_id: i64, tag: &KeyValue) -> Result<()> {
    let upsert = c.stmt(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
         ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
        [experiment_id.into(), tag.key.as_str().into(), tag.value.as_str().into()],
    );
    c.execute(upsert).await?;
    Ok(())
}

/// The id of a dataset of an experiment, registering it on first use.
async fn dataset_uuid(c: &mut Conn<'_>, experiment_id: i64, d: &Dataset) -> Result<String> {
    let find = c.stmt(
        "SELECT dataset_uuid FROM datasets WHERE experiment_id = $1 AND name = $2 AND digest = $3",
        [experiment_id.into(), d.name.as_str().into(), d.digest.as_str().into()],
    );
    if let Some(row) = c.fetch_optional(find).await? {
        return row.get("dataset_uuid");
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let insert = c.stmt(
        "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, source_type, source, schema_json, profile_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            id.as_str().into(),
            experiment_id.into(),
            d.name.as_str().into(),
            d.digest.as_str().into(),
            d.source_type.as_str().into(),
            d.source.as_str().into(),
            d.schema.clone().into(),
            d.profile.clone().into(),
        ],
    );
    c.execute(insert).await?;
    Ok(id)
}

/// Inserts `rows` with multi-row `INSERT` statements: `head` ends with `VALUES `, `tail` is the
/// conflict clause. Statements stay under both dialects' limits on bound values.
pub(crate) async fn insert_rows<const N: usize>(
    c: &mut Conn<'_>,
    head: &str,
    tail: &str,
    rows: Vec<[Arg; N]>,
) -> Result<()> {
    let per_statement = (30_000 / N).min(1000);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut sql = c.sql(head);
        for (i, row) in rows.by_ref().take(per_statement).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push_tuple(row);
        }
        sql.push(tail);
        c.execute(sql).await?;
    }
    Ok(())
}

/// Sets run tags, replacing values of existing keys (last one wins within the list).
pub(crate) async fn upsert_tags(c: &mut Conn<'_>, run_key: i64, tags: &[KeyValue]) -> Result<()> {
    let mut last: Vec<&KeyValue> = Vec::new();
    for t in tags {
        last.retain(|x| x.key != t.key);
        last.push(t);
    }
    let rows = last.iter().map(|t| [Arg::from(run_key), t.key.as_str().into(), t.value.as_str().into()]).collect();
    insert_rows(
        c,
        "INSERT INTO tags (run_key, key, value) VALUES ",
        " ON CONFLICT (run_key, key) DO UPDATE SET value = excluded.value",
        rows,
    )
    .await
}

/// Inserts params, refusing to change the value of one already logged.
async fn insert_params(c: &mut Conn<'_>, run_key: i64, run_id: &str, params: &[KeyValue]) -> Result<()> {
    let mut sql = c.sql("SELECT key, value FROM params WHERE run_key = ");
    let r = sql.arg(run_key);
    sql.push(&r).push(" AND key IN (");
    let keys = sql.args(params.iter().map(|p| p.key.as_str()));
    sql.push(&keys).push(")");
    let mut existing: HashMap<String, String> = HashMap::new();
    for row in &c.fetch_all(sql).await? {
        existing.insert(row.get("key")?, row.get("value")?);
    }
    for p in params {
        if let Some(old) = existing.get(&p.key)
            && *old != p.value
        {
            return Err(Error::invalid(format!(
                "Changing param values is not allowed. Param with key='{}' was already logged with value='{old}' \
                 for run ID='{run_id}'. Attempted logging new value '{}'.",
                p.key, p.value
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let rows = params
        .iter()
        .filter(|p| !existing.contains_key(&p.key) && seen.insert(p.key.as_str()))
        .map(|p| [Arg::from(run_key), p.key.as_str().into(), p.value.as_str().into()])
        .collect();
    insert_rows(c, "INSERT INTO params (run_key, key, value) VALUES ", " ON CONFLICT DO NOTHING", rows).await
}

/// Appends metric values to the history (exact repeats are dropped) and moves each metric's
/// latest value forward: the greatest (step, timestamp, value) wins, NaN counting as 0.
async fn insert_metrics(c: &mut Conn<'_>, run_key: i64, metrics: &[Metric]) -> Result<()> {
    // (step, timestamp, stored value, is_nan) of the batch's latest value per key.
    type Latest = (i64, i64, f64, i64);
    let mut latest: HashMap<&str, Latest> = HashMap::new();
    let mut rows = Vec::with_capacity(metrics.len());
    for m in metrics {
        let (value, is_nan) = stored_metric_value(m.value);
        rows.push([
            Arg::from(run_key),
            m.key.as_str().into(),
            value.into(),
            is_nan.into(),
            m.timestamp.into(),
            m.step.into(),
        ]);
        let candidate = (m.step, m.timestamp, value, is_nan);
        latest
            .entry(m.key.as_str())
            .and_modify(|cur| {
                if (candidate.0, candidate.1, candidate.2) > (cur.0, cur.1, cur.2) {
                    *cur = candidate;
                }
            })
            .or_insert(candidate);
    }
    insert_rows(
        c,
        "INSERT INTO metrics (run_key, key, value, is_nan, timestamp, step) VALUES ",
        " ON CONFLICT DO NOTHING",
        rows,
    )
    .await?;
    let latest_rows = latest
        .into_iter()
        .map(|(key, (step, ts, value, is_nan))| {
            [Arg::from(run_key), key.into(), value.into(), is_nan.into(), ts.into(), step.into()]
        })
        .collect();
    insert_rows(
        c,
        "INSERT INTO latest_metrics (run_key, key, value, is_nan, timestamp, step) VALUES ",
        " ON CONFLICT (run_key, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, \
         timestamp = excluded.timestamp, step = excluded.step \
         WHERE (excluded.step, excluded.timestamp, excluded.value) > \
               (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)",
        latest_rows,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        assert_eq!(parse_page_token(Some(&page_token(42))).unwrap(), 42);
        assert_eq!(parse_page_token(None).unwrap(), 0);
        assert_eq!(parse_page_token(Some("")).unwrap(), 0);
        assert!(parse_page_token(Some("!!!")).is_err());
        assert!(parse_page_token(Some("e30=")).is_err()); // {}
    }

    #[test]
    fn metric_values_are_stored_as_mlflow_stores_them() {
        assert_eq!(stored_metric_value(f64::NAN), (0.0, 1));
        assert_eq!(stored_metric_value(f64::INFINITY), (f64::MAX, 0));
        assert_eq!(stored_metric_value(f64::NEG_INFINITY), (f64::MIN, 0));
        assert_eq!(stored_metric_value(0.5), (0.5, 0));
    }

    #[test]
    fn generated_run_names_look_like_mlflow_names() {
        let n = generate_run_name();
        assert_eq!(n.split('-').count(), 3, "{n}");
    }

    #[test]
    fn overfetched_pages_say_when_there_is_more() {
        let p = Page::from_overfetch(vec![1, 2, 3], 10, 2);
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(parse_page_token(p.next_page_token.as_deref()).unwrap(), 12);
        assert!(Page::from_overfetch(vec![1, 2], 0, 2).next_page_token.is_none());
    }
}
