//! Profiles and drift reports for Python. Arrow data arrives through the PyCapsule
//! interface; the work runs with the GIL released.

use pilothouse_drift::compare::{self, Method, Options};
use pilothouse_drift::grid::Buckets;
use pilothouse_drift::{stats, DriftError, Profile, ProfileBuilder};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3_arrow::input::AnyRecordBatch;
use serde_json::{json, Value};

use crate::errors::{Error, InputError, Result};
use crate::records::{json_of, object};

fn read_all(data: AnyRecordBatch) -> Result<Box<dyn arrow_array::RecordBatchReader + Send>> {
    Ok(Box::new(data.into_reader()?))
}

fn arrow_error(e: arrow_schema::ArrowError) -> DriftError {
    DriftError::Input {
        what: "data".into(),
        reason: format!("could not read the Arrow data: {e}"),
    }
}

/// A dataset's profile (the Rust value behind `pilothouse.Profile`).
#[pyclass(name = "ProfileData", module = "pilothouse._core", frozen)]
pub struct PyProfile {
    pub(crate) inner: Profile,
}

#[pymethods]
impl PyProfile {
    #[getter]
    fn rows(&self) -> u64 {
        self.inner.rows
    }

    #[getter]
    fn columns(&self) -> Vec<String> {
        self.inner.columns.iter().map(|c| c.name.clone()).collect()
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.detach(|| self.inner.to_bytes());
        PyBytes::new(py, &bytes)
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> Result<Self> {
        let inner = py.detach(|| Profile::from_bytes(data))?;
        Ok(PyProfile { inner })
    }

    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.to_json())
    }

    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> Result<Self> {
        let inner = py.detach(|| Profile::from_json(text))?;
        Ok(PyProfile { inner })
    }

    #[staticmethod]
    fn merge(py: Python<'_>, parts: Vec<PyRef<'_, PyProfile>>) -> Result<Self> {
        let parts: Vec<Profile> = parts.iter().map(|p| p.inner.clone()).collect();
        let inner = py.detach(|| Profile::merge(&parts))?;
        Ok(PyProfile { inner })
    }

    /// Per-column summaries (for reprs and `to_pandas`).
    #[pyo3(signature = (columns=None))]
    fn summary(&self, py: Python<'_>, columns: Option<Vec<String>>) -> Result<Py<PyAny>> {
        let summary = py.detach(|| summary(&self.inner, columns.as_deref()));
        Ok(object(py, &summary)?)
    }

    /// Quantiles of a numeric column, read from its histogram.
    fn quantiles(&self, column: &str, qs: Vec<f64>) -> Result<Vec<Option<f64>>> {
        let c = self.inner.column(column).ok_or_else(|| {
            InputError::new_err(format!(
                "column '{column}': the profile has no such column (it has {:?})",
                self.columns()
            ))
        })?;
        let n = c.numeric.as_ref().ok_or_else(|| {
            InputError::new_err(format!(
                "column '{column}': it is {}, and quantiles need numbers",
                c.kind.name()
            ))
        })?;
        let b = n.buckets();
        Ok(qs.into_iter().map(|q| b.quantile(q)).collect())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyProfile>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }
}

fn summary(p: &Profile, only: Option<&[String]>) -> Value {
    let cols: Vec<Value> = p
        .columns
        .iter()
        .filter(|c| only.is_none_or(|names| names.contains(&c.name)))
        .map(|c| {
            let mut v = json!({
                "column": c.name, "kind": c.kind.name(), "dtype": c.dtype,
                "rows": c.rows, "nulls": c.nulls, "missing_rate": c.missing_rate(),
            });
            if let Some(n) = &c.numeric {
                let b: Buckets = n.buckets();
                let integer = c.kind == pilothouse_drift::Kind::Integer;
                v["nan"] = json!(n.nan);
                v["inf"] = json!(n.pos_inf + n.neg_inf);
                v["mean"] = json!((n.finite() > 0).then_some(n.moments.mean));
                v["std"] = json!((n.finite() > 0).then_some(n.moments.std()));
                v["min"] = json!(n.min);
                v["max"] = json!(n.max);
                v["p05"] = json!(b.quantile(0.05));
                v["p50"] = json!(b.quantile(0.5));
                v["p95"] = json!(b.quantile(0.95));
                v["rank_error"] = json!(b.rank_error(integer));
            }
            if let Some(k) = &c.categories {
                v["distinct"] = json!(k.distinct());
                v["exact"] = json!(k.exact());
                v["undercount"] = json!(k.undercount());
                let top: Vec<Value> = k
                    .sorted()
                    .into_iter()
                    .take(5)
                    .map(|(name, n)| json!([name, n]))
                    .collect();
                v["top"] = json!(top);
            }
            v
        })
        .collect();
    json!({"rows": p.rows, "columns": cols})
}

