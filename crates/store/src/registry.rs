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

use crate::db::{Conn, Database};
use crate::logged_models::logged_model_by_id;
use crate::promotion::{Move, MoveKind, point_alias, record_move};
use crate::search::{direction, key_value_condition, order_and_page, text_condition};
use crate::sql::{Row, Sql};
use crate::tracking::{Page, parse_page_token, run_by_id, unique_violation};

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
    STAGES.iter().find(|s| s.eq_ignore_ascii_case(stage)).copied().ok_or_else(|| {
        Error::invalid(format!("Invalid Model Version stage: {stage}. Value must be one of {}.", STAGES.join(", ")))
    })
}

fn model_not_found(name: &str) -> Error {
    Error::not_found(format!("Registered Model with name={name} not found"))
}

fn version_not_found(name: &str, version: &str) -> Error {
    Error::not_found(format!("Model Version (name={name}, version={version}) not found"))
}

fn parse_version(version: &str) -> Result<i64> {
    version
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| Error::invalid(format!("Parameter 'version' must be an integer, got '{version}'.")))
}

pub(crate) fn validate_alias(alias: &str) -> Result<()> {
    if alias.is_empty() {
        return Err(Error::invalid("Alias must not be empty."));
    }
    validation::check_length("alias", alias, 255)?;
    if !alias.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
        return Err(Error::invalid(format!(
            "Invalid alias name: '{alias}'. Aliases may only contain alphanumerics, underscores (_) and dashes (-)."
        )));
    }
    let lower = alias.to_ascii_lowercase();
    if lower == "latest"
        || (lower.len() > 1 && lower.starts_with('v') && lower[1..].chars().all(|c| c.is_ascii_digit()))
    {
        return Err(Error::invalid(format!(
            "Invalid alias name: '{alias}'. Alias name cannot be 'latest' or a version reference such as 'v1'."
        )));
    }
    Ok(())
}

/// Checks a version source: no local paths, no traversal, no URL tricks.
fn validate_source(source: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("Invalid model version source: '{source}'. {why}")));
    if source.is_empty() {
        return bad("The source must not be empty.");
    }
    let decoded = percent_encoding::percent_decode_str(source).decode_utf8_lossy();
    let decoded = percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy().into_owned();
    if decoded.contains('#') || decoded.contains('\\') || decoded.chars().any(char::is_control) {
        return bad("Fragments, backslashes and control characters are not allowed.");
    }
    if decoded.split('/').any(|s| s == ".." || s.starts_with("..;")) {
        return bad("Relative path segments ('..') are not allowed.");
    }
    let Some((scheme, _)) = source.split_once(':') else {
        return bad("Local paths are not allowed as sources; use runs:/, models:/ or an artifact URI.");
    };
    match scheme.to_ascii_lowercase().as_str() {
        "runs" | "models" | "mlflow-artifacts" | "s3" | "s3a" | "gs" | "wasbs" | "abfss" | "az" | "http" | "https"
        | "hdfs" | "dbfs" => Ok(()),
        "file" => bad("Local file sources are not allowed."),
        other => bad(&format!("The scheme '{other}' is not supported.")),
    }
}

/// The id of a registered model, or `NotFound`.
pub(crate) async fn registered_model_id(c: &mut Conn<'_>, name: &str) -> Result<i64> {
    let sql = c.stmt("SELECT id FROM registered_models WHERE name = $1", [name.into()]);
    c.fetch_optional(sql).await?.ok_or_else(|| model_not_found(name))?.get("id")
}

/// [`registered_model_id`], locking the model's row until the transaction ends (PostgreSQL;
/// SQLite has one writer), so alias moves of one model are serialized.
pub(crate) async fn registered_model_id_for_update(c: &mut Conn<'_>, name: &str) -> Result<i64> {
    let text = format!("SELECT id FROM registered_models WHERE name = $1{}", c.dialect().for_update());
    let sql = c.stmt(&text, [name.into()]);
    c.fetch_optional(sql).await?.ok_or_else(|| model_not_found(name))?.get("id")
}

