//! Reading and verifying the hash-chained audit log, and its head as an anchor.

use super::*;

impl Registry {
    // -- audit ------------------------------------------------------------------------------

    /// The newest `limit` events (of `model`, or all), oldest first.
    pub fn audit_log(&self, model: Option<&str>, limit: i64) -> Result<Vec<AuditEvent>> {
        self.read(|tx| {
            let mut events = match model {
                Some(m) => AuditEvent::read_where(
                    tx,
                    "WHERE model = ? ORDER BY seq DESC LIMIT ?",
                    &[m.into(), Value::Int(limit)],
                )?,
                None => {
                    AuditEvent::read_where(tx, "ORDER BY seq DESC LIMIT ?", &[Value::Int(limit)])?
                }
            };
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

    /// The newest audit event's sequence number and hash: keep it outside the registry and
    /// pass it to `verify_audit_log` later.
    pub fn audit_head(&self) -> Result<AuditHead> {
        self.read(audit::head)
    }
}
