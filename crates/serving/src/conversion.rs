//! Which engine serves a scikit-learn model: its ONNX conversion on Shipyard's engine when the
//! conversion gives the model's own answers, else Python workers.
//!
//! The conversion ([`shipyard_pyfunc::convert`]) runs in the model's interpreter and hands back
//! the ONNX file, a few hundred verification rows (the input example, synthetic rows in its
//! ranges, extremes, rows with missing values when the model accepts them) and scikit-learn's
//! own answers on them. Shipyard's engine then runs the ONNX file on those rows and
//! [`verify`] compares: every label equal, except where scikit-learn's own top two probabilities
//! tie (within 1e-6: the pick between equal scores is arbitrary, and thread counts change it);
//! probabilities within 1e-5; values within 1e-4 relative and 1e-5 of their scale. Any other
//! difference, on any row, keeps the model on Python (known cases: the tree converters drop the
//! learned direction of missing values, onnx/sklearn-onnx#1253; float inputs flip thresholds).

use serde::Serialize;
use serde_json::Value;
use shipyard_pyfunc::convert::Expected;
use shipyard_runtime::Output;

/// How scikit-learn models are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SklearnEngine {
    /// Converted when the conversion is verified, else Python.
    #[default]
    Auto,
    /// Converted whenever it converts, verified or not (the verdict is still logged).
    Onnx,
    /// Always Python workers.
    Python,
}

impl std::str::FromStr for SklearnEngine {
    type Err = String;

    fn from_str(s: &str) -> Result<SklearnEngine, String> {
        match s {
            "auto" => Ok(SklearnEngine::Auto),
            "onnx" => Ok(SklearnEngine::Onnx),
            "python" => Ok(SklearnEngine::Python),
            other => Err(format!("'{other}' is not an engine for scikit-learn models (auto, onnx or python)")),
        }
    }
}

/// The comparison of the converted model's answers with scikit-learn's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verification {
    pub passed: bool,
    pub rows: usize,
    /// Labels that differ where scikit-learn's answer was not a tie.
    pub label_mismatches: usize,
    /// Labels that differ on a tie (allowed).
    pub ties: usize,
    pub max_probability_difference: Option<f64>,
    pub max_value_difference: Option<f64>,
    /// What failed, for people.
    pub problems: Vec<String>,
}

impl Verification {
    /// One line for logs and tags.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} rows", self.rows)];
        if let Some(d) = self.max_probability_difference {
            parts.push(format!("max probability difference {d:.1e}"));
        }
        if let Some(d) = self.max_value_difference {
            parts.push(format!("max value difference {d:.1e}"));
        }
        if self.ties > 0 {
            parts.push(format!("{} tied label(s) differ", self.ties));
        }
        if self.passed {
            format!("verified on {}", parts.join(", "))
        } else {
            format!("rejected: {} ({})", self.problems.join("; "), parts.join(", "))
        }
    }
}

fn label_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => u8::from(*b).to_string(),
        other => other.to_string(),
    }
}

