//! The prediction log, ground truth, monitor configurations, monitor evaluations and alerts.
//!
//! Predictions arrive in batches from the serving path's log writer and are read back in pages,
//! newest first, with their ground truth joined, so a monitor window of a million rows never
//! has to be held as rows at once.

use shipyard_core::entities::now_millis;
use std::sync::Arc;

use shipyard_core::monitoring::{
    Actual, Alert, LoggedPrediction, MonitorEvaluation, PredictionBatch, PredictionRecord,
};
use shipyard_core::{Error, Result};

use crate::db::{Conn, Database, DbError};
use crate::sql::{Arg, Row};
use crate::tracking::insert_rows;

/// Which logged rows a page reads: a deployment's rows older than `before_id` (all when
/// `None`), newest first. Time bounds are the reader's: the rows come in logging order, so the
/// first row older than a bound ends a time window (a SQL filter on time would scan every older
/// row to fill a page).
#[derive(Debug, Clone)]
pub struct PredictionPage {
    pub deployment: String,
    pub before_id: Option<i64>,
    pub limit: i64,
}

fn prediction_from_row(mut r: Row) -> Result<LoggedPrediction> {
    Ok(LoggedPrediction {
        id: r.get("id")?,
        record: PredictionRecord {
            deployment: r.take("deployment")?,
            request_id: r.take("request_id")?,
            row: r.get("row_index")?,
            time: r.get("time")?,
            model: r.take("model")?,
            version: r.take("version")?,
            status: r.get("status")?,
            latency_us: r.get("latency_us")?,
            inputs: r.take("inputs")?,
            prediction: r.take("prediction")?,
            score: r.get("score")?,
        },
        actual: r.take("actual")?,
    })
}

fn alert_from_row(r: &Row) -> Result<Alert> {
    Ok(Alert {
        id: r.get("id")?,
        deployment: r.get("deployment")?,
        rule: r.get("rule")?,
        metric: r.get("metric")?,
        value: r.get("value")?,
        comparator: r.get("comparator")?,
        threshold: r.get("threshold")?,
        severity: r.get("severity")?,
        fired_time: r.get("fired_time")?,
        message: r.get("message")?,
        action: r.get("action")?,
        action_status: r.get("action_status")?,
        action_detail: r.get("action_detail")?,
        acknowledged_by: r.get("acknowledged_by")?,
        acknowledged_time: r.get("acknowledged_time")?,
    })
}

/// The prediction log's insert, up to its VALUES.
const PREDICTION_INSERT: &str = "INSERT INTO predictions (deployment, request_id, row_index, time, model, version, \
                                 status, latency_us, inputs, prediction, score) VALUES ";

/// Appends a batch's rows on SQLite, each through the one cached statement.
fn append_predictions_sqlite(conn: &rusqlite::Connection, batch: &PredictionBatch) -> Result<(), DbError> {
    let mut stmt =
        conn.prepare_cached(&format!("{PREDICTION_INSERT}(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"))?;
    for p in batch.rows() {
        stmt.execute(rusqlite::params![
            p.deployment,
            p.request_id,
            p.row,
            p.time,
            p.model,
            p.version,
            p.status,
            p.latency_us,
            p.inputs,
            p.prediction,
            p.score
        ])?;
    }
    Ok(())
}

/// Most request ids looked up in one statement when feedback is recorded.
const LOOKUP_CHUNK: usize = 500;

impl Database {
    /// Appends the batch's rows to the prediction log in one transaction.
    pub async fn log_predictions(&self, batch: Arc<PredictionBatch>) -> Result<usize> {
        let n = batch.row_count();
        if n == 0 {
            return Ok(0);
        }
        self.write(move |c| {
            Box::pin(async move {
                match c {
                    // One prepared single-row statement, bound from the batch's borrowed text:
                    // SQLite has no round trip to save, and a multi-row statement of a new size
                    // would be parsed (and cached) at every flush.
                    Conn::Sqlite(conn) => append_predictions_sqlite(conn, &batch)?,
                    Conn::Postgres(_) => {
                        let rows = batch
                            .rows()
                            .map(|p| {
                                [
                                    Arg::from(p.deployment),
                                    p.request_id.into(),
                                    p.row.into(),
                                    p.time.into(),
                                    p.model.into(),
                                    p.version.into(),
                                    p.status.into(),
                                    p.latency_us.into(),
                                    p.inputs.into(),
                                    p.prediction.into(),
                                    p.score.into(),
                                ]
                            })
                            .collect();
                        insert_rows(c, PREDICTION_INSERT, "", rows).await?;
                    }
                }
                Ok(n)
            })
        })
        .await
    }

