//! Data drift between a reference table and a current one, column by column, as Evidently
//! decides it, with statistics equal to scipy's.
//!
//! **Column kinds.** Floats and decimals are numeric. Integers are categorical when the reference
//! has at most 10 distinct values (Evidently's `INTEGER_CARDINALITY_LIMIT`), numeric otherwise.
//! Strings and booleans are categorical, unless more than half the reference values are distinct:
//! then they are free text and not tested. Dates and times are not tested. `--kind COLUMN=KIND`
//! overrides the inference.
//!
//! **Default test** (Evidently's `_get_default_stattest`). `n` is the reference's count of
//! values (missing and infinite ones dropped), `u` the distinct values of both tables together:
//!
//! | kind | n <= 1000 | n > 1000 |
//! |---|---|---|
//! | numeric, u <= 2 | z | jensenshannon |
//! | numeric, 3 <= u <= 5 | chisquare | jensenshannon |
//! | numeric, u > 5 | ks | wasserstein (normed) |
//! | categorical, u <= 2 | z | jensenshannon |
//! | categorical, u > 2 | chisquare | jensenshannon |
//!
//! **Verdicts.** p-value tests drift when `p <= t` (ks) or `p < t` (chisquare, z); distances when
//! `d >= t`. Default thresholds: 0.05 for p-value tests, 0.1 for distances. The table drifts when
//! the share of drifted columns reaches `drift_share` (0.5).
//!
//! Those are the [`Preset::Evidently`] tests, which reports keep (and which equal Evidently's).
//! They are not calibrated for small windows: a distance measured on a few hundred rows has a
//! floor of its own, so calm data drifts. [`Preset::Calibrated`], what monitors and gates use,
//! bounds the false alarms instead: each column gets a two-sample test whose p-value is valid
//! for both samples' sizes (Kolmogorov-Smirnov for numbers with more than 5 distinct values,
//! exact up to 10,000 values per side; Pearson's chi-square test of homogeneity on the 2 x K
//! table otherwise, cells with fewer than 5 expected current values merged), at the level
//! `alpha / k` for `k` tested columns (Bonferroni), so that on data drawn from the reference's
//! distribution any column is flagged in at most `alpha` of comparisons. Each column says the
//! level, the current size and the smallest shift it can detect there; a column whose current
//! sample is too small to reach the level is undecided, never drifted.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::columns::{ColumnSample, number_label};
use crate::error::{DataError, Result};
use crate::stats;
use crate::table::Table;

/// A drift test, named as Evidently names it (`chisquare_homogeneity` is the calibrated
/// preset's two-sample chi-square).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Ks,
    Chisquare,
    Z,
    Wasserstein,
    Jensenshannon,
    Psi,
    KlDiv,
    ChisquareHomogeneity,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::Ks,
        Method::Chisquare,
        Method::Z,
        Method::Wasserstein,
        Method::Jensenshannon,
        Method::Psi,
        Method::KlDiv,
        Method::ChisquareHomogeneity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::Chisquare => "chisquare",
            Method::Z => "z",
            Method::Wasserstein => "wasserstein",
            Method::Jensenshannon => "jensenshannon",
            Method::Psi => "psi",
            Method::KlDiv => "kl_div",
            Method::ChisquareHomogeneity => "chisquare_homogeneity",
        }
    }

    pub fn parse(name: &str) -> Result<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
            DataError::invalid(format!("unknown drift method '{name}' (known: {})", known.join(", ")))
        })
    }

    /// Whether the test yields a p-value (otherwise its score is a distance or divergence).
    pub fn is_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::Chisquare | Method::Z | Method::ChisquareHomogeneity)
    }

    pub fn default_threshold(self) -> f64 {
        if self.is_p_value() { 0.05 } else { 0.1 }
    }

    fn drifts(self, score: f64, threshold: f64) -> bool {
        match self {
            Method::Ks | Method::ChisquareHomogeneity => score <= threshold,
            Method::Chisquare | Method::Z => score < threshold,
            _ => score >= threshold,
        }
    }

    fn numeric_only(self) -> bool {
        matches!(self, Method::Ks | Method::Wasserstein)
    }
}

/// What a column is, for testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Numeric,
    Categorical,
    Text,
    Datetime,
}

impl Kind {
    pub fn parse(name: &str) -> Result<Kind> {
        match name {
            "numeric" | "num" => Ok(Kind::Numeric),
            "categorical" | "cat" => Ok(Kind::Categorical),
            "text" => Ok(Kind::Text),
            other => Err(DataError::invalid(format!("unknown column kind '{other}' (numeric, categorical or text)"))),
        }
    }
}

