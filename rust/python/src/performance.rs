//! Performance estimation for Python: numpy columns in (class codes, probabilities, chunk
//! bounds, made by `pilothouse.performance`), the monitor crate's CBPE run without the GIL,
//! one column per result field out.

use numpy::PyReadonlyArray1;
use pilothouse_monitor::performance::realized as realized_extra;
use pilothouse_monitor::performance::{realized, Cbpe, ChunkEstimate, Metric, Options, Rows};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{Result, ValidationError};

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> Result<&'a [T]> {
    a.as_slice().map_err(|_| {
        ValidationError::new_err(format!("{what}: expected a contiguous array")).into()
    })
}

fn chunks(bounds: Vec<(usize, usize)>) -> Vec<std::ops::Range<usize>> {
    bounds.into_iter().map(|(s, e)| s..e).collect()
}

/// CBPE fitted on the reference and run on the analysis rows: a dict of equal-length lists
/// (`period`, `chunk`, `start`, `end`, `labelled`, `metric`, `estimate`, ...), reference
/// chunks first, and `calibrated` (per class; binary: one).
#[pyfunction]
#[pyo3(signature = (classes, reference, reference_chunks, analysis, analysis_chunks, metrics, band_sigmas=3.0, threshold_sigmas=3.0))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn estimate_performance<'py>(
    py: Python<'py>,
    classes: usize,
    reference: (
        PyReadonlyArray1<'py, u32>,
        PyReadonlyArray1<'py, u32>,
        PyReadonlyArray1<'py, f64>,
    ),
    reference_chunks: Vec<(usize, usize)>,
    analysis: (
        PyReadonlyArray1<'py, u32>,
        Option<PyReadonlyArray1<'py, u32>>,
        PyReadonlyArray1<'py, f64>,
    ),
    analysis_chunks: Vec<(usize, usize)>,
    metrics: Vec<String>,
    band_sigmas: f64,
    threshold_sigmas: f64,
) -> Result<Bound<'py, PyDict>> {
    let metrics = metrics
        .iter()
        .map(|m| Metric::parse(m))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if !(band_sigmas.is_finite()
        && band_sigmas >= 0.0
        && threshold_sigmas.is_finite()
        && threshold_sigmas >= 0.0)
    {
        return Err(ValidationError::new_err(
            "band_sigmas and threshold_sigmas must be numbers of at least 0",
        )
        .into());
    }
    let options = Options {
        metrics,
        band_sigmas,
        threshold_sigmas,
    };
    let (r_pred, r_true, r_proba) = &reference;
    let (a_pred, a_true, a_proba) = &analysis;
    let r_pred = slice(r_pred, "reference y_pred")?;
    let r_true = slice(r_true, "reference y_true")?;
    let r_proba = slice(r_proba, "reference y_pred_proba")?;
    let a_pred = slice(a_pred, "analysis y_pred")?;
    let a_true = a_true
        .as_ref()
        .map(|t| slice(t, "analysis y_true"))
        .transpose()?;
    let a_proba = slice(a_proba, "analysis y_pred_proba")?;
    let (reference_chunks, analysis_chunks) = (chunks(reference_chunks), chunks(analysis_chunks));
    let (calibrated, reference, analysis) = py.detach(|| {
        let reference_rows = Rows::new(classes, r_pred, Some(r_true), r_proba)
            .map_err(|e| prefixed("reference", e))?;
        let analysis_rows =
            Rows::new(classes, a_pred, a_true, a_proba).map_err(|e| prefixed("analysis", e))?;
        let cbpe = Cbpe::fit(&reference_rows, &reference_chunks, options)?;
        let analysis = cbpe.estimate(&analysis_rows, &analysis_chunks)?;
        Ok::<_, pilothouse_monitor::MonitorError>((
            cbpe.calibrated(),
            cbpe.reference().to_vec(),
            analysis,
        ))
    })?;
    let out = PyDict::new(py);
    let mut columns = Columns::default();
    columns.add("reference", &reference);
    columns.add("analysis", &analysis);
    columns.into_dict(&out)?;
    out.set_item("calibrated", calibrated)?;
    Ok(out)
}

fn prefixed(what: &str, e: pilothouse_monitor::MonitorError) -> pilothouse_monitor::MonitorError {
    pilothouse_monitor::MonitorError::input(what, e)
}

#[derive(Default)]
struct Columns {
    period: Vec<&'static str>,
    chunk: Vec<usize>,
    start: Vec<usize>,
    end: Vec<usize>,
    labelled: Vec<usize>,
    metric: Vec<&'static str>,
    estimate: Vec<f64>,
    sampling_error: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    lower_threshold: Vec<Option<f64>>,
    upper_threshold: Vec<Option<f64>>,
    alert: Vec<bool>,
    realized: Vec<f64>,
}

impl Columns {
    fn add(&mut self, period: &'static str, chunks: &[ChunkEstimate]) {
        for (i, c) in chunks.iter().enumerate() {
            for v in &c.values {
                self.period.push(period);
                self.chunk.push(i);
                self.start.push(c.start);
                self.end.push(c.end);
                self.labelled.push(c.labelled);
                self.metric.push(v.metric.name());
                self.estimate.push(v.estimate);
                self.sampling_error.push(v.sampling_error);
                self.lower.push(v.lower);
                self.upper.push(v.upper);
                self.lower_threshold.push(v.lower_threshold);
                self.upper_threshold.push(v.upper_threshold);
                self.alert.push(v.alert);
                self.realized.push(v.realized);
            }
        }
    }

