//! The audit log: one event per mutation, chained by hash. Each event's hash covers the
//! previous event's hash and its own fields, so editing, deleting or reordering any stored
//! event breaks the chain at that point.
//!
//! Two defences against someone who can write the database: an anchor (the head's sequence
//! number and hash, kept outside the registry) detects deleted newest events and a chain
//! rewritten from scratch; and a keyed chain (HMAC-SHA256 with the key in
//! `PILOTHOUSE_AUDIT_KEY`), whose events cannot be edited or forged without the key. A
//! keyed chain rewritten whole as a plain one is still a valid plain chain: only an anchor
//! (which holds a keyed hash) tells them apart, so keep one. Writers without the key (or with
//! another) are refused once the log is keyed, so they cannot break it by accident.

use hmac::{Hmac, Mac};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};
use crate::records::{select, AuditEvent, AuditHead, Named};
use crate::store::{query_one, Row, Tx, Value};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The environment variable holding the key of the keyed chain.
pub const KEY_VARIABLE: &str = "PILOTHOUSE_AUDIT_KEY";
/// How a keyed event's hash starts; plain events are bare SHA-256 hex.
const KEYED: &str = "hmac-sha256:";

/// The audit key from the environment, when one is set (and not empty).
pub fn key_from_env() -> Option<Vec<u8>> {
    std::env::var_os(KEY_VARIABLE)
        .map(|k| k.into_encoded_bytes())
        .filter(|k| !k.is_empty())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn event_hash(
    key: Option<&[u8]>,
    prev: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    model: &str,
    details: &str,
) -> String {
    let (seq, at) = (seq.to_string(), at.to_string());
    let parts = [prev, &seq, &at, actor, action, model, details];
    match key {
        None => {
            let mut h = Sha256::new();
            for part in parts {
                h.update(part.as_bytes());
                h.update([0u8]);
            }
            hex::encode(h.finalize())
        }
        Some(key) => {
            let mut h = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
            for part in parts {
                h.update(part.as_bytes());
                h.update(&[0u8]);
            }
            format!("{KEYED}{}", hex::encode(h.finalize().into_bytes()))
        }
    }
}

/// The newest event's sequence number and hash (0 and the genesis hash when there is none):
/// kept outside the registry, it lets `verify` detect truncation and rewriting.
pub(crate) fn head(tx: &mut dyn Tx) -> Result<AuditHead> {
    Ok(match stored(tx, "ORDER BY seq DESC LIMIT 1", &[])?.pop() {
        Some(e) => AuditHead {
            seq: e.seq,
            hash: e.hash,
            at: Some(e.at),
        },
        None => AuditHead {
            seq: 0,
            hash: GENESIS.to_string(),
            at: None,
        },
    })
}

/// An event as stored: its details as the exact text that was hashed.
struct Stored {
    seq: i64,
    at: i64,
    actor: String,
    action: String,
    model: String,
    details: String,
    prev_hash: String,
    hash: String,
}

impl Stored {
    fn of(row: &Row) -> Stored {
        let r = Named::new(AuditEvent::COLUMNS, row);
        Stored {
            seq: r.int("seq").unwrap_or(-1),
            at: r.int("at").unwrap_or(0),
            actor: r.text("actor").unwrap_or_default(),
            action: r.text("action").unwrap_or_default(),
            model: r.text("model").unwrap_or_default(),
            details: r.text("details").unwrap_or_default(),
            prev_hash: r.text("prev_hash").unwrap_or_default(),
            hash: r.text("hash").unwrap_or_default(),
        }
    }

    /// The hash of this event's fields after `prev`, with `key` when it is keyed.
    fn recompute(&self, key: Option<&[u8]>, prev: &str) -> String {
        event_hash(
            key,
            prev,
            self.seq,
            self.at,
            &self.actor,
            &self.action,
            &self.model,
            &self.details,
        )
    }
}

/// The stored events `FROM audit <rest>` selects.
fn stored(tx: &mut dyn Tx, rest: &str, params: &[Value]) -> Result<Vec<Stored>> {
    let sql = format!(
        "SELECT {} FROM audit {rest}",
        select(AuditEvent::COLUMNS, "")
    );
    Ok(tx.query(&sql, params)?.iter().map(Stored::of).collect())
}

/// Before appending after keyed event `seq`: this process must hold the key it was written
/// with, or its event would break the chain for every later verification.
fn check_same_key(tx: &mut dyn Tx, seq: i64, key: Option<&[u8]>) -> Result<()> {
    let Some(key) = key else {
        return Err(RegistryError::Integrity(format!(
            "the audit log is keyed (HMAC) but {KEY_VARIABLE} is not set in this process: set it to the registry's audit key to write to this registry"
        )));
    };
    let Some(event) = stored(tx, "WHERE seq = ?", &[Value::Int(seq)])?.pop() else {
        return Ok(());
    };
    let recomputed = event.recompute(Some(key), &event.prev_hash);
    if recomputed != event.hash {
        return Err(RegistryError::Integrity(format!(
            "{KEY_VARIABLE} in this process is not the key the audit log was written with (event {seq} does not verify with it); nothing was written"
        )));
    }
    Ok(())
}

/// An anchor taken earlier with `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

/// Appends an event inside the caller's transaction.
pub(crate) fn append(
    tx: &mut dyn Tx,
    at: i64,
    actor: &str,
    action: &str,
    model: Option<&str>,
    details: &Json,
) -> Result<()> {
    tx.lock("pilothouse.audit")?;
    let head = query_one(
        tx,
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    let (seq, prev) = match head {
        Some(row) => (
            row[0].as_i64().unwrap_or(0) + 1,
            row[1].as_str().unwrap_or(GENESIS).to_string(),
        ),
        None => (1, GENESIS.to_string()),
    };
    let key = key_from_env();
    if prev.starts_with(KEYED) {
        check_same_key(tx, seq - 1, key.as_deref())?;
    }
    // serde_json's default map is ordered by key, so this text is canonical.
    let details = details.to_string();
    let model_text = model.unwrap_or("");
    let hash = event_hash(
        key.as_deref(),
        &prev,
        seq,
        at,
        actor,
        action,
        model_text,
        &details,
    );
    tx.execute(
        "INSERT INTO audit (seq, at, actor, action, model, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            Value::Int(seq),
            Value::Int(at),
            actor.into(),
            action.into(),
            model.map(str::to_string).into(),
            details.into(),
            prev.into(),
            hash.into(),
        ],
    )?;
    Ok(())
}

/// Walks the whole chain; Ok(number of events) or the first place it is broken. With a key,
/// keyed events are checked with it and a plain event after a keyed one is a rewrite; with
/// an anchor, the anchored event must still be there, unchanged.
pub(crate) fn verify(tx: &mut dyn Tx, key: Option<&[u8]>, anchor: Option<&Anchor>) -> Result<i64> {
    let rows = stored(tx, "ORDER BY seq", &[])?;
    let broken = |m: String| Err(RegistryError::Integrity(format!("audit log broken at {m}")));
    let mut prev = GENESIS.to_string();
    let mut keyed_seen = None;
    for (expected_seq, event) in (1i64..).zip(rows.iter()) {
        let seq = event.seq;
        let stored_hash = event.hash.as_str();
        if seq != expected_seq {
            return broken(format!(
                "event {expected_seq}: the next stored event is {seq}, so {} deleted or renumbered",
                if seq > expected_seq {
                    "events were"
                } else {
                    "an event was"
                }
            ));
        }
        if event.prev_hash != prev {
            return broken(format!(
                "event {seq}: it does not follow event {} (events were reordered, replaced or deleted)",
                seq - 1
            ));
        }
        let is_keyed = stored_hash.starts_with(KEYED);
        let event_key = match (is_keyed, key) {
            (true, None) => {
                return Err(RegistryError::Integrity(format!(
                    "audit event {seq} is keyed (HMAC): set {KEY_VARIABLE} to the key it was written with to verify the log"
                )))
            }
            (true, Some(k)) => {
                keyed_seen.get_or_insert(seq);
                Some(k)
            }
            (false, _) => {
                if let (Some(first), Some(_)) = (keyed_seen, key) {
                    return broken(format!(
                        "event {seq}: it is not keyed though event {first} before it is (the chain was rewritten without the key)"
                    ));
                }
                None
            }
        };
        let recomputed = event.recompute(event_key, &prev);
        if recomputed != stored_hash {
            return broken(format!(
                "event {seq} ({} by {}): its contents were edited after it was written{}",
                event.action,
                event.actor,
                if is_keyed {
                    ", or it was written with another key"
                } else {
                    ""
                }
            ));
        }
        prev = stored_hash.to_string();
    }
    if let Some(anchor) = anchor {
        let last = rows.len() as i64;
        if anchor.seq < 0 {
            return Err(RegistryError::invalid(
                "audit anchor",
                anchor.seq.to_string(),
                "its sequence number is negative; pass what audit_head() returned",
            ));
        }
        if anchor.seq > last {
            return Err(RegistryError::Integrity(format!(
                "audit log truncated: the anchor names event {} but the log ends at event {last} (newer events were deleted)",
                anchor.seq
            )));
        }
        let at_anchor = match anchor.seq {
            0 => GENESIS,
            n => rows[(n - 1) as usize].hash.as_str(),
        };
        if at_anchor != anchor.hash {
            return Err(RegistryError::Integrity(format!(
                "audit log rewritten: event {} does not match the anchor kept outside the registry (the chain was recomputed)",
                anchor.seq
            )));
        }
    }
    Ok(rows.len() as i64)
}
