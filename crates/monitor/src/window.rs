//! One window of the prediction log, folded page by page into every monitor's value.
//!
//! [`WindowAccumulator::push`] takes pages of logged rows (newest first, as the store returns
//! them) and keeps only what the monitors need: the features as drift samples, the answers,
//! per-request latency, and the labelled rows. [`WindowAccumulator::finish`] runs the tests:
//! - data drift per feature against the reference (the training profile), with
//!   `shipyard_data::drift` (Evidently's test choice, scipy's numbers);
//! - prediction drift: the answers against the training target;
//! - prediction statistics (the seed's mean, std, min, max);
//! - performance on rows with ground truth (`shipyard_train::metrics`, scikit-learn's
//!   definitions);
//! - fairness across the groups of the sensitive column (`shipyard_promotion::fairness`,
//!   fairlearn's definitions);
//! - latency percentiles, throughput and error rate over requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, StringArray};
use serde::Serialize;
use shipyard_core::monitoring::LoggedPrediction;
use shipyard_data::columns::{ColumnSample, number_label};
use shipyard_data::drift::{self, ColumnDrift, DriftReport, TableSample};

use crate::config::Judging;
use crate::intervals::{self, Interval};
use shipyard_promotion::fairness::{self, FairnessReport};

use crate::config::Window;

/// Every monitor value a rule can name, besides the per-feature `drift_score.<column>` and
/// `drifted.<column>`.
pub const METRICS: &[&str] = &[
    "rows",
    "requests",
    "error_rate",
    "throughput_rps",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "prediction_mean",
    "prediction_std",
    "prediction_min",
    "prediction_max",
    "drift_share",
    "drifted_features",
    "undecided_features",
    "prediction_drift",
    "prediction_drift_score",
    "labeled_rows",
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "f1_weighted",
    "rmse",
    "mae",
    "r2",
    "demographic_parity_difference",
    "equal_opportunity_difference",
    "disparate_impact_ratio",
];

/// Whether `name` is a monitor value.
pub fn is_metric(name: &str) -> bool {
    METRICS.contains(&name)
        || name.strip_prefix("drift_score.").or_else(|| name.strip_prefix("drifted.")).is_some_and(|c| !c.is_empty())
}

/// Values that need ground truth (a rule on them waits for `min_rows` labelled rows).
pub fn needs_labels(metric: &str) -> bool {
    matches!(
        metric,
        "accuracy"
            | "precision_macro"
            | "recall_macro"
            | "f1_macro"
            | "f1_weighted"
            | "rmse"
            | "mae"
            | "r2"
            | "demographic_parity_difference"
            | "equal_opportunity_difference"
            | "disparate_impact_ratio"
    )
}

/// What the window is compared with: the training rows' profile, split into the features and
/// the target.
pub struct Reference {
    /// Where it came from, for reports (`models:/churn/2 training profile`).
    pub source: String,
    pub features: TableSample,
    pub target: Option<(String, TableSample)>,
}

impl Reference {
    /// Splits `sample` (every column of the training table) into features and `target`.
    pub fn new(source: String, sample: TableSample, target: Option<&str>) -> Reference {
        let rows = sample.rows;
        let (target_cols, features): (Vec<_>, Vec<_>) =
            sample.columns.into_iter().partition(|(name, _)| Some(name.as_str()) == target);
        let target = target_cols
            .into_iter()
            .next()
            .map(|(name, c)| (name.clone(), TableSample { rows, columns: vec![(name, c)] }));
        Reference { source, features: TableSample { rows, columns: features }, target }
    }
}

/// What the fairness monitors need to know.
#[derive(Debug, Clone, Default)]
pub struct FairnessSettings {
    pub sensitive_column: Option<String>,
    pub positive_label: Option<String>,
}

/// The outcome of one window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    pub window: String,
    pub rows: u64,
    pub requests: u64,
    /// Milliseconds since the epoch of the oldest and newest row.
    pub from_time: Option<i64>,
    pub to_time: Option<i64>,
    /// Every value computed, by name (see [`METRICS`]).
    pub values: BTreeMap<String, f64>,
    /// Confidence bounds of the values that are estimates (`crate::intervals`).
    pub intervals: BTreeMap<String, Interval>,
    pub reference: String,
    pub drift: Option<DriftReport>,
    pub prediction_drift: Option<ColumnDrift>,
    pub fairness: Option<FairnessReport>,
    /// Monitors that could not be computed, and why.
    pub notes: Vec<String>,
}