    /// The id just past the newest row of `deployment`'s log logged at or before `time`: the
    /// `before_id` of the first page of a window that ends then. `None` when no row is that old.
    /// Walks the log newest first by id (rows are appended in time order, near enough), so it
    /// reads as many index entries as rows were logged after `time`.
    pub async fn prediction_id_after(&self, deployment: &str, time: i64) -> Result<Option<i64>> {
        let deployment = deployment.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT id FROM predictions WHERE deployment = $1 AND time <= $2 ORDER BY id DESC LIMIT 1",
                    [deployment.into(), time.into()],
                );
                let row = c.fetch_optional(sql).await?;
                row.map(|r| r.get::<i64>("id").map(|id| id + 1)).transpose()
            })
        })
        .await
    }

    /// One page of a deployment's log, newest first, with ground truth joined.
    pub async fn prediction_page(&self, page: PredictionPage) -> Result<Vec<LoggedPrediction>> {
        self.read(move |c| {
            Box::pin(async move {
                let mut sql = c.sql(
                    "SELECT p.*, f.actual FROM predictions p LEFT JOIN feedback f \
                     ON f.request_id = p.request_id AND f.row_index = p.row_index WHERE p.deployment = ",
                );
                let d = sql.arg(page.deployment.as_str());
                sql.push(&d);
                if let Some(before) = page.before_id {
                    let b = sql.arg(before);
                    sql.push(" AND p.id < ").push(&b);
                }
                let l = sql.arg(page.limit.max(1));
                sql.push(" ORDER BY p.id DESC LIMIT ").push(&l);
                c.fetch_all(sql).await?.into_iter().map(prediction_from_row).collect()
            })
        })
        .await
    }

    /// The logged rows of one request, in row order.
    pub async fn request_predictions(&self, request_id: &str) -> Result<Vec<LoggedPrediction>> {
        let id = request_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT p.*, f.actual FROM predictions p LEFT JOIN feedback f \
                     ON f.request_id = p.request_id AND f.row_index = p.row_index \
                     WHERE p.request_id = $1 ORDER BY p.row_index, p.id",
                    [id.into()],
                );
                c.fetch_all(sql).await?.into_iter().map(prediction_from_row).collect()
            })
        })
        .await
    }

    /// Records ground truth, all or nothing. Every request must be in the log with a successful
    /// answer; `row` must be one of its rows; without `row`, a request of several rows takes a
    /// list of as many actual values. A second report for a row replaces the first. Returns the
    /// number of rows given ground truth.
    /// With `deployment`, the requests must have been answered by it.
    pub async fn record_actuals(&self, deployment: Option<&str>, actuals: Vec<Actual>) -> Result<usize> {
        let deployment = deployment.map(str::to_owned);
        if actuals.is_empty() {
            return Err(Error::invalid("no feedback given: send {\"request_id\": ..., \"actual\": ...}"));
        }
        self.write(move |c| {
            Box::pin(async move {
                // Rows per logged request, looked up in chunks.
                let mut rows_of: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
                let mut ids: Vec<&str> = actuals.iter().map(|a| a.request_id.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                for chunk in ids.chunks(LOOKUP_CHUNK) {
                    let mut sql = c.sql("SELECT request_id, COUNT(*) AS n FROM predictions WHERE status = 200");
                    if let Some(d) = &deployment {
                        let p = sql.arg(d.as_str());
                        sql.push(" AND deployment = ").push(&p);
                    }
                    let placeholders = sql.args(chunk.iter().copied());
                    sql.push(" AND request_id IN (").push(&placeholders).push(") GROUP BY request_id");
                    for r in c.fetch_all(sql).await? {
                        rows_of.insert(r.get("request_id")?, r.get("n")?);
                    }
                }
                let now = now_millis();
                let mut out: Vec<[Arg; 4]> = Vec::new();
                for (i, a) in actuals.iter().enumerate() {
                    let at = || format!("feedback[{i}] (request_id '{}')", a.request_id);
                    let Some(&n) = rows_of.get(&a.request_id) else {
                        return Err(Error::not_found(format!(
                            "{}: no successful prediction with this request id is in the log{} \
                             (predictions are written within a second of their answer)",
                            at(),
                            deployment.as_deref().map(|d| format!(" of '{d}'")).unwrap_or_default()
                        )));
                    };
                    let values: Vec<(i64, &serde_json::Value)> = match (a.row, &a.actual) {
                        (Some(row), _) if row < 0 || row >= n => {
                            return Err(Error::invalid(format!(
                                "{}: row {row} is out of range: the request had {n} row(s)",
                                at()
                            )));
                        }
                        (Some(row), v) => vec![(row, v)],
                        (None, serde_json::Value::Array(list)) if n > 1 || list.len() > 1 => {
                            if list.len() as i64 != n {
                                return Err(Error::invalid(format!(
                                    "{}: {} actual values for a request of {n} row(s)",
                                    at(),
                                    list.len()
                                )));
                            }
                            list.iter().enumerate().map(|(r, v)| (r as i64, v)).collect()
                        }
                        (None, v) if n == 1 => vec![(0, v)],
                        (None, _) => {
                            return Err(Error::invalid(format!(
                                "{}: the request had {n} rows: give `row` or a list of {n} actual values",
                                at()
                            )));
                        }
                    };
                    for (row, v) in values {
                        if !(v.is_string() || v.is_number() || v.is_boolean()) {
                            return Err(Error::invalid(format!(
                                "{}: actual must be a number, a string or a boolean, not {v}",
                                at()
                            )));
                        }
                        out.push([a.request_id.as_str().into(), row.into(), v.to_string().into(), now.into()]);
                    }
                }
                let n = out.len();
                insert_rows(
                    c,
                    "INSERT INTO feedback (request_id, row_index, actual, time) VALUES ",
                    " ON CONFLICT (request_id, row_index) DO UPDATE SET actual = excluded.actual, time = excluded.time",
                    out,
                )
                .await?;
                Ok(n)
            })
        })
        .await
    }

    /// Deletes logged predictions (and ground truth) older than `cutoff` (milliseconds);
    /// returns the number of predictions deleted.
    pub async fn delete_predictions_before(&self, cutoff: i64) -> Result<u64> {
        self.write(move |c| {
            Box::pin(async move {
                let gone = c.execute(c.stmt("DELETE FROM predictions WHERE time < $1", [cutoff.into()])).await?;
                c.execute(c.stmt("DELETE FROM feedback WHERE time < $1", [cutoff.into()])).await?;
                Ok(gone)
            })
        })
        .await
    }

    /// Sets the monitor configuration (YAML text, checked by the caller) of a deployment.
    pub async fn put_monitor(&self, deployment: &str, config: &str) -> Result<()> {
        let (deployment, config) = (deployment.to_owned(), config.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "INSERT INTO monitors (deployment, config, updated_time) VALUES ($1, $2, $3) \
                     ON CONFLICT (deployment) DO UPDATE SET config = excluded.config, updated_time = excluded.updated_time",
                    [deployment.into(), config.into(), now_millis().into()],
                );
                c.execute(sql).await?;
                Ok(())
            })
        })
        .await
    }

    /// The monitor configuration of a deployment, if it has one.
    pub async fn get_monitor(&self, deployment: &str) -> Result<Option<String>> {
        let deployment = deployment.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT config FROM monitors WHERE deployment = $1", [deployment.into()]);
                c.fetch_optional(sql).await?.map(|r| r.get("config")).transpose()
            })
        })
        .await
    }

    /// Every monitored deployment and its configuration, by name.
    pub async fn list_monitors(&self) -> Result<Vec<(String, String)>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT deployment, config FROM monitors ORDER BY deployment", []);
                c.fetch_all(sql).await?.iter().map(|r| Ok((r.get("deployment")?, r.get("config")?))).collect()
            })
        })
        .await
    }

    /// Removes a deployment's monitor configuration.
    pub async fn delete_monitor(&self, deployment: &str) -> Result<()> {
        let deployment = deployment.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt("DELETE FROM monitors WHERE deployment = $1", [deployment.as_str().into()]);
                if c.execute(sql).await? == 0 {
                    return Err(Error::not_found(format!("deployment '{deployment}' has no monitors")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Keeps one evaluation's values, for reports over time.
    pub async fn record_evaluation(&self, evaluation: &MonitorEvaluation) -> Result<()> {
        let values = serde_json::to_string(&evaluation.values).map_err(|e| Error::Internal(e.to_string()))?;
        let (deployment, time) = (evaluation.deployment.clone(), evaluation.time);
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "INSERT INTO monitor_evaluations (deployment, time, vals) VALUES ($1, $2, $3)",
                    [deployment.into(), time.into(), values.into()],
                );
                c.execute(sql).await?;
                Ok(())
            })
        })
        .await
    }

    /// A deployment's evaluations since `since` (milliseconds), oldest first, at most `limit`
    /// (the newest ones).
    pub async fn evaluations(&self, deployment: &str, since: i64, limit: i64) -> Result<Vec<MonitorEvaluation>> {
        let deployment = deployment.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT * FROM monitor_evaluations WHERE deployment = $1 AND time >= $2 ORDER BY id DESC LIMIT $3",
                    [deployment.into(), since.into(), limit.into()],
                );
                let mut out = c
                    .fetch_all(sql)
                    .await?
                    .iter()
                    .map(|r| {
                        let text: String = r.get("vals")?;
                        Ok(MonitorEvaluation {
                            deployment: r.get("deployment")?,
                            time: r.get("time")?,
                            values: serde_json::from_str(&text).map_err(|e| Error::Internal(e.to_string()))?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.reverse();
                Ok(out)
            })
        })
        .await
    }

    /// Records a fired alert; returns it with its id.
    pub async fn record_alert(&self, alert: Alert) -> Result<Alert> {
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "INSERT INTO alerts (deployment, rule, metric, value, comparator, threshold, severity, fired_time, \
                     message, action, action_status, action_detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                    [
                        alert.deployment.as_str().into(),
                        alert.rule.as_str().into(),
                        alert.metric.as_str().into(),
                        alert.value.into(),
                        alert.comparator.as_str().into(),
                        alert.threshold.into(),
                        alert.severity.as_str().into(),
                        alert.fired_time.into(),
                        alert.message.as_str().into(),
                        alert.action.clone().into(),
                        alert.action_status.clone().into(),
                        alert.action_detail.clone().into(),
                    ],
                );
                let id: i64 = c.fetch_one(sql).await?.get("id")?;
                Ok(Alert { id, ..alert })
            })
        })
        .await
    }

    /// Records what an alert's action did.
    pub async fn record_alert_action(&self, id: i64, status: &str, detail: &str) -> Result<()> {
        let (status, detail) = (status.to_owned(), detail.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "UPDATE alerts SET action_status = $1, action_detail = $2 WHERE id = $3",
                    [status.into(), detail.into(), id.into()],
                );
                c.execute(sql).await?;
                Ok(())
            })
        })
        .await
    }

    /// Acknowledges an alert: `actor` is on it. The first acknowledgement stays (a second one
    /// changes nothing); returns the alert as stored.
    pub async fn acknowledge_alert(&self, id: i64, actor: &str) -> Result<Alert> {
        let actor = actor.trim().to_owned();
        if actor.is_empty() {
            return Err(Error::invalid("say who acknowledges the alert (actor)"));
        }
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "UPDATE alerts SET acknowledged_by = $1, acknowledged_time = $2 \
                     WHERE id = $3 AND acknowledged_by IS NULL",
                    [actor.into(), now_millis().into(), id.into()],
                );
                c.execute(sql).await?;
                let read = c.stmt("SELECT * FROM alerts WHERE id = $1", [id.into()]);
                let row = c.fetch_optional(read).await?.ok_or_else(|| Error::not_found(format!("no alert {id}")))?;
                alert_from_row(&row)
            })
        })
        .await
    }

    /// One alert.
    pub async fn get_alert(&self, id: i64) -> Result<Alert> {
        self.read(move |c| {
            Box::pin(async move {
                let read = c.stmt("SELECT * FROM alerts WHERE id = $1", [id.into()]);
                let row = c.fetch_optional(read).await?.ok_or_else(|| Error::not_found(format!("no alert {id}")))?;
                alert_from_row(&row)
            })
        })
        .await
    }

    /// Alerts, newest first: of one deployment or all, at most `limit`.
    pub async fn alerts(&self, deployment: Option<&str>, limit: i64) -> Result<Vec<Alert>> {
        let deployment = deployment.map(str::to_owned);
        self.read(move |c| {
            Box::pin(async move {
                let mut sql = c.sql("SELECT * FROM alerts");
                if let Some(d) = deployment {
                    let p = sql.arg(d);
                    sql.push(" WHERE deployment = ").push(&p);
                }
                let l = sql.arg(limit.max(1));
                sql.push(" ORDER BY id DESC LIMIT ").push(&l);
                c.fetch_all(sql).await?.iter().map(alert_from_row).collect()
            })
        })
        .await
    }
}
