//! The drift statistics for Python. Private for now (`_core._drift_*`): the public
//! `ph.drift` API builds on them.

use pilothouse_drift::{stats, DriftError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::InputError;

fn to_py(e: DriftError) -> PyErr {
    InputError::new_err(e.to_string())
}

#[pyfunction]
fn _drift_ks_statistic(py: Python<'_>, reference: Vec<f64>, current: Vec<f64>) -> PyResult<f64> {
    py.detach(|| stats::ks_statistic(&reference, &current))
        .map_err(to_py)
}

#[pyfunction]
fn _drift_ks_pvalue_exact(d: f64, n1: usize, n2: usize) -> Option<f64> {
    stats::ks_pvalue_exact(d, n1, n2)
}

#[pyfunction]
fn _drift_ks_pvalue(py: Python<'_>, d: f64, n1: usize, n2: usize) -> f64 {
    py.detach(|| stats::ks_pvalue(d, n1, n2))
}

#[pyfunction]
fn _drift_kolmogorov_sf(py: Python<'_>, n: u64, x: f64) -> f64 {
    py.detach(|| pilothouse_drift::kolmogorov::kolmogorov_sf(n, x))
}

#[pyfunction]
fn _drift_wasserstein(py: Python<'_>, reference: Vec<f64>, current: Vec<f64>) -> PyResult<f64> {
    py.detach(|| stats::wasserstein(&reference, &current))
        .map_err(to_py)
}

#[pyfunction]
fn _drift_chi_square(
    py: Python<'_>,
    reference: Vec<f64>,
    current: Vec<f64>,
) -> PyResult<(f64, f64, usize)> {
    let r = py
        .detach(|| stats::chi_square(&reference, &current))
        .map_err(to_py)?;
    Ok((r.statistic, r.p_value, r.dof))
}

#[pyfunction]
fn _drift_divergences<'py>(
    py: Python<'py>,
    reference: Vec<f64>,
    current: Vec<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("psi", stats::psi(&reference, &current).map_err(to_py)?)?;
    d.set_item(
        "kl",
        stats::kl_divergence(&reference, &current).map_err(to_py)?,
    )?;
    d.set_item(
        "js",
        stats::js_distance(&reference, &current).map_err(to_py)?,
    )?;
    d.set_item(
        "hellinger",
        stats::hellinger(&reference, &current).map_err(to_py)?,
    )?;
    Ok(d)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_drift_ks_statistic, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_wasserstein, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_ks_pvalue_exact, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_ks_pvalue, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_kolmogorov_sf, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_chi_square, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_divergences, m)?)?;
    Ok(())
}
