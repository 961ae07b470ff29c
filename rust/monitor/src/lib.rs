//! pilothouse-monitor: what a deployment's traffic looks like over time. Pure: it works on
//! Arrow record batches and plain numbers, depends on the drift crate, and has no HTTP and
//! no store (the server feeds it and stores what it closes; readers merge what is stored).
//!
//! - [`window`]: tumbling time windows per deployment, version and route, each profiling
//!   the inputs and outputs it saw and counting its health and quality; closed windows
//!   merge exactly, so windows of many replicas, or of many minutes, add up to one.
//! - [`health`]: requests and errors by status, latency, queue wait, inference time and
//!   batch size as mergeable summaries with quantiles; a latency anomaly test.
//! - [`series`]: stored windows read back: merged into longer windows and compared with the
//!   reference, a row per column and window.
//! - [`performance`]: a classifier's realized metrics, and its estimated ones where labels
//!   are missing (confidence-based performance estimation, CBPE).
//! - [`quality`]: the checks of served data against a reference profile (missing and extra
//!   columns, wrong types, nulls, values out of range, unseen categories).
//! - [`alert`]: alert rules' conditions over a window's series and their states (pending,
//!   firing, resolved).

pub mod alert;
mod error;
pub mod health;
pub mod performance;
pub mod quality;
pub mod series;
pub mod window;

pub use error::{MonitorError, Result};
pub use health::{latency_anomaly, Anomaly, Health, Observation, Summary, MIN_BASELINE};
pub use quality::{Check, Expectations, Quality};
pub use window::{Closed, Key, Window, Windows};
