//! Searches of runs and experiments, run in the database.
//!
//! A parsed filter becomes `WHERE` conditions over indexed columns: each metric, param or tag
//! comparison is an `EXISTS` on its table's `(run, key)` primary key, attributes compare columns
//! of `runs` directly, and ordering joins only the keys it orders by. Only the requested page of
//! runs is read, then its data is attached in a fixed number of queries. Nothing loads all runs
//! into memory.

use shipyard_core::entities::{Experiment, Run, ViewType};
use shipyard_core::filter::{self, Comparison, Entity, Op, Value};
use shipyard_core::validation;
use shipyard_core::{Error, Result};

use crate::db::{Database, Dialect};
use crate::sql::Sql;
use crate::tracking::{
    Page, RUN_COLUMNS, attach_run_data, experiments_where, parse_experiment_id, parse_page_token, run_row,
};

/// Default page size of run searches (MLflow's `SEARCH_MAX_RESULTS_DEFAULT`).
pub const SEARCH_RUNS_DEFAULT_MAX_RESULTS: i64 = 1000;

/// A string comparison of `column` against the comparison's value (`=`, `!=`, `LIKE`, `ILIKE`,
/// `IN`, `NOT IN`, and the ordering comparators).
pub(crate) fn text_condition(sql: &mut Sql, dialect: Dialect, column: &str, c: &Comparison) -> Result<String> {
    Ok(match (&c.op, &c.value) {
        (Op::Like, Value::Str(s)) => {
            let p = sql.arg(dialect.like_pattern(s));
            dialect.like(column, &p)
        }
        (Op::ILike, Value::Str(s)) => {
            let p = sql.arg(s.as_str());
            dialect.ilike(column, &p)
        }
        (Op::In | Op::NotIn, Value::List(items)) => {
            let list = sql.args(items.iter().map(String::as_str));
            format!("{column} {} ({list})", c.op.as_sql())
        }
        (Op::IsNull | Op::IsNotNull, _) => format!("{column} {}", c.op.as_sql()),
        (op, Value::Str(s)) if op.is_numeric() => {
            let p = sql.arg(s.as_str());
            format!("{column} {} {p}", op.as_sql())
        }
        _ => {
            return Err(Error::invalid(format!(
                "Invalid comparison '{} {}' on '{}'",
                c.op.as_sql(),
                match &c.value {
                    Value::Num(_, raw) => raw.clone(),
                    _ => String::new(),
                },
                c.key
            )));
        }
    })
}

/// A comparison of a column against a number or a string.
pub(crate) fn comparison_sql(sql: &mut Sql, dialect: Dialect, column: &str, c: &Comparison) -> Result<String> {
    match &c.value {
        Value::Num(n, _) => {
            // Integer columns (times) compare with the integer when the number is whole.
            let p = if n.fract() == 0.0 && n.abs() < 9.0e15 { sql.arg(*n as i64) } else { sql.arg(*n) };
            Ok(format!("{column} {} {p}", c.op.as_sql()))
        }
        _ => text_condition(sql, dialect, column, c),
    }
}

/// A comparison on a key/value table (params or tags of some owner): `owner` is the condition
/// tying a row `t` of `table` to the searched row, e.g. `t.run_key = runs.run_key`.
/// `IS NULL` means "has no such key"; other comparators need the key to be present.
pub(crate) fn key_value_condition(
    sql: &mut Sql,
    dialect: Dialect,
    table: &str,
    owner: &str,
    c: &Comparison,
) -> Result<String> {
    let key = sql.arg(c.key.as_str());
    let exists = format!("SELECT 1 FROM {table} t WHERE {owner} AND t.key = {key}");
    let fence = dialect.subquery_fence();
    Ok(match c.op {
        Op::IsNull => format!("NOT EXISTS ({exists}{fence})"),
        Op::IsNotNull => format!("EXISTS ({exists}{fence})"),
        _ => {
            let cond = text_condition(sql, dialect, "t.value", c)?;
            format!("EXISTS ({exists} AND {cond}{fence})")
        }
    })
}

