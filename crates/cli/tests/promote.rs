//! Promotion end to end through the binary: each gate passing and failing on its own, reports
//! stored with the version, promotion blocked by a failing gate, `--force` recorded, rollback,
//! history, and bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use common::{shipyard, stderr, stdout, table};

/// A home with `churn` versions 1 (logistic), 2 (logistic, other seed), 3 (a one-split tree)
/// and 4 (logistic without `income`), built once and copied per test.
struct Fixture {
    dir: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::write(dir.join("train.csv"), table(2000, 1, 0.0)).unwrap();
        std::fs::write(dir.join("eval.csv"), table(600, 2, 0.0)).unwrap();
        std::fs::write(dir.join("drifted.csv"), table(600, 3, 1.0)).unwrap();
        let home = dir.join("home");
        let train = dir.join("train.csv");
        let train = train.to_str().unwrap();
        for extra in [
            vec!["--model", "logistic_regression"],
            vec!["--model", "logistic_regression", "--seed", "7"],
            vec!["--model", "decision_tree", "--param", "max_depth=1"],
            vec!["--model", "logistic_regression", "--exclude", "income"],
        ] {
            let mut args = vec!["train", "--data", train, "--target", "y", "--register", "churn"];
            args.extend(extra);
            let out = shipyard(&home, &args);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        Fixture { dir }
    })
}

/// A fresh copy of the fixture's home, and the folder with the tables.
fn home() -> (tempfile::TempDir, PathBuf) {
    let f = fixture();
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-r").arg(f.dir.join("home")).arg(copy.path()).status().unwrap();
    assert!(status.success());
    (copy, f.dir.clone())
}

fn write_policy(dir: &Path, name: &str, body: &str, data: &Path) -> PathBuf {
    let path = dir.join(name);
    let text = format!("gates: 1\nevaluation: {{data: '{}', target: y}}\n{body}", data.display());
    std::fs::write(&path, text).unwrap();
    path
}

/// `models validate` with a policy: exit code and the JSON report.
fn validate(home: &Path, version: &str, policy: &Path, extra: &[&str]) -> (i32, Value) {
    let uri = format!("models:/churn/{version}");
    let mut args = vec!["models", "validate", &uri, "--policy", policy.to_str().unwrap(), "--format", "json"];
    args.extend(extra);
    let out = shipyard(home, &args);
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 1, "{}", stderr(&out));
    (code, serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out))))
}

fn only_check(report: &Value) -> &Value {
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{report}");
    &checks[0]
}

