//! Summaries for people looking at the store (the web UI): how many runs an experiment has and
//! when it last changed, which metric, param and tag keys its runs use (the columns a runs
//! table can show, found over the whole experiment rather than one page of runs), and the
//! smallest and largest value each run logged of a metric (the best epoch, not only the last).

use shipyard_core::Result;
use shipyard_core::entities::Run;

use crate::db::Database;
use crate::search::PARENT_RUN_TAG;
use crate::sql::Sql;
use crate::tracking::{RUN_COLUMNS, attach_run_data, parse_experiment_id, run_row};

/// An experiment's active runs and its last activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentActivity {
    pub experiment_id: String,
    /// Active runs.
    pub runs: i64,
    /// The latest start or end of any of its runs, in ms; `None` without runs.
    pub last_run_time: Option<i64>,
}

/// The keys an experiment's active runs use, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExperimentKeys {
    pub metrics: Vec<String>,
    pub params: Vec<String>,
    pub tags: Vec<String>,
}

/// The smallest and largest value a run logged of one metric (NaN left out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRange {
    pub min: f64,
    pub max: f64,
}

/// The children of some runs, as a runs table shows them under their parents.
#[derive(Debug, Clone, Default)]
pub struct ChildRuns {
    /// Per parent id, its active children (in start order), at most the number asked for.
    pub shown: std::collections::HashMap<String, Vec<Run>>,
    /// Per parent id, how many active children it has in all.
    pub counts: std::collections::HashMap<String, i64>,
}

impl Database {
    /// The active child runs (tagged `mlflow.parentRunId`) of `parents`: each parent's first
    /// `per_parent` children by start time, and how many it has in all.
    pub async fn child_runs(&self, parents: &[String], per_parent: i64) -> Result<ChildRuns> {
        if parents.is_empty() {
            return Ok(ChildRuns::default());
        }
        let dialect = self.dialect();
        let mut counts_sql = Sql::new(
            dialect,
            "SELECT t.value AS parent, COUNT(*) AS n FROM tags t JOIN runs r ON r.run_key = t.run_key \
             WHERE r.lifecycle_stage = 'active' AND t.key = ",
        );
        let tag = counts_sql.arg(PARENT_RUN_TAG);
        counts_sql.push(&tag).push(" AND t.value IN (");
        let list = counts_sql.args(parents.iter().map(String::as_str));
        counts_sql.push(&list).push(") GROUP BY t.value");
        let mut rows_sql = Sql::new(
            dialect,
            format!(
                "SELECT * FROM (SELECT {RUN_COLUMNS}, t.value AS parent, \
                 ROW_NUMBER() OVER (PARTITION BY t.value ORDER BY runs.start_time, runs.run_uuid) AS nth \
                 FROM runs JOIN tags t ON t.run_key = runs.run_key \
                 WHERE runs.lifecycle_stage = 'active' AND t.key = "
            ),
        );
        let tag = rows_sql.arg(PARENT_RUN_TAG);
        rows_sql.push(&tag).push(" AND t.value IN (");
        let list = rows_sql.args(parents.iter().map(String::as_str));
        rows_sql.push(&list).push(")) children WHERE nth <= ");
        let cap = rows_sql.arg(per_parent.max(0));
        rows_sql.push(&cap).push(" ORDER BY parent, nth");
        self.read(move |c| {
            Box::pin(async move {
                let mut found = ChildRuns::default();
                for row in c.fetch_all(counts_sql).await? {
                    found.counts.insert(row.get("parent")?, row.get("n")?);
                }
                let rows = c.fetch_all(rows_sql).await?;
                let parents_of: Vec<String> = rows.iter().map(|r| r.get("parent")).collect::<Result<_>>()?;
                let runs = attach_run_data(c, rows.iter().map(run_row).collect::<Result<Vec<_>>>()?).await?;
                for (parent, run) in parents_of.into_iter().zip(runs) {
                    found.shown.entry(parent).or_default().push(run);
                }
                Ok(found)
            })
        })
        .await
    }

