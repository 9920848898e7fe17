//! MLflow 3 logged-model endpoints and the model registry endpoints.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::json;
use shipyard_core::entities::{KeyValue, LoggedModelStatus};
use shipyard_store::logged_models::{LoggedModelOrder, NewLoggedModel};
use shipyard_store::registry::NewModelVersion;

use crate::AppState;
use crate::caller::{Caller, readable_page};
use crate::error::{ApiError, ApiResult};
use crate::tracking::{JsonResult, empty, page_response};
use crate::wire::{MlflowRequest, opt_bool, opt_i64, opt_string, present, required, string_list};
use axum::response::Response;
use shipyard_auth::ResourceType;

// ----- logged models -----

#[derive(Deserialize)]
pub(crate) struct CreateLoggedModel {
    #[serde(default, deserialize_with = "opt_string")]
    experiment_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(crate) async fn create_logged_model(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<CreateLoggedModel>,
) -> JsonResult {
    let experiment_id = required(&r.experiment_id, "experiment_id")?.to_owned();
    let model =
        s.db.create_logged_model(NewLoggedModel {
            experiment_id,
            name: r.name,
            model_type: r.model_type,
            source_run_id: r.source_run_id,
            params: r.params,
            tags: r.tags,
        })
        .await?;
    Ok(Json(json!({ "model": model })))
}

pub(crate) async fn get_logged_model(State(s): State<AppState>, Path(model_id): Path<String>) -> JsonResult {
    let model = s.db.get_logged_model(&model_id).await?;
    Ok(Json(json!({ "model": model })))
}

#[derive(Deserialize)]
pub(crate) struct FinalizeLoggedModel {
    #[serde(default)]
    status: Option<LoggedModelStatus>,
}

pub(crate) async fn finalize_logged_model(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    MlflowRequest(r): MlflowRequest<FinalizeLoggedModel>,
) -> JsonResult {
    let status = present(&r.status, "status")?;
    let model = s.db.finalize_logged_model(&model_id, status).await?;
    Ok(Json(json!({ "model": model })))
}

pub(crate) async fn delete_logged_model(State(s): State<AppState>, Path(model_id): Path<String>) -> JsonResult {
    s.db.delete_logged_model(&model_id).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct LoggedModelTags {
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(crate) async fn set_logged_model_tags(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    MlflowRequest(r): MlflowRequest<LoggedModelTags>,
) -> JsonResult {
    let model = s.db.set_logged_model_tags(&model_id, &r.tags).await?;
    Ok(Json(json!({ "model": model })))
}

pub(crate) async fn delete_logged_model_tag(
    State(s): State<AppState>,
    Path((model_id, key)): Path<(String, String)>,
) -> JsonResult {
    s.db.delete_logged_model_tag(&model_id, &key).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct LoggedModelParams {
    #[serde(default)]
    params: Vec<KeyValue>,
}

pub(crate) async fn log_logged_model_params(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    MlflowRequest(r): MlflowRequest<LoggedModelParams>,
) -> JsonResult {
    s.db.log_logged_model_params(&model_id, &r.params).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct OrderByField {
    field_name: String,
    #[serde(default, deserialize_with = "opt_bool")]
    ascending: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct SearchLoggedModels {
    #[serde(default, deserialize_with = "string_list")]
    experiment_ids: Vec<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<OrderByField>,
    #[serde(default)]
    page_token: Option<String>,
}

pub(crate) async fn search_logged_models(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<SearchLoggedModels>,
) -> ApiResult<Response> {
    let order: Vec<LoggedModelOrder> = r
        .order_by
        .into_iter()
        .map(|o| LoggedModelOrder { field_name: o.field_name, ascending: o.ascending.unwrap_or(true) })
        .collect();
    let page = s
        .db
        .search_logged_models(&r.experiment_ids, r.filter.as_deref(), &order, r.max_results, r.page_token.as_deref())
        .await?;
    page_response("models", page)
}

// ----- registered models -----

#[derive(Deserialize)]
pub(crate) struct CreateRegisteredModel {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    #[serde(default)]
    description: Option<String>,
}

pub(crate) async fn create_registered_model(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<CreateRegisteredModel>,
) -> JsonResult {
    let name = required(&r.name, "name")?;
    let model = s.db.create_registered_model(name, &r.tags, r.description.as_deref(), None).await?;
    Ok(Json(json!({ "registered_model": model })))
}

#[derive(Deserialize)]
pub(crate) struct ModelName {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    new_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "string_list")]
    stages: Vec<String>,
}

pub(crate) async fn get_registered_model(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ModelName>,
) -> JsonResult {
    let model = s.db.get_registered_model(required(&r.name, "name")?).await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub(crate) async fn rename_registered_model(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ModelName>,
) -> JsonResult {
    let name = required(&r.name, "name")?;
    let new_name = required(&r.new_name, "new_name")?;
    let model = s.db.rename_registered_model(name, new_name).await?;
    // Permissions are kept by name: they follow the model to its new one.
    s.db.retarget_grants(ResourceType::RegisteredModel.as_str(), name, Some(new_name)).await?;
    s.forget_grants();
    Ok(Json(json!({ "registered_model": model })))
}

pub(crate) async fn update_registered_model(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ModelName>,
) -> JsonResult {
    let name = required(&r.name, "name")?;
    let model = s.db.update_registered_model(name, r.description.as_deref().unwrap_or("")).await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub(crate) async fn delete_registered_model(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ModelName>,
) -> JsonResult {
    let name = required(&r.name, "name")?;
    s.db.delete_registered_model(name).await?;
    // A model made later under this name must not inherit this one's permissions.
    s.db.retarget_grants(ResourceType::RegisteredModel.as_str(), name, None).await?;
    s.forget_grants();
    empty()
}

pub(crate) async fn get_latest_versions(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ModelName>,
) -> JsonResult {
    let versions = s.db.get_latest_versions(required(&r.name, "name")?, &r.stages).await?;
    Ok(Json(if versions.is_empty() { json!({}) } else { json!({ "model_versions": versions }) }))
}

#[derive(Deserialize)]
pub(crate) struct RegistryTag {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    version: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    value: Option<String>,
}

fn tag_of(r: &RegistryTag) -> Result<KeyValue, ApiError> {
    let key = required(&r.key, "key")?;
    let value = present(&r.value, "value")?;
    Ok(KeyValue::new(key, value))
}

pub(crate) async fn set_registered_model_tag(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<RegistryTag>,
) -> JsonResult {
    s.db.set_registered_model_tag(required(&r.name, "name")?, &tag_of(&r)?).await?;
    empty()
}

pub(crate) async fn delete_registered_model_tag(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<RegistryTag>,
) -> JsonResult {
    s.db.delete_registered_model_tag(required(&r.name, "name")?, required(&r.key, "key")?).await?;
    empty()
}

pub(crate) async fn set_model_version_tag(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<RegistryTag>,
) -> JsonResult {
    s.db.set_model_version_tag(required(&r.name, "name")?, required(&r.version, "version")?, &tag_of(&r)?).await?;
    empty()
}

pub(crate) async fn delete_model_version_tag(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<RegistryTag>,
) -> JsonResult {
    s.db.delete_model_version_tag(
        required(&r.name, "name")?,
        required(&r.version, "version")?,
        required(&r.key, "key")?,
    )
    .await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct SearchRegistry {
    #[serde(default)]
    filter: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "string_list")]
    order_by: Vec<String>,
    #[serde(default)]
    page_token: Option<String>,
}

pub(crate) async fn search_registered_models(
    State(s): State<AppState>,
    caller: Caller,
    MlflowRequest(r): MlflowRequest<SearchRegistry>,
) -> ApiResult<Response> {
    let page = readable_page(
        &caller,
        ResourceType::RegisteredModel,
        r.max_results,
        r.page_token.clone(),
        |m: &shipyard_core::entities::RegisteredModel| m.name.as_str(),
        |max, token| {
            let (db, filter, order_by) = (s.db.clone(), r.filter.clone(), r.order_by.clone());
            async move { db.search_registered_models(filter.as_deref(), max, &order_by, token.as_deref()).await }
        },
    )
    .await?;
    page_response("registered_models", page)
}

pub(crate) async fn search_model_versions(
    State(s): State<AppState>,
    caller: Caller,
    MlflowRequest(r): MlflowRequest<SearchRegistry>,
) -> ApiResult<Response> {
    let page = readable_page(
        &caller,
        ResourceType::RegisteredModel,
        r.max_results,
        r.page_token.clone(),
        |v: &shipyard_core::entities::ModelVersion| v.name.as_str(),
        |max, token| {
            let (db, filter, order_by) = (s.db.clone(), r.filter.clone(), r.order_by.clone());
            async move { db.search_model_versions(filter.as_deref(), max, &order_by, token.as_deref()).await }
        },
    )
    .await?;
    page_response("model_versions", page)
}

// ----- model versions -----

#[derive(Deserialize)]
pub(crate) struct CreateModelVersion {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    #[serde(default)]
    run_link: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    model_id: Option<String>,
}

pub(crate) async fn create_model_version(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<CreateModelVersion>,
) -> JsonResult {
    let name = required(&r.name, "name")?.to_owned();
    let source = required(&r.source, "source")?.to_owned();
    let version =
        s.db.create_model_version(NewModelVersion {
            name,
            source,
            run_id: r.run_id,
            tags: r.tags,
            run_link: r.run_link,
            description: r.description,
            model_id: r.model_id,
            user_id: None,
        })
        .await?;
    s.version_created(&version);
    Ok(Json(json!({ "model_version": version })))
}

#[derive(Deserialize)]
pub(crate) struct VersionRef {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    version: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    archive_existing_versions: Option<bool>,
    #[serde(default)]
    alias: Option<String>,
}

impl VersionRef {
    fn key(&self) -> Result<(&str, &str), ApiError> {
        Ok((required(&self.name, "name")?, required(&self.version, "version")?))
    }
}

pub(crate) async fn get_model_version(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<VersionRef>,
) -> JsonResult {
    let (name, version) = r.key()?;
    let v = s.db.get_model_version(name, version).await?;
    Ok(Json(json!({ "model_version": v })))
}

pub(crate) async fn update_model_version(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<VersionRef>,
) -> JsonResult {
    let (name, version) = r.key()?;
    let v = s.db.update_model_version(name, version, r.description.as_deref().unwrap_or("")).await?;
    Ok(Json(json!({ "model_version": v })))
}

pub(crate) async fn delete_model_version(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<VersionRef>,
) -> JsonResult {
    let (name, version) = r.key()?;
    s.db.delete_model_version(name, version).await?;
    empty()
}

pub(crate) async fn transition_model_version_stage(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<VersionRef>,
) -> JsonResult {
    let (name, version) = r.key()?;
    let stage = required(&r.stage, "stage")?;
    let v =
        s.db.transition_model_version_stage(name, version, stage, r.archive_existing_versions.unwrap_or(false)).await?;
    Ok(Json(json!({ "model_version": v })))
}

pub(crate) async fn get_model_version_download_uri(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<VersionRef>,
) -> JsonResult {
    let (name, version) = r.key()?;
    let uri = s.db.get_model_version_download_uri(name, version).await?;
    Ok(Json(json!({ "artifact_uri": uri })))
}

pub(crate) async fn set_registered_model_alias(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<VersionRef>,
) -> JsonResult {
    let (name, version) = r.key()?;
    s.db.set_registered_model_alias(name, required(&r.alias, "alias")?, version).await?;
    empty()
}

pub(crate) async fn delete_registered_model_alias(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<VersionRef>,
) -> JsonResult {
    s.db.delete_registered_model_alias(required(&r.name, "name")?, required(&r.alias, "alias")?).await?;
    empty()
}

pub(crate) async fn get_model_version_by_alias(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<VersionRef>,
) -> JsonResult {
    let v = s.db.get_model_version_by_alias(required(&r.name, "name")?, required(&r.alias, "alias")?).await?;
    Ok(Json(json!({ "model_version": v })))
}
