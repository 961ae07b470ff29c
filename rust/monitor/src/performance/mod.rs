//! A classifier's performance: realized metrics where labels are known ([`metrics`]), and
//! estimated ones where they are not yet, from the model's own calibrated probabilities
//! ([`cbpe`], fitted with an [`isotonic`] calibration on reference rows with labels); log
//! loss, calibration error, the confusion matrix and regression errors ([`realized`]).

pub mod cbpe;
pub mod isotonic;
pub mod metrics;
pub mod realized;

pub use cbpe::{Cbpe, ChunkEstimate, Estimated, Options};
pub use metrics::{realized, Metric, Rows, UNKNOWN};
