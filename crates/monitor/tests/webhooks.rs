//! Webhook deliveries against real local receivers: what the egress policy refuses never
//! connects, a redirect is not followed, and what is delivered is signed.

use std::sync::{Arc, Mutex};

use shipyard_monitor::webhook::{DeliveryError, EgressPolicy, Webhooks, sign};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A receiver on 127.0.0.1 answering every request with `answer`; the requests it got, raw.
async fn receiver(answer: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head and a body of Content-Length bytes.
            loop {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            seen.lock().expect("lock").push(String::from_utf8_lossy(&request).into_owned());
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (port, got)
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

fn allow(entries: &[&str]) -> Webhooks {
    let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
    Webhooks::new(EgressPolicy::parse(&entries, None).expect("policy")).expect("client")
}

#[tokio::test]
async fn loopback_is_refused_by_address_and_by_name_unless_allowed() {
    let (port, got) = receiver(OK).await;
    let signature = sign(b"k", "d", 1, b"{}");
    let closed = allow(&[]);
    for url in [format!("http://127.0.0.1:{port}/hook"), format!("http://localhost:{port}/hook")] {
        let refused = closed.deliver(&url, b"{}", &signature).await.expect_err("refused");
        assert!(!refused.retryable(), "{refused}");
        assert!(refused.to_string().contains("loopback"), "{refused}");
    }
    assert!(got.lock().expect("lock").is_empty(), "a refused delivery connected");

    let open = allow(&["127.0.0.1"]);
    assert_eq!(
        open.deliver(&format!("http://localhost:{port}/hook"), b"{}", &signature).await.expect("delivered"),
        200
    );
    assert_eq!(got.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn a_delivery_is_signed_and_a_receiver_can_verify_it() {
    let (port, got) = receiver(OK).await;
    let body = br#"{"alert":{"id":7}}"#;
    let signature = sign(b"secret", "delivery-1", 1_700_000_000, body);
    allow(&["127.0.0.0/8"]).deliver(&format!("http://127.0.0.1:{port}/"), body, &signature).await.expect("delivered");
    let request = got.lock().expect("lock")[0].clone();
    let header = |name: &str| {
        request
            .lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    assert_eq!(header("x-shipyard-delivery-id"), "delivery-1");
    assert_eq!(header("x-shipyard-timestamp"), "1700000000");
    // The receiver's check: recompute over "{id}.{timestamp}.{body}" with the shared key.
    let received_body = request.split_once("\r\n\r\n").expect("body").1;
    let expected = sign(b"secret", &header("x-shipyard-delivery-id"), 1_700_000_000, received_body.as_bytes());
    assert_eq!(header("x-shipyard-signature"), expected.value);
    assert_eq!(header("content-type"), "application/json");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let (target, reached) = receiver(OK).await;
    let redirect: &'static str = Box::leak(
        format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{target}/internal\r\nContent-Length: 0\r\n\r\n")
            .into_boxed_str(),
    );
    let (port, got) = receiver(redirect).await;
    let failed = allow(&["127.0.0.1"])
        .deliver(&format!("http://127.0.0.1:{port}/hook"), b"{}", &sign(b"k", "d", 1, b"{}"))
        .await
        .expect_err("a redirect is a failed attempt");
    assert!(matches!(failed, DeliveryError::Status { status: 302, redirect: true, .. }), "{failed}");
    assert_eq!(got.lock().expect("lock").len(), 1);
    assert!(reached.lock().expect("lock").is_empty(), "the redirect was followed");
}
