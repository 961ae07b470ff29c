//! pilothouse-registry: the system of record. Runs with params and metrics, model versions
//! (numbered per model, content-addressed artifacts), aliases with their full history,
//! approvals for guarded aliases, lineage, a hash-chained audit log and webhooks, over
//! SQLite (embedded) or PostgreSQL (teams) behind one `Store` trait.

mod artifacts;
mod audit;
mod backends;
mod error;
mod names;
mod pgconn;
mod query;
mod records;
mod registry;
mod store;
mod webhooks;

pub mod files;

/// Now, in microseconds since the Unix epoch (UTC): the registry's one clock.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub use artifacts::{sha256_hex, ArtifactStore};
pub use audit::Anchor as AuditAnchor;
pub use backends::{open as open_store, redact, Location, PostgresStore, SqliteStore};
pub use error::{RegistryError, Result};
pub use names::deployment as check_deployment_name;
pub use query::parse_time;
pub use records::{
    AliasMove, Approval, AuditEvent, AuditHead, CheckRecord, DatasetInfo, Delivery, Deployment,
    DriftResult, Lineage, MetricPoint, ModelSummary, MonitorWindow, NewReference, Parent,
    Reference, Run, RunCode, ToJson, Version, WindowQuery,
};
pub use registry::{
    parse_uri, Alert, AlertRule, AlertStep, Channel, Dataset, Feedback, FeedbackCounts, Labelled,
    NewAlertRule, NewChannel, NewFeedback, NewRun, NewVersion, Prediction, Registry, Silence,
    Target, VersionRef, ACTIONS, ANY_SUITE, CHANNEL_KINDS, SEVERITIES,
};
pub use store::{Row, Store, Tx, Value};
pub use webhooks::{sign, Event, RetryPolicy};
