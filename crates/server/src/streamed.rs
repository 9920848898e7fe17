//! Answers for long pieces of work (a promotion's gates, a training): newline-delimited JSON
//! (`application/x-ndjson`), a `{"progress": {...}}` line at least every few seconds while the
//! work runs, so neither the client nor a proxy between them takes a quiet connection for a
//! dead one, then one last line, `{"result": ...}` or `{"error": {"error_code", "message"}}`
//! (MLflow's error body: the status is already sent as 200 when the work fails).
//!
//! The work runs in its own task: a client that goes away does not cut a promotion in half.
//! Work that can stop early (a training) is told through the [`Progress`]'s cancel flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::SinkExt;
use serde_json::{Value, json};
use shipyard_core::Error;

/// How often a line is sent while the work runs.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// What the work reports as it goes, and the flag that tells it the client has gone.
#[derive(Clone, Default)]
pub struct Progress {
    latest: Arc<Mutex<Value>>,
    /// Set when the client disconnects before the result.
    pub cancel: Arc<AtomicBool>,
}

impl Progress {
    /// Replaces the progress the next line reports.
    pub fn set(&self, value: Value) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = value;
    }

    fn latest(&self) -> Value {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Runs `work` in a task and answers with its progress lines and result. `creator` (the gate's
/// pending grants for what the work creates) settles before the result is sent.
pub fn answer<F>(work: F, progress: Progress, creator: Option<shipyard_auth::CreatorGrants>) -> Response
where
    F: Future<Output = Result<Value, Error>> + Send + 'static,
{
    let (mut lines, body) = futures::channel::mpsc::channel::<Result<String, std::convert::Infallible>>(4);
    let mut task = tokio::spawn(work);
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.tick().await;
        let outcome = loop {
            tokio::select! {
                done = &mut task => break done,
                _ = beat.tick() => {
                    let line = json!({"progress": progress.latest()}).to_string() + "\n";
                    if lines.send(Ok(line)).await.is_err() {
                        progress.cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
        };
        let last = match outcome {
            Ok(Ok(result)) => {
                if let Some(creator) = creator {
                    creator.settle().await;
                }
                json!({ "result": result })
            }
            Ok(Err(e)) => {
                let code = e.code();
                if code.http_status() >= 500 {
                    tracing::error!(error_code = code.as_str(), "{e}");
                }
                json!({"error": {"error_code": code.as_str(), "message": e.to_string()}})
            }
            Err(e) => {
                tracing::error!("a long request's work failed: {e}");
                json!({"error": {"error_code": "INTERNAL_ERROR", "message": "the work stopped unexpectedly"}})
            }
        };
        let _ = lines.send(Ok(last.to_string() + "\n")).await;
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body)).into_response()
}
