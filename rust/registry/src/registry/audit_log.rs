//! Reading and verifying the hash-chained audit log, and its head as an anchor.

use serde_json::Value as Json;

use super::*;

impl Registry {
    // -- audit ------------------------------------------------------------------------------

    pub fn audit_log(&self, model: Option<&str>, limit: i64) -> Result<Vec<Json>> {
        self.read(|tx| {
            let rows = match model {
                Some(m) => tx.query(
                    "SELECT seq, at, actor, action, model, details, prev_hash, hash FROM audit WHERE model = ? ORDER BY seq DESC LIMIT ?",
                    &[m.into(), Value::Int(limit)],
                )?,
                None => tx.query("SELECT seq, at, actor, action, model, details, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT ?", &[Value::Int(limit)])?,
            };
            let mut events: Vec<Json> = rows.iter().map(|r| audit::row_to_json(r)).collect();
            events.reverse();
            Ok(events)
        })
    }

    /// Ok(number of events checked), or an Integrity error saying where the chain breaks.
    /// Keyed events are checked with the key in `PILOTHOUSE_AUDIT_KEY`; an anchor taken
    /// with `audit_head` also catches truncation and a recomputed chain.
    pub fn verify_audit_log(&self, anchor: Option<&audit::Anchor>) -> Result<i64> {
        let key = audit::key_from_env();
        self.read(|tx| audit::verify(tx, key.as_deref(), anchor))
    }

    /// The newest audit event's `{seq, hash, at}`: keep it outside the registry and pass it
    /// to `verify_audit_log` later.
    pub fn audit_head(&self) -> Result<Json> {
        self.read(audit::head)
    }
}
