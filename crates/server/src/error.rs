//! The one mapping from Shipyard errors to HTTP responses in MLflow's error shape.
//!
//! Every handler returns `Result<_, ApiError>`; the status and `error_code` come from
//! [`shipyard_core::ErrorCode`], so the `mlflow` client raises the same `MlflowException` as it
//! would against MLflow. Server-side failures (5xx) are logged here, once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shipyard_core::{Error, ErrorCode};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    /// A 400 `INVALID_PARAMETER_VALUE`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError(Error::invalid(message))
    }
}

/// MLflow's error body.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error_code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = self.0.to_string();
        if status.is_server_error() {
            tracing::error!(error_code = code.as_str(), "{message}");
        }
        error_response(status, code, &message)
    }
}

/// An error body with an explicit status (also for routing failures, which have no `Error`).
pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error_code: code.as_str(), message })
        .unwrap_or_else(|_| b"{\"error_code\":\"INTERNAL_ERROR\"}".to_vec());
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
