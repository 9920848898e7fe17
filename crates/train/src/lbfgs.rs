//! A limited-memory BFGS minimizer for smooth convex objectives (the linear models' losses).
//!
//! Why our own: linfa-logistic 0.8 (argmin's L-BFGS over ndarray) took 8.5 s and smartcore 0.7
//! 1.8 s to fit the logistic regression that scikit-learn (scipy's L-BFGS-B) fits in 0.26 s on
//! `make_classification` 100,000 x 20. The method is the textbook two-loop recursion with ten
//! correction pairs and a backtracking (Armijo) line search; pairs that break the curvature
//! condition are skipped, which keeps the inverse-Hessian estimate positive definite.

/// Why the minimizer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The largest gradient component fell below the tolerance.
    Converged,
    /// The objective stopped decreasing (relative change below machine precision scale).
    Stalled,
    MaxIterations,
}

/// The result of a minimization.
#[derive(Debug, Clone)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    pub stop: Stop,
}

const MEMORY: usize = 10;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimizes `f` from `x0`; `f(x, grad)` returns the value and writes the gradient.
pub fn minimize(mut f: impl FnMut(&[f64], &mut [f64]) -> f64, x0: Vec<f64>, tol: f64, max_iter: usize) -> Minimum {
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut value = f(&x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::with_capacity(MEMORY);
    let mut y_hist: Vec<Vec<f64>> = Vec::with_capacity(MEMORY);
    let mut rho: Vec<f64> = Vec::with_capacity(MEMORY);
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    let max_abs = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for iteration in 0..max_iter {
        if max_abs(&g) <= tol {
            return Minimum { x, value, iterations: iteration, stop: Stop::Converged };
        }
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            alpha[i] = rho[i] * dot(&s_hist[i], &q);
            q.iter_mut().zip(&y_hist[i]).for_each(|(q, y)| *q -= alpha[i] * y);
        }
        let gamma = if k > 0 { dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1]) } else { 1.0 };
        q.iter_mut().for_each(|v| *v *= gamma);
        for i in 0..k {
            let beta = rho[i] * dot(&y_hist[i], &q);
            q.iter_mut().zip(&s_hist[i]).for_each(|(q, s)| *q += (alpha[i] - beta) * s);
        }
        let mut direction: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut slope = dot(&direction, &g);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho.clear();
            direction = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
        }
        let mut step = if k == 0 { (1.0 / max_abs(&g).max(1e-12)).min(1.0) } else { 1.0 };
        let mut accepted = false;
        let mut value_new = value;
        for _ in 0..40 {
            x_new.iter_mut().zip(x.iter().zip(&direction)).for_each(|(xn, (x, d))| *xn = x + step * d);
            value_new = f(&x_new, &mut g_new);
            if value_new.is_finite() && value_new <= value + 1e-4 * step * slope {
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            return Minimum { x, value, iterations: iteration, stop: Stop::Stalled };
        }
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-10 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            if s_hist.len() == MEMORY {
                s_hist.remove(0);
                y_hist.remove(0);
                rho.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
            rho.push(1.0 / sy);
        }
        let decrease = value - value_new;
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        value = value_new;
        if decrease <= 64.0 * f64::EPSILON * value.abs().max(1.0) {
            let stop = if max_abs(&g) <= tol { Stop::Converged } else { Stop::Stalled };
            return Minimum { x, value, iterations: iteration + 1, stop };
        }
    }
    let stop = if max_abs(&g) <= tol { Stop::Converged } else { Stop::MaxIterations };
    Minimum { x, value, iterations: max_iter, stop }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimizes_the_rosenbrock_function() {
        let m = minimize(
            |x, g| {
                let (a, b) = (x[0], x[1]);
                g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
                g[1] = 200.0 * (b - a * a);
                (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
            },
            vec![-1.2, 1.0],
            1e-8,
            500,
        );
        assert!((m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 1.0).abs() < 1e-6, "{m:?}");
    }
}