fn force_production(home: &Path, version: &str) {
    let out = shipyard(home, &["models", "promote", "churn", "--version", version, "--force", "--reason", "setup"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn each_gate_passes_and_fails_on_its_own() {
    let (tmp, tables) = home();
    let home = tmp.path().join("home");
    let eval = tables.join("eval.csv");
    let cases: [(&str, &str, &str, bool); 8] = [
        ("metric", "metrics: {accuracy: {min: 0.6}}\n", "1", true),
        ("metric", "metrics: {accuracy: {min: 0.999}}\n", "1", false),
        ("metric", "metrics: {no_such_metric: {max: 1}}\n", "1", false),
        ("latency", "latency: {max_p99_ms: 1000, repeat: 200}\n", "1", true),
        ("latency", "latency: {max_p99_ms: 0.000001, repeat: 200}\n", "1", false),
        ("fairness", "fairness: {sensitive_column: group, max_demographic_parity_difference: 1}\n", "1", true),
        ("fairness", "fairness: {sensitive_column: group, max_demographic_parity_difference: 0}\n", "1", false),
        ("drift", "drift: {}\n", "1", true),
    ];
    for (i, (gate, body, version, pass)) in cases.iter().enumerate() {
        let policy = write_policy(tmp.path(), &format!("p{i}.yaml"), body, &eval);
        let (code, report) = validate(&home, version, &policy, &[]);
        let check = only_check(&report);
        assert_eq!(check["gate"], *gate, "{report}");
        assert_eq!(check["passed"], Value::Bool(*pass), "case {i}: {report}");
        assert_eq!(code, if *pass { 0 } else { 1 }, "case {i}");
        assert_eq!(report["passed"], Value::Bool(*pass));
        if check["observed"].is_null() {
            assert!(check["detail"].as_str().unwrap().contains("no metric 'no_such_metric'"), "{check}");
        }
    }
    // The training profile is the drift reference: shifted rows drift.
    let policy = write_policy(tmp.path(), "drift.yaml", "drift: {}\n", &eval);
    let (code, report) = validate(&home, "1", &policy, &["--data", tables.join("drifted.csv").to_str().unwrap()]);
    assert_eq!(code, 1);
    let check = only_check(&report);
    assert_eq!(check["observed"].as_f64(), Some(2.0 / 3.0), "age and income drift, group does not: {check}");
    assert!(check["detail"].as_str().unwrap().contains("age, income"), "{check}");

    // Champion and signature compare with the version holding `production`.
    let champion_ok = write_policy(tmp.path(), "c1.yaml", "champion: {tolerance: 0.05}\n", &eval);
    let (_, report) = validate(&home, "2", &champion_ok, &[]);
    assert_eq!(only_check(&report)["passed"], true, "no champion yet: {report}");
    force_production(&home, "1");
    let (code, report) = validate(&home, "2", &champion_ok, &[]);
    assert_eq!((code, &report["champion"]["version"]), (0, &Value::from("1")), "{report}");
    let champion_strict = write_policy(tmp.path(), "c2.yaml", "champion: {metric: accuracy}\n", &eval);
    let (code, report) = validate(&home, "3", &champion_strict, &[]);
    let check = only_check(&report);
    assert_eq!(code, 1, "a one-split tree loses to the logistic champion: {report}");
    assert!(check["detail"].as_str().unwrap().contains("champion version 1"), "{check}");
    let signature = write_policy(tmp.path(), "s.yaml", "signature: {}\n", &eval);
    assert_eq!(validate(&home, "2", &signature, &[]).0, 0);
    let (code, report) = validate(&home, "4", &signature, &[]);
    assert_eq!(code, 1);
    let detail = only_check(&report)["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("the champion takes column 'income'"), "{detail}");

    // The report is stored under the version's run, and named in the answer.
    let uri = report["report_uri"].as_str().unwrap();
    let (run, file) = uri.strip_prefix("runs:/").unwrap().split_once('/').unwrap();
    let stored = home.join("artifacts").join("0").join(run).join("artifacts").join(file);
    let stored: Value = serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!((stored["version"].as_str(), stored["passed"].as_bool()), (Some("4"), Some(false)));
}

#[test]
fn promotion_is_gated_forced_recorded_and_rolled_back() {
    let (tmp, tables) = home();
    let home = tmp.path().join("home");
    let eval = tables.join("eval.csv");
    let policy = write_policy(
        tmp.path(),
        "gates.yaml",
        "metrics: {accuracy: {min: 0.6}}\nchampion: {tolerance: 0.02}\nsignature: {}\n",
        &eval,
    );
    let policy = policy.to_str().unwrap();
    let promote = |version: &str, extra: &[&str]| {
        let mut args = vec!["models", "promote", "churn", "--version", version, "--policy", policy];
        args.extend(extra);
        shipyard(&home, &args)
    };
    let first = promote("1", &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("churn@production: (unset) -> version 1 (promote"), "{}", stdout(&first));
    // Version 3 loses to the champion: blocked, the alias stays.
    let blocked = promote("3", &[]);
    assert_eq!(blocked.status.code(), Some(1));
    assert!(stderr(&blocked).contains("champion:accuracy_vs_champion"), "{}", stderr(&blocked));
    assert!(stderr(&blocked).contains("stays at version 1"));
    // --force needs a reason; with one, the move is made and recorded as forced.
    let no_reason = promote("3", &["--force"]);
    assert_eq!(no_reason.status.code(), Some(2));
    let forced = promote("3", &["--force", "--reason", "hotfix for ticket 12"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let passing = promote("2", &[]);
    assert!(passing.status.success(), "{}", stderr(&passing));
    // Rollback walks back: 2 -> 3 -> 1, then there is nothing earlier.
    for expected in ["3", "1"] {
        let out = shipyard(&home, &["models", "rollback", "churn", "--reason", "bad canary", "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let moved: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(moved["to_version"], expected);
    }
    let none = shipyard(&home, &["models", "rollback", "churn"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("no earlier version"), "{}", stderr(&none));

    let out = shipyard(&home, &["models", "history", "churn", "--format", "json"]);
    let history: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let moves = history.as_array().unwrap();
    let summary: Vec<(String, String, String)> = moves
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or("-").to_owned();
            (s("kind"), s("from_version"), s("to_version"))
        })
        .collect();
    let expected = [
        ("promote", "-", "1"),
        ("force", "1", "3"),
        ("promote", "3", "2"),
        ("rollback", "2", "3"),
        ("rollback", "3", "1"),
    ];
    assert_eq!(summary, expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())));
    assert_eq!(moves[1]["reason"], "hotfix for ticket 12");
    assert_eq!(moves[1]["gate_report"]["passed"], false, "the failed report is kept with the forced move");
    assert_eq!(moves[2]["gate_report"]["passed"], true);
    assert!(moves.iter().all(|m| m["actor"] == "tester"));
    let table = stdout(&shipyard(&home, &["models", "history", "churn"]));
    assert!(table.contains("failed (champion:accuracy_vs_champion)") && table.contains("hotfix"), "{table}");

    // Bad input: each is a clear error, exit 2, and nothing moves.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "gates: 1\nmetrics:\n  accuracy: {minimum: 0.8}\n").unwrap();
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["models", "promote", "churn", "--version", "2", "--policy", bad.to_str().unwrap()], "line 3"),
        (vec!["models", "promote", "churn", "--version", "9", "--policy", policy], "version=9"),
        (vec!["models", "promote", "nope", "--version", "1", "--policy", policy], "name=nope not found"),
        (vec!["models", "promote", "churn", "--version", "2"], "no gate policy"),
        (vec!["models", "rollback", "churn", "--alias", "staging"], "no alias 'staging'"),
    ];
    for (args, message) in cases {
        let out = shipyard(&home, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    // A stored policy is used when none is given.
    let stored = shipyard(&home, &["models", "set-policy", "churn", "--policy", policy]);
    assert!(stored.status.success(), "{}", stderr(&stored));
    let with_stored = shipyard(&home, &["models", "promote", "churn", "--version", "2"]);
    assert!(with_stored.status.success(), "{}", stderr(&with_stored));
    let history: Value =
        serde_json::from_str(&stdout(&shipyard(&home, &["models", "history", "churn", "--format", "json"]))).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 6);
}
