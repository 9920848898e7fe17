//! The three request protocols. Each handler reads its body into the model's columns
//! ([`crate::input`]), calls [`crate::ServedModel::predict`], and renders the answer or the
//! error in its protocol's shape; everything else is shared.

pub mod mlflow;
pub mod oip;
pub mod python_json;
pub mod seed;

use serde_json::Value;
use shipyard_runtime::Output;

/// Whether class labels read as integers (then they are answered as JSON numbers, as
/// scikit-learn's integer classes are).
pub(crate) fn numeric_labels(classes: &[String]) -> bool {
    !classes.is_empty() && classes.iter().all(|c| c.parse::<i64>().is_ok_and(|v| v.to_string() == *c))
}

/// One label as JSON.
pub(crate) fn label_value(label: &str, numeric: bool) -> Value {
    match (numeric, label.parse::<i64>()) {
        (true, Ok(v)) => Value::from(v),
        _ => Value::from(label),
    }
}

/// The predictions as JSON: labels for a classifier, values for a regressor (one list per row
/// when the model predicts several values per row).
pub(crate) fn predictions(output: &Output) -> Value {
    match output {
        Output::Classes { classes, labels, .. } => {
            // Without the classes (a Python model's answer), the labels themselves decide.
            let numeric = numeric_labels(if classes.is_empty() { labels } else { classes });
            Value::Array(labels.iter().map(|l| label_value(l, numeric)).collect())
        }
        Output::Values { columns: 1, values, .. } => Value::Array(values.iter().map(|&x| number(x)).collect()),
        Output::Values { columns, values, .. } => Value::Array(
            values.chunks(*columns).map(|row| Value::Array(row.iter().map(|&x| number(x)).collect())).collect(),
        ),
    }
}

/// A classifier's probabilities, one list per row.
pub(crate) fn probabilities(output: &Output) -> Option<Value> {
    match output {
        Output::Classes { classes, probabilities, .. } => Some(Value::Array(
            probabilities
                .chunks(classes.len().max(1))
                .map(|row| Value::Array(row.iter().map(|&p| number(p)).collect()))
                .collect(),
        )),
        Output::Values { .. } => None,
    }
}

/// A number as JSON (`null` for NaN and infinities, which JSON cannot hold).
/// A short description of an answer for the log: its rows and the first few predictions.
pub(crate) fn summary(output: &Output) -> String {
    const SHOWN: usize = 5;
    let rows = output.rows();
    let first: Vec<String> = match output {
        Output::Classes { labels, .. } => labels.iter().take(SHOWN).cloned().collect(),
        Output::Values { columns, values, .. } => {
            values.iter().step_by((*columns).max(1)).take(SHOWN).map(|v| format!("{v}")).collect()
        }
    };
    let more = if rows > SHOWN { ", ..." } else { "" };
    format!("{rows} row(s): [{}{more}]", first.join(", "))
}

pub(crate) fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A JSON body, or a malformed-request error naming the problem.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, crate::ServeError> {
    serde_json::from_slice(bytes).or_else(|e| {
        // Python's `json.dumps` writes a missing float as a bare `NaN`, which JSON lacks; read
        // it as null (a missing value), as pandas and MLflow's own server do.
        match nan_as_null(bytes) {
            Some(fixed) => serde_json::from_slice(&fixed),
            None => Err(e),
        }
        .map_err(|e| {
            crate::ServeError::malformed(if e.is_data() {
                format!("the body is not a valid request: {e}")
            } else {
                format!("the body is not valid JSON: {e}")
            })
        })
    })
}

/// `bytes` with every bare `NaN` token (outside strings) replaced by `null`, or `None` when
/// there is none.
fn nan_as_null(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_string, mut escaped, mut found) = (false, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if bytes[i..].starts_with(b"NaN") {
            out.extend_from_slice(b"null");
            i += 3;
            found = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_nan_reads_as_null_but_not_inside_strings() {
        let v: Value = parse_json(br#"{"a": [1.5, NaN], "b": "NaN \" NaN"}"#).unwrap();
        assert_eq!(v, serde_json::json!({"a": [1.5, null], "b": "NaN \" NaN"}));
        assert!(parse_json::<Value>(b"{\"a\": [Infinity]}").is_err());
    }
}
