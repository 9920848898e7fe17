//! A deployment's monitor configuration (`docs/monitoring.md`): the window, the schedule, what
//! the rows mean (target, sensitive column, positive label), the alert rules and where alerts
//! go.
//!
//! ```yaml
//! monitors: 1
//! window: {last: 1000}          # or {minutes: 60}
//! interval_seconds: 60
//! reference: dataset:churn@3    # default: the training profile of the primary version
//! sensitive_column: gender
//! positive_label: "1"
//! rules:
//!   - {name: accuracy, metric: accuracy, op: "<", threshold: 0.8, severity: high, action: rollback}
//!   - {name: drift, metric: drift_share, op: ">", threshold: 0.1, for: 2, cooldown_seconds: 600}
//! webhooks:
//!   - {url: "http://alerts.internal/hook"}
//! ```
//!
//! Without `rules`, the seed's `alert_thresholds` apply: `accuracy < 0.8` (high) and
//! `drift_share > 0.1` (medium). Unknown keys are errors, naming line and column.
//!
//! Decisions are calibrated by default (`docs/monitoring.md`, "False alarms"): features are
//! tested by the `calibrated` drift preset so that on calm traffic any feature is flagged in at
//! most `false_alarm_rate` (1%) of evaluations, and a rule on an estimate (accuracy, f1,
//! fairness, latency) fires when its bound at `confidence` (97.5%) crosses the threshold.
//! `drift_preset: evidently` (with `drift_threshold`) restores Evidently's tests.

use serde::{Deserialize, Serialize};
use shipyard_data::drift::{DriftOptions, Preset};

/// The calibrated drift preset's default: any feature flagged in at most 1% of calm evaluations.
pub const DEFAULT_FALSE_ALARM_RATE: f64 = 0.01;
/// The rules' default confidence: with Wilson's bounds, the seed's `accuracy < 0.8` on a model
/// at 0.85 fires in under 1% of evaluations from 30 labelled rows up (0.95 fired in 1.2% at 30),
/// and a drop to 0.75 is caught in 97% of 1,000-row windows (0.99 would catch 93%).
pub const DEFAULT_CONFIDENCE: f64 = 0.975;

/// How a window's values are decided.
#[derive(Debug, Clone)]
pub struct Judging {
    pub drift: DriftOptions,
    /// One-sided confidence of the bounds a rule on an estimate compares with its threshold.
    pub confidence: f64,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub message: String,
}

/// Which logged predictions a monitor looks at; written `{last: N}` or `{minutes: N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "WindowSpec", into = "WindowSpec")]
pub enum Window {
    /// The newest `n` logged rows.
    Last(u64),
    /// The rows logged in the last `n` minutes.
    Minutes(u64),
}

/// The YAML shape of a window: exactly one of the two keys.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct WindowSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minutes: Option<u64>,
}

impl TryFrom<WindowSpec> for Window {
    type Error = String;

    fn try_from(w: WindowSpec) -> Result<Window, String> {
        match (w.last, w.minutes) {
            (Some(n), None) => Ok(Window::Last(n)),
            (None, Some(m)) => Ok(Window::Minutes(m)),
            _ => Err("a window is {last: N} (predictions) or {minutes: N}, one of the two".to_owned()),
        }
    }
}

impl From<Window> for WindowSpec {
    fn from(w: Window) -> WindowSpec {
        match w {
            Window::Last(n) => WindowSpec { last: Some(n), minutes: None },
            Window::Minutes(m) => WindowSpec { last: None, minutes: Some(m) },
        }
    }
}

impl Default for Window {
    fn default() -> Self {
        Window::Last(1000)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::Last(n) => write!(f, "last {n} predictions"),
            Window::Minutes(n) => write!(f, "last {n} minutes"),
        }
    }
}

impl Window {
    /// `last:N` or `minutes:N` (the CLI's `--window`).
    pub fn parse(text: &str) -> Result<Window, String> {
        let (kind, n) = text.split_once([':', '=']).ok_or_else(|| format!("'{text}': use last:N or minutes:N"))?;
        let n: u64 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("'{text}': N must be a positive whole number"))?;
        match kind.trim() {
            "last" => Ok(Window::Last(n)),
            "minutes" => Ok(Window::Minutes(n)),
            other => Err(format!("'{other}' is not a window kind: use last:N or minutes:N")),
        }
    }
}

