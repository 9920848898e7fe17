//! MLflow 3 logged models: a model as its own entity, with files, params, tags and metrics.
//!
//! `mlflow.<flavor>.log_model` creates a logged model (`PENDING`), links it to the run as an
//! output, re-logs the run's metrics with the model's id, uploads the files under
//! `<experiment>/models/<model_id>/artifacts/`, then finalizes it (`READY`). A registry version
//! made from it points at `models:/<model_id>`.

use std::collections::{HashMap, HashSet};

use shipyard_core::entities::{
    KeyValue, LifecycleStage, LoggedModel, LoggedModelData, LoggedModelInfo,
    LoggedModelRegistration, LoggedModelStatus, Metric, new_logged_model_id, now_millis,
};
use shipyard_core::filter::{self, Entity, Op};
use shipyard_core::validation::{self, KeyKind};
use shipyard_core::{Error, Result};
use sqlx::any::AnyRow;

use crate::db::{Database, WriteTx, db_error};
use crate::search::{comparison_sql, text_condition};
use crate::sql::{Arg, Sql};
use crate::tracking::{
    Page, col, insert_rows, metric_from_row, page_token_after, parse_experiment_id,
    parse_page_token, stored_metric_value,
};

/// What a client sends to create a logged model.
#[derive(Debug, Clone, Default)]
pub struct NewLoggedModel {
    /// Experiment id.
    pub experiment_id: String,
    /// Name; generated when absent.
    pub name: Option<String>,
    /// Free-form type.
    pub model_type: Option<String>,
    /// Run that logs it.
    pub source_run_id: Option<String>,
    /// Params (the client copies the run's).
    pub params: Vec<KeyValue>,
    /// Tags.
    pub tags: Vec<KeyValue>,
}

/// One `order_by` of a logged-model search.
#[derive(Debug, Clone)]
pub struct LoggedModelOrder {
    /// `creation_timestamp`, `name`, `metrics.<key>`, ...
    pub field_name: String,
    /// Ascending unless false.
    pub ascending: bool,
}

const ATTRIBUTES: &[(&str, bool)] = &[
    ("name", false),
    ("model_id", false),
    ("model_type", false),
    ("status", false),
    ("source_run_id", false),
    ("creation_timestamp", true),
    ("creation_time", true),
    ("last_updated_timestamp", true),
];

fn attribute_column(key: &str) -> &'static str {
    match key {
        "name" => "lm.name",
        "model_id" => "lm.model_id",
        "model_type" => "lm.model_type",
        "status" => "lm.status",
        "source_run_id" => "lm.source_run_id",
        "last_updated_timestamp" => "lm.last_updated_timestamp_ms",
        _ => "lm.creation_timestamp_ms",
    }
}

fn logged_model_not_found(model_id: &str) -> Error {
    Error::not_found(format!("Logged model with ID '{model_id}' not found."))
}

impl Database {
    /// Creates a logged model in `PENDING` state.
    pub async fn create_logged_model(&self, new: NewLoggedModel) -> Result<LoggedModel> {
        let experiment = self.get_experiment(&new.experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid(format!(
                "The experiment {} must be in the 'active' state. Current state is deleted.",
                new.experiment_id
            )));
        }
        let name = match new.name.filter(|n| !n.is_empty()) {
            Some(n) => {
                validation::validate_name("logged model", &n)?;
                n
            }
            None => format!("model-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        };
        for p in &new.params {
            validation::validate_key(KeyKind::Param, &p.key)?;
            validation::validate_param_value(&p.key, &p.value)?;
        }
        for t in &new.tags {
            validation::validate_key(KeyKind::Tag, &t.key)?;
            validation::validate_tag_value(&t.key, &t.value)?;
        }
        if let Some(run_id) = new.source_run_id.as_deref().filter(|r| !r.is_empty()) {
            self.run_row(run_id).await?;
        }
        let model_id = new_logged_model_id();
        let artifact_location = format!(
            "{}/models/{model_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_timestamp_ms,
                last_updated_timestamp_ms, status, lifecycle_stage, model_type, source_run_id)
             VALUES ($1, $2, $3, $4, $5, $5, 'LOGGED_MODEL_PENDING', 'active', $6, $7)",
        )
        .bind(&model_id)
        .bind(parse_experiment_id(&new.experiment_id)?)
        .bind(&name)
        .bind(&artifact_location)
        .bind(now)
        .bind(new.model_type.unwrap_or_default())
        .bind(new.source_run_id.filter(|r| !r.is_empty()))
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        upsert_model_kv(&mut tx, "logged_model_params", &model_id, &new.params).await?;
        upsert_model_kv(&mut tx, "logged_model_tags", &model_id, &new.tags).await?;
        tx.commit().await?;
        self.get_logged_model(&model_id).await
    }

