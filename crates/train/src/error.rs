//! The training layer's one error type.
//!
//! Every variant names what the user can fix: the column, the parameter and its valid values, the
//! number of rows that were too few. The CLI maps [`TrainError`] to exit code 2 and records the
//! message on the failed run.

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data cannot train this model: a missing or unusable target or feature column, too few
    /// rows, one class only.
    #[error("{0}")]
    Data(String),
    /// A parameter that is unknown, malformed or out of range.
    #[error("{0}")]
    Param(String),
    /// A saved model that does not load (wrong format or version, inconsistent arrays).
    #[error("model file: {0}")]
    Model(String),
    /// Training was interrupted (Ctrl-C).
    #[error("training was interrupted")]
    Interrupted,
}

impl TrainError {
    pub fn data(message: impl Into<String>) -> Self {
        TrainError::Data(message.into())
    }
    pub fn param(message: impl Into<String>) -> Self {
        TrainError::Param(message.into())
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
