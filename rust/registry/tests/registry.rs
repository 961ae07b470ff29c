//! The registry on SQLite: versions, aliases and their history, approvals, search, lineage,
//! the audit chain under tampering, concurrent writers and corrupted artifacts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pilothouse_registry::*;
use serde_json::json;

struct Temp(PathBuf);
impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fresh(name: &str) -> (Registry, Temp) {
    let dir = std::env::temp_dir().join(format!("ph-reg-{name}-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let uri = format!("sqlite://{}", dir.join("registry.db").display());
    (
        Registry::open(&uri, &dir.join("artifacts")).unwrap(),
        Temp(dir),
    )
}

fn uuid_like() -> String {
    format!(
        "{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn version(model: &str, bytes: &[u8]) -> NewVersion {
    NewVersion {
        model: model.into(),
        data: bytes.to_vec(),
        signature: json!({"inputs": []}),
        ..Default::default()
    }
}

#[test]
fn versions_number_from_one_and_resolve() {
    let (reg, _t) = fresh("versions");
    let v1 = reg
        .log_model("ann", &version("churn", b"model-one"))
        .unwrap();
    let v2 = reg
        .log_model("ann", &version("churn", b"model-two"))
        .unwrap();
    assert_eq!((Some(v1.version), Some(v2.version)), (Some(1), Some(2)));
    assert_eq!(v1.uri, "models:/churn/1");
    assert_eq!(
        v1.sha256.as_deref(),
        Some(sha256_hex(b"model-one").as_str())
    );
    assert_eq!(
        reg.resolve("models:/churn/latest", None).unwrap().version,
        2
    );
    assert_eq!(reg.artifact("churn", 1).unwrap(), b"model-one");
    let err = reg
        .resolve("models:/churn/9", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("models:/churn/9"), "{err}");
    let err = reg.resolve("models:/nope/1", None).unwrap_err().to_string();
    assert!(err.contains("model not found: nope"), "{err}");
    assert!(reg.resolve("churn/1", None).is_err());
    assert!(reg.log_model("ann", &version("../escape", b"x")).is_err());
}

#[test]
fn aliases_move_with_history_and_answer_for_the_past() {
    let (reg, _t) = fresh("aliases");
    for i in 0..3 {
        reg.log_model("ann", &version("m", format!("v{i}").as_bytes()))
            .unwrap();
    }
    reg.set_alias("ann", "m", "champion", 1).unwrap();
    let between = now_micros();
    std::thread::sleep(std::time::Duration::from_millis(5));
    reg.set_alias("bob", "m", "champion", 3).unwrap();
    assert_eq!(reg.resolve("models:/m@champion", None).unwrap().version, 3);
    assert_eq!(
        reg.resolve("models:/m@champion", Some(between))
            .unwrap()
            .version,
        1
    );
    assert!(reg
        .resolve("models:/m@champion", Some(between - 60_000_000))
        .is_err());
    let history = reg.alias_history("m", "champion").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].actor, "bob");
    assert_eq!(history[1].previous, Some(1));
    // an aliased version cannot be archived; an archived one cannot be aliased
    assert!(matches!(
        reg.archive("ann", "m", 3),
        Err(RegistryError::Conflict(_))
    ));
    reg.archive("ann", "m", 2).unwrap();
    assert!(matches!(
        reg.set_alias("ann", "m", "challenger", 2),
        Err(RegistryError::Conflict(_))
    ));
    reg.restore("ann", "m", 2).unwrap();
    reg.set_alias("ann", "m", "challenger", 2).unwrap();
}

#[test]
fn guarded_aliases_need_another_persons_approval() {
    let (reg, _t) = fresh("approvals");
    reg.log_model("ann", &version("m", b"a")).unwrap();
    reg.set_policy("lead", "m", "champion", true, None, None)
        .unwrap();
    assert!(matches!(
        reg.set_alias("ann", "m", "champion", 1),
        Err(RegistryError::ApprovalRequired(_))
    ));
    let request = reg
        .request_promotion("ann", "m", "champion", 1, "better AUC", None)
        .unwrap();
    let id = request.id;
    let err = reg.decide("ann", id, true, "looks good to me").unwrap_err();
    assert!(matches!(err, RegistryError::ApprovalRequired(_)), "{err}");
    assert!(matches!(
        reg.set_alias("ann", "m", "champion", 1),
        Err(RegistryError::ApprovalRequired(_))
    ));
    reg.decide("lead", id, true, "reviewed").unwrap();
    reg.set_alias("ann", "m", "champion", 1).unwrap();
    assert_eq!(reg.get_approval(id).unwrap().status, "used");
    assert!(matches!(
        reg.decide("lead", id, true, "again"),
        Err(RegistryError::Conflict(_))
    ));
}

#[test]
fn runs_metrics_search_and_lineage() {
    let (reg, _t) = fresh("search");
    for (model, auc, team) in [
        ("churn", 0.91, "risk"),
        ("churn", 0.80, "risk"),
        ("churn", 0.95, "growth"),
        ("fraud", 0.99, "risk"),
    ] {
        let run = reg
            .create_run(
                "ann",
                &NewRun {
                    name: "train".into(),
                    experiment: model.into(),
                    environment: json!({"python": "3.11"}),
                    ..Default::default()
                },
            )
            .unwrap();
        let id = run.id.clone();
        reg.log_params("ann", &id, &[("C".into(), "0.5".into())])
            .unwrap();
        reg.log_metrics(
            "ann",
            &id,
            &[
                ("auc".into(), auc - 0.1, Some(0)),
                ("auc".into(), auc, Some(1)),
            ],
        )
        .unwrap();
        let mut new = version(model, format!("{model}{auc}").as_bytes());
        new.run_id = Some(id.clone());
        new.tags = BTreeMap::from([("team".to_string(), team.to_string())]);
        new.dataset = Some(Dataset {
            fingerprint: "ds1".into(),
            schema: json!({"x": "float"}),
            rows: 10,
            profile: None,
        });
        reg.log_model("ann", &new).unwrap();
        reg.end_run("ann", &id, "finished", None).unwrap();
    }
    let hits = reg
        .search_versions(
            "name = 'churn' and metrics.auc > 0.85 and tags.team = 'risk'",
            "metrics.auc desc",
            100,
        )
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].version, 1);
    let all = reg
        .search_versions("metrics.auc >= 0.8", "metrics.auc desc", 100)
        .unwrap();
    let aucs: Vec<f64> = all.iter().map(|v| v.metrics["auc"]).collect();
    assert_eq!(aucs, vec![0.99, 0.95, 0.91, 0.80]);
    assert_eq!(
        reg.search_versions("params.C = '0.5' and name LIKE 'fr%'", "", 10)
            .unwrap()
            .len(),
        1
    );
    assert!(reg.search_versions("bogus = 1", "", 10).is_err());

    let lineage = reg.lineage("churn", 2).unwrap();
    let run = lineage.run.as_ref().unwrap();
    assert_eq!(run.params["C"], "0.5");
    assert_eq!(run.metric_history["auc"].len(), 2);
    assert_eq!(run.metrics["auc"], run.metric_history["auc"][1].value);
    let dataset = lineage.dataset.as_ref().unwrap();
    assert_eq!(dataset.fingerprint, "ds1");
    assert_eq!(dataset.versions.len(), 4);

    let mut child = version("churn", b"retrained");
    child.parent = Some(("churn".into(), 2));
    let c = reg.log_model("ann", &child).unwrap();
    assert_eq!(
        c.parent.as_ref().map(|p| p.uri.as_str()),
        Some("models:/churn/2")
    );
    assert_eq!(
        reg.lineage("churn", 2).unwrap().children,
        vec!["models:/churn/4".to_string()]
    );
    assert_eq!(reg.lineage("churn", 4).unwrap().parents[0].version, 2);
}