    /// Gets a logged model with its tags, params, metrics and registrations.
    pub async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        let row = sqlx::query(
            "SELECT * FROM logged_models lm WHERE model_id = $1 AND lifecycle_stage = 'active'",
        )
        .bind(model_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .ok_or_else(|| logged_model_not_found(model_id))?;
        Ok(self.attach_logged_model_data(vec![row]).await?.remove(0))
    }

    async fn attach_logged_model_data(&self, rows: Vec<AnyRow>) -> Result<Vec<LoggedModel>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows
            .iter()
            .map(|r| col::<String>(r, "model_id"))
            .collect::<Result<_>>()?;
        let fetch = |table_sql: &str| {
            let mut sql = Sql::new(self.dialect, table_sql);
            let list = sql.args(ids.iter().map(String::as_str));
            sql.push(&list).push(")");
            sql.query().fetch_all(&self.pool)
        };
        let params =
            fetch("SELECT model_id, key, value FROM logged_model_params WHERE model_id IN (")
                .await
                .map_err(db_error)?;
        let tags = fetch("SELECT model_id, key, value FROM logged_model_tags WHERE model_id IN (")
            .await
            .map_err(db_error)?;
        let metrics = fetch(
            "SELECT model_id, key, value, is_nan, timestamp, step, run_id, dataset_name, dataset_digest
             FROM logged_model_metrics WHERE model_id IN (",
        )
        .await
        .map_err(db_error)?;
        let registrations = fetch(
            "SELECT mv.model_id, rm.name, mv.version FROM model_versions mv
             JOIN registered_models rm ON rm.id = mv.registered_model_id WHERE mv.model_id IN (",
        )
        .await
        .map_err(db_error)?;
        let group = |rows: &[AnyRow]| -> Result<HashMap<String, Vec<KeyValue>>> {
            let mut out: HashMap<String, Vec<KeyValue>> = HashMap::new();
            for r in rows {
                out.entry(col(r, "model_id")?).or_default().push(KeyValue {
                    key: col(r, "key")?,
                    value: col(r, "value")?,
                });
            }
            for v in out.values_mut() {
                v.sort_by(|a, b| a.key.cmp(&b.key));
            }
            Ok(out)
        };
        let mut params = group(&params)?;
        let mut tags = group(&tags)?;
        let mut metrics_by: HashMap<String, Vec<Metric>> = HashMap::new();
        for r in &metrics {
            let model_id: String = col(r, "model_id")?;
            let mut m = metric_from_row(r)?;
            m.run_id = col(r, "run_id")?;
            m.dataset_name = col(r, "dataset_name")?;
            m.dataset_digest = col(r, "dataset_digest")?;
            m.model_id = Some(model_id.clone());
            metrics_by.entry(model_id).or_default().push(m);
        }
        let mut registrations_by: HashMap<String, Vec<LoggedModelRegistration>> = HashMap::new();
        for r in &registrations {
            registrations_by
                .entry(col(r, "model_id")?)
                .or_default()
                .push(LoggedModelRegistration {
                    name: col(r, "name")?,
                    version: col::<i64>(r, "version")?.to_string(),
                });
        }
        rows.iter()
            .map(|row| {
                let model_id: String = col(row, "model_id")?;
                let status: String = col(row, "status")?;
                Ok(LoggedModel {
                    info: LoggedModelInfo {
                        experiment_id: col::<i64>(row, "experiment_id")?.to_string(),
                        name: col(row, "name")?,
                        creation_timestamp_ms: col(row, "creation_timestamp_ms")?,
                        last_updated_timestamp_ms: col(row, "last_updated_timestamp_ms")?,
                        artifact_uri: col(row, "artifact_location")?,
                        status: LoggedModelStatus::parse(&status).ok_or_else(|| {
                            Error::Internal(format!("unknown logged model status '{status}'"))
                        })?,
                        model_type: col(row, "model_type")?,
                        source_run_id: col(row, "source_run_id")?,
                        status_message: col(row, "status_message")?,
                        tags: tags.remove(&model_id).unwrap_or_default(),
                        registrations: registrations_by.remove(&model_id).unwrap_or_default(),
                        model_id: model_id.clone(),
                    },
                    data: LoggedModelData {
                        params: params.remove(&model_id).unwrap_or_default(),
                        metrics: metrics_by.remove(&model_id).unwrap_or_default(),
                    },
                })
            })
            .collect()
    }

    /// Sets the upload status of a logged model (`READY` or `UPLOAD_FAILED`).
    pub async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel> {
        if !matches!(
            status,
            LoggedModelStatus::Ready | LoggedModelStatus::UploadFailed
        ) {
            return Err(Error::invalid(format!(
                "Invalid status '{}': a logged model can only be finalized as LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED",
                status.as_str()
            )));
        }
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE logged_models SET status = $1, last_updated_timestamp_ms = $2 WHERE model_id = $3 AND lifecycle_stage = 'active'",
        )
        .bind(status.as_str())
        .bind(now_millis())
        .bind(model_id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        if r.rows_affected() == 0 {
            return Err(logged_model_not_found(model_id));
        }
        tx.commit().await?;
        self.get_logged_model(model_id).await
    }

    /// Soft-deletes a logged model.
    pub async fn delete_logged_model(&self, model_id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_timestamp_ms = $1
             WHERE model_id = $2 AND lifecycle_stage = 'active'",
        )
        .bind(now_millis())
        .bind(model_id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        if r.rows_affected() == 0 {
            return Err(logged_model_not_found(model_id));
        }
        tx.commit().await
    }

    /// Sets tags on a logged model.
    pub async fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[KeyValue],
    ) -> Result<LoggedModel> {
        for t in tags {
            validation::validate_key(KeyKind::Tag, &t.key)?;
            validation::check_length(
                "logged model tag value",
                &t.value,
                validation::MAX_REGISTRY_TAG_VAL_LENGTH,
            )?;
        }
        self.get_logged_model(model_id).await?;
        let mut tx = self.begin_write().await?;
        upsert_model_kv(&mut tx, "logged_model_tags", model_id, tags).await?;
        touch_model(&mut tx, model_id).await?;
        tx.commit().await?;
        self.get_logged_model(model_id).await
    }

