//! Alerts for Python: rules parsed by the monitor crate before the registry stores them,
//! a window's series evaluated against every rule of a deployment (each rule stepped from
//! its stored state, and the outcome recorded once), alerts, acknowledgements and silences.

use std::collections::{BTreeMap, HashMap};

use pilothouse_monitor::alert::{Rule, RuleState, State};
use pilothouse_registry as reg;
use pyo3::prelude::*;
use serde_json::{json, Value as Json};

use crate::errors::Result;
use crate::records::{each, object, DeliveryRecord};
use crate::registry::PyRegistry;

fn state_of(name: &str) -> State {
    match name {
        "pending" => State::Pending,
        "firing" => State::Firing,
        _ => State::Inactive,
    }
}

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
    // parsed for its errors; stored as written
    let rule = Rule::new(
        when,
        for_windows,
        resolve_when.as_deref(),
        only_if.as_deref(),
    )?;
    let new = reg::NewAlertRule {
        deployment: deployment.to_string(),
        name: name.to_string(),
        when: rule.when.to_string(),
        for_windows: i64::from(for_windows),
        resolve_when: rule.resolve_when.as_ref().map(ToString::to_string),
        only_if: rule.only_if.as_ref().map(ToString::to_string),
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
    series: HashMap<String, f64>,
) -> Result<Py<PyAny>> {
    let changes = py.detach(|| -> Result<Vec<Json>> {
        let mut changes = Vec::new();
        for stored in registry.inner.alert_rules(Some(deployment))? {
            if stored.window_us >= window_us {
                continue;
            }
            let rule = Rule::new(
                &stored.when,
                u32::try_from(stored.for_windows).unwrap_or(1),
                stored.resolve_when.as_deref(),
                stored.only_if.as_deref(),
            )?;
            let before = RuleState {
                state: state_of(&stored.state),
                held: u32::try_from(stored.held).unwrap_or(0),
            };
            let (after, transition) = rule.step(before, &|n| series.get(n).copied());
            let read: serde_json::Map<String, Json> = rule
                .series()
                .into_iter()
                .map(|n| {
                    let v = series.get(&n).copied().filter(|x| x.is_finite());
                    (n, json!(v))
                })
                .collect();
            let outcome = registry.inner.advance_alert(
                actor,
                stored.id,
                window_us,
                after.state.name(),
                i64::from(after.held),
                transition.map(|t| t.name()),
                &Json::Object(read),
            )?;
            if let (Some(alert), Some(t)) = (outcome, transition) {
                changes.push(json!({
                    "rule": stored.name,
                    "transition": t.name(),
                    "state": after.state.name(),
                    "alert": alert,
                }));
            }
        }
        Ok(changes)
    })?;
    Ok(object(py, &Json::Array(changes))?)
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
