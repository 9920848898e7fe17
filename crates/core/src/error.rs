//! The one error type of Shipyard's domain, and MLflow's error codes.
//!
//! Every layer (store, server, CLI) reports failures as [`Error`]. Each variant names the
//! class of failure; [`Error::code`] maps it to MLflow's `error_code` string and
//! [`ErrorCode::http_status`] to the HTTP status MLflow answers with, so the `mlflow` client
//! raises the same `MlflowException`s against Shipyard as against MLflow. The mapping lives here
//! and nowhere else.

use std::fmt;

/// MLflow's error codes (the subset Shipyard produces), as in `databricks.proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A request field has a wrong, missing or out-of-range value.
    InvalidParameterValue,
    /// The request could not be parsed (malformed JSON, wrong content).
    BadRequest,
    /// The entity to create exists already.
    ResourceAlreadyExists,
    /// The entity named by the request does not exist.
    ResourceDoesNotExist,
    /// The request conflicts with a concurrent change.
    ResourceConflict,
    /// The request is valid but the entity is in the wrong state for it.
    InvalidState,
    /// The request body is larger than the configured limit.
    RequestLimitExceeded,
    /// The route exists but not for this method, or is not implemented.
    EndpointNotFound,
    /// The server is overloaded or a dependency is unavailable.
    TemporarilyUnavailable,
    /// No credentials, or wrong ones (HTTP 401).
    Unauthenticated,
    /// The caller may not do this (HTTP 403).
    PermissionDenied,
    /// A bug or an unexpected failure of a dependency.
    InternalError,
}

impl ErrorCode {
    /// The code as MLflow spells it on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::ResourceConflict => "RESOURCE_CONFLICT",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            ErrorCode::EndpointNotFound => "ENDPOINT_NOT_FOUND",
            ErrorCode::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status MLflow pairs with the code (`mlflow/exceptions.py`), except
    /// [`ErrorCode::RequestLimitExceeded`], which Shipyard uses for oversized bodies (413).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidParameterValue | ErrorCode::BadRequest | ErrorCode::ResourceAlreadyExists => 400,
            ErrorCode::ResourceDoesNotExist | ErrorCode::EndpointNotFound => 404,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::ResourceConflict => 409,
            ErrorCode::RequestLimitExceeded => 413,
            ErrorCode::TemporarilyUnavailable => 503,
            ErrorCode::InvalidState | ErrorCode::InternalError => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure anywhere in Shipyard, carrying a message meant for the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the request is invalid; the message names it.
    #[error("{0}")]
    InvalidParameter(String),
    /// The request body cannot be parsed.
    #[error("{0}")]
    BadRequest(String),
    /// The entity exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The entity does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A concurrent change won; retrying may succeed.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The server is overloaded or its database is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed that is not the client's fault.
    #[error("{0}")]
    Internal(String),
    /// The caller is not who they claim, or did not say (HTTP 401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this (HTTP 403).
    #[error("{0}")]
    PermissionDenied(String),
}

impl Error {
    /// The MLflow error code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidParameter(_) => ErrorCode::InvalidParameterValue,
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            Error::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            Error::Conflict(_) => ErrorCode::ResourceConflict,
            Error::TooLarge(_) => ErrorCode::RequestLimitExceeded,
            Error::Unavailable(_) => ErrorCode::TemporarilyUnavailable,
            Error::Internal(_) => ErrorCode::InternalError,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
        }
    }

    /// Shorthand for [`Error::InvalidParameter`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidParameter(message.into())
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }
}

/// Result with Shipyard's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_mlflow_statuses() {
        assert_eq!(Error::invalid("x").code().http_status(), 400);
        assert_eq!(Error::not_found("x").code().as_str(), "RESOURCE_DOES_NOT_EXIST");
        assert_eq!(Error::not_found("x").code().http_status(), 404);
        assert_eq!(Error::AlreadyExists("x".into()).code().http_status(), 400);
        assert_eq!(Error::TooLarge("x".into()).code().http_status(), 413);
        assert_eq!(Error::Internal("x".into()).code().http_status(), 500);
    }
}
