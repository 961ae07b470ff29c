//! The drift crate's error type.

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DriftError {
    /// A sample or distribution a statistic cannot be computed on.
    #[error("{what}: {reason}")]
    Input { what: String, reason: String },
    /// Bytes or JSON that are not a profile this build can read.
    #[error("{0}")]
    Format(String),
}

pub type Result<T, E = DriftError> = std::result::Result<T, E>;

impl DriftError {
    pub(crate) fn input(what: impl Into<String>, reason: impl Into<String>) -> Self {
        DriftError::Input {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
