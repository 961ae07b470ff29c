//! Live monitoring inside the server: each loaded version's reference ([`watch`]), the tap
//! that profiles every answered request into time windows off the request path, from the
//! same records as the payload log ([`tap`]), the thread that stores closed windows in the
//! registry and rolls minutes up into hours and days ([`store`]), and the reading of stored
//! windows back as series, for the HTTP API and the Python client ([`read`]), and what is
//! kept of each answered row so that feedback joins it ([`predictions`]).

pub mod alerting;
pub mod predictions;
pub mod process;
pub mod read;
pub mod store;
pub mod tap;
pub mod watch;

pub use watch::Watch;
