//! The entities of tracking and the model registry, shaped as MLflow puts them on the wire.
//!
//! Field names, optional fields and enum spellings follow MLflow's protos (`service.proto`,
//! `model_registry.proto`) as MLflow's server renders them to JSON: 64-bit integers are JSON
//! numbers, ids are strings, unset optional fields and empty lists are left out. The store builds
//! these values and the server serialises them as they are, so there is one definition of each.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as every MLflow timestamp.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `millis` since the epoch as `YYYY-MM-DD HH:MM:SS.ffffff` in UTC, as MLflow writes
/// `utc_time_created` (days to a civil date by Howard Hinnant's algorithm).
pub fn utc_timestamp(millis: i64) -> String {
    let (days, ms) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{:06}", frac * 1000)
}

/// `millis` since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC, for tables people read.
pub fn utc_seconds(millis: i64) -> String {
    let mut text = utc_timestamp(millis);
    text.truncate("YYYY-MM-DD HH:MM:SS".len());
    text
}

/// A new run id: 32 lowercase hex characters, as MLflow's `uuid.uuid4().hex`.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new logged-model id: `m-` followed by 32 hex characters, as MLflow 3.
pub fn new_logged_model_id() -> String {
    format!("m-{}", uuid::Uuid::new_v4().simple())
}

/// Whether an experiment, run or logged model is live or soft-deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleStage {
    /// Visible to default searches.
    Active,
    /// Soft-deleted: hidden from default searches, can be restored.
    Deleted,
}

impl LifecycleStage {
    /// The stage as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStage::Active => "active",
            LifecycleStage::Deleted => "deleted",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(LifecycleStage::Active),
            "deleted" => Some(LifecycleStage::Deleted),
            _ => None,
        }
    }
}

/// Which lifecycle stages a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ViewType {
    /// Only active entities (the default).
    #[default]
    ActiveOnly,
    /// Only soft-deleted entities.
    DeletedOnly,
    /// Both.
    All,
}

impl ViewType {
    /// The lifecycle stages this view includes.
    pub fn stages(self) -> &'static [&'static str] {
        match self {
            ViewType::ActiveOnly => &["active"],
            ViewType::DeletedOnly => &["deleted"],
            ViewType::All => &["active", "deleted"],
        }
    }
}

/// The status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Started and not ended.
    Running,
    /// Created to run later.
    Scheduled,
    /// Ended successfully.
    Finished,
    /// Ended with an error.
    Failed,
    /// Stopped from outside.
    Killed,
}

impl RunStatus {
    /// The status as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RUNNING" => RunStatus::Running,
            "SCHEDULED" => RunStatus::Scheduled,
            "FINISHED" => RunStatus::Finished,
            "FAILED" => RunStatus::Failed,
            "KILLED" => RunStatus::Killed,
            _ => return None,
        })
    }

    /// Whether the run has ended.
    pub fn is_terminated(self) -> bool {
        matches!(self, RunStatus::Finished | RunStatus::Failed | RunStatus::Killed)
    }
}

/// A key and a string value: a param, or a tag of any entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

impl KeyValue {
    /// Builds a pair.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        KeyValue { key: key.into(), value: value.into() }
    }
}

/// An experiment: a named group of runs with an artifact location.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    /// Decimal id, `"0"` for the Default experiment.
    pub experiment_id: String,
    /// Unique name.
    pub name: String,
    /// Root URI of the artifacts of the experiment's runs.
    pub artifact_location: String,
    /// Active or deleted.
    pub lifecycle_stage: LifecycleStage,
    /// Last change, in ms.
    pub last_update_time: i64,
    /// Creation, in ms.
    pub creation_time: i64,
    /// Experiment tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    /// MLflow 3 workspaces: always `default` here.
    pub workspace: &'static str,
}

/// One value of a metric at a step and a time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Metric name.
    pub key: String,
    /// The value; NaN and infinities travel as MLflow sends them.
    #[serde(with = "json_f64")]
    pub value: f64,
    /// When it was measured, in ms.
    #[serde(default)]
    pub timestamp: i64,
    /// Training step.
    #[serde(default)]
    pub step: i64,
    /// Dataset the metric was computed on (MLflow 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    /// Digest of that dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    /// Logged model the metric belongs to (MLflow 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Run the metric was logged in (set on logged-model metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// Identity and state of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run id (legacy name).
    pub run_uuid: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// Display name.
    pub run_name: String,
    /// Who started it.
    pub user_id: String,
    /// Running, finished, ...
    pub status: RunStatus,
    /// Start, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// End, in ms, once ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// Root URI of the run's artifacts.
    pub artifact_uri: String,
    /// Active or deleted.
    pub lifecycle_stage: LifecycleStage,
    /// The run id.
    pub run_id: String,
}

