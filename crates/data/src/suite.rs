//! Expectation suites: what a table must look like, checked in one streaming pass.
//!
//! A suite is YAML in Shipyard's own schema (documented in `docs/expectations.md`):
//!
//! ```yaml
//! suite: 1                      # schema version
//! name: training-data
//! table:
//!   row_count: {min: 1000, max: 1000000}
//!   columns: {required: [age, income]}   # or {exact: [...]}: no other columns allowed
//! columns:
//!   age:
//!     type: integer             # integer | number | string | boolean | date | timestamp
//!     not_null: true            # or max_missing_fraction: 0.05
//!     min: 0
//!     max: 120
//!     mean: {min: 30, max: 50}
//!     std: {min: 5, max: 20}
//!   country:
//!     allowed_values: [FR, DE, IT]
//!     regex: '^[A-Z]{2}$'
//!     unique: false
//! ```
//!
//! **Results.** Each expectation gets a result with its observed value, and for row-level
//! expectations (`type`, `not_null`, `min`, `max`, `allowed_values`, `regex`, `unique`) the number
//! of offending rows and the first [`FAILING_ROWS_SHOWN`] of them (0-based data row numbers,
//! pandas' default index).
//!
//! **Quality score**, in [0, 1]: the mean over all expectations of their pass fraction, where a
//! row-level expectation passes `1 - unexpected / checked` of its rows and any other expectation
//! passes 1 or 0. A suite with no expectations scores 1.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::columns::{Representation, as_f64, for_each_label, number_label};
use crate::error::{DataError, Result};
use crate::profile::{Profile, ProfileKind};
use crate::table::Table;

/// Offending row numbers reported per expectation.
pub const FAILING_ROWS_SHOWN: usize = 20;
/// Most distinct text values turned into `allowed_values` by `suite infer`.
const INFER_MAX_CATEGORIES: u64 = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Schema version; 1.
    pub suite: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "TableExpectations::is_empty")]
    pub table: TableExpectations,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnExpectations>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableExpectations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<Bounds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<ColumnSet>,
}

impl TableExpectations {
    fn is_empty(&self) -> bool {
        self.row_count.is_none() && self.columns.is_none()
    }
}

/// An inclusive range; either end may be open.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Bounds {
    fn holds(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
    fn describe(&self) -> Value {
        json!({"min": self.min, "max": self.max})
    }
}

/// The columns a table must have: `{required: [...]}` (others allowed) or `{exact: [...]}` (no
/// others; any order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Integer,
    Number,
    String,
    Boolean,
    Date,
    Timestamp,
}

