//! Shipyard's network edge: every port the binary listens on goes through [`serve`].
//!
//! `axum::serve` builds hyper's connection without a timer, which silently turns hyper's
//! header-read timeout off: a client sending half a request header held its connection (and a
//! task) forever. This crate runs the accept loop itself, so that every connection has:
//!
//! - a **header-read timeout** (hyper's, with a Tokio timer installed), which also closes a
//!   keep-alive connection idle for that long between requests (the timer starts when hyper
//!   begins waiting for the next request's head);
//! - a **body-read timeout** between request body frames (a body trickled or stalled is cut off
//!   and its request answered with an error, never waited for);
//! - a **write timeout**: a response the client stops reading fails its connection after that
//!   long without progress ([`io::WriteDeadline`]);
//! - a **connection cap**: at the cap the loop stops accepting (the kernel's backlog holds new
//!   connections) until one closes;
//! - optional **TLS** (rustls, TLS 1.2 and 1.3, ALPN `http/1.1`) with a handshake timeout and
//!   optional client certificates ([`tls`]);
//! - a **graceful drain** on shutdown: no new connections, in-flight requests finish, idle
//!   connections close, and whatever is left after the drain timeout is dropped.
//!
//! Each request carries a [`ConnectionInfo`] extension (the peer's address and, over TLS, the
//! verified client certificate), and axum's `ConnectInfo<SocketAddr>`.
//!
//! Only HTTP/1.1 is spoken: nothing Shipyard serves needs HTTP/2, and one protocol is one
//! parser to harden (request smuggling, rapid reset).

pub mod io;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

pub use tls::{ClientCertificate, TlsError, tls_config};

/// How connections are limited. The defaults suit a server on a network; tests shorten them.
#[derive(Clone)]
pub struct Settings {
    /// Longest wait for a request's head (also: longest idle time of a keep-alive connection).
    pub header_read_timeout: Duration,
    /// Longest wait between two frames of a request body.
    pub body_read_timeout: Duration,
    /// Longest time a response write may make no progress.
    pub write_timeout: Duration,
    /// Most connections open at once; the listener stops accepting at the cap.
    pub max_connections: usize,
    /// Longest TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Longest wait, on shutdown, for in-flight requests to finish.
    pub drain_timeout: Duration,
    /// TLS, when set: the certificate, key and client-certificate policy.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
            tls_handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

impl Settings {
    /// `http` or `https`, as this listener is reached.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// What a request knows of the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address (the load balancer's, behind one).
    pub peer: SocketAddr,
    /// Over TLS, the client certificate the handshake verified against the configured CA.
    pub client_certificate: Option<Arc<ClientCertificate>>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// Binds `addr`, tells `on_bound` the bound address, and serves `router` until `shutdown`
/// resolves; then drains (see the crate's doc).
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    on_bound(listener.local_addr()?);
    serve_on(listener, router, settings, shutdown).await
}

/// [`serve`] on a listener already bound.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let acceptor = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut at_cap_since: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        if slots.available_permits() == 0 {
            // Said once per episode at the cap, not per connection.
            if at_cap_since.is_none() {
                tracing::warn!(
                    "{} connections open: the connection cap; new ones wait in the listen backlog",
                    settings.max_connections
                );
                at_cap_since = Some(std::time::Instant::now());
            }
        } else {
            at_cap_since = None;
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: back off a little
                    // rather than spin, and keep listening.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            settings: settings.clone(),
            watcher: graceful.watcher(),
            _slot: permit,
        };
        tokio::spawn(connection.run(stream, peer, acceptor.clone()));
    }
    drop(listener);
    if tokio::time::timeout(settings.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "connections still busy after the {} s drain: closing them",
            settings.drain_timeout.as_secs_f64()
        );
    }
    Ok(())
}

/// One accepted connection, holding its slot under the cap until it closes.
struct Connection {
    router: Router,
    settings: Arc<Settings>,
    watcher: Watcher,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr, acceptor: Option<tokio_rustls::TlsAcceptor>) {
        let Some(acceptor) = acceptor else {
            let info = ConnectionInfo { peer, client_certificate: None, tls: false };
            return self.http(stream, info).await;
        };
        let stream = match tokio::time::timeout(self.settings.tls_handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake with {peer} failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake with {peer} timed out");
                return;
            }
        };
        let client_certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| Arc::new(ClientCertificate::from_der(leaf.as_ref())));
        let info = ConnectionInfo { peer, client_certificate, tls: true };
        self.http(stream, info).await
    }

    async fn http<IO>(self, io: IO, info: ConnectionInfo)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = info.peer;
        let router = self.router;
        let body_timeout = self.settings.body_read_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(info.clone());
            parts.extensions.insert(ConnectInfo(info.peer));
            let body = axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body));
            let request = hyper::Request::from_parts(parts, body);
            let router = router.clone();
            async move { Ok::<_, Infallible>(router.oneshot(request).await.unwrap_or_else(|never| match never {})) }
        });
        let io = TokioIo::new(io::WriteDeadline::new(io, self.settings.write_timeout));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.settings.header_read_timeout)
            .serve_connection(io, service);
        if let Err(e) = self.watcher.watch(connection).await {
            tracing::debug!("connection from {peer} ended: {e}");
        }
    }
}
