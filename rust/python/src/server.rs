//! The model server for Python: start it in the background (the GIL is released for its whole
//! life: it runs on its own threads and never calls back into Python), stop it, read its
//! payload log as Arrow.

use std::path::PathBuf;

use pilothouse_server as srv;
use pyo3::prelude::*;
use pyo3_arrow::PyTable;

use crate::errors::{Result, ValidationError};
use crate::records::{json_of, object};

#[pyclass(module = "pilothouse._core", name = "Server")]
pub struct PyServer {
    inner: Option<srv::Server>,
    url: String,
    log_dir: String,
}

#[pymethods]
impl PyServer {
    /// Starts a server from a dict of configuration keys (and a TOML file, if given).
    #[staticmethod]
    #[pyo3(signature = (config, config_file=None, handle_signals=false))]
    fn start(
        py: Python<'_>,
        config: &Bound<'_, PyAny>,
        config_file: Option<String>,
        handle_signals: bool,
    ) -> Result<Self> {
        let overrides = json_of("the server options", config).map_err(ValidationError::new_err)?;
        let server = py.detach(|| {
            let config = srv::Config::load(config_file.as_deref(), &overrides)?;
            srv::Server::start(config, handle_signals)
        })?;
        Ok(PyServer {
            url: server.url(),
            log_dir: server.log_dir().display().to_string(),
            inner: Some(server),
        })
    }

    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    #[getter]
    fn log_dir(&self) -> &str {
        &self.log_dir
    }

    #[getter]
    fn running(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_running())
    }

    /// Writes the buffered payload-log rows to disk now.
    fn flush(&self, py: Python<'_>) {
        if let Some(s) = &self.inner {
            py.detach(|| s.flush_log());
        }
    }

    /// Stops gracefully: no new connections, requests in flight finish, the log is flushed.
    fn stop(&mut self, py: Python<'_>) {
        if let Some(mut s) = self.inner.take() {
            py.detach(move || s.stop());
        }
    }

    /// Blocks until the server stops (on SIGTERM/SIGINT when started with handle_signals).
    fn wait(&mut self, py: Python<'_>) {
        if let Some(s) = self.inner.as_mut() {
            py.detach(|| s.wait());
        }
        self.inner = None;
    }
}

/// Checks a deployment spec and returns it with every default filled in.
#[pyfunction]
fn normalize_deployment(py: Python<'_>, spec: &Bound<'_, PyAny>) -> Result<Py<PyAny>> {
    let spec = srv::DeploymentSpec::from_json(
        &json_of("the deployment spec", spec).map_err(ValidationError::new_err)?,
    )?;
    Ok(object(py, &spec.to_json())?)
}

/// A deployment's payload log between two times (microseconds since the epoch), as a table.
#[pyfunction]
#[pyo3(signature = (log_dir, deployment, since_us=None, until_us=None))]
fn read_inference_log<'py>(
    py: Python<'py>,
    log_dir: PathBuf,
    deployment: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
) -> Result<Bound<'py, PyAny>> {
    let (schema, batches) =
        py.detach(|| srv::read_log(&log_dir, deployment, since_us, until_us))?;
    Ok(PyTable::try_new(batches, schema)?.into_pyarrow(py)?)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> Result<()> {
    m.add_class::<PyServer>()?;
    m.add_function(wrap_pyfunction!(normalize_deployment, m)?)?;
    m.add_function(wrap_pyfunction!(read_inference_log, m)?)?;
    Ok(())
}