/// Which tests decide drift (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "preset")]
pub enum Preset {
    /// Evidently's default tests and thresholds (reports; equal to Evidently's numbers).
    Evidently,
    /// Two-sample tests valid at any size, each column at `alpha / k`: on calm data, any column
    /// is flagged in at most `alpha` of comparisons.
    Calibrated { alpha: f64 },
}

impl Preset {
    /// The calibrated preset at its default false-alarm level, 1%.
    pub const CALIBRATED: Preset = Preset::Calibrated { alpha: 0.01 };

    /// `evidently`, `calibrated` (at 1%).
    pub fn parse(name: &str) -> Result<Preset> {
        match name {
            "evidently" => Ok(Preset::Evidently),
            "calibrated" => Ok(Preset::CALIBRATED),
            other => Err(DataError::invalid(format!("unknown drift preset '{other}' (evidently or calibrated)"))),
        }
    }
}

/// Choices a user can make; everything defaults to Evidently's behaviour.
#[derive(Debug, Clone)]
pub struct DriftOptions {
    /// Evidently's tests, or the calibrated ones (`method` and thresholds apply to Evidently's).
    pub preset: Preset,
    /// Test for every column where it applies (`--method METHOD`).
    pub method: Option<Method>,
    /// Per-column tests (`--method COLUMN=METHOD`).
    pub column_methods: HashMap<String, Method>,
    pub threshold: Option<f64>,
    pub column_thresholds: HashMap<String, f64>,
    pub column_kinds: HashMap<String, Kind>,
    /// Share of drifted columns at which the dataset drifts.
    pub drift_share: f64,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            preset: Preset::Evidently,
            method: None,
            column_methods: HashMap::new(),
            threshold: None,
            column_thresholds: HashMap::new(),
            column_kinds: HashMap::new(),
            drift_share: 0.5,
        }
    }
}

/// One column's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnDrift {
    pub column: String,
    pub kind: Kind,
    pub test: Method,
    /// The test statistic (KS D, chi-square, z), or the distance for distance tests.
    #[serde(with = "shipyard_core::entities::json_f64")]
    pub statistic: f64,
    /// `null` for distance tests.
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub drift: bool,
    pub reference_count: u64,
    pub current_count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The calibrated preset: what this comparison could see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power: Option<Power>,
    /// Why the column could not be decided (the calibrated preset, a current sample too small to
    /// reach the level): it is not drift, and does not count in the share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecided: Option<String>,
    /// Both distributions on common bins, for reports.
    pub histogram: Histogram,
}

/// What a calibrated comparison could detect.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Power {
    /// The level the column was tested at (`alpha / k`): its false-alarm rate on calm data.
    pub level: f64,
    /// Values in the current sample.
    pub current_count: u64,
    /// The smallest shift the test detects at that level, in `unit`s: for numbers, the shift of
    /// a normal distribution's mean in standard deviations at which the expected KS statistic
    /// reaches the critical value; for categories, the change in one category's share (at a
    /// share of one half) at which the two-proportion statistic does.
    pub detectable: f64,
    /// `sd` or `share`.
    pub unit: &'static str,
}

/// Two distributions on the same bins: shares of each table's values.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    /// Bin labels: `[lo, hi)` ranges for numbers, the category otherwise.
    pub bins: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// Most categories drawn in a report histogram; the rest are summed as "(other)".
const HISTOGRAM_CATEGORIES: usize = 20;

fn histogram<'a>(numbers: Option<Numbers<'_>>, u: usize, buckets: impl Fn() -> &'a Buckets) -> Histogram {
    match numbers {
        Some(n) if u > HISTOGRAM_CATEGORIES => {
            let (edges, reference, current) = sturges_shares(n);
            let bins = edges.windows(2).map(|w| format!("[{}, {})", short_number(w[0]), short_number(w[1]))).collect();
            Histogram { bins, reference, current }
        }
        _ => {
            let buckets = buckets();
            let (nr, nc) = (buckets.reference.iter().sum::<u64>().max(1), buckets.current.iter().sum::<u64>().max(1));
            let mut order: Vec<usize> = (0..buckets.labels.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(buckets.reference[i] + buckets.current[i]));
            let mut h = Histogram { bins: Vec::new(), reference: Vec::new(), current: Vec::new() };
            let (mut other_r, mut other_c) = (0u64, 0u64);
            for (rank, i) in order.into_iter().enumerate() {
                if rank < HISTOGRAM_CATEGORIES {
                    h.bins.push(buckets.labels[i].clone());
                    h.reference.push(buckets.reference[i] as f64 / nr as f64);
                    h.current.push(buckets.current[i] as f64 / nc as f64);
                } else {
                    other_r += buckets.reference[i];
                    other_c += buckets.current[i];
                }
            }
            if other_r + other_c > 0 {
                h.bins.push("(other)".into());
                h.reference.push(other_r as f64 / nr as f64);
                h.current.push(other_c as f64 / nc as f64);
            }
            h
        }
    }
}

