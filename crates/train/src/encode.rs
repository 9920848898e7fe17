//! What a model stores of its input handling, and applies to any frame with the same columns.
//!
//! - [`TreeEncoder`]: every feature becomes one `f32` column. Categorical levels become their rank
//!   in the training target's order (the mean target for regression and binary classification,
//!   frequency otherwise), so one threshold splits categories by how they relate to the target;
//!   unseen levels are missing, and trees route missing values by their learned direction.
//! - [`LinearEncoder`]: numeric features are mean-imputed, centred and (optionally) scaled;
//!   categorical ones are one-hot encoded over their most frequent levels, unseen and missing
//!   levels being all zeros.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::frame::{FeatureSpec, Features, MISSING_CODE, Target, Values};

/// Most one-hot columns a categorical feature gets in a linear model.
pub const MAX_ONE_HOT_LEVELS: usize = 100;

/// Finds the model's features in `frame` by name, in the model's order.
fn columns_for<'f>(specs: &[FeatureSpec], frame: &'f Features) -> Result<Vec<&'f Values>> {
    specs
        .iter()
        .map(|spec| {
            frame.specs.iter().position(|s| s.name == spec.name).map(|i| &frame.columns[i]).ok_or_else(|| {
                TrainError::data(format!("the model needs column '{}', which the data lacks", spec.name))
            })
        })
        .collect()
}

/// The text of each row of a column the model treats as categorical (numbers as they print).
fn level_codes(values: &Values, levels: &[String]) -> Vec<u32> {
    let index: HashMap<&str, u32> = levels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
    match values {
        Values::Categorical { codes, levels: own } => {
            let map: Vec<u32> = own.iter().map(|l| index.get(l.as_str()).copied().unwrap_or(MISSING_CODE)).collect();
            codes.iter().map(|&c| if c == MISSING_CODE { MISSING_CODE } else { map[c as usize] }).collect()
        }
        Values::Numeric(v) => v
            .iter()
            .map(|x| {
                if x.is_nan() {
                    MISSING_CODE
                } else {
                    let text =
                        if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", *x as i64) } else { x.to_string() };
                    index.get(text.as_str()).copied().unwrap_or(MISSING_CODE)
                }
            })
            .collect(),
    }
}

fn numbers(values: &Values, name: &str) -> Result<Vec<f64>> {
    match values {
        Values::Numeric(v) => Ok(v.clone()),
        Values::Categorical { codes, levels } => codes
            .iter()
            .enumerate()
            .map(|(row, &c)| {
                if c == MISSING_CODE {
                    return Ok(f64::NAN);
                }
                levels[c as usize].trim().parse::<f64>().map_err(|_| {
                    TrainError::data(format!(
                        "column '{name}' must be numeric, but data row {} holds '{}'",
                        row + 1,
                        levels[c as usize]
                    ))
                })
            })
            .collect(),
    }
}

/// Per-level (count, target sum) of a categorical column.
fn level_target_stats(codes: &[u32], levels: usize, target: &Target) -> Vec<(f64, f64)> {
    let mut stats = vec![(0.0, 0.0); levels];
    for (row, &c) in codes.iter().enumerate() {
        if c == MISSING_CODE {
            continue;
        }
        let y = match target {
            Target::Classes { codes, labels } if labels.len() == 2 => codes[row] as f64,
            Target::Classes { .. } => 0.0,
            Target::Values(v) => v[row],
        };
        stats[c as usize].0 += 1.0;
        stats[c as usize].1 += y;
    }
    stats
}

/// Input handling of tree models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEncoder {
    pub features: Vec<FeatureSpec>,
    /// For categorical features, the levels in rank order; `None` for numeric ones.
    pub levels: Vec<Option<Vec<String>>>,
}

impl TreeEncoder {
    pub fn fit(frame: &Features, target: &Target) -> TreeEncoder {
        let levels = frame
            .specs
            .iter()
            .zip(&frame.columns)
            .map(|(spec, values)| match values {
                Values::Categorical { codes, levels } if spec.input_type.is_categorical() => {
                    let stats = level_target_stats(codes, levels.len(), target);
                    let by_frequency = matches!(target, Target::Classes { labels, .. } if labels.len() > 2);
                    let key = |i: usize| {
                        let (n, sum) = stats[i];
                        if by_frequency { -n } else { sum / n.max(1.0) }
                    };
                    let mut order: Vec<usize> = (0..levels.len()).filter(|&i| stats[i].0 > 0.0).collect();
                    order.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then_with(|| levels[a].cmp(&levels[b])));
                    Some(order.into_iter().map(|i| levels[i].clone()).collect())
                }
                _ => None,
            })
            .collect();
        TreeEncoder { features: frame.specs.clone(), levels }
    }

    /// One `f32` column per feature (`NaN` for missing and unseen values).
    pub fn transform(&self, frame: &Features) -> Result<Vec<Vec<f32>>> {
        let columns = columns_for(&self.features, frame)?;
        columns
            .into_iter()
            .zip(&self.features)
            .zip(&self.levels)
            .map(|((values, spec), levels)| match levels {
                Some(levels) => Ok(level_codes(values, levels)
                    .into_iter()
                    .map(|c| if c == MISSING_CODE { f32::NAN } else { c as f32 })
                    .collect()),
                None => Ok(numbers(values, &spec.name)?.into_iter().map(|x| x as f32).collect()),
            })
            .collect()
    }
}

