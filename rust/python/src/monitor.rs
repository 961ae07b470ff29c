//! Monitoring for Python: a version's reference profiles (stored and read back), and the
//! stored windows of a deployment read as series (`ph.monitor(...)`), through the same code
//! the server's monitoring endpoints use.

use pilothouse_drift::Profile;
use pilothouse_monitor::series::Side;
use pilothouse_registry as reg;
use pilothouse_server::monitor::{read, store};
use pyo3::prelude::*;

use crate::drift::{parse_options, PyProfile};
use crate::errors::{Result, ValidationError};
use crate::records::object;
use crate::registry::PyRegistry;

/// A version's reference: the profile of its training inputs and of the model's outputs.
#[pyclass(frozen, get_all, module = "pilothouse._core")]
pub struct ReferenceRecord {
    model: String,
    version: i64,
    inputs: Option<Py<PyProfile>>,
    outputs: Option<Py<PyProfile>>,
    rows: i64,
    updated_at: Option<i64>,
    updated_by: Option<String>,
}

fn profile_of(py: Python<'_>, bytes: Option<Vec<u8>>) -> Result<Option<Py<PyProfile>>> {
    match bytes {
        None => Ok(None),
        Some(b) => {
            let inner = Profile::from_bytes(&b)?;
            Ok(Some(Py::new(py, PyProfile { inner })?))
        }
    }
}

/// Stores (or replaces) a version's reference profiles; a side given as None is kept.
#[pyfunction]
#[pyo3(signature = (registry, actor, model, version, inputs, outputs, rows))]
#[allow(clippy::too_many_arguments)]
fn set_reference(
    py: Python<'_>,
    registry: &PyRegistry,
    actor: &str,
    model: &str,
    version: i64,
    inputs: Option<PyRef<'_, PyProfile>>,
    outputs: Option<PyRef<'_, PyProfile>>,
    rows: i64,
) -> Result<()> {
    let new = reg::NewReference {
        inputs: inputs.map(|p| p.inner.to_bytes()),
        outputs: outputs.map(|p| p.inner.to_bytes()),
        rows,
    };
    py.detach(|| registry.inner.set_reference(actor, model, version, &new))?;
    Ok(())
}

/// Stores a version's reference with labels (`data`: bytes the Python side encodes).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn set_label_reference(
    py: Python<'_>,
    registry: &PyRegistry,
    actor: &str,
    model: &str,
    version: i64,
    classes: &str,
    rows: i64,
    data: Vec<u8>,
) -> Result<()> {
    py.detach(|| {
        registry
            .inner
            .set_label_reference(actor, model, version, classes, rows, &data)
    })?;
    Ok(())
}

/// A version's reference with labels as (classes JSON, rows, data bytes), or None.
#[pyfunction]
fn label_reference<'py>(
    py: Python<'py>,
    registry: &PyRegistry,
    model: &str,
    version: i64,
) -> Result<Option<(String, i64, Bound<'py, pyo3::types::PyBytes>)>> {
    let found = py.detach(|| registry.inner.label_reference(model, version))?;
    Ok(found.map(|(classes, rows, data)| (classes, rows, pyo3::types::PyBytes::new(py, &data))))
}

/// The reference of a version, or None.
#[pyfunction]
fn get_reference(
    py: Python<'_>,
    registry: &PyRegistry,
    model: &str,
    version: i64,
) -> Result<Option<ReferenceRecord>> {
    let Some(r) = py.detach(|| registry.inner.reference(model, version))? else {
        return Ok(None);
    };
    Ok(Some(ReferenceRecord {
        inputs: profile_of(py, r.inputs)?,
        outputs: profile_of(py, r.outputs)?,
        model: r.model,
        version: r.version,
        rows: r.rows,
        updated_at: r.updated_at,
        updated_by: r.updated_by,
    }))
}