/// Profiles data batch by batch.
#[pyclass(name = "ProfileBuilder", module = "pilothouse._core")]
pub struct PyProfileBuilder {
    inner: Option<ProfileBuilder>,
}

#[pymethods]
impl PyProfileBuilder {
    #[new]
    fn new() -> Self {
        PyProfileBuilder {
            inner: Some(ProfileBuilder::default()),
        }
    }

    /// Adds Arrow data (a batch, a table or a stream); returns the rows seen so far.
    fn update(&mut self, py: Python<'_>, data: AnyRecordBatch) -> Result<u64> {
        let reader = read_all(data)?;
        let builder = self
            .inner
            .as_mut()
            .ok_or_else(|| InputError::new_err("this profile builder is already finished"))?;
        let rows = py.detach(|| {
            for batch in reader {
                builder.update(&batch.map_err(arrow_error)?)?;
            }
            Ok::<_, DriftError>(builder.rows())
        })?;
        Ok(rows)
    }

    fn finish(&mut self) -> Result<PyProfile> {
        let builder = self
            .inner
            .take()
            .ok_or_else(|| InputError::new_err("this profile builder is already finished"))?;
        Ok(PyProfile {
            inner: builder.finish()?,
        })
    }
}

pub(crate) fn parse_options(options: &Bound<'_, PyAny>) -> Result<Options> {
    let v = json_of("the drift options", options).map_err(InputError::new_err)?;
    let mut o = Options::default();
    let method = |m: &Value| -> Result<Option<Method>> {
        match m.as_str() {
            None | Some("auto") => Ok(None),
            Some(name) => Method::parse(name).map(Some).map_err(Error::from),
        }
    };
    o.method = method(&v["method"])?;
    if let Some(cols) = v["column_methods"].as_object() {
        for (k, m) in cols {
            if let Some(m) = method(m)? {
                o.column_methods.insert(k.clone(), m);
            }
        }
    }
    o.threshold = v["threshold"].as_f64();
    if let Some(cols) = v["column_thresholds"].as_object() {
        for (k, t) in cols {
            let t = t.as_f64().ok_or_else(|| {
                InputError::new_err(format!("threshold for column '{k}' is not a number"))
            })?;
            o.column_thresholds.insert(k.clone(), t);
        }
    }
    if let Some(cols) = v["categorical"].as_array() {
        o.categorical = cols
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
    }
    if let Some(s) = v["drift_share"].as_f64() {
        o.drift_share = s;
    }
    if let Some(s) = v["missing_rate_change"].as_f64() {
        o.missing_rate_change = s;
    }
    Ok(o)
}

/// A drift report as Python objects: non-finite numbers become None, as JSON has them.
fn report(py: Python<'_>, report: &impl serde::Serialize) -> Result<Py<PyAny>> {
    let value = serde_json::to_value(report).expect("reports serialise");
    Ok(object(py, &value)?)
}

/// Compares two profiles; returns the report.
#[pyfunction]
fn drift_profiles(
    py: Python<'_>,
    reference: &PyProfile,
    current: &PyProfile,
    options: &Bound<'_, PyAny>,
) -> Result<Py<PyAny>> {
    let opts = parse_options(options)?;
    let r = py.detach(|| compare::compare_profiles(&reference.inner, &current.inner, &opts))?;
    report(py, &r)
}

