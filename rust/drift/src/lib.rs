//! pilothouse-drift: the statistics that tell whether data moved away from a reference.
//! No Python and no I/O: it works on Arrow arrays and on plain slices.
//!
//! - [`profile`]: mergeable column profiles built from Arrow record batches in parallel
//!   (moments, a log-linear histogram on one fixed grid, category frequencies, a distinct
//!   count), with a versioned byte and JSON format.
//! - [`stats`]: the exact raw-data statistics, each equal to scipy's (two-sample
//!   Kolmogorov-Smirnov with its p-value, Wasserstein-1, Cramer-von Mises, chi-square) and
//!   the divergences between binned distributions (PSI, Jensen-Shannon, Hellinger, KL).
//! - [`compare`]: the drift report between two profiles (approximate, within the grid's
//!   bound) or two in-memory datasets (exact), with data-quality checks.

pub mod categories;
pub mod compare;
mod error;
pub mod grid;
pub mod kolmogorov;
pub mod profile;
pub mod stats;

pub use error::{DriftError, Result};
pub use profile::{ColumnProfile, Kind, Profile, ProfileBuilder};
