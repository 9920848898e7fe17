//! Every model kind on synthetic problems: it learns (held-out scores above a bar), it is
//! deterministic for a seed, and it survives a save/load round trip with identical predictions.

use std::sync::atomic::AtomicBool;

use shipyard_train::evaluate::evaluate;
use shipyard_train::frame::{FeatureSpec, Features, InputType, MISSING_CODE, Target, Task, Values};
use shipyard_train::params::{ModelKind, Params};
use shipyard_train::split::train_test_split;
use shipyard_train::{Control, Model};

/// A small LCG so the data needs no extra crate and is the same everywhere.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Two numeric features (one with missing values), one categorical; classes from a nonlinear rule.
fn data(rows: usize, classes: usize) -> (Features, Target, Vec<f64>) {
    let mut rng = Lcg(7);
    let (mut x1, mut x2, mut codes, mut labels, mut values) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rows {
        let a = rng.next() * 4.0 - 2.0;
        let b = rng.next() * 4.0 - 2.0;
        let c = (rng.next() * 3.0) as u32;
        let score = a * a - b + [0.8, -0.8, 0.0][c as usize] + 0.3 * (rng.next() - 0.5);
        x1.push(if rng.next() < 0.1 { f64::NAN } else { a });
        x2.push(b);
        codes.push(if rng.next() < 0.05 { MISSING_CODE } else { c });
        let class =
            if classes == 2 { usize::from(score > 0.5) } else { ((score + 2.0).clamp(0.0, 5.99) / 2.0) as usize };
        labels.push(class);
        values.push(score);
    }
    let features = Features {
        specs: vec![
            FeatureSpec { name: "a".into(), input_type: InputType::Double },
            FeatureSpec { name: "b".into(), input_type: InputType::Double },
            FeatureSpec { name: "c".into(), input_type: InputType::String },
        ],
        columns: vec![
            Values::Numeric(x1),
            Values::Numeric(x2),
            Values::Categorical { codes, levels: vec!["red".into(), "green".into(), "blue".into()] },
        ],
        rows,
    };
    let names = (0..classes).map(|c| format!("k{c}")).collect();
    (features, Target::Classes { codes: labels, labels: names }, values)
}

fn fit(kind: ModelKind, task: Task, params: &[(&str, &str)], f: &Features, t: &Target) -> Model {
    let given: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let params = Params::resolve(kind, task, &given).expect("params");
    let cancel = AtomicBool::new(false);
    let control = Control { progress: &|_, _| {}, cancel: &cancel };
    shipyard_train::model::train(kind, &params, f, t, "y", 3, &control).expect("train")
}

fn score(kind: ModelKind, params: &[(&str, &str)], classes: usize, regression: bool) -> (f64, Model, Features) {
    let (features, classes_target, values) = data(3000, classes);
    let target = if regression { Target::Values(values) } else { classes_target };
    let split = train_test_split(&target, 0.25, 1).expect("split");
    let (train_f, test_f) = (features.take(&split.train), features.take(&split.test));
    let task = target.task();
    let model = fit(kind, task, params, &train_f, &target.take(&split.train));
    let eval = evaluate(&model, &test_f, &target.take(&split.test)).expect("evaluate");
    let metric = if regression { "r2" } else { "accuracy" };
    let value = eval.metrics.iter().find(|(k, _)| k == metric).map(|(_, v)| *v).expect("metric");
    (value, model, test_f)
}

#[test]
fn every_kind_learns_the_problem() {
    // Kind, parameters, classes (0: regression), regression, the score to beat.
    type Case = (ModelKind, &'static [(&'static str, &'static str)], usize, bool, f64);
    let cases: &[Case] = &[
        (ModelKind::LogisticRegression, &[], 2, false, 0.70),
        (ModelKind::LogisticRegression, &[], 3, false, 0.60),
        (ModelKind::LinearRegression, &[], 0, true, 0.40),
        (ModelKind::DecisionTree, &[("max_depth", "8")], 2, false, 0.88),
        (ModelKind::DecisionTree, &[], 0, true, 0.75),
        (ModelKind::RandomForest, &[("n_estimators", "30")], 2, false, 0.90),
        (ModelKind::RandomForest, &[("n_estimators", "30")], 3, false, 0.85),
        (ModelKind::RandomForest, &[("n_estimators", "30")], 0, true, 0.85),
        (ModelKind::GradientBoosting, &[], 2, false, 0.92),
        (ModelKind::GradientBoosting, &[], 3, false, 0.88),
        (ModelKind::GradientBoosting, &[], 0, true, 0.88),
    ];
    for &(kind, params, classes, regression, bar) in cases {
        let (value, ..) = score(kind, params, classes, regression);
        assert!(value > bar, "{kind} classes={classes} regression={regression}: {value} <= {bar}");
    }
}

#[test]
fn training_is_deterministic_and_models_round_trip() {
    for kind in ModelKind::ALL {
        let regression = kind == ModelKind::LinearRegression;
        let params: &[(&str, &str)] = if kind == ModelKind::RandomForest { &[("n_estimators", "10")] } else { &[] };
        let (_, a, test) = score(kind, params, 3, regression);
        let (_, b, _) = score(kind, params, 3, regression);
        let json = serde_json::to_string(&a).expect("serialise");
        assert_eq!(json, serde_json::to_string(&b).expect("serialise"), "{kind} is not deterministic");
        let loaded = Model::from_json(&json).expect("load");
        assert_eq!(loaded.predict(&test).expect("predict"), a.predict(&test).expect("predict"), "{kind}");
        let total: f64 = a.feature_importances.iter().sum();
        assert!((total - 1.0).abs() < 1e-9, "{kind} importances sum to {total}");
    }
}

#[test]
fn loading_rejects_inconsistent_files() {
    let (_, model, _) = score(ModelKind::DecisionTree, &[("max_depth", "3")], 2, false);
    let mut json: serde_json::Value = serde_json::to_value(&model).expect("value");
    json["body"]["ensemble"]["trees"][0]["left"][0] = serde_json::json!(0u32.wrapping_sub(1) as u64 / 2);
    let err = Model::from_json(&json.to_string()).expect_err("bad tree").to_string();
    assert!(err.contains("tree 0"), "{err}");
    json["format_version"] = serde_json::json!(99);
    assert!(Model::from_json(&json.to_string()).is_err());
    assert!(Model::from_json("{}").is_err());
}