/// A labelled row: the actual and predicted values, and the row's group.
enum Labelled {
    Classes(Vec<(String, String, Option<String>)>),
    Values(Vec<(f64, f64)>),
}

/// Folds pages of logged rows into a window's monitors.
pub struct WindowAccumulator {
    window: Window,
    reference: Arc<Reference>,
    fairness: FairnessSettings,
    /// The slot of each input column read: the features in order, then the sensitive column
    /// when it is not a feature.
    slots: HashMap<String, usize>,
    /// The sensitive column's slot.
    group_slot: Option<usize>,
    features: TableSample,
    predictions: Option<TableSample>,
    /// Numeric answers (or scores), for the prediction statistics.
    answers: Vec<f64>,
    /// Per request (its first row), in milliseconds.
    latencies: Vec<f64>,
    rows: u64,
    requests: u64,
    errors: u64,
    from_time: Option<i64>,
    to_time: Option<i64>,
    labelled: Option<Labelled>,
    notes: Vec<String>,
}

/// An empty sample shaped like `like` (numbers stay numbers, labels labels).
fn empty_like(like: &ColumnSample) -> ColumnSample {
    use arrow_schema::DataType;
    match like {
        ColumnSample::Numbers { integer: true, .. } => ColumnSample::new(&DataType::Int64),
        ColumnSample::Numbers { .. } => ColumnSample::new(&DataType::Float64),
        ColumnSample::Labels { .. } => ColumnSample::new(&DataType::Utf8),
        ColumnSample::Other { .. } => ColumnSample::new(&DataType::Binary),
    }
}

/// A JSON value as a number: numbers, numeric text, booleans as 0/1; else missing.
fn as_number(v: Option<&serde_json::Value>) -> Option<f64> {
    match v? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// A JSON value as a category label, as the data layer labels the same value in a table.
pub fn as_label(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => n.as_f64().map(number_label),
        serde_json::Value::Bool(b) => Some(if *b { "true" } else { "false" }.to_owned()),
        _ => None,
    }
}

/// One column of values, as the sample `like` takes them.
fn column_of(like: &ColumnSample, values: &[Option<serde_json::Value>]) -> ArrayRef {
    match like {
        ColumnSample::Labels { .. } => Arc::new(values.iter().map(|v| as_label(v.as_ref())).collect::<StringArray>()),
        _ => Arc::new(values.iter().map(|v| as_number(v.as_ref())).collect::<Float64Array>()),
    }
}

/// Reads one row's inputs (a JSON object) into `cells`, by the slot `index` gives each wanted
/// column, without building a map: keys are looked up as they are read, other columns skipped.
struct Cells<'a> {
    index: &'a HashMap<String, usize>,
    cells: &'a mut [Option<serde_json::Value>],
}

impl<'de> serde::de::DeserializeSeed<'de> for Cells<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Cells<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of column to value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(slot) = map.next_key_seed(Slot(self.index))? {
            match slot {
                Some(i) => self.cells[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key, read as the slot of its column (`None`: not wanted).
struct Slot<'a>(&'a HashMap<String, usize>);

impl<'de> serde::de::DeserializeSeed<'de> for Slot<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for Slot<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.get(key).copied())
    }
}

impl WindowAccumulator {
    pub fn new(window: Window, reference: Arc<Reference>, fairness: FairnessSettings) -> WindowAccumulator {
        let features = TableSample {
            rows: 0,
            columns: reference.features.columns.iter().map(|(n, c)| (n.clone(), empty_like(c))).collect(),
        };
        let mut slots: HashMap<String, usize> =
            features.columns.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        let group_slot = fairness.sensitive_column.as_ref().map(|c| {
            let next = slots.len();
            *slots.entry(c.clone()).or_insert(next)
        });
        let predictions = reference.target.as_ref().map(|(_, t)| TableSample {
            rows: 0,
            columns: t.columns.iter().map(|(n, c)| (n.clone(), empty_like(c))).collect(),
        });
        WindowAccumulator {
            window,
            reference,
            fairness,
            slots,
            group_slot,
            features,
            predictions,
            answers: Vec::new(),
            latencies: Vec::new(),
            rows: 0,
            requests: 0,
            errors: 0,
            from_time: None,
            to_time: None,
            labelled: None,
            notes: Vec::new(),
        }
    }

