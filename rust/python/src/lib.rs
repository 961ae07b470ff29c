//! pilothouse-python: the PyO3 bindings. Converts Python objects to the crates' types,
//! releases the GIL around the work, and maps each crate's errors to Python exceptions.

use pyo3::prelude::*;

// The server allocates per request on several threads; mimalloc keeps that fast and keeps
// resident memory from growing with glibc's per-thread arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod drift;
mod errors;
mod model;
mod registry;
mod server;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    model::register(m)?;
    registry::register(m)?;
    drift::register(m)?;
    server::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
