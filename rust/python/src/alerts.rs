//! Alerts for Python: rules parsed by the monitor crate before the registry stores them,
//! windows evaluated against every rule of a deployment (the server's `alerting`: each rule
//! stepped from its stored state, the outcome recorded once), the series a window has,
//! alerts, acknowledgements, silences and channels.

use std::collections::BTreeMap;

use pilothouse_monitor::alert::Rule;
use pilothouse_registry as reg;
use pilothouse_server::monitor::{alerting, read};
use pyo3::prelude::*;
use serde_json::{json, Value as Json};

use crate::errors::{Result, ValidationError};
use crate::records::{each, object, DeliveryRecord};
use crate::registry::PyRegistry;

/// Adds (or replaces, by name) a rule; its conditions are parsed first, and a mistake is
/// named with its place. Answers the stored rule.
#[pyfunction]
#[pyo3(signature = (registry, actor, deployment, name, when, for_windows, resolve_when, only_if, severity, labels, actions))]
#[allow(clippy::too_many_arguments)]
fn add_alert_rule(
    py: Python<'_>,
    registry: &PyRegistry,
    actor: &str,
    deployment: &str,
    name: &str,
    when: &str,
    for_windows: u32,
    resolve_when: Option<String>,
    only_if: Option<String>,
    severity: &str,
    labels: BTreeMap<String, String>,
    actions: Vec<String>,
) -> Result<Py<PyAny>> {
    // parsed for its errors; stored as written (what parsed once parses again)
    Rule::new(
        when,
        for_windows,
        resolve_when.as_deref(),
        only_if.as_deref(),
    )?;
    let new = reg::NewAlertRule {
        deployment: deployment.to_string(),
        name: name.to_string(),
        when: when.trim().to_string(),
        for_windows: i64::from(for_windows),
        resolve_when: resolve_when.map(|t| t.trim().to_string()),
        only_if: only_if.map(|t| t.trim().to_string()),
        severity: severity.to_string(),
        labels,
        actions,
    };
    let stored = py.detach(|| registry.inner.add_alert_rule(actor, &new))?;
    Ok(object(py, &json!(stored))?)
}

#[pyfunction]
#[pyo3(signature = (registry, deployment=None))]
fn alert_rules(
    py: Python<'_>,
    registry: &PyRegistry,
    deployment: Option<&str>,
) -> Result<Py<PyAny>> {
    let rules = py.detach(|| registry.inner.alert_rules(deployment))?;
    Ok(object(py, &json!(rules))?)
}

#[pyfunction]
fn delete_alert_rule(
    py: Python<'_>,
    registry: &PyRegistry,
    actor: &str,
    deployment: &str,
    name: &str,
) -> Result<()> {
    Ok(py.detach(|| registry.inner.delete_alert_rule(actor, deployment, name))?)
}

/// Evaluates every rule of `deployment` on the window starting at `window_us`, whose series
/// are `series` (name -> value; a missing name is unknown). Answers what changed, one dict
/// per rule that moved: rule, transition (pending, cleared, fired, resolved), state, and the
/// alert opened or closed. A window a rule was already advanced past (by another replica)
/// changes nothing.
#[pyfunction]
fn evaluate_alerts(
    py: Python<'_>,
    registry: &PyRegistry,
    actor: &str,
    deployment: &str,
    window_us: i64,
    series: BTreeMap<String, f64>,
) -> Result<Py<PyAny>> {
    let changes = py.detach(|| {
        alerting::evaluate_window(&registry.inner, actor, deployment, window_us, &series)
    })?;
    Ok(object(py, &Json::Array(changes))?)
}

/// Evaluates the rules of a deployment on every window of a period that closed by `now_us`
/// (stored windows merged into `window_us` buckets), oldest first, adding `extra` series
/// (window start -> name -> value). Each change carries its `window_start_us`.
#[pyfunction]
#[pyo3(signature = (registry, actor, deployment, since_us, until_us, window_us, now_us, extra))]
#[allow(clippy::too_many_arguments)]
fn evaluate_alert_windows(
    py: Python<'_>,
    registry: &PyRegistry,
    actor: &str,
    deployment: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
    window_us: i64,
    now_us: i64,
    extra: BTreeMap<i64, BTreeMap<String, f64>>,
) -> Result<Py<PyAny>> {
    let q = window_query(deployment, since_us, until_us, window_us)?;
    let changes = py.detach(|| alerting::evaluate(&registry.inner, actor, &q, now_us, &extra))?;
    Ok(object(py, &Json::Array(changes))?)
}

/// The series alert rules read, per window of a period (window start -> name -> value):
/// health, drift and quality of the stored windows.
#[pyfunction]
#[pyo3(signature = (registry, deployment, since_us, until_us, window_us))]
fn alert_window_series(
    py: Python<'_>,
    registry: &PyRegistry,
    deployment: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
    window_us: i64,
) -> Result<BTreeMap<i64, BTreeMap<String, f64>>> {
    let q = window_query(deployment, since_us, until_us, window_us)?;
    Ok(py.detach(|| alerting::window_series(&registry.inner, &q))?)
}

