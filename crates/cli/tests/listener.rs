//! `shipyard server` behind its hardened listener: a client holding half a request head is
//! disconnected while others are served, and a TLS file that cannot be read stops the server
//! at once, named. (The listener's own tests cover bodies, the cap, the drain and TLS.)
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http, shipyard, start, stderr};

#[test]
fn the_server_disconnects_a_slowloris_client_and_keeps_serving_others() {
    let home = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let server = start(
        home.path(),
        &["server", "--no-model-serving", "--no-monitors", "--header-read-timeout", "1"],
        log.clone(),
    );
    let mut held: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut stream = TcpStream::connect(&server.addr).unwrap();
            stream.write_all(b"POST /api/2.0/mlflow/experiments/create HTTP/1.1\r\nHost: x\r\n").unwrap();
            stream
        })
        .collect();
    for _ in 0..5 {
        let (status, _, body) = http(&server.addr, "GET", "/health", &[], "");
        assert_eq!((status, body.as_str()), (200, "OK"));
    }
    for stream in &mut held {
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        // Closed by the server: the read ends (EOF, or reset) instead of timing out.
        let ended = stream.read_to_end(&mut rest);
        let timed_out = ended
            .as_ref()
            .is_err_and(|e| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
        assert!(!timed_out, "a partial request head was held past 15 s: {}", log.lock().unwrap());
        assert!(started.elapsed() < Duration::from_secs(15));
        let said = String::from_utf8_lossy(&rest);
        assert!(said.is_empty() || said.starts_with("HTTP/1.1 408"), "{said}");
    }
}

#[test]
fn an_unreadable_tls_file_stops_the_server_naming_it() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("no-such-cert.pem");
    let missing = missing.to_str().unwrap();
    let out = shipyard(home.path(), &["server", "--port", "0", "--tls-cert", missing, "--tls-key", missing]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-cert.pem"), "{}", stderr(&out));
    // A certificate without its key is refused by the flags themselves.
    let out = shipyard(home.path(), &["server", "--port", "0", "--tls-cert", missing]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
}
