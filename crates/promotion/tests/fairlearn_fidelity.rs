//! The fairness metrics against fairlearn 0.13 on the committed fixtures
//! (`fixtures/make_fairlearn_fixtures.py`).
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use shipyard_promotion::fairness;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn fairness_metrics_equal_fairlearn() {
    let text = include_str!("fixtures/fairlearn.json");
    let fixtures: Value = serde_json::from_str(text).unwrap();
    let cases = fixtures["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let strings = |key: &str| -> Vec<String> {
            case[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        let (actual, predicted, groups) = (strings("actual"), strings("predicted"), strings("groups"));
        let actual: Vec<&str> = actual.iter().map(String::as_str).collect();
        let predicted: Vec<&str> = predicted.iter().map(String::as_str).collect();
        let groups: Vec<Option<&str>> = groups.iter().map(|g| Some(g.as_str())).collect();
        let positive = case["positive_label"].as_str().unwrap();
        let r = fairness::assess(&actual, &predicted, &groups, positive).unwrap();
        let expect = |key: &str| case[key].as_f64().unwrap();
        assert!(
            close(r.demographic_parity_difference, expect("demographic_parity_difference")),
            "{name}: demographic parity difference {} vs fairlearn {}",
            r.demographic_parity_difference,
            expect("demographic_parity_difference")
        );
        assert!(
            close(r.equal_opportunity_difference, expect("equal_opportunity_difference")),
            "{name}: equal opportunity difference {} vs fairlearn {}",
            r.equal_opportunity_difference,
            expect("equal_opportunity_difference")
        );
        match (r.disparate_impact_ratio, case["disparate_impact_ratio"].as_f64()) {
            (Some(a), Some(b)) => assert!(close(a, b), "{name}: disparate impact {a} vs fairlearn {b}"),
            (a, b) => assert_eq!(a, b, "{name}: disparate impact"),
        }
    }
}
