//! MLflow 3 logged models: a model as its own entity, with files, params, tags and metrics.
//!
//! `mlflow.<flavor>.log_model` creates a logged model (`PENDING`), links it to the run as an
//! output, re-logs the run's metrics with the model's id, uploads the files under
//! `<experiment>/models/<model_id>/artifacts/`, then finalizes it (`READY`). A registry version
//! made from it points at `models:/<model_id>`.

use std::collections::{HashMap, HashSet};

use shipyard_core::entities::{
    KeyValue, LifecycleStage, LoggedModel, LoggedModelData, LoggedModelInfo, LoggedModelRegistration,
    LoggedModelStatus, Metric, new_logged_model_id, now_millis,
};
use shipyard_core::filter::{self, Entity};
use shipyard_core::validation::{self, KeyKind};
use shipyard_core::{Error, Result};

use crate::db::{Conn, Database};
use crate::search::{comparison_sql, direction, key_value_condition, metric_condition, order_and_page};
use crate::sql::{Arg, Row, Sql};
use crate::tracking::{
    Page, experiment_by_id, group_key_values, insert_rows, metric_from_row, parse_experiment_id, parse_page_token,
    run_by_id, stored_metric_value,
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

/// A logged model with its tags, params, metrics and registrations, or `NotFound`.
pub(crate) async fn logged_model_by_id(c: &mut Conn<'_>, model_id: &str) -> Result<LoggedModel> {
    let sql =
        c.stmt("SELECT * FROM logged_models lm WHERE model_id = $1 AND lifecycle_stage = 'active'", [model_id.into()]);
    let row = c.fetch_optional(sql).await?.ok_or_else(|| logged_model_not_found(model_id))?;
    Ok(attach_logged_model_data(c, vec![row]).await?.remove(0))
}

async fn attach_logged_model_data(c: &mut Conn<'_>, rows: Vec<Row>) -> Result<Vec<LoggedModel>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows.iter().map(|r| r.get::<String>("model_id")).collect::<Result<_>>()?;
    let by_models = |c: &Conn<'_>, head: &str| {
        let mut sql = c.sql(head);
        let list = sql.args(ids.iter());
        sql.push(&list).push(")");
        sql
    };
    let params =
        c.fetch_all(by_models(c, "SELECT model_id, key, value FROM logged_model_params WHERE model_id IN (")).await?;
    let tags =
        c.fetch_all(by_models(c, "SELECT model_id, key, value FROM logged_model_tags WHERE model_id IN (")).await?;
    let metrics = c
        .fetch_all(by_models(
            c,
            "SELECT model_id, key, value, is_nan, timestamp, step, run_id, dataset_name, dataset_digest \
             FROM logged_model_metrics WHERE model_id IN (",
        ))
        .await?;
    let registrations = c
        .fetch_all(by_models(
            c,
            "SELECT mv.model_id, rm.name, mv.version FROM model_versions mv \
             JOIN registered_models rm ON rm.id = mv.registered_model_id WHERE mv.model_id IN (",
        ))
        .await?;
    let sorted = |mut m: HashMap<String, Vec<KeyValue>>| {
        for v in m.values_mut() {
            v.sort_by(|a, b| a.key.cmp(&b.key));
        }
        m
    };
    let mut params = sorted(group_key_values::<String>(&params, "model_id")?);
    let mut tags = sorted(group_key_values::<String>(&tags, "model_id")?);
    let mut metrics_by: HashMap<String, Vec<Metric>> = HashMap::new();
    for r in &metrics {
        let model_id: String = r.get("model_id")?;
        let mut m = metric_from_row(r)?;
        m.run_id = r.get("run_id")?;
        m.dataset_name = r.get("dataset_name")?;
        m.dataset_digest = r.get("dataset_digest")?;
        m.model_id = Some(model_id.clone());
        metrics_by.entry(model_id).or_default().push(m);
    }
    let mut registrations_by: HashMap<String, Vec<LoggedModelRegistration>> = HashMap::new();
    for r in &registrations {
        registrations_by
            .entry(r.get("model_id")?)
            .or_default()
            .push(LoggedModelRegistration { name: r.get("name")?, version: r.get::<i64>("version")?.to_string() });
    }
    rows.iter()
        .map(|row| {
            let model_id: String = row.get("model_id")?;
            let status: String = row.get("status")?;
            Ok(LoggedModel {
                info: LoggedModelInfo {
                    experiment_id: row.get::<i64>("experiment_id")?.to_string(),
                    name: row.get("name")?,
                    creation_timestamp_ms: row.get("creation_timestamp_ms")?,
                    last_updated_timestamp_ms: row.get("last_updated_timestamp_ms")?,
                    artifact_uri: row.get("artifact_location")?,
                    status: LoggedModelStatus::parse(&status)
                        .ok_or_else(|| Error::Internal(format!("unknown logged model status '{status}'")))?,
                    model_type: row.get("model_type")?,
                    source_run_id: row.get("source_run_id")?,
                    status_message: row.get("status_message")?,
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

impl Database {
    /// Creates a logged model in `PENDING` state.
    pub async fn create_logged_model(&self, new: NewLoggedModel) -> Result<LoggedModel> {
        let experiment_id = parse_experiment_id(&new.experiment_id)?;
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
        let shown = new.experiment_id.clone();
        let source_run_id = new.source_run_id.filter(|r| !r.is_empty());
        let (params, tags, model_type) = (new.params, new.tags, new.model_type.unwrap_or_default());
        self.write(move |c| {
            Box::pin(async move {
                let experiment = experiment_by_id(c, experiment_id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("No Experiment with id={shown} exists")))?;
                if experiment.lifecycle_stage != LifecycleStage::Active {
                    return Err(Error::invalid(format!(
                        "The experiment {shown} must be in the 'active' state. Current state is deleted."
                    )));
                }
                if let Some(run_id) = source_run_id.as_deref() {
                    run_by_id(c, run_id, false).await?;
                }
                let model_id = new_logged_model_id();
                let artifact_location =
                    format!("{}/models/{model_id}/artifacts", experiment.artifact_location.trim_end_matches('/'));
                let now = now_millis();
                let insert = c.stmt(
                    "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_timestamp_ms, \
                        last_updated_timestamp_ms, status, lifecycle_stage, model_type, source_run_id) \
                     VALUES ($1, $2, $3, $4, $5, $5, 'LOGGED_MODEL_PENDING', 'active', $6, $7)",
                    [
                        model_id.as_str().into(),
                        experiment_id.into(),
                        name.as_str().into(),
                        artifact_location.into(),
                        now.into(),
                        model_type.into(),
                        source_run_id.into(),
                    ],
                );
                c.execute(insert).await?;
                upsert_model_kv(c, "logged_model_params", &model_id, &params).await?;
                upsert_model_kv(c, "logged_model_tags", &model_id, &tags).await?;
                logged_model_by_id(c, &model_id).await
            })
        })
        .await
    }

    /// Gets a logged model with its tags, params, metrics and registrations.
    pub async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        let model_id = model_id.to_owned();
        self.read(move |c| Box::pin(async move { logged_model_by_id(c, &model_id).await })).await
    }

    /// Sets the upload status of a logged model (`READY` or `UPLOAD_FAILED`).
    pub async fn finalize_logged_model(&self, model_id: &str, status: LoggedModelStatus) -> Result<LoggedModel> {
        if !matches!(status, LoggedModelStatus::Ready | LoggedModelStatus::UploadFailed) {
            return Err(Error::invalid(format!(
                "Invalid status '{}': a logged model can only be finalized as LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED",
                status.as_str()
            )));
        }
        let model_id = model_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let update = c.stmt(
                    "UPDATE logged_models SET status = $1, last_updated_timestamp_ms = $2 \
                     WHERE model_id = $3 AND lifecycle_stage = 'active'",
                    [status.as_str().into(), now_millis().into(), model_id.as_str().into()],
                );
                if c.execute(update).await? == 0 {
                    return Err(logged_model_not_found(&model_id));
                }
                logged_model_by_id(c, &model_id).await
            })
        })
        .await
    }

    /// Soft-deletes a logged model.
    pub async fn delete_logged_model(&self, model_id: &str) -> Result<()> {
        let model_id = model_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let update = c.stmt(
                    "UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_timestamp_ms = $1 \
                     WHERE model_id = $2 AND lifecycle_stage = 'active'",
                    [now_millis().into(), model_id.as_str().into()],
                );
                if c.execute(update).await? == 0 {
                    return Err(logged_model_not_found(&model_id));
                }
                Ok(())
            })
        })
        .await
    }

    /// Sets tags on a logged model.
    pub async fn set_logged_model_tags(&self, model_id: &str, tags: &[KeyValue]) -> Result<LoggedModel> {
        for t in tags {
            validation::validate_key(KeyKind::Tag, &t.key)?;
            validation::check_length("logged model tag value", &t.value, validation::MAX_REGISTRY_TAG_VAL_LENGTH)?;
        }
        let (model_id, tags) = (model_id.to_owned(), tags.to_vec());
        self.write(move |c| {
            Box::pin(async move {
                logged_model_by_id(c, &model_id).await?;
                upsert_model_kv(c, "logged_model_tags", &model_id, &tags).await?;
                let touch = c.stmt(
                    "UPDATE logged_models SET last_updated_timestamp_ms = $1 WHERE model_id = $2",
                    [now_millis().into(), model_id.as_str().into()],
                );
                c.execute(touch).await?;
                logged_model_by_id(c, &model_id).await
            })
        })
        .await
    }

    /// Deletes a tag of a logged model.
    pub async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<()> {
        let (model_id, key) = (model_id.to_owned(), key.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                logged_model_by_id(c, &model_id).await?;
                let delete = c.stmt(
                    "DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2",
                    [model_id.as_str().into(), key.as_str().into()],
                );
                if c.execute(delete).await? == 0 {
                    return Err(Error::not_found(format!(
                        "No tag with key '{key}' found for model with ID '{model_id}'."
                    )));
                }
                Ok(())
            })
        })
        .await
    }

    /// Logs params on a logged model.
    pub async fn log_logged_model_params(&self, model_id: &str, params: &[KeyValue]) -> Result<()> {
        for p in params {
            validation::validate_key(KeyKind::Param, &p.key)?;
            validation::validate_param_value(&p.key, &p.value)?;
        }
        let (model_id, params) = (model_id.to_owned(), params.to_vec());
        self.write(move |c| {
            Box::pin(async move {
                logged_model_by_id(c, &model_id).await?;
                upsert_model_kv(c, "logged_model_params", &model_id, &params).await
            })
        })
        .await
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
        let dialect = self.dialect();
        let mut sql = Sql::new(dialect, "SELECT lm.* FROM logged_models lm WHERE lm.lifecycle_stage = 'active'");
        if !experiment_ids.is_empty() {
            let ids: Vec<i64> = experiment_ids.iter().map(|e| parse_experiment_id(e)).collect::<Result<_>>()?;
            sql.push(" AND lm.experiment_id IN (");
            let list = sql.args(ids);
            sql.push(&list).push(")");
        }
        for c in &comparisons {
            let cond = match c.entity {
                Entity::Attribute => comparison_sql(&mut sql, dialect, attribute_column(&c.key), c)?,
                Entity::Metric => {
                    metric_condition(&mut sql, dialect, "logged_model_metrics", "m.model_id = lm.model_id", c)
                }
                Entity::Param => {
                    key_value_condition(&mut sql, dialect, "logged_model_params", "t.model_id = lm.model_id", c)?
                }
                Entity::Tag => {
                    key_value_condition(&mut sql, dialect, "logged_model_tags", "t.model_id = lm.model_id", c)?
                }
                Entity::Dataset => {
                    return Err(Error::invalid("datasets are not searchable on logged models"));
                }
            };
            sql.push(" AND ").push(&cond);
        }
        let mut order = Vec::new();
        for o in order_by {
            let dir = direction(o.ascending);
            if let Some(metric) = o.field_name.strip_prefix("metrics.") {
                // Missing values last, then the model's best value of the metric.
                let (k1, k2) = (sql.arg(metric), sql.arg(metric));
                let best = "SELECT MAX(m.value) FROM logged_model_metrics m WHERE m.model_id = lm.model_id AND m.key =";
                order.push(format!("({best} {k1}) IS NULL"));
                order.push(format!("({best} {k2}) {dir}"));
            } else if ATTRIBUTES.iter().any(|(k, _)| *k == o.field_name) {
                order.push(format!("{} {dir}", attribute_column(&o.field_name)));
            } else {
                return Err(Error::invalid(format!("Invalid order by field name: '{}'", o.field_name)));
            }
        }
        order.push("lm.creation_timestamp_ms DESC".into());
        order.push("lm.model_id ASC".into());
        order_and_page(&mut sql, &order, limit, offset);
        self.read(move |c| {
            Box::pin(async move {
                let rows = c.fetch_all(sql).await?;
                let page = Page::from_overfetch(rows, offset, limit);
                Ok(Page {
                    items: attach_logged_model_data(c, page.items).await?,
                    next_page_token: page.next_page_token,
                })
            })
        })
        .await
    }
}

