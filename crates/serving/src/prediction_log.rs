//! The prediction log: what each served request asked and got, written to the store in the
//! background without slowing the request.
//!
//! A request hands its entry (its batch and answer, both shared, not copied) to a bounded
//! channel with `try_send`: when the channel is full the entry is dropped and counted
//! (`shipyard_prediction_log_rows_total{outcome="dropped"}`), never waited for. A writer task
//! gathers entries into batches of up to `batch_rows` rows or `flush_interval`, turns them into
//! rows on the blocking pool, and appends them to the store in one transaction. Stopping the
//! writer drains the channel and writes what is left, so after a graceful shutdown (which
//! lets in-flight requests finish) every answered, sampled request is in the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use prometheus_client::metrics::counter::Counter;
use shipyard_core::entities::now_millis;
use shipyard_core::monitoring::PredictionRecord;
use shipyard_runtime::model::Output;
use shipyard_store::Database;
use tokio::sync::{mpsc, oneshot};

use crate::ServedModel;
use crate::metrics::Metrics;

/// How the log behaves.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Requests waiting to be written; beyond it entries are dropped.
    pub capacity: usize,
    /// The share of requests logged, 0 to 1, chosen by a hash of the request id (so a sampled
    /// request is logged whole, and replicas agree).
    pub sample: f64,
    /// Rows per write.
    pub batch_rows: usize,
    /// Longest time a row waits before it is written.
    pub flush_interval: Duration,
    /// Rows older than this are deleted (checked every minute); `None` keeps everything.
    pub retention: Option<Duration>,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            capacity: 10_000,
            sample: 1.0,
            batch_rows: 500,
            flush_interval: Duration::from_millis(200),
            retention: None,
        }
    }
}

/// One request, as handed to the writer.
pub struct Entry {
    pub deployment: Arc<str>,
    pub request_id: Arc<str>,
    pub time: i64,
    pub model: Arc<ServedModel>,
    pub status: u16,
    pub latency: Duration,
    /// The inputs and the answer, for a request answered with a prediction.
    pub answered: Option<(RecordBatch, Arc<Output>)>,
}

impl Entry {
    fn rows(&self) -> usize {
        self.answered.as_ref().map_or(1, |(b, _)| b.num_rows().max(1))
    }
}

/// The request side of the log: cheap to call on every request.
pub struct PredictionLog {
    tx: mpsc::Sender<Entry>,
    /// Requests whose id hashes below this are logged.
    sample_below: u64,
    dropped: Counter,
}

impl PredictionLog {
    /// Whether the request `request_id` is in the sample.
    pub fn sampled(&self, request_id: &str) -> bool {
        self.sample_below == u64::MAX || crate::deployment::fnv1a(request_id.as_bytes()) < self.sample_below
    }

    /// Hands `entry` to the writer, or drops and counts it when the buffer is full. Never waits.
    pub fn record(&self, entry: Entry) {
        if let Err(e) = self.tx.try_send(entry) {
            let entry = match e {
                mpsc::error::TrySendError::Full(entry) | mpsc::error::TrySendError::Closed(entry) => entry,
            };
            self.dropped.inc_by(entry.rows() as u64);
        }
    }

    /// Starts the writer on `db`. The returned [`LogWriter`] must be stopped after the server
    /// stops, to write what is buffered.
    pub fn start(db: Database, settings: LogSettings, metrics: &Metrics) -> (PredictionLog, LogWriter) {
        let (tx, rx) = mpsc::channel(settings.capacity.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let sample = settings.sample.clamp(0.0, 1.0);
        let sample_below = if sample >= 1.0 { u64::MAX } else { (sample * u64::MAX as f64) as u64 };
        let counters = Counters { written: metrics.log_rows("written"), failed: metrics.log_rows("failed") };
        let task = tokio::spawn(write_loop(db, settings, rx, stop_rx, counters));
        (PredictionLog { tx, sample_below, dropped: metrics.log_rows("dropped") }, LogWriter { stop: stop_tx, task })
    }
}

/// The writer task; [`LogWriter::stop`] drains and ends it.
pub struct LogWriter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl LogWriter {
    /// Writes everything buffered, then ends the writer.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!("the prediction log writer failed: {e}");
        }
    }
}

struct Counters {
    written: Counter,
    failed: Counter,
}