    /// Deletes a tag of a logged model.
    pub async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<()> {
        self.get_logged_model(model_id).await?;
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
            .bind(model_id)
            .bind(key)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "No tag with key '{key}' found for model with ID '{model_id}'."
            )));
        }
        tx.commit().await
    }

    /// Logs params on a logged model.
    pub async fn log_logged_model_params(&self, model_id: &str, params: &[KeyValue]) -> Result<()> {
        for p in params {
            validation::validate_key(KeyKind::Param, &p.key)?;
            validation::validate_param_value(&p.key, &p.value)?;
        }
        self.get_logged_model(model_id).await?;
        let mut tx = self.begin_write().await?;
        upsert_model_kv(&mut tx, "logged_model_params", model_id, params).await?;
        tx.commit().await
    }

    /// Searches logged models of some experiments.
    pub async fn search_logged_models(
        &self,
        experiment_ids: &[String],
        filter_text: Option<&str>,
        order_by: &[LoggedModelOrder],
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<LoggedModel>> {
        let comparisons = filter::attribute_filter(
            filter_text.unwrap_or(""),
            ATTRIBUTES,
            &[Entity::Metric, Entity::Param, Entity::Tag],
        )?;
        let limit = max_results.unwrap_or(100);
        validation::validate_max_results(limit, validation::SEARCH_MAX_RESULTS_THRESHOLD)?;
        let offset = parse_page_token(page_token)?;
        let mut sql = Sql::new(
            self.dialect,
            "SELECT lm.* FROM logged_models lm WHERE lm.lifecycle_stage = 'active'",
        );
        if !experiment_ids.is_empty() {
            let ids: Vec<i64> = experiment_ids
                .iter()
                .map(|e| parse_experiment_id(e))
                .collect::<Result<_>>()?;
            sql.push(" AND lm.experiment_id IN (");
            let list = sql.args(ids);
            sql.push(&list).push(")");
        }
        for c in &comparisons {
            let cond = match c.entity {
                Entity::Attribute => {
                    let column = attribute_column(&c.key);
                    comparison_sql(&mut sql, self.dialect, column, c)?
                }
                Entity::Metric => {
                    let key = sql.arg(c.key.as_str());
                    let value = sql.arg(c.num_value().unwrap_or_default());
                    format!(
                        "EXISTS (SELECT 1 FROM logged_model_metrics m WHERE m.model_id = lm.model_id AND m.key = {key} \
                         AND m.is_nan = 0 AND m.value {} {value})",
                        c.op.as_sql()
                    )
                }
                Entity::Param | Entity::Tag => {
                    let table = if c.entity == Entity::Param {
                        "logged_model_params"
                    } else {
                        "logged_model_tags"
                    };
                    let key = sql.arg(c.key.as_str());
                    match c.op {
                        Op::IsNull => format!(
                            "NOT EXISTS (SELECT 1 FROM {table} t WHERE t.model_id = lm.model_id AND t.key = {key})"
                        ),
                        Op::IsNotNull => format!(
                            "EXISTS (SELECT 1 FROM {table} t WHERE t.model_id = lm.model_id AND t.key = {key})"
                        ),
                        _ => {
                            let cond = text_condition(&mut sql, self.dialect, "t.value", c)?;
                            format!(
                                "EXISTS (SELECT 1 FROM {table} t WHERE t.model_id = lm.model_id AND t.key = {key} AND {cond})"
                            )
                        }
                    }
                }
                Entity::Dataset => {
                    return Err(Error::invalid(
                        "datasets are not searchable on logged models",
                    ));
                }
            };
            sql.push(" AND ").push(&cond);
        }
        let mut order = Vec::new();
        for o in order_by {
            let dir = if o.ascending { "ASC" } else { "DESC" };
            if let Some(metric) = o.field_name.strip_prefix("metrics.") {
                // Missing values last, then the model's best value of the metric.
                let (k1, k2) = (sql.arg(metric), sql.arg(metric));
                order.push(format!(
                    "(SELECT MAX(m.value) FROM logged_model_metrics m WHERE m.model_id = lm.model_id AND m.key = {k1}) IS NULL"
                ));
                order.push(format!(
                    "(SELECT MAX(m.value) FROM logged_model_metrics m WHERE m.model_id = lm.model_id AND m.key = {k2}) {dir}"
                ));
            } else if ATTRIBUTES.iter().any(|(k, _)| *k == o.field_name) {
                order.push(format!("{} {dir}", attribute_column(&o.field_name)));
            } else {
                return Err(Error::invalid(format!(
                    "Invalid order by field name: '{}'",
                    o.field_name
                )));
            }
        }
        order.push("lm.creation_timestamp_ms DESC".into());
        order.push("lm.model_id ASC".into());
        sql.push(" ORDER BY ").push(&order.join(", "));
        let lim = sql.arg(limit + 1);
        let off = sql.arg(offset);
        sql.push(&format!(" LIMIT {lim} OFFSET {off}"));
        let mut rows = sql.query().fetch_all(&self.pool).await.map_err(db_error)?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            Some(page_token_after(offset, limit))
        } else {
            None
        };
        Ok(Page {
            items: self.attach_logged_model_data(rows).await?,
            next_page_token,
        })
    }
}

