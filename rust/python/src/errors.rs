//! The Python exception hierarchy and the mapping from each crate's error enum onto it.

use pilothouse_runtime::RuntimeError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

create_exception!(
    pilothouse._core,
    PilothouseError,
    PyException,
    "Root of every pilothouse error."
);
create_exception!(
    pilothouse._core,
    RuntimeUnavailableError,
    PilothouseError,
    "ONNX Runtime could not be loaded."
);
create_exception!(
    pilothouse._core,
    ModelLoadError,
    PilothouseError,
    "A model file is missing, is not ONNX, is corrupt or uses an unsupported opset."
);
create_exception!(
    pilothouse._core,
    InputError,
    PilothouseError,
    "Data given to a model does not fit its signature."
);
create_exception!(
    pilothouse._core,
    InferenceError,
    PilothouseError,
    "ONNX Runtime failed while running valid inputs."
);

pub(crate) fn to_py(err: RuntimeError) -> PyErr {
    let message = err.to_string();
    match err {
        RuntimeError::Unavailable { .. } => RuntimeUnavailableError::new_err(message),
        RuntimeError::ModelLoad { .. } => ModelLoadError::new_err(message),
        RuntimeError::Input { .. } => InputError::new_err(message),
        RuntimeError::Inference(_) => InferenceError::new_err(message),
        RuntimeError::InvalidOption { .. } => PyValueError::new_err(message),
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PilothouseError", py.get_type::<PilothouseError>())?;
    m.add(
        "RuntimeUnavailableError",
        py.get_type::<RuntimeUnavailableError>(),
    )?;
    m.add("ModelLoadError", py.get_type::<ModelLoadError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("InferenceError", py.get_type::<InferenceError>())?;
    Ok(())
}