/// What a run logged: latest metric values, params and tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunData {
    /// Latest value of each metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// Params.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValue>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
}

/// A dataset as MLflow describes it: metadata only, never rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// Name.
    pub name: String,
    /// Content digest.
    pub digest: String,
    /// Kind of source (`local`, `http`, `code`, ...).
    pub source_type: String,
    /// Source, a JSON string.
    pub source: String,
    /// Schema, a JSON string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Profile, a JSON string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A dataset used by a run, with the input's tags (such as `mlflow.data.context`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInput {
    /// Tags of this use of the dataset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    /// The dataset.
    pub dataset: Dataset,
}

/// A logged model used as an input by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInput {
    /// The logged model.
    pub model_id: String,
}

/// A logged model produced by a run at a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOutput {
    /// The logged model.
    pub model_id: String,
    /// The step it was produced at.
    #[serde(default)]
    pub step: i64,
}

/// A run's inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInputs {
    /// Datasets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dataset_inputs: Vec<DatasetInput>,
    /// Logged models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_inputs: Vec<ModelInput>,
}

/// A run's outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOutputs {
    /// Logged models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_outputs: Vec<ModelOutput>,
}

/// A whole run (its JSON form is MLflow's, both ways: a client reads a server's runs with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Identity and state.
    pub info: RunInfo,
    /// Metrics, params, tags.
    pub data: RunData,
    /// Datasets and models used.
    #[serde(default)]
    pub inputs: RunInputs,
    /// Models produced.
    #[serde(default)]
    pub outputs: RunOutputs,
}

/// The upload state of a logged model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoggedModelStatus {
    /// Not set.
    #[serde(rename = "LOGGED_MODEL_STATUS_UNSPECIFIED")]
    Unspecified,
    /// Created; files being uploaded.
    #[serde(rename = "LOGGED_MODEL_PENDING")]
    Pending,
    /// Files uploaded.
    #[serde(rename = "LOGGED_MODEL_READY")]
    Ready,
    /// Upload failed.
    #[serde(rename = "LOGGED_MODEL_UPLOAD_FAILED")]
    UploadFailed,
}

impl LoggedModelStatus {
    /// The status as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            LoggedModelStatus::Unspecified => "LOGGED_MODEL_STATUS_UNSPECIFIED",
            LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
            LoggedModelStatus::UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "LOGGED_MODEL_STATUS_UNSPECIFIED" => LoggedModelStatus::Unspecified,
            "LOGGED_MODEL_PENDING" => LoggedModelStatus::Pending,
            "LOGGED_MODEL_READY" => LoggedModelStatus::Ready,
            "LOGGED_MODEL_UPLOAD_FAILED" => LoggedModelStatus::UploadFailed,
            _ => return None,
        })
    }
}

/// A registry version that points at a logged model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedModelRegistration {
    /// Registered model name.
    pub name: String,
    /// Version number.
    pub version: String,
}

/// Identity and state of a logged model (MLflow 3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModelInfo {
    /// `m-` + 32 hex.
    pub model_id: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// Name (`model` by default in the client).
    pub name: String,
    /// Creation, in ms.
    pub creation_timestamp_ms: i64,
    /// Last change, in ms.
    pub last_updated_timestamp_ms: i64,
    /// Root URI of the model's files.
    pub artifact_uri: String,
    /// Upload state.
    pub status: LoggedModelStatus,
    /// Free-form type.
    pub model_type: String,
    /// Run that logged it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    /// Why the status is what it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    /// Registry versions made from it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub registrations: Vec<LoggedModelRegistration>,
}

/// Params and metrics of a logged model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoggedModelData {
    /// Params.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValue>,
    /// Metrics logged with its `model_id`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
}

/// A logged model (MLflow 3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModel {
    /// Identity and state.
    pub info: LoggedModelInfo,
    /// Params and metrics.
    pub data: LoggedModelData,
}

/// An alias of a registered model and the version it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredModelAlias {
    /// The alias.
    pub alias: String,
    /// The version number.
    pub version: String,
}

/// Registration state of a model version (always `READY` here: registration is synchronous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelVersionStatus {
    /// Registration in progress.
    PendingRegistration,
    /// Registration failed.
    FailedRegistration,
    /// Registered.
    Ready,
}

impl ModelVersionStatus {
    /// The status as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelVersionStatus::PendingRegistration => "PENDING_REGISTRATION",
            ModelVersionStatus::FailedRegistration => "FAILED_REGISTRATION",
            ModelVersionStatus::Ready => "READY",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING_REGISTRATION" => ModelVersionStatus::PendingRegistration,
            "FAILED_REGISTRATION" => ModelVersionStatus::FailedRegistration,
            "READY" => ModelVersionStatus::Ready,
            _ => return None,
        })
    }
}

