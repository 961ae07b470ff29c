//! The audit log: one event per mutation, chained by hash. Each event's hash covers the
//! previous event's hash and its own fields, so editing, deleting or reordering any stored
//! event breaks the chain at that point.

use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};
use crate::store::{query_one, Tx, Value};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn event_hash(
    prev: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    model: &str,
    details: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        &at.to_string(),
        actor,
        action,
        model,
        details,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
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
    // serde_json's default map is ordered by key, so this text is canonical.
    let details = details.to_string();
    let model_text = model.unwrap_or("");
    let hash = event_hash(&prev, seq, at, actor, action, model_text, &details);
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

/// Walks the whole chain; Ok(number of events) or the first place it is broken.
pub(crate) fn verify(tx: &mut dyn Tx) -> Result<i64> {
    let rows = tx.query(
        "SELECT seq, at, actor, action, model, details, prev_hash, hash FROM audit ORDER BY seq",
        &[],
    )?;
    let mut prev = GENESIS.to_string();
    for (expected_seq, row) in (1i64..).zip(rows.iter()) {
        let seq = row[0].as_i64().unwrap_or(-1);
        let stored_prev = row[6].as_str().unwrap_or("");
        let stored_hash = row[7].as_str().unwrap_or("");
        if seq != expected_seq {
            return Err(RegistryError::Integrity(format!(
                "audit log broken at event {expected_seq}: the next stored event is {seq}, so {} deleted or renumbered",
                if seq > expected_seq { "events were" } else { "an event was" }
            )));
        }
        if stored_prev != prev {
            return Err(RegistryError::Integrity(format!(
                "audit log broken at event {seq}: it does not follow event {} (events were reordered, replaced or deleted)",
                seq - 1
            )));
        }
        let recomputed = event_hash(
            &prev,
            seq,
            row[1].as_i64().unwrap_or(0),
            row[2].as_str().unwrap_or(""),
            row[3].as_str().unwrap_or(""),
            row[4].as_str().unwrap_or(""),
            row[5].as_str().unwrap_or(""),
        );
        if recomputed != stored_hash {
            return Err(RegistryError::Integrity(format!(
                "audit log broken at event {seq} ({} by {}): its contents were edited after it was written",
                row[3].as_str().unwrap_or("?"),
                row[2].as_str().unwrap_or("?")
            )));
        }
        prev = stored_hash.to_string();
    }
    Ok(rows.len() as i64)
}
