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