/// A bin edge for display: 4 significant digits.
fn short_number(v: f64) -> String {
    let s = format!("{v:.4e}");
    s.parse::<f64>().map(|x| format!("{x}")).unwrap_or(s)
}

/// A column that was not tested, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub column: String,
    pub reason: String,
}

/// The drift report; its JSON form is a contract scripts rely on.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub columns: Vec<ColumnDrift>,
    /// Columns the calibrated preset could not decide (too few current values).
    #[serde(skip_serializing_if = "is_zero")]
    pub undecided_columns: usize,
    pub drifted_columns: usize,
    pub share_drifted: f64,
    pub dataset_drift: bool,
    pub drift_share: f64,
    pub reference_rows: u64,
    pub current_rows: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// Columns of the current table that the reference lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched_columns: Vec<String>,
}

/// Every column of a table, gathered for the exact tests.
#[derive(Debug, Clone)]
pub struct TableSample {
    pub rows: u64,
    pub columns: Vec<(String, ColumnSample)>,
}

impl TableSample {
    /// A stored profile as the reference side of a drift comparison (see
    /// [`crate::profile::ColumnProfile::reference_sample`] for what stays exact).
    pub fn from_profile(profile: &crate::profile::Profile) -> Result<TableSample> {
        let columns =
            profile.columns.iter().map(|c| Ok((c.name.clone(), c.reference_sample()?))).collect::<Result<Vec<_>>>()?;
        Ok(TableSample { rows: profile.rows, columns })
    }

    /// An empty sample of the columns of `schema`, to [`TableSample::push`] batches into.
    pub fn empty(schema: &arrow_schema::Schema) -> TableSample {
        TableSample {
            rows: 0,
            columns: schema.fields().iter().map(|f| (f.name().clone(), ColumnSample::new(f.data_type()))).collect(),
        }
    }

    /// Adds a batch with the sample's columns, in order.
    pub fn push(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        for ((_, col), array) in self.columns.iter_mut().zip(batch.columns()) {
            col.push(array)?;
        }
        Ok(())
    }

    /// Readies the samples for the tests (sorts them), columns in parallel.
    pub fn finish(&mut self) {
        use rayon::prelude::*;
        self.columns.par_iter_mut().for_each(|(_, c)| c.finish());
    }

    /// Reads a whole table in one streaming pass.
    pub fn read(table: &mut Table) -> Result<TableSample> {
        let mut sample = table.scan(|schema| TableSample::empty(schema), |state, (_, batch)| state.push(batch))?;
        sample.finish();
        Ok(sample)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Compares two tables on disk (`shipyard data drift`, and the web UI's drift between two
/// dataset versions): each read on its own thread. A reference ending in `.json` is a profile
/// written by `shipyard data profile --format json` (or `data add`), used as
/// [`TableSample::from_profile`] does.
pub fn compare_files(
    reference: &std::path::Path,
    current: &std::path::Path,
    csv: &crate::table::CsvOptions,
    options: &DriftOptions,
) -> Result<DriftReport> {
    let read = |path: &std::path::Path| Table::open(path, csv).and_then(|mut t| TableSample::read(&mut t));
    let (reference, current) = std::thread::scope(|s| {
        let r = s.spawn(|| {
            if reference.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
                read_profile(reference)
            } else {
                read(reference)
            }
        });
        let c = read(current);
        (r.join().unwrap_or_else(|_| Err(DataError::invalid("reading the reference failed"))), c)
    });
    compare(&reference?, &current?, options)
}

/// A profile JSON file as a sample.
fn read_profile(path: &std::path::Path) -> Result<TableSample> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::input(path, e.to_string()))?;
    let profile: crate::profile::Profile = serde_json::from_str(&text).map_err(|e| {
        DataError::input(path, format!("not a profile written by `shipyard data profile --format json`: {e}"))
    })?;
    TableSample::from_profile(&profile)
}

