//! The runtime crate's error type: every failure a caller can act on, by kind.

use std::path::PathBuf;

/// Everything that can go wrong while locating ONNX Runtime, loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The ONNX Runtime shared library could not be loaded (missing, not a library, too old).
    #[error("ONNX Runtime is unavailable: {reason} (looked at {}). {hint}", .path.display())]
    Unavailable {
        path: PathBuf,
        reason: String,
        hint: String,
    },

    /// The model file could not be read or ONNX Runtime refused it.
    #[error("cannot load model {}: {cause}", .path.display())]
    ModelLoad { path: PathBuf, cause: String },

    /// The caller's data does not fit the model's signature.
    #[error("input '{input}': {message}")]
    Input { input: String, message: String },

    /// ONNX Runtime failed while running a valid request.
    #[error("inference failed: {0}")]
    Inference(String),

    /// An option has a value outside its domain.
    #[error("invalid option {option}: {message}")]
    InvalidOption { option: String, message: String },
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl RuntimeError {
    pub(crate) fn input(input: impl Into<String>, message: impl Into<String>) -> Self {
        RuntimeError::Input {
            input: input.into(),
            message: message.into(),
        }
    }

    pub(crate) fn load(path: impl Into<PathBuf>, cause: impl std::fmt::Display) -> Self {
        RuntimeError::ModelLoad {
            path: path.into(),
            cause: cause.to_string(),
        }
    }
}
