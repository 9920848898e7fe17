//! Monitoring records: served predictions as logged, ground truth joined to them, monitor
//! evaluations and alerts. The store keeps them; the monitor computes over them.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// Rows on their way into the prediction log, packed: a request's fields once however many
/// rows it has, and every row's inputs and answer back to back in one text buffer. Filling one
/// costs no allocation per row once its buffers have grown, and a batch can be cleared and
/// filled again: the serving path hands thousands of rows a second to the writer, and one
/// allocation (and later free) per field per row was most of what logging cost it.
#[derive(Debug, Default, Clone)]
pub struct PredictionBatch {
    requests: Vec<RequestEntry>,
    rows: Vec<RowSpan>,
    text: String,
}

/// The fields a request's rows share.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub deployment: Arc<str>,
    pub request_id: Arc<str>,
    pub time: i64,
    pub model: Arc<str>,
    pub version: Option<Arc<str>>,
    pub status: i64,
    pub latency_us: i64,
}

/// A request in the batch, with where its rows are.
#[derive(Debug, Clone)]
struct RequestEntry {
    fields: LoggedRequest,
    /// Its rows in `PredictionBatch::rows`; empty for a failed request (one log row without
    /// inputs).
    rows: std::ops::Range<usize>,
    /// The row number of its first row (0 unless packed from records that start later).
    first_row: i64,
}

/// Where one row's inputs and answer are in the text buffer.
#[derive(Debug, Clone, Copy)]
struct RowSpan {
    inputs: (usize, usize),
    prediction: (usize, usize),
    score: Option<f64>,
}

/// One row of a [`PredictionBatch`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionRow<'a> {
    pub deployment: &'a str,
    pub request_id: &'a str,
    pub row: i64,
    pub time: i64,
    pub model: &'a str,
    pub version: Option<&'a str>,
    pub status: i64,
    pub latency_us: i64,
    pub inputs: Option<&'a str>,
    pub prediction: Option<&'a str>,
    pub score: Option<f64>,
}

impl PredictionRow<'_> {
    /// The row as an owned record.
    pub fn to_record(&self) -> PredictionRecord {
        PredictionRecord {
            deployment: self.deployment.to_owned(),
            request_id: self.request_id.to_owned(),
            row: self.row,
            time: self.time,
            model: self.model.to_owned(),
            version: self.version.map(str::to_owned),
            status: self.status,
            latency_us: self.latency_us,
            inputs: self.inputs.map(str::to_owned),
            prediction: self.prediction.map(str::to_owned),
            score: self.score,
        }
    }
}

/// Writes one row's inputs and answer (JSON text) into a [`PredictionBatch`] being filled.
pub struct RowWriter<'b> {
    batch: &'b mut PredictionBatch,
}

impl RowWriter<'_> {
    /// Adds a row: `inputs` writes the row's inputs, `prediction` its answer, each appending to
    /// the string it is given.
    pub fn row(
        &mut self,
        inputs: impl FnOnce(&mut String),
        prediction: impl FnOnce(&mut String),
        score: Option<f64>,
    ) -> &mut Self {
        let text = &mut self.batch.text;
        let start = text.len();
        inputs(text);
        let middle = text.len();
        prediction(text);
        self.batch.rows.push(RowSpan { inputs: (start, middle), prediction: (middle, text.len()), score });
        self
    }
}

