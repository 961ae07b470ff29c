//! pilothouse-drift: the statistics that tell whether data moved away from a reference.
//! No Python and no I/O.
//!
//! This first part holds the exact raw-data statistics (the two-sample Kolmogorov-Smirnov
//! statistic and p-value, exact or asymptotic as scipy chooses; the Wasserstein-1
//! distance; the chi-square test of homogeneity) and the divergences between binned
//! distributions (PSI, Jensen-Shannon, Hellinger, KL). Mergeable profiles and reports
//! build on it.

mod error;
pub mod kolmogorov;
pub mod stats;

pub use error::{DriftError, Result};