/// Compares every column of `reference` with the same column of `current`.
pub fn compare(reference: &TableSample, current: &TableSample, options: &DriftOptions) -> Result<DriftReport> {
    let current_by_name: HashMap<&str, &ColumnSample> = current.columns.iter().map(|(n, c)| (n.as_str(), c)).collect();
    let missing: Vec<&str> =
        reference.columns.iter().map(|(n, _)| n.as_str()).filter(|n| !current_by_name.contains_key(n)).collect();
    if !missing.is_empty() {
        return Err(DataError::invalid(format!(
            "the current data lacks {} column(s) of the reference: {}",
            missing.len(),
            missing.join(", ")
        )));
    }
    for name in options.column_methods.keys().chain(options.column_thresholds.keys()).chain(options.column_kinds.keys())
    {
        if !reference.columns.iter().any(|(n, _)| n == name) {
            return Err(DataError::invalid(format!("no column '{name}' in the reference data")));
        }
    }
    let unmatched_columns: Vec<String> = current
        .columns
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !reference.columns.iter().any(|(r, _)| r == *n))
        .cloned()
        .collect();

    use rayon::prelude::*;
    let outcomes: Vec<Result<std::result::Result<ColumnDrift, Skipped>>> = reference
        .columns
        .par_iter()
        .map(|(name, r)| test_column(name, r, current_by_name[name.as_str()], options))
        .collect();
    let mut columns = Vec::new();
    let mut skipped = Vec::new();
    for outcome in outcomes {
        match outcome? {
            Ok(c) => columns.push(c),
            Err(s) => skipped.push(s),
        }
    }
    if let Preset::Calibrated { alpha } = options.preset {
        calibrate(&mut columns, alpha);
    }
    let undecided_columns = columns.iter().filter(|c| c.undecided.is_some()).count();
    let decided = columns.len() - undecided_columns;
    let drifted_columns = columns.iter().filter(|c| c.drift).count();
    let share_drifted = if decided == 0 { 0.0 } else { drifted_columns as f64 / decided as f64 };
    Ok(DriftReport {
        dataset_drift: decided > 0 && share_drifted >= options.drift_share,
        undecided_columns,
        drifted_columns,
        share_drifted,
        columns,
        drift_share: options.drift_share,
        reference_rows: reference.rows,
        current_rows: current.rows,
        skipped,
        unmatched_columns,
    })
}

/// The counts of each distinct value of a column in both tables, over their union.
struct Buckets {
    /// Labels in a stable order: numbers ascending, text lexicographic.
    labels: Vec<String>,
    reference: Vec<u64>,
    current: Vec<u64>,
}

impl Buckets {
    fn pairs(&self) -> Vec<(u64, u64)> {
        self.reference.iter().copied().zip(self.current.iter().copied()).collect()
    }
    fn unseen(&self) -> Vec<&str> {
        self.labels.iter().zip(&self.reference).filter(|(_, r)| **r == 0).map(|(l, _)| l.as_str()).collect()
    }
}

/// The number of distinct values of a sorted slice.
fn count_distinct(sorted: &[f64]) -> usize {
    sorted.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(!sorted.is_empty())
}

/// The number of distinct values of two sorted slices together.
fn count_distinct_union(a: &[f64], b: &[f64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    let mut last: Option<f64> = None;
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x <= y => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => break,
        };
        if last != Some(x) {
            n += 1;
            last = Some(x);
        }
    }
    n
}

/// Distinct-value counts of sorted numbers.
fn run_lengths(sorted: &[f64]) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = Vec::new();
    for &v in sorted {
        match out.last_mut() {
            Some((last, n)) if *last == v => *n += 1,
            _ => out.push((v, 1)),
        }
    }
    out
}

fn number_buckets(r: &[f64], c: &[f64]) -> Buckets {
    let mut merged: BTreeMap<u64, (f64, u64, u64)> = BTreeMap::new();
    // Order-preserving key for finite f64 (sign-magnitude to two's complement ordering).
    let key = |v: f64| {
        let b = v.to_bits();
        if b >> 63 == 1 { !b } else { b | (1 << 63) }
    };
    for (v, n) in run_lengths(r) {
        merged.entry(key(v)).or_insert((v, 0, 0)).1 += n;
    }
    for (v, n) in run_lengths(c) {
        merged.entry(key(v)).or_insert((v, 0, 0)).2 += n;
    }
    let mut b = Buckets { labels: Vec::new(), reference: Vec::new(), current: Vec::new() };
    for (v, rn, cn) in merged.into_values() {
        b.labels.push(number_label(v));
        b.reference.push(rn);
        b.current.push(cn);
    }
    b
}

fn label_buckets(r: &HashMap<String, u64>, c: &HashMap<String, u64>) -> Buckets {
    let mut merged: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (l, n) in r {
        merged.entry(l.as_str()).or_default().0 += n;
    }
    for (l, n) in c {
        merged.entry(l.as_str()).or_default().1 += n;
    }
    let mut b = Buckets { labels: Vec::new(), reference: Vec::new(), current: Vec::new() };
    for (l, (rn, cn)) in merged {
        b.labels.push(l.to_owned());
        b.reference.push(rn);
        b.current.push(cn);
    }
    b
}

/// A numeric column's two sides, sorted, and how many values they stand for together (more than
/// their lengths when the reference is a sketched profile's quantile grid).
#[derive(Clone, Copy)]
struct Numbers<'a> {
    r: &'a [f64],
    c: &'a [f64],
    integer: bool,
    total: usize,
}