fn window_query(
    deployment: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
    window_us: i64,
) -> Result<read::Query> {
    if window_us < 1_000_000 {
        return Err(ValidationError::new_err(format!(
            "alert rules are evaluated on windows of at least one second, not {window_us} µs"
        ))
        .into());
    }
    Ok(read::Query {
        deployment: deployment.to_string(),
        since_us,
        until_us,
        bucket_us: window_us,
        version: None,
    })
}

#[pyfunction]
#[pyo3(signature = (registry, deployment=None, state=None, limit=1000))]
fn alerts(
    py: Python<'_>,
    registry: &PyRegistry,
    deployment: Option<&str>,
    state: Option<&str>,
    limit: i64,
) -> Result<Py<PyAny>> {
    let found = py.detach(|| registry.inner.alerts(deployment, state, limit))?;
    Ok(object(py, &json!(found))?)
}

#[pyfunction]
fn ack_alert(py: Python<'_>, registry: &PyRegistry, actor: &str, id: i64) -> Result<Py<PyAny>> {
    let alert = py.detach(|| registry.inner.ack_alert(actor, id))?;
    Ok(object(py, &json!(alert))?)
}

#[pyfunction]
#[pyo3(signature = (registry, actor, deployment, rule, until_us, reason))]
fn silence(
    py: Python<'_>,
    registry: &PyRegistry,
    actor: &str,
    deployment: &str,
    rule: Option<&str>,
    until_us: i64,
    reason: &str,
) -> Result<Py<PyAny>> {
    let made = py.detach(|| {
        registry
            .inner
            .silence(actor, deployment, rule, until_us, reason)
    })?;
    Ok(object(py, &json!(made))?)
}

#[pyfunction]
#[pyo3(signature = (registry, deployment=None))]
fn silences(py: Python<'_>, registry: &PyRegistry, deployment: Option<&str>) -> Result<Py<PyAny>> {
    let found = py.detach(|| registry.inner.silences(deployment))?;
    Ok(object(py, &json!(found))?)
}

/// Adds (or replaces, by name) a channel alerts go to; answers it as listed (no secret).
#[pyfunction]
#[pyo3(signature = (registry, actor, name, kind, url, secret, severities, labels))]
#[allow(clippy::too_many_arguments)]
fn add_channel(
    py: Python<'_>,
    registry: &PyRegistry,
    actor: &str,
    name: &str,
    kind: &str,
    url: Option<String>,
    secret: String,
    severities: Vec<String>,
    labels: BTreeMap<String, String>,
) -> Result<Py<PyAny>> {
    let new = reg::NewChannel {
        name: name.to_string(),
        kind: kind.to_string(),
        url,
        secret,
        severities,
        labels,
    };
    let made = py.detach(|| registry.inner.add_channel(actor, &new))?;
    Ok(object(py, &json!(made))?)
}

#[pyfunction]
fn channels(py: Python<'_>, registry: &PyRegistry) -> Result<Py<PyAny>> {
    let found = py.detach(|| registry.inner.channels())?;
    Ok(object(py, &json!(found))?)
}

#[pyfunction]
fn delete_channel(py: Python<'_>, registry: &PyRegistry, actor: &str, name: &str) -> Result<()> {
    Ok(py.detach(|| registry.inner.delete_channel(actor, name))?)
}

#[pyfunction]
fn channel_deliveries(
    py: Python<'_>,
    registry: &PyRegistry,
    name: &str,
) -> Result<Vec<DeliveryRecord>> {
    let found = py.detach(|| registry.inner.channel_deliveries(name))?;
    Ok(each(py, found, DeliveryRecord::new)?)
}

/// The severities and actions a rule may have (for messages and stubs).
#[pyfunction]
fn alert_vocabulary() -> (Vec<&'static str>, Vec<&'static str>) {
    (reg::SEVERITIES.to_vec(), reg::ACTIONS.to_vec())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> Result<()> {
    m.add_function(wrap_pyfunction!(add_alert_rule, m)?)?;
    m.add_function(wrap_pyfunction!(alert_rules, m)?)?;
    m.add_function(wrap_pyfunction!(delete_alert_rule, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_alerts, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_alert_windows, m)?)?;
    m.add_function(wrap_pyfunction!(alert_window_series, m)?)?;
    m.add_function(wrap_pyfunction!(alerts, m)?)?;
    m.add_function(wrap_pyfunction!(ack_alert, m)?)?;
    m.add_function(wrap_pyfunction!(silence, m)?)?;
    m.add_function(wrap_pyfunction!(silences, m)?)?;
    m.add_function(wrap_pyfunction!(alert_vocabulary, m)?)?;
    m.add_function(wrap_pyfunction!(add_channel, m)?)?;
    m.add_function(wrap_pyfunction!(channels, m)?)?;
    m.add_function(wrap_pyfunction!(delete_channel, m)?)?;
    m.add_function(wrap_pyfunction!(channel_deliveries, m)?)?;
    Ok(())
}
