//! Aliases: moved (through the approval policy when the alias is guarded), deleted, and
//! their full history.

use serde_json::json;

use super::checks;
use super::*;

impl Registry {
    // -- aliases and governance -------------------------------------------------------------

    /// Points `alias` at `version`. An alias guarded by a policy moves only with an approved
    /// request for exactly this move, by someone other than its requester; the approval is
    /// used up.
    pub fn set_alias(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
        version: i64,
    ) -> Result<Version> {
        names::alias(alias)?;
        let at = now_micros();
        self.write(|tx| {
            tx.lock(&format!("pilothouse.model.{model}"))?;
            let row = Self::version_row(tx, model, version)?;
            if records::Named::new(Version::COLUMNS, &row).text("status").as_deref() == Some("archived") {
                return Err(RegistryError::Conflict(format!("models:/{model}/{version} is archived; restore it before aliasing it")));
            }
            let previous = query_one(tx, "SELECT version FROM aliases WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?.and_then(|r| r[0].as_i64());
            if previous == Some(version) {
                return Ok(());
            }
            let guarded = query_one(tx, "SELECT 1 FROM policies WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?.is_some();
            let mut approval_id = None;
            let mut consulted = Vec::new();
            if guarded {
                let approval = query_one(
                    tx,
                    "SELECT id, requested_by, decided_by FROM approvals WHERE model = ? AND alias = ? AND version = ? AND status = 'approved' ORDER BY id DESC LIMIT 1",
                    &[model.into(), alias.into(), Value::Int(version)],
                )?
                .ok_or_else(|| {
                    RegistryError::ApprovalRequired(format!(
                        "alias '{alias}' of {model} is guarded: moving it to version {version} needs an approved request (request_promotion, then approve by another person)"
                    ))
                })?;
                let id = approval[0].as_i64().unwrap_or(0);
                // the required check holds when the alias moves too: a policy set after the
                // approval, or a failing check recorded since, stops the move
                let request = Self::approval(tx, id)?;
                let relied = Self::checks_allow(tx, &request)?;
                // a passing check the approver did not see, recorded by the requester, does
                // not stand in for their approval
                let seen: Vec<i64> = request.checks.iter().map(|c| c.id).collect();
                if let Some(c) = relied.iter().find(|c| !seen.contains(&c.id) && c.recorded_by == request.requested_by) {
                    return Err(RegistryError::ApprovalRequired(format!(
                        "the check that would let alias '{alias}' of {model} move to version {version} (record {}) was recorded by {}, who requested the promotion, after request {id} was approved; record it as someone else, or have a new request approved",
                        c.id, c.recorded_by
                    )));
                }
                consulted = relied.iter().map(checks::summary).collect();
                tx.execute("UPDATE approvals SET status = 'used' WHERE id = ?", &[Value::Int(id)])?;
                approval_id = Some(id);
            }
            tx.execute(
                "INSERT INTO aliases (model, alias, version, updated_at, updated_by) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                &[model.into(), alias.into(), Value::Int(version), Value::Int(at), actor.into()],
            )?;
            tx.execute(
                "INSERT INTO alias_history (model, alias, version, previous, at, actor, approval_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                &[model.into(), alias.into(), Value::Int(version), previous.into(), Value::Int(at), actor.into(), approval_id.into()],
            )?;
            let mut details = json!({"alias": alias, "version": version, "previous": previous, "approval_id": approval_id});
            if !consulted.is_empty() {
                details["checks"] = json!(consulted);
            }
            audit::append(tx, at, actor, "alias.set", Some(model), &details)
        })?;
        let record = self.get_version(model, version)?;
        self.hooks.notify(
            model,
            Event::AliasMoved,
            json!({"alias": alias, "version": record.to_json()}),
        );
        Ok(record)
    }

    /// Moves `alias` back to the version it pointed at before its last move (an alert
    /// rule's `rollback` action). A guarded alias rolls back only when its policy allows
    /// it (`allow_rollback`); the move is in the alias's history and the audit log.
    pub fn roll_back_alias(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
        reason: &str,
    ) -> Result<Version> {
        names::alias(alias)?;
        let at = now_micros();
        let version = self.write(|tx| {
            tx.lock(&format!("pilothouse.model.{model}"))?;
            let current = query_one(tx, "SELECT version FROM aliases WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?
                .and_then(|r| r[0].as_i64())
                .ok_or_else(|| RegistryError::not_found("alias", format!("{model}@{alias}")))?;
            let previous = query_one(
                tx,
                "SELECT previous FROM alias_history WHERE model = ? AND alias = ? AND version = ? ORDER BY id DESC LIMIT 1",
                &[model.into(), alias.into(), Value::Int(current)],
            )?
            .and_then(|r| r[0].as_i64())
            .ok_or_else(|| RegistryError::Conflict(format!("alias '{alias}' of {model} has no earlier version to roll back to")))?;
            let policy = query_one(tx, "SELECT allow_rollback FROM policies WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?;
            if let Some(row) = policy {
                if row[0].as_i64().unwrap_or(0) == 0 {
                    return Err(RegistryError::ApprovalRequired(format!(
                        "alias '{alias}' of {model} is guarded by a policy that does not allow automatic rollback; allow it (set_policy(..., allow_rollback=True)) or promote version {previous} through an approval"
                    )));
                }
            }
            let row = Self::version_row(tx, model, previous)?;
            if records::Named::new(Version::COLUMNS, &row).text("status").as_deref() == Some("archived") {
                return Err(RegistryError::Conflict(format!("models:/{model}/{previous} is archived; it cannot take alias '{alias}' back")));
            }
            tx.execute(
                "UPDATE aliases SET version = ?, updated_at = ?, updated_by = ? WHERE model = ? AND alias = ?",
                &[Value::Int(previous), Value::Int(at), actor.into(), model.into(), alias.into()],
            )?;
            tx.execute(
                "INSERT INTO alias_history (model, alias, version, previous, at, actor, approval_id) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                &[model.into(), alias.into(), Value::Int(previous), Value::Int(current), Value::Int(at), actor.into()],
            )?;
            audit::append(tx, at, actor, "alias.rollback", Some(model), &json!({"alias": alias, "version": previous, "previous": current, "reason": reason}))?;
            Ok(previous)
        })?;
        let record = self.get_version(model, version)?;
        self.hooks.notify(
            model,
            Event::AliasMoved,
            json!({"alias": alias, "version": record.to_json(), "rollback": true}),
        );
        Ok(record)
    }

    pub fn delete_alias(&self, actor: &str, model: &str, alias: &str) -> Result<()> {
        let at = now_micros();
        self.write(|tx| {
            let previous = query_one(tx, "SELECT version FROM aliases WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?
                .and_then(|r| r[0].as_i64())
                .ok_or_else(|| RegistryError::not_found("alias", format!("{model}@{alias}")))?;
            if query_one(tx, "SELECT 1 FROM policies WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?.is_some() {
                return Err(RegistryError::ApprovalRequired(format!("alias '{alias}' of {model} is guarded by a policy; remove the policy before deleting it")));
            }
            tx.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?;
            tx.execute(
                "INSERT INTO alias_history (model, alias, version, previous, at, actor) VALUES (?, ?, NULL, ?, ?, ?)",
                &[model.into(), alias.into(), Value::Int(previous), Value::Int(at), actor.into()],
            )?;
            audit::append(tx, at, actor, "alias.delete", Some(model), &json!({"alias": alias, "previous": previous}))
        })
    }

    pub fn alias_history(&self, model: &str, alias: &str) -> Result<Vec<AliasMove>> {
        self.read(|tx| {
            let moves = AliasMove::history(tx, model, alias)?;
            if moves.is_empty()
                && query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?.is_none()
            {
                return Err(RegistryError::not_found("model", model));
            }
            Ok(moves)
        })
    }
}