/// Compares the converted model's `output` on the verification rows with `expected`.
pub fn verify(expected: &Expected, output: &Output) -> Verification {
    let rows = output.rows();
    let mut v = Verification {
        passed: false,
        rows,
        label_mismatches: 0,
        ties: 0,
        max_probability_difference: None,
        max_value_difference: None,
        problems: Vec::new(),
    };
    match (expected.task.as_str(), output) {
        ("classification", Output::Classes { labels, probabilities, classes, .. }) => {
            let want_labels: Vec<String> = expected.labels.iter().flatten().map(label_text).collect();
            if want_labels.len() != labels.len() {
                v.problems.push(format!("{} labels for {} rows", labels.len(), want_labels.len()));
                return v;
            }
            let want_p = expected.probabilities.as_deref();
            if let Some(want_p) = want_p {
                let k = classes.len().max(1);
                if probabilities.len() != want_p.len() * k || want_p.iter().any(|r| r.len() != k) {
                    v.problems.push(format!(
                        "probabilities of {k} classes, scikit-learn gives {}",
                        want_p.first().map_or(0, Vec::len)
                    ));
                    return v;
                }
                let max = want_p
                    .iter()
                    .flatten()
                    .zip(probabilities)
                    .map(|(a, b)| if a.is_nan() && b.is_nan() { 0.0 } else { (a - b).abs() })
                    .fold(0.0f64, |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) });
                v.max_probability_difference = Some(max);
                if max > 1e-5 {
                    v.problems.push(format!("probabilities differ by up to {max:.2e} (allowed 1e-5)"));
                }
            }
            for (r, (want, got)) in want_labels.iter().zip(labels).enumerate() {
                if want == got {
                    continue;
                }
                let tie = want_p.and_then(|p| p.get(r)).is_some_and(|p| {
                    let mut sorted = p.clone();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    sorted.len() > 1 && (sorted[0] - sorted[1]).abs() < 1e-6
                });
                if tie {
                    v.ties += 1;
                } else {
                    v.label_mismatches += 1;
                }
            }
            if v.label_mismatches > 0 {
                v.problems.push(format!("{} of {rows} rows get another label", v.label_mismatches));
            }
        }
        ("regression", Output::Values { columns, values, .. }) => {
            let want: Vec<f64> = expected.values.iter().flatten().flatten().copied().collect();
            if want.len() != values.len() {
                v.problems.push(format!("{} values ({columns} per row) for {} expected", values.len(), want.len()));
                return v;
            }
            let scale = want.iter().filter(|x| x.is_finite()).fold(1.0f64, |m, x| m.max(x.abs()));
            let mut max = 0.0f64;
            let mut off = 0;
            for (a, b) in want.iter().zip(values) {
                let d = if a.is_nan() && b.is_nan() { 0.0 } else { (a - b).abs() };
                let d = if d.is_nan() { f64::INFINITY } else { d };
                max = max.max(d);
                if d > 1e-4 * a.abs() + 1e-5 * scale {
                    off += 1;
                }
            }
            v.max_value_difference = Some(max);
            if off > 0 {
                v.problems.push(format!("{off} of {} values differ beyond 1e-4 relative", want.len()));
            }
        }
        (task, _) => v.problems.push(format!("the converted model does not answer a {task} task as the model does")),
    }
    v.passed = v.problems.is_empty();
    v
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn classes_output(labels: &[&str], probabilities: Vec<f64>) -> Output {
        Output::Classes {
            classes: vec!["0".into(), "1".into()],
            labels: labels.iter().map(|s| s.to_string()).collect(),
            probabilities,
            graph: None,
        }
    }

    fn expected(labels: Value, probabilities: Vec<Vec<f64>>) -> Expected {
        Expected {
            task: "classification".into(),
            labels: serde_json::from_value(labels).ok(),
            probabilities: Some(probabilities),
            ..Expected::default()
        }
    }

    #[test]
    fn equal_answers_pass_and_only_ties_may_differ() {
        let want = expected(json!([1, 0, 0]), vec![vec![0.2, 0.8], vec![0.5, 0.5], vec![0.9, 0.1]]);
        let same = verify(&want, &classes_output(&["1", "0", "0"], vec![0.2, 0.8, 0.5, 0.5, 0.9, 0.1]));
        assert!(same.passed, "{same:?}");
        let tie = verify(&want, &classes_output(&["1", "1", "0"], vec![0.2, 0.8, 0.5, 0.5, 0.9, 0.1]));
        assert!(tie.passed && tie.ties == 1, "{tie:?}");
        let wrong = verify(&want, &classes_output(&["1", "0", "1"], vec![0.2, 0.8, 0.5, 0.5, 0.9, 0.1]));
        assert!(!wrong.passed && wrong.label_mismatches == 1);
        assert!(wrong.summary().contains("1 of 3 rows get another label"), "{}", wrong.summary());
        let off = verify(&want, &classes_output(&["1", "0", "0"], vec![0.2, 0.8, 0.5, 0.5, 0.8, 0.2]));
        assert!(!off.passed && off.summary().contains("probabilities differ by up to 1.00e-1"), "{}", off.summary());
    }

    #[test]
    fn values_pass_within_the_tolerance() {
        let want =
            Expected { task: "regression".into(), values: Some(vec![vec![100.0], vec![-2.0]]), ..Expected::default() };
        let close = Output::Values { columns: 1, values: vec![100.000_001, -2.0], graph: None };
        assert!(verify(&want, &close).passed);
        let far = Output::Values { columns: 1, values: vec![100.1, -2.0], graph: None };
        assert!(!verify(&want, &far).passed);
    }
}
