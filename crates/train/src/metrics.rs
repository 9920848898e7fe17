//! Evaluation metrics, equal to scikit-learn's with its default arguments.
//!
//! Classes are indices `0..n_classes`. As in scikit-learn:
//! - precision, recall and F1 are computed over the labels present in `y_true` or `y_pred`
//!   (`unique_labels`), a class with no predicted (or no true) samples scoring 0
//!   (`zero_division=0`); F1 is `2 tp / (2 tp + fp + fn)`; `weighted` averages by support;
//! - ROC AUC is binary on the probability of class 1, or the one-vs-rest macro average for more
//!   classes; it is undefined (`None`) when `y_true` lacks a class, where scikit-learn raises;
//! - log loss clips probabilities to `[eps, 1 - eps]` (`f64::EPSILON`) and does not renormalise;
//! - MAPE divides by `max(|y|, eps)`; R² is 1 for a perfect fit of a constant target, 0 for an
//!   imperfect one (`force_finite=True`).
//!
//! The fidelity test (`tests/sklearn_fidelity.rs`) compares every function with scikit-learn on
//! fixtures made by `tests/fixtures/make_sklearn_fixtures.py`, to 1e-9 relative.

use serde::Serialize;

/// Classification metrics with the names runs carry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationMetrics {
    pub accuracy: f64,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    pub precision_weighted: f64,
    pub recall_weighted: f64,
    pub f1_weighted: f64,
    pub roc_auc: Option<f64>,
    pub log_loss: Option<f64>,
    /// Rows: true class, columns: predicted class, over `confusion_labels`.
    pub confusion_matrix: Vec<Vec<u64>>,
    /// The classes present in `y_true` or `y_pred`, ascending.
    pub confusion_labels: Vec<usize>,
}

/// Regression metrics with the names runs carry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionMetrics {
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
    pub mape: f64,
}

/// Classification metrics of predictions `y_pred` (and class probabilities `proba`, one row per
/// sample with `n_classes` columns) against `y_true`. Slices must have the same length; labels
/// must be below `n_classes`.
pub fn classification(
    y_true: &[usize],
    y_pred: &[usize],
    proba: Option<&[Vec<f64>]>,
    n_classes: usize,
) -> ClassificationMetrics {
    let n = y_true.len();
    let mut cm = vec![vec![0u64; n_classes]; n_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        cm[t][p] += 1;
    }
    let labels: Vec<usize> =
        (0..n_classes).filter(|&c| cm[c].iter().sum::<u64>() > 0 || cm.iter().any(|row| row[c] > 0)).collect();
    let correct: u64 = (0..n_classes).map(|c| cm[c][c]).sum();
    let (mut p_macro, mut r_macro, mut f_macro) = (0.0, 0.0, 0.0);
    let (mut p_weighted, mut r_weighted, mut f_weighted) = (0.0, 0.0, 0.0);
    let mut total_support = 0u64;
    for &c in &labels {
        let tp = cm[c][c] as f64;
        let support: u64 = cm[c].iter().sum();
        let predicted: u64 = cm.iter().map(|row| row[c]).sum();
        let ratio = |num: f64, den: f64| if den == 0.0 { 0.0 } else { num / den };
        let precision = ratio(tp, predicted as f64);
        let recall = ratio(tp, support as f64);
        let f1 = ratio(2.0 * tp, support as f64 + predicted as f64);
        p_macro += precision;
        r_macro += recall;
        f_macro += f1;
        p_weighted += precision * support as f64;
        r_weighted += recall * support as f64;
        f_weighted += f1 * support as f64;
        total_support += support;
    }
    let k = labels.len().max(1) as f64;
    let w = total_support.max(1) as f64;
    let confusion_matrix = labels.iter().map(|&t| labels.iter().map(|&p| cm[t][p]).collect()).collect();
    ClassificationMetrics {
        accuracy: if n == 0 { 0.0 } else { correct as f64 / n as f64 },
        precision_macro: p_macro / k,
        recall_macro: r_macro / k,
        f1_macro: f_macro / k,
        precision_weighted: p_weighted / w,
        recall_weighted: r_weighted / w,
        f1_weighted: f_weighted / w,
        roc_auc: proba.and_then(|p| roc_auc(y_true, p, n_classes)),
        log_loss: proba.map(|p| log_loss(y_true, p)),
        confusion_matrix,
        confusion_labels: labels,
    }
}