/// Both sorted, non-empty samples cut at numpy's Sturges edges over their union: the edges and
/// each sample's shares per bin.
fn sturges_shares(n: Numbers<'_>) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (r, c) = (n.r, n.c);
    let min = r[0].min(c[0]);
    let max = r[r.len() - 1].max(c[c.len() - 1]);
    let edges = stats::sturges_edges(min, max, n.total, n.integer);
    let shares = |values: &[f64]| {
        let mut counts = vec![0u64; edges.len() - 1];
        for v in values {
            if let Some(bin) = stats::histogram_bin(&edges, *v) {
                counts[bin] += 1;
            }
        }
        stats::shares(&counts, values.len() as u64)
    };
    let (reference, current) = (shares(r), shares(c));
    (edges, reference, current)
}

/// Evidently's `get_binned_data`: numeric data with more than 20 distinct reference values is
/// cut at numpy's Sturges edges over both samples; anything else gets a bucket per value.
fn binned_shares<'a>(
    numbers: Option<Numbers<'_>>,
    buckets: impl Fn() -> &'a Buckets,
    fill_zeroes: bool,
) -> (Vec<f64>, Vec<f64>) {
    let (mut rp, mut cp) = match numbers {
        Some(n) if count_distinct(n.r) > 20 => {
            let (_, reference, current) = sturges_shares(n);
            (reference, current)
        }
        _ => {
            let buckets = buckets();
            let (nr, nc) = (buckets.reference.iter().sum(), buckets.current.iter().sum());
            (stats::shares(&buckets.reference, nr), stats::shares(&buckets.current, nc))
        }
    };
    if fill_zeroes {
        stats::fill_zero_shares(&mut rp);
        stats::fill_zero_shares(&mut cp);
    }
    (rp, cp)
}

fn skip(column: &str, reason: impl Into<String>) -> Result<std::result::Result<ColumnDrift, Skipped>> {
    Ok(Err(Skipped { column: column.to_owned(), reason: reason.into() }))
}

fn distinct(sample: &ColumnSample) -> usize {
    match sample {
        ColumnSample::Numbers { values, .. } => count_distinct(values),
        ColumnSample::Labels { counts, .. } => counts.len(),
        ColumnSample::Other { .. } => 0,
    }
}

fn infer_kind(reference: &ColumnSample) -> Kind {
    match reference {
        ColumnSample::Numbers { integer: true, .. } if distinct(reference) <= 10 => Kind::Categorical,
        ColumnSample::Numbers { .. } => Kind::Numeric,
        ColumnSample::Labels { overflow: true, .. } => Kind::Text,
        ColumnSample::Labels { seen, .. } if distinct(reference) as f64 > 0.5 * *seen as f64 && *seen > 0 => Kind::Text,
        ColumnSample::Labels { .. } => Kind::Categorical,
        ColumnSample::Other { .. } => Kind::Datetime,
    }
}

