//! The registry's records as frozen Python classes whose fields are read-only attributes
//! (`_core.VersionRecord`, `RunRecord`, ...): each built once from the registry crate's typed
//! record, with its JSON-valued fields (a signature, a spec, audit details) turned into the
//! Python objects they describe. `python/pilothouse/records.py` wraps them for users.

use std::collections::BTreeMap;

use pilothouse_registry as reg;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyTuple};
use serde_json::Value as Json;

/// A JSON value as the Python object it describes (dict, list, str, int, float, bool, None).
pub(crate) fn object(py: Python<'_>, value: &Json) -> PyResult<Py<PyAny>> {
    Ok(pythonize::pythonize(py, value)?.unbind())
}

/// A Python object (dicts with str keys, lists, tuples, str, numbers, bool, None) as a JSON
/// value. The error names `what` and where in it the value that JSON cannot hold is.
pub(crate) fn json_of(what: &str, value: &Bound<'_, PyAny>) -> Result<Json, String> {
    check_numbers(value, "", 0).map_err(|why| format!("{what}: {why}"))?;
    pythonize::depythonize(value).map_err(|e| {
        format!(
            "{what} must be made of dicts with str keys, lists, str, numbers, bool and None: {e}"
        )
    })
}

/// JSON has no NaN or infinity (serde would store them as null, silently): refuse them,
/// naming where they are (`at`, e.g. `["routes"][0]["weight"]`).
fn check_numbers(value: &Bound<'_, PyAny>, at: &str, depth: usize) -> Result<(), String> {
    const MAX_DEPTH: usize = 64;
    if depth > MAX_DEPTH {
        return Err(format!("{at} is nested more than {MAX_DEPTH} levels deep"));
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            let at = if at.is_empty() { "the value" } else { at };
            return Err(format!("{at} is {v}; use a finite number"));
        }
    } else if let Ok(d) = value.cast::<PyDict>() {
        for (k, v) in d.iter() {
            check_numbers(
                &v,
                &format!("{at}[{}]", k.repr().map_err(|e| e.to_string())?),
                depth + 1,
            )?;
        }
    } else if value.cast::<PyList>().is_ok() || value.cast::<PyTuple>().is_ok() {
        for (i, v) in value.try_iter().map_err(|e| e.to_string())?.enumerate() {
            let v = v.map_err(|e| e.to_string())?;
            check_numbers(&v, &format!("{at}[{i}]"), depth + 1)?;
        }
    }
    Ok(())
}