    fn into_dict(self, d: &Bound<'_, PyDict>) -> PyResult<()> {
        d.set_item("period", self.period)?;
        d.set_item("chunk", self.chunk)?;
        d.set_item("start", self.start)?;
        d.set_item("end", self.end)?;
        d.set_item("labelled", self.labelled)?;
        d.set_item("metric", self.metric)?;
        d.set_item("estimate", self.estimate)?;
        d.set_item("sampling_error", self.sampling_error)?;
        d.set_item("lower", self.lower)?;
        d.set_item("upper", self.upper)?;
        d.set_item("lower_threshold", self.lower_threshold)?;
        d.set_item("upper_threshold", self.upper_threshold)?;
        d.set_item("alert", self.alert)?;
        d.set_item("realized", self.realized)?;
        Ok(())
    }
}

/// Checks that `bounds` are ranges within `n` rows.
fn checked(bounds: Vec<(usize, usize)>, n: usize) -> Result<Vec<std::ops::Range<usize>>> {
    if let Some((s, e)) = bounds.iter().find(|(s, e)| s > e || *e > n) {
        return Err(ValidationError::new_err(format!(
            "group bounds {s}..{e} do not lie within the {n} rows"
        ))
        .into());
    }
    Ok(chunks(bounds))
}

/// The realized metrics of a classifier's rows per group (`bounds`: the groups' row
/// ranges): a dict of one list per metric (`accuracy`, `precision`, `recall`, `f1`,
/// `specificity`, `roc_auc`, `log_loss`, `calibration_error`) and `confusion` (each
/// group's matrix, row-major, true class by predicted class).
#[pyfunction]
fn realized_classification<'py>(
    py: Python<'py>,
    classes: usize,
    y_pred: PyReadonlyArray1<'py, u32>,
    y_true: PyReadonlyArray1<'py, u32>,
    proba: PyReadonlyArray1<'py, f64>,
    bounds: Vec<(usize, usize)>,
) -> Result<Bound<'py, PyDict>> {
    let (y_pred, y_true, proba) = (
        slice(&y_pred, "y_pred")?,
        slice(&y_true, "y_true")?,
        slice(&proba, "y_pred_proba")?,
    );
    let groups = checked(bounds, y_pred.len())?;
    let (values, confusion) = py.detach(|| {
        let rows = Rows::new(classes, y_pred, Some(y_true), proba)?;
        let mut values = vec![Vec::with_capacity(groups.len()); Metric::ALL.len() + 2];
        let mut confusion = Vec::with_capacity(groups.len());
        for g in &groups {
            let r = rows.slice(g.clone());
            for (i, m) in Metric::ALL.iter().enumerate() {
                values[i].push(realized(&r, *m));
            }
            values[Metric::ALL.len()].push(realized_extra::log_loss(&r));
            values[Metric::ALL.len() + 1].push(realized_extra::calibration_error(&r));
            confusion.push(realized_extra::confusion(&r));
        }
        Ok::<_, pilothouse_monitor::MonitorError>((values, confusion))
    })?;
    let out = PyDict::new(py);
    let names = Metric::ALL
        .iter()
        .map(|m| m.name())
        .chain(["log_loss", "calibration_error"]);
    for (name, column) in names.zip(values) {
        out.set_item(name, column)?;
    }
    out.set_item("confusion", confusion)?;
    Ok(out)
}

/// A regressor's realized errors per group (`bounds`: the groups' row ranges; NaN targets
/// are not known yet): a dict of lists `mae`, `rmse`, `mape`, `r2`.
#[pyfunction]
fn realized_regression<'py>(
    py: Python<'py>,
    y_pred: PyReadonlyArray1<'py, f64>,
    y_true: PyReadonlyArray1<'py, f64>,
    bounds: Vec<(usize, usize)>,
) -> Result<Bound<'py, PyDict>> {
    let (y_pred, y_true) = (slice(&y_pred, "y_pred")?, slice(&y_true, "y_true")?);
    if y_pred.len() != y_true.len() {
        return Err(ValidationError::new_err(format!(
            "{} predictions and {} targets",
            y_pred.len(),
            y_true.len()
        ))
        .into());
    }
    let groups = checked(bounds, y_pred.len())?;
    let errors: Vec<_> = py.detach(|| {
        groups
            .iter()
            .map(|g| realized_extra::regression(&y_pred[g.clone()], &y_true[g.clone()]))
            .collect()
    });
    let out = PyDict::new(py);
    out.set_item("mae", errors.iter().map(|e| e.mae).collect::<Vec<_>>())?;
    out.set_item("rmse", errors.iter().map(|e| e.rmse).collect::<Vec<_>>())?;
    out.set_item("mape", errors.iter().map(|e| e.mape).collect::<Vec<_>>())?;
    out.set_item("r2", errors.iter().map(|e| e.r2).collect::<Vec<_>>())?;
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(estimate_performance, m)?)?;
    m.add_function(wrap_pyfunction!(realized_classification, m)?)?;
    m.add_function(wrap_pyfunction!(realized_regression, m)?)?;
    Ok(())
}
