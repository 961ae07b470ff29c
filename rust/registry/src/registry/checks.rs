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
    /// Records that `suite` ran against `version` and what each of its checks found
    /// (`{"checks": [{"name", "passed", ...}], ...}`). The suite passed when every check
    /// did: the verdict is read from the results, never taken apart from them.
    pub fn record_check(
        &self,
        actor: &str,
        model: &str,
        version: i64,
        suite: &str,
        results: &Json,
    ) -> Result<CheckRecord> {
        names::key("suite name", suite)?;
        let passed = verdict(suite, results)?;
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
            // ordered with approvals of the same model, which read the newest check
            tx.lock(&format!("pilothouse.model.{model}"))?;
            Self::version_row(tx, model, version)?;
            let row = query_one(
                tx,
                "INSERT INTO version_checks (model, version, suite, passed, results, recorded_at, recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                &[model.into(), Value::Int(version), suite.into(), Value::Int(passed.into()), text.as_str().into(), Value::Int(at), actor.into()],
            )?;
            let id = row.and_then(|r| r[0].as_i64()).unwrap_or(0);
            let record = Self::check(tx, id)?;
            let mut details = summary(&record);
            details["version"] = json!(version);
            audit::append(tx, at, actor, "check.record", Some(model), &details)?;
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

    /// Refuses `request` (to approve it, or to move its alias with it) when its alias's
    /// policy requires a passing check and the version's newest check of that suite (of
    /// every suite, for `*`) did not pass. Returns the records it relied on.
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
            "run `pilothouse check {model} --candidate {version} --suite <suite.toml>`, then try again"
        );
        if consulted.is_empty() {
            return Err(RegistryError::ApprovalRequired(format!(
                "the policy on alias '{alias}' of {model} requires {what} on version {version} (promotion request {id}), and none is recorded; {hint}"
            )));
        }
        if let Some(failed) = consulted.iter().find(|c| !c.passed) {
            let names = failed.failed();
            return Err(RegistryError::ApprovalRequired(format!(
                "the policy on alias '{alias}' of {model} requires {what} on version {version} (promotion request {id}); its newest check of suite '{}' (record {}) failed{}; {hint}",
                failed.suite,
                failed.id,
                if names.is_empty() { String::new() } else { format!(": {}", names.join(", ")) },
            )));
        }
        Ok(consulted)
    }
}

/// Whether every check of `results` passed; refuses results that hold no check, or a check
/// without a name or a verdict.
fn verdict(suite: &str, results: &Json) -> Result<bool> {
    let bad = |why: String| RegistryError::invalid("check results", suite, why);
    let checks = results["checks"]
        .as_array()
        .ok_or_else(|| bad("they must be a JSON object with a 'checks' list".into()))?;
    if checks.is_empty() {
        return Err(bad("they must hold at least one check".into()));
    }
    let mut passed = true;
    for (i, c) in checks.iter().enumerate() {
        let named = c["name"].as_str().is_some_and(|n| !n.is_empty());
        let Some(ok) = c["passed"].as_bool().filter(|_| named) else {
            return Err(bad(format!(
                "check {i} needs a 'name' and 'passed' (true or false)"
            )));
        };
        passed &= ok;
    }
    Ok(passed)
}

/// What an audit event says of a check record: which, its suite (and the suite file's
/// hash, when known), its verdict and the checks that failed.
pub(super) fn summary(c: &CheckRecord) -> Json {
    json!({
        "id": c.id,
        "suite": c.suite,
        "suite_sha256": c.results.get("suite_sha256").cloned().unwrap_or(Json::Null),
        "passed": c.passed,
        "failed": c.failed(),
    })
}