/// Builds each record of `items` for Python.
pub(crate) fn each<T, U>(
    py: Python<'_>,
    items: Vec<T>,
    build: fn(Python<'_>, T) -> PyResult<U>,
) -> PyResult<Vec<U>> {
    items.into_iter().map(|item| build(py, item)).collect()
}

/// Declares a frozen record class with read-only fields and its constructor from the
/// registry's record `$r`: each field is given as `name: Type = expression of $r`.
macro_rules! record {
    ($(#[$doc:meta])* $name:ident from $r:ident: $src:ty, $py:ident {
        $($field:ident: $ty:ty = $value:expr),* $(,)?
    }) => {
        $(#[$doc])*
        #[pyclass(frozen, get_all, module = "pilothouse._core")]
        pub struct $name {
            $($field: $ty),*
        }

        impl $name {
            #[allow(unused_variables)]
            pub(crate) fn new($py: Python<'_>, $r: $src) -> PyResult<Self> {
                Ok($name { $($field: $value),* })
            }
        }
    };
}

record! {
    /// One model version; `parent` is the URI of the version it was retrained from.
    VersionRecord from r: reg::Version, py {
        model: String = r.model,
        version: i64 = r.version,
        uri: String = r.uri,
        sha256: String = r.sha256.unwrap_or_default(),
        size: i64 = r.size.unwrap_or_default(),
        signature: Py<PyAny> = object(py, &r.signature)?,
        description: String = r.description.unwrap_or_default(),
        run_id: Option<String> = r.run_id,
        dataset: Option<String> = r.dataset,
        parent_model: Option<String> = r.parent.as_ref().map(|p| p.model.clone()),
        parent_version: Option<i64> = r.parent.as_ref().map(|p| p.version),
        parent: Option<String> = r.parent.map(|p| p.uri),
        status: String = r.status.unwrap_or_else(|| "active".into()),
        created_at: Option<i64> = r.created_at,
        created_by: String = r.created_by.unwrap_or_default(),
        // the example as stored: JSON text written by Python (NaN included), read by Python
        input_example: Option<String> = r.input_example,
        tags: BTreeMap<String, String> = r.tags,
        metrics: BTreeMap<String, f64> = r.metrics,
        aliases: Vec<String> = r.aliases,
    }
}

record! {
    /// A training run; `metric_history` holds each metric's (value, step, at) points.
    RunRecord from r: reg::Run, py {
        id: String = r.id,
        name: String = r.name,
        experiment: String = r.experiment,
        status: String = r.status,
        started_at: Option<i64> = r.started_at,
        ended_at: Option<i64> = r.ended_at,
        actor: String = r.actor,
        git_commit: Option<String> = r.code.git_commit,
        git_dirty: Option<bool> = r.code.git_dirty,
        code_path: Option<String> = r.code.path,
        environment: Py<PyAny> = object(py, &r.environment)?,
        params: BTreeMap<String, String> = r.params,
        metrics: BTreeMap<String, f64> = r.metrics,
        metric_history: BTreeMap<String, Vec<(f64, i64, i64)>> = r
            .metric_history
            .into_iter()
            .map(|(k, points)| (k, points.into_iter().map(|p| (p.value, p.step, p.at)).collect()))
            .collect(),
    }
}

record! {
    /// A model with its newest version number and its aliases.
    ModelSummaryRecord from r: reg::ModelSummary, py {
        name: String = r.name,
        description: Option<String> = r.description,
        created_at: Option<i64> = r.created_at,
        created_by: Option<String> = r.created_by,
        latest_version: Option<i64> = r.latest_version,
        aliases: BTreeMap<String, i64> = r.aliases,
    }
}

record! {
    /// One move of an alias (`version` is None when the alias was deleted).
    AliasMoveRecord from r: reg::AliasMove, py {
        model: String = r.model,
        alias: String = r.alias,
        version: Option<i64> = r.version,
        previous: Option<i64> = r.previous,
        at: Option<i64> = r.at,
        actor: String = r.actor,
        approval_id: Option<i64> = r.approval_id,
    }
}

record! {
    /// A promotion request and its decision.
    ApprovalRecord from r: reg::Approval, py {
        id: i64 = r.id,
        model: String = r.model,
        alias: String = r.alias,
        version: i64 = r.version,
        requested_by: String = r.requested_by,
        requested_at: Option<i64> = r.requested_at,
        reason: String = r.reason,
        status: String = r.status,
        decided_by: Option<String> = r.decided_by,
        decided_at: Option<i64> = r.decided_at,
        decision_reason: Option<String> = r.decision_reason,
        evidence: Option<String> = r.evidence.map(|e| e.to_string()),
        checks: Py<PyAny> = object(py, &Json::Array(r.checks.iter().map(reg::ToJson::to_json).collect()))?,
    }
}

record! {
    /// A suite of model checks run against a version, and what each check found.
    VersionCheckRecord from r: reg::CheckRecord, py {
        id: i64 = r.id,
        model: String = r.model,
        version: i64 = r.version,
        suite: String = r.suite,
        passed: bool = r.passed,
        results: Py<PyAny> = object(py, &r.results)?,
        recorded_at: Option<i64> = r.recorded_at,
        recorded_by: String = r.recorded_by,
    }
}

record! {
    /// One event of the audit log.
    AuditEventRecord from r: reg::AuditEvent, py {
        seq: i64 = r.seq,
        at: Option<i64> = r.at,
        actor: String = r.actor,
        action: String = r.action,
        model: Option<String> = r.model,
        details: Py<PyAny> = object(py, &r.details)?,
        prev_hash: String = r.prev_hash,
        hash: String = r.hash,
    }
}

record! {
    /// The newest audit event's sequence number and hash.
    AuditHeadRecord from r: reg::AuditHead, py {
        seq: i64 = r.seq,
        hash: String = r.hash,
        at: Option<i64> = r.at,
    }
}

record! {
    /// A deployment spec as stored, with its model's current aliases.
    DeploymentRecord from r: reg::Deployment, py {
        name: String = r.name,
        model: String = r.model,
        spec: Py<PyAny> = object(py, &r.spec)?,
        generation: i64 = r.generation,
        updated_at: Option<i64> = r.updated_at,
        updated_by: Option<String> = r.updated_by,
        aliases: BTreeMap<String, i64> = r.aliases,
    }
}

record! {
    /// A webhook delivery that ended (delivered, or given up).
    DeliveryRecord from r: reg::Delivery, py {
        id: i64 = r.id,
        webhook_id: i64 = r.webhook_id,
        event: String = r.event,
        delivery: String = r.delivery,
        attempts: i64 = r.attempts,
        status_code: Option<i64> = r.status_code,
        ok: bool = r.ok,
        error: Option<String> = r.error,
        at: Option<i64> = r.at,
    }
}

record! {
    /// A training dataset and the versions trained on it.
    DatasetRecord from r: reg::DatasetInfo, py {
        fingerprint: String = r.fingerprint,
        schema: Py<PyAny> = object(py, &r.schema)?,
        rows: Option<i64> = r.rows,
        has_profile: bool = r.has_profile,
        created_at: Option<i64> = r.created_at,
        versions: Vec<String> = r.versions,
    }
}

record! {
    /// Where a version came from and the versions retrained from it.
    LineageRecord from r: reg::Lineage, py {
        version: Py<VersionRecord> = Py::new(py, VersionRecord::new(py, r.version)?)?,
        run: Option<Py<RunRecord>> = match r.run {
            Some(run) => Some(Py::new(py, RunRecord::new(py, run)?)?),
            None => None,
        },
        dataset: Option<Py<DatasetRecord>> = match r.dataset {
            Some(d) => Some(Py::new(py, DatasetRecord::new(py, d)?)?),
            None => None,
        },
        parents: Vec<Py<VersionRecord>> = r
            .parents
            .into_iter()
            .map(|p| Py::new(py, VersionRecord::new(py, p)?))
            .collect::<PyResult<_>>()?,
        children: Vec<String> = r.children,
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<VersionRecord>()?;
    m.add_class::<RunRecord>()?;
    m.add_class::<ModelSummaryRecord>()?;
    m.add_class::<AliasMoveRecord>()?;
    m.add_class::<ApprovalRecord>()?;
    m.add_class::<VersionCheckRecord>()?;
    m.add_class::<AuditEventRecord>()?;
    m.add_class::<AuditHeadRecord>()?;
    m.add_class::<DeploymentRecord>()?;
    m.add_class::<DeliveryRecord>()?;
    m.add_class::<DatasetRecord>()?;
    m.add_class::<LineageRecord>()?;
    Ok(())
}
