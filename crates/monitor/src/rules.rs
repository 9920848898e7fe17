//! Alert rules over monitor values: a condition must hold for `for` consecutive evaluations,
//! then the rule fires once and stays quiet for its cooldown. On a value that is an estimate
//! with confidence bounds (`crate::intervals`), the condition is that the bound on the healthy
//! side has crossed the threshold: `accuracy < 0.8` holds when the upper bound is below 0.8.

use shipyard_core::display::number;

use crate::config::{Comparator, Rule};
use crate::intervals::Interval;

/// What one rule remembers between evaluations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleState {
    /// Consecutive evaluations the condition has held.
    pub consecutive: u32,
    /// When the rule last fired (milliseconds).
    pub last_fired: Option<i64>,
}

/// One rule's verdict on one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Too little data, or the value could not be computed: the count is left as it was.
    NotJudged(String),
    /// The condition does not hold: the count starts again.
    Clear,
    /// The condition holds, but not yet long enough, or the rule is cooling down.
    Holding { consecutive: u32, cooling_down: bool },
    /// The rule fires.
    Fire { value: f64, message: String },
}

/// Judges `rule` on `value` (with its confidence bounds, when it is an estimate), with `rows`
/// the rows it was computed from (labelled rows for performance and fairness values), at `now`
/// (milliseconds).
pub fn judge(
    rule: &Rule,
    value: Option<f64>,
    interval: Option<&Interval>,
    rows: u64,
    state: &mut RuleState,
    now: i64,
) -> Verdict {
    let Some(value) = value else {
        return Verdict::NotJudged(format!("no value of {} in this window", rule.metric));
    };
    if rows < rule.min_rows {
        return Verdict::NotJudged(format!("{rows} rows, fewer than the rule's min_rows {}", rule.min_rows));
    }
    // The bound that must cross: the upper one for a rule on a value falling below its
    // threshold, the lower one for a value rising above it.
    let judged = match (interval, rule.op) {
        (Some(i), Comparator::Below | Comparator::AtMost) => i.hi,
        (Some(i), Comparator::Above | Comparator::AtLeast) => i.lo,
        (None, _) => value,
    };
    if !rule.op.holds(judged, rule.threshold) {
        state.consecutive = 0;
        return Verdict::Clear;
    }
    state.consecutive = state.consecutive.saturating_add(1);
    let cooldown_ms = i64::try_from(rule.cooldown_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let cooling_down = state.last_fired.is_some_and(|t| now.saturating_sub(t) < cooldown_ms);
    if state.consecutive < rule.consecutive || cooling_down {
        return Verdict::Holding { consecutive: state.consecutive, cooling_down };
    }
    state.last_fired = Some(now);
    state.consecutive = 0;
    let evaluations =
        if rule.consecutive > 1 { format!(" for {} evaluations", rule.consecutive) } else { String::new() };
    let bound = match interval {
        Some(i) => format!(
            " (its {} bound at {}% confidence: {})",
            if judged == i.hi { "upper" } else { "lower" },
            number(i.confidence * 100.0),
            number(judged)
        ),
        None => String::new(),
    };
    Verdict::Fire {
        value,
        message: format!(
            "{} = {}{bound} {} {}{evaluations} (rule '{}', {})",
            rule.metric,
            number(value),
            rule.op.as_str(),
            number(rule.threshold),
            rule.name,
            rule.severity.as_str()
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Severity;

    fn rule(consecutive: u32, cooldown_seconds: u64) -> Rule {
        Rule {
            name: "acc".into(),
            metric: "accuracy".into(),
            op: Comparator::Below,
            threshold: 0.8,
            window: None,
            consecutive,
            severity: Severity::High,
            cooldown_seconds,
            action: None,
            pipeline: None,
            min_rows: 10,
        }
    }

    #[test]
    fn a_rule_fires_after_its_consecutive_evaluations_then_cools_down() {
        let r = rule(2, 60);
        let mut s = RuleState::default();
        assert_eq!(
            judge(&r, Some(0.7), None, 100, &mut s, 0),
            Verdict::Holding { consecutive: 1, cooling_down: false }
        );
        let Verdict::Fire { value, message } = judge(&r, Some(0.6), None, 100, &mut s, 1_000) else { panic!() };
        assert_eq!(value, 0.6);
        assert_eq!(message, "accuracy = 0.6 < 0.8 for 2 evaluations (rule 'acc', high)");
        judge(&r, Some(0.6), None, 100, &mut s, 2_000);
        assert_eq!(
            judge(&r, Some(0.6), None, 100, &mut s, 3_000),
            Verdict::Holding { consecutive: 2, cooling_down: true }
        );
        assert!(matches!(judge(&r, Some(0.6), None, 100, &mut s, 61_001), Verdict::Fire { .. }));
    }

    #[test]
    fn a_clear_evaluation_restarts_the_count_and_missing_data_does_not() {
        let r = rule(2, 0);
        let mut s = RuleState::default();
        judge(&r, Some(0.7), None, 100, &mut s, 0);
        assert!(matches!(judge(&r, None, None, 100, &mut s, 1), Verdict::NotJudged(_)));
        assert!(matches!(judge(&r, Some(0.7), None, 5, &mut s, 2), Verdict::NotJudged(_)));
        assert_eq!(s.consecutive, 1);
        assert_eq!(judge(&r, Some(0.9), None, 100, &mut s, 3), Verdict::Clear);
        assert_eq!(s.consecutive, 0);
    }

    #[test]
    fn an_estimate_fires_only_when_its_bound_crosses_the_threshold() {
        let r = rule(1, 0);
        let mut s = RuleState::default();
        // 0.77 measured, but the upper bound 0.83 is above 0.8: not shown to be below.
        let wide = Interval { lo: 0.71, hi: 0.83, confidence: 0.95, method: "wilson" };
        assert_eq!(judge(&r, Some(0.77), Some(&wide), 100, &mut s, 0), Verdict::Clear);
        let narrow = Interval { lo: 0.74, hi: 0.79, confidence: 0.95, method: "wilson" };
        let Verdict::Fire { value, message } = judge(&r, Some(0.765), Some(&narrow), 1000, &mut s, 1) else { panic!() };
        assert_eq!(value, 0.765);
        assert_eq!(message, "accuracy = 0.765 (its upper bound at 95% confidence: 0.79) < 0.8 (rule 'acc', high)");
    }
}
