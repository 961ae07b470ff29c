//! The Open Inference Protocol (KServe v2) wire format: inference requests in JSON, with the
//! binary tensor data extension that tritonclient uses, and the responses.

mod binary;
mod json_data;
mod request;
mod response;
mod validate;

pub use json_data::*;
pub use request::*;
pub use response::*;
pub use validate::*;

use crate::error::RequestError;

/// A decoded part of a request, or why the request cannot be served as sent (always
/// [`RequestError::BadRequest`], whose message names what was wrong).
type Parsed<T> = std::result::Result<T, RequestError>;

fn bad<T>(message: impl Into<String>) -> Parsed<T> {
    Err(RequestError::BadRequest(message.into()))
}

#[cfg(test)]
mod tests;