/// A comparison on a metric table (`m` rows with `key`, `value`, `is_nan`): `owner` ties a row
/// `m` to the searched row. NaN values never match.
pub(crate) fn metric_condition(sql: &mut Sql, dialect: Dialect, table: &str, owner: &str, c: &Comparison) -> String {
    let key = sql.arg(c.key.as_str());
    let value = sql.arg(c.num_value().unwrap_or_default());
    format!(
        "EXISTS (SELECT 1 FROM {table} m WHERE {owner} AND m.key = {key} AND m.is_nan = 0 AND m.value {} {value}{})",
        c.op.as_sql(),
        dialect.subquery_fence()
    )
}

/// Appends `ORDER BY terms LIMIT limit+1 OFFSET offset`: one row more than the page, so that
/// [`Page::from_overfetch`] knows whether there is a next page.
pub(crate) fn order_and_page(sql: &mut Sql, terms: &[String], limit: i64, offset: i64) {
    sql.push(" ORDER BY ").push(&terms.join(", "));
    let lim = sql.arg(limit + 1);
    let off = sql.arg(offset);
    sql.push(&format!(" LIMIT {lim} OFFSET {off}"));
}

/// `ASC` or `DESC`.
pub(crate) fn direction(ascending: bool) -> &'static str {
    if ascending { "ASC" } else { "DESC" }
}

fn run_attribute_column(key: &str) -> Option<&'static str> {
    Some(match key {
        "run_id" => "runs.run_uuid",
        "run_name" => "runs.name",
        "status" => "runs.status",
        "user_id" => "runs.user_id",
        "artifact_uri" => "runs.artifact_uri",
        "lifecycle_stage" => "runs.lifecycle_stage",
        "start_time" => "runs.start_time",
        "end_time" => "runs.end_time",
        "experiment_id" => "runs.experiment_id",
        _ => return None,
    })
}

/// Attributes `search_runs` can order by.
const RUN_ORDER_ATTRIBUTES: &[&str] = &[
    "start_time",
    "end_time",
    "run_name",
    "status",
    "run_id",
    "user_id",
    "artifact_uri",
    "lifecycle_stage",
    "experiment_id",
];

/// The condition for one comparison of a run filter.
fn run_condition(sql: &mut Sql, dialect: Dialect, c: &Comparison) -> Result<String> {
    Ok(match c.entity {
        Entity::Attribute => {
            let column = run_attribute_column(&c.key)
                .ok_or_else(|| Error::invalid(format!("Invalid attribute key '{}'", c.key)))?;
            comparison_sql(sql, dialect, column, c)?
        }
        Entity::Metric => metric_condition(sql, dialect, "latest_metrics", "m.run_key = runs.run_key", c),
        Entity::Param => key_value_condition(sql, dialect, "params", "t.run_key = runs.run_key", c)?,
        Entity::Tag => key_value_condition(sql, dialect, "tags", "t.run_key = runs.run_key", c)?,
        Entity::Dataset => {
            let (column, join) = match c.key.as_str() {
                "name" => ("d.name", ""),
                "digest" => ("d.digest", ""),
                _ => (
                    "it.value",
                    " JOIN run_dataset_input_tags it ON it.run_key = i.run_key AND it.dataset_uuid = i.dataset_uuid \
                      AND it.key = 'mlflow.data.context'",
                ),
            };
            let cond = text_condition(sql, dialect, column, c)?;
            format!(
                "EXISTS (SELECT 1 FROM run_dataset_inputs i JOIN datasets d ON d.dataset_uuid = i.dataset_uuid{join} \
                 WHERE i.run_key = runs.run_key AND {cond}{})",
                dialect.subquery_fence()
            )
        }
    })
}

/// A search of runs with every option: what `search_runs` takes, and whether to leave out child
/// runs (those tagged `mlflow.parentRunId`), so a table can page over the top-level runs and show
/// each one's children under it.
#[derive(Debug, Clone, Copy)]
pub struct RunSearch<'a> {
    pub experiment_ids: &'a [String],
    pub filter: Option<&'a str>,
    pub view: ViewType,
    pub max_results: Option<i64>,
    pub order_by: &'a [String],
    pub page_token: Option<&'a str>,
    pub top_level_only: bool,
}

