//! Serving: what happens to a request between the transport and the model. The data plane
//! (find, admit, route, check, submit, taps), the deployments followed from the registry
//! (load, warm up, swap, readiness) and the batcher (bounded queue, coalescing, split back).

pub mod batcher;
pub mod dataplane;
pub mod deployments;
