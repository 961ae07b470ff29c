//! pilothouse-server: the model server. Open Inference Protocol v2 over HTTP (axum on a tokio
//! runtime this crate owns), deployments followed from the registry with hot swap, weighted
//! and sticky routes, shadow traffic, dynamic batching, a Parquet payload log and Prometheus
//! metrics. Depends on the runtime and registry crates through their public types only.

mod config;
mod encoding;
mod error;
mod http;
mod listen;
mod metrics;
pub mod monitor;
mod paylog;
mod protocol;
mod sched;
mod server;
mod serving;
mod spec;
mod stats;

pub use config::Config;
pub use error::RequestError;
pub use error::{Result, ServerError};
pub use paylog::{read as read_log, schema as log_schema};
/// The request decoder, public so that the fuzz tests (and tools) can drive it directly.
pub use protocol::{parse_request, InferRequest};
pub use server::Server;
pub use spec::{Batching, DeploymentSpec, LogPolicy, Monitoring, Route, Target, Validation};

pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
