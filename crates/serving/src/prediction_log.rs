//! The prediction log: what each served request asked and got, written to the store in the
//! background without slowing the request.
//!
//! A request packs its rows (inputs and answer as JSON text) into a per-thread scratch batch,
//! then copies them into a bounded shared [`PredictionBatch`] under a short lock: when the
//! buffer is full the request is dropped and counted
//! (`shipyard_prediction_log_rows_total{outcome="dropped"}`), never waited for. A writer task
//! takes the buffer every `flush_interval`, or as soon as it holds `batch_rows` rows, and
//! appends it to the store in one transaction; the written buffer is emptied and reused, so in
//! a steady state logging allocates nothing per request.
//! Requests do not wake the writer one by one: measured on 2 cores, a wake per request (a
//! channel) cost more throughput than encoding and writing the rows. Stopping the writer takes
//! what is left, so after a graceful shutdown (which lets in-flight requests finish) every
//! answered, sampled request is in the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use prometheus_client::metrics::counter::Counter;
use shipyard_core::entities::now_millis;
use shipyard_core::monitoring::{LoggedRequest, PredictionBatch};
use shipyard_runtime::model::Output;
use shipyard_store::Database;
use std::sync::Mutex;

use tokio::sync::{Notify, oneshot};

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
            batch_rows: 2_000,
            flush_interval: Duration::from_millis(200),
            retention: None,
        }
    }
}

/// One request, as handed to the log.
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
    /// Packs the request into `batch`: its fields once, its rows' inputs and answers as JSON text.
    fn pack_into(&self, batch: &mut PredictionBatch) {
        let fields = LoggedRequest {
            deployment: self.deployment.clone(),
            request_id: self.request_id.clone(),
            time: self.time,
            model: self.model.logged_as.0.clone(),
            version: self.model.logged_as.1.clone(),
            status: i64::from(self.status),
            latency_us: i64::try_from(self.latency.as_micros()).unwrap_or(i64::MAX),
        };
        batch.push_request(fields, |rows| {
            if let Some((inputs, output)) = &self.answered {
                for row in 0..inputs.num_rows() {
                    let score = score_of(output, row);
                    rows.row(|text| write_inputs(text, inputs, row), |text| write_answer(text, output, row), score);
                }
            }
        });
    }
}

/// Largest buffer kept for reuse (a scratch per thread, the writer's spare): a steady stream of
/// small requests stays far below it; one huge request's buffer is freed after use instead of
/// being held by its thread for good.
const KEEP_BYTES: usize = 8 << 20;

thread_local! {
    /// Where a request's rows are packed before they are copied into the shared buffer, so the
    /// buffer's lock is held for a copy, not for the encoding. Kept per thread, it stops
    /// allocating once it has grown to the largest request.
    static SCRATCH: std::cell::Cell<PredictionBatch> = std::cell::Cell::new(PredictionBatch::new());
}

/// What requests have handed over and the writer has not taken yet.
#[derive(Default)]
struct Pending {
    batch: PredictionBatch,
    rows: usize,
    /// Set when the writer stops: later entries are dropped.
    closed: bool,
}

/// The buffer requests and the writer share. A request pushes under a short lock and wakes the
/// writer only when a batch is full (a wake per request would cost more than the logging).
struct Shared {
    pending: Mutex<Pending>,
    /// A written batch, emptied, for the next `take` to swap in: the log's buffers are reused
    /// rather than allocated and freed at every flush.
    spare: Mutex<Option<PredictionBatch>>,
    full: Notify,
    capacity: usize,
    batch_rows: usize,
}

impl Shared {
    /// What is pending, replaced by the spare batch (or a new one).
    fn take(&self) -> PredictionBatch {
        let fresh = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.rows = 0;
        std::mem::replace(&mut p.batch, fresh)
    }

    /// Keeps a written batch's buffers for reuse.
    fn give_back(&self, mut batch: PredictionBatch) {
        if batch.capacity_bytes() > KEEP_BYTES {
            // Grown by a burst of large requests: let it go rather than hold it for good.
            return;
        }
        batch.clear();
        *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = Some(batch);
    }
}

/// The request side of the log: cheap to call on every request.
pub struct PredictionLog {
    shared: Arc<Shared>,
    /// Requests whose id hashes below this are logged.
    sample_below: u64,
    dropped: Counter,
}

impl PredictionLog {
    /// Whether the request `request_id` is in the sample.
    pub fn sampled(&self, request_id: &str) -> bool {
        self.sample_below == u64::MAX || crate::deployment::fnv1a(request_id.as_bytes()) < self.sample_below
    }

