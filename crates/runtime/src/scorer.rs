//! A model as the code that judges it sees it (promotion gates): the columns it reads, its
//! classes, its answers on a table, and its one-row latency, whatever engine runs it.
//! Shipyard's engine in this process ([`LoadedModel`]) is one; serving's Python workers are
//! another (`shipyard_serving::scorer`), so a gate measures the engine that will serve.

use arrow_array::RecordBatch;

use crate::model::{Inputs, LoadedModel, Output, PredictError};

/// A loaded model, synchronously: callers run it on a blocking thread, never on the reactor.
pub trait Scorer: Send + Sync {
    /// The columns it reads.
    fn inputs(&self) -> &Inputs;
    /// A classifier's labels.
    fn classes(&self) -> Option<Vec<String>>;
    /// The engine that answers: `native`, `onnxruntime`, `python`.
    fn engine_name(&self) -> &str;
    /// Its answers on the rows of `batches` (which may hold columns it does not read).
    fn predict_batches(&self, batches: &[RecordBatch]) -> Result<Output, PredictError>;
    /// One-row predictions on the first `sample_rows` rows, cycled, `repeat` times after a
    /// warm-up: the 99th percentile in milliseconds, and the number timed.
    fn one_row_p99_ms(
        &self,
        batches: &[RecordBatch],
        sample_rows: usize,
        repeat: usize,
    ) -> Result<(f64, usize), PredictError>;

    /// The named columns it reads (none for a positional model).
    fn column_names(&self) -> Vec<String> {
        match self.inputs() {
            Inputs::Named(columns) => columns.iter().map(|c| c.name.clone()).collect(),
            Inputs::Positional { .. } => Vec::new(),
        }
    }
}

impl Scorer for LoadedModel {
    fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    fn classes(&self) -> Option<Vec<String>> {
        LoadedModel::classes(self)
    }

    fn engine_name(&self) -> &str {
        self.engine_name
    }

    fn predict_batches(&self, batches: &[RecordBatch]) -> Result<Output, PredictError> {
        self.predict(batches)
    }

    fn one_row_p99_ms(
        &self,
        batches: &[RecordBatch],
        sample_rows: usize,
        repeat: usize,
    ) -> Result<(f64, usize), PredictError> {
        let features = self.features(batches)?;
        let sample = features.take(&(0..features.rows.min(sample_rows)).collect::<Vec<_>>());
        let report = crate::bench::measure(self, &sample, repeat, &[])?;
        Ok((report.batch1.p99_us / 1e3, report.batch1.runs))
    }
}
