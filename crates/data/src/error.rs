//! The data layer's one error type.
//!
//! Every variant says what the user can fix: the file, and where it can be known, the line, row
//! and column. The CLI maps [`DataError`] to exit code 2 (usage or input error); checks that ran
//! and failed are results, not errors.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or is not a well-formed table.
    #[error("{file}: {message}")]
    Input { file: String, message: String },
    /// A request that cannot be carried out on valid data: an unknown column or method, a bad
    /// option, a suite that does not parse.
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub fn input(file: &Path, message: impl Into<String>) -> Self {
        DataError::Input { file: file.display().to_string(), message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        DataError::Invalid(message.into())
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