/// The tag MLflow gives a child run: its parent's id.
pub const PARENT_RUN_TAG: &str = "mlflow.parentRunId";

impl Database {
    /// Searches the runs of some experiments.
    pub async fn search_runs(
        &self,
        experiment_ids: &[String],
        filter_text: Option<&str>,
        view: ViewType,
        max_results: Option<i64>,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<Run>> {
        self.search_runs_with(RunSearch {
            experiment_ids,
            filter: filter_text,
            view,
            max_results,
            order_by,
            page_token,
            top_level_only: false,
        })
        .await
    }

    /// Searches runs as `search` says (the REST API's search, plus the top-level scope).
    pub async fn search_runs_with(&self, search: RunSearch<'_>) -> Result<Page<Run>> {
        let RunSearch { experiment_ids, filter: filter_text, view, max_results, order_by, page_token, top_level_only } =
            search;
        let limit = max_results.unwrap_or(SEARCH_RUNS_DEFAULT_MAX_RESULTS);
        validation::validate_max_results(limit, validation::SEARCH_MAX_RESULTS_THRESHOLD)?;
        let comparisons = filter::run_filter(filter_text.unwrap_or(""))?;
        let orders = order_by
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| filter::order_by(o, RUN_ORDER_ATTRIBUTES, &[Entity::Metric, Entity::Param, Entity::Tag]))
            .collect::<Result<Vec<_>>>()?;
        let offset = parse_page_token(page_token)?;
        if experiment_ids.is_empty() {
            return Ok(Page { items: Vec::new(), next_page_token: None });
        }
        let ids: Vec<i64> = experiment_ids.iter().map(|e| parse_experiment_id(e)).collect::<Result<_>>()?;

        let dialect = self.dialect();
        let mut sql = Sql::new(dialect, format!("SELECT {RUN_COLUMNS} FROM runs"));
        // Order-by joins come first so their placeholders are numbered before the WHERE clause's.
        let mut order_terms = Vec::new();
        for (i, o) in orders.iter().enumerate() {
            let dir = direction(o.ascending);
            match o.entity {
                Entity::Metric => {
                    let key = sql.arg(o.key.as_str());
                    sql.push(&format!(
                        " LEFT JOIN latest_metrics o{i} ON o{i}.run_key = runs.run_key AND o{i}.key = {key}"
                    ));
                    // Values first, then NaN, then runs without the metric, in either direction.
                    order_terms
                        .push(format!("CASE WHEN o{i}.value IS NULL THEN 2 WHEN o{i}.is_nan = 1 THEN 1 ELSE 0 END"));
                    order_terms.push(format!("o{i}.value {dir}"));
                }
                Entity::Param | Entity::Tag => {
                    let table = if o.entity == Entity::Param { "params" } else { "tags" };
                    let key = sql.arg(o.key.as_str());
                    sql.push(&format!(" LEFT JOIN {table} o{i} ON o{i}.run_key = runs.run_key AND o{i}.key = {key}"));
                    order_terms.push(format!("(o{i}.value IS NULL)"));
                    order_terms.push(format!("o{i}.value {dir}"));
                }
                _ => {
                    let column = run_attribute_column(&o.key)
                        .ok_or_else(|| Error::invalid(format!("Invalid order_by key '{}'", o.key)))?;
                    order_terms.push(format!("({column} IS NULL)"));
                    order_terms.push(format!("{column} {dir}"));
                }
            }
        }
        sql.push(" WHERE runs.experiment_id IN (");
        let list = sql.args(ids);
        sql.push(&list).push(") AND runs.lifecycle_stage IN (");
        let stages = sql.args(view.stages().iter().copied());
        sql.push(&stages).push(")");
        for c in &comparisons {
            let cond = run_condition(&mut sql, dialect, c)?;
            sql.push(" AND ").push(&cond);
        }
        if top_level_only {
            let tag = sql.arg(PARENT_RUN_TAG);
            sql.push(&format!(
                " AND NOT EXISTS (SELECT 1 FROM tags parent WHERE parent.run_key = runs.run_key AND parent.key = {tag})"
            ));
        }
        if !orders.iter().any(|o| o.entity == Entity::Attribute && o.key == "start_time") {
            order_terms.push("runs.start_time DESC".into());
        }
        order_terms.push("runs.run_uuid ASC".into());
        order_and_page(&mut sql, &order_terms, limit, offset);

        self.read(move |c| {
            Box::pin(async move {
                let rows = c.fetch_all(sql).await?;
                let run_rows = rows.iter().map(run_row).collect::<Result<Vec<_>>>()?;
                let page = Page::from_overfetch(run_rows, offset, limit);
                Ok(Page { items: attach_run_data(c, page.items).await?, next_page_token: page.next_page_token })
            })
        })
        .await
    }