async fn upsert_model_kv(
    tx: &mut WriteTx,
    table: &str,
    model_id: &str,
    items: &[KeyValue],
) -> Result<()> {
    for kv in items {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value"
        )))
        .bind(model_id)
        .bind(&kv.key)
        .bind(&kv.value)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

async fn touch_model(tx: &mut WriteTx, model_id: &str) -> Result<()> {
    sqlx::query("UPDATE logged_models SET last_updated_timestamp_ms = $1 WHERE model_id = $2")
        .bind(now_millis())
        .bind(model_id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Records the metrics of a batch that carry a `model_id` on their logged models.
pub(crate) async fn insert_model_metrics(
    tx: &mut WriteTx,
    run_id: &str,
    metrics: &[Metric],
) -> Result<()> {
    let with_model: Vec<&Metric> = metrics
        .iter()
        .filter(|m| m.model_id.as_deref().is_some_and(|id| !id.is_empty()))
        .collect();
    if with_model.is_empty() {
        return Ok(());
    }
    let ids: HashSet<&str> = with_model
        .iter()
        .filter_map(|m| m.model_id.as_deref())
        .collect();
    let mut sql = Sql::new(
        tx.dialect,
        "SELECT model_id FROM logged_models WHERE model_id IN (",
    );
    let list = sql.args(ids.iter().copied());
    sql.push(&list).push(")");
    let found: HashSet<String> = sql
        .query()
        .fetch_all(&mut *tx.tx)
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| col::<String>(r, "model_id"))
        .collect::<Result<_>>()?;
    if let Some(missing) = ids.iter().find(|id| !found.contains(**id)) {
        return Err(logged_model_not_found(missing));
    }
    let rows = with_model
        .iter()
        .map(|m| {
            let (value, is_nan) = stored_metric_value(m.value);
            [
                Arg::from(m.model_id.clone()),
                m.key.as_str().into(),
                value.into(),
                is_nan.into(),
                m.timestamp.into(),
                m.step.into(),
                run_id.into(),
                m.dataset_name.clone().into(),
                m.dataset_digest.clone().into(),
            ]
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO logged_model_metrics (model_id, key, value, is_nan, timestamp, step, run_id, dataset_name, dataset_digest) VALUES ",
        " ON CONFLICT DO NOTHING",
        rows,
    )
    .await
}
