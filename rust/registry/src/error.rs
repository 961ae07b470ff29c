//! The registry's error type: what went wrong, by kind, in words a user can act on.

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A model, version, alias, run or approval that does not exist.
    #[error("{kind} not found: {name}")]
    NotFound { kind: &'static str, name: String },

    /// The operation contradicts what is stored (a duplicate, a wrong state).
    #[error("conflict: {0}")]
    Conflict(String),

    /// A guarded alias was moved without an approval, or an approval broke the rules.
    #[error("approval required: {0}")]
    ApprovalRequired(String),

    /// Stored data does not match its hash, or the audit chain is broken.
    #[error("integrity check failed: {0}")]
    Integrity(String),

    /// The database cannot be reached or opened. `uri` never carries a password.
    #[error("registry store unavailable at {uri}: {reason}")]
    StoreUnavailable { uri: String, reason: String },

    /// A name, alias, URI or query that does not follow the rules.
    #[error("invalid {what} '{value}': {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },

    /// The database refused a statement for another reason.
    #[error("registry store error: {0}")]
    Store(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        RegistryError::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub(crate) fn invalid(
        what: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        RegistryError::Invalid {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RegistryError::Io {
            context: context.into(),
            source,
        }
    }
}
