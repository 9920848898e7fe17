//! The model registry: registered models, their versions, stages, tags and aliases.
//!
//! Version numbers come from a counter on the registered model, incremented in the same
//! transaction that inserts the version, so concurrent registrations get distinct numbers and a
//! deleted version's number is never reused. A version's `source` is checked before it is stored:
//! it must name a run, a logged model or a remote artifact location, never a file on the server
//! (MLflow advisories CVE-2023-1177, CVE-2023-2356, CVE-2024-1558).

use std::collections::HashMap;

use shipyard_core::entities::{
    KeyValue, ModelVersion, ModelVersionStatus, RegisteredModel, RegisteredModelAlias, now_millis,
};
use shipyard_core::filter::{self, Entity, Op, Value};
use shipyard_core::validation::{self, KeyKind};
use shipyard_core::{Error, Result};
use sqlx::any::AnyRow;

use crate::db::{Database, WriteTx, db_error, is_unique_violation};
use crate::search::text_condition;
use crate::sql::Sql;
use crate::tracking::{Page, col, page_token_after, parse_page_token};

/// The legacy stages, as MLflow spells them.
pub const STAGES: &[&str] = &["None", "Staging", "Production", "Archived"];

/// What a client sends to create a model version.
#[derive(Debug, Clone, Default)]
pub struct NewModelVersion {
    /// Registered model name.
    pub name: String,
    /// Where the files are: `models:/<model_id>`, `runs:/<run_id>/<path>`, or an artifact URI.
    pub source: String,
    /// Run that produced it.
    pub run_id: Option<String>,
    /// Tags.
    pub tags: Vec<KeyValue>,
    /// Link to the run.
    pub run_link: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Logged model it was made from.
    pub model_id: Option<String>,
    /// Who registers it.
    pub user_id: Option<String>,
}

fn canonical_stage(stage: &str) -> Result<&'static str> {
    STAGES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(stage))
        .copied()
        .ok_or_else(|| {
            Error::invalid(format!(
                "Invalid Model Version stage: {stage}. Value must be one of {}.",
                STAGES.join(", ")
            ))
        })
}

fn model_not_found(name: &str) -> Error {
    Error::not_found(format!("Registered Model with name={name} not found"))
}

fn version_not_found(name: &str, version: &str) -> Error {
    Error::not_found(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

fn parse_version(version: &str) -> Result<i64> {
    version
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            Error::invalid(format!(
                "Parameter 'version' must be an integer, got '{version}'."
            ))
        })
}

fn validate_alias(alias: &str) -> Result<()> {
    if alias.is_empty() {
        return Err(Error::invalid("Alias must not be empty."));
    }
    validation::check_length("alias", alias, 255)?;
    if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::invalid(format!(
            "Invalid alias name: '{alias}'. Aliases may only contain alphanumerics, underscores (_) and dashes (-)."
        )));
    }
    let lower = alias.to_ascii_lowercase();
    if lower == "latest"
        || (lower.len() > 1
            && lower.starts_with('v')
            && lower[1..].chars().all(|c| c.is_ascii_digit()))
    {
        return Err(Error::invalid(format!(
            "Invalid alias name: '{alias}'. Alias name cannot be 'latest' or a version reference such as 'v1'."
        )));
    }
    Ok(())
}

/// Checks a version source: no local paths, no traversal, no URL tricks.
fn validate_source(source: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "Invalid model version source: '{source}'. {why}"
        )))
    };
    if source.is_empty() {
        return bad("The source must not be empty.");
    }
    let decoded = percent_encoding::percent_decode_str(source).decode_utf8_lossy();
    let decoded = percent_encoding::percent_decode_str(&decoded)
        .decode_utf8_lossy()
        .into_owned();
    if decoded.contains('#') || decoded.contains('\\') || decoded.chars().any(char::is_control) {
        return bad("Fragments, backslashes and control characters are not allowed.");
    }
    if decoded
        .split('/')
        .any(|s| s == ".." || s.starts_with("..;"))
    {
        return bad("Relative path segments ('..') are not allowed.");
    }
    let Some((scheme, _)) = source.split_once(':') else {
        return bad(
            "Local paths are not allowed as sources; use runs:/, models:/ or an artifact URI.",
        );
    };
    match scheme.to_ascii_lowercase().as_str() {
        "runs" | "models" | "mlflow-artifacts" | "s3" | "s3a" | "gs" | "wasbs" | "abfss" | "az"
        | "http" | "https" | "hdfs" | "dbfs" => Ok(()),
        "file" => bad("Local file sources are not allowed."),
        other => bad(&format!("The scheme '{other}' is not supported.")),
    }
}

