//! pilothouse-python: the PyO3 bindings. Converts Python objects to the crates' types,
//! releases the GIL around the work, and maps each crate's errors to Python exceptions.

use pyo3::prelude::*;

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
