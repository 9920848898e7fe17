//! Tracking: experiments, runs and what runs log (metrics, params, tags, datasets, models).
//!
//! The operations and their checks follow MLflow's SQL store (`sqlalchemy_store.py`), so that the
//! `mlflow` client sees the same results and the same errors. Every write is one transaction:
//! a `log-batch` lands whole or not at all.

use std::collections::HashMap;

use shipyard_core::entities::{
    Dataset, DatasetInput, Experiment, KeyValue, LifecycleStage, Metric, ModelInput, ModelOutput,
    Run, RunData, RunInfo, RunInputs, RunOutputs, RunStatus, new_run_id, now_millis,
};
use shipyard_core::validation::{self, KeyKind};
use shipyard_core::{Error, Result};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{Database, WriteTx, db_error, is_unique_violation};
use crate::sql::{Arg, Sql, placeholders};

/// The logical artifact location of an experiment. Artifacts are always proxied through the
/// server (`mlflow-artifacts:`), so the physical destination can change without touching rows.
pub fn experiment_artifact_location(experiment_id: i64) -> String {
    format!("mlflow-artifacts:/{experiment_id}")
}

/// Reads a column, turning a type mismatch into an internal error.
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name)
        .map_err(|e| Error::Internal(format!("reading column {name}: {e}")))
}

