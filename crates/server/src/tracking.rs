//! MLflow tracking endpoints: experiments, runs, metrics, params, tags, inputs, outputs, search.
//!
//! Each handler reads its request struct (field names as in MLflow's `service.proto`), calls the
//! store, and answers with the store's entities. Request shapes accept what the `mlflow` client
//! sends, including the legacy `run_uuid` beside `run_id`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shipyard_core::entities::{DatasetInput, KeyValue, Metric, ModelInput, ModelOutput, RunStatus, ViewType, json_f64};
use shipyard_store::tracking::{NewRun, Page};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::wire::{MlflowRequest, opt_i64, opt_string, present, required, run_id, string_list};

pub(crate) type JsonResult = ApiResult<Json<Value>>;

pub(crate) fn empty() -> JsonResult {
    Ok(Json(json!({})))
}

fn parse_view_type(v: Option<&str>) -> ApiResult<ViewType> {
    Ok(match v.unwrap_or("ACTIVE_ONLY") {
        "" | "ACTIVE_ONLY" | "1" => ViewType::ActiveOnly,
        "DELETED_ONLY" | "2" => ViewType::DeletedOnly,
        "ALL" | "3" => ViewType::All,
        other => {
            return Err(ApiError::invalid(format!(
                "Invalid value '{other}' for view type: expected ACTIVE_ONLY, DELETED_ONLY or ALL"
            )));
        }
    })
}

// ----- experiments -----

#[derive(Deserialize)]
pub(crate) struct CreateExperiment {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(crate) async fn create_experiment(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<CreateExperiment>,
) -> JsonResult {
    let name = required(&r.name, "name")?;
    let id = s.db.create_experiment(name, r.artifact_location.as_deref(), &r.tags).await?;
    Ok(Json(json!({ "experiment_id": id })))
}

#[derive(Deserialize)]
pub(crate) struct ExperimentId {
    #[serde(default, deserialize_with = "opt_string")]
    experiment_id: Option<String>,
}

pub(crate) async fn get_experiment(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ExperimentId>,
) -> JsonResult {
    let id = required(&r.experiment_id, "experiment_id")?;
    let experiment = s.db.get_experiment(id).await?;
    Ok(Json(json!({ "experiment": experiment })))
}

#[derive(Deserialize)]
pub(crate) struct ExperimentName {
    #[serde(default)]
    experiment_name: Option<String>,
}

pub(crate) async fn get_experiment_by_name(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ExperimentName>,
) -> JsonResult {
    let name = required(&r.experiment_name, "experiment_name")?;
    let experiment = s.db.get_experiment_by_name(name).await?;
    Ok(Json(json!({ "experiment": experiment })))
}

pub(crate) async fn delete_experiment(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ExperimentId>,
) -> JsonResult {
    s.db.delete_experiment(required(&r.experiment_id, "experiment_id")?).await?;
    empty()
}

pub(crate) async fn restore_experiment(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ExperimentId>,
) -> JsonResult {
    s.db.restore_experiment(required(&r.experiment_id, "experiment_id")?).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct UpdateExperiment {
    #[serde(default, deserialize_with = "opt_string")]
    experiment_id: Option<String>,
    #[serde(default)]
    new_name: Option<String>,
}

pub(crate) async fn update_experiment(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<UpdateExperiment>,
) -> JsonResult {
    let id = required(&r.experiment_id, "experiment_id")?;
    if let Some(name) = r.new_name.as_deref() {
        s.db.rename_experiment(id, name).await?;
    }
    empty()
}

#[derive(Deserialize)]
pub(crate) struct ExperimentTag {
    #[serde(default, deserialize_with = "opt_string")]
    experiment_id: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

pub(crate) async fn set_experiment_tag(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ExperimentTag>,
) -> JsonResult {
    let id = required(&r.experiment_id, "experiment_id")?;
    let key = required(&r.key, "key")?;
    let value = present(&r.value, "value")?;
    s.db.set_experiment_tag(id, &KeyValue::new(key, value)).await?;
    empty()
}

pub(crate) async fn delete_experiment_tag(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<ExperimentTag>,
) -> JsonResult {
    let id = required(&r.experiment_id, "experiment_id")?;
    s.db.delete_experiment_tag(id, required(&r.key, "key")?).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct SearchExperiments {
    #[serde(default, deserialize_with = "opt_i64")]
    max_results: Option<i64>,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default, deserialize_with = "string_list")]
    order_by: Vec<String>,
    #[serde(default, deserialize_with = "opt_string")]
    view_type: Option<String>,
}

pub(crate) async fn search_experiments(
    State(s): State<AppState>,
    caller: crate::caller::Caller,
    MlflowRequest(r): MlflowRequest<SearchExperiments>,
) -> ApiResult<Response> {
    let view = parse_view_type(r.view_type.as_deref())?;
    let page = crate::caller::readable_page(
        &caller,
        shipyard_auth::ResourceType::Experiment,
        r.max_results,
        r.page_token.clone(),
        |e: &shipyard_core::entities::Experiment| e.experiment_id.as_str(),
        |max, token| {
            let (db, filter, order_by) = (s.db.clone(), r.filter.clone(), r.order_by.clone());
            async move { db.search_experiments(view, max, filter.as_deref(), &order_by, token.as_deref()).await }
        },
    )
    .await?;
    page_response("experiments", page)
}

pub(crate) fn internal(e: serde_json::Error) -> ApiError {
    ApiError(shipyard_core::Error::Internal(format!("serialising the response: {e}")))
}

/// A page of results as MLflow sends it: the list under `field` (left out when empty) and the
/// next page's token when there is one. Serialised straight to bytes: no intermediate JSON tree.
pub(crate) fn page_response<T: serde::Serialize>(field: &'static str, page: Page<T>) -> ApiResult<Response> {
    struct Body<'a, T> {
        field: &'static str,
        items: &'a [T],
        token: Option<&'a str>,
    }
    impl<T: serde::Serialize> serde::Serialize for Body<'_, T> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(None)?;
            if !self.items.is_empty() {
                map.serialize_entry(self.field, self.items)?;
            }
            if let Some(t) = self.token {
                map.serialize_entry("next_page_token", t)?;
            }
            map.end()
        }
    }
    let body = Body { field, items: &page.items, token: page.next_page_token.as_deref() };
    json_bytes(&body)
}