impl ValueType {
    fn of(t: &DataType) -> Option<ValueType> {
        Some(match t {
            t if t.is_integer() => ValueType::Integer,
            t if t.is_floating() => ValueType::Number,
            DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
                ValueType::Number
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ValueType::String,
            DataType::Boolean => ValueType::Boolean,
            DataType::Date32 | DataType::Date64 => ValueType::Date,
            DataType::Timestamp(..) => ValueType::Timestamp,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            ValueType::Integer => "integer",
            ValueType::Number => "number",
            ValueType::String => "string",
            ValueType::Boolean => "boolean",
            ValueType::Date => "date",
            ValueType::Timestamp => "timestamp",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnExpectations {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub value_type: Option<ValueType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_null: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_missing_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_values: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Bounds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Bounds>,
}

impl Suite {
    /// Parses a suite, naming the line and field of any mistake.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Suite> {
        let suite: Suite = serde_norway::from_str(text)
            .map_err(|e| DataError::invalid(format!("{origin}: not a valid suite: {e}")))?;
        if suite.suite != 1 {
            return Err(DataError::invalid(format!(
                "{origin}: unsupported suite version {} (expected 1)",
                suite.suite
            )));
        }
        if let Some(set) = &suite.table.columns
            && set.required.is_some() == set.exact.is_some()
        {
            return Err(DataError::invalid(format!("{origin}: table.columns takes one of `required` or `exact`")));
        }
        for (name, c) in &suite.columns {
            if let Some(re) = &c.regex {
                regex::Regex::new(re)
                    .map_err(|e| DataError::invalid(format!("{origin}: column '{name}': bad regex: {e}")))?;
            }
            if let Some(f) = c.max_missing_fraction
                && !(0.0..=1.0).contains(&f)
            {
                return Err(DataError::invalid(format!(
                    "{origin}: column '{name}': max_missing_fraction must be between 0 and 1"
                )));
            }
        }
        Ok(suite)
    }

    pub fn to_yaml(&self) -> Result<String> {
        serde_norway::to_string(self).map_err(|e| DataError::invalid(format!("cannot write the suite: {e}")))
    }

    /// A suite that the profiled table passes, with room for ordinary variation:
    /// - `type` as profiled; `not_null` when nothing is missing, else `max_missing_fraction` at
    ///   twice the observed fraction plus 1 point (capped at 1);
    /// - numbers: `min`/`max` widened by `tolerance` times the observed range on each side (the
    ///   default 0.25 lets a fresh sample of a normal variable through in all but a few cases in a
    ///   thousand), `mean` within ± half an observed standard deviation, `std` within 50% to 150%
    ///   of the observed one;
    /// - text with at most 20 distinct values (and fewer than half the rows): `allowed_values`;
    ///   integer and text columns whose values are all distinct: `unique: true`;
    /// - the table: every profiled column `required`, at least one row.
    pub fn infer(profile: &Profile, tolerance: f64) -> Suite {
        let mut columns = BTreeMap::new();
        for c in &profile.columns {
            let mut e = ColumnExpectations {
                value_type: c.data_type.parse::<DataType>().ok().as_ref().and_then(ValueType::of),
                ..ColumnExpectations::default()
            };
            if c.missing == 0 {
                e.not_null = Some(true);
            } else {
                e.max_missing_fraction = Some(round4((c.missing_fraction * 2.0 + 0.01).min(1.0)));
            }
            if let Some(n) = &c.numeric
                && let (Some(min), Some(max)) = (n.min, n.max)
            {
                let pad = (max - min) * tolerance;
                e.min = Some(min - pad);
                e.max = Some(max + pad);
                if let (Some(mean), Some(std)) = (n.mean, n.std) {
                    e.mean = Some(Bounds { min: Some(mean - 0.5 * std), max: Some(mean + 0.5 * std) });
                    e.std = Some(Bounds { min: Some(std * 0.5), max: Some(std * 1.5) });
                }
            }
            if c.kind == ProfileKind::Text
                && c.exact
                && c.distinct <= INFER_MAX_CATEGORIES
                && (c.distinct as f64) < 0.5 * c.count as f64
                && let Some(top) = &c.top_values
            {
                let mut values: Vec<String> = top.values.iter().map(|t| t.value.clone()).collect();
                if values.len() as u64 == c.distinct {
                    values.sort();
                    e.allowed_values = Some(values.into_iter().map(Value::String).collect());
                }
            }
            let integer_or_text = matches!(e.value_type, Some(ValueType::Integer | ValueType::String));
            if integer_or_text && c.exact && c.count > 1 && c.distinct == c.count {
                e.unique = Some(true);
            }
            columns.insert(c.name.clone(), e);
        }
        Suite {
            suite: 1,
            name: None,
            table: TableExpectations {
                row_count: Some(Bounds { min: Some(1.0), max: None }),
                columns: Some(ColumnSet {
                    required: Some(profile.columns.iter().map(|c| c.name.clone()).collect()),
                    exact: None,
                }),
            },
            columns,
        }
    }

    /// Counts the expectations in the suite.
    pub fn len(&self) -> usize {
        let table = usize::from(self.table.row_count.is_some()) + usize::from(self.table.columns.is_some());
        table + self.columns.values().map(ColumnExpectations::count).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn round4(v: f64) -> f64 {
    (v * 1e4).ceil() / 1e4
}

impl ColumnExpectations {
    fn count(&self) -> usize {
        [
            self.value_type.is_some(),
            self.not_null == Some(true),
            self.max_missing_fraction.is_some(),
            self.min.is_some(),
            self.max.is_some(),
            self.allowed_values.is_some(),
            self.regex.is_some(),
            self.unique == Some(true),
            self.mean.is_some(),
            self.std.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

/// One expectation's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectationResult {
    pub expectation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub success: bool,
    pub observed: Value,
    pub expected: Value,
    /// Rows checked and rows that failed, for row-level expectations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unexpected_count: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing_rows: Vec<u64>,
}

impl ExpectationResult {
    /// A result about the table or a column as a whole (no rows to point at).
    fn aggregate(expectation: &str, column: Option<&str>, success: bool, observed: Value, expected: Value) -> Self {
        ExpectationResult {
            expectation: expectation.to_owned(),
            column: column.map(str::to_owned),
            success,
            observed,
            expected,
            checked_rows: None,
            unexpected_count: None,
            failing_rows: Vec::new(),
        }
    }

    /// This expectation's share in the quality score.
    fn pass_fraction(&self) -> f64 {
        match (self.checked_rows, self.unexpected_count) {
            (Some(checked), Some(bad)) if checked > 0 => 1.0 - bad as f64 / checked as f64,
            _ => f64::from(u8::from(self.success)),
        }
    }
}

/// The outcome of validating a table against a suite; its JSON form is a contract.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub success: bool,
    pub quality_score: f64,
    pub rows: u64,
    pub evaluated_expectations: usize,
    pub successful_expectations: usize,
    pub results: Vec<ExpectationResult>,
}

/// Row-level failures of one expectation: how many, and the first few rows.
#[derive(Default)]
struct Offenders {
    count: u64,
    rows: Vec<u64>,
}

impl Offenders {
    fn add(&mut self, row: u64) {
        self.count += 1;
        if self.rows.len() < FAILING_ROWS_SHOWN {
            self.rows.push(row);
        }
    }
}

/// Per column state of a validation pass.
struct ColumnCheck {
    name: String,
    expect: ColumnExpectations,
    representation: Representation,
    present: bool,
    data_type: Option<DataType>,
    index: usize,
    rows: u64,
    missing: Offenders,
    bad_type: Offenders,
    below: Offenders,
    above: Offenders,
    not_allowed: Offenders,
    no_match: Offenders,
    duplicate: Offenders,
    allowed: HashSet<String>,
    /// `allowed_values` that are numbers, as `f64` bits (0.0 for both zeros).
    allowed_numbers: HashSet<u64>,
    regex: Option<regex::Regex>,
    /// Hashes of the values seen, for `unique`: 8 bytes per distinct value.
    seen: FxHashSet<u64>,
    n: u64,
    mean: f64,
    m2: f64,
    observed_min: f64,
    observed_max: f64,
}

fn value_hash(v: &str) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    v.hash(&mut h);
    h.finish()
}

type FxHashSet<T> = HashSet<T, rustc_hash::FxBuildHasher>;

impl ColumnCheck {
    fn push(&mut self, first_row: u64, array: &ArrayRef) -> Result<()> {
        let (value_type, min, max) = (self.expect.value_type, self.expect.min, self.expect.max);
        match self.representation {
            Representation::Number { integer } => {
                let check_values =
                    self.expect.allowed_values.is_some() || self.regex.is_some() || self.expect.unique == Some(true);
                let floats = as_f64(array)?;
                for (i, v) in floats.iter().enumerate() {
                    let row = first_row + i as u64;
                    self.rows += 1;
                    let Some(v) = v.filter(|v| !v.is_nan()) else {
                        self.missing.add(row);
                        continue;
                    };
                    if value_type == Some(ValueType::Integer) && !integer && v.fract() != 0.0 {
                        self.bad_type.add(row);
                    }
                    if min.is_some_and(|m| v < m) {
                        self.below.add(row);
                    }
                    if max.is_some_and(|m| v > m) {
                        self.above.add(row);
                    }
                    if v.is_finite() {
                        self.n += 1;
                        let delta = v - self.mean;
                        self.mean += delta / self.n as f64;
                        self.m2 += delta * (v - self.mean);
                    }
                    self.observed_min = self.observed_min.min(v);
                    self.observed_max = self.observed_max.max(v);
                    if check_values {
                        self.check_number(row, v);
                    }
                }
            }
            Representation::Label => {
                let parse = value_type.is_some_and(|t| matches!(t, ValueType::Number | ValueType::Integer))
                    || min.is_some()
                    || max.is_some();
                let mut i = 0u64;
                for_each_label(array, |label| {
                    let row = first_row + i;
                    i += 1;
                    self.rows += 1;
                    let Some(label) = label else {
                        self.missing.add(row);
                        return;
                    };
                    if parse {
                        let parsed = label.trim().parse::<f64>().ok();
                        match value_type {
                            Some(ValueType::Number) if parsed.is_none() => self.bad_type.add(row),
                            Some(ValueType::Integer) if parsed.is_none_or(|v| v.fract() != 0.0) => {
                                self.bad_type.add(row)
                            }
                            _ => {}
                        }
                        if min.is_some() || max.is_some() {
                            // Text compared with a numeric range: only numbers can be in range.
                            match parsed {
                                Some(v) if min.is_some_and(|m| v < m) => self.below.add(row),
                                Some(v) if max.is_some_and(|m| v > m) => self.above.add(row),
                                Some(_) => {}
                                None => self.bad_type.add(row),
                            }
                        }
                    }
                    self.check_label(row, label);
                })?;
            }
            Representation::Other => {
                for i in 0..array.len() {
                    self.rows += 1;
                    if array.is_null(i) {
                        self.missing.add(first_row + i as u64);
                    }
                }
            }
        }
        Ok(())
    }

    /// `allowed_values`, `regex` and `unique` on a number: compared by value, formatted only for
    /// a regex.
    fn check_number(&mut self, row: u64, v: f64) {
        let bits = if v == 0.0 { 0 } else { v.to_bits() };
        if self.expect.allowed_values.is_some() && !self.allowed_numbers.contains(&bits) {
            self.not_allowed.add(row);
        }
        if let Some(re) = &self.regex
            && !re.is_match(&number_label(v))
        {
            self.no_match.add(row);
        }
        if self.expect.unique == Some(true) && !self.seen.insert(bits) {
            self.duplicate.add(row);
        }
    }

    fn check_label(&mut self, row: u64, label: &str) {
        if self.expect.allowed_values.is_some() && !self.allowed.contains(label) {
            self.not_allowed.add(row);
        }
        if let Some(re) = &self.regex
            && !re.is_match(label)
        {
            self.no_match.add(row);
        }
        if self.expect.unique == Some(true) && !self.seen.insert(value_hash(label)) {
            self.duplicate.add(row);
        }
    }

    fn results(self, out: &mut Vec<ExpectationResult>) {
        let e = &self.expect;
        let column = Some(self.name.clone());
        let missing_column = |expectation: &str, expected: Value| {
            ExpectationResult::aggregate(
                expectation,
                column.as_deref(),
                false,
                json!("column missing from the data"),
                expected,
            )
        };
        let row_level =
            |expectation: &str, expected: Value, observed: Value, off: &Offenders, checked: u64| ExpectationResult {
                expectation: expectation.to_owned(),
                column: column.clone(),
                success: off.count == 0,
                observed,
                expected,
                checked_rows: Some(checked),
                unexpected_count: Some(off.count),
                failing_rows: off.rows.clone(),
            };
        let present = self.rows - self.missing.count;
        let mut push = |r: ExpectationResult| out.push(r);
        if let Some(t) = e.value_type {
            if !self.present {
                push(missing_column("type", json!(t.name())));
            } else {
                let actual = self.data_type.as_ref().and_then(ValueType::of);
                let compatible = match (t, actual) {
                    (ValueType::Number, Some(ValueType::Integer | ValueType::Number)) => true,
                    (a, Some(b)) if a == b => true,
                    // Values checked one by one: decimals in an integer column, text in a
                    // numeric one.
                    (ValueType::Integer, Some(ValueType::Number | ValueType::String)) => true,
                    (ValueType::Number, Some(ValueType::String)) => true,
                    _ => false,
                };
                let observed = json!(actual.map(ValueType::name).unwrap_or("other"));
                if compatible {
                    push(row_level("type", json!(t.name()), observed, &self.bad_type, present));
                } else {
                    push(ExpectationResult::aggregate("type", column.as_deref(), false, observed, json!(t.name())));
                }
            }
        }
        if e.not_null == Some(true) {
            if !self.present {
                push(missing_column("not_null", json!(true)));
            } else {
                push(row_level(
                    "not_null",
                    json!(true),
                    json!({"missing": self.missing.count}),
                    &self.missing,
                    self.rows,
                ));
            }
        }
        if let Some(max_fraction) = e.max_missing_fraction {
            if !self.present {
                push(missing_column("max_missing_fraction", json!(max_fraction)));
            } else {
                let fraction = if self.rows == 0 { 0.0 } else { self.missing.count as f64 / self.rows as f64 };
                push(ExpectationResult::aggregate(
                    "max_missing_fraction",
                    column.as_deref(),
                    fraction <= max_fraction,
                    json!(fraction),
                    json!(max_fraction),
                ));
            }
        }
        let finite = |v: f64| Some(v).filter(|v| v.is_finite());
        for (name, bound, off, observed) in [
            ("min", e.min, &self.below, finite(self.observed_min)),
            ("max", e.max, &self.above, finite(self.observed_max)),
        ] {
            if let Some(b) = bound {
                if !self.present {
                    push(missing_column(name, json!(b)));
                } else {
                    push(row_level(name, json!(b), json!(observed), off, present));
                }
            }
        }
        if let Some(values) = &e.allowed_values {
            if !self.present {
                push(missing_column("allowed_values", json!(values)));
            } else {
                push(row_level(
                    "allowed_values",
                    json!(values),
                    json!({"not_allowed": self.not_allowed.count}),
                    &self.not_allowed,
                    present,
                ));
            }
        }
        if let Some(re) = &e.regex {
            if !self.present {
                push(missing_column("regex", json!(re)));
            } else {
                push(row_level(
                    "regex",
                    json!(re),
                    json!({"not_matching": self.no_match.count}),
                    &self.no_match,
                    present,
                ));
            }
        }
        if e.unique == Some(true) {
            if !self.present {
                push(missing_column("unique", json!(true)));
            } else {
                push(row_level(
                    "unique",
                    json!(true),
                    json!({"duplicates": self.duplicate.count}),
                    &self.duplicate,
                    present,
                ));
            }
        }
        let std = (self.n > 1).then(|| (self.m2 / (self.n - 1) as f64).sqrt());
        let mean = (self.n > 0).then_some(self.mean);
        for (name, bounds, value) in [("mean", &e.mean, mean), ("std", &e.std, std)] {
            if let Some(b) = bounds {
                if !self.present {
                    push(missing_column(name, b.describe()));
                } else {
                    push(ExpectationResult::aggregate(
                        name,
                        column.as_deref(),
                        value.is_some_and(|v| b.holds(v)),
                        json!(value),
                        b.describe(),
                    ));
                }
            }
        }
    }
}

/// Validates a table against a suite in one streaming pass.
pub fn validate(table: &mut Table, suite: &Suite) -> Result<ValidationReport> {
    let make = |schema: &arrow_schema::SchemaRef| -> Result<Vec<ColumnCheck>> {
        let by_name: HashMap<&str, usize> =
            schema.fields().iter().enumerate().map(|(i, f)| (f.name().as_str(), i)).collect();
        suite
            .columns
            .iter()
            .map(|(name, expect)| {
                let index = by_name.get(name.as_str()).copied();
                let data_type = index.map(|i| schema.field(i).data_type().clone());
                Ok(ColumnCheck {
                    name: name.clone(),
                    expect: expect.clone(),
                    representation: data_type.as_ref().map_or(Representation::Other, Representation::of),
                    present: index.is_some(),
                    data_type,
                    index: index.unwrap_or(usize::MAX),
                    rows: 0,
                    missing: Offenders::default(),
                    bad_type: Offenders::default(),
                    below: Offenders::default(),
                    above: Offenders::default(),
                    not_allowed: Offenders::default(),
                    no_match: Offenders::default(),
                    duplicate: Offenders::default(),
                    allowed: expect
                        .allowed_values
                        .iter()
                        .flatten()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            Value::Number(n) => n.as_f64().map(number_label).unwrap_or_else(|| n.to_string()),
                            other => other.to_string(),
                        })
                        .collect(),
                    allowed_numbers: expect
                        .allowed_values
                        .iter()
                        .flatten()
                        .filter_map(|v| match v {
                            Value::Number(n) => n.as_f64(),
                            Value::String(s) => s.trim().parse::<f64>().ok(),
                            _ => None,
                        })
                        .map(|v| if v == 0.0 { 0 } else { v.to_bits() })
                        .collect(),
                    regex: expect
                        .regex
                        .as_deref()
                        .map(regex::Regex::new)
                        .transpose()
                        .map_err(|e| DataError::invalid(format!("column '{name}': bad regex: {e}")))?,
                    seen: FxHashSet::default(),
                    n: 0,
                    mean: 0.0,
                    m2: 0.0,
                    observed_min: f64::INFINITY,
                    observed_max: f64::NEG_INFINITY,
                })
            })
            .collect()
    };
    let schema_names: Vec<String> = table.schema().fields().iter().map(|f| f.name().clone()).collect();
    let (rows, checks) = table.scan(
        |schema| (0u64, make(schema)),
        |(rows, checks), (first, batch)| {
            use rayon::prelude::*;
            *rows += batch.num_rows() as u64;
            let checks = checks.as_mut().map_err(|e| DataError::invalid(e.to_string()))?;
            checks.par_iter_mut().filter(|c| c.present).try_for_each(|c| c.push(*first, batch.column(c.index)))
        },
    )?;
    let checks = checks?;
    let mut results = Vec::new();
    if let Some(b) = &suite.table.row_count {
        results.push(ExpectationResult::aggregate("row_count", None, b.holds(rows as f64), json!(rows), b.describe()));
    }
    if let Some(set) = &suite.table.columns {
        let (name, expected) = match (&set.required, &set.exact) {
            (_, Some(c)) => ("exact_columns", c),
            (Some(c), None) => ("required_columns", c),
            (None, None) => ("required_columns", &Vec::new()),
        };
        let missing: Vec<&String> = expected.iter().filter(|c| !schema_names.contains(c)).collect();
        let extra: Vec<&String> = schema_names.iter().filter(|c| !expected.contains(c)).collect();
        let exact = set.exact.is_some();
        results.push(ExpectationResult::aggregate(
            name,
            None,
            missing.is_empty() && (!exact || extra.is_empty()),
            json!({"missing": missing, "unexpected": if exact { extra } else { Vec::new() }}),
            json!(expected),
        ));
    }
    for check in checks {
        check.results(&mut results);
    }
    let successful = results.iter().filter(|r| r.success).count();
    let quality_score = if results.is_empty() {
        1.0
    } else {
        results.iter().map(ExpectationResult::pass_fraction).sum::<f64>() / results.len() as f64
    };
    Ok(ValidationReport {
        success: successful == results.len(),
        quality_score,
        rows,
        evaluated_expectations: results.len(),
        successful_expectations: successful,
        results,
    })
}