    /// Hands `entry` to the writer, or drops and counts it when the buffer is full. Never waits
    /// for the writer.
    pub fn record(&self, entry: Entry) {
        SCRATCH.with(|cell| {
            // Taken out and put back, so the cell is never borrowed across the copy.
            let mut scratch = cell.take();
            scratch.clear();
            entry.pack_into(&mut scratch);
            self.hand_over(&scratch);
            if scratch.capacity_bytes() <= KEEP_BYTES {
                cell.set(scratch);
            }
        });
    }

    /// Copies a packed request into the shared buffer, or counts it dropped.
    fn hand_over(&self, packed: &PredictionBatch) {
        let rows = packed.row_count();
        let mut p = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.closed || p.batch.request_count() >= self.shared.capacity {
            drop(p);
            self.dropped.inc_by(rows as u64);
            return;
        }
        let before = p.rows;
        p.rows += rows;
        p.batch.append(packed);
        let filled = before < self.shared.batch_rows && p.rows >= self.shared.batch_rows;
        drop(p);
        if filled {
            self.shared.full.notify_one();
        }
    }

    /// Starts the writer on `db`. The returned [`LogWriter`] must be stopped after the server
    /// stops, to write what is buffered.
    pub fn start(db: Database, settings: LogSettings, metrics: &Metrics) -> (PredictionLog, LogWriter) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            spare: Mutex::new(None),
            full: Notify::new(),
            capacity: settings.capacity.max(1),
            batch_rows: settings.batch_rows.max(1),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let sample = settings.sample.clamp(0.0, 1.0);
        let sample_below = if sample >= 1.0 { u64::MAX } else { (sample * u64::MAX as f64) as u64 };
        let counters = Counters { written: metrics.log_rows("written"), failed: metrics.log_rows("failed") };
        let task = tokio::spawn(write_loop(db, settings, shared.clone(), stop_rx, counters));
        let log = PredictionLog { shared, sample_below, dropped: metrics.log_rows("dropped") };
        (log, LogWriter { stop: stop_tx, task })
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
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
    counters: Counters,
) {
    let mut tick = tokio::time::interval(settings.flush_interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention = Instant::now();
    loop {
        tokio::select! {
            () = shared.full.notified() => {}
            _ = tick.tick() => {
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
        flush(&db, &shared, &counters).await;
    }
    // Stopping: everything already handed over is written; later entries are refused.
    shared.pending.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
    flush(&db, &shared, &counters).await;
}

async fn flush(db: &Database, shared: &Shared, counters: &Counters) {
    let batch = shared.take();
    if batch.is_empty() {
        shared.give_back(batch);
        return;
    }
    let batch = Arc::new(batch);
    let n = batch.row_count() as u64;
    match db.log_predictions(batch.clone()).await {
        Ok(_) => {
            counters.written.inc_by(n);
        }
        Err(e) => {
            counters.failed.inc_by(n);
            tracing::warn!("the prediction log could not write {n} rows: {e}");
        }
    }
    if let Ok(batch) = Arc::try_unwrap(batch) {
        shared.give_back(batch);
    }
}

/// A number for statistics from a row's answer (see `PredictionRecord::score`): a regressor's
/// value, a binary classifier's probability of its second class, a multiclass classifier's
/// probability of the predicted class.
fn score_of(output: &Output, row: usize) -> Option<f64> {
    match output {
        Output::Classes { classes, probabilities, .. } => {
            let k = classes.len();
            match probabilities.get(row * k..(row + 1) * k).unwrap_or(&[]) {
                [] => None,
                [_, second] => Some(*second),
                many => many.iter().copied().reduce(f64::max),
            }
        }
        Output::Values { columns, values, .. } => match values.get(row * (*columns).max(1)..).unwrap_or(&[]) {
            [v, ..] if *columns <= 1 && v.is_finite() => Some(*v),
            _ => None,
        },
    }
}

/// Appends a row's answer as JSON: a classifier's label, a regressor's value (or the list of
/// its values).
fn write_answer(out: &mut String, output: &Output, row: usize) {
    match output {
        Output::Classes { labels, .. } => push_json_string(out, labels.get(row).map_or("", String::as_str)),
        Output::Values { columns, values, .. } => {
            let c = (*columns).max(1);
            match values.get(row * c..(row + 1) * c).unwrap_or(&[]) {
                [v] => push_json_number(out, *v),
                many => {
                    out.push('[');
                    for (i, v) in many.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        push_json_number(out, *v);
                    }
                    out.push(']');
                }
            }
        }
    }
}

/// Appends `v` in serde_json's shortest round-trip form, formatted on the stack; `null` when
/// it is not finite (JSON has no NaN).
fn push_json_number(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    if !v.is_finite() {
        out.push_str("null");
        return;
    }
    let mut digits = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut digits[..]);
    match serde_json::to_writer(&mut cursor, &v) {
        Ok(()) => {
            let n = usize::try_from(cursor.position()).unwrap_or(0);
            out.push_str(std::str::from_utf8(&digits[..n]).unwrap_or("null"));
        }
        Err(_) => _ = write!(out, "{v}"),
    }
}

/// Appends a row of `batch` as a JSON object of column to value, in column order (missing and
/// non-finite values are null). Written straight into the log's text: this runs for every
/// logged row.
fn write_inputs(out: &mut String, batch: &RecordBatch, row: usize) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type};
    use std::fmt::Write as _;
    out.push('{');
    let schema = batch.schema_ref();
    for (i, (field, column)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, field.name());
        out.push(':');
        if column.is_null(row) {
            out.push_str("null");
            continue;
        }
        match column.data_type() {
            DataType::Float64 => push_json_number(out, column.as_primitive::<Float64Type>().value(row)),
            DataType::Float32 => push_json_number(out, f64::from(column.as_primitive::<Float32Type>().value(row))),
            DataType::Int64 => _ = write!(out, "{}", column.as_primitive::<Int64Type>().value(row)),
            DataType::Int32 => _ = write!(out, "{}", column.as_primitive::<Int32Type>().value(row)),
            DataType::Int16 => _ = write!(out, "{}", column.as_primitive::<Int16Type>().value(row)),
            DataType::Int8 => _ = write!(out, "{}", column.as_primitive::<Int8Type>().value(row)),
            DataType::Boolean => out.push_str(if column.as_boolean().value(row) { "true" } else { "false" }),
            DataType::Utf8 => push_json_string(out, column.as_string::<i32>().value(row)),
            DataType::LargeUtf8 => push_json_string(out, column.as_string::<i64>().value(row)),
            _ => out.push_str("null"),
        }
    }
    out.push('}');
}

