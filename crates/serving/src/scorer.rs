//! A loaded [`Engine`] as a [`Scorer`], for gates: Shipyard's engine directly, Python workers
//! through the pool, each call waited for on the runtime that owns the pool. Used from blocking
//! threads (the CLI's main thread, `spawn_blocking`), never on the reactor.

use std::time::Instant;

use arrow_array::RecordBatch;
use shipyard_runtime::{Inputs, Output, PredictError, Scorer};

use crate::Engine;
use crate::error::{ErrorKind, ServeError};

/// An engine and the runtime its Python workers live on.
pub struct EngineScorer {
    pub engine: Engine,
    pub runtime: tokio::runtime::Handle,
}

fn predict_error(e: ServeError) -> PredictError {
    match e.kind {
        ErrorKind::Invalid | ErrorKind::Malformed => PredictError::Input(e.message),
        _ => PredictError::Model(e.message),
    }
}

impl EngineScorer {
    /// The Python model's answer on one table.
    fn python_predict(&self, table: &RecordBatch) -> Result<Output, PredictError> {
        let Engine::Python(model) = &self.engine else {
            return Err(PredictError::Model("not a Python model".into()));
        };
        self.runtime.block_on(model.predict_table(table)).map_err(predict_error)
    }
}

impl Scorer for EngineScorer {
    fn inputs(&self) -> &Inputs {
        self.engine.inputs()
    }

    fn classes(&self) -> Option<Vec<String>> {
        self.engine.classes()
    }

    fn engine_name(&self) -> &str {
        match &self.engine {
            Engine::Native(m) | Engine::Converted(m) => m.engine_name,
            Engine::Python(_) => "python",
        }
    }

    fn predict_batches(&self, batches: &[RecordBatch]) -> Result<Output, PredictError> {
        match &self.engine {
            Engine::Native(m) | Engine::Converted(m) => m.predict(batches),
            Engine::Python(_) => {
                let Some(first) = batches.first() else { return Err(PredictError::Input("no rows".into())) };
                let table = arrow_select::concat::concat_batches(&first.schema(), batches)
                    .map_err(|e| PredictError::Input(e.to_string()))?;
                self.python_predict(&table)
            }
        }
    }

    fn one_row_p99_ms(
        &self,
        batches: &[RecordBatch],
        sample_rows: usize,
        repeat: usize,
    ) -> Result<(f64, usize), PredictError> {
        match &self.engine {
            Engine::Native(m) | Engine::Converted(m) => m.one_row_p99_ms(batches, sample_rows, repeat),
            Engine::Python(_) => {
                // Each timed call is a whole trip: the queue, the socket, the worker's predict.
                let rows: Vec<RecordBatch> = batches
                    .iter()
                    .flat_map(|b| (0..b.num_rows()).map(move |r| b.slice(r, 1)))
                    .take(sample_rows.max(1))
                    .collect();
                if rows.is_empty() {
                    return Err(PredictError::Input("no sample rows to time the model on".into()));
                }
                for row in rows.iter().cycle().take((repeat / 10).max(10)) {
                    self.python_predict(row)?;
                }
                let mut samples = Vec::with_capacity(repeat.max(1));
                for row in rows.iter().cycle().take(repeat.max(1)) {
                    let start = Instant::now();
                    self.python_predict(row)?;
                    samples.push(start.elapsed().as_secs_f64() * 1e3);
                }
                samples.sort_by(f64::total_cmp);
                Ok((shipyard_runtime::bench::quantile(&samples, 0.99), samples.len()))
            }
        }
    }
}
