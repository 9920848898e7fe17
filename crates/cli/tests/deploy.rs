//! Deployments through the binary: under continuous load, 20 promotions and rollbacks fail no
//! request and each is served from the moment its command returns; a replica (`serve
//! --deployment`) follows its deployment's changes; `deploy` waits until a slow-loading canary
//! answers, times out naming a process that cannot load its model, and does not wait for
//! stopped or killed replicas; `deploy` refuses bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use common::{header, http, shipyard, start, stderr};

const ROW: &str = r#"{"records": [{"age": 41.5, "income": 52.0, "group": "a"}]}"#;

/// A home with `churn` versions 1 (logistic) and 2 (a tree), version 1 in production.
fn home() -> (tempfile::TempDir, PathBuf) {
    common::churn_home(&["1"])
}

/// The command's standard output, once it succeeded.
fn ok_out(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn ok(out: std::process::Output) {
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The version answering `path` now.
fn version(addr: &str, path: &str) -> String {
    let (status, headers, body) = http(addr, "POST", path, &[], ROW);
    assert_eq!(status, 200, "{body}");
    header(&headers, "x-model-version").unwrap().to_owned()
}

/// Waits until `path` answers with `expected`; how long that took. Ten answers in a row must
/// agree, so an arm of the previous policy that happens to hold `expected` does not count.
fn until_version(addr: &str, path: &str, expected: &str, limit: Duration) -> Duration {
    let began = Instant::now();
    let mut switched = None;
    let mut in_a_row = 0;
    while in_a_row < 10 {
        if version(addr, path) == expected {
            switched.get_or_insert_with(|| began.elapsed());
            in_a_row += 1;
        } else {
            assert!(began.elapsed() < limit, "{path} still not answered by version {expected} after {limit:?}");
            (switched, in_a_row) = (None, 0);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    switched.unwrap_or_default()
}

#[test]
fn promotions_and_rollbacks_under_load_fail_no_request() {
    let (_dir, home) = home();
    ok(shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn@production"]));
    let log = Arc::new(Mutex::new(String::new()));
    let server = start(&home, &["server"], log.clone());
    let addr = server.addr.clone();
    assert_eq!(version(&addr, "/predict/churn-api"), "1");

    // Continuous load on the deployment and on the model's own route, from 3 clients.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let path = if i == 0 { "/predict/churn" } else { "/predict/churn-api" };
                let mut answers: Vec<(u16, String)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, headers, body) = http(&addr, "POST", path, &[], ROW);
                    let version = header(&headers, "x-model-version").unwrap_or("").to_owned();
                    answers.push((status, if status == 200 { version } else { body }));
                }
                answers
            })
        })
        .collect();
    let mut waits = Vec::new();
    for i in 0..20 {
        let (command, expected): (Vec<&str>, &str) = if i % 2 == 0 {
            (vec!["models", "promote", "churn", "--version", "2", "--force", "--reason", "load test"], "2")
        } else {
            (vec!["models", "rollback", "churn", "--reason", "load test"], "1")
        };
        ok(shipyard(&home, &command));
        // The command returns once the server serves the move: the next request sees it.
        assert_eq!(version(&addr, "/predict/churn-api"), expected, "right after: {command:?}");
        assert_eq!(version(&addr, "/predict/churn"), expected, "right after: {command:?}");
        waits.push(until_version(&addr, "/predict/churn-api", expected, Duration::from_secs(1)));
        until_version(&addr, "/predict/churn", expected, Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    let answers: Vec<(u16, String)> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let failed: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(answers.len() > 100, "only {} requests ran", answers.len());
    for v in ["1", "2"] {
        assert!(answers.iter().any(|(_, version)| version == v), "no answer from version {v}");
    }
    waits.sort();
    eprintln!("alias move to serving: median {:?}, max {:?}, over {} requests", waits[10], waits[19], answers.len());
    let history = shipyard(&home, &["models", "history", "churn", "--format", "json"]);
    let moves: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(moves.as_array().unwrap().len(), 21);
    // Lineage: the training data, the run, every move of the alias, the deployment serving it.
    let lineage = shipyard(&home, &["lineage", "models:/churn@production", "--format", "json"]);
    assert!(lineage.status.success(), "{}", stderr(&lineage));
    let lineage: serde_json::Value = serde_json::from_slice(&lineage.stdout).unwrap();
    assert_eq!(lineage["model_version"]["version"], "1");
    assert_eq!(lineage["datasets"][0]["name"], "train");
    assert_eq!(lineage["run"]["params"]["model"], "logistic_regression");
    assert_eq!(lineage["alias_moves"].as_array().unwrap().len(), 21);
    assert_eq!(lineage["deployments"][0]["deployment"], "churn-api");
    assert_eq!(lineage["deployments"][0]["role"], "arm 100%");
    drop(server);
}

/// A replica of `churn-api` reading `home`'s store directly, its own home in `dir`.
fn store_replica(dir: &Path, home: &Path, log: Arc<Mutex<String>>) -> common::Server {
    let store = format!("sqlite:///{}", home.join("shipyard.db").display());
    let artifacts = home.join("artifacts");
    let args = [
        "serve",
        "--deployment",
        "churn-api",
        "--tracking-uri",
        &store,
        "--artifacts-destination",
        artifacts.to_str().unwrap(),
    ];
    start(dir, &args, log)
}

#[test]
fn a_replica_follows_its_deployment() {
    let (dir, home) = home();
    ok(shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn/1"]));
    let log = Arc::new(Mutex::new(String::new()));
    let replica = store_replica(dir.path(), &home, log.clone());
    let addr = replica.addr.clone();
    assert_eq!(version(&addr, "/predict/churn-api"), "1");
    // A canary at 50%: both versions answer.
    ok(shipyard(
        &home,
        &["deploy", "churn-api", "--model", "models:/churn/1", "--canary", "models:/churn/2", "--weight", "50"],
    ));
    let began = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        assert!(began.elapsed() < Duration::from_secs(2), "the canary never answered");
        seen.insert(version(&addr, "/predict/churn-api"));
    }
    // The canary's weight alone changes (the UI's form calls the same store function).
    let out = ok_out(shipyard(&home, &["deploy", "set-weight", "churn-api", "--weight", "100"]));
    assert!(out.contains("  0%  models:/churn/1") && out.contains("100%  models:/churn/2"), "{out}");
    until_version(&addr, "/predict/churn-api", "2", Duration::from_secs(1));
    ok(shipyard(&home, &["deploy", "end-canary", "churn-api"]));
    until_version(&addr, "/predict/churn-api", "1", Duration::from_secs(1));
    let out = shipyard(&home, &["deploy", "end-canary", "churn-api"]);
    assert!(stderr(&out).contains("has no canary arm"), "{}", stderr(&out));
    let out = shipyard(&home, &["deploy", "set-weight", "churn-api", "--weight", "101"]);
    assert!(stderr(&out).contains("0 to 100"), "{}", stderr(&out));
    // The whole deployment moves to version 2; MLflow's /invocations follows it too.
    ok(shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn/2"]));
    until_version(&addr, "/predict/churn-api", "2", Duration::from_secs(1));
    let (status, headers, body) = http(
        &addr,
        "POST",
        "/invocations",
        &[],
        &json!({"dataframe_records": [{"age": 30, "income": 40, "group": "b"}]}).to_string(),
    );
    assert_eq!((status, header(&headers, "x-model-version")), (200, Some("2")), "{body}");
    // Deleting the deployment leaves the replica serving what it had, with a warning.
    ok(shipyard(&home, &["deploy", "delete", "churn-api"]));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(version(&addr, "/predict/churn-api"), "2");
    assert!(log.lock().unwrap().contains("no deployment named 'churn-api'"), "{}", log.lock().unwrap());
    drop(replica);
}

#[test]
fn a_replica_reads_its_deployment_from_a_tracking_server() {
    let (dir, home) = home();
    ok(shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn@production"]));
    let log = Arc::new(Mutex::new(String::new()));
    let server = start(&home, &["server", "--no-model-serving"], log.clone());
    let url = format!("http://{}", server.addr);
    // The replica has no store of its own: everything comes over HTTP.
    let replica_home = dir.path().join("replica");
    let replica = start(&replica_home, &["serve", "--deployment", "churn-api", "--tracking-uri", &url], log.clone());
    assert_eq!(version(&replica.addr, "/predict/churn-api"), "1");
    ok(shipyard(&home, &["models", "promote", "churn", "--version", "2", "--force", "--reason", "replica test"]));
    until_version(&replica.addr, "/predict/churn-api", "2", Duration::from_secs(1));
    ok(shipyard(&home, &["models", "rollback", "churn"]));
    until_version(&replica.addr, "/predict/churn-api", "1", Duration::from_secs(1));
    // The policy itself changes over HTTP too.
    ok(shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn/2"]));
    until_version(&replica.addr, "/predict/churn-api", "2", Duration::from_secs(1));
    assert!(!replica_home.join("shipyard.db").exists(), "the replica opened no store");
    let (status, _, body) = http(&server.addr, "GET", "/api/shipyard/deployments/get?name=nope", &[], "");
    assert_eq!(status, 404, "{body}");
    drop(replica);
    drop(server);
}

#[test]
fn deploy_refuses_bad_input() {
    let (_dir, home) = home();
    let cases: [(&[&str], &str); 6] = [
        (&["deploy", "d", "--ab", "models:/churn/1=50", "--ab", "models:/churn/2=60"], "sum to 110"),
        (&["deploy", "d", "--model", "models:/churn@staging"], "has no alias 'staging'"),
        (&["deploy", "d", "--model", "models:/churn/9"], "version=9"),
        (&["deploy", "d", "--model", "models:/nope/1"], "name=nope"),
        (&["deploy", "d", "--model", "runs:/abc/model"], "serves registered models"),
        (&["deploy", "bad/name", "--model", "models:/churn/1"], "invalid deployment name"),
    ];
    for (args, message) in cases {
        let out = shipyard(&home, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    let out = shipyard(&home, &["deploy", "show", "nothing"]);
    assert!(stderr(&out).contains("no deployment named 'nothing'"));
    ok(shipyard(
        &home,
        &["deploy", "ab", "--ab", "models:/churn/1=50", "--ab", "models:/churn/2=50", "--sticky-header", "X-User"],
    ));
    let listed = shipyard(&home, &["deploy", "list", "--format", "json"]);
    let all: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(all[0]["spec"]["sticky"], json!({"from": "header", "name": "x-user"}));
}

/// A TCP proxy to `upstream` that, while `slow` is set, holds each request for a model's
/// `MLmodel` file for `delay`: a replica fetching a model through it takes that long to load
/// it, as over a slow link or from a large model.
fn slow_proxy(upstream: String, slow: Arc<AtomicBool>, delay: Duration) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let (Ok(client), Ok(server)) = (client, TcpStream::connect(&upstream)) else { continue };
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let slow = slow.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = match from_client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let first_line = buf[..n].split(|&b| b == b'\n').next().unwrap_or_default();
                    if slow.load(Ordering::Relaxed)
                        && first_line.starts_with(b"GET ")
                        && first_line.windows(7).any(|w| w == b"MLmodel")
                    {
                        std::thread::sleep(delay);
                    }
                    if to_server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to_server.shutdown(Shutdown::Write);
            });
            let (mut from_server, mut to_client) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(Shutdown::Both);
            });
        }
    });
    addr
}