    /// Per run and metric key: the range of the values logged, over every step. Runs or keys
    /// without a (non-NaN) value are absent.
    pub async fn metric_ranges(
        &self,
        run_ids: &[String],
        keys: &[String],
    ) -> Result<std::collections::HashMap<(String, String), MetricRange>> {
        if run_ids.is_empty() || keys.is_empty() {
            return Ok(Default::default());
        }
        let mut sql = Sql::new(
            self.dialect(),
            "SELECT r.run_uuid AS run_id, m.key AS key, MIN(m.value) AS min_value, MAX(m.value) AS max_value \
             FROM metrics m JOIN runs r ON r.run_key = m.run_key WHERE m.is_nan = 0 AND r.run_uuid IN (",
        );
        let runs = sql.args(run_ids.iter().map(String::as_str));
        sql.push(&runs).push(") AND m.key IN (");
        let wanted = sql.args(keys.iter().map(String::as_str));
        sql.push(&wanted).push(") GROUP BY r.run_uuid, m.key");
        let rows = self.read(move |c| Box::pin(async move { Ok(c.fetch_all(sql).await?) })).await?;
        let mut ranges = std::collections::HashMap::new();
        for row in rows {
            ranges.insert(
                (row.get::<String>("run_id")?, row.get::<String>("key")?),
                MetricRange { min: row.get("min_value")?, max: row.get("max_value")? },
            );
        }
        Ok(ranges)
    }

    /// Run counts and last activity of the experiments `ids` (those with no runs get zero).
    pub async fn experiment_activity(&self, ids: &[String]) -> Result<Vec<ExperimentActivity>> {
        let keys: Vec<i64> = ids.iter().map(|id| parse_experiment_id(id)).collect::<Result<_>>()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(
            self.dialect(),
            "SELECT experiment_id, COUNT(*) AS runs, MAX(COALESCE(end_time, start_time)) AS last_time \
             FROM runs WHERE lifecycle_stage = 'active' AND experiment_id IN (",
        );
        let list = sql.args(keys.iter().copied());
        sql.push(&list).push(") GROUP BY experiment_id");
        let rows = self.read(move |c| Box::pin(async move { Ok(c.fetch_all(sql).await?) })).await?;
        let mut found = std::collections::HashMap::new();
        for row in rows {
            let id: i64 = row.get("experiment_id")?;
            found.insert(id, (row.get::<i64>("runs")?, row.get::<Option<i64>>("last_time")?));
        }
        Ok(keys
            .iter()
            .map(|k| {
                let (runs, last_run_time) = found.get(k).copied().unwrap_or((0, None));
                ExperimentActivity { experiment_id: k.to_string(), runs, last_run_time }
            })
            .collect())
    }

    /// The metric, param and tag keys the experiment's active runs use (tags of MLflow's own,
    /// `mlflow.*`, left out).
    pub async fn experiment_keys(&self, experiment_id: &str) -> Result<ExperimentKeys> {
        let id = parse_experiment_id(experiment_id)?;
        // Each distinct key is found by a skip scan of the table's key index (one probe per
        // key, the "loose index scan" both SQLite and PostgreSQL run as a recursive query), then
        // kept if one active run of the experiment has it: a few ms where a DISTINCT over every
        // (run, key) row took 130 ms at 10,000 runs x 50 metrics.
        let query = |table: &str| {
            let mut sql = Sql::new(
                self.dialect(),
                format!(
                    "WITH RECURSIVE k(key) AS (SELECT MIN(key) FROM {table} UNION ALL \
                     SELECT (SELECT MIN(key) FROM {table} WHERE key > k.key) FROM k WHERE k.key IS NOT NULL) \
                     SELECT key FROM k WHERE key IS NOT NULL AND EXISTS (SELECT 1 FROM {table} t \
                     JOIN runs r ON r.run_key = t.run_key WHERE t.key = k.key AND r.lifecycle_stage = 'active' \
                     AND r.experiment_id = "
                ),
            );
            let arg = sql.arg(id);
            sql.push(&arg).push(") ORDER BY key");
            sql
        };
        let (metrics, params, tags) = (query("latest_metrics"), query("params"), query("tags"));
        self.read(move |c| {
            Box::pin(async move {
                let mut keys = ExperimentKeys::default();
                for (sql, into) in [(metrics, &mut keys.metrics), (params, &mut keys.params), (tags, &mut keys.tags)] {
                    for row in c.fetch_all(sql).await? {
                        into.push(row.get::<String>("key")?);
                    }
                }
                keys.tags.retain(|k| !k.starts_with("mlflow."));
                Ok(keys)
            })
        })
        .await
    }
}
