//! Model checks recorded on a version (what a suite of `pilothouse check` found), and the
//! policy rule that an approval needs the version's newest check of a suite to have passed.

use serde_json::json;

use super::*;
use crate::records::CheckRecord;

/// The most a recorded suite's results may take, as JSON text: they are a summary (verdicts,
/// statistics, a few example rows), not data.
const MAX_RESULTS_BYTES: usize = 1 << 20;

/// A policy's `require_check` that accepts any suite (each suite's newest check must pass).
pub const ANY_SUITE: &str = "*";

impl Registry {
    /// Records that `suite` ran against `version`: whether all its checks passed, and what each
    /// found (`{"checks": [{"name", "passed", ...}], ...}`).
    #[allow(clippy::too_many_arguments)]
    pub fn record_check(
        &self,
        actor: &str,
        model: &str,
        version: i64,
        suite: &str,
        passed: bool,
        results: &Json,
    ) -> Result<CheckRecord> {
        names::key("suite name", suite)?;
        if !results["checks"].is_array() {
            return Err(RegistryError::invalid(
                "check results",
                suite,
                "they must be a JSON object with a 'checks' list",
            ));
        }
        let text = results.to_string();
        if text.len() > MAX_RESULTS_BYTES {
            return Err(RegistryError::invalid(
                "check results",
                suite,
                format!(
                    "they take {} bytes as JSON, more than the {MAX_RESULTS_BYTES} a record keeps; leave the data out",
                    text.len()
                ),
            ));
        }
        let at = now_micros();
        let id = self.write(|tx| {
            Self::version_row(tx, model, version)?;
            let row = query_one(
                tx,
                "INSERT INTO version_checks (model, version, suite, passed, results, recorded_at, recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                &[model.into(), Value::Int(version), suite.into(), Value::Int(passed.into()), text.as_str().into(), Value::Int(at), actor.into()],
            )?;
            let id = row.and_then(|r| r[0].as_i64()).unwrap_or(0);
            let record = Self::check(tx, id)?;
            audit::append(
                tx,
                at,
                actor,
                "check.record",
                Some(model),
                &json!({"id": id, "version": version, "suite": suite, "passed": passed, "failed": record.failed()}),
            )?;
            Ok(id)
        })?;
        let record = self.read(|tx| Self::check(tx, id))?;
        self.hooks
            .notify(model, Event::CheckRecorded, record.to_json());
        Ok(record)
    }

    fn check(tx: &mut dyn Tx, id: i64) -> Result<CheckRecord> {
        CheckRecord::read_where(tx, "WHERE id = ?", &[Value::Int(id)])?
            .pop()
            .ok_or_else(|| RegistryError::not_found("check", id.to_string()))
    }

    /// Every check recorded on a model (or one version of it), newest first.
    pub fn checks(&self, model: &str, version: Option<i64>) -> Result<Vec<CheckRecord>> {
        self.read(|tx| {
            match version {
                Some(v) => {
                    Self::version_row(tx, model, v)?;
                }
                None => {
                    query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?
                        .ok_or_else(|| RegistryError::not_found("model", model))?;
                }
            }
            let (rest, params) = match version {
                Some(v) => (
                    "WHERE model = ? AND version = ? ORDER BY id DESC",
                    vec![model.into(), Value::Int(v)],
                ),
                None => ("WHERE model = ? ORDER BY id DESC", vec![model.into()]),
            };
            CheckRecord::read_where(tx, rest, &params)
        })
    }

    /// The newest check of each suite recorded on a version, by suite name.
    pub(super) fn latest_checks(
        tx: &mut dyn Tx,
        model: &str,
        version: i64,
    ) -> Result<Vec<CheckRecord>> {
        CheckRecord::read_where(
            tx,
            "WHERE model = ? AND version = ? AND id IN (SELECT MAX(id) FROM version_checks WHERE model = ? AND version = ? GROUP BY suite) ORDER BY suite",
            &[model.into(), Value::Int(version), model.into(), Value::Int(version)],
        )
    }

    /// Refuses the approval of `request` when its alias's policy requires a passing check and
    /// the version's newest check of that suite (of every suite, for `*`) did not pass. Returns
    /// the checks it consulted, for the audit event.
    pub(super) fn checks_allow(tx: &mut dyn Tx, request: &Approval) -> Result<Vec<CheckRecord>> {
        let required = query_one(
            tx,
            "SELECT require_check FROM policies WHERE model = ? AND alias = ?",
            &[request.model.as_str().into(), request.alias.as_str().into()],
        )?
        .and_then(|r| r[0].as_str().map(str::to_string));
        let Some(required) = required else {
            return Ok(Vec::new());
        };
        let latest = Self::latest_checks(tx, &request.model, request.version)?;
        let consulted: Vec<CheckRecord> = latest
            .into_iter()
            .filter(|c| required == ANY_SUITE || c.suite == required)
            .collect();
        let (model, version, alias, id) =
            (&request.model, request.version, &request.alias, request.id);
        let what = if required == ANY_SUITE {
            "a passing check".to_string()
        } else {
            format!("a passing check of suite '{required}'")
        };
        let hint = format!(
            "run `pilothouse check {model} --candidate {version} --suite <suite.toml>` and approve again"
        );
        if consulted.is_empty() {
            return Err(RegistryError::ApprovalRequired(format!(
                "the policy on alias '{alias}' of {model} requires {what} on version {version} before request {id} is approved, and none is recorded; {hint}"
            )));
        }
        if let Some(failed) = consulted.iter().find(|c| !c.passed) {
            let names = failed.failed();
            return Err(RegistryError::ApprovalRequired(format!(
                "the policy on alias '{alias}' of {model} requires {what} on version {version} before request {id} is approved; its newest check of suite '{}' (record {}) failed{}; {hint}",
                failed.suite,
                failed.id,
                if names.is_empty() { String::new() } else { format!(": {}", names.join(", ")) },
            )));
        }
        Ok(consulted)
    }
}
