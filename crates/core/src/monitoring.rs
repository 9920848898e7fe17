//! Monitoring records: served predictions as logged, ground truth joined to them, monitor
//! evaluations and alerts. The store keeps them; the monitor computes over them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One row of one served request, as the prediction log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// The deployment the request named, or the model's name for a model served directly.
    pub deployment: String,
    pub request_id: String,
    /// The row within its request (0 for single-row requests and failures).
    pub row: i64,
    /// Milliseconds since the epoch.
    pub time: i64,
    /// The version that answered: model name and version (none for a file model).
    pub model: String,
    pub version: Option<String>,
    /// The HTTP status of the answer; failed requests are logged once, without inputs.
    pub status: i64,
    /// Microseconds from reading the request to the prediction.
    pub latency_us: i64,
    /// The row's inputs, a JSON object of column to value.
    pub inputs: Option<String>,
    /// The answer: a classifier's label or a regressor's value, as JSON.
    pub prediction: Option<String>,
    /// A number for statistics: a regressor's value, a binary classifier's probability of its
    /// second class, a multiclass classifier's probability of the predicted class.
    pub score: Option<f64>,
}

/// A logged row with its ground truth, when some arrived.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedPrediction {
    /// Increases with logging order.
    pub id: i64,
    #[serde(flatten)]
    pub record: PredictionRecord,
    /// The actual value, as JSON.
    pub actual: Option<String>,
}

/// Ground truth for a logged request: one row, or (`row` absent) every row of the request,
/// `actual` then a list when the request had several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actual {
    pub request_id: String,
    #[serde(default)]
    pub row: Option<i64>,
    pub actual: serde_json::Value,
}

/// One evaluation of a deployment's monitors: every value, by metric name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorEvaluation {
    pub deployment: String,
    /// Milliseconds since the epoch.
    pub time: i64,
    pub values: BTreeMap<String, f64>,
}

/// An alert rule that fired, and what its action did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Assigned by the store.
    pub id: i64,
    pub deployment: String,
    pub rule: String,
    pub metric: String,
    pub value: f64,
    pub comparator: String,
    pub threshold: f64,
    /// `low`, `medium` or `high`.
    pub severity: String,
    /// Milliseconds since the epoch.
    pub fired_time: i64,
    pub message: String,
    /// `rollback` or `zero_canary`, when the rule has an action.
    pub action: Option<String>,
    /// `succeeded` or `failed`.
    pub action_status: Option<String>,
    /// What the action did, or why it failed.
    pub action_detail: Option<String>,
}

impl Alert {
    /// The action and its outcome in one line (`rollback succeeded: ...`); empty without one.
    pub fn action_summary(&self) -> String {
        match (&self.action, &self.action_status) {
            (Some(action), Some(status)) => {
                format!("{action} {status}: {}", self.action_detail.as_deref().unwrap_or(""))
            }
            (Some(action), None) => action.clone(),
            _ => String::new(),
        }
    }
}
