//! The listener against misbehaving clients, over real sockets: a held partial header
//! (slowloris), a stalled body, the connection cap, a graceful drain, and TLS with and without
//! client certificates. Waits are bounds on behaviour ("closed at all within N s"), with wide
//! margins for a loaded machine; none measures speed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Extension;
use axum::routing::{get, post};
use shipyard_listener::{ConnectionInfo, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/who",
            get(|Extension(info): Extension<ConnectionInfo>| async move {
                format!(
                    "tls={} cert={}",
                    info.tls,
                    info.client_certificate.as_ref().map_or("none".to_owned(), |c| c.sha256.clone())
                )
            }),
        )
        .route("/echo", post(|body: axum::body::Bytes| async move { format!("{} bytes", body.len()) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                "finished"
            }),
        )
}

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(settings: Settings) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shipyard_listener::serve_on(listener, app(), settings, async move {
        let _ = stopped.await;
    }));
    Running { addr, stop: Some(stop), task }
}

fn short() -> Settings {
    Settings {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

/// Reads until the server closes the connection (or 15 s pass); what it sent, and when.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(15) {
        match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

async fn get_hello(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
    read_until_closed(&mut stream).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_partial_header_is_closed_while_other_clients_are_served() {
    let server = start(short()).await;
    // Forty slowloris connections, each holding half a request head.
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        held.push(stream);
    }
    // Meanwhile, other clients are answered.
    for _ in 0..5 {
        assert!(get_hello(server.addr).await.ends_with("hello"));
    }
    // Every held connection is closed by the server, without an answer to a request it never got
    // whole (hyper may say 408 first), well before the 40 s the old listener held one open.
    for stream in &mut held {
        let (said, after) = read_until_closed(stream).await;
        assert!(after < Duration::from_secs(10), "a partial header was held {after:?}");
        assert!(said.is_empty() || said.starts_with("HTTP/1.1 408"), "{said}");
    }
    // A keep-alive connection idle between requests is closed the same way.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    idle.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let (said, after) = read_until_closed(&mut idle).await;
    assert!(said.contains("200 OK") && said.ends_with("hello"), "{said}");
    assert!(after < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_off_with_an_error_answer() {
    let server = start(short()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly ten b").await.expect("write");
    let (said, after) = read_until_closed(&mut stream).await;
    assert!(after < Duration::from_secs(10), "a stalled body was waited for {after:?}");
    assert!(!said.contains("200 OK"), "{said}");
    assert!(said.is_empty() || said.starts_with("HTTP/1.1 4"), "a client's stall is not a 5xx: {said}");
    // A whole body is read as usual.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .await
        .expect("write");
    assert!(read_until_closed(&mut stream).await.0.ends_with("5 bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_new_connection_waits_for_a_slot() {
    let server = start(Settings { max_connections: 2, header_read_timeout: Duration::from_secs(30), ..short() }).await;
    let first = TcpStream::connect(server.addr).await.expect("connect");
    let second = TcpStream::connect(server.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The third connects (the kernel's backlog) but is not served while two are open.
    let waiting = tokio::spawn(get_hello(server.addr));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a third connection was served over a cap of two");
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("served once a slot freed");
    assert!(answer.expect("task").ends_with("hello"));
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let mut server = start(short()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = server.stop.take().expect("running").send(());
    let (said, _) = read_until_closed(&mut stream).await;
    assert!(said.contains("200 OK") && said.ends_with("finished"), "{said}");
    server.task.await.expect("task").expect("served");
    assert!(TcpStream::connect(server.addr).await.is_err(), "still listening after shutdown");
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_pem: String,
    client_key_pem: String,
    client_der: Vec<u8>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let dir = tempfile::tempdir().expect("dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "shipyard test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("key");
    let mut server_params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    server_params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let server = server_params.signed_by(&server_key, &issuer).expect("server certificate");

    let client_key = KeyPair::generate().expect("key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    client_params.distinguished_name.push(DnType::CommonName, "alice");
    let client = client_params.signed_by(&client_key, &issuer).expect("client certificate");

    std::fs::write(dir.path().join("server.pem"), server.pem()).expect("write");
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).expect("write");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
    Pki {
        dir,
        ca_pem: ca.pem(),
        client_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
        client_der: client.der().to_vec(),
    }
}

fn https_client(pki: &Pki, with_certificate: bool) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA")])
        .no_proxy();
    if with_certificate {
        let identity = format!("{}{}", pki.client_pem, pki.client_key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("identity"));
    }
    builder.build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_with_and_without_a_client_certificate_and_names_the_one_given() {
    let pki = pki();
    let path = |name: &str| pki.dir.path().join(name);
    let config = shipyard_listener::tls_config(&path("server.pem"), &path("server.key"), Some(&path("ca.pem")))
        .expect("TLS settings");
    let server = start(Settings { tls: Some(config), ..short() }).await;
    let url = format!("https://127.0.0.1:{}/who", server.addr.port());

    let anonymous = https_client(&pki, false).get(&url).send().await.expect("TLS without a client certificate");
    assert_eq!(anonymous.text().await.expect("body"), "tls=true cert=none");

    let with_certificate = https_client(&pki, true).get(&url).send().await.expect("TLS with a client certificate");
    let fingerprint = shipyard_listener::ClientCertificate::from_der(&pki.client_der).sha256;
    assert_eq!(with_certificate.text().await.expect("body"), format!("tls=true cert={fingerprint}"));

    // A certificate from another CA is refused in the handshake.
    let stranger = pki_with_other_ca(&pki);
    let refused = https_client(&stranger, true).get(&url).send().await;
    assert!(refused.is_err(), "a client certificate from another CA was accepted");

    // Plain HTTP on the TLS port gets nothing served.
    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    plain.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let (said, _) = read_until_closed(&mut plain).await;
    assert!(!said.contains("tls="), "{said}");
}

/// The same server CA (so the client trusts the server), but a client certificate issued by a
/// CA the server does not know.
fn pki_with_other_ca(pki: &Pki) -> Pki {
    let other = self::pki();
    Pki {
        dir: tempfile::tempdir().expect("dir"),
        ca_pem: pki.ca_pem.clone(),
        client_pem: other.client_pem,
        client_key_pem: other.client_key_pem,
        client_der: other.client_der,
    }
}

#[test]
fn tls_files_that_are_missing_or_wrong_are_named() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("missing.pem");
    let error = shipyard_listener::tls_config(&missing, &missing, None).expect_err("missing").to_string();
    assert!(error.contains("missing.pem"), "{error}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let error = shipyard_listener::tls_config(&empty, &empty, None).expect_err("empty").to_string();
    assert!(error.contains("empty.pem") && error.contains("no certificate"), "{error}");
}