/// The (registered model id, version) of a version, or `NotFound`.
async fn version_key(c: &mut Conn<'_>, name: &str, version: &str) -> Result<(i64, i64)> {
    let v = parse_version(version)?;
    let sql = c.stmt(
        "SELECT mv.registered_model_id FROM model_versions mv JOIN registered_models rm ON rm.id = mv.registered_model_id \
         WHERE rm.name = $1 AND mv.version = $2",
        [name.into(), v.into()],
    );
    let row = c.fetch_optional(sql).await?.ok_or_else(|| version_not_found(name, version))?;
    Ok((row.get("registered_model_id")?, v))
}

async fn registered_model_by_name(c: &mut Conn<'_>, name: &str) -> Result<RegisteredModel> {
    let sql = c.stmt("SELECT * FROM registered_models WHERE name = $1", [name.into()]);
    let row = c.fetch_optional(sql).await?.ok_or_else(|| model_not_found(name))?;
    Ok(attach_registered_model_data(c, vec![row]).await?.remove(0))
}

async fn attach_registered_model_data(c: &mut Conn<'_>, rows: Vec<Row>) -> Result<Vec<RegisteredModel>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.get::<i64>("id")).collect::<Result<_>>()?;
    let by_models = |c: &Conn<'_>, head: &str, tail: &str| {
        let mut sql = c.sql(head);
        let list = sql.args(ids.iter().copied());
        sql.push(&list).push(tail);
        sql
    };
    let tag_rows = c
        .fetch_all(by_models(
            c,
            "SELECT registered_model_id, key, value FROM registered_model_tags WHERE registered_model_id IN (",
            ") ORDER BY key",
        ))
        .await?;
    let alias_rows = c
        .fetch_all(by_models(
            c,
            "SELECT registered_model_id, alias, version FROM registered_model_aliases WHERE registered_model_id IN (",
            ") ORDER BY alias",
        ))
        .await?;
    // The latest version in each stage.
    let latest_rows = c
        .fetch_all(by_models(
            c,
            "SELECT mv.registered_model_id, mv.version FROM model_versions mv WHERE mv.registered_model_id IN (",
            ") AND mv.version = (SELECT MAX(v2.version) FROM model_versions v2 \
               WHERE v2.registered_model_id = mv.registered_model_id AND v2.current_stage = mv.current_stage)",
        ))
        .await?;
    let mut latest_keys = Vec::new();
    for r in &latest_rows {
        latest_keys.push((r.get::<i64>("registered_model_id")?, r.get::<i64>("version")?));
    }
    let mut latest_by: HashMap<i64, Vec<ModelVersion>> = HashMap::new();
    for (rm, mv) in load_versions(c, &latest_keys).await? {
        latest_by.entry(rm).or_default().push(mv);
    }
    let mut tags_by: HashMap<i64, Vec<KeyValue>> = HashMap::new();
    for r in &tag_rows {
        tags_by
            .entry(r.get("registered_model_id")?)
            .or_default()
            .push(KeyValue { key: r.get("key")?, value: r.get("value")? });
    }
    let mut aliases_by: HashMap<i64, Vec<RegisteredModelAlias>> = HashMap::new();
    for r in &alias_rows {
        aliases_by
            .entry(r.get("registered_model_id")?)
            .or_default()
            .push(RegisteredModelAlias { alias: r.get("alias")?, version: r.get::<i64>("version")?.to_string() });
    }
    rows.iter()
        .map(|r| {
            let id: i64 = r.get("id")?;
            let mut latest = latest_by.remove(&id).unwrap_or_default();
            latest.sort_by_key(|v| v.version.parse::<i64>().unwrap_or(0));
            Ok(RegisteredModel {
                name: r.get("name")?,
                creation_timestamp: r.get("creation_time")?,
                last_updated_timestamp: r.get("last_updated_time")?,
                user_id: r.get("user_id")?,
                description: r.get("description")?,
                latest_versions: latest,
                tags: tags_by.remove(&id).unwrap_or_default(),
                aliases: aliases_by.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}

/// Loads model versions by (registered model id, version), with tags and aliases, in key order.
async fn load_versions(c: &mut Conn<'_>, keys: &[(i64, i64)]) -> Result<Vec<(i64, ModelVersion)>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(200) {
        let mut sql = c.sql(
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
        let rows = c.fetch_all(sql).await?;
        out.extend(versions_from_rows(c, &rows).await?);
    }
    let order: HashMap<(i64, i64), usize> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    out.sort_by_key(|(rm, v)| order.get(&(*rm, v.version.parse::<i64>().unwrap_or(0))).copied().unwrap_or(usize::MAX));
    Ok(out)
}

async fn versions_from_rows(c: &mut Conn<'_>, rows: &[Row]) -> Result<Vec<(i64, ModelVersion)>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::with_capacity(rows.len());
    for r in rows {
        keys.push((r.get::<i64>("registered_model_id")?, r.get::<i64>("version")?));
    }
    let mut tag_sql =
        c.sql("SELECT registered_model_id, version, key, value FROM model_version_tags WHERE registered_model_id IN (");
    let ids = tag_sql.args(keys.iter().map(|k| k.0));
    tag_sql.push(&ids).push(") ORDER BY key");
    let tag_rows = c.fetch_all(tag_sql).await?;
    let mut alias_sql = c
        .sql("SELECT registered_model_id, version, alias FROM registered_model_aliases WHERE registered_model_id IN (");
    let ids = alias_sql.args(keys.iter().map(|k| k.0));
    alias_sql.push(&ids).push(") ORDER BY alias");
    let alias_rows = c.fetch_all(alias_sql).await?;
    let mut tags_by: HashMap<(i64, i64), Vec<KeyValue>> = HashMap::new();
    for r in &tag_rows {
        tags_by
            .entry((r.get("registered_model_id")?, r.get("version")?))
            .or_default()
            .push(KeyValue { key: r.get("key")?, value: r.get("value")? });
    }
    let mut aliases_by: HashMap<(i64, i64), Vec<String>> = HashMap::new();
    for r in &alias_rows {
        aliases_by.entry((r.get("registered_model_id")?, r.get("version")?)).or_default().push(r.get("alias")?);
    }
    rows.iter()
        .zip(keys)
        .map(|(r, key)| {
            let status: String = r.get("status")?;
            let run_id: Option<String> = r.get("run_id")?;
            Ok((
                key.0,
                ModelVersion {
                    name: r.get("name")?,
                    version: key.1.to_string(),
                    creation_timestamp: r.get("creation_time")?,
                    last_updated_timestamp: r.get("last_updated_time")?,
                    user_id: r.get("user_id")?,
                    current_stage: r.get("current_stage")?,
                    description: r.get("description")?,
                    source: r.get("source")?,
                    run_id: run_id.filter(|r| !r.is_empty()),
                    status: ModelVersionStatus::parse(&status)
                        .ok_or_else(|| Error::Internal(format!("unknown model version status '{status}'")))?,
                    status_message: r.get("status_message")?,
                    tags: tags_by.remove(&key).unwrap_or_default(),
                    run_link: r.get("run_link")?,
                    aliases: aliases_by.remove(&key).unwrap_or_default(),
                    model_id: r.get("model_id")?,
                },
            ))
        })
        .collect()
}

pub(crate) async fn load_model_version(c: &mut Conn<'_>, name: &str, version: &str) -> Result<ModelVersion> {
    model_version(c, name, version).await
}

async fn model_version(c: &mut Conn<'_>, name: &str, version: &str) -> Result<ModelVersion> {
    let key = version_key(c, name, version).await?;
    load_versions(c, &[key]).await?.pop().map(|(_, v)| v).ok_or_else(|| version_not_found(name, version))
}

impl Database {
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
            validation::check_length("registered model tag value", &t.value, validation::MAX_REGISTRY_TAG_VAL_LENGTH)?;
        }
        let (name, tags) = (name.to_owned(), tags.to_vec());
        let (description, user_id) = (description.map(str::to_owned), user_id.map(str::to_owned));
        self.write(move |c| {
            Box::pin(async move {
                let insert = c.stmt(
                    "INSERT INTO registered_models (name, creation_time, last_updated_time, description, user_id, last_version) \
                     VALUES ($1, $2, $2, $3, $4, 0) RETURNING id",
                    [name.as_str().into(), now_millis().into(), description.into(), user_id.into()],
                );
                let Some(row) = unique_violation(c.fetch_one(insert).await)? else {
                    return Err(Error::AlreadyExists(format!("Registered Model (name={name}) already exists.")));
                };
                let id: i64 = row.get("id")?;
                for t in &tags {
                    upsert_registry_tag(c, "registered_model_tags", id, None, t).await?;
                }
                registered_model_by_name(c, &name).await
            })
        })
        .await
    }

    /// Gets a registered model with its latest versions per stage, tags and aliases.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        let name = name.to_owned();
        self.read(move |c| Box::pin(async move { registered_model_by_name(c, &name).await })).await
    }

    /// Renames a registered model; its versions, tags and aliases follow.
    pub async fn rename_registered_model(&self, name: &str, new_name: &str) -> Result<RegisteredModel> {
        validation::validate_name("registered model", new_name)?;
        let (name, new_name) = (name.to_owned(), new_name.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let id = registered_model_id(c, &name).await?;
                let update = c.stmt(
                    "UPDATE registered_models SET name = $1, last_updated_time = $2 WHERE id = $3",
                    [new_name.as_str().into(), now_millis().into(), id.into()],
                );
                if unique_violation(c.execute(update).await)?.is_none() {
                    return Err(Error::AlreadyExists(format!("Registered Model (name={new_name}) already exists.")));
                }
                registered_model_by_name(c, &new_name).await
            })
        })
        .await
    }

    /// Sets a registered model's description.
    pub async fn update_registered_model(&self, name: &str, description: &str) -> Result<RegisteredModel> {
        let (name, description) = (name.to_owned(), description.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let id = registered_model_id(c, &name).await?;
                let update = c.stmt(
                    "UPDATE registered_models SET description = $1, last_updated_time = $2 WHERE id = $3",
                    [description.into(), now_millis().into(), id.into()],
                );
                c.execute(update).await?;
                registered_model_by_name(c, &name).await
            })
        })
        .await
    }

    /// Deletes a registered model with its versions, tags and aliases.
    pub async fn delete_registered_model(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let id = registered_model_id(c, &name).await?;
                c.execute(c.stmt("DELETE FROM registered_models WHERE id = $1", [id.into()])).await?;
                Ok(())
            })
        })
        .await
    }

    /// Sets a tag on a registered model.
    pub async fn set_registered_model_tag(&self, name: &str, tag: &KeyValue) -> Result<()> {
        validation::validate_key(KeyKind::Tag, &tag.key)?;
        validation::check_length("registered model tag value", &tag.value, validation::MAX_REGISTRY_TAG_VAL_LENGTH)?;
        let (name, tag) = (name.to_owned(), tag.clone());
        self.write(move |c| {
            Box::pin(async move {
                let id = registered_model_id(c, &name).await?;
                upsert_registry_tag(c, "registered_model_tags", id, None, &tag).await?;
                touch_registered_model(c, id).await
            })
        })
        .await
    }

    /// Deletes a tag of a registered model.
    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<()> {
        let (name, key) = (name.to_owned(), key.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let id = registered_model_id(c, &name).await?;
                let delete = c.stmt(
                    "DELETE FROM registered_model_tags WHERE registered_model_id = $1 AND key = $2",
                    [id.into(), key.as_str().into()],
                );
                if c.execute(delete).await? == 0 {
                    return Err(Error::not_found(format!("No tag with name: {key} in registered model {name}")));
                }
                Ok(())
            })
        })
        .await
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
        const ORDER: &[&str] = &["name", "timestamp", "last_updated_timestamp", "creation_timestamp"];
        let limit = max_results.unwrap_or(100);
        validation::validate_max_results(limit, 1000)?;
        let comparisons = filter::attribute_filter(filter_text.unwrap_or(""), ATTRIBUTES, &[Entity::Tag])?;
        let orders = order_by
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| filter::order_by(o, ORDER, &[]))
            .collect::<Result<Vec<_>>>()?;
        let offset = parse_page_token(page_token)?;
        let dialect = self.dialect();
        let mut sql = Sql::new(dialect, "SELECT rm.* FROM registered_models rm WHERE 1 = 1");
        for c in &comparisons {
            let cond = match c.entity {
                // A model without the tag is "not equal" to any value: the client's own
                // `tag.mlflow.prompt.is_prompt != 'true'` must keep untagged models.
                Entity::Tag if c.op == Op::Ne => {
                    let key = sql.arg(c.key.as_str());
                    let value = sql.arg(c.str_value().unwrap_or_default());
                    format!(
                        "NOT EXISTS (SELECT 1 FROM registered_model_tags t WHERE t.registered_model_id = rm.id \
                         AND t.key = {key} AND t.value = {value}{})",
                        dialect.subquery_fence()
                    )
                }
                Entity::Tag => {
                    key_value_condition(&mut sql, dialect, "registered_model_tags", "t.registered_model_id = rm.id", c)?
                }
                _ => text_condition(&mut sql, dialect, "rm.name", c)?,
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
                format!("{column} {}", direction(o.ascending))
            })
            .collect();
        terms.push("rm.name ASC".into());
        order_and_page(&mut sql, &terms, limit, offset);
        self.read(move |c| {
            Box::pin(async move {
                let page = Page::from_overfetch(c.fetch_all(sql).await?, offset, limit);
                Ok(Page {
                    items: attach_registered_model_data(c, page.items).await?,
                    next_page_token: page.next_page_token,
                })
            })
        })
        .await
    }

    /// The latest version in each of `stages` (all stages when empty).
    pub async fn get_latest_versions(&self, name: &str, stages: &[String]) -> Result<Vec<ModelVersion>> {
        let wanted: Vec<&str> = stages.iter().map(|s| canonical_stage(s)).collect::<Result<_>>()?;
        let model = self.get_registered_model(name).await?;
        if wanted.is_empty() {
            return Ok(model.latest_versions);
        }
        Ok(model.latest_versions.into_iter().filter(|v| wanted.contains(&v.current_stage.as_str())).collect())
    }

    /// Registers a run's model (`runs:/RUN_ID/model`) as a new version of `name`, creating the
    /// registered model when missing, as MLflow's `registered_model_name` does; returns the
    /// version.
    pub async fn register_run_model(&self, name: &str, run_id: &str, user: Option<&str>) -> Result<ModelVersion> {
        match self.create_registered_model(name, &[], None, None).await {
            Ok(_) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        self.create_model_version(NewModelVersion {
            name: name.to_owned(),
            source: format!("runs:/{run_id}/model"),
            run_id: Some(run_id.to_owned()),
            user_id: user.map(str::to_owned),
            ..Default::default()
        })
        .await
    }

    /// Registers a new version of a model.
    pub async fn create_model_version(&self, new: NewModelVersion) -> Result<ModelVersion> {
        validate_source(&new.source)?;
        for t in &new.tags {
            validation::validate_key(KeyKind::Tag, &t.key)?;
            validation::check_length("model version tag value", &t.value, validation::MAX_REGISTRY_TAG_VAL_LENGTH)?;
        }
        self.write(move |c| {
            Box::pin(async move {
                // Resolve where the files are and which run made them.
                let mut run_id = new.run_id.clone().filter(|r| !r.is_empty());
                let mut model_id = new.model_id.clone().filter(|m| !m.is_empty());
                let storage_location = if let Some(mid) =
                    new.source.strip_prefix("models:/").filter(|m| m.starts_with("m-"))
                {
                    let model = logged_model_by_id(c, mid.trim_end_matches('/')).await?;
                    run_id = run_id.or(model.info.source_run_id.clone());
                    model_id = Some(model.info.model_id.clone());
                    model.info.artifact_uri
                } else if let Some(rest) = new.source.strip_prefix("runs:/") {
                    let (rid, path) = rest.split_once('/').unwrap_or((rest, ""));
                    let run = run_by_id(c, rid, false).await?;
                    run_id = run_id.or(Some(rid.to_owned()));
                    // MLflow 3 keeps a model the run logged under that name as a logged model,
                    // outside the run's artifacts (as `runs:/` URIs are read when fetching).
                    let name = path.trim_end_matches('/');
                    let logged = if name.is_empty() || name.contains('/') {
                        None
                    } else {
                        let sql = c.stmt(
                            "SELECT model_id FROM logged_models WHERE source_run_id = $1 AND name = $2 \
                             AND lifecycle_stage = 'active' ORDER BY creation_timestamp_ms DESC LIMIT 1",
                            [rid.into(), name.into()],
                        );
                        match c.fetch_optional(sql).await? {
                            Some(row) => Some(logged_model_by_id(c, &row.get::<String>("model_id")?).await?),
                            None => None,
                        }
                    };
                    match logged {
                        Some(model) => {
                            model_id = model_id.or(Some(model.info.model_id.clone()));
                            model.info.artifact_uri
                        }
                        None if path.is_empty() => run.info.artifact_uri,
                        None => format!("{}/{path}", run.info.artifact_uri),
                    }
                } else {
                    if let Some(mid) = model_id.as_deref() {
                        logged_model_by_id(c, mid).await?;
                    }
                    new.source.clone()
                };
                if let Some(rid) = run_id.as_deref() {
                    run_by_id(c, rid, false).await?;
                }
                let now = now_millis();
                let id = registered_model_id(c, &new.name).await?;
                let bump = c.stmt(
                    "UPDATE registered_models SET last_version = last_version + 1, last_updated_time = $1 \
                     WHERE id = $2 RETURNING last_version",
                    [now.into(), id.into()],
                );
                let version: i64 = c.fetch_one(bump).await?.get("last_version")?;
                let insert = c.stmt(
                    "INSERT INTO model_versions (registered_model_id, version, creation_time, last_updated_time, description, \
                        user_id, current_stage, source, storage_location, run_id, run_link, status, model_id) \
                     VALUES ($1, $2, $3, $3, $4, $5, 'None', $6, $7, $8, $9, 'READY', $10)",
                    [
                        id.into(),
                        version.into(),
                        now.into(),
                        new.description.clone().unwrap_or_default().into(),
                        new.user_id.clone().into(),
                        new.source.as_str().into(),
                        storage_location.into(),
                        run_id.into(),
                        new.run_link.clone().unwrap_or_default().into(),
                        model_id.into(),
                    ],
                );
                c.execute(insert).await?;
                for t in &new.tags {
                    upsert_registry_tag(c, "model_version_tags", id, Some(version), t).await?;
                }
                model_version(c, &new.name, &version.to_string()).await
            })
        })
        .await
    }

    /// Gets a model version.
    pub async fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.read(move |c| Box::pin(async move { model_version(c, &name, &version).await })).await
    }

    /// Sets a version's description.
    pub async fn update_model_version(&self, name: &str, version: &str, description: &str) -> Result<ModelVersion> {
        let (name, version, description) = (name.to_owned(), version.to_owned(), description.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let (id, v) = version_key(c, &name, &version).await?;
                let update = c.stmt(
                    "UPDATE model_versions SET description = $1, last_updated_time = $2 \
                     WHERE registered_model_id = $3 AND version = $4",
                    [description.into(), now_millis().into(), id.into(), v.into()],
                );
                c.execute(update).await?;
                model_version(c, &name, &version).await
            })
        })
        .await
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
        let (name, version) = (name.to_owned(), version.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let now = now_millis();
                let (id, v) = version_key(c, &name, &version).await?;
                if archive_existing_versions {
                    let archive = c.stmt(
                        "UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $1 \
                         WHERE registered_model_id = $2 AND current_stage = $3 AND version != $4",
                        [now.into(), id.into(), stage.into(), v.into()],
                    );
                    c.execute(archive).await?;
                }
                let update = c.stmt(
                    "UPDATE model_versions SET current_stage = $1, last_updated_time = $2 \
                     WHERE registered_model_id = $3 AND version = $4",
                    [stage.into(), now.into(), id.into(), v.into()],
                );
                c.execute(update).await?;
                touch_registered_model(c, id).await?;
                model_version(c, &name, &version).await
            })
        })
        .await
    }

    /// Deletes a version, its tags and the aliases pointing at it.
    pub async fn delete_model_version(&self, name: &str, version: &str) -> Result<()> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let (id, v) = version_key(c, &name, &version).await?;
                let held = c.stmt(
                    "SELECT alias FROM registered_model_aliases WHERE registered_model_id = $1 AND version = $2",
                    [id.into(), v.into()],
                );
                let held: Vec<String> =
                    c.fetch_all(held).await?.iter().map(|r| r.get("alias")).collect::<Result<_>>()?;
                let aliases = c.stmt(
                    "DELETE FROM registered_model_aliases WHERE registered_model_id = $1 AND version = $2",
                    [id.into(), v.into()],
                );
                c.execute(aliases).await?;
                for alias in &held {
                    let m = api_move(MoveKind::Delete, Some(v), None, Some("the version was deleted"));
                    record_move(c, &name, id, alias, m).await?;
                }
                let delete = c.stmt(
                    "DELETE FROM model_versions WHERE registered_model_id = $1 AND version = $2",
                    [id.into(), v.into()],
                );
                c.execute(delete).await?;
                touch_registered_model(c, id).await
            })
        })
        .await
    }

    /// Where a version's files are, as an artifact URI.
    pub async fn get_model_version_download_uri(&self, name: &str, version: &str) -> Result<String> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let (id, v) = version_key(c, &name, &version).await?;
                let sql = c.stmt(
                    "SELECT COALESCE(storage_location, source) AS location FROM model_versions \
                     WHERE registered_model_id = $1 AND version = $2",
                    [id.into(), v.into()],
                );
                c.fetch_optional(sql).await?.ok_or_else(|| version_not_found(&name, &version))?.get("location")
            })
        })
        .await
    }

    /// Sets a tag on a version.
    pub async fn set_model_version_tag(&self, name: &str, version: &str, tag: &KeyValue) -> Result<()> {
        validation::validate_key(KeyKind::Tag, &tag.key)?;
        validation::check_length("model version tag value", &tag.value, validation::MAX_REGISTRY_TAG_VAL_LENGTH)?;
        let (name, version, tag) = (name.to_owned(), version.to_owned(), tag.clone());
        self.write(move |c| {
            Box::pin(async move {
                let (id, v) = version_key(c, &name, &version).await?;
                upsert_registry_tag(c, "model_version_tags", id, Some(v), &tag).await
            })
        })
        .await
    }

    /// Deletes a tag of a version.
    pub async fn delete_model_version_tag(&self, name: &str, version: &str, key: &str) -> Result<()> {
        let (name, version, key) = (name.to_owned(), version.to_owned(), key.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let (id, v) = version_key(c, &name, &version).await?;
                let delete = c.stmt(
                    "DELETE FROM model_version_tags WHERE registered_model_id = $1 AND version = $2 AND key = $3",
                    [id.into(), v.into(), key.as_str().into()],
                );
                if c.execute(delete).await? == 0 {
                    return Err(Error::not_found(format!("No tag with name: {key} in model version {name} {version}")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Points an alias at a version (moving it if it pointed elsewhere).
    pub async fn set_registered_model_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        validate_alias(alias)?;
        let (name, alias, version) = (name.to_owned(), alias.to_owned(), version.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let (_, v) = version_key(c, &name, &version).await?;
                let id = registered_model_id_for_update(c, &name).await?;
                let before = alias_version(c, id, &alias).await?;
                point_alias(c, id, &alias, v).await?;
                if before != Some(v) {
                    record_move(c, &name, id, &alias, api_move(MoveKind::Set, before, Some(v), None)).await?;
                }
                touch_registered_model(c, id).await
            })
        })
        .await
    }

    /// Removes an alias.
    pub async fn delete_registered_model_alias(&self, name: &str, alias: &str) -> Result<()> {
        let (name, alias) = (name.to_owned(), alias.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let id = registered_model_id_for_update(c, &name).await?;
                let before = alias_version(c, id, &alias).await?;
                let delete = c.stmt(
                    "DELETE FROM registered_model_aliases WHERE registered_model_id = $1 AND alias = $2",
                    [id.into(), alias.as_str().into()],
                );
                c.execute(delete).await?;
                if before.is_some() {
                    record_move(c, &name, id, &alias, api_move(MoveKind::Delete, before, None, None)).await?;
                }
                touch_registered_model(c, id).await
            })
        })
        .await
    }

    /// The version an alias points at.
    pub async fn get_model_version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        let (name, alias) = (name.to_owned(), alias.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let id = registered_model_id(c, &name).await?;
                let sql = c.stmt(
                    "SELECT version FROM registered_model_aliases WHERE registered_model_id = $1 AND alias = $2",
                    [id.into(), alias.as_str().into()],
                );
                let version: i64 = c
                    .fetch_optional(sql)
                    .await?
                    .ok_or_else(|| Error::invalid(format!("Registered model alias {alias} not found.")))?
                    .get("version")?;
                model_version(c, &name, &version.to_string()).await
            })
        })
        .await
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
        const ORDER: &[&str] = &["name", "version_number", "creation_timestamp", "last_updated_timestamp", "timestamp"];
        let limit = max_results.unwrap_or(10_000);
        validation::validate_max_results(limit, 200_000)?;
        let comparisons = filter::attribute_filter(filter_text.unwrap_or(""), ATTRIBUTES, &[Entity::Tag])?;
        let orders = order_by
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| filter::order_by(o, ORDER, &[]))
            .collect::<Result<Vec<_>>>()?;
        let offset = parse_page_token(page_token)?;
        let dialect = self.dialect();
        let mut sql = Sql::new(
            dialect,
            "SELECT mv.*, rm.name FROM model_versions mv JOIN registered_models rm ON rm.id = mv.registered_model_id WHERE 1 = 1",
        );
        for c in &comparisons {
            let cond = match (c.entity, c.key.as_str()) {
                (Entity::Tag, _) => key_value_condition(
                    &mut sql,
                    dialect,
                    "model_version_tags",
                    "t.registered_model_id = mv.registered_model_id AND t.version = mv.version",
                    c,
                )?,
                (_, "version_number") => match &c.value {
                    Value::Num(n, _) => {
                        let p = sql.arg(*n as i64);
                        format!("mv.version {} {p}", c.op.as_sql())
                    }
                    _ => {
                        return Err(Error::invalid("version_number must be compared with a number"));
                    }
                },
                (_, key) => {
                    let column = match key {
                        "name" => "rm.name",
                        "run_id" => "mv.run_id",
                        "model_id" => "mv.model_id",
                        _ => "mv.source",
                    };
                    text_condition(&mut sql, dialect, column, c)?
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
                format!("{column} {}", direction(o.ascending))
            })
            .collect();
        terms.push("rm.name ASC".into());
        terms.push("mv.version DESC".into());
        order_and_page(&mut sql, &terms, limit, offset);
        self.read(move |c| {
            Box::pin(async move {
                let page = Page::from_overfetch(c.fetch_all(sql).await?, offset, limit);
                let items = versions_from_rows(c, &page.items).await?.into_iter().map(|(_, v)| v).collect();
                Ok(Page { items, next_page_token: page.next_page_token })
            })
        })
        .await
    }
}