impl Database {
    async fn registered_model_id(
        &self,
        exec: impl sqlx::Executor<'_, Database = sqlx::Any>,
        name: &str,
    ) -> Result<i64> {
        sqlx::query_scalar("SELECT id FROM registered_models WHERE name = $1")
            .bind(name)
            .fetch_optional(exec)
            .await
            .map_err(db_error)?
            .ok_or_else(|| model_not_found(name))
    }

    /// Creates a registered model.
    pub async fn create_registered_model(
        &self,
        name: &str,
        tags: &[KeyValue],
        description: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<RegisteredModel> {
        validation::validate_name("registered model", name)?;
        for t in tags {
            validation::validate_key(KeyKind::Tag, &t.key)?;
            validation::check_length(
                "registered model tag value",
                &t.value,
                validation::MAX_REGISTRY_TAG_VAL_LENGTH,
            )?;
        }
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO registered_models (name, creation_time, last_updated_time, description, user_id, last_version)
             VALUES ($1, $2, $2, $3, $4, 0) RETURNING id",
        )
        .bind(name)
        .bind(now)
        .bind(description.map(str::to_owned))
        .bind(user_id.map(str::to_owned))
        .fetch_one(&mut *tx.tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => col(&row, "id")?,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::AlreadyExists(format!(
                    "Registered Model (name={name}) already exists."
                )));
            }
            Err(e) => return Err(db_error(e)),
        };
        for t in tags {
            upsert_registry_tag(&mut tx, "registered_model_tags", id, None, t).await?;
        }
        tx.commit().await?;
        self.get_registered_model(name).await
    }

    /// Gets a registered model with its latest versions per stage, tags and aliases.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        let row = sqlx::query("SELECT * FROM registered_models WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .ok_or_else(|| model_not_found(name))?;
        Ok(self
            .attach_registered_model_data(vec![row])
            .await?
            .remove(0))
    }

    async fn attach_registered_model_data(
        &self,
        rows: Vec<AnyRow>,
    ) -> Result<Vec<RegisteredModel>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| col::<i64>(r, "id"))
            .collect::<Result<_>>()?;
        let mut tags_sql = Sql::new(
            self.dialect,
            "SELECT registered_model_id, key, value FROM registered_model_tags WHERE registered_model_id IN (",
        );
        let list = tags_sql.args(ids.iter().copied());
        tags_sql.push(&list).push(") ORDER BY key");
        let tag_rows = tags_sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut alias_sql = Sql::new(
            self.dialect,
            "SELECT registered_model_id, alias, version FROM registered_model_aliases WHERE registered_model_id IN (",
        );
        let list = alias_sql.args(ids.iter().copied());
        alias_sql.push(&list).push(") ORDER BY alias");
        let alias_rows = alias_sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        // The latest version in each stage.
        let mut latest_sql = Sql::new(
            self.dialect,
            "SELECT mv.registered_model_id, mv.version FROM model_versions mv WHERE mv.registered_model_id IN (",
        );
        let list = latest_sql.args(ids.iter().copied());
        latest_sql.push(&list).push(
            ") AND mv.version = (SELECT MAX(v2.version) FROM model_versions v2
               WHERE v2.registered_model_id = mv.registered_model_id AND v2.current_stage = mv.current_stage)",
        );
        let latest_rows = latest_sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut latest_keys = Vec::new();
        for r in &latest_rows {
            latest_keys.push((
                col::<i64>(r, "registered_model_id")?,
                col::<i64>(r, "version")?,
            ));
        }
        let mut latest_by: HashMap<i64, Vec<ModelVersion>> = HashMap::new();
        for (rm, mv) in self.load_versions(&latest_keys).await? {
            latest_by.entry(rm).or_default().push(mv);
        }
        let mut tags_by: HashMap<i64, Vec<KeyValue>> = HashMap::new();
        for r in &tag_rows {
            tags_by
                .entry(col(r, "registered_model_id")?)
                .or_default()
                .push(KeyValue {
                    key: col(r, "key")?,
                    value: col(r, "value")?,
                });
        }
        let mut aliases_by: HashMap<i64, Vec<RegisteredModelAlias>> = HashMap::new();
        for r in &alias_rows {
            aliases_by
                .entry(col(r, "registered_model_id")?)
                .or_default()
                .push(RegisteredModelAlias {
                    alias: col(r, "alias")?,
                    version: col::<i64>(r, "version")?.to_string(),
                });
        }
        rows.iter()
            .map(|r| {
                let id: i64 = col(r, "id")?;
                let mut latest = latest_by.remove(&id).unwrap_or_default();
                latest.sort_by_key(|v| v.version.parse::<i64>().unwrap_or(0));
                Ok(RegisteredModel {
                    name: col(r, "name")?,
                    creation_timestamp: col(r, "creation_time")?,
                    last_updated_timestamp: col(r, "last_updated_time")?,
                    user_id: col(r, "user_id")?,
                    description: col(r, "description")?,
                    latest_versions: latest,
                    tags: tags_by.remove(&id).unwrap_or_default(),
                    aliases: aliases_by.remove(&id).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Loads model versions by (registered model id, version), with tags and aliases.
    async fn load_versions(&self, keys: &[(i64, i64)]) -> Result<Vec<(i64, ModelVersion)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(200) {
            let mut sql = Sql::new(
                self.dialect,
                "SELECT mv.*, rm.name FROM model_versions mv JOIN registered_models rm ON rm.id = mv.registered_model_id WHERE ",
            );
            let conds: Vec<String> = chunk
                .iter()
                .map(|(rm, v)| {
                    let a = sql.arg(*rm);
                    let b = sql.arg(*v);
                    format!("(mv.registered_model_id = {a} AND mv.version = {b})")
                })
                .collect();
            sql.push(&conds.join(" OR "));
            let rows = sql.query().fetch_all(&self.pool).await.map_err(db_error)?;
            out.extend(self.versions_from_rows(&rows).await?);
        }
        let order: HashMap<(i64, i64), usize> =
            keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        out.sort_by_key(|(rm, v)| {
            order
                .get(&(*rm, v.version.parse::<i64>().unwrap_or(0)))
                .copied()
                .unwrap_or(usize::MAX)
        });
        Ok(out)
    }

    async fn versions_from_rows(&self, rows: &[AnyRow]) -> Result<Vec<(i64, ModelVersion)>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = Vec::with_capacity(rows.len());
        for r in rows {
            keys.push((
                col::<i64>(r, "registered_model_id")?,
                col::<i64>(r, "version")?,
            ));
        }
        let mut tag_sql = Sql::new(
            self.dialect,
            "SELECT registered_model_id, version, key, value FROM model_version_tags WHERE registered_model_id IN (",
        );
        let ids = tag_sql.args(keys.iter().map(|k| k.0));
        tag_sql.push(&ids).push(") ORDER BY key");
        let tag_rows = tag_sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut alias_sql = Sql::new(
            self.dialect,
            "SELECT registered_model_id, version, alias FROM registered_model_aliases WHERE registered_model_id IN (",
        );
        let ids = alias_sql.args(keys.iter().map(|k| k.0));
        alias_sql.push(&ids).push(") ORDER BY alias");
        let alias_rows = alias_sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut tags_by: HashMap<(i64, i64), Vec<KeyValue>> = HashMap::new();
        for r in &tag_rows {
            tags_by
                .entry((col(r, "registered_model_id")?, col(r, "version")?))
                .or_default()
                .push(KeyValue {
                    key: col(r, "key")?,
                    value: col(r, "value")?,
                });
        }
        let mut aliases_by: HashMap<(i64, i64), Vec<String>> = HashMap::new();
        for r in &alias_rows {
            aliases_by
                .entry((col(r, "registered_model_id")?, col(r, "version")?))
                .or_default()
                .push(col(r, "alias")?);
        }
        rows.iter()
            .zip(keys)
            .map(|(r, key)| {
                let status: String = col(r, "status")?;
                let run_id: Option<String> = col(r, "run_id")?;
                Ok((
                    key.0,
                    ModelVersion {
                        name: col(r, "name")?,
                        version: key.1.to_string(),
                        creation_timestamp: col(r, "creation_time")?,
                        last_updated_timestamp: col(r, "last_updated_time")?,
                        user_id: col(r, "user_id")?,
                        current_stage: col(r, "current_stage")?,
                        description: col(r, "description")?,
                        source: col(r, "source")?,
                        run_id: run_id.filter(|r| !r.is_empty()),
                        status: ModelVersionStatus::parse(&status).ok_or_else(|| {
                            Error::Internal(format!("unknown model version status '{status}'"))
                        })?,
                        status_message: col(r, "status_message")?,
                        tags: tags_by.remove(&key).unwrap_or_default(),
                        run_link: col(r, "run_link")?,
                        aliases: aliases_by.remove(&key).unwrap_or_default(),
                        model_id: col(r, "model_id")?,
                    },
                ))
            })
            .collect()
    }

    /// Renames a registered model; its versions, tags and aliases follow.
    pub async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
    ) -> Result<RegisteredModel> {
        validation::validate_name("registered model", new_name)?;
        let mut tx = self.begin_write().await?;
        let id = self.registered_model_id(&mut *tx.tx, name).await?;
        let r = sqlx::query(
            "UPDATE registered_models SET name = $1, last_updated_time = $2 WHERE id = $3",
        )
        .bind(new_name)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx.tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::AlreadyExists(format!(
                    "Registered Model (name={new_name}) already exists."
                )));
            }
            Err(e) => return Err(db_error(e)),
        }
        tx.commit().await?;
        self.get_registered_model(new_name).await
    }

    /// Sets a registered model's description.
    pub async fn update_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RegisteredModel> {
        let mut tx = self.begin_write().await?;
        let id = self.registered_model_id(&mut *tx.tx, name).await?;
        sqlx::query(
            "UPDATE registered_models SET description = $1, last_updated_time = $2 WHERE id = $3",
        )
        .bind(description)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        tx.commit().await?;
        self.get_registered_model(name).await
    }

    /// Deletes a registered model with its versions, tags and aliases.
    pub async fn delete_registered_model(&self, name: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = self.registered_model_id(&mut *tx.tx, name).await?;
        sqlx::query("DELETE FROM registered_models WHERE id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        tx.commit().await
    }

    /// Sets a tag on a registered model.
    pub async fn set_registered_model_tag(&self, name: &str, tag: &KeyValue) -> Result<()> {
        validation::validate_key(KeyKind::Tag, &tag.key)?;
        validation::check_length(
            "registered model tag value",
            &tag.value,
            validation::MAX_REGISTRY_TAG_VAL_LENGTH,
        )?;
        let mut tx = self.begin_write().await?;
        let id = self.registered_model_id(&mut *tx.tx, name).await?;
        upsert_registry_tag(&mut tx, "registered_model_tags", id, None, tag).await?;
        touch_registered_model(&mut tx, id).await?;
        tx.commit().await
    }

    /// Deletes a tag of a registered model.
    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = self.registered_model_id(&mut *tx.tx, name).await?;
        let r = sqlx::query(
            "DELETE FROM registered_model_tags WHERE registered_model_id = $1 AND key = $2",
        )
        .bind(id)
        .bind(key)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "No tag with name: {key} in registered model {name}"
            )));
        }
        tx.commit().await
    }

    /// Searches registered models.
    pub async fn search_registered_models(
        &self,
        filter_text: Option<&str>,
        max_results: Option<i64>,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<RegisteredModel>> {
        const ATTRIBUTES: &[(&str, bool)] = &[("name", false)];
        const ORDER: &[&str] = &[
            "name",
            "timestamp",
            "last_updated_timestamp",
            "creation_timestamp",
        ];
        let limit = max_results.unwrap_or(100);
        validation::validate_max_results(limit, 1000)?;
        let comparisons =
            filter::attribute_filter(filter_text.unwrap_or(""), ATTRIBUTES, &[Entity::Tag])?;
        let orders = order_by
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| filter::order_by(o, ORDER, &[]))
            .collect::<Result<Vec<_>>>()?;
        let offset = parse_page_token(page_token)?;
        let mut sql = Sql::new(
            self.dialect,
            "SELECT rm.* FROM registered_models rm WHERE 1 = 1",
        );
        for c in &comparisons {
            let cond = match c.entity {
                Entity::Tag => {
                    let key = sql.arg(c.key.as_str());
                    match c.op {
                        // A model without the tag is "not equal" to any value (the client's
                        // `tag.mlflow.prompt.is_prompt != 'true'` must keep untagged models).
                        Op::Ne => {
                            let v = sql.arg(c.str_value().unwrap_or_default());
                            format!(
                                "NOT EXISTS (SELECT 1 FROM registered_model_tags t WHERE t.registered_model_id = rm.id AND t.key = {key} AND t.value = {v})"
                            )
                        }
                        Op::IsNull => format!(
                            "NOT EXISTS (SELECT 1 FROM registered_model_tags t WHERE t.registered_model_id = rm.id AND t.key = {key})"
                        ),
                        Op::IsNotNull => format!(
                            "EXISTS (SELECT 1 FROM registered_model_tags t WHERE t.registered_model_id = rm.id AND t.key = {key})"
                        ),
                        _ => {
                            let cond = text_condition(&mut sql, self.dialect, "t.value", c)?;
                            format!(
                                "EXISTS (SELECT 1 FROM registered_model_tags t WHERE t.registered_model_id = rm.id AND t.key = {key} AND {cond})"
                            )
                        }
                    }
                }
                _ => text_condition(&mut sql, self.dialect, "rm.name", c)?,
            };
            sql.push(" AND ").push(&cond);
        }
        let mut terms: Vec<String> = orders
            .iter()
            .map(|o| {
                let column = match o.key.as_str() {
                    "name" => "rm.name",
                    "creation_timestamp" => "rm.creation_time",
                    _ => "rm.last_updated_time",
                };
                format!("{column} {}", if o.ascending { "ASC" } else { "DESC" })
            })
            .collect();
        terms.push("rm.name ASC".into());
        sql.push(" ORDER BY ").push(&terms.join(", "));
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
            items: self.attach_registered_model_data(rows).await?,
            next_page_token,
        })
    }

    /// The latest version in each of `stages` (all stages when empty).
    pub async fn get_latest_versions(
        &self,
        name: &str,
        stages: &[String],
    ) -> Result<Vec<ModelVersion>> {
        let model = self.get_registered_model(name).await?;
        if stages.is_empty() {
            return Ok(model.latest_versions);
        }
        let wanted: Vec<&str> = stages
            .iter()
            .map(|s| canonical_stage(s))
            .collect::<Result<_>>()?;
        Ok(model
            .latest_versions
            .into_iter()
            .filter(|v| wanted.contains(&v.current_stage.as_str()))
            .collect())
    }

    /// Registers a new version of a model.
    pub async fn create_model_version(&self, new: NewModelVersion) -> Result<ModelVersion> {
        validate_source(&new.source)?;
        for t in &new.tags {
            validation::validate_key(KeyKind::Tag, &t.key)?;
            validation::check_length(
                "model version tag value",
                &t.value,
                validation::MAX_REGISTRY_TAG_VAL_LENGTH,
            )?;
        }
        // Resolve where the files are and which run made them.
        let mut run_id = new.run_id.clone().filter(|r| !r.is_empty());
        let mut model_id = new.model_id.clone().filter(|m| !m.is_empty());
        let storage_location = if let Some(mid) = new
            .source
            .strip_prefix("models:/")
            .filter(|m| m.starts_with("m-"))
        {
            let mid = mid.trim_end_matches('/');
            let model = self.get_logged_model(mid).await?;
            run_id = run_id.or(model.info.source_run_id.clone());
            model_id = Some(model.info.model_id.clone());
            model.info.artifact_uri
        } else if let Some(rest) = new.source.strip_prefix("runs:/") {
            let (rid, path) = rest.split_once('/').unwrap_or((rest, ""));
            let run = self.get_run(rid).await?;
            run_id = run_id.or(Some(rid.to_owned()));
            if path.is_empty() {
                run.info.artifact_uri
            } else {
                format!("{}/{path}", run.info.artifact_uri)
            }
        } else {
            if let Some(mid) = model_id.as_deref() {
                self.get_logged_model(mid).await?;
            }
            new.source.clone()
        };
        if let Some(rid) = run_id.as_deref() {
            self.run_row(rid).await?;
        }
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let id = self.registered_model_id(&mut *tx.tx, &new.name).await?;
        let version: i64 = sqlx::query_scalar(
            "UPDATE registered_models SET last_version = last_version + 1, last_updated_time = $1 WHERE id = $2 RETURNING last_version",
        )
        .bind(now)
        .bind(id)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO model_versions (registered_model_id, version, creation_time, last_updated_time, description,
                user_id, current_stage, source, storage_location, run_id, run_link, status, model_id)
             VALUES ($1, $2, $3, $3, $4, $5, 'None', $6, $7, $8, $9, 'READY', $10)",
        )
        .bind(id)
        .bind(version)
        .bind(now)
        .bind(new.description.unwrap_or_default())
        .bind(new.user_id)
        .bind(&new.source)
        .bind(storage_location)
        .bind(run_id)
        .bind(new.run_link.unwrap_or_default())
        .bind(model_id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        for t in &new.tags {
            upsert_registry_tag(&mut tx, "model_version_tags", id, Some(version), t).await?;
        }
        tx.commit().await?;
        self.get_model_version(&new.name, &version.to_string())
            .await
    }

    async fn version_key(
        &self,
        exec: impl sqlx::Executor<'_, Database = sqlx::Any>,
        name: &str,
        version: &str,
    ) -> Result<(i64, i64)> {
        let v = parse_version(version)?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT mv.registered_model_id FROM model_versions mv JOIN registered_models rm ON rm.id = mv.registered_model_id
             WHERE rm.name = $1 AND mv.version = $2",
        )
        .bind(name)
        .bind(v)
        .fetch_optional(exec)
        .await
        .map_err(db_error)?;
        id.map(|id| (id, v))
            .ok_or_else(|| version_not_found(name, version))
    }

    /// Gets a model version.
    pub async fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let key = self.version_key(&self.pool, name, version).await?;
        self.load_versions(&[key])
            .await?
            .pop()
            .map(|(_, v)| v)
            .ok_or_else(|| version_not_found(name, version))
    }

    /// Sets a version's description.
    pub async fn update_model_version(
        &self,
        name: &str,
        version: &str,
        description: &str,
    ) -> Result<ModelVersion> {
        let mut tx = self.begin_write().await?;
        let (id, v) = self.version_key(&mut *tx.tx, name, version).await?;
        sqlx::query("UPDATE model_versions SET description = $1, last_updated_time = $2 WHERE registered_model_id = $3 AND version = $4")
            .bind(description)
            .bind(now_millis())
            .bind(id)
            .bind(v)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        tx.commit().await?;
        self.get_model_version(name, version).await
    }

    /// Moves a version to a legacy stage, optionally archiving the others in that stage.
    pub async fn transition_model_version_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing_versions: bool,
    ) -> Result<ModelVersion> {
        let stage = canonical_stage(stage)?;
        if archive_existing_versions && !matches!(stage, "Staging" | "Production") {
            return Err(Error::invalid(format!(
                "Model version transition cannot archive existing model versions because '{stage}' is not an Active stage. \
                 Valid stages are Staging, Production"
            )));
        }
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let (id, v) = self.version_key(&mut *tx.tx, name, version).await?;
        if archive_existing_versions {
            sqlx::query(
                "UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $1
                 WHERE registered_model_id = $2 AND current_stage = $3 AND version != $4",
            )
            .bind(now)
            .bind(id)
            .bind(stage)
            .bind(v)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        }
        sqlx::query("UPDATE model_versions SET current_stage = $1, last_updated_time = $2 WHERE registered_model_id = $3 AND version = $4")
            .bind(stage)
            .bind(now)
            .bind(id)
            .bind(v)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        touch_registered_model(&mut tx, id).await?;
        tx.commit().await?;
        self.get_model_version(name, version).await
    }

    /// Deletes a version, its tags and the aliases pointing at it.
    pub async fn delete_model_version(&self, name: &str, version: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let (id, v) = self.version_key(&mut *tx.tx, name, version).await?;
        sqlx::query(
            "DELETE FROM registered_model_aliases WHERE registered_model_id = $1 AND version = $2",
        )
        .bind(id)
        .bind(v)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM model_versions WHERE registered_model_id = $1 AND version = $2")
            .bind(id)
            .bind(v)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        touch_registered_model(&mut tx, id).await?;
        tx.commit().await
    }

    /// Where a version's files are, as an artifact URI.
    pub async fn get_model_version_download_uri(
        &self,
        name: &str,
        version: &str,
    ) -> Result<String> {
        let (id, v) = self.version_key(&self.pool, name, version).await?;
        let location: Option<String> = sqlx::query_scalar(
            "SELECT COALESCE(storage_location, source) FROM model_versions WHERE registered_model_id = $1 AND version = $2",
        )
        .bind(id)
        .bind(v)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        location.ok_or_else(|| version_not_found(name, version))
    }

    /// Sets a tag on a version.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        tag: &KeyValue,
    ) -> Result<()> {
        validation::validate_key(KeyKind::Tag, &tag.key)?;
        validation::check_length(
            "model version tag value",
            &tag.value,
            validation::MAX_REGISTRY_TAG_VAL_LENGTH,
        )?;
        let mut tx = self.begin_write().await?;
        let (id, v) = self.version_key(&mut *tx.tx, name, version).await?;
        upsert_registry_tag(&mut tx, "model_version_tags", id, Some(v), tag).await?;
        tx.commit().await
    }

    /// Deletes a tag of a version.
    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let (id, v) = self.version_key(&mut *tx.tx, name, version).await?;
        let r = sqlx::query("DELETE FROM model_version_tags WHERE registered_model_id = $1 AND version = $2 AND key = $3")
            .bind(id)
            .bind(v)
            .bind(key)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error)?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "No tag with name: {key} in model version {name} {version}"
            )));
        }
        tx.commit().await
    }

    /// Points an alias at a version (moving it if it pointed elsewhere).
    pub async fn set_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<()> {
        validate_alias(alias)?;
        let mut tx = self.begin_write().await?;
        let (id, v) = self.version_key(&mut *tx.tx, name, version).await?;
        sqlx::query(
            "INSERT INTO registered_model_aliases (registered_model_id, alias, version) VALUES ($1, $2, $3)
             ON CONFLICT (registered_model_id, alias) DO UPDATE SET version = excluded.version",
        )
        .bind(id)
        .bind(alias)
        .bind(v)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        touch_registered_model(&mut tx, id).await?;
        tx.commit().await
    }

    /// Removes an alias.
    pub async fn delete_registered_model_alias(&self, name: &str, alias: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = self.registered_model_id(&mut *tx.tx, name).await?;
        sqlx::query(
            "DELETE FROM registered_model_aliases WHERE registered_model_id = $1 AND alias = $2",
        )
        .bind(id)
        .bind(alias)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
        touch_registered_model(&mut tx, id).await?;
        tx.commit().await
    }

    /// The version an alias points at.
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion> {
        let id = self.registered_model_id(&self.pool, name).await?;
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM registered_model_aliases WHERE registered_model_id = $1 AND alias = $2")
                .bind(id)
                .bind(alias)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        let version = version
            .ok_or_else(|| Error::invalid(format!("Registered model alias {alias} not found.")))?;
        self.get_model_version(name, &version.to_string()).await
    }

    /// Searches model versions.
    pub async fn search_model_versions(
        &self,
        filter_text: Option<&str>,
        max_results: Option<i64>,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<ModelVersion>> {
        const ATTRIBUTES: &[(&str, bool)] = &[
            ("name", false),
            ("run_id", false),
            ("source_path", false),
            ("version_number", true),
            ("model_id", false),
        ];
        const ORDER: &[&str] = &[
            "name",
            "version_number",
            "creation_timestamp",
            "last_updated_timestamp",
            "timestamp",
        ];
        let limit = max_results.unwrap_or(10_000);
        validation::validate_max_results(limit, 200_000)?;
        let comparisons =
            filter::attribute_filter(filter_text.unwrap_or(""), ATTRIBUTES, &[Entity::Tag])?;
        let orders = order_by
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| filter::order_by(o, ORDER, &[]))
            .collect::<Result<Vec<_>>>()?;
        let offset = parse_page_token(page_token)?;
        let mut sql = Sql::new(
            self.dialect,
            "SELECT mv.*, rm.name FROM model_versions mv JOIN registered_models rm ON rm.id = mv.registered_model_id WHERE 1 = 1",
        );
        for c in &comparisons {
            let cond = match (c.entity, c.key.as_str()) {
                (Entity::Tag, _) => {
                    let key = sql.arg(c.key.as_str());
                    let exists = "SELECT 1 FROM model_version_tags t WHERE t.registered_model_id = mv.registered_model_id AND t.version = mv.version";
                    match c.op {
                        Op::IsNull => format!("NOT EXISTS ({exists} AND t.key = {key})"),
                        Op::IsNotNull => format!("EXISTS ({exists} AND t.key = {key})"),
                        _ => {
                            let cond = text_condition(&mut sql, self.dialect, "t.value", c)?;
                            format!("EXISTS ({exists} AND t.key = {key} AND {cond})")
                        }
                    }
                }
                (_, "version_number") => match &c.value {
                    Value::Num(n, _) => {
                        let p = sql.arg(*n as i64);
                        format!("mv.version {} {p}", c.op.as_sql())
                    }
                    _ => {
                        return Err(Error::invalid(
                            "version_number must be compared with a number",
                        ));
                    }
                },
                (_, key) => {
                    let column = match key {
                        "name" => "rm.name",
                        "run_id" => "mv.run_id",
                        "model_id" => "mv.model_id",
                        _ => "mv.source",
                    };
                    text_condition(&mut sql, self.dialect, column, c)?
                }
            };
            sql.push(" AND ").push(&cond);
        }
        let mut terms: Vec<String> = orders
            .iter()
            .map(|o| {
                let column = match o.key.as_str() {
                    "name" => "rm.name",
                    "version_number" => "mv.version",
                    "creation_timestamp" => "mv.creation_time",
                    _ => "mv.last_updated_time",
                };
                format!("{column} {}", if o.ascending { "ASC" } else { "DESC" })
            })
            .collect();
        terms.push("rm.name ASC".into());
        terms.push("mv.version DESC".into());
        sql.push(" ORDER BY ").push(&terms.join(", "));
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
        let items = self
            .versions_from_rows(&rows)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        Ok(Page {
            items,
            next_page_token,
        })
    }
}