async fn write_loop(
    db: Database,
    settings: LogSettings,
    mut rx: mpsc::Receiver<Entry>,
    mut stop: oneshot::Receiver<()>,
    counters: Counters,
) {
    let mut pending: Vec<Entry> = Vec::new();
    let mut rows = 0usize;
    let mut tick = tokio::time::interval(settings.flush_interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention = Instant::now();
    loop {
        tokio::select! {
            entry = rx.recv() => match entry {
                Some(entry) => {
                    rows += entry.rows();
                    pending.push(entry);
                    if rows >= settings.batch_rows {
                        flush(&db, std::mem::take(&mut pending), &counters).await;
                        rows = 0;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if !pending.is_empty() {
                    flush(&db, std::mem::take(&mut pending), &counters).await;
                    rows = 0;
                }
                if let Some(keep) = settings.retention.filter(|_| last_retention.elapsed() >= Duration::from_secs(60)) {
                    last_retention = Instant::now();
                    let cutoff = now_millis().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
                    match db.delete_predictions_before(cutoff).await {
                        Ok(n) if n > 0 => tracing::info!("prediction log retention: deleted {n} rows"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!("prediction log retention failed: {e}"),
                    }
                }
            }
            _ = &mut stop => break,
        }
    }
    // Stopping: everything already handed over is written.
    rx.close();
    while let Some(entry) = rx.recv().await {
        pending.push(entry);
        if pending.len() >= settings.batch_rows.max(1) {
            flush(&db, std::mem::take(&mut pending), &counters).await;
        }
    }
    flush(&db, pending, &counters).await;
}

async fn flush(db: &Database, entries: Vec<Entry>, counters: &Counters) {
    if entries.is_empty() {
        return;
    }
    let records =
        match tokio::task::spawn_blocking(move || entries.iter().flat_map(records_of).collect::<Vec<_>>()).await {
            Ok(records) => records,
            Err(e) => {
                tracing::error!("the prediction log could not encode a batch: {e}");
                return;
            }
        };
    let n = records.len() as u64;
    match db.log_predictions(records).await {
        Ok(_) => {
            counters.written.inc_by(n);
        }
        Err(e) => {
            counters.failed.inc_by(n);
            tracing::warn!("the prediction log could not write {n} rows: {e}");
        }
    }
}

/// The log rows of one request.
fn records_of(entry: &Entry) -> Vec<PredictionRecord> {
    let base = |row: usize, inputs: Option<String>, prediction: Option<String>, score: Option<f64>| PredictionRecord {
        deployment: entry.deployment.to_string(),
        request_id: entry.request_id.to_string(),
        row: row as i64,
        time: entry.time,
        model: entry.model.name.clone(),
        version: entry.model.version.clone(),
        status: i64::from(entry.status),
        latency_us: i64::try_from(entry.latency.as_micros()).unwrap_or(i64::MAX),
        inputs,
        prediction,
        score,
    };
    let Some((batch, output)) = &entry.answered else { return vec![base(0, None, None, None)] };
    (0..batch.num_rows())
        .map(|row| {
            let (prediction, score) = answer_of(output, row);
            base(row, Some(inputs_json(batch, row)), Some(prediction), score)
        })
        .collect()
}

/// A row's answer as JSON text, and its score (see `PredictionRecord::score`).
fn answer_of(output: &Output, row: usize) -> (String, Option<f64>) {
    match output {
        Output::Classes { classes, labels, probabilities } => {
            let k = classes.len();
            let probs = probabilities.get(row * k..(row + 1) * k).unwrap_or(&[]);
            let score = match probs {
                [] => None,
                [_, second] => Some(*second),
                many => many.iter().copied().reduce(f64::max),
            };
            let label = labels.get(row).map_or(String::new(), |l| l.clone());
            (serde_json::Value::String(label).to_string(), score)
        }
        Output::Values { columns, values } => {
            let c = (*columns).max(1);
            let vals = values.get(row * c..(row + 1) * c).unwrap_or(&[]);
            match vals {
                [v] => (number(*v).to_string(), v.is_finite().then_some(*v)),
                many => (serde_json::Value::Array(many.iter().map(|v| number(*v)).collect()).to_string(), None),
            }
        }
    }
}

fn number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// A row of `batch` as a JSON object of column to value (missing and non-finite values are
/// null).
fn inputs_json(batch: &RecordBatch, row: usize) -> String {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type};
    let mut map = serde_json::Map::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let value = if column.is_null(row) {
            serde_json::Value::Null
        } else {
            match column.data_type() {
                DataType::Float64 => number(column.as_primitive::<Float64Type>().value(row)),
                DataType::Float32 => number(f64::from(column.as_primitive::<Float32Type>().value(row))),
                DataType::Int64 => column.as_primitive::<Int64Type>().value(row).into(),
                DataType::Int32 => column.as_primitive::<Int32Type>().value(row).into(),
                DataType::Int16 => column.as_primitive::<Int16Type>().value(row).into(),
                DataType::Int8 => column.as_primitive::<Int8Type>().value(row).into(),
                DataType::Boolean => column.as_boolean().value(row).into(),
                DataType::Utf8 => column.as_string::<i32>().value(row).into(),
                DataType::LargeUtf8 => column.as_string::<i64>().value(row).into(),
                _ => serde_json::Value::Null,
            }
        };
        map.insert(field.name().clone(), value);
    }
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};

    #[test]
    fn a_row_becomes_a_json_object_with_nulls_for_missing_values() {
        let batch = RecordBatch::try_from_iter([
            ("x", Arc::new(Float64Array::from(vec![Some(1.5), None])) as _),
            ("n", Arc::new(Int64Array::from(vec![3, 4])) as _),
            ("s", Arc::new(StringArray::from(vec!["a\"b", "c"])) as _),
        ])
        .unwrap();
        assert_eq!(inputs_json(&batch, 0), r#"{"n":3,"s":"a\"b","x":1.5}"#);
        assert_eq!(inputs_json(&batch, 1), r#"{"n":4,"s":"c","x":null}"#);
    }

    #[test]
    fn answers_carry_the_label_and_a_score() {
        let binary = Output::Classes {
            classes: vec!["0".into(), "1".into()],
            labels: vec!["1".into(), "0".into()],
            probabilities: vec![0.2, 0.8, 0.9, 0.1],
        };
        assert_eq!(answer_of(&binary, 0), ("\"1\"".to_owned(), Some(0.8)));
        assert_eq!(answer_of(&binary, 1), ("\"0\"".to_owned(), Some(0.1)));
        let three = Output::Classes {
            classes: vec!["a".into(), "b".into(), "c".into()],
            labels: vec!["b".into()],
            probabilities: vec![0.2, 0.5, 0.3],
        };
        assert_eq!(answer_of(&three, 0), ("\"b\"".to_owned(), Some(0.5)));
        let values = Output::Values { columns: 1, values: vec![2.5, f64::NAN] };
        assert_eq!(answer_of(&values, 0), ("2.5".to_owned(), Some(2.5)));
        assert_eq!(answer_of(&values, 1), ("null".to_owned(), None));
    }
}
