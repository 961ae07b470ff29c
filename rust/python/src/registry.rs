//! `Registry` for Python: thin calls into pilothouse-registry with the GIL released; the
//! records come back as the typed classes of `records.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pilothouse_registry as reg;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{Result, ValidationError};
use crate::records::{
    each, json_of, AliasMoveRecord, ApprovalRecord, AuditEventRecord, AuditHeadRecord,
    DeliveryRecord, DeploymentRecord, LineageRecord, ModelSummaryRecord, RunRecord,
    VersionCheckRecord, VersionRecord,
};

/// A training dataset as `log_model` takes it: fingerprint, schema, rows, profile bytes.
type DatasetArg<'py> = (String, Bound<'py, PyAny>, i64, Option<Vec<u8>>);

#[pyclass(frozen, module = "pilothouse._core", name = "Registry")]
pub struct PyRegistry {
    pub(crate) inner: reg::Registry,
}

#[pymethods]
impl PyRegistry {
    #[staticmethod]
    fn open(py: Python<'_>, uri: &str, default_artifacts: PathBuf) -> Result<Self> {
        let inner = py.detach(|| reg::Registry::open(uri, &default_artifacts))?;
        Ok(PyRegistry { inner })
    }

    #[getter]
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    #[getter]
    fn uri(&self) -> String {
        self.inner.uri().to_string()
    }

    #[getter]
    fn artifact_root(&self) -> String {
        self.inner.artifact_root().display().to_string()
    }

