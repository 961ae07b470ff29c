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
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};
use crate::store::{query_one, Tx, Value};

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
pub(crate) fn head(tx: &mut dyn Tx) -> Result<Json> {
    let row = query_one(
        tx,
        "SELECT seq, hash, at FROM audit ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    Ok(match row {
        Some(r) => json!({"seq": r[0].as_i64(), "hash": r[1].as_str(), "at": r[2].as_i64()}),
        None => json!({"seq": 0, "hash": GENESIS, "at": null}),
    })
}

/// Before appending after keyed event `seq`: this process must hold the key it was written
/// with, or its event would break the chain for every later verification.
fn check_same_key(tx: &mut dyn Tx, seq: i64, key: Option<&[u8]>) -> Result<()> {
    let Some(key) = key else {
        return Err(RegistryError::Integrity(format!(
            "the audit log is keyed (HMAC) but {KEY_VARIABLE} is not set in this process: set it to the registry's audit key to write to this registry"
        )));
    };
    let row = query_one(
        tx,
        "SELECT seq, at, actor, action, model, details, prev_hash, hash FROM audit WHERE seq = ?",
        &[Value::Int(seq)],
    )?;
    let Some(r) = row else {
        return Ok(());
    };
    let recomputed = event_hash(
        Some(key),
        r[6].as_str().unwrap_or(""),
        seq,
        r[1].as_i64().unwrap_or(0),
        r[2].as_str().unwrap_or(""),
        r[3].as_str().unwrap_or(""),
        r[4].as_str().unwrap_or(""),
        r[5].as_str().unwrap_or(""),
    );
    if recomputed != r[7].as_str().unwrap_or("") {
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

pub(crate) fn row_to_json(row: &[Value]) -> Json {
    let details: Json = row[5]
        .as_str()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Json::Null);
    json!({
        "seq": row[0].as_i64(),
        "at": row[1].as_i64(),
        "actor": row[2].as_str(),
        "action": row[3].as_str(),
        "model": row[4].as_str(),
        "details": details,
        "prev_hash": row[6].as_str(),
        "hash": row[7].as_str(),
    })
}

/// Walks the whole chain; Ok(number of events) or the first place it is broken. With a key,
/// keyed events are checked with it and a plain event after a keyed one is a rewrite; with
/// an anchor, the anchored event must still be there, unchanged.
pub(crate) fn verify(tx: &mut dyn Tx, key: Option<&[u8]>, anchor: Option<&Anchor>) -> Result<i64> {
    let rows = tx.query(
        "SELECT seq, at, actor, action, model, details, prev_hash, hash FROM audit ORDER BY seq",
        &[],
    )?;
    let broken = |m: String| Err(RegistryError::Integrity(format!("audit log broken at {m}")));
    let mut prev = GENESIS.to_string();
    let mut keyed_seen = None;
    for (expected_seq, row) in (1i64..).zip(rows.iter()) {
        let seq = row[0].as_i64().unwrap_or(-1);
        let stored_prev = row[6].as_str().unwrap_or("");
        let stored_hash = row[7].as_str().unwrap_or("");
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
        if stored_prev != prev {
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
        let recomputed = event_hash(
            event_key,
            &prev,
            seq,
            row[1].as_i64().unwrap_or(0),
            row[2].as_str().unwrap_or(""),
            row[3].as_str().unwrap_or(""),
            row[4].as_str().unwrap_or(""),
            row[5].as_str().unwrap_or(""),
        );
        if recomputed != stored_hash {
            return broken(format!(
                "event {seq} ({} by {}): its contents were edited after it was written{}",
                row[3].as_str().unwrap_or("?"),
                row[2].as_str().unwrap_or("?"),
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
            n => rows[(n - 1) as usize][7].as_str().unwrap_or(""),
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