#[test]
fn the_audit_chain_detects_edits_deletions_and_reordering() {
    for tamper in ["UPDATE audit SET actor = 'mallory' WHERE seq = 3", "DELETE FROM audit WHERE seq = 2", "UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = -2"] {
        let (reg, t) = fresh("audit");
        for i in 0..4 {
            reg.log_model("ann", &version("m", format!("{i}").as_bytes())).unwrap();
        }
        assert_eq!(reg.verify_audit_log(None).unwrap(), 5); // model.create + 4 versions
        let conn = rusqlite::Connection::open(t.0.join("registry.db")).unwrap();
        conn.execute_batch(tamper).unwrap();
        drop(conn);
        let err = reg.verify_audit_log(None).unwrap_err();
        assert!(matches!(err, RegistryError::Integrity(_)), "{tamper}: {err}");
        assert!(err.to_string().contains("event 2") || err.to_string().contains("event 3"), "{err}");
    }
}

#[test]
fn an_anchor_detects_truncation_and_a_recomputed_chain() {
    use pilothouse_registry::AuditAnchor;
    let (reg, t) = fresh("anchor");
    for i in 0..3 {
        reg.log_model("ann", &version("m", format!("{i}").as_bytes()))
            .unwrap();
    }
    let head = reg.audit_head().unwrap();
    assert_eq!(head.seq, 4);
    let anchor = AuditAnchor {
        seq: 4,
        hash: head.hash.clone(),
    };
    assert_eq!(reg.verify_audit_log(Some(&anchor)).unwrap(), 4);
    // Newer events than the anchor are fine.
    reg.log_model("ann", &version("m", b"later")).unwrap();
    assert_eq!(reg.verify_audit_log(Some(&anchor)).unwrap(), 5);
    // Deleting the newest events leaves a valid chain, which only the anchor can tell.
    let conn = rusqlite::Connection::open(t.0.join("registry.db")).unwrap();
    conn.execute_batch("DELETE FROM audit WHERE seq >= 4")
        .unwrap();
    assert_eq!(reg.verify_audit_log(None).unwrap(), 3);
    let e = reg.verify_audit_log(Some(&anchor)).unwrap_err().to_string();
    assert!(e.contains("truncated") && e.contains("event 4"), "{e}");
    // An event edited and every hash after it recomputed (what an attacker with the schema
    // can do): a valid chain again, but not the anchored one.
    let (reg, t) = fresh("rewrite");
    for i in 0..3 {
        reg.log_model("ann", &version("m", format!("{i}").as_bytes()))
            .unwrap();
    }
    let head = reg.audit_head().unwrap();
    let anchor = AuditAnchor {
        seq: head.seq,
        hash: head.hash.clone(),
    };
    let conn = rusqlite::Connection::open(t.0.join("registry.db")).unwrap();
    let rows: Vec<(i64, i64, String, String, Option<String>, String)> = conn
        .prepare("SELECT seq, at, actor, action, model, details FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = "0".repeat(64);
    for (seq, at, actor, action, model, details) in rows {
        let actor = if seq == 2 {
            "mallory".to_string()
        } else {
            actor
        };
        let hash = sha256_chain(
            &prev,
            seq,
            at,
            &actor,
            &action,
            model.as_deref().unwrap_or(""),
            &details,
        );
        conn.execute(
            "UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            rusqlite::params![actor, prev, hash, seq],
        )
        .unwrap();
        prev = hash;
    }
    assert_eq!(
        reg.verify_audit_log(None).unwrap(),
        4,
        "the rewrite is a valid chain"
    );
    let e = reg.verify_audit_log(Some(&anchor)).unwrap_err().to_string();
    assert!(e.contains("rewritten"), "{e}");
}

/// The plain chain's hash, written out independently of the crate (as an attacker would).
fn sha256_chain(
    prev: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    model: &str,
    details: &str,
) -> String {
    use sha2::{Digest, Sha256};
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

#[test]
fn concurrent_writers_get_consecutive_versions() {
    let (reg, t) = fresh("concurrent");
    drop(reg);
    let uri = format!("sqlite://{}", t.0.join("registry.db").display());
    std::thread::scope(|s| {
        for w in 0..4 {
            let uri = uri.clone();
            let artifacts = t.0.join("artifacts");
            s.spawn(move || {
                let reg = Registry::open(&uri, &artifacts).unwrap();
                for i in 0..10 {
                    reg.log_model(
                        &format!("w{w}"),
                        &version("shared", format!("{w}-{i}").as_bytes()),
                    )
                    .unwrap();
                }
            });
        }
    });
    let reg = Registry::open(&uri, &t.0.join("artifacts")).unwrap();
    let all = reg
        .search_versions("name = 'shared'", "version asc", 1000)
        .unwrap();
    let numbers: Vec<i64> = all.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (1..=40).collect::<Vec<_>>());
    reg.verify_audit_log(None).unwrap();
}

#[test]
fn corrupted_artifacts_are_reported_with_both_hashes() {
    let (reg, t) = fresh("corrupt");
    let v = reg
        .log_model("ann", &version("m", b"genuine bytes"))
        .unwrap();
    let sha = v.sha256.clone().unwrap();
    let path = ArtifactStore::new(t.0.join("artifacts")).path(&sha);
    std::fs::write(&path, b"tampered bytes").unwrap();
    let err = reg.artifact("m", 1).unwrap_err().to_string();
    assert!(
        err.contains("models:/m/1")
            && err.contains(&sha)
            && err.contains(&sha256_hex(b"tampered bytes")),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    let err = reg.artifact("m", 1).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn unreachable_postgres_names_the_uri_without_password() {
    let err = Registry::open(
        "postgresql://ann:hunter2@127.0.0.1:1/nowhere?connect_timeout=2",
        std::path::Path::new("/tmp"),
    )
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(
        matches!(err, RegistryError::StoreUnavailable { .. }),
        "{text}"
    );
    assert!(
        text.contains("127.0.0.1:1") && !text.contains("hunter2"),
        "{text}"
    );
}
