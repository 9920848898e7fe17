//! Training data in memory: feature columns and a target, decoded from Arrow record batches.
//!
//! Numeric Arrow columns (integers, floats) become `f64` with `NaN` for missing; strings,
//! booleans and dictionaries become categorical columns (codes into the column's own levels).
//! A model maps a frame's levels to the ones it learned, so a frame can come from any file.
//!
//! The target decides the task unless the caller forces it: strings and booleans are classes,
//! floats are values, integers are classes when there are at most [`MAX_AUTO_CLASSES`] distinct
//! ones.

use std::collections::HashMap;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Integer targets with at most this many distinct values are classes under `Task::Auto`.
pub const MAX_AUTO_CLASSES: usize = 100;

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Regression,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
}

/// How a feature column is typed on input (the model signature's column types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// Integers (MLflow `long`).
    Long,
    /// Floats (MLflow `double`).
    Double,
    /// Text (MLflow `string`).
    String,
    /// `true`/`false` (MLflow `boolean`).
    Boolean,
}

impl InputType {
    pub fn is_categorical(self) -> bool {
        matches!(self, InputType::String | InputType::Boolean)
    }
    /// The MLflow schema type name.
    pub fn mlflow_name(self) -> &'static str {
        match self {
            InputType::Long => "long",
            InputType::Double => "double",
            InputType::String => "string",
            InputType::Boolean => "boolean",
        }
    }
}

/// A feature's name and input type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub input_type: InputType,
}

/// One feature column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// `NaN` marks a missing value.
    Numeric(Vec<f64>),
    /// Codes into `levels`; [`MISSING_CODE`] marks a missing value.
    Categorical { codes: Vec<u32>, levels: Vec<String> },
}

/// The code of a missing categorical value.
pub const MISSING_CODE: u32 = u32::MAX;

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::Numeric(v) => v.len(),
            Values::Categorical { codes, .. } => codes.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn take(&self, rows: &[usize]) -> Values {
        match self {
            Values::Numeric(v) => Values::Numeric(rows.iter().map(|&r| v[r]).collect()),
            Values::Categorical { codes, levels } => {
                Values::Categorical { codes: rows.iter().map(|&r| codes[r]).collect(), levels: levels.clone() }
            }
        }
    }
    fn missing(&self) -> usize {
        match self {
            Values::Numeric(v) => v.iter().filter(|x| x.is_nan()).count(),
            Values::Categorical { codes, .. } => codes.iter().filter(|&&c| c == MISSING_CODE).count(),
        }
    }
}

/// Feature columns of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub specs: Vec<FeatureSpec>,
    pub columns: Vec<Values>,
    pub rows: usize,
}

impl Features {
    /// The rows at `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Features {
        Features {
            specs: self.specs.clone(),
            columns: self.columns.iter().map(|c| c.take(rows)).collect(),
            rows: rows.len(),
        }
    }

    /// Decodes the named columns of `batches` (all columns but `skip` when `names` is `None`).
    pub fn from_batches(batches: &[RecordBatch], names: Option<&[String]>, skip: &[&str]) -> Result<Features> {
        let Some(first) = batches.first() else {
            return Err(TrainError::data("the data has no rows"));
        };
        let schema = first.schema();
        let wanted: Vec<String> = match names {
            Some(n) => n.to_vec(),
            None => schema.fields().iter().map(|f| f.name().clone()).filter(|n| !skip.contains(&n.as_str())).collect(),
        };
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let mut specs = Vec::with_capacity(wanted.len());
        let mut columns = Vec::with_capacity(wanted.len());
        for name in &wanted {
            let parts = column_parts(batches, name)?;
            let (input_type, values) = decode_column(name, &parts)?;
            specs.push(FeatureSpec { name: name.clone(), input_type });
            columns.push(values);
        }
        Ok(Features { specs, columns, rows })
    }

    /// Fails on a column with no value in any row: no model can learn from it.
    pub fn check_not_all_missing(&self) -> Result<()> {
        for (spec, col) in self.specs.iter().zip(&self.columns) {
            if self.rows > 0 && col.missing() == self.rows {
                return Err(TrainError::data(format!(
                    "column '{}' is missing in every row; leave it out with --exclude {}",
                    spec.name, spec.name
                )));
            }
        }
        Ok(())
    }
}

/// The values a model learns to predict.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Class indices into `labels` (sorted as scikit-learn sorts classes).
    Classes {
        codes: Vec<usize>,
        labels: Vec<String>,
    },
    Values(Vec<f64>),
}