/// A version of a registered model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelVersion {
    /// Registered model name.
    pub name: String,
    /// Version number, as a string.
    pub version: String,
    /// Creation, in ms.
    pub creation_timestamp: i64,
    /// Last change, in ms.
    pub last_updated_timestamp: i64,
    /// Who created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Legacy stage: `None`, `Staging`, `Production` or `Archived`.
    pub current_stage: String,
    /// Description.
    pub description: String,
    /// Where the model files are (`models:/m-...`, `runs:/...`, an artifact URI).
    pub source: String,
    /// Run that produced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Registration state.
    pub status: ModelVersionStatus,
    /// Why the status is what it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    /// Link to the run.
    pub run_link: String,
    /// Aliases pointing at this version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Logged model it was made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
}

/// A registered model: a name with versions, tags and aliases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegisteredModel {
    /// Unique name.
    pub name: String,
    /// Creation, in ms.
    pub creation_timestamp: i64,
    /// Last change, in ms.
    pub last_updated_timestamp: i64,
    /// Who created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The latest version in each stage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latest_versions: Vec<ModelVersion>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    /// Aliases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<RegisteredModelAlias>,
}

/// One entry of an artifact listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// Path relative to the listed root.
    pub path: String,
    /// Whether it is a folder.
    pub is_dir: bool,
    /// Size in bytes, for files only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
}

/// A metric value in JSON as MLflow writes and reads it: a number when finite, else the strings
/// `"NaN"`, `"Infinity"`, `"-Infinity"` of protobuf's JSON mapping.
pub mod json_f64 {
    use serde::{Deserialize, Deserializer, Serializer, de};

    /// Writes a finite value as a number and the others as protobuf's strings.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            s.serialize_f64(*v)
        }
    }

    /// Reads a number, or one of the strings protobuf uses (a numeric string too).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumOrStr {
            Num(f64),
            Str(String),
        }
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(v) => Ok(v),
            NumOrStr::Str(s) => {
                parse(&s).ok_or_else(|| de::Error::custom(format_args!("expected a number, got the string {s:?}")))
            }
        }
    }

    /// Parses protobuf's spellings of a double.
    pub fn parse(s: &str) -> Option<f64> {
        match s {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            other => other.trim().parse::<f64>().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_timestamps_are_civil_dates() {
        assert_eq!(super::utc_timestamp(0), "1970-01-01 00:00:00.000000");
        assert_eq!(super::utc_timestamp(1_795_564_800_123), "2026-11-25 00:00:00.123000");
        assert_eq!(super::utc_timestamp(951_782_400_000), "2000-02-29 00:00:00.000000");
    }

    use super::*;

    #[test]
    fn metric_values_follow_protobuf_json() {
        let m = Metric {
            key: "k".into(),
            value: f64::NAN,
            timestamp: 1,
            step: 0,
            dataset_name: None,
            dataset_digest: None,
            model_id: None,
            run_id: None,
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"key":"k","value":"NaN","timestamp":1,"step":0}"#);
        let back: Metric = serde_json::from_str(r#"{"key":"k","value":"-Infinity"}"#).unwrap();
        assert_eq!(back.value, f64::NEG_INFINITY);
        let num: Metric = serde_json::from_str(r#"{"key":"k","value":0.91,"step":3}"#).unwrap();
        assert_eq!(num.value, 0.91);
        assert_eq!(num.step, 3);
        assert!(serde_json::from_str::<Metric>(r#"{"key":"k","value":"abc"}"#).is_err());
    }

    #[test]
    fn ids_have_mlflow_shapes() {
        let r = new_run_id();
        assert_eq!(r.len(), 32);
        assert!(r.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let m = new_logged_model_id();
        assert!(m.starts_with("m-") && m.len() == 34);
    }

    #[test]
    fn run_info_omits_unset_fields() {
        let info = RunInfo {
            run_uuid: "a".into(),
            experiment_id: "1".into(),
            run_name: "r".into(),
            user_id: "u".into(),
            status: RunStatus::Running,
            start_time: Some(5),
            end_time: None,
            artifact_uri: "x".into(),
            lifecycle_stage: LifecycleStage::Active,
            run_id: "a".into(),
        };
        let v = serde_json::to_value(&info).unwrap();
        assert!(v.get("end_time").is_none());
        assert_eq!(v["status"], "RUNNING");
        assert_eq!(v["lifecycle_stage"], "active");
    }
}