/// A JSON response serialised directly from `value`.
pub(crate) fn json_bytes<T: serde::Serialize>(value: &T) -> ApiResult<Response> {
    let bytes = serde_json::to_vec(value).map_err(internal)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

// ----- runs -----

#[derive(Deserialize)]
pub(crate) struct CreateRun {
    #[serde(default, deserialize_with = "opt_string")]
    experiment_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    run_name: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(crate) async fn create_run(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<CreateRun>) -> JsonResult {
    let run =
        s.db.create_run(NewRun {
            experiment_id: r.experiment_id.unwrap_or_default(),
            user_id: r.user_id.unwrap_or_default(),
            run_name: r.run_name,
            start_time: r.start_time,
            tags: r.tags,
        })
        .await?;
    Ok(Json(json!({ "run": run })))
}

#[derive(Deserialize)]
pub(crate) struct RunRef {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
}

pub(crate) async fn get_run(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RunRef>) -> JsonResult {
    let run = s.db.get_run(run_id(&r.run_id, &r.run_uuid)?).await?;
    Ok(Json(json!({ "run": run })))
}

pub(crate) async fn delete_run(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RunRef>) -> JsonResult {
    s.db.delete_run(run_id(&r.run_id, &r.run_uuid)?).await?;
    empty()
}

pub(crate) async fn restore_run(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RunRef>) -> JsonResult {
    s.db.restore_run(run_id(&r.run_id, &r.run_uuid)?).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct UpdateRun {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    end_time: Option<i64>,
    #[serde(default)]
    run_name: Option<String>,
}

pub(crate) async fn update_run(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<UpdateRun>) -> JsonResult {
    let id = run_id(&r.run_id, &r.run_uuid)?;
    let status = match r.status.as_deref() {
        None | Some("") => None,
        Some(st) => Some(RunStatus::parse(st).ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid value '{st}' for parameter 'status': expected RUNNING, SCHEDULED, FINISHED, FAILED or KILLED"
            ))
        })?),
    };
    let info = s.db.update_run(id, status, r.end_time, r.run_name.as_deref()).await?;
    Ok(Json(json!({ "run_info": info })))
}

#[derive(Deserialize)]
pub(crate) struct LogMetric {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, with = "opt_json_f64")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "opt_i64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    step: Option<i64>,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    dataset_name: Option<String>,
    #[serde(default)]
    dataset_digest: Option<String>,
}

/// An optional metric value in protobuf JSON form.
mod opt_json_f64 {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "shipyard_core::entities::json_f64")] f64);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

