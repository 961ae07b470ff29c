//! Four-eyes approval: policies that guard aliases, promotion requests and decisions.

use serde_json::{json, Value as Json};

use super::*;

impl Registry {
    pub fn set_policy(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
        require_approval: bool,
    ) -> Result<()> {
        names::alias(alias)?;
        let at = now_micros();
        self.write(|tx| {
            query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?.ok_or_else(|| RegistryError::not_found("model", model))?;
            if require_approval {
                tx.execute("INSERT INTO policies (model, alias) VALUES (?, ?) ON CONFLICT (model, alias) DO NOTHING", &[model.into(), alias.into()])?;
            } else {
                tx.execute("DELETE FROM policies WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?;
            }
            audit::append(tx, at, actor, "policy.set", Some(model), &json!({"alias": alias, "require_approval": require_approval}))
        })
    }

    pub fn policies(&self, model: &str) -> Result<Vec<String>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT alias FROM policies WHERE model = ? ORDER BY alias",
                    &[model.into()],
                )?
                .into_iter()
                .filter_map(|r| r[0].as_str().map(str::to_string))
                .collect())
        })
    }

    pub(super) fn approval_json(r: &Row) -> Json {
        json!({"id": int(&r[0]), "model": text(&r[1]), "alias": text(&r[2]), "version": int(&r[3]),
               "requested_by": text(&r[4]), "requested_at": int(&r[5]), "reason": text(&r[6]), "status": text(&r[7]),
               "decided_by": text(&r[8]), "decided_at": int(&r[9]), "decision_reason": text(&r[10])})
    }

    const APPROVAL_COLUMNS: &'static str = "id, model, alias, version, requested_by, requested_at, reason, status, decided_by, decided_at, decision_reason";

    pub fn request_promotion(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
        version: i64,
        reason: &str,
    ) -> Result<Json> {
        names::alias(alias)?;
        let at = now_micros();
        let id = self.write(|tx| {
            Self::version_row(tx, model, version)?;
            let row = query_one(
                tx,
                "INSERT INTO approvals (model, alias, version, requested_by, requested_at, reason, status) VALUES (?, ?, ?, ?, ?, ?, 'pending') RETURNING id",
                &[model.into(), alias.into(), Value::Int(version), actor.into(), Value::Int(at), reason.into()],
            )?;
            let id = row.and_then(|r| r[0].as_i64()).unwrap_or(0);
            audit::append(tx, at, actor, "approval.request", Some(model), &json!({"id": id, "alias": alias, "version": version, "reason": reason}))?;
            Ok(id)
        })?;
        self.get_approval(id)
    }

    pub fn get_approval(&self, id: i64) -> Result<Json> {
        self.read(|tx| {
            let row = query_one(
                tx,
                &format!(
                    "SELECT {} FROM approvals WHERE id = ?",
                    Self::APPROVAL_COLUMNS
                ),
                &[Value::Int(id)],
            )?
            .ok_or_else(|| RegistryError::not_found("approval request", id.to_string()))?;
            Ok(Self::approval_json(&row))
        })
    }

    pub fn approvals(&self, model: &str) -> Result<Vec<Json>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    &format!(
                        "SELECT {} FROM approvals WHERE model = ? ORDER BY id",
                        Self::APPROVAL_COLUMNS
                    ),
                    &[model.into()],
                )?
                .iter()
                .map(Self::approval_json)
                .collect())
        })
    }

    /// Approves or rejects a pending request. The requester cannot decide their own request.
    pub fn decide(&self, actor: &str, id: i64, approve: bool, reason: &str) -> Result<Json> {
        let at = now_micros();
        let model = self.write(|tx| {
            let row = query_one(tx, &format!("SELECT {} FROM approvals WHERE id = ?", Self::APPROVAL_COLUMNS), &[Value::Int(id)])?
                .ok_or_else(|| RegistryError::not_found("approval request", id.to_string()))?;
            let status = row[7].as_str().unwrap_or("");
            if status != "pending" {
                return Err(RegistryError::Conflict(format!("approval request {id} is already {status}")));
            }
            if row[4].as_str() == Some(actor) {
                return Err(RegistryError::ApprovalRequired(format!(
                    "{actor} requested promotion {id} and cannot also decide it; another person must approve or reject it"
                )));
            }
            let decision = if approve { "approved" } else { "rejected" };
            tx.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, decision_reason = ? WHERE id = ?",
                &[decision.into(), actor.into(), Value::Int(at), reason.into(), Value::Int(id)],
            )?;
            let model = row[1].as_str().unwrap_or("").to_string();
            audit::append(tx, at, actor, &format!("approval.{}", if approve { "approve" } else { "reject" }), Some(&model), &json!({"id": id, "reason": reason}))?;
            Ok(model)
        })?;
        let record = self.get_approval(id)?;
        self.hooks
            .notify(&model, Event::ApprovalDecided, record.clone());
        Ok(record)
    }
}
