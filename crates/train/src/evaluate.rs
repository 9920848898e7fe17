//! Evaluation of a trained model on held-out rows: the metrics runs carry, and per-row latency.

use std::time::Instant;

use crate::error::{Result, TrainError};
use crate::frame::{Features, Target};
use crate::metrics::{self, ClassificationMetrics};
use crate::model::{Control, Model, Predictions};
use crate::params::{ModelKind, Params};
use crate::split;

/// Classification metric names, in the order runs log them.
pub const CLASSIFICATION_METRICS: [&str; 9] = [
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "log_loss",
];
/// Regression metric names, in the order runs log them.
pub const REGRESSION_METRICS: [&str; 4] = ["rmse", "mae", "r2", "mape"];

/// Metrics by the names runs carry, plus the confusion matrix for classification.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: Vec<(String, f64)>,
    pub classification: Option<ClassificationMetrics>,
}

/// Scores `model` on `features` against `target`.
pub fn evaluate(model: &Model, features: &Features, target: &Target) -> Result<Evaluation> {
    let predictions = model.predict(features)?;
    match (predictions, target) {
        (Predictions::Classes { classes, proba }, Target::Classes { codes, labels }) => {
            if labels != &model.classes {
                return Err(TrainError::data("the evaluation target's classes differ from the model's"));
            }
            let m = metrics::classification(codes, &classes, Some(&proba), labels.len());
            let mut out = vec![
                ("accuracy".to_owned(), m.accuracy),
                ("precision_macro".to_owned(), m.precision_macro),
                ("recall_macro".to_owned(), m.recall_macro),
                ("f1_macro".to_owned(), m.f1_macro),
                ("precision_weighted".to_owned(), m.precision_weighted),
                ("recall_weighted".to_owned(), m.recall_weighted),
                ("f1_weighted".to_owned(), m.f1_weighted),
            ];
            if let Some(auc) = m.roc_auc {
                out.push(("roc_auc".to_owned(), auc));
            }
            if let Some(loss) = m.log_loss {
                out.push(("log_loss".to_owned(), loss));
            }
            Ok(Evaluation { metrics: out, classification: Some(m) })
        }
        (Predictions::Values(pred), Target::Values(truth)) => {
            let m = metrics::regression(truth, &pred);
            Ok(Evaluation {
                metrics: vec![
                    ("rmse".to_owned(), m.rmse),
                    ("mae".to_owned(), m.mae),
                    ("r2".to_owned(), m.r2),
                    ("mape".to_owned(), m.mape),
                ],
                classification: None,
            })
        }
        _ => Err(TrainError::data("the evaluation target's task differs from the model's")),
    }
}

/// Median and 99th percentile (numpy's linear interpolation) of per-row prediction latency in
/// milliseconds, over the first `max_rows` rows predicted one at a time, after one warm-up call.
pub fn latency_ms(model: &Model, features: &Features, max_rows: usize) -> Result<(f64, f64)> {
    let n = features.rows.min(max_rows);
    if n == 0 {
        return Err(TrainError::data("no rows to time predictions on"));
    }
    let rows: Vec<Features> = (0..n).map(|r| features.take(&[r])).collect();
    model.predict(&rows[0])?;
    let mut times = Vec::with_capacity(n);
    for row in &rows {
        let start = Instant::now();
        model.predict(row)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

/// The `q` quantile of ascending `sorted` values, interpolating linearly between ranks.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Mean and (population) standard deviation of each metric over `folds`-fold cross-validation
/// of `rows`, in the metric order of [`evaluate`].
#[allow(clippy::too_many_arguments)]
pub fn cross_validate(
    kind: ModelKind,
    params: &Params,
    features: &Features,
    target: &Target,
    target_name: &str,
    rows: &[usize],
    folds: usize,
    seed: u64,
    control: &Control,
) -> Result<Vec<(String, f64, f64)>> {
    let mut per_fold: Vec<Vec<(String, f64)>> = Vec::with_capacity(folds);
    for fold in split::k_fold(target, rows, folds, seed)? {
        let model = crate::model::train(
            kind,
            params,
            &features.take(&fold.train),
            &target.take(&fold.train),
            target_name,
            seed,
            control,
        )?;
        per_fold.push(evaluate(&model, &features.take(&fold.test), &target.take(&fold.test))?.metrics);
    }
    let names: Vec<String> = per_fold[0].iter().map(|(n, _)| n.clone()).collect();
    Ok(names
        .into_iter()
        .map(|name| {
            // A metric a fold could not compute (ROC AUC without both classes) is left out.
            let values: Vec<f64> =
                per_fold.iter().filter_map(|m| m.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)).collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
            (name, mean, var.sqrt())
        })
        .collect())
}

/// Whether larger values of `metric` are better.
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(metric, "log_loss" | "rmse" | "mae" | "mape" | "training_time_s")
        && !metric.starts_with("inference_latency")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert!((percentile(&v, 0.99) - 3.97).abs() < 1e-12);
    }
}
