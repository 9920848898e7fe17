//! The README's promotion flow, pasted as a new user would: the `shipyard` lines of the
//! section's first two blocks, run in order from the repository root on a fresh home.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// The `shipyard ...` lines from the promotion section up to the block the README test marker
/// names, with trailing comments removed.
fn flow(readme: &str) -> Vec<String> {
    let start = readme.find("### Promotion: gates, canary, rollback").expect("the promotion section");
    let marker = readme[start..].find("crates/cli/tests/readme.rs").expect("the test marker") + start;
    let end = readme[marker..].find("\n```\n").expect("the end of the marked block") + marker;
    let mut in_block = false;
    let mut lines = Vec::new();
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            in_block = !in_block;
        } else if in_block && line.starts_with("shipyard ") {
            lines.push(line.split("  #").next().unwrap().trim().to_owned());
        }
    }
    lines
}

/// Splits a command line into words, keeping "quoted phrases" whole.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, part) in line.split('"').enumerate() {
        if i % 2 == 1 {
            out.push(part.to_owned());
        } else {
            out.extend(part.split_whitespace().map(str::to_owned));
        }
    }
    out
}

#[test]
fn the_readme_promotion_flow_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = flow(&readme);
    assert_eq!(lines.len(), 7, "two training lines and the five-command flow: {lines:#?}");
    let home = tempfile::tempdir().unwrap();
    for line in &lines {
        let args = words(line);
        let out = Command::new(env!("CARGO_BIN_EXE_shipyard"))
            .args(&args[1..])
            .current_dir(&root)
            .env("SHIPYARD_HOME", home.path())
            .env_remove("SHIPYARD_TRACKING_URI")
            .env_remove("SHIPYARD_ARTIFACTS_DESTINATION")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let history = Command::new(env!("CARGO_BIN_EXE_shipyard"))
        .args(["models", "history", "churn", "--format", "json"])
        .env("SHIPYARD_HOME", home.path())
        .env_remove("SHIPYARD_TRACKING_URI")
        .output()
        .unwrap();
    let moves: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let kinds: Vec<&str> = moves.as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["promote", "promote", "rollback"], "both promotions passed their gates");
    assert_eq!(moves[2]["to_version"], "1");
}
