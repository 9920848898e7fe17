//! Measured inference time (the seed's `inference_time`, for real): single-row latency
//! percentiles and large-batch throughput of a loaded model on sample rows.
//!
//! Rows are decoded and turned into the engine's own inputs once; `batch1` and `batches` time
//! the engine alone on them (as onnxruntime is timed on ready arrays), and `end_to_end_ms` the
//! whole path for the largest batch: columns to engine inputs, the engine, outputs to labels
//! and probabilities. Samples are taken after a warm-up, rows cycling through the sample. Batch
//! timings run at least five times and stop after about two seconds; medians are reported
//! because the machines are noisy.

use std::time::{Duration, Instant};

use serde::Serialize;
use shipyard_train::frame::Features;

use crate::model::{LoadedModel, PredictError, Prepared};

#[derive(Clone, Debug, Serialize)]
pub struct LatencyStats {
    pub runs: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BatchStats {
    pub rows: usize,
    pub runs: usize,
    pub median_ms: f64,
    pub rows_per_s: f64,
    /// The same rows from decoded columns to labels and probabilities (median).
    pub end_to_end_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub rows_available: usize,
    pub batch1: LatencyStats,
    pub batches: Vec<BatchStats>,
}

/// The value at quantile `q` of sorted samples (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median time of `work` in milliseconds and the number of runs: one warm-up, then at
/// least five runs, more while under about two seconds.
fn median_ms(mut work: impl FnMut() -> Result<(), PredictError>) -> Result<(f64, usize), PredictError> {
    work()?;
    let budget = Duration::from_secs(2);
    let began = Instant::now();
    let mut times = Vec::new();
    while times.len() < 5 || (began.elapsed() < budget && times.len() < 200) {
        let start = Instant::now();
        work()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((quantile(&times, 0.5), times.len()))
}

/// `rows` rows cycling through `sample`.
fn cycled(sample: &Features, rows: usize) -> Features {
    let idx: Vec<usize> = (0..rows).map(|i| i % sample.rows).collect();
    sample.take(&idx)
}

/// Times `model` on `sample`: `repeat` single-row predictions, then each of `batch_sizes`.
pub fn measure(
    model: &LoadedModel,
    sample: &Features,
    repeat: usize,
    batch_sizes: &[usize],
) -> Result<BenchReport, PredictError> {
    if sample.rows == 0 {
        return Err(PredictError::Input("no sample rows to time the model on".into()));
    }
    let singles: Vec<Prepared> =
        (0..sample.rows.min(repeat.max(1))).map(|i| model.prepare(&sample.take(&[i]))).collect::<Result<_, _>>()?;
    // Warm-up: a tenth of the runs, at least one pass over a few rows.
    for p in singles.iter().cycle().take((repeat / 10).max(10)) {
        model.run_prepared(p)?;
    }
    let mut samples = Vec::with_capacity(repeat);
    for p in singles.iter().cycle().take(repeat.max(1)) {
        let start = Instant::now();
        model.run_prepared(p)?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let mean_us = samples.iter().sum::<f64>() / samples.len() as f64;
    samples.sort_by(f64::total_cmp);
    let batch1 = LatencyStats {
        runs: samples.len(),
        p50_us: quantile(&samples, 0.5),
        p99_us: quantile(&samples, 0.99),
        mean_us,
    };
    let mut batches = Vec::new();
    for &rows in batch_sizes {
        let batch = cycled(sample, rows);
        let prepared = model.prepare(&batch)?;
        let (engine_ms, runs) = median_ms(|| model.run_prepared(&prepared))?;
        let (end_to_end_ms, _) = median_ms(|| model.predict_features(&batch).map(|_| ()))?;
        batches.push(BatchStats {
            rows,
            runs,
            median_ms: engine_ms,
            rows_per_s: rows as f64 / (engine_ms / 1e3),
            end_to_end_ms,
        });
    }
    Ok(BenchReport { rows_available: sample.rows, batch1, batches })
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[3.0], 0.99), 3.0);
    }
}
