//! Evaluating a gate policy: each check's observed value, bound and verdict.
//!
//! [`evaluate`] is synchronous CPU work (it predicts with both models and times the candidate);
//! async callers run it on a blocking thread.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use arrow_array::RecordBatch;
use serde::Serialize;
use shipyard_core::display::number;
use shipyard_data::columns::{as_f64, for_each_label, number_label};
use shipyard_data::drift::{self, DriftOptions, TableSample};
use shipyard_runtime::{Output, Scorer};

use crate::fairness::{self, FairnessReport};
use crate::policy::{Bound, GatePolicy};
use crate::signature;

/// The version that holds the champion alias.
pub struct Champion<'a> {
    pub alias: &'a str,
    pub version: &'a str,
    pub model: &'a dyn Scorer,
}

/// The rows the data-dependent gates run on.
pub struct Evaluation<'a> {
    /// Where they came from, for the report.
    pub source: &'a str,
    pub batches: &'a [RecordBatch],
    /// The column with the true values, when known.
    pub target: Option<&'a str>,
}

/// What the caller gathered for the checks.
pub struct Evidence<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub run_id: Option<&'a str>,
    /// The version on the engine that would serve it (so latency is that engine's).
    pub candidate: &'a dyn Scorer,
    /// The latest value of each metric logged on the version's run.
    pub run_metrics: &'a BTreeMap<String, f64>,
    pub champion: Option<Champion<'a>>,
    pub evaluation: Option<Evaluation<'a>>,
    /// The drift gate's reference: a description and the sample, or why there is none.
    pub drift_reference: Option<Result<(String, TableSample), String>>,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `metric`, `latency`, `drift`, `champion`, `fairness` or `signature`.
    pub gate: &'static str,
    /// What was measured, e.g. `accuracy` or `demographic_parity_difference`.
    pub name: String,
    /// The measured value (`None` when it could not be measured: then the check fails).
    pub observed: Option<f64>,
    /// The bound as text, e.g. `>= 0.8`.
    pub bound: String,
    pub passed: bool,
    pub detail: String,
}

/// Where the champion came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChampionRef {
    pub alias: String,
    pub version: String,
}

/// Where the evaluation rows came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationRef {
    pub source: String,
    pub rows: usize,
}

/// The outcome of a policy for one version; its JSON form is stored with the version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateReport {
    pub model: String,
    pub version: String,
    pub run_id: Option<String>,
    /// Every check passed.
    pub passed: bool,
    pub champion: Option<ChampionRef>,
    pub evaluation: Option<EvaluationRef>,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fairness: Option<FairnessReport>,
    pub policy: GatePolicy,
}

impl GateReport {
    /// The names of the failed checks, `gate:name`.
    pub fn failures(&self) -> Vec<String> {
        self.checks.iter().filter(|c| !c.passed).map(|c| format!("{}:{}", c.gate, c.name)).collect()
    }