impl PredictionBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a request; `fill` adds its rows through the [`RowWriter`]. A request given no rows
    /// is logged as one row without inputs or answer (a failed request).
    pub fn push_request(&mut self, fields: LoggedRequest, fill: impl FnOnce(&mut RowWriter<'_>)) {
        let first = self.rows.len();
        fill(&mut RowWriter { batch: self });
        let rows = first..self.rows.len();
        self.requests.push(RequestEntry { fields, rows, first_row: 0 });
    }

    /// Appends every request of `other`, leaving `other` as it was.
    pub fn append(&mut self, other: &PredictionBatch) {
        let (row_base, text_base) = (self.rows.len(), self.text.len());
        self.text.push_str(&other.text);
        let shift = |(a, b): (usize, usize)| (a + text_base, b + text_base);
        self.rows.extend(other.rows.iter().map(|r| RowSpan {
            inputs: shift(r.inputs),
            prediction: shift(r.prediction),
            score: r.score,
        }));
        self.requests.extend(other.requests.iter().map(|r| RequestEntry {
            fields: r.fields.clone(),
            rows: r.rows.start + row_base..r.rows.end + row_base,
            first_row: r.first_row,
        }));
    }

    /// Numbers the last request's rows from `row` on.
    fn set_first_row(&mut self, row: i64) {
        if let Some(last) = self.requests.last_mut() {
            last.first_row = row;
        }
    }

    /// Empties the batch, keeping its buffers for the next fill.
    pub fn clear(&mut self) {
        self.requests.clear();
        self.rows.clear();
        self.text.clear();
    }

    /// Requests in the batch.
    pub fn request_count(&self) -> usize {
        self.requests.len()
    }

    /// Log rows in the batch: a failed request counts one.
    pub fn row_count(&self) -> usize {
        self.requests.iter().map(|r| r.rows.len().max(1)).sum()
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Bytes its buffers hold, used or not: what keeping it for reuse costs.
    pub fn capacity_bytes(&self) -> usize {
        self.text.capacity()
            + self.rows.capacity() * std::mem::size_of::<RowSpan>()
            + self.requests.capacity() * std::mem::size_of::<RequestEntry>()
    }

    /// The log rows, in order.
    pub fn rows(&self) -> impl Iterator<Item = PredictionRow<'_>> + '_ {
        let text = self.text.as_str();
        let slice = move |(a, b): (usize, usize)| text.get(a..b).unwrap_or("");
        self.requests.iter().flat_map(move |r| {
            let f = &r.fields;
            let base = PredictionRow {
                deployment: &f.deployment,
                request_id: &f.request_id,
                row: r.first_row,
                time: f.time,
                model: &f.model,
                version: f.version.as_deref(),
                status: f.status,
                latency_us: f.latency_us,
                inputs: None,
                prediction: None,
                score: None,
            };
            let failed = r.rows.is_empty().then_some(base);
            let answered = self.rows[r.rows.clone()].iter().enumerate().map(move |(i, span)| PredictionRow {
                row: r.first_row + i as i64,
                inputs: Some(slice(span.inputs)),
                prediction: Some(slice(span.prediction)),
                score: span.score,
                ..base
            });
            failed.into_iter().chain(answered)
        })
    }
}

impl FromIterator<PredictionRecord> for PredictionBatch {
    /// Packs records, each its own request unless it continues the previous record's request
    /// (same request id, next row).
    fn from_iter<I: IntoIterator<Item = PredictionRecord>>(records: I) -> Self {
        let mut batch = PredictionBatch::new();
        let mut records = records.into_iter().peekable();
        while let Some(first) = records.next() {
            let fields = LoggedRequest {
                deployment: first.deployment.as_str().into(),
                request_id: first.request_id.as_str().into(),
                time: first.time,
                model: first.model.as_str().into(),
                version: first.version.as_deref().map(Into::into),
                status: first.status,
                latency_us: first.latency_us,
            };
            let (Some(inputs), Some(prediction)) = (first.inputs, first.prediction) else {
                batch.push_request(fields, |_| {});
                batch.set_first_row(first.row);
                continue;
            };
            let score = first.score;
            let shared = PredictionRecord { inputs: None, prediction: None, score: None, ..first };
            batch.push_request(fields, |w| {
                w.row(|t| t.push_str(&inputs), |t| t.push_str(&prediction), score);
                let mut next_row = shared.row + 1;
                // The next record continues the request when it shares every request field.
                let continues = |r: &PredictionRecord, row: i64| {
                    r.row == row
                        && r.inputs.is_some()
                        && r.prediction.is_some()
                        && (&r.request_id, &r.deployment, r.time, &r.model, &r.version, r.status, r.latency_us)
                            == (
                                &shared.request_id,
                                &shared.deployment,
                                shared.time,
                                &shared.model,
                                &shared.version,
                                shared.status,
                                shared.latency_us,
                            )
                };
                while let Some(r) = records.next_if(|r| continues(r, next_row)) {
                    let (i, p) = (r.inputs.unwrap_or_default(), r.prediction.unwrap_or_default());
                    w.row(|t| t.push_str(&i), |t| t.push_str(&p), r.score);
                    next_row += 1;
                }
            });
            batch.set_first_row(shared.row);
        }
        batch
    }
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
    /// Who acknowledged the alert (someone is on it), when someone has.
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    /// When it was acknowledged, in milliseconds since the epoch.
    #[serde(default)]
    pub acknowledged_time: Option<i64>,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(request_id: &str, row: i64, answered: bool) -> PredictionRecord {
        PredictionRecord {
            deployment: "api".into(),
            request_id: request_id.into(),
            row,
            time: 1_000,
            model: "churn".into(),
            version: answered.then(|| "2".into()),
            status: if answered { 200 } else { 422 },
            latency_us: 15,
            inputs: answered.then(|| format!(r#"{{"x":{row}}}"#)),
            prediction: answered.then(|| format!(r#""{request_id}""#)),
            score: answered.then_some(0.5 + row as f64),
        }
    }

    #[test]
    fn records_packed_into_a_batch_read_back_unchanged() {
        let records = vec![
            record("a", 0, true),
            record("multi", 0, true),
            record("multi", 1, true),
            record("multi", 2, true),
            record("failed", 0, false),
            record("late", 3, true),
            record("a", 0, true),
        ];
        let batch: PredictionBatch = records.clone().into_iter().collect();
        assert_eq!(batch.request_count(), 5);
        assert_eq!(batch.row_count(), 7);
        let back: Vec<PredictionRecord> = batch.rows().map(|r| r.to_record()).collect();
        assert_eq!(back, records);

        // Appending shifts the second batch's places; clearing keeps nothing.
        let mut both = batch.clone();
        both.append(&batch);
        assert_eq!(both.rows().map(|r| r.to_record()).collect::<Vec<_>>(), [records.clone(), records].concat());
        let grown = both.capacity_bytes();
        both.clear();
        assert!(both.is_empty());
        assert_eq!(both.capacity_bytes(), grown, "clearing keeps the buffers for reuse");
        assert_eq!(both.rows().count(), 0);
    }

    #[test]
    fn a_request_is_filled_through_the_row_writer() {
        let mut batch = PredictionBatch::new();
        let fields = LoggedRequest {
            deployment: "api".into(),
            request_id: "r1".into(),
            time: 7,
            model: "m".into(),
            version: None,
            status: 200,
            latency_us: 3,
        };
        batch.push_request(fields.clone(), |w| {
            w.row(|t| t.push_str("{\"a\":1}"), |t| t.push_str("\"yes\""), Some(0.9)).row(
                |t| t.push_str("{\"a\":2}"),
                |t| t.push_str("\"no\""),
                None,
            );
        });
        batch.push_request(LoggedRequest { status: 500, ..fields }, |_| {});
        let rows: Vec<PredictionRow<'_>> = batch.rows().collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].row, rows[0].inputs, rows[0].prediction, rows[0].score),
            (0, Some("{\"a\":1}"), Some("\"yes\""), Some(0.9))
        );
        assert_eq!(
            (rows[1].row, rows[1].inputs, rows[1].prediction, rows[1].score),
            (1, Some("{\"a\":2}"), Some("\"no\""), None)
        );
        assert_eq!((rows[2].status, rows[2].inputs, rows[2].prediction), (500, None, None));
    }
}
