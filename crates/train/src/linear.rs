//! Linear models on an encoded design matrix: L2-regularised logistic regression (binary, or
//! multinomial for three classes and more) and ridge regression.
//!
//! The objectives are scikit-learn's: logistic regression minimises the mean log loss plus
//! `||W||^2 / (2 C n)` (intercepts unpenalised; one weight vector for two classes, one per class
//! beyond), by L-BFGS ([`crate::lbfgs`]); ridge solves `(Xc'Xc + alpha I) b = Xc'yc` on centred
//! columns by Cholesky factorisation, the intercept restoring the means. Both parallelise over
//! row blocks.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::lbfgs;

/// Rows per parallel block when evaluating losses and Gram matrices.
const BLOCK: usize = 4096;

/// Weights of a linear model: `outputs` rows of `width` coefficients, and intercepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearWeights {
    pub coefficients: Vec<Vec<f64>>,
    pub intercepts: Vec<f64>,
}

impl LinearWeights {
    /// `outputs` raw scores per row of the row-major design matrix `x`.
    pub fn scores(&self, x: &[f64], width: usize) -> Vec<f64> {
        let k = self.intercepts.len();
        let mut out = vec![0.0; (x.len() / width.max(1)) * k];
        out.par_chunks_mut(k * BLOCK).zip(x.par_chunks(width.max(1) * BLOCK)).for_each(|(out, x)| {
            for (o, row) in out.chunks_mut(k).zip(x.chunks(width.max(1))) {
                for (j, o) in o.iter_mut().enumerate() {
                    *o = self.intercepts[j] + dot(&self.coefficients[j], row);
                }
            }
        });
        out
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// What fitting a logistic regression reports besides the weights.
#[derive(Debug, Clone)]
pub struct FitReport {
    pub iterations: usize,
    pub converged: bool,
}

/// Fits logistic regression to `x` (row-major, `width` columns) and classes `y` in
/// `0..classes`.
pub fn fit_logistic(
    x: &[f64],
    width: usize,
    y: &[usize],
    classes: usize,
    c: f64,
    tol: f64,
    max_iter: usize,
) -> (LinearWeights, FitReport) {
    let n = y.len();
    let outputs = if classes == 2 { 1 } else { classes };
    let stride = width + 1; // coefficients then the intercept, per output
    let l2 = 1.0 / (c * n as f64);
    let objective = |params: &[f64], grad: &mut [f64]| -> f64 {
        let (loss, g) = x
            .par_chunks(width.max(1) * BLOCK)
            .zip(y.par_chunks(BLOCK))
            .map(|(xb, yb)| {
                let mut g = vec![0.0; outputs * stride];
                let mut loss = 0.0;
                let mut z = vec![0.0; outputs];
                for (row, &label) in xb.chunks(width.max(1)).zip(yb) {
                    let row = &row[..width];
                    for (o, zo) in z.iter_mut().enumerate() {
                        *zo = params[o * stride + width] + dot(&params[o * stride..o * stride + width], row);
                    }
                    if outputs == 1 {
                        let t = label as f64;
                        // log(1 + e^z) - t z, computed stably.
                        let zz = z[0];
                        loss += if zz > 0.0 { zz + (-zz).exp().ln_1p() } else { zz.exp().ln_1p() } - t * zz;
                        let p = 1.0 / (1.0 + (-zz).exp());
                        let d = p - t;
                        g[..width].iter_mut().zip(row).for_each(|(g, v)| *g += d * v);
                        g[width] += d;
                    } else {
                        let m = z.iter().fold(f64::MIN, |a, &b| a.max(b));
                        let sum: f64 = z.iter().map(|v| (v - m).exp()).sum();
                        let log_sum = m + sum.ln();
                        loss += log_sum - z[label];
                        for (o, &zo) in z.iter().enumerate() {
                            let d = (zo - log_sum).exp() - f64::from(u8::from(o == label));
                            let go = &mut g[o * stride..(o + 1) * stride];
                            go[..width].iter_mut().zip(row).for_each(|(g, v)| *g += d * v);
                            go[width] += d;
                        }
                    }
                }
                (loss, g)
            })
            .reduce(
                || (0.0, vec![0.0; outputs * stride]),
                |(la, mut ga), (lb, gb)| {
                    ga.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
                    (la + lb, ga)
                },
            );
        let inv_n = 1.0 / n as f64;
        let mut penalty = 0.0;
        for o in 0..outputs {
            for j in 0..stride {
                let i = o * stride + j;
                grad[i] = g[i] * inv_n;
                if j < width {
                    grad[i] += l2 * params[i];
                    penalty += params[i] * params[i];
                }
            }
        }
        loss * inv_n + 0.5 * l2 * penalty
    };
    let minimum = lbfgs::minimize(objective, vec![0.0; outputs * stride], tol, max_iter);
    let weights = LinearWeights {
        coefficients: (0..outputs).map(|o| minimum.x[o * stride..o * stride + width].to_vec()).collect(),
        intercepts: (0..outputs).map(|o| minimum.x[o * stride + width]).collect(),
    };
    (weights, FitReport { iterations: minimum.iterations, converged: minimum.stop == lbfgs::Stop::Converged })
}

/// Class probabilities from logistic scores (`outputs` per row: 1 for binary).
pub fn logistic_proba(scores: &[f64], outputs: usize) -> Vec<Vec<f64>> {
    scores
        .chunks(outputs)
        .map(|z| {
            if outputs == 1 {
                let p = 1.0 / (1.0 + (-z[0]).exp());
                vec![1.0 - p, p]
            } else {
                let m = z.iter().fold(f64::MIN, |a, &b| a.max(b));
                let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(|v| v / s).collect()
            }
        })
        .collect()
}

/// Fits ridge regression to `x` (row-major, `width` columns) and targets `y`.
pub fn fit_ridge(x: &[f64], width: usize, y: &[f64], alpha: f64) -> Result<LinearWeights> {
    let n = y.len();
    let p = width;
    let x_mean: Vec<f64> = {
        let mut m = vec![0.0; p];
        for row in x.chunks(p.max(1)) {
            m.iter_mut().zip(row).for_each(|(m, v)| *m += v);
        }
        m.into_iter().map(|v| v / n as f64).collect()
    };
    let y_mean = y.iter().sum::<f64>() / n as f64;
    let (gram, xty) = x
        .par_chunks(p.max(1) * BLOCK)
        .zip(y.par_chunks(BLOCK))
        .map(|(xb, yb)| {
            let mut gram = vec![0.0; p * p];
            let mut xty = vec![0.0; p];
            let mut centred = vec![0.0; p];
            for (row, &t) in xb.chunks(p.max(1)).zip(yb) {
                centred.iter_mut().zip(row.iter().zip(&x_mean)).for_each(|(c, (v, m))| *c = v - m);
                let tc = t - y_mean;
                for i in 0..p {
                    let ci = centred[i];
                    if ci == 0.0 {
                        continue;
                    }
                    xty[i] += ci * tc;
                    for j in i..p {
                        gram[i * p + j] += ci * centred[j];
                    }
                }
            }
            (gram, xty)
        })
        .reduce(
            || (vec![0.0; p * p], vec![0.0; p]),
            |(mut ga, mut xa), (gb, xb)| {
                ga.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
                xa.iter_mut().zip(xb).for_each(|(a, b)| *a += b);
                (ga, xa)
            },
        );
    let mut a = gram;
    for i in 0..p {
        for j in 0..i {
            a[i * p + j] = a[j * p + i];
        }
        a[i * p + i] += alpha;
    }
    let b = cholesky_solve(a, xty, p).ok_or_else(|| {
        TrainError::data("the ridge system is singular: use --param alpha=VALUE with a value above 0")
    })?;
    let intercept = y_mean - dot(&x_mean, &b);
    Ok(LinearWeights { coefficients: vec![b], intercepts: vec![intercept] })
}

/// Solves `A x = b` for a symmetric positive definite `A` (row-major, `n` x `n`) by Cholesky
/// factorisation; `None` when `A` is not positive definite. Why our own: the systems are at most a
/// few hundred wide, and twenty lines spare the project a linear-algebra crate's build time.
fn cholesky_solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_without_penalty_recovers_a_line() {
        let x: Vec<f64> = (0..50).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| 3.0 * v - 2.0).collect();
        let w = fit_ridge(&x, 1, &y, 0.0).expect("fit");
        assert!((w.coefficients[0][0] - 3.0).abs() < 1e-9 && (w.intercepts[0] + 2.0).abs() < 1e-9);
    }

    #[test]
    fn logistic_regression_separates_and_normalises() {
        let x: Vec<f64> = (0..200).map(|i| f64::from(i) / 20.0 - 5.0).collect();
        let y: Vec<usize> = x.iter().map(|&v| usize::from(v + 0.3 * (v * 7.0).sin() > 0.0)).collect();
        let (w, report) = fit_logistic(&x, 1, &y, 2, 1.0, 1e-8, 200);
        assert!(report.converged);
        assert!(w.coefficients[0][0] > 1.0);
        let proba = logistic_proba(&w.scores(&[-4.0, 4.0], 1), 1);
        assert!(proba[0][0] > 0.9 && proba[1][1] > 0.9);
        let (w3, _) = fit_logistic(&x, 1, &y.iter().map(|&c| c * 2).collect::<Vec<_>>(), 3, 1.0, 1e-8, 200);
        let p = logistic_proba(&w3.scores(&[0.5], 1), 3);
        assert!((p[0].iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
