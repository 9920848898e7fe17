//! The gate policy: which checks a version must pass, with their bounds (`docs/promotion.md`).
//!
//! ```yaml
//! gates: 1
//! evaluation: {data: dataset:churn@2, target: churned}
//! metrics:
//!   accuracy: {min: 0.8}
//! latency: {max_p99_ms: 100}
//! drift: {}
//! champion: {metric: accuracy, tolerance: 0.01}
//! fairness: {sensitive_column: sex, max_demographic_parity_difference: 0.1}
//! signature: {}
//! ```
//!
//! Unknown keys are errors (a misspelt bound must not pass silently), and every error names the
//! file, line and column.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct PolicyError {
    pub origin: String,
    pub message: String,
}

/// The whole policy. A section present enables its gate.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatePolicy {
    /// Format version; 1.
    pub gates: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationData>,
    /// Bounds on the run's logged metrics, by metric key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<ChampionGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairness: Option<FairnessGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureGate>,
}

/// The rows the data-dependent gates run on.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvaluationData {
    /// A CSV or Parquet file, or `dataset:NAME[@VERSION]` (`--data` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The column holding the true values (default: the run's `target` parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Inclusive bounds on a value.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// The seed's `max_inference_time`, measured.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LatencyGate {
    /// Largest allowed p99 of one-row predictions, in milliseconds.
    pub max_p99_ms: f64,
    /// Evaluation rows used as the sample (default 1,000).
    #[serde(default = "default_sample_rows")]
    pub sample_rows: usize,
    /// Timed one-row predictions (default 1,000).
    #[serde(default = "default_repeat")]
    pub repeat: usize,
}

fn default_sample_rows() -> usize {
    1000
}

fn default_repeat() -> usize {
    1000
}

/// No data drift between the training data and the evaluation data.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriftGate {
    /// `training` (default: the profile the training run stored), or a table /
    /// `dataset:NAME[@VERSION]` to compare against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Share of drifted columns at which the data drifts (Evidently's default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_share: Option<f64>,
    /// `calibrated` (the default, unless `method` or `threshold` is given: tests valid at the
    /// evaluation data's size, any column flagged on calm data in at most `false_alarm_rate` of
    /// comparisons) or `evidently` (Evidently's tests and thresholds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The calibrated preset's false-alarm level (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_alarm_rate: Option<f64>,
    /// Evidently's preset: a test for every column instead of Evidently's choice (`ks`, `psi`,
    /// `wasserstein`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Evidently's preset: the test's threshold instead of its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

impl DriftGate {
    /// The preset this gate tests with.
    pub fn preset(&self) -> shipyard_data::drift::Preset {
        use shipyard_data::drift::Preset;
        let evidently = match self.preset.as_deref() {
            Some(p) => p == "evidently",
            None => self.method.is_some() || self.threshold.is_some(),
        };
        if evidently { Preset::Evidently } else { Preset::Calibrated { alpha: self.false_alarm_rate.unwrap_or(0.01) } }
    }
}

/// Not worse than the champion on the same rows.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChampionGate {
    /// The alias whose version is the champion (default: the alias being promoted to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Metric compared (default: `accuracy` for classifiers, `rmse` for regressors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// How much worse than the champion the candidate may be, in the metric's units (default 0).
    #[serde(default)]
    pub tolerance: f64,
}

/// Group fairness on a sensitive column (fairlearn's definitions, `fairness` module).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FairnessGate {
    pub sensitive_column: String,
    /// The favourable class (default: the second class of a binary classifier, as
    /// scikit-learn's `pos_label=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_demographic_parity_difference: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_equal_opportunity_difference: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_disparate_impact_ratio: Option<f64>,
}

