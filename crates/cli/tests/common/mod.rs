//! Helpers of the binary's tests: running `shipyard`, a tabular fixture, servers on free ports,
//! and plain HTTP/1.1 requests.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// `shipyard ARGS --home HOME`, with the environment's store settings removed.
pub fn shipyard_cmd(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shipyard"));
    command
        .args(args)
        .arg("--home")
        .arg(home)
        .env_remove("SHIPYARD_TRACKING_URI")
        .env_remove("SHIPYARD_ARTIFACTS_DESTINATION")
        .env("USER", "tester");
    command
}

/// Runs `shipyard ARGS --home HOME` to the end.
pub fn shipyard(home: &Path, args: &[&str]) -> Output {
    shipyard_cmd(home, args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Rows where `y` follows age and income, a little more often for group `a`; `shift` moves
/// age and income (drifted data). Seeded: the same rows every time.
pub fn table(n: usize, seed: u64, shift: f64) -> String {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::from("age,income,group,y\n");
    for _ in 0..n {
        let group = if next() < 0.5 { "a" } else { "b" };
        let age = 20.0 + 40.0 * next() + shift * 30.0;
        let income = 20.0 + 60.0 * next() + shift * 40.0;
        let score =
            0.05 * (age - 40.0) + 0.04 * (income - 50.0) + if group == "a" { 0.4 } else { 0.0 } + (next() - 0.5);
        text += &format!("{age:.2},{income:.2},{group},{}\n", u8::from(score > 0.0));
    }
    text
}

/// A home with `churn` versions 1 (logistic) and 2 (a tree) trained on `table(1500, 11, 0.0)`,
/// and `production` moved to each of `promoted` in turn.
pub fn churn_home(promoted: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = dir.path().join("train.csv");
    std::fs::write(&data, table(1500, 11, 0.0)).unwrap();
    for model in ["logistic_regression", "decision_tree"] {
        let args =
            ["train", "--data", data.to_str().unwrap(), "--target", "y", "--model", model, "--register", "churn"];
        let out = shipyard(&home, &args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for v in promoted {
        let out = shipyard(&home, &["models", "promote", "churn", "--version", v, "--force", "--reason", "setup"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    (dir, home)
}

/// A server process, stopped when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Sends SIGTERM and waits for the process to end; whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.child.wait().unwrap().success()
    }
}

/// Starts `shipyard ARGS --port 0 --home HOME` and waits for the line saying where it listens.
/// Its log is drained on a thread (a full pipe would stall the server) and kept in `log`.
pub fn start(home: &Path, args: &[&str], log: std::sync::Arc<std::sync::Mutex<String>>) -> Server {
    let mut args = args.to_vec();
    args.extend(["--port", "0"]);
    start_command(shipyard_cmd(home, &args), log)
}

/// Starts `command` (a `shipyard server` or `serve` with `--port 0`) and waits for the line
/// saying where it listens.
pub fn start_command(mut command: Command, log: std::sync::Arc<std::sync::Mutex<String>>) -> Server {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server exited before listening").unwrap();
        log.lock().unwrap().push_str(&format!("{line}\n"));
        if let Some((_, rest)) = line.split_once(" on http://").or_else(|| line.split_once(" on https://")) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            log.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    Server { child, addr }
}

/// One HTTP/1.1 request on a new connection: status, headers (lower-case names) and body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    // JSON unless the caller says otherwise.
    let typed = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    let content_type = if typed { "" } else { "Content-Type: application/json\r\n" };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{content_type}{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut head_lines = head.lines();
    let status = head_lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = head_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// A header's value.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