/// How a value is compared with a rule's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Comparator {
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
}

impl Comparator {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparator::Below => value < threshold,
            Comparator::AtMost => value <= threshold,
            Comparator::Above => value > threshold,
            Comparator::AtLeast => value >= threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::Below => "<",
            Comparator::AtMost => "<=",
            Comparator::Above => ">",
            Comparator::AtLeast => ">=",
        }
    }
}

/// The seed's severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// What a firing rule does besides alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Moves the alias of the deployment's primary arm back to its previous version.
    Rollback,
    /// Sends every request to the primary arm: the other arms keep weight 0.
    ZeroCanary,
    /// Starts a run of the rule's `pipeline` (`docs/pipelines.md`), which trains on the latest
    /// dataset version.
    Retrain,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Rollback => "rollback",
            Action::ZeroCanary => "zero_canary",
            Action::Retrain => "retrain",
        }
    }
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// A monitor value (`docs/monitoring.md` lists them), e.g. `accuracy`, `drift_share`,
    /// `drift_score.age`, `latency_p99_ms`.
    pub metric: String,
    pub op: Comparator,
    pub threshold: f64,
    /// The window of this rule (default: the configuration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Consecutive evaluations the condition must hold before the rule fires.
    #[serde(default = "one", rename = "for")]
    pub consecutive: u32,
    #[serde(default = "medium")]
    pub severity: Severity,
    /// Seconds after firing during which the rule does not fire again.
    #[serde(default = "ten_minutes")]
    pub cooldown_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The pipeline file a `retrain` action runs (an absolute path: the server runs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Fewest rows (labelled rows for performance and fairness) the window must hold for the
    /// rule to be judged.
    #[serde(default = "min_rows")]
    pub min_rows: u64,
}

fn one() -> u32 {
    1
}
fn medium() -> Severity {
    Severity::Medium
}
fn ten_minutes() -> u64 {
    600
}
fn min_rows() -> u64 {
    30
}
fn sixty() -> u64 {
    60
}

/// A webhook alerts are POSTed to as JSON.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// Attempts before giving up (with exponential backoff from 250 ms).
    #[serde(default = "attempts")]
    pub attempts: u32,
}

fn attempts() -> u32 {
    4
}

/// A deployment's monitors.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Format version; 1.
    pub monitors: u32,
    #[serde(default)]
    pub window: Window,
    /// Seconds between scheduled evaluations.
    #[serde(default = "sixty")]
    pub interval_seconds: u64,
    /// What the traffic is compared with: `training` (the default: the profile `shipyard train`
    /// stored of the primary version's training rows), `dataset:NAME[@VERSION]`, or a CSV or
    /// Parquet file the server can read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The column of the training data the model predicts (default: the run's `target`
    /// parameter), for prediction drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// An input column whose groups the fairness monitors compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive_column: Option<String>,
    /// The favourable label, for fairness (default: the second class, as scikit-learn's
    /// `pos_label=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_label: Option<String>,
    /// `calibrated` (the default) or `evidently`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_preset: Option<String>,
    /// The calibrated preset's bound on the share of calm evaluations in which any feature is
    /// flagged (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_alarm_rate: Option<f64>,
    /// The Evidently preset's p-value or distance threshold per feature (default: Evidently's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_threshold: Option<f64>,
    /// The confidence with which a rule on an estimate must see its threshold crossed
    /// (default 0.975; 0.5 judges the point estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default = "default_rules")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
}

/// The seed's `alert_thresholds`: `min_accuracy: 0.8`, `max_drift: 0.1`.
pub fn default_rules() -> Vec<Rule> {
    let rule = |name: &str, metric: &str, op, threshold, severity| Rule {
        name: name.to_owned(),
        metric: metric.to_owned(),
        op,
        threshold,
        window: None,
        consecutive: 1,
        severity,
        cooldown_seconds: ten_minutes(),
        action: None,
        pipeline: None,
        min_rows: min_rows(),
    };
    vec![
        rule("min_accuracy", "accuracy", Comparator::Below, 0.8, Severity::High),
        rule("max_drift", "drift_share", Comparator::Above, 0.1, Severity::Medium),
    ]
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            monitors: 1,
            window: Window::default(),
            interval_seconds: sixty(),
            reference: None,
            target: None,
            sensitive_column: None,
            positive_label: None,
            drift_preset: None,
            false_alarm_rate: None,
            drift_threshold: None,
            confidence: None,
            rules: default_rules(),
            webhooks: Vec::new(),
        }
    }
}