/// Appends `s` as a JSON string (quoted, escaped).
fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};

    fn inputs_json(batch: &RecordBatch, row: usize) -> String {
        let mut out = String::new();
        write_inputs(&mut out, batch, row);
        out
    }

    fn answer_of(output: &Output, row: usize) -> (String, Option<f64>) {
        let mut out = String::new();
        write_answer(&mut out, output, row);
        (out, score_of(output, row))
    }

    #[test]
    fn a_row_becomes_a_json_object_with_nulls_for_missing_values() {
        let batch = RecordBatch::try_from_iter([
            ("x", Arc::new(Float64Array::from(vec![Some(1.5), None])) as _),
            ("n", Arc::new(Int64Array::from(vec![3, 4])) as _),
            ("s", Arc::new(StringArray::from(vec!["a\"b", "c"])) as _),
        ])
        .unwrap();
        assert_eq!(inputs_json(&batch, 0), r#"{"x":1.5,"n":3,"s":"a\"b"}"#);
        assert_eq!(inputs_json(&batch, 1), r#"{"x":null,"n":4,"s":"c"}"#);
        let odd =
            RecordBatch::try_from_iter([("line\nbreak", Arc::new(StringArray::from(vec!["tab\t"])) as _)]).unwrap();
        let back: serde_json::Value = serde_json::from_str(&inputs_json(&odd, 0)).unwrap();
        assert_eq!(back, serde_json::json!({"line\nbreak": "tab\t"}));
    }

    #[test]
    fn answers_carry_the_label_and_a_score() {
        let binary = Output::Classes {
            classes: vec!["0".into(), "1".into()],
            labels: vec!["1".into(), "0".into()],
            probabilities: vec![0.2, 0.8, 0.9, 0.1],
            graph: None,
        };
        assert_eq!(answer_of(&binary, 0), ("\"1\"".to_owned(), Some(0.8)));
        assert_eq!(answer_of(&binary, 1), ("\"0\"".to_owned(), Some(0.1)));
        let three = Output::Classes {
            classes: vec!["a".into(), "b".into(), "c".into()],
            labels: vec!["b".into()],
            probabilities: vec![0.2, 0.5, 0.3],
            graph: None,
        };
        assert_eq!(answer_of(&three, 0), ("\"b\"".to_owned(), Some(0.5)));
        let values = Output::Values { columns: 1, values: vec![2.5, f64::NAN], graph: None };
        assert_eq!(answer_of(&values, 0), ("2.5".to_owned(), Some(2.5)));
        assert_eq!(answer_of(&values, 1), ("null".to_owned(), None));
        let pairs = Output::Values { columns: 2, values: vec![1.0, 2.5, f64::INFINITY, -0.5], graph: None };
        assert_eq!(answer_of(&pairs, 0), ("[1.0,2.5]".to_owned(), None));
        assert_eq!(answer_of(&pairs, 1), ("[null,-0.5]".to_owned(), None));
    }
}
