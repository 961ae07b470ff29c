//! Stored monitoring windows on a real registry: two replicas' minute windows read back as
//! one series, rolled up into hours and days by a clock the test moves, and deleted after
//! their retention without changing any total.

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use pilothouse_drift::Profile;
use pilothouse_monitor::health::Observation;
use pilothouse_monitor::{Health, Quality};
use pilothouse_registry::{MonitorWindow, Registry, WindowQuery};
use pilothouse_server::monitor::read::{self, Query};
use pilothouse_server::monitor::store::{compact, Retention, DAY_US, HOUR_US};

const MINUTE: i64 = 60_000_000;

fn profile(values: &[f64]) -> Profile {
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)])),
        vec![Arc::new(Float64Array::from(values.to_vec()))],
    )
    .unwrap();
    Profile::of_batches(&[batch]).unwrap()
}

fn window(replica: &str, start_us: i64, requests: u64) -> MonitorWindow {
    let mut health = Health::default();
    for _ in 0..requests {
        health.observe(&Observation {
            status: 200,
            rows: 1,
            latency: std::time::Duration::from_millis(2),
            queue: std::time::Duration::ZERO,
            inference: std::time::Duration::from_millis(1),
            batch_rows: 1,
        });
    }
    let values: Vec<f64> = (0..requests).map(|i| i as f64).collect();
    MonitorWindow {
        deployment: "churn".into(),
        model: "churn".into(),
        version: 1,
        route: "@champion".into(),
        replica: replica.into(),
        length_us: MINUTE,
        start_us,
        requests: requests as i64,
        inputs: Some(profile(&values).to_bytes()),
        outputs: None,
        health: serde_json::to_string(&health).unwrap(),
        quality: serde_json::to_string(&Quality::default()).unwrap(),
        stored_at: 0,
    }
}

fn total_requests(registry: &Registry, since: Option<i64>) -> u64 {
    let q = Query {
        deployment: "churn".into(),
        since_us: since,
        ..Query::default()
    };
    read::health(registry, &q)
        .unwrap()
        .iter()
        .map(|r| r.requests)
        .sum()
}

fn stored(registry: &Registry, length_us: i64) -> Vec<MonitorWindow> {
    registry
        .windows(&WindowQuery {
            deployment: "churn".into(),
            length_us,
            without_profiles: true,
            ..WindowQuery::default()
        })
        .unwrap()
}

