//! The server crate's error type: what stopped the server from starting or a deployment from
//! being accepted, in words an operator can act on. Request-level failures are HTTP answers
//! (see `http.rs`), not errors of this type.

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration file, flag or deployment spec that does not follow the rules.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },

    /// The registry could not be opened or read.
    #[error(transparent)]
    Registry(#[from] pilothouse_registry::RegistryError),

    /// A file of the payload log could not be read or written.
    #[error("payload log: {0}")]
    Log(String),
}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;