impl Target {
    pub fn len(&self) -> usize {
        match self {
            Target::Classes { codes, .. } => codes.len(),
            Target::Values(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn task(&self) -> Task {
        match self {
            Target::Classes { .. } => Task::Classification,
            Target::Values(_) => Task::Regression,
        }
    }
    pub fn take(&self, rows: &[usize]) -> Target {
        match self {
            Target::Classes { codes, labels } => {
                Target::Classes { codes: rows.iter().map(|&r| codes[r]).collect(), labels: labels.clone() }
            }
            Target::Values(v) => Target::Values(rows.iter().map(|&r| v[r]).collect()),
        }
    }

    /// Decodes the target column `name`. `task` forces classification or regression.
    pub fn from_batches(batches: &[RecordBatch], name: &str, task: Option<Task>) -> Result<Target> {
        let parts = column_parts(batches, name)?;
        let data_type = parts[0].data_type().clone();
        let numeric = data_type.is_numeric();
        let integer = data_type.is_integer();
        let missing: usize = parts.iter().map(|p| p.null_count()).sum();
        let first_missing_row = || {
            let mut offset = 0;
            for p in &parts {
                if let Some(i) = (0..p.len()).find(|&i| p.is_null(i)) {
                    return offset + i + 1;
                }
                offset += p.len();
            }
            0
        };
        let task = match task {
            Some(t) => t,
            None if !numeric => Task::Classification,
            None if !integer => Task::Regression,
            None => {
                let values = numbers(name, &parts)?;
                let mut distinct: Vec<i64> = values.iter().filter(|v| !v.is_nan()).map(|v| *v as i64).collect();
                distinct.sort_unstable();
                distinct.dedup();
                if distinct.len() <= MAX_AUTO_CLASSES { Task::Classification } else { Task::Regression }
            }
        };
        if task == Task::Regression && !numeric {
            return Err(TrainError::data(format!(
                "target column '{name}' is {data_type}, not numeric: regression needs numbers \
                 (use --task classification to predict its values as classes)"
            )));
        }
        if missing > 0 {
            return Err(TrainError::data(format!(
                "target column '{name}' has {missing} missing value(s), the first in data row {}; \
                 drop those rows or choose another target",
                first_missing_row()
            )));
        }
        match task {
            Task::Regression => {
                let values = numbers(name, &parts)?;
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(TrainError::data(format!(
                        "target column '{name}' has a non-finite value ({}) in data row {}",
                        values[i],
                        i + 1
                    )));
                }
                Ok(Target::Values(values))
            }
            Task::Classification => {
                let texts: Vec<String> = if numeric {
                    let values = numbers(name, &parts)?;
                    if let Some(i) = values.iter().position(|v| v.fract() != 0.0) {
                        return Err(TrainError::data(format!(
                            "target column '{name}' has the non-integer value {} in data row {}: classes \
                             must be labels or integers (use --task regression to predict numbers)",
                            values[i],
                            i + 1
                        )));
                    }
                    values.iter().map(|v| format!("{}", *v as i64)).collect()
                } else {
                    strings(name, &parts)?.into_iter().map(|s| s.unwrap_or_default()).collect()
                };
                let mut labels: Vec<String> = texts.clone();
                labels.sort_unstable();
                labels.dedup();
                if numeric {
                    labels.sort_by_key(|l| l.parse::<i64>().unwrap_or(i64::MAX));
                }
                if labels.len() < 2 {
                    return Err(TrainError::data(format!(
                        "target column '{name}' has one class only ({}): classification needs at least two",
                        labels.first().map(String::as_str).unwrap_or("")
                    )));
                }
                let index: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
                let codes = texts.iter().map(|t| index[t.as_str()]).collect();
                Ok(Target::Classes { codes, labels })
            }
        }
    }
}

/// The column `name`'s arrays, one per batch.
fn column_parts(batches: &[RecordBatch], name: &str) -> Result<Vec<ArrayRef>> {
    let mut parts = Vec::with_capacity(batches.len());
    for batch in batches {
        match batch.column_by_name(name) {
            Some(c) => parts.push(c.clone()),
            None => {
                let known: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
                return Err(TrainError::data(format!(
                    "no column '{name}' in the data; its columns are: {}",
                    known.join(", ")
                )));
            }
        }
    }
    if parts.is_empty() {
        return Err(TrainError::data("the data has no rows"));
    }
    Ok(parts)
}

fn decode_column(name: &str, parts: &[ArrayRef]) -> Result<(InputType, Values)> {
    let data_type = parts[0].data_type();
    let input_type = match data_type {
        t if t.is_integer() => InputType::Long,
        t if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) => InputType::Double,
        DataType::Boolean => InputType::Boolean,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => InputType::String,
        other => {
            return Err(TrainError::data(format!(
                "column '{name}' has type {other}, which models cannot use; leave it out with --exclude {name}"
            )));
        }
    };
    let values = if input_type.is_categorical() {
        let mut levels: Vec<String> = Vec::new();
        let mut index: HashMap<String, u32> = HashMap::new();
        let codes = strings(name, parts)?
            .into_iter()
            .map(|s| match s {
                None => MISSING_CODE,
                Some(s) => *index.entry(s).or_insert_with_key(|k| {
                    levels.push(k.clone());
                    (levels.len() - 1) as u32
                }),
            })
            .collect();
        Values::Categorical { codes, levels }
    } else {
        let mut v = numbers(name, parts)?;
        // Infinities carry no usable order for splits or coefficients: treat as missing.
        v.iter_mut().filter(|x| x.is_infinite()).for_each(|x| *x = f64::NAN);
        Values::Numeric(v)
    };
    Ok((input_type, values))
}

fn numbers(name: &str, parts: &[ArrayRef]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        let cast = arrow_cast::cast(part, &DataType::Float64)
            .map_err(|e| TrainError::data(format!("column '{name}': {e}")))?;
        let Some(floats) = cast.as_any().downcast_ref::<Float64Array>() else {
            return Err(TrainError::data(format!("column '{name}' did not decode as numbers")));
        };
        out.extend(floats.iter().map(|v| v.unwrap_or(f64::NAN)));
    }
    Ok(out)
}