async fn upsert_registry_tag(
    c: &mut Conn<'_>,
    table: &str,
    id: i64,
    version: Option<i64>,
    tag: &KeyValue,
) -> Result<()> {
    let sql = match version {
        None => c.stmt(
            &format!(
                "INSERT INTO {table} (registered_model_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (registered_model_id, key) DO UPDATE SET value = excluded.value"
            ),
            [id.into(), tag.key.as_str().into(), tag.value.as_str().into()],
        ),
        Some(v) => c.stmt(
            &format!(
                "INSERT INTO {table} (registered_model_id, version, key, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (registered_model_id, version, key) DO UPDATE SET value = excluded.value"
            ),
            [id.into(), v.into(), tag.key.as_str().into(), tag.value.as_str().into()],
        ),
    };
    c.execute(sql).await?;
    Ok(())
}

/// A move made through MLflow's REST API, which carries no user.
fn api_move(kind: MoveKind, from: Option<i64>, to: Option<i64>, reason: Option<&str>) -> Move<'_> {
    Move { kind, from, to, actor: "mlflow-api", reason, gate_report: None }
}

/// The version an alias holds, if it is set.
pub(crate) async fn alias_version(c: &mut Conn<'_>, id: i64, alias: &str) -> Result<Option<i64>> {
    let sql = c.stmt(
        "SELECT version FROM registered_model_aliases WHERE registered_model_id = $1 AND alias = $2",
        [id.into(), alias.into()],
    );
    c.fetch_optional(sql).await?.map(|r| r.get::<i64>("version")).transpose()
}

pub(crate) async fn touch_registered_model(c: &mut Conn<'_>, id: i64) -> Result<()> {
    let sql =
        c.stmt("UPDATE registered_models SET last_updated_time = $1 WHERE id = $2", [now_millis().into(), id.into()]);
    c.execute(sql).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_pointing_at_the_server_are_refused() {
        for ok in ["models:/m-abc", "runs:/abc/model", "mlflow-artifacts:/1/abc/artifacts/model", "s3://b/k"] {
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