/// The answering versions of `n` requests.
fn versions(addr: &str, path: &str, n: usize) -> Vec<String> {
    (0..n).map(|_| version(addr, path)).collect()
}

fn rollout_status(home: &Path, name: &str) -> serde_json::Value {
    let out = shipyard(home, &["deploy", "status", name, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn deploy_returns_once_a_slow_loading_canary_answers() {
    let (dir, home) = home();
    // No serving process yet: nothing to wait for, and it says so.
    let out = shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn@production"]);
    ok(out.clone());
    assert!(
        common::stdout(&out).contains("no serving process serves deployment 'churn-api'"),
        "{}",
        common::stdout(&out)
    );
    let log = Arc::new(Mutex::new(String::new()));
    let server = start(&home, &["server", "--no-model-serving"], log.clone());
    // The replica reads the server through a link that makes each model load take 3 s.
    let slow = Arc::new(AtomicBool::new(false));
    let delay = Duration::from_secs(3);
    let proxy = slow_proxy(server.addr.clone(), slow.clone(), delay);
    let replica = start(
        &dir.path().join("replica"),
        &["serve", "--deployment", "churn-api", "--tracking-uri", &format!("http://{proxy}")],
        log.clone(),
    );
    assert_eq!(version(&replica.addr, "/predict/churn-api"), "1");
    slow.store(true, Ordering::Relaxed);

    let began = Instant::now();
    let out = shipyard(
        &home,
        &[
            "deploy",
            "churn-api",
            "--model",
            "models:/churn@production",
            "--canary",
            "models:/churn/2",
            "--weight",
            "50",
        ],
    );
    let took = began.elapsed();
    ok(out.clone());
    assert!(common::stdout(&out).contains("live on 1 serving process in"), "{}", common::stdout(&out));
    // It waited for the load (the proxy's delay is a floor, not a measurement).
    assert!(took >= delay, "deploy returned after {took:?}, before the canary could have loaded");
    // From the first requests after it returned, the canary takes its share.
    let seen = versions(&replica.addr, "/predict/churn-api", 40);
    assert!(seen.iter().any(|v| v == "2"), "no answer from the canary in 40 requests right after deploy: {seen:?}");
    let status = rollout_status(&home, "churn-api");
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["processes"][0]["verdict"], "applied", "{status}");
    assert_eq!(status["processes"][0]["report"]["kind"], "replica", "{status}");
    assert_eq!(status["expected"][0]["versions"], json!(["1", "2"]), "{status}");
    // A promotion the deployment follows waits for the replica too (version 2 is loaded: quick).
    let out = shipyard(
        &home,
        &["models", "promote", "churn", "--version", "2", "--force", "--reason", "t", "--format", "json"],
    );
    ok(out.clone());
    let moved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(moved["rollout"]["status"]["complete"], true, "{moved}");
    assert_eq!(moved["rollout"]["status"]["live"], 1, "{moved}");
    assert!(versions(&replica.addr, "/predict/churn-api", 10).iter().all(|v| v == "2"));
    drop(replica);
    drop(server);
}

/// Overwrites the model files of `churn` version 2 so that no process can load it.
fn break_version_2(home: &Path) {
    let out = shipyard(home, &["lineage", "models:/churn/2", "--format", "json"]);
    ok(out.clone());
    let lineage: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = lineage["run"]["run_id"].as_str().unwrap().to_owned();
    let mut stack = vec![home.join("artifacts")];
    let mut broken = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(&run_id) && path.file_name().unwrap() == "model.json" {
                std::fs::write(&path, "{ this is not a model").unwrap();
                broken += 1;
            }
        }
    }
    assert_eq!(broken, 1, "version 2's model.json under {}", home.display());
}

