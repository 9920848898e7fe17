//! Fidelity: every evaluation metric equals scikit-learn's to 1e-9 relative on the committed
//! fixtures (`tests/fixtures/make_sklearn_fixtures.py`, scikit-learn as pinned in
//! `tests/interop/requirements.txt`).

use serde_json::Value;
use shipyard_train::metrics;

const FIXTURES: &str = include_str!("fixtures/sklearn_metrics.json");

fn close(got: f64, want: f64) -> bool {
    if want == 0.0 { got.abs() < 1e-12 } else { ((got - want) / want).abs() <= 1e-9 }
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("label") as usize).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

#[test]
fn classification_metrics_equal_sklearn() {
    let fx: Value = serde_json::from_str(FIXTURES).expect("fixtures");
    let mut failures = Vec::new();
    for case in fx["classification"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let k = case["n_classes"].as_u64().expect("k") as usize;
        let proba: Vec<Vec<f64>> = case["proba"].as_array().expect("proba").iter().map(floats).collect();
        let got = metrics::classification(&usizes(&case["y_true"]), &usizes(&case["y_pred"]), Some(&proba), k);
        let want = &case["expected"];
        let got_json = serde_json::to_value(&got).expect("serialise");
        for key in shipyard_train::evaluate::CLASSIFICATION_METRICS {
            match (got_json[key].as_f64(), want[key].as_f64()) {
                (Some(g), Some(w)) if close(g, w) => {}
                (None, None) => {}
                (g, w) => failures.push(format!("{name}: {key}: got {g:?}, scikit-learn {w:?}")),
            }
        }
        assert_eq!(got_json["confusion_matrix"], want["confusion_matrix"], "{name}");
        assert_eq!(got_json["confusion_labels"], want["confusion_labels"], "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn regression_metrics_equal_sklearn() {
    let fx: Value = serde_json::from_str(FIXTURES).expect("fixtures");
    for case in fx["regression"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let got = metrics::regression(&floats(&case["y_true"]), &floats(&case["y_pred"]));
        let want = &case["expected"];
        for (key, g) in [("rmse", got.rmse), ("mae", got.mae), ("r2", got.r2), ("mape", got.mape)] {
            let w = want[key].as_f64().expect("number");
            assert!(close(g, w), "{name}: {key}: got {g}, scikit-learn {w}");
        }
    }
}