pub(crate) async fn log_metric(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<LogMetric>) -> JsonResult {
    let id = run_id(&r.run_id, &r.run_uuid)?;
    let key = required(&r.key, "key")?.to_owned();
    let value = present(&r.value, "value")?;
    let timestamp = present(&r.timestamp, "timestamp")?;
    let metric = Metric {
        key,
        value,
        timestamp,
        step: r.step.unwrap_or(0),
        dataset_name: r.dataset_name,
        dataset_digest: r.dataset_digest,
        model_id: r.model_id,
        run_id: None,
    };
    s.db.log_metric(id, metric).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct LogParam {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    value: Option<String>,
}

pub(crate) async fn log_param(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<LogParam>) -> JsonResult {
    let id = run_id(&r.run_id, &r.run_uuid)?;
    let key = required(&r.key, "key")?;
    let value = present(&r.value, "value")?;
    s.db.log_param(id, KeyValue::new(key, value)).await?;
    empty()
}

pub(crate) async fn set_tag(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<LogParam>) -> JsonResult {
    let id = run_id(&r.run_id, &r.run_uuid)?;
    let key = required(&r.key, "key")?;
    let value = present(&r.value, "value")?;
    s.db.set_tag(id, KeyValue::new(key, value)).await?;
    empty()
}

pub(crate) async fn delete_tag(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<LogParam>) -> JsonResult {
    let id = run_id(&r.run_id, &r.run_uuid)?;
    s.db.delete_tag(id, required(&r.key, "key")?).await?;
    empty()
}

/// A metric inside `log-batch`: as [`Metric`], with `timestamp` required as MLflow requires it.
#[derive(Deserialize)]
pub(crate) struct BatchMetric {
    key: String,
    #[serde(with = "json_f64")]
    value: f64,
    #[serde(default, deserialize_with = "opt_i64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    step: Option<i64>,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    dataset_name: Option<String>,
    #[serde(default)]
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LogBatch {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    #[serde(default)]
    metrics: Vec<BatchMetric>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(crate) async fn log_batch(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<LogBatch>) -> JsonResult {
    let id = run_id(&r.run_id, &r.run_uuid)?.to_owned();
    let metrics = r
        .metrics
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let timestamp = m.timestamp.ok_or_else(|| crate::wire::missing(&format!("metrics[{i}].timestamp")))?;
            Ok(Metric {
                key: m.key,
                value: m.value,
                timestamp,
                step: m.step.unwrap_or(0),
                dataset_name: m.dataset_name,
                dataset_digest: m.dataset_digest,
                model_id: m.model_id,
                run_id: None,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    s.db.log_batch(&id, metrics, r.params, r.tags).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct LogInputs {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetInput>,
    #[serde(default)]
    models: Vec<ModelInput>,
}

pub(crate) async fn log_inputs(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<LogInputs>) -> JsonResult {
    let id = required(&r.run_id, "run_id")?;
    s.db.log_inputs(id, r.datasets, r.models).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct LogOutputs {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    models: Vec<ModelOutput>,
}

pub(crate) async fn log_outputs(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<LogOutputs>) -> JsonResult {
    let id = required(&r.run_id, "run_id")?;
    s.db.log_outputs(id, r.models).await?;
    empty()
}

#[derive(Deserialize)]
pub(crate) struct MetricHistory {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    #[serde(default)]
    metric_key: Option<String>,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    max_results: Option<i64>,
}

pub(crate) async fn get_metric_history(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<MetricHistory>,
) -> ApiResult<Response> {
    let id = run_id(&r.run_id, &r.run_uuid)?;
    let key = required(&r.metric_key, "metric_key")?;
    let page = s.db.get_metric_history(id, key, r.max_results, r.page_token.as_deref()).await?;
    page_response("metrics", page)
}

#[derive(Deserialize)]
pub(crate) struct SearchRuns {
    #[serde(default, deserialize_with = "string_list")]
    experiment_ids: Vec<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    run_view_type: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "string_list")]
    order_by: Vec<String>,
    #[serde(default)]
    page_token: Option<String>,
}

pub(crate) async fn search_runs(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<SearchRuns>,
) -> ApiResult<Response> {
    let view = parse_view_type(r.run_view_type.as_deref())?;
    let page = s
        .db
        .search_runs(&r.experiment_ids, r.filter.as_deref(), view, r.max_results, &r.order_by, r.page_token.as_deref())
        .await?;
    page_response("runs", page)
}