#[test]
fn windows_roll_up_into_hours_and_days_and_totals_never_change() {
    let dir = std::env::temp_dir().join(format!("ph-monitor-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let uri = format!("sqlite://{}", dir.join("registry.db").display());
    let registry = Registry::open(&uri, &dir.join("artifacts")).unwrap();

    // two replicas, every minute of two days, 3 and 5 requests a minute
    let day0 = 1_800_000_000_000_000 - 1_800_000_000_000_000 % DAY_US;
    let windows: Vec<MonitorWindow> = (0..2 * 24 * 60)
        .flat_map(|m| {
            let start = day0 + m * MINUTE;
            [window("a", start, 3), window("b", start, 5)]
        })
        .collect();
    registry.put_windows(&windows).unwrap();
    // a retried write replaces, it does not add
    registry.put_windows(&windows[..10]).unwrap();
    let all = 2 * 24 * 60 * 8;
    assert_eq!(total_requests(&registry, None), all);

    // the morning after the second day: hours and the first day roll up
    let now = day0 + 2 * DAY_US + 6 * HOUR_US;
    compact(&registry, now, Retention::default()).unwrap();
    let hours = stored(&registry, HOUR_US);
    assert_eq!(hours.len(), 48, "one rollup per hour, both replicas merged");
    assert!(hours
        .iter()
        .all(|h| h.replica == "rollup" && h.requests == 60 * 8));
    let days = stored(&registry, DAY_US);
    assert_eq!(days.len(), 2);
    assert_eq!(days[0].requests, 24 * 60 * 8);
    assert_eq!(
        total_requests(&registry, None),
        all,
        "rollups are read instead, not besides"
    );
    // read in hours, the hour rollups are used, not the day ones
    let hourly = read::health(
        &registry,
        &Query {
            deployment: "churn".into(),
            bucket_us: HOUR_US,
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(hourly.len(), 48);
    assert!(hourly.iter().all(|r| r.requests == 60 * 8));
    // compacting again changes nothing
    compact(&registry, now, Retention::default()).unwrap();
    assert_eq!(stored(&registry, HOUR_US).len(), 48);

    // the merged profile of the rollups is the profile of every window
    let merged = read::profile(
        &registry,
        &Query {
            deployment: "churn".into(),
            ..Query::default()
        },
        pilothouse_monitor::series::Side::Inputs,
    )
    .unwrap()
    .unwrap();
    assert_eq!(merged.rows, all);

    // eight days later the minute windows are gone; 91 days later the hours too
    compact(&registry, day0 + 10 * DAY_US, Retention::default()).unwrap();
    assert!(stored(&registry, MINUTE).is_empty());
    assert_eq!(stored(&registry, HOUR_US).len(), 48);
    assert_eq!(total_requests(&registry, None), all);
    compact(&registry, day0 + 93 * DAY_US, Retention::default()).unwrap();
    assert!(stored(&registry, HOUR_US).is_empty());
    assert_eq!(stored(&registry, DAY_US).len(), 2);
    assert_eq!(total_requests(&registry, None), all);

    // a period read in hours uses the day rollups where no finer windows are left
    let per_hour = read::health(
        &registry,
        &Query {
            deployment: "churn".into(),
            bucket_us: HOUR_US,
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(per_hour.iter().map(|r| r.requests).sum::<u64>(), all);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The drift of each hour is kept with what it was computed from: read again it is the kept
/// rows (the same answer), and it is computed again when a window arrives late, when the
/// reference is replaced or when the options change.
#[test]
fn hourly_drift_is_kept_and_computed_again_when_its_basis_changes() {
    use pilothouse_drift::compare::Options;
    use pilothouse_monitor::series::Side;
    use pilothouse_registry::{NewReference, NewVersion};

    let dir = std::env::temp_dir().join(format!("ph-monitor-drift-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let uri = format!("sqlite://{}", dir.join("registry.db").display());
    let registry = Registry::open(&uri, &dir.join("artifacts")).unwrap();
    let new = NewVersion {
        model: "churn".into(),
        data: b"a model".to_vec(),
        signature: serde_json::json!({"inputs": []}),
        ..Default::default()
    };
    registry.log_model("ann", &new).unwrap();
    let reference = |values: &[f64]| NewReference {
        inputs: Some(profile(values).to_bytes()),
        outputs: None,
        rows: values.len() as i64,
    };
    // the windows' values are 0..100 each minute: a reference of the same spread
    let near: Vec<f64> = (0..200).map(|i| f64::from(i % 100)).collect();
    registry
        .set_reference("ann", "churn", 1, &reference(&near))
        .unwrap();

    let day0 = 1_800_000_000_000_000 - 1_800_000_000_000_000 % DAY_US;
    // three hours of minute windows from one replica (values 0..requests)
    let windows: Vec<MonitorWindow> = (0..3 * 60)
        .map(|m| window("a", day0 + m * MINUTE, 100))
        .collect();
    registry.put_windows(&windows).unwrap();
    let q = Query {
        deployment: "churn".into(),
        bucket_us: HOUR_US,
        ..Query::default()
    };
    let opts = Options::default();
    let kept = |registry: &Registry| {
        registry
            .drift_results("churn", "inputs", HOUR_US, None, None)
            .unwrap()
    };
    let (first, shares) = read::drift(&registry, &q, Side::Inputs, &opts).unwrap();
    assert_eq!((first.len(), shares.len()), (3, 3));
    assert_eq!(kept(&registry).len(), 3, "each hour's drift is kept");
    let (again, _) = read::drift(&registry, &q, Side::Inputs, &opts).unwrap();
    assert_eq!(again, first, "read back as computed");

    // what was kept is what is read: a kept result marked as its basis reads as such
    let mut marked = kept(&registry);
    for d in &mut marked {
        d.result = d.result.replace("\"drifted\":false", "\"drifted\":true");
    }
    registry.put_drift_results(&marked).unwrap();
    let (read_kept, _) = read::drift(&registry, &q, Side::Inputs, &opts).unwrap();
    assert!(read_kept.iter().all(|r| r.drifted), "{read_kept:?}");

    // a second replica's window arrives late in the second hour: that hour is computed again
    registry
        .put_windows(&[window("b", day0 + 61 * MINUTE, 100)])
        .unwrap();
    let (late, _) = read::drift(&registry, &q, Side::Inputs, &opts).unwrap();
    assert!(
        late[0].drifted && !late[1].drifted && late[2].drifted,
        "{late:?}"
    );
    assert_eq!(late[1].rows, 61 * 100);

    // a window written again with the same counts (a replica restarted mid-window): its
    // hour is computed again too
    registry
        .put_windows(&[window("a", day0 + 125 * MINUTE, 100)])
        .unwrap();
    let (rewritten, _) = read::drift(&registry, &q, Side::Inputs, &opts).unwrap();
    assert!(
        rewritten[0].drifted && !rewritten[2].drifted,
        "{rewritten:?}"
    );

    // a new reference, or other options: every hour is computed again
    let far: Vec<f64> = (0..200).map(|i| f64::from(i) + 1000.0).collect();
    registry
        .set_reference("ann", "churn", 1, &reference(&far))
        .unwrap();
    let (shifted, _) = read::drift(&registry, &q, Side::Inputs, &opts).unwrap();
    assert!(shifted.iter().all(|r| r.drifted), "{shifted:?}");
    registry
        .set_reference("ann", "churn", 1, &reference(&near))
        .unwrap();
    let other = Options {
        method: Some(pilothouse_drift::compare::Method::Psi),
        ..Options::default()
    };
    let (psi, _) = read::drift(&registry, &q, Side::Inputs, &other).unwrap();
    assert!(psi.iter().all(|r| r.method != first[0].method), "{psi:?}");
    let (plain, _) = read::drift(&registry, &q, Side::Inputs, &opts).unwrap();
    assert!(plain.iter().all(|r| !r.drifted), "{plain:?}");
    assert_eq!(plain.iter().map(|r| r.rows).sum::<u64>(), 3 * 6000 + 100);

    // kept drift goes with the hours' retention
    compact(&registry, day0 + 95 * DAY_US, Retention::default()).unwrap();
    assert!(kept(&registry).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