/// Compares two in-memory datasets exactly; returns the report.
#[pyfunction]
fn drift_exact(
    py: Python<'_>,
    reference: AnyRecordBatch,
    current: AnyRecordBatch,
    options: &Bound<'_, PyAny>,
) -> Result<Py<PyAny>> {
    let opts = parse_options(options)?;
    let (r, c) = (read_all(reference)?, read_all(current)?);
    let r = py.detach(|| {
        let r: Vec<_> = r.collect::<Result<_, _>>().map_err(arrow_error)?;
        let c: Vec<_> = c.collect::<Result<_, _>>().map_err(arrow_error)?;
        compare::compare_exact(&r, &c, &opts)
    })?;
    report(py, &r)
}

#[pyfunction]
fn _drift_ks_statistic(py: Python<'_>, reference: Vec<f64>, current: Vec<f64>) -> Result<f64> {
    Ok(py.detach(|| stats::ks_statistic(&reference, &current))?)
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
fn _drift_wasserstein(py: Python<'_>, reference: Vec<f64>, current: Vec<f64>) -> Result<f64> {
    Ok(py.detach(|| stats::wasserstein(&reference, &current))?)
}

#[pyfunction]
fn _drift_cramer_von_mises(
    py: Python<'_>,
    mut reference: Vec<f64>,
    mut current: Vec<f64>,
) -> Result<(f64, f64)> {
    let r = py.detach(|| {
        reference.sort_by(f64::total_cmp);
        current.sort_by(f64::total_cmp);
        stats::cramer_von_mises_sorted(&reference, &current)
    })?;
    Ok((r.statistic, r.p_value))
}

#[pyfunction]
fn _drift_chi_square(
    py: Python<'_>,
    reference: Vec<f64>,
    current: Vec<f64>,
) -> Result<(f64, f64, usize)> {
    let r = py.detach(|| stats::chi_square(&reference, &current))?;
    Ok((r.statistic, r.p_value, r.dof))
}

#[pyfunction]
fn _drift_divergences<'py>(
    py: Python<'py>,
    reference: Vec<f64>,
    current: Vec<f64>,
) -> Result<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("psi", stats::psi(&reference, &current)?)?;
    d.set_item("kl", stats::kl_divergence(&reference, &current)?)?;
    d.set_item("js", stats::js_distance(&reference, &current)?)?;
    d.set_item("hellinger", stats::hellinger(&reference, &current)?)?;
    Ok(d)
}

/// Data quality of `data` against what a reference profile says its columns hold (the
/// checks the server runs on served rows): `{"rows": n, "issues": {column: {check: rows}}}`.
/// Read batch by batch, without the GIL, each batch's columns checked on rayon's threads
/// (`RAYON_NUM_THREADS` caps them).
#[pyfunction]
fn check_quality<'py>(
    py: Python<'py>,
    reference: PyRef<'_, PyProfile>,
    data: AnyRecordBatch,
) -> Result<Bound<'py, PyDict>> {
    let reader = read_all(data)?;
    let expectations = pilothouse_monitor::Expectations::from_profile(&reference.inner);
    let quality = py.detach(|| {
        let mut total = pilothouse_monitor::Quality::default();
        for batch in reader {
            total.merge(&expectations.check_parallel(&batch.map_err(arrow_error)?));
        }
        Ok::<_, DriftError>(total)
    })?;
    let out = PyDict::new(py);
    out.set_item("rows", quality.rows)?;
    let issues = PyDict::new(py);
    for (column, checks) in &quality.issues {
        let counts = PyDict::new(py);
        for (check, n) in checks {
            counts.set_item(check.name(), n)?;
        }
        issues.set_item(column, counts)?;
    }
    out.set_item("issues", issues)?;
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> Result<()> {
    m.add_class::<PyProfile>()?;
    m.add_class::<PyProfileBuilder>()?;
    m.add_function(wrap_pyfunction!(drift_profiles, m)?)?;
    m.add_function(wrap_pyfunction!(check_quality, m)?)?;
    m.add_function(wrap_pyfunction!(drift_exact, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_ks_statistic, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_wasserstein, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_cramer_von_mises, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_ks_pvalue_exact, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_ks_pvalue, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_kolmogorov_sf, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_chi_square, m)?)?;
    m.add_function(wrap_pyfunction!(_drift_divergences, m)?)?;
    Ok(())
}