    /// Searches experiments.
    pub async fn search_experiments(
        &self,
        view: ViewType,
        max_results: Option<i64>,
        filter_text: Option<&str>,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<Experiment>> {
        const ATTRIBUTES: &[(&str, bool)] =
            &[("name", false), ("experiment_id", false), ("creation_time", true), ("last_update_time", true)];
        const ORDER_ATTRIBUTES: &[&str] = &["name", "experiment_id", "creation_time", "last_update_time"];
        let limit = max_results.unwrap_or(1000);
        validation::validate_max_results(limit, validation::SEARCH_MAX_RESULTS_THRESHOLD)?;
        let comparisons = filter::attribute_filter(filter_text.unwrap_or(""), ATTRIBUTES, &[Entity::Tag])?;
        let orders = order_by
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| filter::order_by(o, ORDER_ATTRIBUTES, &[]))
            .collect::<Result<Vec<_>>>()?;
        let dialect = self.dialect();
        let offset = parse_page_token(page_token)?;

        let mut sql = Sql::new(dialect, "SELECT e.* FROM experiments e WHERE e.lifecycle_stage IN (");
        let stages = sql.args(view.stages().iter().copied());
        sql.push(&stages).push(")");
        for c in &comparisons {
            let cond = match c.entity {
                Entity::Tag => {
                    key_value_condition(&mut sql, dialect, "experiment_tags", "t.experiment_id = e.experiment_id", c)?
                }
                _ if c.key == "experiment_id" => {
                    // Ids are strings on the wire and integers in the table.
                    let ids: Vec<i64> = match &c.value {
                        Value::Str(s) => vec![parse_experiment_id(s)?],
                        Value::List(items) => items.iter().map(|s| parse_experiment_id(s)).collect::<Result<_>>()?,
                        _ => {
                            return Err(Error::invalid("experiment_id must be compared with quoted ids"));
                        }
                    };
                    let list = sql.args(ids);
                    match c.op {
                        Op::Eq | Op::In => format!("e.experiment_id IN ({list})"),
                        Op::Ne | Op::NotIn => format!("e.experiment_id NOT IN ({list})"),
                        _ => {
                            return Err(Error::invalid(format!(
                                "Invalid comparator '{}' for experiment_id",
                                c.op.as_sql()
                            )));
                        }
                    }
                }
                _ => comparison_sql(&mut sql, dialect, &format!("e.{}", c.key), c)?,
            };
            sql.push(" AND ").push(&cond);
        }
        let mut order_terms: Vec<String> =
            orders.iter().map(|o| format!("e.{} {}", o.key, direction(o.ascending))).collect();
        if orders.is_empty() {
            order_terms.push("e.creation_time DESC".into());
        }
        order_terms.push("e.experiment_id ASC".into());
        order_and_page(&mut sql, &order_terms, limit, offset);
        self.read(move |c| {
            Box::pin(async move { Ok(Page::from_overfetch(experiments_where(c, sql).await?, offset, limit)) })
        })
        .await
    }
}
