//! The Python exception hierarchy, the one error type the bindings return (`Error`: `?`
//! converts every crate's error into it), and the mapping from each crate's error enum onto
//! the hierarchy, one function per crate.

use pilothouse_drift::DriftError;
use pilothouse_monitor::MonitorError;
use pilothouse_registry::RegistryError;
use pilothouse_runtime::RuntimeError;
use pilothouse_server::ServerError;
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
    ProfileFormatError,
    InputError,
    "Bytes or JSON that are not a profile this version can read (corrupt, or newer)."
);
create_exception!(
    pilothouse._core,
    InferenceError,
    PilothouseError,
    "ONNX Runtime failed while running valid inputs."
);

create_exception!(
    pilothouse._core,
    NotFoundError,
    PilothouseError,
    "A model, version, alias, run or approval does not exist."
);
create_exception!(
    pilothouse._core,
    ConflictError,
    PilothouseError,
    "The operation contradicts what is stored."
);
create_exception!(
    pilothouse._core,
    ApprovalRequiredError,
    PilothouseError,
    "A guarded alias needs an approval by another person."
);
create_exception!(
    pilothouse._core,
    IntegrityError,
    PilothouseError,
    "Stored data does not match its hash, or the audit chain is broken."
);
create_exception!(
    pilothouse._core,
    StoreUnavailableError,
    PilothouseError,
    "The registry database cannot be reached or written."
);
create_exception!(
    pilothouse._core,
    ValidationError,
    PilothouseError,
    "A name, URI, filter or option that does not follow the rules."
);

/// Every error a binding can return. PyO3 raises it as the exception its variant maps to.
pub(crate) enum Error {
    Py(PyErr),
    Runtime(RuntimeError),
    Registry(RegistryError),
    Drift(DriftError),
    Server(ServerError),
    Monitor(MonitorError),
}

/// What the bindings return: `?` works on any crate's result and on Python's.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! from_each {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(e)
            }
        }
    )*};
}
from_each!(
    Py(PyErr),
    Runtime(RuntimeError),
    Registry(RegistryError),
    Drift(DriftError),
    Server(ServerError),
    Monitor(MonitorError)
);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Py(e) => e,
            Error::Runtime(e) => runtime_to_py(e),
            Error::Registry(e) => registry_to_py(e),
            Error::Drift(e) => drift_to_py(e),
            Error::Server(e) => server_to_py(e),
            Error::Monitor(e) => monitor_to_py(e),
        }
    }
}

fn registry_to_py(err: RegistryError) -> PyErr {
    let message = err.to_string();
    match err {
        RegistryError::NotFound { .. } => NotFoundError::new_err(message),
        RegistryError::Conflict(_) => ConflictError::new_err(message),
        RegistryError::ApprovalRequired(_) => ApprovalRequiredError::new_err(message),
        RegistryError::Integrity(_) => IntegrityError::new_err(message),
        RegistryError::StoreUnavailable { .. } => StoreUnavailableError::new_err(message),
        RegistryError::Invalid { .. } => ValidationError::new_err(message),
        RegistryError::Store(_) => PilothouseError::new_err(message),
        RegistryError::Io { ref source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => pyo3::exceptions::PyFileNotFoundError::new_err(message),
            std::io::ErrorKind::PermissionDenied => {
                pyo3::exceptions::PyPermissionError::new_err(message)
            }
            _ => pyo3::exceptions::PyOSError::new_err(message),
        },
    }
}

fn drift_to_py(e: DriftError) -> PyErr {
    match e {
        DriftError::Format(_) => ProfileFormatError::new_err(e.to_string()),
        DriftError::Input { .. } => InputError::new_err(e.to_string()),
    }
}

fn server_to_py(err: ServerError) -> PyErr {
    let message = err.to_string();
    match err {
        ServerError::Config(_) => ValidationError::new_err(message),
        ServerError::Bind { .. } => pyo3::exceptions::PyOSError::new_err(message),
        ServerError::Registry(e) => registry_to_py(e),
        ServerError::Log(_) => PilothouseError::new_err(message),
        ServerError::Monitor(e) => monitor_to_py(e),
    }
}

fn monitor_to_py(err: MonitorError) -> PyErr {
    match err {
        MonitorError::Drift(e) => drift_to_py(e),
        MonitorError::Invalid(_) => ValidationError::new_err(err.to_string()),
    }
}

fn runtime_to_py(err: RuntimeError) -> PyErr {
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
    m.add("ProfileFormatError", py.get_type::<ProfileFormatError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    m.add(
        "ApprovalRequiredError",
        py.get_type::<ApprovalRequiredError>(),
    )?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add(
        "StoreUnavailableError",
        py.get_type::<StoreUnavailableError>(),
    )?;
    m.add("ValidationError", py.get_type::<ValidationError>())?;
    Ok(())
}
