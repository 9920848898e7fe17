//! The `shipyard` binary end to end: client-side commands against a store opened directly and
//! against a running server, and the server's start-up and shutdown.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn shipyard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shipyard"));
    cmd.env_remove("SHIPYARD_TRACKING_URI").env_remove("SHIPYARD_HOME");
    cmd
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A server on a free port, stopped (SIGTERM via kill) when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(home: &std::path::Path) -> Server {
    let mut child = shipyard()
        .args(["server", "--port", "0", "--home"])
        .arg(home)
        .env("SHIPYARD_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server logs the address it bound; read it from its log.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        assert!(Instant::now() < deadline, "server did not start");
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

#[test]
fn experiments_and_runs_through_the_store_and_through_a_server() {
    let home = tempfile::tempdir().unwrap();
    let id = run_ok(shipyard().args(["experiments", "create", "cli-exp", "--home"]).arg(home.path()));
    assert_eq!(id.trim(), "1");
    let listed = run_ok(shipyard().args(["experiments", "list", "--format", "json", "--home"]).arg(home.path()));
    let experiments: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let mut names: Vec<&str> = experiments.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    // Listed newest first, but both may be created in the same millisecond (then by id): compare as a set.
    names.sort_unstable();
    assert_eq!(names, vec!["Default", "cli-exp"]);

    // The same data through a server on that home, with SHIPYARD_TRACKING_URI.
    let server = start_server(home.path());
    let table = run_ok(shipyard().args(["experiments", "list"]).env("SHIPYARD_TRACKING_URI", &server.url));
    assert!(table.lines().next().unwrap().starts_with("ID"));
    assert!(table.contains("cli-exp"));
    let id2 = run_ok(shipyard().args(["experiments", "create", "over-http", "--tracking-uri", &server.url]));
    assert_eq!(id2.trim(), "2");
    let runs = run_ok(shipyard().args([
        "runs",
        "list",
        "--experiment",
        "over-http",
        "--format",
        "json",
        "--tracking-uri",
        &server.url,
    ]));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&runs).unwrap(), serde_json::json!([]));

    // Errors come back with MLflow's code and a non-zero exit.
    let missing =
        shipyard().args(["runs", "list", "--experiment", "nope", "--tracking-uri", &server.url]).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("RESOURCE_DOES_NOT_EXIST"));
    let bad_filter = shipyard()
        .args(["runs", "list", "--experiment", "1", "--filter", "metrics.x > 'a'", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert!(!bad_filter.status.success());
    assert!(String::from_utf8_lossy(&bad_filter.stderr).contains("Expected numeric value"));
}

#[test]
fn bad_uris_are_refused_with_a_message() {
    let out = shipyard().args(["experiments", "list", "--tracking-uri", "mysql://u:secret@h/db"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported backend store URI") && !err.contains("secret"), "{err}");
}