    /// Rows folded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Folds one page of rows.
    pub fn push(&mut self, page: &[LoggedPrediction]) {
        let width = self.slots.len();
        // One column of cells per input slot, filled row by row.
        let mut columns: Vec<Vec<Option<serde_json::Value>>> = vec![Vec::with_capacity(page.len()); width];
        let mut answers: Vec<Option<serde_json::Value>> = Vec::with_capacity(page.len());
        let mut cells: Vec<Option<serde_json::Value>> = vec![None; width];
        for p in page {
            let r = &p.record;
            self.rows += 1;
            self.from_time = Some(self.from_time.map_or(r.time, |t| t.min(r.time)));
            self.to_time = Some(self.to_time.map_or(r.time, |t| t.max(r.time)));
            if r.row == 0 {
                self.requests += 1;
                self.latencies.push(r.latency_us as f64 / 1000.0);
                if r.status >= 400 {
                    self.errors += 1;
                }
            }
            if r.status >= 400 {
                continue;
            }
            cells.iter_mut().for_each(|c| *c = None);
            if let Some(text) = r.inputs.as_deref() {
                let mut de = serde_json::Deserializer::from_str(text);
                // A row the log could not have written is read as all missing.
                let _ =
                    serde::de::DeserializeSeed::deserialize(Cells { index: &self.slots, cells: &mut cells }, &mut de);
            }
            let answer: Option<serde_json::Value> = r.prediction.as_deref().and_then(|t| serde_json::from_str(t).ok());
            match as_number(answer.as_ref()).or(r.score) {
                Some(v) if v.is_finite() => self.answers.push(v),
                _ => {}
            }
            if let Some(actual) = p.actual.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()) {
                let group = self.group_slot.and_then(|i| as_label(cells[i].as_ref()));
                self.label(&actual, answer.as_ref(), group);
            }
            for (column, cell) in columns.iter_mut().zip(cells.iter_mut()) {
                column.push(cell.take());
            }
            answers.push(answer);
        }
        for ((_, sample), column) in self.features.columns.iter_mut().zip(&columns) {
            // Cannot fail: the array is made for the sample's own kind.
            let _ = sample.push(&column_of(sample, column));
        }
        self.features.rows += answers.len() as u64;
        if let Some(p) = &mut self.predictions {
            p.rows += answers.len() as u64;
            for (_, sample) in &mut p.columns {
                let _ = sample.push(&column_of(sample, &answers));
            }
        }
    }

    fn label(&mut self, actual: &serde_json::Value, answer: Option<&serde_json::Value>, group: Option<String>) {
        let classes = matches!(answer, Some(serde_json::Value::String(_)));
        match (
            self.labelled.get_or_insert_with(|| {
                if classes { Labelled::Classes(Vec::new()) } else { Labelled::Values(Vec::new()) }
            }),
            classes,
        ) {
            (Labelled::Classes(rows), true) => {
                if let (Some(a), Some(p)) = (as_label(Some(actual)), as_label(answer)) {
                    rows.push((a, p, group));
                }
            }
            (Labelled::Values(rows), false) => {
                if let (Some(a), Some(p)) = (as_number(Some(actual)), as_number(answer)) {
                    rows.push((a, p));
                }
            }
            _ => {}
        }
    }

    /// Runs the tests and returns every value, with confidence bounds on the estimates. CPU
    /// work: call it off the async reactor.
    pub fn finish(mut self, judging: &Judging) -> WindowReport {
        let confidence = judging.confidence;
        let mut values = BTreeMap::new();
        let mut intervals: BTreeMap<String, Interval> = BTreeMap::new();
        let mut bound = |k: &str, i: Option<Interval>| {
            if let Some(i) = i {
                intervals.insert(k.to_owned(), i);
            }
        };
        let mut put = |k: &str, v: f64| {
            if v.is_finite() {
                values.insert(k.to_owned(), v);
            }
        };
        put("rows", self.rows as f64);
        put("requests", self.requests as f64);
        if self.requests > 0 {
            put("error_rate", self.errors as f64 / self.requests as f64);
            bound("error_rate", intervals::wilson(self.errors, self.requests, confidence));
            let span_s = match self.window {
                Window::Minutes(m) => m as f64 * 60.0,
                Window::Last(_) => (self.to_time.unwrap_or(0) - self.from_time.unwrap_or(0)).max(1000) as f64 / 1000.0,
            };
            put("throughput_rps", self.requests as f64 / span_s);
            self.latencies.sort_unstable_by(f64::total_cmp);
            for (name, q) in [("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99)] {
                put(name, shipyard_data::profile::quantile_linear(&self.latencies, q));
                bound(name, intervals::quantile_bounds(&self.latencies, q, confidence));
            }
        }
        if !self.answers.is_empty() {
            let n = self.answers.len() as f64;
            let mean = self.answers.iter().sum::<f64>() / n;
            // The seed's `np.std`: the population standard deviation.
            let var = self.answers.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            put("prediction_mean", mean);
            put("prediction_std", var.sqrt());
            put("prediction_min", self.answers.iter().copied().fold(f64::INFINITY, f64::min));
            put("prediction_max", self.answers.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        }
        let options = &judging.drift;
        let mut notes = std::mem::take(&mut self.notes);
        let drift = if self.features.rows == 0 {
            notes.push("drift: no answered rows in the window".to_owned());
            None
        } else {
            self.features.finish();
            match drift::compare(&self.reference.features, &self.features, options) {
                Ok(report) => {
                    put("drift_share", report.share_drifted);
                    put("drifted_features", report.drifted_columns as f64);
                    put("undecided_features", report.undecided_columns as f64);
                    for c in &report.columns {
                        put(&format!("drift_score.{}", c.column), c.p_value.unwrap_or(c.statistic));
                        put(&format!("drifted.{}", c.column), f64::from(u8::from(c.drift)));
                    }
                    Some(report)
                }
                Err(e) => {
                    notes.push(format!("drift: {e}"));
                    None
                }
            }
        };
        let prediction_drift = match (&self.reference.target, self.predictions.as_mut()) {
            (Some((_, reference)), Some(current)) if current.rows > 0 => {
                current.finish();
                match drift::compare(reference, current, options) {
                    Ok(report) => report.columns.into_iter().next(),
                    Err(e) => {
                        notes.push(format!("prediction drift: {e}"));
                        None
                    }
                }
            }
            (None, _) => {
                notes.push("prediction drift: the reference has no target column".to_owned());
                None
            }
            _ => None,
        };
        if let Some(p) = &prediction_drift {
            put("prediction_drift", f64::from(u8::from(p.drift)));
            put("prediction_drift_score", p.p_value.unwrap_or(p.statistic));
        }
        let mut fairness_report = None;
        match self.labelled.take() {
            None => {
                put("labeled_rows", 0.0);
                notes.push("performance: no ground truth in the window yet".to_owned());
            }
            Some(Labelled::Values(rows)) => {
                put("labeled_rows", rows.len() as f64);
                let (t, p): (Vec<f64>, Vec<f64>) = rows.into_iter().unzip();
                if !t.is_empty() {
                    let m = shipyard_train::metrics::regression(&t, &p);
                    put("rmse", m.rmse);
                    put("mae", m.mae);
                    put("r2", m.r2);
                    let bounds = intervals::bootstrap(t.len(), 3, confidence, |idx| {
                        let (tt, pp): (Vec<f64>, Vec<f64>) = idx.iter().map(|&i| (t[i], p[i])).unzip();
                        let m = shipyard_train::metrics::regression(&tt, &pp);
                        vec![m.rmse, m.mae, m.r2]
                    });
                    for (name, b) in ["rmse", "mae", "r2"].into_iter().zip(bounds) {
                        bound(name, b);
                    }
                }
            }
            Some(Labelled::Classes(rows)) => {
                put("labeled_rows", rows.len() as f64);
                let mut classes: Vec<&str> = rows.iter().flat_map(|(a, p, _)| [a.as_str(), p.as_str()]).collect();
                classes.sort_unstable();
                classes.dedup();
                let index = |l: &str| classes.binary_search(&l).unwrap_or(0);
                let t: Vec<usize> = rows.iter().map(|(a, _, _)| index(a)).collect();
                let p: Vec<usize> = rows.iter().map(|(_, p, _)| index(p)).collect();
                if !t.is_empty() {
                    let m = shipyard_train::metrics::classification(&t, &p, None, classes.len());
                    put("accuracy", m.accuracy);
                    put("precision_macro", m.precision_macro);
                    put("recall_macro", m.recall_macro);
                    put("f1_macro", m.f1_macro);
                    put("f1_weighted", m.f1_weighted);
                    let correct = t.iter().zip(&p).filter(|(a, b)| a == b).count() as u64;
                    bound("accuracy", intervals::wilson(correct, t.len() as u64, confidence));
                    const RESAMPLED: [&str; 4] = ["precision_macro", "recall_macro", "f1_macro", "f1_weighted"];
                    let bounds = intervals::bootstrap(t.len(), RESAMPLED.len(), confidence, |idx| {
                        let (tt, pp): (Vec<usize>, Vec<usize>) = idx.iter().map(|&i| (t[i], p[i])).unzip();
                        let m = shipyard_train::metrics::classification(&tt, &pp, None, classes.len());
                        vec![m.precision_macro, m.recall_macro, m.f1_macro, m.f1_weighted]
                    });
                    for (name, b) in RESAMPLED.into_iter().zip(bounds) {
                        bound(name, b);
                    }
                }
                if self.fairness.sensitive_column.is_some() {
                    let positive =
                        self.fairness.positive_label.clone().or_else(|| classes.get(1).map(|c| (*c).to_owned()));
                    match positive {
                        Some(positive) => {
                            let actual: Vec<&str> = rows.iter().map(|(a, _, _)| a.as_str()).collect();
                            let predicted: Vec<&str> = rows.iter().map(|(_, p, _)| p.as_str()).collect();
                            let groups: Vec<Option<&str>> = rows.iter().map(|(_, _, g)| g.as_deref()).collect();
                            fairness_report = fairness::assess(&actual, &predicted, &groups, &positive);
                            const FAIRNESS: [&str; 3] = [
                                "demographic_parity_difference",
                                "equal_opportunity_difference",
                                "disparate_impact_ratio",
                            ];
                            let bounds = intervals::bootstrap(rows.len(), FAIRNESS.len(), confidence, |idx| {
                                fn pick<'a>(v: &[&'a str], idx: &[usize]) -> Vec<&'a str> {
                                    idx.iter().map(|&i| v[i]).collect()
                                }
                                let g: Vec<Option<&str>> = idx.iter().map(|&i| groups[i]).collect();
                                match fairness::assess(&pick(&actual, idx), &pick(&predicted, idx), &g, &positive) {
                                    Some(f) => vec![
                                        f.demographic_parity_difference,
                                        f.equal_opportunity_difference,
                                        f.disparate_impact_ratio.unwrap_or(f64::NAN),
                                    ],
                                    None => vec![f64::NAN; FAIRNESS.len()],
                                }
                            });
                            for (name, b) in FAIRNESS.into_iter().zip(bounds) {
                                bound(name, b);
                            }
                        }
                        None => notes.push("fairness: fewer than two classes among the labelled rows".to_owned()),
                    }
                }
            }
        }
        if let Some(f) = &fairness_report {
            put("demographic_parity_difference", f.demographic_parity_difference);
            put("equal_opportunity_difference", f.equal_opportunity_difference);
            if let Some(r) = f.disparate_impact_ratio {
                put("disparate_impact_ratio", r);
            }
        }
        WindowReport {
            window: self.window.to_string(),
            rows: self.rows,
            requests: self.requests,
            from_time: self.from_time,
            to_time: self.to_time,
            values,
            intervals,
            reference: self.reference.source.clone(),
            drift,
            prediction_drift,
            fairness: fairness_report,
            notes,
        }
    }
}
