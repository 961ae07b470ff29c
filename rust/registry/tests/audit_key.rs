//! The keyed audit chain (HMAC-SHA256 with the key in PILOTHOUSE_AUDIT_KEY). A test binary of
//! its own: it sets the process environment, which the other tests must not see.

use pilothouse_registry::{NewVersion, Registry};
use serde_json::json;

fn version(bytes: &[u8]) -> NewVersion {
    NewVersion {
        model: "m".into(),
        data: bytes.to_vec(),
        signature: json!({"inputs": []}),
        ..Default::default()
    }
}

#[test]
fn a_keyed_chain_cannot_be_recomputed_or_downgraded_without_the_key() {
    let dir = std::env::temp_dir().join(format!("ph-audit-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let uri = format!("sqlite://{}", dir.join("registry.db").display());
    let reg = Registry::open(&uri, &dir.join("artifacts")).unwrap();
    // Two events before the key is set, then keyed ones.
    reg.log_model("ann", &version(b"a")).unwrap();
    // SAFETY: this test binary has a single test; nothing else reads the environment now.
    unsafe { std::env::set_var("PILOTHOUSE_AUDIT_KEY", "k3y-for-tests") };
    reg.log_model("ann", &version(b"b")).unwrap();
    reg.log_model("ann", &version(b"c")).unwrap();
    let events = reg.audit_log(None, 100).unwrap();
    let hashes: Vec<&str> = events.iter().map(|e| e.hash.as_str()).collect();
    assert!(!hashes[0].starts_with("hmac-sha256:"), "{hashes:?}");
    assert!(
        hashes[2..].iter().all(|h| h.starts_with("hmac-sha256:")),
        "{hashes:?}"
    );
    assert_eq!(reg.verify_audit_log(None).unwrap(), 4);

    let db = rusqlite::Connection::open(dir.join("registry.db")).unwrap();
    let snapshot: Vec<(i64, String, String, String)> = db
        .prepare("SELECT seq, actor, prev_hash, hash FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let restore = |db: &rusqlite::Connection| {
        for (seq, actor, prev, hash) in &snapshot {
            db.execute(
                "UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                rusqlite::params![actor, prev, hash, seq],
            )
            .unwrap();
        }
    };

    // An edit of a keyed event is caught, and so is the event recomputed with another key.
    db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3", [])
        .unwrap();
    let e = reg.verify_audit_log(None).unwrap_err().to_string();
    assert!(e.contains("event 3") && e.contains("another key"), "{e}");
    restore(&db);

    // Downgrade: the keyed tail replaced by plain SHA-256 links (computable without the key).
    let plain = |prev: &str, seq: i64| -> String {
        use sha2::{Digest, Sha256};
        let row: (i64, String, String, Option<String>, String) = db
            .query_row(
                "SELECT at, actor, action, model, details FROM audit WHERE seq = ?",
                [seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        let mut h = Sha256::new();
        let (seq, at) = (seq.to_string(), row.0.to_string());
        for part in [
            prev,
            &seq,
            &at,
            &row.1,
            &row.2,
            row.3.as_deref().unwrap_or(""),
            &row.4,
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(h.finalize())
    };
    // Event 4 rewritten as plain after keyed event 3.
    let prev = snapshot[2].3.clone();
    let h = plain(&prev, 4);
    db.execute("UPDATE audit SET hash = ? WHERE seq = 4", [&h])
        .unwrap();
    let e = reg.verify_audit_log(None).unwrap_err().to_string();
    assert!(e.contains("event 4") && e.contains("not keyed"), "{e}");
    restore(&db);
    assert_eq!(reg.verify_audit_log(None).unwrap(), 4);

    // Without the key, a keyed log cannot be verified, and says how to fix that.
    // SAFETY: as above.
    unsafe { std::env::remove_var("PILOTHOUSE_AUDIT_KEY") };
    let e = reg.verify_audit_log(None).unwrap_err().to_string();
    assert!(e.contains("PILOTHOUSE_AUDIT_KEY"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