fn test_column(
    name: &str,
    r: &ColumnSample,
    c: &ColumnSample,
    options: &DriftOptions,
) -> Result<std::result::Result<ColumnDrift, Skipped>> {
    let kind = match options.column_kinds.get(name) {
        Some(k) => *k,
        None => infer_kind(r),
    };
    let mut notes = Vec::new();
    match (r, c) {
        (ColumnSample::Other { data_type }, _) => return skip(name, format!("{data_type} columns are not tested")),
        (ColumnSample::Numbers { .. }, ColumnSample::Numbers { .. })
        | (ColumnSample::Labels { .. }, ColumnSample::Labels { .. }) => {}
        _ => {
            return Err(DataError::invalid(format!(
                "column '{name}' holds numbers in one table and text in the other"
            )));
        }
    }
    if kind == Kind::Text {
        return skip(name, "free text (more than half the reference values are distinct); set --kind to test it");
    }
    if kind == Kind::Numeric && matches!(r, ColumnSample::Labels { .. }) {
        return Err(DataError::invalid(format!("column '{name}' holds text and cannot be tested as numeric")));
    }
    if let (ColumnSample::Labels { overflow: true, .. }, _) | (_, ColumnSample::Labels { overflow: true, .. }) = (r, c)
    {
        return skip(name, "more distinct values than can be counted exactly");
    }
    let (n_ref, n_cur) = (r.count(), c.count());
    if n_ref == 0 {
        return skip(name, "no values in the reference (all missing)");
    }
    if n_cur == 0 {
        return skip(name, "no values in the current data (all missing)");
    }
    for (side, s) in [("reference", r), ("current", c)] {
        if let ColumnSample::Numbers { infinite, .. } = s
            && *infinite > 0
        {
            notes.push(format!("{infinite} infinite value(s) in the {side} dropped"));
        }
    }
    // Per-value counts are built only when a test or the histogram needs them: for a continuous
    // column they would cost more than the test itself.
    let sketched = match r {
        ColumnSample::Numbers { sketched: Some(s), .. } => Some(*s),
        _ => None,
    };
    if let Some(s) = sketched {
        notes.push(format!(
            "reference from a sketched profile: approximate (quantiles within a rank error of {:.4})",
            s.rank_error
        ));
    }
    let bucket_cell = std::cell::OnceCell::new();
    let buckets = || {
        bucket_cell.get_or_init(|| match (r, c) {
            (ColumnSample::Numbers { values: rv, .. }, ColumnSample::Numbers { values: cv, .. }) => {
                let mut b = number_buckets(rv, cv);
                // A quantile grid stands for `count` values: scale its counts back.
                if let Some(s) = sketched {
                    let per_point = s.count as f64 / rv.len().max(1) as f64;
                    b.reference.iter_mut().for_each(|n| *n = (*n as f64 * per_point).round() as u64);
                }
                b
            }
            (ColumnSample::Labels { counts: rc, .. }, ColumnSample::Labels { counts: cc, .. }) => label_buckets(rc, cc),
            _ => Buckets { labels: Vec::new(), reference: Vec::new(), current: Vec::new() },
        })
    };
    let u = match (r, c) {
        (ColumnSample::Numbers { values: rv, .. }, ColumnSample::Numbers { values: cv, .. }) => {
            count_distinct_union(rv, cv)
        }
        (ColumnSample::Labels { counts: rc, .. }, ColumnSample::Labels { counts: cc, .. }) => {
            rc.len() + cc.keys().filter(|k| !rc.contains_key(*k)).count()
        }
        _ => 0,
    };
    let default = match (kind, n_ref <= 1000) {
        (Kind::Numeric, true) if u <= 2 => Method::Z,
        (Kind::Numeric, true) if u <= 5 => Method::Chisquare,
        (Kind::Numeric, true) => Method::Ks,
        (Kind::Numeric, false) if u <= 5 => Method::Jensenshannon,
        (Kind::Numeric, false) => Method::Wasserstein,
        (_, true) if u <= 2 => Method::Z,
        (_, true) => Method::Chisquare,
        (_, false) => Method::Jensenshannon,
    };
    let method = match (options.preset, options.column_methods.get(name), options.method) {
        // Calibrated: the test's p-value must be valid at both samples' sizes.
        (Preset::Calibrated { .. }, _, _) if kind == Kind::Numeric && u > 5 => Method::Ks,
        (Preset::Calibrated { .. }, _, _) => Method::ChisquareHomogeneity,
        (Preset::Evidently, column, all) => match (column, all) {
            (Some(m), _) => {
                if m.numeric_only() && kind != Kind::Numeric {
                    return Err(DataError::invalid(format!(
                        "{} applies to numeric columns; '{name}' is {kind:?}",
                        m.name()
                    )));
                }
                *m
            }
            (None, Some(m)) if !(m.numeric_only() && kind != Kind::Numeric) => m,
            (None, Some(m)) => {
                notes.push(format!("{} applies to numeric columns only; the default test was used", m.name()));
                default
            }
            (None, None) => default,
        },
    };
    let threshold =
        options.column_thresholds.get(name).copied().or(options.threshold).unwrap_or(method.default_threshold());
    let numbers = match (r, c) {
        (ColumnSample::Numbers { values: rv, integer, .. }, ColumnSample::Numbers { values: cv, .. }) => {
            Some(Numbers { r: rv, c: cv, integer: *integer, total: (n_ref + n_cur) as usize })
        }
        _ => None,
    };
    // For categorical columns tested on counts, a label new in the current data is worth saying.
    let unseen = if kind == Kind::Categorical { buckets().unseen() } else { Vec::new() };
    if !unseen.is_empty() {
        let shown: Vec<&str> = unseen.iter().take(5).copied().collect();
        notes.push(format!("{} categor(ies) not in the reference: {}", unseen.len(), shown.join(", ")));
    }
    let mut undecided = None;
    let (statistic, p_value) = match method {
        Method::Ks => {
            let n = numbers.expect("numeric checked");
            let o = match sketched {
                None => stats::ks_2samp(n.r, n.c),
                // Only the distribution is known: D from it, Smirnov's asymptotic p-value.
                Some(s) => stats::ks_2samp_asymptotic(stats::ks_statistic(n.r, n.c), s.count, n_cur),
            };
            (o.statistic, Some(o.p_value))
        }
        Method::Wasserstein => {
            let n = numbers.expect("numeric checked");
            let w = match sketched {
                None => stats::wasserstein_normed(n.r, n.c),
                Some(s) => stats::wasserstein(n.r, n.c) / s.std_population.max(0.001),
            };
            (w, None)
        }
        Method::ChisquareHomogeneity => {
            let (cells, merged) = stats::merge_sparse_cells(&buckets().pairs(), 5.0);
            if merged > 0 {
                notes.push(format!("{merged} rare categor(ies) pooled so that each cell expects 5 current values"));
            }
            if cells.len() < 2 {
                if u >= 2 {
                    undecided = Some(format!("{n_cur} current values: too few to expect 5 in each of two categories"));
                } else {
                    notes.push("a single category in both tables: nothing to compare".into());
                }
                (0.0, Some(1.0))
            } else {
                let o = stats::chi2_contingency_2xk(&cells);
                (o.statistic, Some(o.p_value))
            }
        }
        Method::Chisquare => {
            if u < 2 {
                notes.push("a single value in both tables: nothing to compare".into());
                (0.0, Some(1.0))
            } else {
                let o = stats::chisquare_against_reference(&buckets().pairs());
                (o.statistic, Some(o.p_value))
            }
        }
        Method::Z => {
            if u > 2 {
                return Err(DataError::invalid(format!(
                    "the z-test compares two categories; '{name}' has {u} distinct values"
                )));
            }
            let pairs = buckets().pairs();
            let o = match pairs.as_slice() {
                [a, b] => stats::z_two_proportions([*a, *b]),
                _ => stats::TestOutcome { statistic: 0.0, p_value: 1.0 },
            };
            (o.statistic, Some(o.p_value))
        }
        Method::Jensenshannon => {
            let (rp, cp) = binned_shares(numbers, buckets, false);
            (stats::jensenshannon(&rp, &cp), None)
        }
        Method::Psi => {
            let (rp, cp) = binned_shares(numbers, buckets, true);
            (stats::psi(&rp, &cp), None)
        }
        Method::KlDiv => {
            let (rp, cp) = binned_shares(numbers, buckets, true);
            (stats::kl_divergence(&rp, &cp), None)
        }
    };
    let score = p_value.unwrap_or(statistic);
    Ok(Ok(ColumnDrift {
        column: name.to_owned(),
        kind,
        test: method,
        statistic,
        p_value,
        threshold,
        drift: method.drifts(score, threshold),
        reference_count: n_ref,
        current_count: n_cur,
        notes,
        power: None,
        undecided,
        histogram: histogram(numbers, u, buckets),
    }))
}

