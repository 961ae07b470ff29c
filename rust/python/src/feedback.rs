//! Feedback for Python: labels and flags on served answers, stored in the registry as
//! parallel columns (made by `pilothouse.feedback`), and read back as columns.

use pilothouse_registry as reg;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{Result, ValidationError};
use crate::registry::PyRegistry;

/// Stores feedback given as parallel columns (each as long as `request_ids`); answers the
/// counts `{"accepted": n, "replaced": m}`.
#[pyfunction]
#[pyo3(signature = (registry, actor, deployment, request_ids, keys, target_text, target_number, good, comment, user, time_us))]
#[allow(clippy::too_many_arguments)]
fn log_feedback<'py>(
    py: Python<'py>,
    registry: &PyRegistry,
    actor: &str,
    deployment: &str,
    request_ids: Vec<Option<String>>,
    keys: Vec<Option<String>>,
    target_text: Vec<Option<String>>,
    target_number: Vec<Option<f64>>,
    good: Vec<Option<bool>>,
    comment: Vec<Option<String>>,
    user: Vec<Option<String>>,
    time_us: Vec<Option<i64>>,
) -> Result<Bound<'py, PyDict>> {
    let n = request_ids.len();
    let lengths = [
        keys.len(),
        target_text.len(),
        target_number.len(),
        good.len(),
        comment.len(),
        user.len(),
        time_us.len(),
    ];
    if lengths.iter().any(|l| *l != n) {
        return Err(ValidationError::new_err(format!(
            "feedback columns of different lengths: {n} ids or keys and {lengths:?}"
        ))
        .into());
    }
    let mut rows = Vec::with_capacity(n);
    let columns = request_ids
        .into_iter()
        .zip(keys)
        .zip(target_text.into_iter().zip(target_number))
        .zip(good.into_iter().zip(comment))
        .zip(user.into_iter().zip(time_us));
    for ((((request_id, key), (text, number)), (good, comment)), (user, time_us)) in columns {
        let target = match (text, number) {
            (Some(t), _) => Some(reg::Target::Text(t)),
            (None, Some(x)) => Some(reg::Target::Number(x)),
            (None, None) => None,
        };
        rows.push(reg::NewFeedback {
            request_id,
            key,
            target,
            good,
            comment,
            user,
            time_us,
        });
    }
    let counts = py.detach(|| registry.inner.put_feedback(actor, deployment, &rows))?;
    let out = PyDict::new(py);
    out.set_item("accepted", counts.accepted)?;
    out.set_item("replaced", counts.replaced)?;
    Ok(out)
}

/// The feedback on `deployment` received in `[since_us, until_us)`, as columns.
#[pyfunction]
#[pyo3(signature = (registry, deployment, since_us=None, until_us=None, kind=None, good=None))]
fn feedback<'py>(
    py: Python<'py>,
    registry: &PyRegistry,
    deployment: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
    kind: Option<&str>,
    good: Option<bool>,
) -> Result<Bound<'py, PyDict>> {
    let rows = py.detach(|| {
        registry
            .inner
            .feedback(deployment, since_us, until_us, kind, good)
    })?;
    let out = PyDict::new(py);
    let target = |r: &reg::Feedback| -> Option<Py<PyAny>> {
        match &r.target {
            Some(reg::Target::Text(t)) => t.into_pyobject(py).ok().map(|o| o.into_any().unbind()),
            Some(reg::Target::Number(x)) => x.into_pyobject(py).ok().map(|o| o.into_any().unbind()),
            None => None,
        }
    };
    out.set_item("id", rows.iter().map(|r| r.id).collect::<Vec<_>>())?;
    out.set_item(
        "request_id",
        rows.iter()
            .map(|r| r.request_id.clone())
            .collect::<Vec<_>>(),
    )?;
    out.set_item(
        "key",
        rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
    )?;
    out.set_item(
        "kind",
        rows.iter().map(|r| r.kind.clone()).collect::<Vec<_>>(),
    )?;
    out.set_item("target", rows.iter().map(target).collect::<Vec<_>>())?;
    out.set_item("good", rows.iter().map(|r| r.good).collect::<Vec<_>>())?;
    out.set_item(
        "comment",
        rows.iter().map(|r| r.comment.clone()).collect::<Vec<_>>(),
    )?;
    out.set_item(
        "user",
        rows.iter().map(|r| r.user.clone()).collect::<Vec<_>>(),
    )?;
    out.set_item(
        "time_us",
        rows.iter().map(|r| r.time_us).collect::<Vec<_>>(),
    )?;
    out.set_item(
        "received_us",
        rows.iter().map(|r| r.received_us).collect::<Vec<_>>(),
    )?;
    out.set_item(
        "received_by",
        rows.iter()
            .map(|r| r.received_by.clone())
            .collect::<Vec<_>>(),
    )?;
    Ok(out)
}

/// The predictions `deployment` answered in `[since_us, until_us)` with the latest label
/// and flag of each, as columns (`outputs` and `segments` as JSON text).
#[pyfunction]
#[pyo3(signature = (registry, deployment, since_us=None, until_us=None))]
fn labelled<'py>(
    py: Python<'py>,
    registry: &PyRegistry,
    deployment: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
) -> Result<Bound<'py, PyDict>> {
    let rows = py.detach(|| registry.inner.labelled(deployment, since_us, until_us))?;
    let out = PyDict::new(py);
    macro_rules! column {
        ($name:literal, $r:ident => $value:expr) => {
            out.set_item($name, rows.iter().map(|$r| $value).collect::<Vec<_>>())?
        };
    }
    column!("request_id", r => r.prediction.request_id.clone());
    column!("key", r => r.prediction.key.clone());
    column!("time_us", r => r.prediction.time_us);
    column!("model", r => r.prediction.model.clone());
    column!("version", r => r.prediction.version);
    column!("route", r => r.prediction.route.clone());
    column!("shadow", r => r.prediction.shadow);
    column!("replica", r => r.prediction.replica.clone());
    column!("outputs", r => r.prediction.outputs.clone());
    column!("segments", r => r.prediction.segments.clone());
    column!("target_text", r => match &r.target {
        Some(reg::Target::Text(t)) => Some(t.clone()),
        _ => None,
    });
    column!("target_number", r => match &r.target {
        Some(reg::Target::Number(x)) => Some(*x),
        _ => None,
    });
    column!("labelled_us", r => r.labelled_us);
    column!("good", r => r.good);
    column!("comment", r => r.comment.clone());
    column!("user", r => r.user.clone());
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(labelled, m)?)?;
    m.add_function(wrap_pyfunction!(log_feedback, m)?)?;
    m.add_function(wrap_pyfunction!(feedback, m)?)?;
    Ok(())
}
