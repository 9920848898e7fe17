//! Why a serving request failed, and the one place each protocol turns that into a response.
//!
//! Handlers return [`ServeError`]; the protocol the request came in by decides the body:
//! the seed's `{"error", "request_id"}`, MLflow's `{"error_code", "message"}`, or the Open
//! Inference Protocol's `{"error"}` (what tritonclient reads). Statuses are the same for all
//! three: a client's mistake is 4xx, overload is 503 with `Retry-After`, a model too slow for
//! its timeout is 504, and only a failing model or a bug is 500 (logged here).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shipyard_runtime::PredictError;

/// What went wrong, as far as the client is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body is not what the protocol accepts (not JSON, wrong keys, bad tensor shape).
    Malformed,
    /// Well-formed, but the values do not fit the model (a column, a type, a missing value).
    Invalid,
    /// No such model or version is served.
    NotFound,
    /// The body or the row count is over the configured limit.
    TooLarge,
    /// The `Content-Type` is not one the protocol reads.
    UnsupportedMediaType,
    /// The server is at its concurrency and queue limits, or the queue wait ran out.
    Overloaded,
    /// The model did not answer within the request timeout.
    Timeout,
    /// The model failed on valid input, or the server did.
    Internal,
}

/// A failed request.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServeError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Seconds a shed request is told to wait before trying again.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl ServeError {
    pub fn malformed(message: impl Into<String>) -> Self {
        ServeError { kind: ErrorKind::Malformed, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        ServeError { kind: ErrorKind::Invalid, message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ServeError { kind: ErrorKind::NotFound, message: message.into() }
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        ServeError { kind: ErrorKind::TooLarge, message: message.into() }
    }
    pub fn overloaded(message: impl Into<String>) -> Self {
        ServeError { kind: ErrorKind::Overloaded, message: message.into() }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ServeError { kind: ErrorKind::Internal, message: message.into() }
    }

    /// The HTTP status, the same whatever the protocol.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::Malformed => StatusCode::BAD_REQUEST,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the client, not the server or the model, is at fault.
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error()
    }
}

impl From<PredictError> for ServeError {
    fn from(e: PredictError) -> Self {
        match e {
            PredictError::Model(message) => ServeError::internal(format!("the model failed: {message}")),
            other => ServeError::invalid(other.to_string()),
        }
    }
}

/// Which protocol's error body to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `/predict/{model}`: `{"error": ..., "request_id": ...}`.
    Seed,
    /// `/invocations`: `{"error_code": ..., "message": ...}`; MLflow answers 400 for every input
    /// problem, so `Invalid` is 400 here too.
    Mlflow,
    /// `/v2/...`: `{"error": ...}`; Triton and KServe answer 400 for input problems.
    Oip,
}

impl Protocol {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Seed => "seed",
            Protocol::Mlflow => "mlflow",
            Protocol::Oip => "v2",
        }
    }

    /// The status of `error` in this protocol.
    pub fn status(self, error: &ServeError) -> StatusCode {
        match (self, error.kind) {
            (Protocol::Mlflow | Protocol::Oip, ErrorKind::Invalid) => StatusCode::BAD_REQUEST,
            _ => error.status(),
        }
    }

    /// A JSON body as this protocol's servers write it: MLflow's (Python) with `json.dumps`'s
    /// spacing and float format, byte for byte; the others compact.
    pub fn json(self, body: &serde_json::Value) -> Response {
        match self {
            Protocol::Mlflow => {
                ([(header::CONTENT_TYPE, "application/json")], crate::protocol::python_json::to_vec(body))
                    .into_response()
            }
            Protocol::Seed | Protocol::Oip => axum::Json(body).into_response(),
        }
    }

    /// The response for `error`, in this protocol's shape.
    pub fn error_response(self, error: &ServeError, request_id: &str) -> Response {
        let status = self.status(error);
        if status.is_server_error() && error.kind == ErrorKind::Internal {
            tracing::error!(request_id, "{}", error.message);
        }
        let body = match self {
            Protocol::Seed => serde_json::json!({ "error": error.message, "request_id": request_id }),
            Protocol::Mlflow => serde_json::json!({ "error_code": mlflow_code(error), "message": error.message }),
            Protocol::Oip => serde_json::json!({ "error": error.message }),
        };
        let mut response = (status, self.json(&body)).into_response();
        if error.kind == ErrorKind::Overloaded {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// MLflow's error code for `error` (`mlflow/exceptions.py`'s names).
fn mlflow_code(error: &ServeError) -> &'static str {
    match error.kind {
        ErrorKind::Malformed | ErrorKind::UnsupportedMediaType => "BAD_REQUEST",
        ErrorKind::Invalid => "INVALID_PARAMETER_VALUE",
        ErrorKind::NotFound => "RESOURCE_DOES_NOT_EXIST",
        ErrorKind::TooLarge => "RESOURCE_EXHAUSTED",
        ErrorKind::Overloaded => "TEMPORARILY_UNAVAILABLE",
        ErrorKind::Timeout => "DEADLINE_EXCEEDED",
        ErrorKind::Internal => "INTERNAL_ERROR",
    }
}
