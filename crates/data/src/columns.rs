//! Column values gathered from Arrow batches for the exact two-sample tests.
//!
//! A [`ColumnSample`] holds what a drift test needs from one column of one table: every finite
//! numeric value (8 bytes per value: exact tests need them all, as scipy does), or the count of
//! each category. Missing values (null, NaN) are counted and dropped; infinities are counted and
//! dropped too, as Evidently turns them into NaN before testing.

use std::collections::HashMap;

use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, StringArray, cast::AsArray};
use arrow_schema::DataType;

use crate::error::{DataError, Result};

/// Distinct labels counted per column before it is treated as free text.
pub const MAX_CATEGORIES: usize = 100_000;

/// A reference column known only through a profile's quantile sketch: `values` holds its
/// quantiles at evenly spaced ranks, which stand for `count` values with exact moments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sketched {
    pub count: u64,
    /// Population standard deviation, from the profile's exact moments.
    pub std_population: f64,
    /// The sketch's normalised rank error.
    pub rank_error: f64,
}

/// How a column's values are represented, from its Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// Integers, floats and decimals, read as `f64`.
    Number { integer: bool },
    /// Strings and booleans, read as labels.
    Label,
    /// Dates, times and anything else: not tested.
    Other,
}

impl Representation {
    pub fn of(t: &DataType) -> Self {
        match t {
            t if t.is_integer() => Representation::Number { integer: true },
            t if t.is_floating() => Representation::Number { integer: false },
            DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
                Representation::Number { integer: false }
            }
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Boolean
            | DataType::Dictionary(..) => Representation::Label,
            _ => Representation::Other,
        }
    }
}

/// One column's values, as the exact tests consume them.
#[derive(Debug, Clone)]
pub enum ColumnSample {
    Numbers {
        /// Finite values; sorted by [`ColumnSample::finish`].
        values: Vec<f64>,
        integer: bool,
        missing: u64,
        infinite: u64,
        /// Set when `values` is not the data but an evenly spaced quantile grid of a sketched
        /// profile standing for more values: see [`Sketched`].
        sketched: Option<Sketched>,
    },
    Labels {
        counts: HashMap<String, u64>,
        missing: u64,
        /// More than [`MAX_CATEGORIES`] distinct labels were seen; counting stopped.
        overflow: bool,
        seen: u64,
    },
    Other {
        data_type: String,
    },
}

impl ColumnSample {
    pub fn new(t: &DataType) -> Self {
        match Representation::of(t) {
            Representation::Number { integer } => {
                ColumnSample::Numbers { values: Vec::new(), integer, missing: 0, infinite: 0, sketched: None }
            }
            Representation::Label => {
                ColumnSample::Labels { counts: HashMap::new(), missing: 0, overflow: false, seen: 0 }
            }
            Representation::Other => ColumnSample::Other { data_type: t.to_string() },
        }
    }

    /// Adds one batch's column.
    pub fn push(&mut self, array: &ArrayRef) -> Result<()> {
        match self {
            ColumnSample::Numbers { values, missing, infinite, .. } => {
                let floats = as_f64(array)?;
                values.reserve(floats.len() - floats.null_count());
                for v in floats.iter() {
                    match v {
                        Some(v) if v.is_finite() => values.push(if v == 0.0 { 0.0 } else { v }),
                        Some(v) if v.is_infinite() => *infinite += 1,
                        _ => *missing += 1,
                    }
                }
            }
            ColumnSample::Labels { counts, missing, overflow, seen } => {
                for_each_label(array, |label| match label {
                    None => *missing += 1,
                    Some(l) => {
                        *seen += 1;
                        if let Some(c) = counts.get_mut(l) {
                            *c += 1;
                        } else if counts.len() < MAX_CATEGORIES {
                            counts.insert(l.to_owned(), 1);
                        } else {
                            *overflow = true;
                        }
                    }
                })?;
            }
            ColumnSample::Other { .. } => {}
        }
        Ok(())
    }

    /// Sorts numeric values (the exact tests walk them in order).
    pub fn finish(&mut self) {
        if let ColumnSample::Numbers { values, .. } = self {
            values.sort_unstable_by(f64::total_cmp);
        }
    }

    /// Values that take part in a test (missing and infinite ones excluded).
    pub fn count(&self) -> u64 {
        match self {
            ColumnSample::Numbers { sketched: Some(s), .. } => s.count,
            ColumnSample::Numbers { values, .. } => values.len() as u64,
            ColumnSample::Labels { seen, .. } => *seen,
            ColumnSample::Other { .. } => 0,
        }
    }
}

/// Casts any numeric array to `f64`.
pub fn as_f64(array: &ArrayRef) -> Result<Float64Array> {
    let cast = arrow_cast::cast(array, &DataType::Float64)
        .map_err(|e| DataError::invalid(format!("cannot read {} values as numbers: {e}", array.data_type())))?;
    Ok(cast.as_primitive::<arrow_array::types::Float64Type>().clone())
}

/// Calls `f` with each value of a string or boolean array as text (`None` for null).
pub fn for_each_label(array: &ArrayRef, mut f: impl FnMut(Option<&str>)) -> Result<()> {
    if let Some(b) = array.as_any().downcast_ref::<BooleanArray>() {
        for v in b.iter() {
            f(v.map(|v| if v { "true" } else { "false" }));
        }
        return Ok(());
    }
    let strings = arrow_cast::cast(array, &DataType::Utf8)
        .map_err(|e| DataError::invalid(format!("cannot read {} values as text: {e}", array.data_type())))?;
    let strings: &StringArray = strings.as_string::<i32>();
    for v in strings.iter() {
        f(v);
    }
    Ok(())
}

/// The label under which a number is counted as a category: its shortest round-trip decimal form,
/// so distinct values stay distinct (`-0` counts as `0`, as pandas' `value_counts` does).
pub fn number_label(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}