/// How a linear model turns one feature into design-matrix columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinearColumn {
    /// `(x - mean) / scale`, missing values becoming 0 (the mean).
    Numeric { mean: f64, scale: f64 },
    /// One column per level, 1 where the row has it.
    OneHot { levels: Vec<String> },
}

/// Input handling of linear models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearEncoder {
    pub features: Vec<FeatureSpec>,
    pub columns: Vec<LinearColumn>,
}

impl LinearEncoder {
    pub fn fit(frame: &Features, standardize: bool) -> Result<LinearEncoder> {
        let mut columns = Vec::with_capacity(frame.columns.len());
        for (spec, values) in frame.specs.iter().zip(&frame.columns) {
            columns.push(match values {
                Values::Categorical { codes, levels } => {
                    let mut counts = vec![0usize; levels.len()];
                    codes.iter().filter(|&&c| c != MISSING_CODE).for_each(|&c| counts[c as usize] += 1);
                    let mut order: Vec<usize> = (0..levels.len()).filter(|&i| counts[i] > 0).collect();
                    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then_with(|| levels[a].cmp(&levels[b])));
                    order.truncate(MAX_ONE_HOT_LEVELS);
                    LinearColumn::OneHot { levels: order.into_iter().map(|i| levels[i].clone()).collect() }
                }
                Values::Numeric(v) => {
                    let present: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
                    if present.is_empty() {
                        return Err(TrainError::data(format!("column '{}' is missing in every row", spec.name)));
                    }
                    let mean = present.iter().sum::<f64>() / present.len() as f64;
                    let var = present.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / present.len() as f64;
                    let scale = if standardize && var > 0.0 { var.sqrt() } else { 1.0 };
                    LinearColumn::Numeric { mean, scale }
                }
            });
        }
        Ok(LinearEncoder { features: frame.specs.clone(), columns })
    }

    /// The design matrix width.
    pub fn width(&self) -> usize {
        self.columns
            .iter()
            .map(|c| match c {
                LinearColumn::Numeric { .. } => 1,
                LinearColumn::OneHot { levels } => levels.len(),
            })
            .sum()
    }

    /// Names of the design-matrix columns (`feature` or `feature=level`).
    pub fn column_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.width());
        for (spec, col) in self.features.iter().zip(&self.columns) {
            match col {
                LinearColumn::Numeric { .. } => names.push(spec.name.clone()),
                LinearColumn::OneHot { levels } => names.extend(levels.iter().map(|l| format!("{}={l}", spec.name))),
            }
        }
        names
    }

    /// The row-major design matrix of `frame`.
    pub fn transform(&self, frame: &Features) -> Result<Vec<f64>> {
        let width = self.width();
        let values = columns_for(&self.features, frame)?;
        let mut x = vec![0.0; frame.rows * width];
        let mut offset = 0;
        for ((values, spec), col) in values.into_iter().zip(&self.features).zip(&self.columns) {
            match col {
                LinearColumn::Numeric { mean, scale } => {
                    for (row, v) in numbers(values, &spec.name)?.into_iter().enumerate() {
                        x[row * width + offset] = if v.is_nan() { 0.0 } else { (v - mean) / scale };
                    }
                    offset += 1;
                }
                LinearColumn::OneHot { levels } => {
                    for (row, c) in level_codes(values, levels).into_iter().enumerate() {
                        if c != MISSING_CODE {
                            x[row * width + offset + c as usize] = 1.0;
                        }
                    }
                    offset += levels.len();
                }
            }
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::InputType;

    fn frame() -> Features {
        Features {
            specs: vec![
                FeatureSpec { name: "x".into(), input_type: InputType::Double },
                FeatureSpec { name: "c".into(), input_type: InputType::String },
            ],
            columns: vec![
                Values::Numeric(vec![1.0, f64::NAN, 3.0, 5.0]),
                Values::Categorical { codes: vec![0, 1, 1, MISSING_CODE], levels: vec!["lo".into(), "hi".into()] },
            ],
            rows: 4,
        }
    }

    #[test]
    fn tree_encoder_orders_levels_by_target_mean() {
        let target = Target::Values(vec![1.0, 10.0, 12.0, 0.0]);
        let enc = TreeEncoder::fit(&frame(), &target);
        assert_eq!(enc.levels[1], Some(vec!["lo".to_string(), "hi".to_string()]));
        let cols = enc.transform(&frame()).expect("transform");
        assert_eq!(cols[1][..3], [0.0, 1.0, 1.0]);
        assert!(cols[1][3].is_nan() && cols[0][1].is_nan());
    }

    #[test]
    fn linear_encoder_imputes_scales_and_one_hot_encodes() {
        let enc = LinearEncoder::fit(&frame(), true).expect("fit");
        assert_eq!(enc.width(), 3);
        assert_eq!(enc.column_names(), ["x", "c=hi", "c=lo"]);
        let x = enc.transform(&frame()).expect("transform");
        let sd = (8.0f64 / 3.0).sqrt();
        assert!((x[0] - (-2.0 / sd)).abs() < 1e-12);
        assert_eq!(&x[3..6], &[0.0, 1.0, 0.0]);
        assert_eq!(&x[9..12], &[2.0 / sd, 0.0, 0.0]);
        let mut other = frame();
        other.specs.swap(0, 1);
        other.columns.swap(0, 1);
        assert_eq!(enc.transform(&other).expect("by name"), x);
        other.specs[0].name = "nope".into();
        assert!(enc.transform(&other).expect_err("missing").to_string().contains("needs column 'c'"));
    }
}