    /// The checks as an aligned table.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .checks
            .iter()
            .map(|c| {
                [
                    c.gate.to_owned(),
                    c.name.clone(),
                    c.observed.map_or("-".to_owned(), number),
                    c.bound.clone(),
                    if c.passed { "pass".to_owned() } else { "FAIL".to_owned() },
                ]
            })
            .collect();
        let header = ["GATE", "CHECK", "OBSERVED", "BOUND", "VERDICT"].map(str::to_owned);
        let widths: Vec<usize> =
            (0..5).map(|i| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for row in [&header].into_iter().chain(&rows) {
            let line: Vec<String> = row.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        for c in self.checks.iter().filter(|c| !c.detail.is_empty()) {
            let _ = writeln!(out, "  {}:{}: {}", c.gate, c.name, c.detail);
        }
        let verdict = if self.passed { "all gates passed" } else { "gates FAILED" };
        let _ = writeln!(out, "{} version {}: {verdict}", self.model, self.version);
        out
    }
}

fn failed(gate: &'static str, name: impl Into<String>, bound: String, why: String) -> Check {
    Check { gate, name: name.into(), observed: None, bound, passed: false, detail: why }
}

fn bound_text(b: &Bound) -> String {
    match (b.min, b.max) {
        (Some(lo), Some(hi)) => format!("{lo} .. {hi}"),
        (Some(lo), None) => format!(">= {lo}"),
        (None, Some(hi)) => format!("<= {hi}"),
        (None, None) => "-".to_owned(),
    }
}

/// Runs every gate of `policy` on `evidence`.
pub fn evaluate(policy: &GatePolicy, evidence: &Evidence) -> GateReport {
    let mut checks = Vec::new();
    let mut fairness_report = None;
    for (metric, bound) in &policy.metrics {
        checks.push(match evidence.run_metrics.get(metric) {
            None => failed(
                "metric",
                metric,
                bound_text(bound),
                match evidence.run_id {
                    Some(run) => format!("run {run} has no metric '{metric}'"),
                    None => "the version has no run to read metrics from".to_owned(),
                },
            ),
            Some(&v) => Check {
                gate: "metric",
                name: metric.clone(),
                observed: Some(v),
                bound: bound_text(bound),
                passed: !v.is_nan() && bound.min.is_none_or(|lo| v >= lo) && bound.max.is_none_or(|hi| v <= hi),
                detail: String::new(),
            },
        });
    }
    let rows = evidence.evaluation.as_ref().map(|e| e.batches.iter().map(RecordBatch::num_rows).sum::<usize>());
    let no_rows = || match &evidence.evaluation {
        None => "no evaluation data: give --data, or evaluation.data in the policy".to_owned(),
        Some(e) => format!("the evaluation data ({}) has no rows", e.source),
    };
    let evaluation = evidence.evaluation.as_ref().filter(|_| rows.unwrap_or(0) > 0);
    if let Some(gate) = &policy.latency {
        let bound = format!("<= {} ms", gate.max_p99_ms);
        checks.push(match evaluation {
            None => failed("latency", "p99_ms", bound, no_rows()),
            Some(e) => match latency_p99_ms(evidence.candidate, e.batches, gate.sample_rows, gate.repeat) {
                Ok((p99, runs)) => Check {
                    gate: "latency",
                    name: "p99_ms".into(),
                    observed: Some(p99),
                    bound,
                    passed: p99 <= gate.max_p99_ms,
                    detail: format!(
                        "{runs} one-row predictions on the evaluation rows ({} engine)",
                        evidence.candidate.engine_name()
                    ),
                },
                Err(why) => failed("latency", "p99_ms", bound, why),
            },
        });
    }
    if let Some(gate) = &policy.drift {
        let share = gate.drift_share.unwrap_or(0.5);
        let bound = format!("< {share} of columns");
        checks.push(match (evaluation, &evidence.drift_reference) {
            (None, _) => failed("drift", "share_drifted", bound, no_rows()),
            (_, None) => failed("drift", "share_drifted", bound, "no drift reference was given".into()),
            (_, Some(Err(why))) => failed("drift", "share_drifted", bound, why.clone()),
            (Some(e), Some(Ok((source, reference)))) => {
                match drift_check(evidence.candidate, e, reference, gate, share) {
                    Ok(report) => {
                        let drifted: Vec<&str> =
                            report.columns.iter().filter(|c| c.drift).map(|c| c.column.as_str()).collect();
                        Check {
                            gate: "drift",
                            name: "share_drifted".into(),
                            observed: Some(report.share_drifted),
                            bound,
                            passed: !report.dataset_drift,
                            detail: format!(
                                "{} of {} columns drifted against {source}{}",
                                report.drifted_columns,
                                report.columns.len(),
                                if drifted.is_empty() { String::new() } else { format!(": {}", drifted.join(", ")) }
                            ),
                        }
                    }
                    Err(why) => failed("drift", "share_drifted", bound, why),
                }
            }
        });
    }
    if let Some(gate) = &policy.champion {
        let metric = gate.metric.clone().unwrap_or_else(|| default_metric(evidence.candidate).to_owned());
        let name = format!("{metric}_vs_champion");
        checks.push(match (&evidence.champion, evaluation) {
            (None, _) => Check {
                gate: "champion",
                name,
                observed: None,
                bound: "-".into(),
                passed: true,
                detail: "no version holds the champion alias: nothing to compare".into(),
            },
            (Some(c), _) if c.version == evidence.version => Check {
                gate: "champion",
                name,
                observed: None,
                bound: "-".into(),
                passed: true,
                detail: format!("the candidate is the champion ({}@{})", evidence.model, c.alias),
            },
            (Some(_), None) => failed("champion", name, "-".into(), no_rows()),
            (Some(c), Some(e)) => champion_check(evidence.candidate, c, e, &metric, gate.tolerance, name),
        });
    }
    if let Some(gate) = &policy.fairness {
        match evaluation {
            None => checks.push(failed("fairness", "groups", "-".into(), no_rows())),
            Some(e) => match fairness_of(evidence.candidate, e, &gate.sensitive_column, gate.positive_label.as_deref())
            {
                Err(why) => checks.push(failed("fairness", "groups", "-".into(), why)),
                Ok(report) => {
                    let detail = format!(
                        "{} groups of '{}', positive label '{}'",
                        report.groups.len(),
                        gate.sensitive_column,
                        report.positive_label
                    );
                    let mut push = |name: &str, observed: Option<f64>, bound: String, passed: bool| {
                        checks.push(Check {
                            gate: "fairness",
                            name: name.to_owned(),
                            observed,
                            bound,
                            passed,
                            detail: detail.clone(),
                        })
                    };
                    if let Some(max) = gate.max_demographic_parity_difference {
                        let v = report.demographic_parity_difference;
                        push("demographic_parity_difference", Some(v), format!("<= {max}"), v <= max);
                    }
                    if let Some(max) = gate.max_equal_opportunity_difference {
                        let v = report.equal_opportunity_difference;
                        push("equal_opportunity_difference", Some(v), format!("<= {max}"), v <= max);
                    }
                    if let Some(min) = gate.min_disparate_impact_ratio {
                        let v = report.disparate_impact_ratio;
                        push("disparate_impact_ratio", v, format!(">= {min}"), v.is_some_and(|v| v >= min));
                    }
                    fairness_report = Some(report);
                }
            },
        }
    }
    if policy.signature.is_some() {
        checks.push(match &evidence.champion {
            None => Check {
                gate: "signature",
                name: "incompatibilities".into(),
                observed: None,
                bound: "0".into(),
                passed: true,
                detail: "no version holds the champion alias: nothing to compare".into(),
            },
            Some(c) => {
                let problems = signature::incompatibilities(evidence.candidate, c.model);
                Check {
                    gate: "signature",
                    name: "incompatibilities".into(),
                    observed: Some(problems.len() as f64),
                    bound: "0".into(),
                    passed: problems.is_empty(),
                    detail: if problems.is_empty() {
                        format!("takes the requests of version {} ({})", c.version, c.alias)
                    } else {
                        format!("against version {} ({}): {}", c.version, c.alias, problems.join("; "))
                    },
                }
            }
        });
    }
    GateReport {
        model: evidence.model.to_owned(),
        version: evidence.version.to_owned(),
        run_id: evidence.run_id.map(str::to_owned),
        passed: checks.iter().all(|c| c.passed),
        champion: evidence
            .champion
            .as_ref()
            .map(|c| ChampionRef { alias: c.alias.to_owned(), version: c.version.to_owned() }),
        evaluation: evidence
            .evaluation
            .as_ref()
            .map(|e| EvaluationRef { source: e.source.to_owned(), rows: rows.unwrap_or(0) }),
        checks,
        fairness: fairness_report,
        policy: policy.clone(),
    }
}

/// Batch-1 p99 in milliseconds and the number of timed runs.
fn latency_p99_ms(
    model: &dyn Scorer,
    batches: &[RecordBatch],
    sample_rows: usize,
    repeat: usize,
) -> Result<(f64, usize), String> {
    model.one_row_p99_ms(batches, sample_rows, repeat).map_err(|e| match e {
        shipyard_runtime::PredictError::Model(m) => m,
        other => format!("the evaluation rows do not fit the model: {other}"),
    })
}

/// A table's columns as drift samples.
fn sample_of(batches: &[RecordBatch], columns: &[String]) -> Result<TableSample, String> {
    let Some(first) = batches.first() else { return Err("the evaluation data has no rows".into()) };
    let indices: Vec<usize> = columns
        .iter()
        .map(|name| first.schema().index_of(name).map_err(|_| format!("the evaluation data has no column '{name}'")))
        .collect::<Result<_, _>>()?;
    let mut sample = TableSample::empty(&first.schema().project(&indices).map_err(|e| e.to_string())?);
    for batch in batches {
        sample.push(&batch.project(&indices).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    sample.finish();
    Ok(sample)
}

fn drift_check(
    model: &dyn Scorer,
    evaluation: &Evaluation,
    reference: &TableSample,
    gate: &crate::policy::DriftGate,
    share: f64,
) -> Result<drift::DriftReport, String> {
    // The model's inputs: the target and other columns the model never reads are not its data.
    let mut columns = model.column_names();
    if columns.is_empty() {
        columns = reference
            .columns
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| Some(n.as_str()) != evaluation.target)
            .collect();
    }
    let reference = TableSample {
        rows: reference.rows,
        columns: reference.columns.iter().filter(|(n, _)| columns.contains(n)).cloned().collect(),
    };
    let kept: Vec<String> = reference.columns.iter().map(|(n, _)| n.clone()).collect();
    if kept.is_empty() {
        return Err("the drift reference has none of the model's input columns".into());
    }
    let current = sample_of(evaluation.batches, &kept)?;
    let options = DriftOptions {
        preset: gate.preset(),
        method: gate.method.as_deref().map(drift::Method::parse).transpose().map_err(|e| e.to_string())?,
        threshold: gate.threshold,
        drift_share: share,
        ..DriftOptions::default()
    };
    drift::compare(&reference, &current, &options).map_err(|e| e.to_string())
}

fn default_metric(model: &dyn Scorer) -> &'static str {
    if model.classes().is_some() { "accuracy" } else { "rmse" }
}

/// A column's values as labels (numbers in their shortest form, as classes are named).
fn labels_of(batches: &[RecordBatch], column: &str) -> Result<Vec<Option<String>>, String> {
    let mut out = Vec::new();
    for batch in batches {
        let array =
            batch.column_by_name(column).ok_or_else(|| format!("the evaluation data has no column '{column}'"))?;
        if array.data_type().is_numeric() {
            let values = as_f64(array).map_err(|e| e.to_string())?;
            out.extend(values.iter().map(|v| v.filter(|v| !v.is_nan()).map(number_label)));
        } else {
            for_each_label(array, |v| out.push(v.map(str::to_owned))).map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// The true values: labels for a classifier, numbers for a regressor; a missing one is an error
/// naming its row.
enum Actual {
    Labels(Vec<String>),
    Values(Vec<f64>),
}

fn actual_values(batches: &[RecordBatch], target: &str, classifier: bool) -> Result<Actual, String> {
    let missing = |row: usize| format!("target column '{target}' is missing a value in data row {}", row + 1);
    if classifier {
        let labels = labels_of(batches, target)?;
        if let Some(row) = labels.iter().position(Option::is_none) {
            return Err(missing(row));
        }
        return Ok(Actual::Labels(labels.into_iter().flatten().collect()));
    }
    let mut values = Vec::new();
    for batch in batches {
        let array =
            batch.column_by_name(target).ok_or_else(|| format!("the evaluation data has no column '{target}'"))?;
        let floats = as_f64(array).map_err(|e| format!("target column '{target}': {e}"))?;
        values.extend(floats.iter().map(|v| v.unwrap_or(f64::NAN)));
    }
    if let Some(row) = values.iter().position(|v| !v.is_finite()) {
        return Err(missing(row));
    }
    Ok(Actual::Values(values))
}

fn predict(model: &dyn Scorer, batches: &[RecordBatch]) -> Result<Output, String> {
    model.predict_batches(batches).map_err(|e| match e {
        shipyard_runtime::PredictError::Model(m) => m,
        other => format!("the evaluation rows do not fit the model: {other}"),
    })
}

/// `metric` of `output` against `actual`, as the training run would have logged it.
fn score(metric: &str, output: &Output, actual: &Actual) -> Result<f64, String> {
    let pick = |value: serde_json::Value| -> Result<f64, String> {
        let known: Vec<String> = value
            .as_object()
            .map(|o| o.keys().filter(|k| !k.starts_with("confusion")).cloned().collect())
            .unwrap_or_default();
        match value.get(metric) {
            Some(serde_json::Value::Number(n)) => n.as_f64().ok_or_else(|| format!("'{metric}' is not a number")),
            Some(serde_json::Value::Null) => Err(format!("'{metric}' is undefined on these rows")),
            _ => Err(format!("unknown metric '{metric}' for this model (known: {})", known.join(", "))),
        }
    };
    match (output, actual) {
        (Output::Classes { classes, labels, probabilities, .. }, Actual::Labels(truth)) => {
            let mut index: Vec<String> = classes.clone();
            let known = truth.iter().all(|t| classes.contains(t));
            for t in truth.iter().chain(labels) {
                if !index.contains(t) {
                    index.push(t.clone());
                }
            }
            let at = |l: &String| index.iter().position(|x| x == l).unwrap_or(0);
            let y_true: Vec<usize> = truth.iter().map(at).collect();
            let y_pred: Vec<usize> = labels.iter().map(at).collect();
            let k = classes.len();
            let proba: Option<Vec<Vec<f64>>> = (known && k > 0 && probabilities.len() == labels.len() * k)
                .then(|| probabilities.chunks(k).map(<[f64]>::to_vec).collect());
            if !known && matches!(metric, "roc_auc" | "log_loss") {
                return Err(format!("'{metric}' needs every true label among the model's classes"));
            }
            let n = if known { k } else { index.len() };
            let metrics = shipyard_train::metrics::classification(&y_true, &y_pred, proba.as_deref(), n);
            pick(serde_json::to_value(metrics).map_err(|e| e.to_string())?)
        }
        (Output::Values { columns: 1, values, .. }, Actual::Values(truth)) => {
            let metrics = shipyard_train::metrics::regression(truth, values);
            pick(serde_json::to_value(metrics).map_err(|e| e.to_string())?)
        }
        _ => Err("the model's answers and the target column are not of the same kind".into()),
    }
}

fn champion_check(
    candidate: &dyn Scorer,
    champion: &Champion,
    evaluation: &Evaluation,
    metric: &str,
    tolerance: f64,
    name: String,
) -> Check {
    let Some(target) = evaluation.target else {
        return failed("champion", name, "-".into(), "no target column: give evaluation.target in the policy".into());
    };
    let outcome = (|| {
        let actual = actual_values(evaluation.batches, target, candidate.classes().is_some())?;
        let mine = score(metric, &predict(candidate, evaluation.batches)?, &actual)?;
        let theirs = score(metric, &predict(champion.model, evaluation.batches)?, &actual)
            .map_err(|e| format!("the champion (version {}): {e}", champion.version))?;
        Ok::<_, String>((mine, theirs))
    })();
    match outcome {
        Err(why) => failed("champion", name, "-".into(), why),
        Ok((mine, theirs)) => {
            let higher = shipyard_train::evaluate::higher_is_better(metric);
            let (limit, passed, op) = if higher {
                (theirs - tolerance, mine >= theirs - tolerance, ">=")
            } else {
                (theirs + tolerance, mine <= theirs + tolerance, "<=")
            };
            Check {
                gate: "champion",
                name,
                observed: Some(mine),
                bound: format!("{op} {}", number(limit)),
                passed: passed && !mine.is_nan(),
                detail: format!(
                    "champion version {} ({}) scores {} on the same {} rows; tolerance {tolerance}",
                    champion.version,
                    champion.alias,
                    number(theirs),
                    evaluation.batches.iter().map(RecordBatch::num_rows).sum::<usize>()
                ),
            }
        }
    }
}

fn fairness_of(
    model: &dyn Scorer,
    evaluation: &Evaluation,
    sensitive: &str,
    positive: Option<&str>,
) -> Result<FairnessReport, String> {
    let Some(classes) = model.classes() else {
        return Err("fairness gates need a classifier".into());
    };
    let target = evaluation.target.ok_or("no target column: give evaluation.target in the policy")?;
    let positive = match positive {
        Some(p) if classes.iter().any(|c| c == p) => p.to_owned(),
        Some(p) => return Err(format!("positive_label '{p}' is not a class of the model ({})", classes.join(", "))),
        None if classes.len() == 2 => classes[1].clone(),
        None => {
            return Err(format!(
                "the model has {} classes: give fairness.positive_label (one of {})",
                classes.len(),
                classes.join(", ")
            ));
        }
    };
    let Actual::Labels(actual) = actual_values(evaluation.batches, target, true)? else {
        return Err("the target is not a set of labels".into());
    };
    let Output::Classes { labels, .. } = predict(model, evaluation.batches)? else {
        return Err("fairness gates need a classifier".into());
    };
    let groups = labels_of(evaluation.batches, sensitive)?;
    let actual: Vec<&str> = actual.iter().map(String::as_str).collect();
    let predicted: Vec<&str> = labels.iter().map(String::as_str).collect();
    let groups: Vec<Option<&str>> = groups.iter().map(Option::as_deref).collect();
    fairness::assess(&actual, &predicted, &groups, &positive).ok_or_else(|| "no rows to assess".to_owned())
}
