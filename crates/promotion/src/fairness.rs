//! Group fairness of a classifier's answers, with fairlearn's definitions (`fairlearn.metrics`
//! 0.13, with its default `method="between_groups"`).
//!
//! For each group of the sensitive column:
//! - selection rate: the share of rows predicted as the positive label;
//! - true positive rate: predicted positive among the rows whose true label is positive; 0 for a
//!   group with no positive rows (fairlearn's `zero_division` default).
//!
//! Then, across groups:
//! - demographic parity difference: largest minus smallest selection rate;
//! - equal opportunity difference: largest minus smallest true positive rate;
//! - disparate impact ratio (fairlearn's `demographic_parity_ratio`): smallest over largest
//!   selection rate; undefined when no group has a selected row.
//!
//! `tests/fairlearn_fidelity.rs` checks these against fairlearn on committed fixtures.

use std::collections::BTreeMap;

use serde::Serialize;

/// One group's counts and rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRates {
    pub group: String,
    pub rows: u64,
    pub selected: u64,
    pub positives: u64,
    pub true_positives: u64,
    pub selection_rate: f64,
    pub true_positive_rate: f64,
}

/// The fairness of one set of answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FairnessReport {
    pub positive_label: String,
    /// Groups in label order; missing sensitive values form the group `(missing)`.
    pub groups: Vec<GroupRates>,
    pub demographic_parity_difference: f64,
    pub equal_opportunity_difference: f64,
    pub disparate_impact_ratio: Option<f64>,
}

/// The group name of rows whose sensitive value is missing.
pub const MISSING_GROUP: &str = "(missing)";

/// Computes the rates per group. The three slices have one entry per row; `None` groups are
/// [`MISSING_GROUP`]. Returns `None` when there are no rows.
pub fn assess(
    actual: &[&str],
    predicted: &[&str],
    groups: &[Option<&str>],
    positive_label: &str,
) -> Option<FairnessReport> {
    if actual.is_empty() || actual.len() != predicted.len() || actual.len() != groups.len() {
        return None;
    }
    #[derive(Default)]
    struct Counts {
        rows: u64,
        selected: u64,
        positives: u64,
        true_positives: u64,
    }
    let mut by_group: BTreeMap<&str, Counts> = BTreeMap::new();
    for ((a, p), g) in actual.iter().zip(predicted).zip(groups) {
        let c = by_group.entry(g.unwrap_or(MISSING_GROUP)).or_default();
        let selected = *p == positive_label;
        let positive = *a == positive_label;
        c.rows += 1;
        c.selected += u64::from(selected);
        c.positives += u64::from(positive);
        c.true_positives += u64::from(selected && positive);
    }
    let ratio = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let groups: Vec<GroupRates> = by_group
        .into_iter()
        .map(|(g, c)| GroupRates {
            group: g.to_owned(),
            rows: c.rows,
            selected: c.selected,
            positives: c.positives,
            true_positives: c.true_positives,
            selection_rate: ratio(c.selected, c.rows),
            true_positive_rate: ratio(c.true_positives, c.positives),
        })
        .collect();
    let spread = |f: fn(&GroupRates) -> f64| {
        let values = groups.iter().map(f);
        let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
        let min = values.fold(f64::INFINITY, f64::min);
        (min, max)
    };
    let (sel_min, sel_max) = spread(|g| g.selection_rate);
    let (tpr_min, tpr_max) = spread(|g| g.true_positive_rate);
    Some(FairnessReport {
        positive_label: positive_label.to_owned(),
        groups,
        demographic_parity_difference: sel_max - sel_min,
        equal_opportunity_difference: tpr_max - tpr_min,
        disparate_impact_ratio: (sel_max > 0.0).then(|| sel_min / sel_max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_without_positives_has_a_zero_true_positive_rate() {
        let actual = ["1", "1", "0", "0", "0", "0"];
        let predicted = ["1", "0", "1", "0", "0", "1"];
        let groups = [Some("a"), Some("a"), Some("a"), Some("b"), Some("b"), Some("b")];
        let r = assess(&actual, &predicted, &groups, "1").expect("rows");
        // fairlearn 0.13 on these rows: 0.5, 1/3, 0.5.
        assert_eq!(r.equal_opportunity_difference, 0.5);
        assert!((r.demographic_parity_difference - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(r.disparate_impact_ratio, Some(0.5));
        assert_eq!(r.groups[1].positives, 0);
    }
}