impl MonitorConfig {
    /// Parses and checks a configuration; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<MonitorConfig, ConfigError> {
        let fail = |message: String| ConfigError { origin: origin.to_owned(), message };
        let config: MonitorConfig =
            serde_norway::from_str(text).map_err(|e| fail(format!("not a valid monitor configuration: {e}")))?;
        if config.monitors != 1 {
            return Err(fail(format!("unsupported format `monitors: {}` (expected 1)", config.monitors)));
        }
        if config.interval_seconds == 0 {
            return Err(fail("interval_seconds must be at least 1".to_owned()));
        }
        for (i, w) in
            std::iter::once(&config.window).chain(config.rules.iter().filter_map(|r| r.window.as_ref())).enumerate()
        {
            if matches!(w, Window::Last(0) | Window::Minutes(0)) {
                return Err(fail(format!("window {i}: the size must be at least 1")));
            }
        }
        for (i, rule) in config.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return Err(fail(format!("rules[{i}]: give the rule a name")));
            }
            if config.rules[..i].iter().any(|r| r.name == rule.name) {
                return Err(fail(format!("rules[{i}]: the name '{}' is used twice", rule.name)));
            }
            if !rule.threshold.is_finite() {
                return Err(fail(format!("rules[{i}] ({}): the threshold must be a finite number", rule.name)));
            }
            match (rule.action, &rule.pipeline) {
                (Some(Action::Retrain), None) => {
                    return Err(fail(format!("rules[{i}] ({}): `action: retrain` needs `pipeline: FILE`", rule.name)));
                }
                (Some(Action::Retrain), Some(p)) if !std::path::Path::new(p).is_absolute() => {
                    return Err(fail(format!(
                        "rules[{i}] ({}): pipeline '{p}': give an absolute path (the server runs it)",
                        rule.name
                    )));
                }
                (action, Some(_)) if action != Some(Action::Retrain) => {
                    return Err(fail(format!("rules[{i}] ({}): `pipeline` is for `action: retrain`", rule.name)));
                }
                _ => {}
            }
            if !crate::window::is_metric(&rule.metric) {
                return Err(fail(format!(
                    "rules[{i}] ({}): '{}' is not a monitor value; known: {}",
                    rule.name,
                    rule.metric,
                    crate::window::METRICS.join(", ")
                )));
            }
            if rule.consecutive == 0 {
                return Err(fail(format!("rules[{i}] ({}): `for` must be at least 1", rule.name)));
            }
        }
        if let Some(rate) = config.false_alarm_rate
            && !(rate > 0.0 && rate < 0.5)
        {
            return Err(fail(format!("false_alarm_rate must be above 0 and below 0.5, got {rate}")));
        }
        if let Some(c) = config.confidence
            && !(0.5..1.0).contains(&c)
        {
            return Err(fail(format!("confidence must be at least 0.5 and below 1, got {c}")));
        }
        match (config.drift_preset.as_deref(), config.drift_threshold, config.false_alarm_rate) {
            (None | Some("calibrated" | "evidently"), _, _) => {}
            (Some(other), _, _) => {
                return Err(fail(format!("drift_preset '{other}': use calibrated (the default) or evidently")));
            }
        }
        if config.drift_preset.as_deref() == Some("calibrated") && config.drift_threshold.is_some() {
            return Err(fail(
                "drift_threshold is the evidently preset's; the calibrated preset takes false_alarm_rate".to_owned(),
            ));
        }
        if config.drift_preset.as_deref() == Some("evidently") && config.false_alarm_rate.is_some() {
            return Err(fail(
                "false_alarm_rate is the calibrated preset's; evidently takes drift_threshold".to_owned(),
            ));
        }
        for (i, hook) in config.webhooks.iter().enumerate() {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return Err(fail(format!("webhooks[{i}]: '{}' is not an http(s) URL", hook.url)));
            }
        }
        Ok(config)
    }

    /// How the windows' values are decided: the drift preset (calibrated unless `evidently` is
    /// named, or an Evidently `drift_threshold` is given without a preset) and the rules'
    /// confidence.
    pub fn judging(&self) -> Judging {
        let evidently = match self.drift_preset.as_deref() {
            Some(p) => p == "evidently",
            None => self.drift_threshold.is_some(),
        };
        let preset = if evidently {
            Preset::Evidently
        } else {
            Preset::Calibrated { alpha: self.false_alarm_rate.unwrap_or(DEFAULT_FALSE_ALARM_RATE) }
        };
        Judging {
            drift: DriftOptions { preset, threshold: self.drift_threshold, ..DriftOptions::default() },
            confidence: self.confidence.unwrap_or(DEFAULT_CONFIDENCE),
        }
    }

    /// The distinct windows the rules and the gauges need, the configuration's first.
    pub fn windows(&self) -> Vec<Window> {
        let mut out = vec![self.window];
        for w in self.rules.iter().filter_map(|r| r.window) {
            if !out.contains(&w) {
                out.push(w);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_empty_configuration_has_the_seeds_thresholds() {
        let c = MonitorConfig::from_yaml("monitors: 1\n", "m.yaml").unwrap();
        assert_eq!(c.rules, default_rules());
        assert_eq!(c.rules[0].threshold, 0.8);
        assert_eq!(c.rules[1].threshold, 0.1);
        assert_eq!(c.window, Window::Last(1000));
    }

    #[test]
    fn rules_windows_and_hooks_are_read() {
        let c = MonitorConfig::from_yaml(
            "monitors: 1\nwindow: {minutes: 30}\nrules:\n  - {name: d, metric: drift_share, op: '>=', threshold: 0.2, for: 3, window: {last: 50}, action: zero_canary}\nwebhooks: [{url: 'http://x/h'}]\n",
            "m.yaml",
        )
        .unwrap();
        assert_eq!(c.windows(), vec![Window::Minutes(30), Window::Last(50)]);
        let r = &c.rules[0];
        assert_eq!(
            (r.op, r.consecutive, r.action, r.severity),
            (Comparator::AtLeast, 3, Some(Action::ZeroCanary), Severity::Medium)
        );
        assert_eq!(c.webhooks[0].attempts, 4);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expect) in [
            ("monitors: 1\nrulez: []\n", "unknown field `rulez`"),
            ("monitors: 2\n", "unsupported format"),
            (
                "monitors: 1\nrules: [{name: a, metric: acuracy, op: '<', threshold: 1}]\n",
                "'acuracy' is not a monitor value",
            ),
            ("monitors: 1\nrules: [{name: a, metric: accuracy, op: '=', threshold: 1}]\n", "line 2"),
            ("monitors: 1\nwebhooks: [{url: 'ftp://x'}]\n", "not an http(s) URL"),
            (
                "monitors: 1\nrules: [{name: a, metric: accuracy, op: '<', threshold: 1, action: retrain}]\n",
                "`action: retrain` needs `pipeline: FILE`",
            ),
            (
                "monitors: 1\nrules: [{name: a, metric: accuracy, op: '<', threshold: 1, action: retrain, pipeline: p.yaml}]\n",
                "give an absolute path",
            ),
            (
                "monitors: 1\nrules: [{name: a, metric: accuracy, op: '<', threshold: 1, action: rollback, pipeline: /p.yaml}]\n",
                "`pipeline` is for `action: retrain`",
            ),
        ] {
            let e = MonitorConfig::from_yaml(text, "m.yaml").unwrap_err().to_string();
            assert!(e.contains(expect) && e.starts_with("m.yaml"), "{text}: {e}");
        }
    }

    #[test]
    fn windows_parse_from_the_command_line() {
        assert_eq!(Window::parse("last:500"), Ok(Window::Last(500)));
        assert_eq!(Window::parse("minutes=15"), Ok(Window::Minutes(15)));
        assert!(Window::parse("last:0").is_err());
        assert!(Window::parse("hours:1").is_err());
    }
}
