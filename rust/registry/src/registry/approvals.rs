//! Four-eyes approval: policies that guard aliases (and the check they may require), promotion
//! requests and decisions.

use serde_json::json;

use super::checks;
use super::*;
use crate::records::CheckRecord;

impl Registry {
    /// Guards `alias` (or, with `require_approval` false, stops guarding it): a guarded
    /// alias moves only with an approved request. `require_check` names a suite (or `*`:
    /// every suite recorded) whose newest check on the version must have passed before a
    /// request is approved and before the alias moves with it; `Some("")` drops that
    /// requirement, and `None` keeps what the policy had. `allow_rollback` lets an alert
    /// rule's `rollback` action move the alias back without an approval (`None` keeps it).
    pub fn set_policy(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
        require_approval: bool,
        require_check: Option<&str>,
        allow_rollback: Option<bool>,
    ) -> Result<()> {
        names::alias(alias)?;
        if let Some(suite) = require_check.filter(|s| !s.is_empty()) {
            if !require_approval {
                return Err(RegistryError::invalid(
                    "policy",
                    alias,
                    "a required check is enforced when a request is approved; it needs require_approval",
                ));
            }
            if suite != ANY_SUITE {
                names::key("suite name", suite)?;
            }
        }
        let at = now_micros();
        self.write(|tx| {
            tx.lock(&format!("pilothouse.model.{model}"))?;
            query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?.ok_or_else(|| RegistryError::not_found("model", model))?;
            if require_approval {
                let kept = query_one(tx, "SELECT require_check, allow_rollback FROM policies WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?;
                let kept_check = kept.as_ref().and_then(|r| r[0].as_str().map(str::to_string));
                let kept_rollback = kept.as_ref().and_then(|r| r[1].as_i64()).unwrap_or(0) != 0;
                let check = match require_check {
                    None => kept_check,
                    Some("") => None,
                    Some(suite) => Some(suite.to_string()),
                };
                let rollback = allow_rollback.unwrap_or(kept_rollback);
                tx.execute(
                    "INSERT INTO policies (model, alias, require_check, allow_rollback) VALUES (?, ?, ?, ?) ON CONFLICT (model, alias) DO UPDATE SET require_check = excluded.require_check, allow_rollback = excluded.allow_rollback",
                    &[model.into(), alias.into(), check.clone().map_or(Value::Null, Value::Text), Value::Int(rollback.into())],
                )?;
                audit::append(tx, at, actor, "policy.set", Some(model), &json!({"alias": alias, "require_approval": true, "require_check": check, "allow_rollback": rollback}))
            } else {
                tx.execute("DELETE FROM policies WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?;
                audit::append(tx, at, actor, "policy.set", Some(model), &json!({"alias": alias, "require_approval": false, "require_check": null}))
            }
        })
    }

    /// The guarded aliases of a model, with the suite each requires a passing check of.
    pub fn policies(&self, model: &str) -> Result<Vec<(String, Option<String>)>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT alias, require_check FROM policies WHERE model = ? ORDER BY alias",
                    &[model.into()],
                )?
                .into_iter()
                .filter_map(|r| {
                    let alias = r[0].as_str()?.to_string();
                    Some((alias, r[1].as_str().map(str::to_string)))
                })
                .collect())
        })
    }

    pub fn request_promotion(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
        version: i64,
        reason: &str,
        evidence: Option<&Json>,
    ) -> Result<Approval> {
        names::alias(alias)?;
        let at = now_micros();
        let evidence_text = evidence.map(Json::to_string);
        let id = self.write(|tx| {
            Self::version_row(tx, model, version)?;
            let row = query_one(
                tx,
                "INSERT INTO approvals (model, alias, version, requested_by, requested_at, reason, status, evidence) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
                &[model.into(), alias.into(), Value::Int(version), actor.into(), Value::Int(at), reason.into(), evidence_text.clone().map_or(Value::Null, Value::Text)],
            )?;
            let id = row.and_then(|r| r[0].as_i64()).unwrap_or(0);
            let checks: Vec<Json> = Self::latest_checks(tx, model, version)?.iter().map(checks::summary).collect();
            let mut details = json!({"id": id, "alias": alias, "version": version, "reason": reason, "checks": checks});
            if let Some(e) = evidence {
                details["evidence"] = e.clone();
            }
            audit::append(tx, at, actor, "approval.request", Some(model), &details)?;
            Ok(id)
        })?;
        self.get_approval(id)
    }

    pub fn get_approval(&self, id: i64) -> Result<Approval> {
        self.read(|tx| Self::approval(tx, id))
    }

    pub(super) fn approval(tx: &mut dyn Tx, id: i64) -> Result<Approval> {
        let mut request = Approval::read_where(tx, "WHERE id = ?", &[Value::Int(id)])?
            .pop()
            .ok_or_else(|| RegistryError::not_found("approval request", id.to_string()))?;
        Self::attach_checks(tx, &mut request)?;
        Ok(request)
    }

    pub fn approvals(&self, model: &str) -> Result<Vec<Approval>> {
        self.read(|tx| {
            let mut requests =
                Approval::read_where(tx, "WHERE model = ? ORDER BY id", &[model.into()])?;
            for request in &mut requests {
                Self::attach_checks(tx, request)?;
            }
            Ok(requests)
        })
    }

    /// The checks a request shows: while pending, the version's newest check of each
    /// suite; once decided, the checks its decision saw.
    fn attach_checks(tx: &mut dyn Tx, request: &mut Approval) -> Result<()> {
        if request.status == "pending" {
            request.checks = Self::latest_checks(tx, &request.model, request.version)?;
            return Ok(());
        }
        let seen = query_one(
            tx,
            "SELECT decision_checks FROM approvals WHERE id = ?",
            &[Value::Int(request.id)],
        )?
        .and_then(|r| {
            r[0].as_str()
                .and_then(|t| serde_json::from_str::<Vec<i64>>(t).ok())
        })
        .unwrap_or_default();
        request.checks = Vec::with_capacity(seen.len());
        for id in seen {
            request.checks.extend(CheckRecord::read_where(
                tx,
                "WHERE id = ?",
                &[Value::Int(id)],
            )?);
        }
        Ok(())
    }

    /// Approves or rejects a pending request. The requester cannot decide their own request.
    pub fn decide(&self, actor: &str, id: i64, approve: bool, reason: &str) -> Result<Approval> {
        let at = now_micros();
        let model = self.write(|tx| {
            let model: Option<String> = query_one(tx, "SELECT model FROM approvals WHERE id = ?", &[Value::Int(id)])?
                .and_then(|r| r[0].as_str().map(str::to_string));
            if let Some(model) = &model {
                // ordered with checks recorded on the same model
                tx.lock(&format!("pilothouse.model.{model}"))?;
            }
            let request = Self::approval(tx, id)?;
            if request.status != "pending" {
                return Err(RegistryError::Conflict(format!("approval request {id} is already {}", request.status)));
            }
            if request.requested_by == actor {
                return Err(RegistryError::ApprovalRequired(format!(
                    "{actor} requested promotion {id} and cannot also decide it; another person must approve or reject it"
                )));
            }
            let consulted: Vec<Json> = if approve {
                Self::checks_allow(tx, &request)?.iter().map(checks::summary).collect()
            } else {
                Vec::new()
            };
            // what the decider saw: the version's newest check of each suite
            let seen: Vec<i64> = request.checks.iter().map(|c| c.id).collect();
            let decision = if approve { "approved" } else { "rejected" };
            tx.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, decision_reason = ?, decision_checks = ? WHERE id = ?",
                &[decision.into(), actor.into(), Value::Int(at), reason.into(), Value::Text(json!(seen).to_string()), Value::Int(id)],
            )?;
            audit::append(tx, at, actor, &format!("approval.{}", if approve { "approve" } else { "reject" }), Some(&request.model), &json!({"id": id, "reason": reason, "checks": consulted}))?;
            Ok(request.model)
        })?;
        let record = self.get_approval(id)?;
        self.hooks
            .notify(&model, Event::ApprovalDecided, record.to_json());
        Ok(record)
    }
}