async fn upsert_model_kv(c: &mut Conn<'_>, table: &str, model_id: &str, items: &[KeyValue]) -> Result<()> {
    let rows = items.iter().map(|kv| [Arg::from(model_id), kv.key.as_str().into(), kv.value.as_str().into()]).collect();
    insert_rows(
        c,
        &format!("INSERT INTO {table} (model_id, key, value) VALUES "),
        " ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
        rows,
    )
    .await
}

/// Records the metrics of a batch that carry a `model_id` on their logged models.
pub(crate) async fn insert_model_metrics(c: &mut Conn<'_>, run_id: &str, metrics: &[Metric]) -> Result<()> {
    let with_model: Vec<&Metric> =
        metrics.iter().filter(|m| m.model_id.as_deref().is_some_and(|id| !id.is_empty())).collect();
    if with_model.is_empty() {
        return Ok(());
    }
    let ids: HashSet<&str> = with_model.iter().filter_map(|m| m.model_id.as_deref()).collect();
    let mut sql = c.sql("SELECT model_id FROM logged_models WHERE model_id IN (");
    let list = sql.args(ids.iter().copied());
    sql.push(&list).push(")");
    let found: HashSet<String> =
        c.fetch_all(sql).await?.iter().map(|r| r.get::<String>("model_id")).collect::<Result<_>>()?;
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
        c,
        "INSERT INTO logged_model_metrics (model_id, key, value, is_nan, timestamp, step, run_id, dataset_name, dataset_digest) VALUES ",
        " ON CONFLICT DO NOTHING",
        rows,
    )
    .await
}