/// The area under the ROC curve of `scores` for the positive samples: the Mann-Whitney U
/// statistic with ties counted half, which equals scikit-learn's trapezoid over the ROC curve.
/// `None` when one side is empty.
pub fn binary_auc(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (n_pos, n_neg) = positive.iter().fold((0u64, 0u64), |(p, q), &t| if t { (p + 1, q) } else { (p, q + 1) });
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    // Sum of the (average) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * order[i..=j].iter().filter(|&&s| positive[s]).count() as f64;
        i = j + 1;
    }
    let (p, q) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

/// Binary ROC AUC on the probability of class 1, or one-vs-rest macro AUC for more classes.
fn roc_auc(y_true: &[usize], proba: &[Vec<f64>], n_classes: usize) -> Option<f64> {
    if n_classes == 2 {
        let positive: Vec<bool> = y_true.iter().map(|&t| t == 1).collect();
        let scores: Vec<f64> = proba.iter().map(|row| row[1]).collect();
        return binary_auc(&positive, &scores);
    }
    // scikit-learn requires every class in y_true for one-vs-rest.
    let mut total = 0.0;
    for c in 0..n_classes {
        let positive: Vec<bool> = y_true.iter().map(|&t| t == c).collect();
        let scores: Vec<f64> = proba.iter().map(|row| row[c]).collect();
        total += binary_auc(&positive, &scores)?;
    }
    Some(total / n_classes as f64)
}

/// Mean negative log-likelihood of the true classes, probabilities clipped to `[eps, 1 - eps]`.
fn log_loss(y_true: &[usize], proba: &[Vec<f64>]) -> f64 {
    let eps = f64::EPSILON;
    let total: f64 = y_true.iter().zip(proba).map(|(&t, row)| -row[t].clamp(eps, 1.0 - eps).ln()).sum();
    total / y_true.len().max(1) as f64
}

/// Regression metrics of `y_pred` against `y_true` (same length, non-empty).
pub fn regression(y_true: &[f64], y_pred: &[f64]) -> RegressionMetrics {
    let n = y_true.len().max(1) as f64;
    let (mut se, mut ae, mut ape) = (0.0, 0.0, 0.0);
    for (&t, &p) in y_true.iter().zip(y_pred) {
        let e = t - p;
        se += e * e;
        ae += e.abs();
        ape += e.abs() / t.abs().max(f64::EPSILON);
    }
    let mean = y_true.iter().sum::<f64>() / n;
    let ss_tot: f64 = y_true.iter().map(|t| (t - mean) * (t - mean)).sum();
    let r2 = if ss_tot != 0.0 {
        1.0 - se / ss_tot
    } else if se == 0.0 {
        1.0
    } else {
        0.0
    };
    RegressionMetrics { rmse: (se / n).sqrt(), mae: ae / n, r2, mape: ape / n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_as_half() {
        // scikit-learn: roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == 0.875
        let auc = binary_auc(&[false, true, false, true], &[0.5, 0.5, 0.2, 0.9]);
        assert_eq!(auc, Some(0.875));
        assert_eq!(binary_auc(&[true, true], &[0.1, 0.2]), None);
    }

    #[test]
    fn r2_of_a_constant_target() {
        assert_eq!(regression(&[2.0, 2.0], &[2.0, 2.0]).r2, 1.0);
        assert_eq!(regression(&[2.0, 2.0], &[1.0, 2.0]).r2, 0.0);
    }
}