/// Parses an experiment id as MLflow's SQL store does.
pub(crate) fn parse_experiment_id(id: &str) -> Result<i64> {
    id.trim()
        .parse::<i64>()
        .map_err(|_| Error::invalid(format!("Invalid experiment ID: '{id}'")))
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
    let bad = || {
        Error::invalid(format!(
            "Invalid page token, could not base64-decode: '{token}'"
        ))
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        Error::invalid(format!(
            "Invalid page token, decoded value={}",
            String::from_utf8_lossy(&bytes)
        ))
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
}

pub(crate) const RUN_COLUMNS: &str = "runs.run_uuid, runs.experiment_id, runs.name, runs.user_id, runs.status, runs.start_time, \
     runs.end_time, runs.artifact_uri, runs.lifecycle_stage";

pub(crate) fn run_row(row: &AnyRow) -> Result<RunRow> {
    let run_id: String = col(row, "run_uuid")?;
    let experiment_id: i64 = col(row, "experiment_id")?;
    let status: String = col(row, "status")?;
    let stage: String = col(row, "lifecycle_stage")?;
    Ok(RunRow {
        info: RunInfo {
            run_uuid: run_id.clone(),
            experiment_id: experiment_id.to_string(),
            run_name: col(row, "name")?,
            user_id: col(row, "user_id")?,
            status: RunStatus::parse(&status).ok_or_else(|| {
                Error::Internal(format!("unknown run status '{status}' in the database"))
            })?,
            start_time: col(row, "start_time")?,
            end_time: col(row, "end_time")?,
            artifact_uri: col(row, "artifact_uri")?,
            lifecycle_stage: LifecycleStage::parse(&stage).ok_or_else(|| {
                Error::Internal(format!("unknown lifecycle stage '{stage}' in the database"))
            })?,
            run_id,
        },
        experiment_id,
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

pub(crate) fn metric_from_row(row: &AnyRow) -> Result<Metric> {
    let is_nan: i64 = col(row, "is_nan")?;
    let value: f64 = col(row, "value")?;
    Ok(Metric {
        key: col(row, "key")?,
        value: if is_nan != 0 { f64::NAN } else { value },
        timestamp: col(row, "timestamp")?,
        step: col(row, "step")?,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    })
}

/// Groups rows of `(run_uuid, key, value)` by run.
fn group_key_values(rows: &[AnyRow]) -> Result<HashMap<String, Vec<KeyValue>>> {
    let mut out: HashMap<String, Vec<KeyValue>> = HashMap::new();
    for row in rows {
        let run: String = col(row, "run_uuid")?;
        out.entry(run).or_default().push(KeyValue {
            key: col(row, "key")?,
            value: col(row, "value")?,
        });
    }
    Ok(out)
}

/// Random run names as MLflow's client-less default: `adjective-noun-NNN`.
fn generate_run_name() -> String {
    const ADJECTIVES: &[&str] = &[
        "able", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fair", "fast",
        "gentle", "glad", "grand", "keen", "kind", "lucky", "merry", "neat", "noble", "proud",
        "quick", "quiet", "rare", "sharp", "shy", "smart", "swift", "tidy", "vast", "warm", "wise",
        "zesty",
    ];
    const NOUNS: &[&str] = &[
        "ant", "bass", "bat", "bear", "bee", "cat", "colt", "crab", "crow", "deer", "dove", "duck",
        "eel", "finch", "fox", "goat", "hare", "hawk", "lark", "lynx", "mink", "mole", "moth",
        "newt", "owl", "ram", "seal", "slug", "snail", "swan", "toad", "wolf",
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
        if let Some(loc) = artifact_location.filter(|l| !l.is_empty()) {
            validate_artifact_location(loc)?;
        }
        for tag in tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::check_length(
                "experiment tag value",
                &tag.value,
                validation::MAX_EXPERIMENT_TAG_VAL_LENGTH,
            )?;
        }
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time)
             VALUES ($1, $2, 'active', $3, $3) RETURNING experiment_id",
        )
        .bind(name)
        .bind(artifact_location.unwrap_or(""))
        .bind(now)
        .fetch_one(&mut *tx.tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => col(&row, "experiment_id")?,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::AlreadyExists(format!(
                    "Experiment(name={name}) already exists."
                )));
            }
            Err(e) => return Err(db_error(e)),
        };
        if artifact_location.is_none_or(str::is_empty) {
            sqlx::query("UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2")
                .bind(experiment_artifact_location(id))
                .bind(id)
                .execute(&mut *tx.tx)
                .await
                .map_err(db_error)?;
        }
        for tag in tags {
            upsert_experiment_tag(&mut tx, id, tag).await?;
        }
        tx.commit().await?;
        Ok(id.to_string())
    }

    pub(crate) async fn experiments_by(&self, sql: Sql) -> Result<Vec<Experiment>> {
        let rows = sql.query().fetch_all(&self.pool).await.map_err(db_error)?;
        let mut experiments = Vec::with_capacity(rows.len());
        for row in &rows {
            let stage: String = col(row, "lifecycle_stage")?;
            experiments.push(Experiment {
                experiment_id: col::<i64>(row, "experiment_id")?.to_string(),
                name: col(row, "name")?,
                artifact_location: col(row, "artifact_location")?,
                lifecycle_stage: LifecycleStage::parse(&stage)
                    .ok_or_else(|| Error::Internal(format!("unknown lifecycle stage '{stage}'")))?,
                last_update_time: col(row, "last_update_time")?,
                creation_time: col(row, "creation_time")?,
                tags: Vec::new(),
                workspace: "default",
            });
        }
        if experiments.is_empty() {
            return Ok(experiments);
        }
        let mut tags_sql = Sql::new(
            self.dialect,
            "SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id IN (",
        );
        let ids = tags_sql.args(
            experiments
                .iter()
                .map(|e| e.experiment_id.parse::<i64>().unwrap_or(-1)),
        );
        tags_sql.push(&ids).push(") ORDER BY key");
        let tag_rows = tags_sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut by_id: HashMap<String, Vec<KeyValue>> = HashMap::new();
        for row in &tag_rows {
            by_id
                .entry(col::<i64>(row, "experiment_id")?.to_string())
                .or_default()
                .push(KeyValue {
                    key: col(row, "key")?,
                    value: col(row, "value")?,
                });
        }
        for e in &mut experiments {
            e.tags = by_id.remove(&e.experiment_id).unwrap_or_default();
        }
        Ok(experiments)
    }

    /// Gets an experiment by id.
    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment> {
        let id = parse_experiment_id(experiment_id)?;
        let mut sql = Sql::new(
            self.dialect,
            "SELECT * FROM experiments WHERE experiment_id = ",
        );
        let p = sql.arg(id);
        sql.push(&p);
        self.experiments_by(sql).await?.pop().ok_or_else(|| {
            Error::not_found(format!("No Experiment with id={experiment_id} exists"))
        })
    }

    /// Gets an experiment by name (active or deleted).
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        let mut sql = Sql::new(self.dialect, "SELECT * FROM experiments WHERE name = ");
        let p = sql.arg(name);
        sql.push(&p);
        self.experiments_by(sql).await?.pop().ok_or_else(|| {
            Error::not_found(format!("Could not find experiment with name '{name}'"))
        })
    }

    /// Renames an experiment.
    pub async fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> Result<()> {
        validation::validate_name("experiment", new_name)?;
        let experiment = self.get_experiment(experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid(format!(
                "Cannot rename a non-active experiment. The experiment {experiment_id} must be in the 'active' state. Current state is deleted."
            )));
        }
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
        )
        .bind(new_name)
        .bind(now_millis())
        .bind(parse_experiment_id(experiment_id)?)
        .execute(&mut *tx.tx)
        .await;
        match r {
            Ok(_) => tx.commit().await,
            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists(format!(
                "Experiment(name={new_name}) already exists."
            ))),
            Err(e) => Err(db_error(e)),
        }
    }

    /// Soft-deletes an experiment and its runs.
    pub async fn delete_experiment(&self, experiment_id: &str) -> Result<()> {
        self.set_experiment_stage(experiment_id, LifecycleStage::Deleted)
            .await
    }

    /// Restores a soft-deleted experiment and the runs deleted with it.
    pub async fn restore_experiment(&self, experiment_id: &str) -> Result<()> {
        self.set_experiment_stage(experiment_id, LifecycleStage::Active)
            .await
    }

    async fn set_experiment_stage(&self, experiment_id: &str, stage: LifecycleStage) -> Result<()> {
        let id = parse_experiment_id(experiment_id)?;
        let experiment = self.get_experiment(experiment_id).await?;
        if id == 0 && stage == LifecycleStage::Deleted {
            return Err(Error::invalid(
                "Cannot delete the default experiment '0'. This is an internally reserved experiment.",
            ));
        }
        if experiment.lifecycle_stage == stage {
            return Err(Error::invalid(format!(
                "Cannot {} experiment {experiment_id}: it is already {}.",
                if stage == LifecycleStage::Deleted {
                    "delete"
                } else {
                    "restore"
                },
                stage.as_str()
            )));
        }
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE experiment_id = $3")
            .bind(stage.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        // Runs follow their experiment; a restore brings back the runs the delete took.
        let (from, deleted_time) = match stage {
            LifecycleStage::Deleted => ("active", Some(now)),
            LifecycleStage::Active => ("deleted", None),
        };
        sqlx::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE experiment_id = $3 AND lifecycle_stage = $4")
            .bind(stage.as_str())
            .bind(deleted_time)
            .bind(id)
            .bind(from)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        tx.commit().await
    }

    /// Sets an experiment tag.
    pub async fn set_experiment_tag(&self, experiment_id: &str, tag: &KeyValue) -> Result<()> {
        validation::validate_key(KeyKind::Tag, &tag.key)?;
        validation::check_length(
            "experiment tag value",
            &tag.value,
            validation::MAX_EXPERIMENT_TAG_VAL_LENGTH,
        )?;
        let experiment = self.get_experiment(experiment_id).await?;
        check_experiment_active(&experiment)?;
        let mut tx = self.begin_write().await?;
        upsert_experiment_tag(&mut tx, parse_experiment_id(experiment_id)?, tag).await?;
        tx.commit().await
    }

    /// Deletes an experiment tag.
    pub async fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> Result<()> {
        let experiment = self.get_experiment(experiment_id).await?;
        check_experiment_active(&experiment)?;
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2")
            .bind(parse_experiment_id(experiment_id)?)
            .bind(key)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "No tag with name: {key} in experiment with id {experiment_id}"
            )));
        }
        tx.commit().await
    }

    // ----- runs -----

    /// Creates a run.
    pub async fn create_run(&self, new: NewRun) -> Result<Run> {
        let experiment_id = if new.experiment_id.is_empty() {
            "0".to_owned()
        } else {
            new.experiment_id.clone()
        };
        let experiment = self.get_experiment(&experiment_id).await?;
        check_experiment_active(&experiment)?;
        for tag in &new.tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_tag_value(&tag.key, &tag.value)?;
        }
        let tag_name = new
            .tags
            .iter()
            .rev()
            .find(|t| t.key == "mlflow.runName")
            .map(|t| t.value.clone());
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
        let artifact_uri = format!(
            "{}/{run_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let start_time = new.start_time.unwrap_or_else(now_millis);
        let mut tags: Vec<KeyValue> = new
            .tags
            .into_iter()
            .filter(|t| t.key != "mlflow.runName")
            .collect();
        tags.push(KeyValue::new("mlflow.runName", run_name.clone()));
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO runs (run_uuid, experiment_id, name, user_id, status, start_time, artifact_uri, lifecycle_stage)
             VALUES ($1, $2, $3, $4, 'RUNNING', $5, $6, 'active')",
        )
        .bind(&run_id)
        .bind(parse_experiment_id(&experiment_id)?)
        .bind(&run_name)
        .bind(&new.user_id)
        .bind(start_time)
        .bind(&artifact_uri)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        upsert_tags(&mut tx, &run_id, &tags).await?;
        tx.commit().await?;
        self.get_run(&run_id).await
    }

    /// Gets a run with its data, inputs and outputs.
    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        let row = self.run_row(run_id).await?;
        Ok(self.attach_run_data(vec![row]).await?.remove(0))
    }

    pub(crate) async fn run_row(&self, run_id: &str) -> Result<RunRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE run_uuid = $1"
        )))
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(format!("Run with id={run_id} not found")))?;
        run_row(&row)
    }

    /// Attaches metrics, params, tags, inputs and outputs to run rows, in a fixed number of
    /// queries whatever the number of runs.
    pub(crate) async fn attach_run_data(&self, rows: Vec<RunRow>) -> Result<Vec<Run>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = rows.iter().map(|r| r.info.run_id.as_str()).collect();
        let in_list = placeholders(self.dialect, 1, ids.len());
        let fetch = |sql: String| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &ids {
                q = q.bind(id.to_string());
            }
            q.fetch_all(&self.pool)
        };
        let params = fetch(format!(
            "SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({in_list}) ORDER BY key"
        ))
        .await
        .map_err(db_error)?;
        let tags = fetch(format!(
            "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({in_list}) ORDER BY key"
        ))
        .await
        .map_err(db_error)?;
        let metrics = fetch(format!(
            "SELECT run_uuid, key, value, is_nan, timestamp, step FROM latest_metrics WHERE run_uuid IN ({in_list}) ORDER BY key"
        ))
        .await
        .map_err(db_error)?;
        let datasets = fetch(format!(
            "SELECT i.run_uuid, i.dataset_uuid, d.name, d.digest, d.source_type, d.source, d.schema_json, d.profile_json
             FROM run_dataset_inputs i JOIN datasets d ON d.dataset_uuid = i.dataset_uuid
             WHERE i.run_uuid IN ({in_list}) ORDER BY d.name, d.digest"
        ))
        .await
        .map_err(db_error)?;
        let input_tags = fetch(format!(
            "SELECT run_uuid, dataset_uuid, key, value FROM run_dataset_input_tags WHERE run_uuid IN ({in_list}) ORDER BY key"
        ))
        .await
        .map_err(db_error)?;
        let model_inputs = fetch(format!(
            "SELECT run_uuid, model_id FROM run_model_inputs WHERE run_uuid IN ({in_list})"
        ))
        .await
        .map_err(db_error)?;
        let model_outputs = fetch(format!(
            "SELECT run_uuid, model_id, step FROM run_model_outputs WHERE run_uuid IN ({in_list})"
        ))
        .await
        .map_err(db_error)?;

        let mut params = group_key_values(&params)?;
        let mut tags = group_key_values(&tags)?;
        let mut metrics_by: HashMap<String, Vec<Metric>> = HashMap::new();
        for row in &metrics {
            metrics_by
                .entry(col(row, "run_uuid")?)
                .or_default()
                .push(metric_from_row(row)?);
        }
        let mut input_tags_by: HashMap<(String, String), Vec<KeyValue>> = HashMap::new();
        for row in &input_tags {
            input_tags_by
                .entry((col(row, "run_uuid")?, col(row, "dataset_uuid")?))
                .or_default()
                .push(KeyValue {
                    key: col(row, "key")?,
                    value: col(row, "value")?,
                });
        }
        let mut datasets_by: HashMap<String, Vec<DatasetInput>> = HashMap::new();
        for row in &datasets {
            let run: String = col(row, "run_uuid")?;
            let dataset_uuid: String = col(row, "dataset_uuid")?;
            let tags = input_tags_by
                .remove(&(run.clone(), dataset_uuid))
                .unwrap_or_default();
            datasets_by.entry(run).or_default().push(DatasetInput {
                tags,
                dataset: Dataset {
                    name: col(row, "name")?,
                    digest: col(row, "digest")?,
                    source_type: col(row, "source_type")?,
                    source: col(row, "source")?,
                    schema: col(row, "schema_json")?,
                    profile: col(row, "profile_json")?,
                },
            });
        }
        let mut model_inputs_by: HashMap<String, Vec<ModelInput>> = HashMap::new();
        for row in &model_inputs {
            model_inputs_by
                .entry(col(row, "run_uuid")?)
                .or_default()
                .push(ModelInput {
                    model_id: col(row, "model_id")?,
                });
        }
        let mut model_outputs_by: HashMap<String, Vec<ModelOutput>> = HashMap::new();
        for row in &model_outputs {
            model_outputs_by
                .entry(col(row, "run_uuid")?)
                .or_default()
                .push(ModelOutput {
                    model_id: col(row, "model_id")?,
                    step: col(row, "step")?,
                });
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let id = r.info.run_id.clone();
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
                    outputs: RunOutputs {
                        model_outputs: model_outputs_by.remove(&id).unwrap_or_default(),
                    },
                }
            })
            .collect())
    }

    /// Updates a run's status, end time and name; returns the new info.
    pub async fn update_run(
        &self,
        run_id: &str,
        status: Option<RunStatus>,
        end_time: Option<i64>,
        run_name: Option<&str>,
    ) -> Result<RunInfo> {
        let mut tx = self.begin_write().await?;
        let row = self.active_run_for_update(&mut tx, run_id).await?;
        let status = status.unwrap_or(row.info.status);
        let end_time = end_time.or(row.info.end_time);
        let name = run_name
            .filter(|n| !n.is_empty())
            .unwrap_or(&row.info.run_name)
            .to_owned();
        sqlx::query("UPDATE runs SET status = $1, end_time = $2, name = $3 WHERE run_uuid = $4")
            .bind(status.as_str())
            .bind(end_time)
            .bind(&name)
            .bind(run_id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        if run_name.is_some_and(|n| !n.is_empty()) {
            upsert_tags(
                &mut tx,
                run_id,
                &[KeyValue::new("mlflow.runName", name.clone())],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(RunInfo {
            status,
            end_time,
            run_name: name,
            ..row.info
        })
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
        let mut tx = self.begin_write().await?;
        let deleted_time = (stage == LifecycleStage::Deleted).then(now_millis);
        let r = sqlx::query(
            "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE run_uuid = $3",
        )
        .bind(stage.as_str())
        .bind(deleted_time)
        .bind(run_id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!("Run with id={run_id} not found")));
        }
        tx.commit().await
    }

    /// Reads a run inside a write transaction, locking it on PostgreSQL, and checks it is active.
    async fn active_run_for_update(&self, tx: &mut WriteTx, run_id: &str) -> Result<RunRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE run_uuid = $1{}",
            self.dialect.for_update()
        )))
        .bind(run_id)
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(format!("Run with id={run_id} not found")))?;
        let row = run_row(&row)?;
        if row.info.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid(format!(
                "The run {run_id} must be in the 'active' state. Current state is {}.",
                row.info.lifecycle_stage.as_str()
            )));
        }
        Ok(row)
    }

    /// Logs one metric value.
    pub async fn log_metric(&self, run_id: &str, metric: Metric) -> Result<()> {
        self.log_batch(run_id, vec![metric], Vec::new(), Vec::new())
            .await
    }

    /// Logs one param.
    pub async fn log_param(&self, run_id: &str, param: KeyValue) -> Result<()> {
        self.log_batch(run_id, Vec::new(), vec![param], Vec::new())
            .await
    }

    /// Sets one tag.
    pub async fn set_tag(&self, run_id: &str, tag: KeyValue) -> Result<()> {
        self.log_batch(run_id, Vec::new(), Vec::new(), vec![tag])
            .await
    }

    /// Deletes a tag of a run.
    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.active_run_for_update(&mut tx, run_id).await?;
        let r = sqlx::query("DELETE FROM tags WHERE run_uuid = $1 AND key = $2")
            .bind(run_id)
            .bind(key)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "No tag with name: {key} in run with id {run_id}"
            )));
        }
        tx.commit().await
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
        let mut tx = self.begin_write().await?;
        self.active_run_for_update(&mut tx, run_id).await?;
        if !params.is_empty() {
            insert_params(&mut tx, run_id, &params).await?;
        }
        if !tags.is_empty() {
            upsert_tags(&mut tx, run_id, &tags).await?;
            if let Some(name) = tags.iter().rev().find(|t| t.key == "mlflow.runName") {
                sqlx::query("UPDATE runs SET name = $1 WHERE run_uuid = $2")
                    .bind(&name.value)
                    .bind(run_id)
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(db_error)?;
            }
        }
        if !metrics.is_empty() {
            insert_metrics(&mut tx, run_id, &metrics).await?;
            crate::logged_models::insert_model_metrics(&mut tx, run_id, &metrics).await?;
        }
        tx.commit().await
    }

    /// Records datasets (and logged models) as inputs of a run.
    pub async fn log_inputs(
        &self,
        run_id: &str,
        datasets: Vec<DatasetInput>,
        models: Vec<ModelInput>,
    ) -> Result<()> {
        for input in &datasets {
            let d = &input.dataset;
            validation::check_length("dataset name", &d.name, validation::MAX_DATASET_NAME_SIZE)?;
            validation::check_length(
                "dataset digest",
                &d.digest,
                validation::MAX_DATASET_DIGEST_SIZE,
            )?;
            validation::check_length(
                "dataset source",
                &d.source,
                validation::MAX_DATASET_SOURCE_SIZE,
            )?;
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
                validation::check_length(
                    "input tag key",
                    &t.key,
                    validation::MAX_INPUT_TAG_KEY_SIZE,
                )?;
                validation::check_length(
                    "input tag value",
                    &t.value,
                    validation::MAX_INPUT_TAG_VALUE_SIZE,
                )?;
            }
        }
        let mut tx = self.begin_write().await?;
        let run = self.active_run_for_update(&mut tx, run_id).await?;
        for input in &datasets {
            let d = &input.dataset;
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT dataset_uuid FROM datasets WHERE experiment_id = $1 AND name = $2 AND digest = $3",
            )
            .bind(run.experiment_id)
            .bind(&d.name)
            .bind(&d.digest)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(db_error)?;
            let dataset_uuid = match existing {
                Some(id) => id,
                None => {
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    sqlx::query(
                        "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, source_type, source, schema_json, profile_json)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&id)
                    .bind(run.experiment_id)
                    .bind(&d.name)
                    .bind(&d.digest)
                    .bind(&d.source_type)
                    .bind(&d.source)
                    .bind(d.schema.clone())
                    .bind(d.profile.clone())
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(db_error)?;
                    id
                }
            };
            let linked = sqlx::query(
                "INSERT INTO run_dataset_inputs (run_uuid, dataset_uuid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(run_id)
            .bind(&dataset_uuid)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
            // As MLflow: the tags of an input are those it was first logged with.
            if linked.rows_affected() > 0 {
                for t in &input.tags {
                    sqlx::query(
                        "INSERT INTO run_dataset_input_tags (run_uuid, dataset_uuid, key, value) VALUES ($1, $2, $3, $4)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(run_id)
                    .bind(&dataset_uuid)
                    .bind(&t.key)
                    .bind(&t.value)
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(db_error)?;
                }
            }
        }
        for m in &models {
            sqlx::query("INSERT INTO run_model_inputs (run_uuid, model_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(run_id)
                .bind(&m.model_id)
                .execute(&mut *tx.tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await
    }

    /// Records logged models as outputs of a run.
    pub async fn log_outputs(&self, run_id: &str, models: Vec<ModelOutput>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.active_run_for_update(&mut tx, run_id).await?;
        for m in &models {
            sqlx::query(
                "INSERT INTO run_model_outputs (run_uuid, model_id, step) VALUES ($1, $2, $3)
                 ON CONFLICT (run_uuid, model_id) DO UPDATE SET step = excluded.step",
            )
            .bind(run_id)
            .bind(&m.model_id)
            .bind(m.step)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await
    }

    /// The values of one metric of a run, in step then time order, a page at a time.
    pub async fn get_metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<Metric>> {
        self.run_row(run_id).await?;
        let offset = parse_page_token(page_token)?;
        let limit = max_results.unwrap_or(i64::MAX / 2);
        if limit <= 0 {
            return Err(Error::invalid(format!(
                "Invalid value {limit} for parameter 'max_results' supplied. It must be a positive integer"
            )));
        }
        let rows = sqlx::query(
            "SELECT key, value, is_nan, timestamp, step FROM metrics WHERE run_uuid = $1 AND key = $2
             ORDER BY step, timestamp, value LIMIT $3 OFFSET $4",
        )
        .bind(run_id)
        .bind(key)
        .bind(limit.saturating_add(1))
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut items = rows
            .iter()
            .map(metric_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            Some(page_token_after(offset, limit))
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }
}

/// The token of the page after one that started at `offset` and held `limit` items.
pub(crate) fn page_token_after(offset: i64, limit: i64) -> String {
    page_token(offset.saturating_add(limit))
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
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "Invalid artifact location '{location}': {why}"
        )))
    };
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

async fn upsert_experiment_tag(tx: &mut WriteTx, experiment_id: i64, tag: &KeyValue) -> Result<()> {
    sqlx::query(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3)
         ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(experiment_id)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Inserts `rows` with multi-row `INSERT` statements: `head` ends with `VALUES `, `tail` is the
/// conflict clause. Statements stay under both dialects' limits on bound values.
pub(crate) async fn insert_rows<const N: usize>(
    tx: &mut WriteTx,
    head: &str,
    tail: &str,
    rows: Vec<[Arg; N]>,
) -> Result<()> {
    let per_statement = (30_000 / N).min(1000);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut sql = Sql::new(tx.dialect, head);
        for (i, row) in rows.by_ref().take(per_statement).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push_tuple(row);
        }
        sql.push(tail);
        sql.query().execute(&mut *tx.tx).await.map_err(db_error)?;
    }
    Ok(())
}

/// Sets run tags, replacing values of existing keys (last one wins within the list).
pub(crate) async fn upsert_tags(tx: &mut WriteTx, run_id: &str, tags: &[KeyValue]) -> Result<()> {
    let mut last: Vec<&KeyValue> = Vec::new();
    for t in tags {
        last.retain(|x| x.key != t.key);
        last.push(t);
    }
    let rows = last
        .iter()
        .map(|t| {
            [
                Arg::from(run_id),
                t.key.as_str().into(),
                t.value.as_str().into(),
            ]
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO tags (run_uuid, key, value) VALUES ",
        " ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value",
        rows,
    )
    .await
}

/// Inserts params, refusing to change the value of one already logged.
async fn insert_params(tx: &mut WriteTx, run_id: &str, params: &[KeyValue]) -> Result<()> {
    let mut sql = Sql::new(
        tx.dialect,
        "SELECT key, value FROM params WHERE run_uuid = ",
    );
    let r = sql.arg(run_id);
    sql.push(&r).push(" AND key IN (");
    let keys = sql.args(params.iter().map(|p| p.key.as_str()));
    sql.push(&keys).push(")");
    let existing = sql.query().fetch_all(&mut *tx.tx).await.map_err(db_error)?;
    let mut existing_values: HashMap<String, String> = HashMap::new();
    for row in &existing {
        existing_values.insert(col(row, "key")?, col(row, "value")?);
    }
    for p in params {
        if let Some(old) = existing_values.get(&p.key)
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
        .filter(|p| !existing_values.contains_key(&p.key) && seen.insert(p.key.as_str()))
        .map(|p| {
            [
                Arg::from(run_id),
                p.key.as_str().into(),
                p.value.as_str().into(),
            ]
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO params (run_uuid, key, value) VALUES ",
        " ON CONFLICT DO NOTHING",
        rows,
    )
    .await
}

/// Appends metric values to the history (exact repeats are dropped) and moves each metric's
/// latest value forward: the greatest (step, timestamp, value) wins, NaN counting as 0.
async fn insert_metrics(tx: &mut WriteTx, run_id: &str, metrics: &[Metric]) -> Result<()> {
    // (step, timestamp, stored value, is_nan) of the batch's latest value per key.
    type Latest = (i64, i64, f64, i64);
    let mut latest: HashMap<&str, Latest> = HashMap::new();
    let mut rows = Vec::with_capacity(metrics.len());
    for m in metrics {
        let (value, is_nan) = stored_metric_value(m.value);
        rows.push([
            Arg::from(run_id),
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
        tx,
        "INSERT INTO metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES ",
        " ON CONFLICT DO NOTHING",
        rows,
    )
    .await?;
    let latest_rows = latest
        .into_iter()
        .map(|(key, (step, ts, value, is_nan))| {
            [
                Arg::from(run_id),
                key.into(),
                value.into(),
                is_nan.into(),
                ts.into(),
                step.into(),
            ]
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES ",
        " ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, \
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
}
