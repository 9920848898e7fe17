//! Alert rules over monitor values: a condition must hold for `for` consecutive evaluations,
//! then the rule fires once and stays quiet for its cooldown.

use shipyard_core::display::number;

use crate::config::Rule;

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

/// Judges `rule` on `value`, with `rows` the rows it was computed from (labelled rows for
/// performance and fairness values), at `now` (milliseconds).
pub fn judge(rule: &Rule, value: Option<f64>, rows: u64, state: &mut RuleState, now: i64) -> Verdict {
    let Some(value) = value else {
        return Verdict::NotJudged(format!("no value of {} in this window", rule.metric));
    };
    if rows < rule.min_rows {
        return Verdict::NotJudged(format!("{rows} rows, fewer than the rule's min_rows {}", rule.min_rows));
    }
    if !rule.op.holds(value, rule.threshold) {
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
    Verdict::Fire {
        value,
        message: format!(
            "{} = {} {} {}{evaluations} (rule '{}', {})",
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
    use crate::config::{Comparator, Severity};

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
        assert_eq!(judge(&r, Some(0.7), 100, &mut s, 0), Verdict::Holding { consecutive: 1, cooling_down: false });
        let Verdict::Fire { value, message } = judge(&r, Some(0.6), 100, &mut s, 1_000) else { panic!() };
        assert_eq!(value, 0.6);
        assert_eq!(message, "accuracy = 0.6 < 0.8 for 2 evaluations (rule 'acc', high)");
        judge(&r, Some(0.6), 100, &mut s, 2_000);
        assert_eq!(judge(&r, Some(0.6), 100, &mut s, 3_000), Verdict::Holding { consecutive: 2, cooling_down: true });
        assert!(matches!(judge(&r, Some(0.6), 100, &mut s, 61_001), Verdict::Fire { .. }));
    }

    #[test]
    fn a_clear_evaluation_restarts_the_count_and_missing_data_does_not() {
        let r = rule(2, 0);
        let mut s = RuleState::default();
        judge(&r, Some(0.7), 100, &mut s, 0);
        assert!(matches!(judge(&r, None, 100, &mut s, 1), Verdict::NotJudged(_)));
        assert!(matches!(judge(&r, Some(0.7), 5, &mut s, 2), Verdict::NotJudged(_)));
        assert_eq!(s.consecutive, 1);
        assert_eq!(judge(&r, Some(0.9), 100, &mut s, 3), Verdict::Clear);
        assert_eq!(s.consecutive, 0);
    }
}
