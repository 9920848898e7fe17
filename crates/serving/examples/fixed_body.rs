//! The HTTP ceiling of `bench/serving`: the smallest axum server that answers every request with
//! the same JSON body, `{"predictions":[1]}`, on a tokio multi-thread runtime (one worker per
//! core, as `#[tokio::main]` sets up by default), bound to 127.0.0.1.
//!
//! It reads the whole request body (so keep-alive connections behave as with a real model
//! server) and then ignores it: no JSON parsing, no model. Whatever a model server does beyond
//! this route is the price of its protocol handling and inference.
//!
//!   cargo build --release -p shipyard-serving --example fixed_body
//!   target/release/examples/fixed_body PORT        # routes: GET / and POST /
use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const BODY: &str = r#"{"predictions":[1]}"#;

async fn fixed(_body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|e| format!("fixed_body: bad port {arg:?}: {e}"))?,
        None => return Err("usage: fixed_body PORT".into()),
    };
    let app = Router::new().route("/", get(fixed).post(fixed));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    eprintln!("fixed_body listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