/// The calibrated preset's verdicts: each column at `alpha / k`, with what it could detect; a
/// column whose current sample cannot reach that level is undecided.
fn calibrate(columns: &mut [ColumnDrift], alpha: f64) {
    let level = alpha / columns.len().max(1) as f64;
    for c in columns {
        let (n, m) = (c.reference_count, c.current_count);
        let p = c.p_value.unwrap_or(1.0);
        c.threshold = level;
        let (detectable, unit, smallest_p) = match c.test {
            Method::Ks => {
                let d = stats::ks_critical(level, n, m);
                // The smallest p-value these sizes allow: every current value beyond every
                // reference value, 2 / C(n + m, m).
                (stats::normal_shift_for_ks(d), "sd", stats::ks_smallest_p(n, m))
            }
            _ => {
                let z = stats::norm_ppf(1.0 - level / 2.0);
                let change = z * (0.25 * (1.0 / n.max(1) as f64 + 1.0 / m.max(1) as f64)).sqrt();
                // Pooling left two or more cells expecting 5 current values each: the test can
                // reach any level (undecided columns were marked by the pooling).
                (change, "share", 0.0)
            }
        };
        c.power = Some(Power { level, current_count: m, detectable, unit });
        if c.undecided.is_some() {
            c.drift = false;
        } else if smallest_p > level {
            c.undecided = Some(format!(
                "{m} current values cannot reach the level {} whatever they are",
                shipyard_core::display::number(level)
            ));
            c.drift = false;
        } else {
            c.drift = c.test.drifts(p, level);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(values: &[f64], integer: bool) -> ColumnSample {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        ColumnSample::Numbers { values: v, integer, missing: 0, infinite: 0, sketched: None }
    }

    fn labels(pairs: &[(&str, u64)]) -> ColumnSample {
        ColumnSample::Labels {
            counts: pairs.iter().map(|(l, n)| (l.to_string(), *n)).collect(),
            missing: 0,
            overflow: false,
            seen: pairs.iter().map(|p| p.1).sum(),
        }
    }

    fn table(cols: Vec<(&str, ColumnSample)>) -> TableSample {
        TableSample { rows: 0, columns: cols.into_iter().map(|(n, c)| (n.to_owned(), c)).collect() }
    }

    #[test]
    fn default_tests_follow_evidently_rules() {
        let small: Vec<f64> = (0..100).map(|i| i as f64 * 0.37).collect();
        let big: Vec<f64> = (0..2000).map(|i| i as f64 * 0.37).collect();
        let r = table(vec![
            ("f_small", numbers(&small, false)),
            ("f_big", numbers(&big, false)),
            ("cat", labels(&[("a", 10), ("b", 20), ("c", 5)])),
            ("bin", labels(&[("y", 10), ("n", 20)])),
            ("int_cat", numbers(&[1.0, 2.0, 3.0, 1.0], true)),
        ]);
        let report = compare(&r, &r.clone(), &DriftOptions::default()).expect("compare");
        let tests: Vec<(&str, Method, Kind)> =
            report.columns.iter().map(|c| (c.column.as_str(), c.test, c.kind)).collect();
        assert_eq!(
            tests,
            vec![
                ("f_small", Method::Ks, Kind::Numeric),
                ("f_big", Method::Wasserstein, Kind::Numeric),
                ("cat", Method::Chisquare, Kind::Categorical),
                ("bin", Method::Z, Kind::Categorical),
                ("int_cat", Method::Chisquare, Kind::Categorical),
            ]
        );
        assert!(report.columns.iter().all(|c| !c.drift));
        assert!(!report.dataset_drift);
    }

    #[test]
    fn unseen_categories_and_missing_columns_are_reported() {
        let r = table(vec![("cat", labels(&[("a", 50), ("b", 50), ("c", 50)]))]);
        let c = table(vec![("cat", labels(&[("a", 50), ("b", 50), ("z", 50)]))]);
        let report = compare(&r, &c, &DriftOptions::default()).expect("compare");
        let col = &report.columns[0];
        assert!(col.drift && col.statistic.is_infinite() && col.p_value == Some(0.0));
        assert!(col.notes.iter().any(|n| n.contains("not in the reference: z")), "{:?}", col.notes);

        let err = compare(&r, &table(vec![]), &DriftOptions::default()).expect_err("missing column");
        assert!(err.to_string().contains("lacks 1 column(s) of the reference: cat"));
    }

    #[test]
    fn methods_can_be_forced_and_checked() {
        let r = table(vec![("cat", labels(&[("a", 5), ("b", 3), ("c", 2)]))]);
        let mut opts = DriftOptions { method: Some(Method::Ks), ..DriftOptions::default() };
        let report = compare(&r, &r.clone(), &opts).expect("compare");
        assert_eq!(report.columns[0].test, Method::Chisquare);
        assert!(report.columns[0].notes[0].contains("numeric columns only"));
        opts.column_methods.insert("cat".into(), Method::Ks);
        assert!(compare(&r, &r.clone(), &opts).is_err());
        opts.column_methods.insert("cat".into(), Method::Psi);
        let report = compare(&r, &r.clone(), &opts).expect("compare");
        assert_eq!((report.columns[0].test, report.columns[0].statistic), (Method::Psi, 0.0));
    }

    #[test]
    fn constant_and_non_finite_columns_get_defined_answers() {
        // Constant in both tables: every test says "no drift" without dividing by zero.
        let constant = numbers(&[2.0; 50], false);
        let r = table(vec![("c", constant.clone())]);
        for method in Method::ALL {
            let mut opts = DriftOptions::default();
            opts.column_methods.insert("c".into(), method);
            opts.column_kinds.insert("c".into(), Kind::Numeric);
            let report = compare(&r, &r.clone(), &opts).expect("compare");
            let col = &report.columns[0];
            assert!(col.statistic.is_finite() && !col.drift, "{method:?}: {col:?}");
        }
        // Constant reference, moved current: drift, and the normed Wasserstein uses 0.001.
        let moved = table(vec![("c", numbers(&[3.0; 50], false))]);
        let mut opts = DriftOptions::default();
        opts.column_methods.insert("c".into(), Method::Wasserstein);
        let report = compare(&r, &moved, &opts).expect("compare");
        assert_eq!(report.columns[0].statistic, 1.0 / 0.001);
        // Infinities are dropped and said so.
        let mut with_inf = numbers(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], false);
        if let ColumnSample::Numbers { infinite, .. } = &mut with_inf {
            *infinite = 2;
        }
        let report =
            compare(&table(vec![("x", with_inf.clone())]), &table(vec![("x", with_inf)]), &DriftOptions::default())
                .expect("compare");
        assert!(report.columns[0].notes.iter().any(|n| n.contains("2 infinite value(s) in the reference dropped")));
    }

    #[test]
    fn all_null_and_text_columns_are_skipped_with_a_reason() {
        let r = table(vec![
            (
                "empty",
                ColumnSample::Numbers { values: vec![], integer: false, missing: 10, infinite: 0, sketched: None },
            ),
            ("ids", labels(&[("a", 1), ("b", 1), ("c", 1)])),
        ]);
        let report = compare(&r, &r.clone(), &DriftOptions::default()).expect("compare");
        assert!(report.columns.is_empty());
        assert_eq!(report.skipped.len(), 2);
        assert!(report.skipped[0].reason.contains("all missing"));
        assert!(report.skipped[1].reason.contains("free text"));
    }
}