fn strings(name: &str, parts: &[ArrayRef]) -> Result<Vec<Option<String>>> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        let cast =
            arrow_cast::cast(part, &DataType::Utf8).map_err(|e| TrainError::data(format!("column '{name}': {e}")))?;
        let Some(texts) = cast.as_any().downcast_ref::<StringArray>() else {
            return Err(TrainError::data(format!("column '{name}' did not decode as text")));
        };
        out.extend(texts.iter().map(|v| v.map(str::to_owned)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{BooleanArray, Int64Array};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("c", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("y", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![Some(1.5), None, Some(f64::INFINITY), Some(2.0)])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None, Some("a")])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), Some(true), None])),
                Arc::new(Int64Array::from(vec![10, 2, 10, 2])),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn decodes_numeric_categorical_and_boolean_columns() {
        let f = Features::from_batches(&[batch()], None, &["y"]).expect("features");
        assert_eq!(f.rows, 4);
        assert_eq!(
            f.specs.iter().map(|s| s.input_type).collect::<Vec<_>>(),
            [InputType::Double, InputType::String, InputType::Boolean]
        );
        let Values::Numeric(x) = &f.columns[0] else { panic!("numeric") };
        assert_eq!(x[0], 1.5);
        assert!(x[1].is_nan() && x[2].is_nan());
        assert_eq!(
            f.columns[1],
            Values::Categorical { codes: vec![0, 1, MISSING_CODE, 0], levels: vec!["a".into(), "b".into()] }
        );
        assert_eq!(
            f.columns[2],
            Values::Categorical { codes: vec![0, 1, 0, MISSING_CODE], levels: vec!["true".into(), "false".into()] }
        );
    }

    #[test]
    fn integer_targets_are_classes_sorted_numerically() {
        let t = Target::from_batches(&[batch()], "y", None).expect("target");
        assert_eq!(t, Target::Classes { codes: vec![1, 0, 1, 0], labels: vec!["2".into(), "10".into()] });
        let r = Target::from_batches(&[batch()], "y", Some(Task::Regression)).expect("values");
        assert_eq!(r, Target::Values(vec![10.0, 2.0, 10.0, 2.0]));
    }

    #[test]
    fn unusable_targets_name_the_problem() {
        let err = |name: &str, task| Target::from_batches(&[batch()], name, task).expect_err("error").to_string();
        assert!(err("x", Some(Task::Classification)).contains("missing value"), "{}", err("x", None));
        assert!(err("c", Some(Task::Regression)).contains("not numeric"));
        assert!(err("nope", None).contains("no column 'nope'"));
    }
}
