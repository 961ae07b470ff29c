//! The monitor's one error type.

use pilothouse_drift::DriftError;

pub type Result<T, E = MonitorError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Data that cannot be profiled or checked (columns that change within a window, ...).
    #[error(transparent)]
    Drift(#[from] DriftError),
    /// A window length or time that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

impl MonitorError {
    /// Input that cannot be used, naming what it was (`y_pred: class index 3 is not ...`).
    pub fn input(what: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        MonitorError::Invalid(format!("{what}: {message}"))
    }
}