/// The candidate takes the requests the champion takes.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignatureGate {
    /// The alias whose version is compared (default: the champion's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl GatePolicy {
    /// Parses and checks a policy; `origin` (the file name) prefixes every error.
    /// The policy as YAML text (what [`GatePolicy::from_yaml`] reads back).
    pub fn to_yaml(&self) -> Result<String, PolicyError> {
        serde_norway::to_string(self)
            .map_err(|e| PolicyError { origin: "the policy".to_owned(), message: format!("cannot be written: {e}") })
    }

    pub fn from_yaml(text: &str, origin: &str) -> Result<GatePolicy, PolicyError> {
        let fail = |message: String| PolicyError { origin: origin.to_owned(), message };
        let policy: GatePolicy =
            serde_norway::from_str(text).map_err(|e| fail(format!("not a valid gate policy: {e}")))?;
        if policy.gates != 1 {
            return Err(fail(format!("unsupported policy format `gates: {}` (expected 1)", policy.gates)));
        }
        for (metric, bound) in &policy.metrics {
            match (bound.min, bound.max) {
                (None, None) => return Err(fail(format!("metrics.{metric}: give `min`, `max` or both"))),
                (Some(lo), Some(hi)) if lo > hi => {
                    return Err(fail(format!("metrics.{metric}: min {lo} is above max {hi}")));
                }
                (lo, hi) if lo.is_some_and(f64::is_nan) || hi.is_some_and(f64::is_nan) => {
                    return Err(fail(format!("metrics.{metric}: bounds must be numbers")));
                }
                _ => {}
            }
        }
        if let Some(l) = &policy.latency {
            if l.max_p99_ms.is_nan() || l.max_p99_ms <= 0.0 {
                return Err(fail(format!("latency.max_p99_ms must be above 0, got {}", l.max_p99_ms)));
            }
            if l.sample_rows == 0 || l.repeat == 0 {
                return Err(fail("latency.sample_rows and latency.repeat must be at least 1".into()));
            }
        }
        if let Some(d) = &policy.drift {
            if let Some(share) = d.drift_share
                && !(0.0..=1.0).contains(&share)
            {
                return Err(fail(format!("drift.drift_share must be between 0 and 1, got {share}")));
            }
            if let Some(m) = &d.method {
                shipyard_data::drift::Method::parse(m).map_err(|e| fail(format!("drift.method: {e}")))?;
            }
            if let Some(p) = &d.preset {
                shipyard_data::drift::Preset::parse(p).map_err(|e| fail(format!("drift.preset: {e}")))?;
            }
            if let Some(rate) = d.false_alarm_rate
                && !(rate > 0.0 && rate < 0.5)
            {
                return Err(fail(format!("drift.false_alarm_rate must be above 0 and below 0.5, got {rate}")));
            }
            let calibrated = matches!(d.preset(), shipyard_data::drift::Preset::Calibrated { .. });
            if calibrated && (d.method.is_some() || d.threshold.is_some()) {
                return Err(fail(
                    "drift: method and threshold are the evidently preset's; the calibrated preset takes false_alarm_rate"
                        .to_owned(),
                ));
            }
            if !calibrated && d.false_alarm_rate.is_some() {
                return Err(fail("drift: false_alarm_rate is the calibrated preset's".to_owned()));
            }
        }
        if let Some(c) = &policy.champion
            && (c.tolerance.is_nan() || c.tolerance < 0.0)
        {
            return Err(fail(format!("champion.tolerance must be 0 or more, got {}", c.tolerance)));
        }
        if let Some(f) = &policy.fairness {
            if f.sensitive_column.is_empty() {
                return Err(fail("fairness.sensitive_column must name a column".into()));
            }
            if f.max_demographic_parity_difference.is_none()
                && f.max_equal_opportunity_difference.is_none()
                && f.min_disparate_impact_ratio.is_none()
            {
                return Err(fail(
                    "fairness: give at least one bound (max_demographic_parity_difference, \
                     max_equal_opportunity_difference, min_disparate_impact_ratio)"
                        .into(),
                ));
            }
        }
        if policy.metrics.is_empty()
            && policy.latency.is_none()
            && policy.drift.is_none()
            && policy.champion.is_none()
            && policy.fairness.is_none()
            && policy.signature.is_none()
        {
            return Err(fail("the policy enables no gate".into()));
        }
        Ok(policy)
    }

    /// Whether any gate needs evaluation rows.
    pub fn needs_evaluation_data(&self) -> bool {
        self.latency.is_some() || self.drift.is_some() || self.champion.is_some() || self.fairness.is_some()
    }

    /// The alias whose version is the champion, for the champion and signature gates.
    pub fn champion_alias<'a>(&'a self, promoting_to: &'a str) -> Option<&'a str> {
        let champion = self.champion.as_ref().map(|c| c.alias.as_deref().unwrap_or(promoting_to));
        let signature = self.signature.as_ref().map(|s| s.alias.as_deref().or(champion).unwrap_or(promoting_to));
        champion.or(signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_policy_parses() {
        let text = "gates: 1\nevaluation: {data: eval.csv, target: y}\nmetrics:\n  accuracy: {min: 0.8}\n  log_loss: {max: 0.6}\n\
                    latency: {max_p99_ms: 100}\ndrift: {}\nchampion: {metric: f1_macro, tolerance: 0.01}\n\
                    fairness: {sensitive_column: sex, max_demographic_parity_difference: 0.1}\nsignature: {}\n";
        let p = GatePolicy::from_yaml(text, "gates.yaml").expect("parses");
        assert_eq!(p.metrics["accuracy"].min, Some(0.8));
        assert_eq!(p.latency.as_ref().map(|l| (l.sample_rows, l.repeat)), Some((1000, 1000)));
        assert_eq!(p.drift, Some(DriftGate::default()));
        assert_eq!(p.champion_alias("production"), Some("production"));
        assert!(p.needs_evaluation_data());
    }

    #[test]
    fn mistakes_name_the_place() {
        let err = |t: &str| GatePolicy::from_yaml(t, "g.yaml").expect_err("refused").to_string();
        let e = err("gates: 1\nmetrics:\n  accuracy: {minimum: 0.8}\n");
        assert!(e.starts_with("g.yaml: ") && e.contains("unknown field `minimum`") && e.contains("line 3"), "{e}");
        let e = err("gates: 1\nlatncy: {max_p99_ms: 5}\n");
        assert!(e.contains("unknown field `latncy`") && e.contains("line 2"), "{e}");
        assert!(err("gates: 2\nsignature: {}\n").contains("expected 1"));
        assert!(err("gates: 1\n").contains("enables no gate"));
        assert!(err("gates: 1\nmetrics: {accuracy: {min: 0.9, max: 0.1}}\n").contains("above max"));
        assert!(err("gates: 1\nlatency: {max_p99_ms: 0}\n").contains("above 0"));
        assert!(err("gates: 1\ndrift: {method: nope}\n").contains("drift.method"));
        assert!(err("gates: 1\nfairness: {sensitive_column: sex}\n").contains("at least one bound"));
        assert!(err("gates: 1\nchampion: {tolerance: -1}\n").contains("0 or more"));
    }
}