/// A deployment's stored windows as rows of one series: "drift", "prediction_drift" (with
/// `options` as `ph.drift` takes them), "quality" or "health"; times in microseconds,
/// `window_us` 0 for one row set over the whole period.
#[pyfunction]
#[pyo3(signature = (registry, kind, deployment, since_us=None, until_us=None, window_us=0, version=None, options=None))]
#[allow(clippy::too_many_arguments)]
fn monitor_series(
    py: Python<'_>,
    registry: &PyRegistry,
    kind: &str,
    deployment: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
    window_us: i64,
    version: Option<i64>,
    options: Option<Bound<'_, PyAny>>,
) -> Result<Py<PyAny>> {
    if window_us != 0 && window_us < 1_000_000 {
        return Err(ValidationError::new_err(format!(
            "a monitoring window of {window_us} µs is too short; use at least one second"
        ))
        .into());
    }
    let q = read::Query {
        deployment: deployment.to_string(),
        since_us,
        until_us,
        bucket_us: window_us,
        version,
    };
    let opts = match &options {
        Some(o) => parse_options(o)?,
        None => pilothouse_drift::compare::Options::default(),
    };
    let value = py
        .detach(|| read::series(&registry.inner, kind, &q, &opts))?
        .ok_or_else(|| {
            ValidationError::new_err(format!("no monitoring series '{kind}': {}", read::SERIES))
        })?;
    Ok(object(py, &value)?)
}

/// The merged profile of a deployment's inputs ("inputs") or outputs ("outputs") over a
/// period, or None when nothing was served in it.
#[pyfunction]
#[pyo3(signature = (registry, deployment, side, since_us=None, until_us=None, version=None))]
fn monitor_profile(
    py: Python<'_>,
    registry: &PyRegistry,
    deployment: &str,
    side: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
    version: Option<i64>,
) -> Result<Option<PyProfile>> {
    let side = match side {
        "inputs" => Side::Inputs,
        "outputs" => Side::Outputs,
        other => {
            return Err(ValidationError::new_err(format!(
                "side '{other}': use \"inputs\" or \"outputs\""
            ))
            .into())
        }
    };
    let q = read::Query {
        deployment: deployment.to_string(),
        since_us,
        until_us,
        bucket_us: 0,
        version,
    };
    let merged = py.detach(|| read::profile(&registry.inner, &q, side))?;
    Ok(merged.map(|inner| PyProfile { inner }))
}

/// Rolls finished periods of stored windows up and applies retention, as servers do every
/// minute; `now_us` is the clock to use (tests move it).
#[pyfunction]
#[pyo3(signature = (registry, now_us, fine_days=7, hour_days=90))]
fn monitor_compact(
    py: Python<'_>,
    registry: &PyRegistry,
    now_us: i64,
    fine_days: u32,
    hour_days: u32,
) -> Result<()> {
    let retention = store::Retention {
        fine_days,
        hour_days,
    };
    py.detach(|| store::compact(&registry.inner, now_us, retention))?;
    Ok(())
}

/// One window computed elsewhere: (start µs, length µs, replica, inputs profile, requests).
type Backfill<'py> = (i64, i64, String, PyRef<'py, PyProfile>, i64);

/// Stores windows computed outside a server (a batch job's history, a benchmark): each with
/// the profile of its inputs and its request count.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn monitor_backfill(
    py: Python<'_>,
    registry: &PyRegistry,
    deployment: &str,
    model: &str,
    version: i64,
    route: &str,
    windows: Vec<Backfill<'_>>,
) -> Result<()> {
    let stored: Vec<reg::MonitorWindow> = windows
        .iter()
        .map(|(start_us, length_us, replica, inputs, requests)| {
            let health = pilothouse_monitor::Health {
                requests: u64::try_from(*requests).unwrap_or(0),
                rows: inputs.inner.rows,
                ..Default::default()
            };
            reg::MonitorWindow {
                deployment: deployment.to_string(),
                model: model.to_string(),
                version,
                route: route.to_string(),
                replica: replica.clone(),
                length_us: *length_us,
                start_us: *start_us,
                requests: *requests,
                inputs: Some(inputs.inner.to_bytes()),
                outputs: None,
                health: serde_json::to_string(&health).expect("health serialises"),
                quality: serde_json::to_string(&pilothouse_monitor::Quality::default())
                    .expect("quality serialises"),
                stored_at: 0,
            }
        })
        .collect();
    py.detach(|| registry.inner.put_windows(&stored))?;
    Ok(())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ReferenceRecord>()?;
    m.add_function(wrap_pyfunction!(set_reference, m)?)?;
    m.add_function(wrap_pyfunction!(get_reference, m)?)?;
    m.add_function(wrap_pyfunction!(set_label_reference, m)?)?;
    m.add_function(wrap_pyfunction!(label_reference, m)?)?;
    m.add_function(wrap_pyfunction!(monitor_series, m)?)?;
    m.add_function(wrap_pyfunction!(monitor_profile, m)?)?;
    m.add_function(wrap_pyfunction!(monitor_compact, m)?)?;
    m.add_function(wrap_pyfunction!(monitor_backfill, m)?)?;
    Ok(())
}