    #[pyo3(signature = (actor, name, experiment, git_commit=None, git_dirty=None, code_path=None, environment=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_run(
        &self,
        py: Python<'_>,
        actor: &str,
        name: &str,
        experiment: &str,
        git_commit: Option<String>,
        git_dirty: Option<bool>,
        code_path: Option<String>,
        environment: Option<Bound<'_, PyAny>>,
    ) -> Result<RunRecord> {
        let environment = match environment {
            Some(e) => json_of("the run's environment", &e).map_err(ValidationError::new_err)?,
            None => serde_json::json!({}),
        };
        let run = reg::NewRun {
            name: name.into(),
            experiment: experiment.into(),
            git_commit,
            git_dirty,
            code_path,
            environment,
        };
        let record = py.detach(|| self.inner.create_run(actor, &run))?;
        Ok(RunRecord::new(py, record)?)
    }

    fn log_params(
        &self,
        py: Python<'_>,
        actor: &str,
        run_id: &str,
        params: Vec<(String, String)>,
    ) -> Result<()> {
        Ok(py.detach(|| self.inner.log_params(actor, run_id, &params))?)
    }

    fn log_metrics(
        &self,
        py: Python<'_>,
        actor: &str,
        run_id: &str,
        metrics: Vec<(String, f64, Option<i64>)>,
    ) -> Result<()> {
        Ok(py.detach(|| self.inner.log_metrics(actor, run_id, &metrics))?)
    }

    #[pyo3(signature = (actor, run_id, status, code=None))]
    fn end_run(
        &self,
        py: Python<'_>,
        actor: &str,
        run_id: &str,
        status: &str,
        code: Option<(Option<String>, Option<bool>)>,
    ) -> Result<()> {
        Ok(py.detach(|| self.inner.end_run(actor, run_id, status, code))?)
    }

    fn get_run(&self, py: Python<'_>, run_id: &str) -> Result<RunRecord> {
        let record = py.detach(|| self.inner.get_run(run_id))?;
        Ok(RunRecord::new(py, record)?)
    }

    #[pyo3(signature = (experiment=None))]
    fn search_runs(&self, py: Python<'_>, experiment: Option<String>) -> Result<Vec<RunRecord>> {
        let runs = py.detach(|| self.inner.search_runs(experiment.as_deref()))?;
        Ok(each(py, runs, RunRecord::new)?)
    }

    #[pyo3(signature = (actor, model, data, signature, run_id=None, dataset=None, description=String::new(), tags=BTreeMap::new(), parent=None, input_example=None))]
    #[allow(clippy::too_many_arguments)]
    fn log_model(
        &self,
        py: Python<'_>,
        actor: &str,
        model: &str,
        data: &Bound<'_, PyBytes>,
        signature: &Bound<'_, PyAny>,
        run_id: Option<String>,
        dataset: Option<DatasetArg<'_>>,
        description: String,
        tags: BTreeMap<String, String>,
        parent: Option<(String, i64)>,
        input_example: Option<String>,
    ) -> Result<VersionRecord> {
        let dataset = match dataset {
            Some((fingerprint, schema, rows, profile)) => Some(reg::Dataset {
                fingerprint,
                schema: json_of("the dataset's schema", &schema)
                    .map_err(ValidationError::new_err)?,
                rows,
                profile,
            }),
            None => None,
        };
        let new = reg::NewVersion {
            model: model.into(),
            data: data.as_bytes().to_vec(),
            signature: json_of("the signature", signature).map_err(ValidationError::new_err)?,
            run_id,
            dataset,
            description,
            tags,
            parent,
            input_example,
        };
        let record = py.detach(|| self.inner.log_model(actor, &new))?;
        Ok(VersionRecord::new(py, record)?)
    }

    fn get_version(&self, py: Python<'_>, model: &str, version: i64) -> Result<VersionRecord> {
        let record = py.detach(|| self.inner.get_version(model, version))?;
        Ok(VersionRecord::new(py, record)?)
    }

    #[pyo3(signature = (uri, at=None))]
    fn resolve(&self, py: Python<'_>, uri: &str, at: Option<i64>) -> Result<VersionRecord> {
        let record = py.detach(|| self.inner.resolve(uri, at))?;
        Ok(VersionRecord::new(py, record)?)
    }

    fn artifact<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        version: i64,
    ) -> Result<Bound<'py, PyBytes>> {
        let data = py.detach(|| self.inner.artifact(model, version))?;
        Ok(PyBytes::new(py, &data))
    }

    fn list_models(&self, py: Python<'_>) -> Result<Vec<ModelSummaryRecord>> {
        let records = py.detach(|| self.inner.list_models())?;
        Ok(each(py, records, ModelSummaryRecord::new)?)
    }

    #[pyo3(signature = (filter="", order_by="", limit=1000))]
    fn search_versions(
        &self,
        py: Python<'_>,
        filter: &str,
        order_by: &str,
        limit: i64,
    ) -> Result<Vec<VersionRecord>> {
        let records = py.detach(|| self.inner.search_versions(filter, order_by, limit))?;
        Ok(each(py, records, VersionRecord::new)?)
    }

    fn archive(
        &self,
        py: Python<'_>,
        actor: &str,
        model: &str,
        version: i64,
    ) -> Result<VersionRecord> {
        let record = py.detach(|| self.inner.archive(actor, model, version))?;
        Ok(VersionRecord::new(py, record)?)
    }

    fn restore(
        &self,
        py: Python<'_>,
        actor: &str,
        model: &str,
        version: i64,
    ) -> Result<VersionRecord> {
        let record = py.detach(|| self.inner.restore(actor, model, version))?;
        Ok(VersionRecord::new(py, record)?)
    }

    fn set_alias(
        &self,
        py: Python<'_>,
        actor: &str,
        model: &str,
        alias: &str,
        version: i64,
    ) -> Result<VersionRecord> {
        let record = py.detach(|| self.inner.set_alias(actor, model, alias, version))?;
        Ok(VersionRecord::new(py, record)?)
    }

    fn delete_alias(&self, py: Python<'_>, actor: &str, model: &str, alias: &str) -> Result<()> {
        Ok(py.detach(|| self.inner.delete_alias(actor, model, alias))?)
    }

    fn set_deployment(
        &self,
        py: Python<'_>,
        actor: &str,
        name: &str,
        model: &str,
        spec: &Bound<'_, PyAny>,
    ) -> Result<DeploymentRecord> {
        let spec = json_of("the deployment spec", spec).map_err(ValidationError::new_err)?;
        let record = py.detach(|| self.inner.set_deployment(actor, name, model, &spec))?;
        Ok(DeploymentRecord::new(py, record)?)
    }

    fn delete_deployment(&self, py: Python<'_>, actor: &str, name: &str) -> Result<()> {
        Ok(py.detach(|| self.inner.delete_deployment(actor, name))?)
    }

    fn deployment(&self, py: Python<'_>, name: &str) -> Result<DeploymentRecord> {
        let record = py.detach(|| self.inner.deployment(name))?;
        Ok(DeploymentRecord::new(py, record)?)
    }

    fn deployments(&self, py: Python<'_>) -> Result<Vec<DeploymentRecord>> {
        let records = py.detach(|| self.inner.deployments())?;
        Ok(each(py, records, DeploymentRecord::new)?)
    }

    fn alias_history(
        &self,
        py: Python<'_>,
        model: &str,
        alias: &str,
    ) -> Result<Vec<AliasMoveRecord>> {
        let records = py.detach(|| self.inner.alias_history(model, alias))?;
        Ok(each(py, records, AliasMoveRecord::new)?)
    }

    #[pyo3(signature = (actor, model, alias, require_approval, require_check=None, allow_rollback=None))]
    #[allow(clippy::too_many_arguments)]
    fn set_policy(
        &self,
        py: Python<'_>,
        actor: &str,
        model: &str,
        alias: &str,
        require_approval: bool,
        require_check: Option<&str>,
        allow_rollback: Option<bool>,
    ) -> Result<()> {
        Ok(py.detach(|| {
            self.inner.set_policy(
                actor,
                model,
                alias,
                require_approval,
                require_check,
                allow_rollback,
            )
        })?)
    }

    /// Moves an alias back to the version it held before its last move.
    fn roll_back_alias(
        &self,
        py: Python<'_>,
        actor: &str,
        model: &str,
        alias: &str,
        reason: &str,
    ) -> Result<VersionRecord> {
        let record = py.detach(|| self.inner.roll_back_alias(actor, model, alias, reason))?;
        Ok(VersionRecord::new(py, record)?)
    }

    /// The guarded aliases, each with the suite it requires a passing check of (or None).
    fn policies(&self, py: Python<'_>, model: &str) -> Result<Vec<(String, Option<String>)>> {
        Ok(py.detach(|| self.inner.policies(model))?)
    }

    /// Records a suite's results (JSON text) on a version; its verdict is read from them.
    fn record_check(
        &self,
        py: Python<'_>,
        actor: &str,
        model: &str,
        version: i64,
        suite: &str,
        results: &str,
    ) -> Result<VersionCheckRecord> {
        let results = serde_json::from_str::<serde_json::Value>(results)
            .map_err(|e| ValidationError::new_err(format!("check results are not JSON: {e}")))?;
        let record = py.detach(|| {
            self.inner
                .record_check(actor, model, version, suite, &results)
        })?;
        Ok(VersionCheckRecord::new(py, record)?)
    }

    #[pyo3(signature = (model, version=None))]
    fn checks(
        &self,
        py: Python<'_>,
        model: &str,
        version: Option<i64>,
    ) -> Result<Vec<VersionCheckRecord>> {
        let records = py.detach(|| self.inner.checks(model, version))?;
        Ok(each(py, records, VersionCheckRecord::new)?)
    }

    #[pyo3(signature = (actor, model, alias, version, reason, evidence=None))]
    #[allow(clippy::too_many_arguments)]
    fn request_promotion(
        &self,
        py: Python<'_>,
        actor: &str,
        model: &str,
        alias: &str,
        version: i64,
        reason: &str,
        evidence: Option<&str>,
    ) -> Result<ApprovalRecord> {
        let evidence = evidence
            .map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .map_err(|e| ValidationError::new_err(format!("evidence is not JSON: {e}")))?;
        let record = py.detach(|| {
            self.inner
                .request_promotion(actor, model, alias, version, reason, evidence.as_ref())
        })?;
        Ok(ApprovalRecord::new(py, record)?)
    }

    fn decide(
        &self,
        py: Python<'_>,
        actor: &str,
        id: i64,
        approve: bool,
        reason: &str,
    ) -> Result<ApprovalRecord> {
        let record = py.detach(|| self.inner.decide(actor, id, approve, reason))?;
        Ok(ApprovalRecord::new(py, record)?)
    }

    fn get_approval(&self, py: Python<'_>, id: i64) -> Result<ApprovalRecord> {
        let record = py.detach(|| self.inner.get_approval(id))?;
        Ok(ApprovalRecord::new(py, record)?)
    }

    fn approvals(&self, py: Python<'_>, model: &str) -> Result<Vec<ApprovalRecord>> {
        let records = py.detach(|| self.inner.approvals(model))?;
        Ok(each(py, records, ApprovalRecord::new)?)
    }

    #[pyo3(signature = (model=None, limit=10000))]
    fn audit_log(
        &self,
        py: Python<'_>,
        model: Option<String>,
        limit: i64,
    ) -> Result<Vec<AuditEventRecord>> {
        let records = py.detach(|| self.inner.audit_log(model.as_deref(), limit))?;
        Ok(each(py, records, AuditEventRecord::new)?)
    }

    #[pyo3(signature = (anchor_seq=None, anchor_hash=None))]
    fn verify_audit_log(
        &self,
        py: Python<'_>,
        anchor_seq: Option<i64>,
        anchor_hash: Option<String>,
    ) -> Result<i64> {
        let anchor = anchor_seq
            .zip(anchor_hash)
            .map(|(seq, hash)| pilothouse_registry::AuditAnchor { seq, hash });
        Ok(py.detach(|| self.inner.verify_audit_log(anchor.as_ref()))?)
    }

    fn audit_head(&self, py: Python<'_>) -> Result<AuditHeadRecord> {
        let record = py.detach(|| self.inner.audit_head())?;
        Ok(AuditHeadRecord::new(py, record)?)
    }

    fn lineage(&self, py: Python<'_>, model: &str, version: i64) -> Result<LineageRecord> {
        let record = py.detach(|| self.inner.lineage(model, version))?;
        Ok(LineageRecord::new(py, record)?)
    }

    fn dataset_profile<'py>(
        &self,
        py: Python<'py>,
        fingerprint: &str,
    ) -> Result<Option<Bound<'py, PyBytes>>> {
        let data = py.detach(|| self.inner.dataset_profile(fingerprint))?;
        Ok(data.map(|d| PyBytes::new(py, &d)))
    }

    fn add_webhook(
        &self,
        py: Python<'_>,
        actor: &str,
        model: &str,
        url: &str,
        secret: &str,
        events: Vec<String>,
    ) -> Result<i64> {
        Ok(py.detach(|| self.inner.add_webhook(actor, model, url, secret, &events))?)
    }

    fn deliveries(&self, py: Python<'_>, model: &str) -> Result<Vec<DeliveryRecord>> {
        let records = py.detach(|| self.inner.deliveries(model))?;
        Ok(each(py, records, DeliveryRecord::new)?)
    }

    fn flush_webhooks(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = std::time::Duration::from_secs_f64(timeout.max(0.0));
        py.detach(|| self.inner.flush_webhooks(timeout))
    }
}

/// Parses an ISO-8601 time to microseconds since the epoch (UTC unless an offset is given).
#[pyfunction]
fn parse_time(text: &str) -> PyResult<i64> {
    reg::parse_time(text).map_err(ValidationError::new_err)
}

/// The HMAC-SHA256 signature webhooks carry, `sha256=<hex>`.
#[pyfunction]
fn webhook_signature(secret: &str, body: &[u8]) -> String {
    reg::sign(secret, body)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> Result<()> {
    m.add_class::<PyRegistry>()?;
    m.add_function(wrap_pyfunction!(parse_time, m)?)?;
    m.add_function(wrap_pyfunction!(webhook_signature, m)?)?;
    Ok(())
}
