//! The server crate's two error types: `ServerError`, what stopped the server from starting or
//! a deployment from being accepted, in words an operator can act on; and `RequestError`, why
//! one request gets no outputs, each kind with the one HTTP status it is answered with (the
//! transport turns it into the protocol's `{"error": "..."}` body).

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

    /// Monitoring data that cannot be merged or compared.
    #[error(transparent)]
    Monitor(#[from] pilothouse_monitor::MonitorError),
}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// Why a request was not answered with outputs. The message names what was wrong; the kind
/// decides the HTTP status (`status`), and nothing else does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request cannot be served as sent (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such endpoint, deployment or version (404).
    #[error("{0}")]
    NotFound(String),
    /// The endpoint exists, not for this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body did not arrive in time (408).
    #[error("{0}")]
    BodyTimeout(String),
    /// The body is over the size limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// A `Content-Encoding` this server does not decode (415).
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// The model failed on inputs that passed every check (500).
    #[error("{0}")]
    Inference(String),
    /// Busy or not ready: the same request may succeed shortly (503, with Retry-After).
    #[error("{0}")]
    Unavailable(String),
    /// No answer within the deployment's or the request's timeout (504).
    #[error("{0}")]
    Timeout(String),
}

impl RequestError {
    /// The HTTP status this kind of failure is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::NotFound(_) => 404,
            RequestError::MethodNotAllowed(_) => 405,
            RequestError::BodyTimeout(_) => 408,
            RequestError::TooLarge(_) => 413,
            RequestError::UnsupportedEncoding(_) => 415,
            RequestError::Inference(_) => 500,
            RequestError::Unavailable(_) => 503,
            RequestError::Timeout(_) => 504,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            RequestError::BadRequest(m)
            | RequestError::NotFound(m)
            | RequestError::MethodNotAllowed(m)
            | RequestError::BodyTimeout(m)
            | RequestError::TooLarge(m)
            | RequestError::UnsupportedEncoding(m)
            | RequestError::Inference(m)
            | RequestError::Unavailable(m)
            | RequestError::Timeout(m) => m,
        }
    }
}