#[test]
fn deploy_times_out_naming_the_process_that_cannot_load() {
    let (dir, home) = home();
    break_version_2(&home);
    ok(shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn/1"]));
    let log = Arc::new(Mutex::new(String::new()));
    // Both a server and a replica serve the deployment; neither can load version 2.
    let server = start(&home, &["server"], log.clone());
    let replica = store_replica(dir.path(), &home, log.clone());
    let out = shipyard(
        &home,
        &["deploy", "churn-api", "--model", "models:/churn/1", "--canary", "models:/churn/2", "--timeout", "3"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("deployment 'churn-api' is not live after"), "{err}");
    assert!(err.contains("on 2 of 2 serving processes"), "{err}");
    for (kind, addr) in [("replica", &replica.addr), ("server", &server.addr)] {
        let line = err.lines().find(|l| l.contains(addr.as_str())).unwrap_or_else(|| panic!("{kind} not named: {err}"));
        assert!(line.contains(&format!("{kind} on ")) && line.contains("cannot load churn/2"), "{line}");
    }
    // What served before keeps serving.
    assert!(versions(&server.addr, "/predict/churn-api", 10).iter().all(|v| v == "1"));
    assert!(versions(&replica.addr, "/predict/churn-api", 10).iter().all(|v| v == "1"));
    let status = rollout_status(&home, "churn-api");
    assert_eq!(status["complete"], false, "{status}");
    assert!(status["processes"].as_array().unwrap().iter().all(|p| p["verdict"] == "failed"), "{status}");
    // --no-wait returns at once with the change stored.
    let out = shipyard(
        &home,
        &[
            "deploy",
            "churn-api",
            "--model",
            "models:/churn/1",
            "--canary",
            "models:/churn/2",
            "--no-wait",
            "--format",
            "json",
        ],
    );
    ok(out.clone());
    let stored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stored["rollout"], json!({"waited": false}));
    drop(replica);
    drop(server);
}

#[test]
fn stopped_replicas_are_not_waited_for_and_killed_ones_are_named() {
    let (dir, home) = home();
    ok(shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn/1"]));
    let log = Arc::new(Mutex::new(String::new()));
    let replica = |name: &str| store_replica(&dir.path().join(name), &home, log.clone());
    let (mut stopped, killed) = (replica("a"), replica("b"));
    assert_eq!(rollout_status(&home, "churn-api")["live"], 2);
    // SIGTERM: the replica withdraws its report as it stops.
    assert!(stopped.terminate());
    let killed_addr = killed.addr.clone();
    // SIGKILL: its report stays, and ages.
    drop(killed);
    let out = shipyard(&home, &["deploy", "churn-api", "--model", "models:/churn/2", "--timeout", "30"]);
    ok(out.clone());
    let text = common::stdout(&out);
    assert!(text.contains("not waited for: replica on") && text.contains(&killed_addr), "{text}");
    assert!(text.contains("no heartbeat for"), "{text}");
    assert!(!text.contains(&stopped.addr), "the stopped replica is gone: {text}");
}