async fn upsert_registry_tag(
    tx: &mut WriteTx,
    table: &str,
    id: i64,
    version: Option<i64>,
    tag: &KeyValue,
) -> Result<()> {
    let sql = match version {
        None => format!(
            "INSERT INTO {table} (registered_model_id, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (registered_model_id, key) DO UPDATE SET value = excluded.value"
        ),
        Some(_) => format!(
            "INSERT INTO {table} (registered_model_id, key, value, version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (registered_model_id, version, key) DO UPDATE SET value = excluded.value"
        ),
    };
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&tag.key)
        .bind(&tag.value);
    if let Some(v) = version {
        q = q.bind(v);
    }
    q.execute(&mut *tx.tx).await.map_err(db_error)?;
    Ok(())
}

async fn touch_registered_model(tx: &mut WriteTx, id: i64) -> Result<()> {
    sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE id = $2")
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_pointing_at_the_server_are_refused() {
        for ok in [
            "models:/m-abc",
            "runs:/abc/model",
            "mlflow-artifacts:/1/abc/artifacts/model",
            "s3://b/k",
        ] {
            validate_source(ok).unwrap();
        }
        for bad in [
            "/etc/passwd",
            "file:///etc/passwd",
            "relative/path",
            "runs:/abc/../../etc",
            "mlflow-artifacts:/1/%2e%2e/%2e%2e/x",
            "mlflow-artifacts:/1/%252e%252e/x",
            "s3://b/k#frag",
            "http://x/a\\..\\b",
            "",
        ] {
            assert!(validate_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aliases_cannot_look_like_versions() {
        validate_alias("champion").unwrap();
        validate_alias("prod-2").unwrap();
        for bad in ["latest", "v1", "V12", "", "a b", "x/y"] {
            assert!(validate_alias(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stages_are_case_insensitive() {
        assert_eq!(canonical_stage("staging").unwrap(), "Staging");
        assert_eq!(canonical_stage("PRODUCTION").unwrap(), "Production");
        assert!(canonical_stage("prod").is_err());
    }
}
