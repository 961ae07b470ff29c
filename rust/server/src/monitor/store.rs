//! The store thread: files the windows the tap closes and the predictions it keeps in the
//! registry (retrying while the registry is unreachable, holding at most `MAX_BACKLOG`
//! windows and `MAX_PREDICTIONS` predictions), deletes predictions past their retention,
//! sets the drift gauges of each deployment's latest window, and keeps storage bounded by
//! rolling windows up ([`compact`]): the windows of every replica in a finished hour merge into one hour window,
//! finished days into one day window, and the finer windows go after their retention. Once
//! a stored window has been closed for `ALERT_GRACE` (time for the other replicas' windows of
//! it to arrive), the deployment's alert rules are evaluated on it ([`alerting`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use pilothouse_drift::compare::{compare_profiles, Options};
use pilothouse_drift::Profile;
use pilothouse_monitor::series::Side;
use pilothouse_monitor::{Health, Quality};
use pilothouse_registry::{MonitorWindow, Prediction, Registry, WindowQuery};

use crate::metrics::Metrics;
use crate::monitor::tap::{Finished, Stored};
use crate::monitor::{alerting, read};

pub const HOUR_US: i64 = 3_600_000_000;
pub const DAY_US: i64 = 24 * HOUR_US;
/// Windows held while the registry is unreachable; older ones are dropped past this.
const MAX_BACKLOG: usize = 100_000;
/// Predictions held while the registry is unreachable (in rows and bytes); older ones are
/// dropped past this.
const MAX_PREDICTIONS: usize = 1_000_000;
const MAX_PREDICTION_BYTES: usize = 256 << 20;
/// How long after a window closes its alert rules are evaluated: the other replicas' windows
/// of the same period are stored by then.
const ALERT_GRACE_US: i64 = 500_000;

/// About the bytes a held prediction takes.
fn size_of(p: &Prediction) -> usize {
    200 + p.request_id.len()
        + p.key.as_ref().map_or(0, String::len)
        + p.outputs.len()
        + p.segments.as_ref().map_or(0, String::len)
}
/// A period is rolled up this long after it ends, when every replica has stored its windows.
const GRACE_US: i64 = 120_000_000;
/// The replica name of rolled-up windows.
pub const ROLLUP: &str = "rollup";

/// How long windows are kept, by length.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Windows shorter than an hour.
    pub fine_days: u32,
    /// Hour windows.
    pub hour_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            fine_days: 7,
            hour_days: 90,
        }
    }
}

/// A closed window as the registry stores it.
pub fn stored(f: &Finished, replica: &str) -> MonitorWindow {
    let c = &f.closed;
    MonitorWindow {
        deployment: c.key.deployment.to_string(),
        model: f.model.to_string(),
        version: c.key.version,
        route: c.key.route_name(),
        replica: replica.to_string(),
        length_us: c.length_us,
        start_us: c.start_us,
        requests: i64::try_from(c.health.requests).unwrap_or(i64::MAX),
        inputs: c.inputs.as_ref().map(Profile::to_bytes),
        outputs: c.outputs.as_ref().map(Profile::to_bytes),
        health: serde_json::to_string(&c.health).expect("health serialises"),
        quality: serde_json::to_string(&c.quality).expect("quality serialises"),
        stored_at: 0,
    }
}

/// Starts the store thread; it ends when the tap's sender is dropped, after a last write.
pub fn start(
    registry: Arc<Registry>,
    rx: Receiver<Stored>,
    metrics: Arc<Metrics>,
    replica: String,
    retention: Retention,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("ph-monitor-store".into())
        .spawn(move || {
            crate::sched::batch_thread(5);
            run(&registry, &rx, &metrics, &replica, retention);
        })
        .expect("spawning the monitoring store")
}

fn run(
    registry: &Registry,
    rx: &Receiver<Stored>,
    metrics: &Metrics,
    replica: &str,
    retention: Retention,
) {
    let mut backlog: Vec<MonitorWindow> = Vec::new();
    let mut predictions: Vec<Prediction> = Vec::new();
    let mut held_bytes = 0usize;
    // how many days each deployment served here keeps its predictions (None: forever)
    let mut keep_days: BTreeMap<String, Option<u32>> = BTreeMap::new();
    let mut last_error: Option<String> = None;
    let mut next_compaction = Instant::now() + Duration::from_secs(10);
    // (deployment, window length) -> the first and last window starts stored whose alert
    // rules are not evaluated yet
    let mut to_evaluate: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    let actor = format!("pilothouse-server/{replica}");
    loop {
        let mut take = |message: Stored| match message {
            Stored::Windows(finished) => {
                for f in &finished {
                    gauges(metrics, f);
                    backlog.push(stored(f, replica));
                }
            }
            Stored::Predictions(rows, days) => {
                held_bytes += rows.iter().map(size_of).sum::<usize>();
                predictions.extend(rows);
                keep_days.extend(days);
            }
        };
        // woken sooner while windows wait for their alert rules
        let wait = if to_evaluate.is_empty() { 1000 } else { 100 };
        let done = match rx.recv_timeout(Duration::from_millis(wait)) {
            Ok(message) => {
                take(message);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        while let Ok(more) = rx.try_recv() {
            take(more);
        }
        // windows and predictions are written apart: one that cannot be stored does not
        // hold the other back
        let mut failed = None;
        if !backlog.is_empty() {
            match registry.put_windows(&backlog) {
                Ok(()) => {
                    for w in &backlog {
                        let span = to_evaluate
                            .entry((w.deployment.clone(), w.length_us))
                            .or_insert((w.start_us, w.start_us));
                        span.0 = span.0.min(w.start_us);
                        span.1 = span.1.max(w.start_us);
                    }
                    backlog.clear();
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        evaluate_alerts(registry, &actor, &mut to_evaluate);
        if !predictions.is_empty() {
            match registry.put_predictions(replica, &predictions) {
                Ok(()) => {
                    predictions.clear();
                    held_bytes = 0;
                }
                Err(e) => failed = failed.or(Some(e.to_string())),
            }
        }
        match failed {
            None => {
                if last_error.take().is_some() {
                    tracing::info!(
                        event = "monitor_store_recovered",
                        "monitoring windows are stored again"
                    );
                }
            }
            Some(message) => {
                if last_error.as_deref() != Some(&message) {
                    tracing::warn!(event = "monitor_store_error", error = %message, held = backlog.len(), predictions = predictions.len(), "cannot store monitoring windows and predictions; holding them to retry");
                }
                last_error = Some(message);
                if backlog.len() > MAX_BACKLOG {
                    let extra = backlog.len() - MAX_BACKLOG;
                    backlog.drain(..extra);
                    metrics.monitor_windows_dropped.inc_by(extra as u64);
                }
                // oldest first, until the rows held fit the count and the bytes
                let mut extra = 0;
                while predictions.len() - extra > MAX_PREDICTIONS
                    || (held_bytes > MAX_PREDICTION_BYTES && extra < predictions.len())
                {
                    held_bytes = held_bytes.saturating_sub(size_of(&predictions[extra]));
                    extra += 1;
                }
                if extra > 0 {
                    predictions.drain(..extra);
                    metrics.predictions_dropped.inc_by(extra as u64);
                }
                if done {
                    // the server is stopping: what could not be stored is lost, and counted
                    metrics.predictions_dropped.inc_by(predictions.len() as u64);
                    metrics.monitor_windows_dropped.inc_by(backlog.len() as u64);
                }
            }
        }
        if done {
            return;
        }
        if Instant::now() >= next_compaction {
            next_compaction = Instant::now() + Duration::from_secs(60);
            if let Err(e) = compact(registry, crate::now_us(), retention) {
                tracing::warn!(event = "monitor_compaction_error", error = %e, "rolling monitoring windows up failed; retrying in a minute");
            }
            for (deployment, days) in &keep_days {
                let Some(days) = days else { continue };
                let before =
                    crate::now_us().saturating_sub(i64::from(*days).saturating_mul(DAY_US));
                if let Err(e) = registry.delete_predictions(deployment, before) {
                    tracing::warn!(event = "prediction_retention_error", deployment, error = %e, "deleting predictions past their retention failed; retrying in a minute");
                }
            }
        }
    }
}

/// Evaluates the alert rules of each deployment on its stored windows that have been closed
/// for `ALERT_GRACE_US`; what is not closed that long yet waits for a later round.
fn evaluate_alerts(
    registry: &Registry,
    actor: &str,
    to_evaluate: &mut BTreeMap<(String, i64), (i64, i64)>,
) {
    let cutoff = crate::now_us().saturating_sub(ALERT_GRACE_US);
    to_evaluate.retain(|(deployment, length_us), (first, last)| {
        if first.saturating_add(*length_us) > cutoff {
            return true; // not closed long enough yet
        }
        let q = read::Query {
            deployment: deployment.clone(),
            since_us: Some(*first),
            until_us: None,
            bucket_us: *length_us,
            version: None,
        };
        match alerting::evaluate(registry, actor, &q, cutoff, &BTreeMap::new()) {
            Ok(changes) => {
                for c in &changes {
                    tracing::info!(event = "alert", deployment, rule = %c["rule"], transition = %c["transition"], "alert {}", c["transition"]);
                }
            }
            Err(e) => {
                tracing::warn!(event = "alert_evaluation_error", deployment, error = %e, "evaluating alert rules failed; retrying");
                return true; // the same windows again next round
            }
        }
        // the windows that ended by the cutoff are done; a later one waits for its turn
        let next = cutoff - cutoff.rem_euclid(*length_us);
        *first = (*first).max(next);
        *first <= *last
    });
}

/// Sets the drift-share gauges from the latest window of a deployment.
fn gauges(metrics: &Metrics, f: &Finished) {
    let c = &f.closed;
    let labels = crate::metrics::MonitorLabels {
        deployment: c.key.deployment.to_string(),
        route: c.key.route_name(),
    };
    let report = |reference: &Option<Profile>, current: &Option<Profile>| {
        let (r, c) = (reference.as_ref()?, current.as_ref()?);
        compare_profiles(r, c, &Options::default()).ok()
    };
    let reference = f.watch.reference.load();
    for (side, reference, current) in [
        ("inputs", &reference.inputs, &c.inputs),
        ("outputs", &reference.outputs, &c.outputs),
    ] {
        let Some(report) = report(reference, current) else {
            continue;
        };
        let share = if side == "inputs" {
            &metrics.drift_share
        } else {
            &metrics.prediction_drift_share
        };
        share.get_or_create(&labels).set(report.drifted_share);
        if f.feature_metrics {
            for column in &report.columns {
                let feature = crate::metrics::FeatureLabels {
                    deployment: labels.deployment.clone(),
                    route: labels.route.clone(),
                    side: side.to_string(),
                    column: column.column.clone(),
                };
                if let Some(statistic) = column.statistic {
                    metrics
                        .feature_drift_statistic
                        .get_or_create(&feature)
                        .set(statistic);
                }
                metrics
                    .feature_drifted
                    .get_or_create(&feature)
                    .set(i64::from(column.drifted));
            }
        }
    }
    metrics.quality_failures.get_or_create(&labels).inc_by(
        c.quality
            .issues
            .values()
            .flat_map(|m| m.values())
            .sum::<u64>(),
    );
}

/// Rolls finished periods up (windows shorter than an hour into hours, hours into days,
/// every replica's together) and deletes windows past their retention. Idempotent: two
/// replicas compacting at once write the same rollups. `now_us` is injectable for tests.
pub fn compact(
    registry: &Registry,
    now_us: i64,
    retention: Retention,
) -> pilothouse_registry::Result<()> {
    for deployment in registry.monitored_deployments()? {
        roll_up(registry, &deployment, HOUR_US, now_us, |len| {
            len < HOUR_US && HOUR_US % len == 0
        })?;
        roll_up(registry, &deployment, DAY_US, now_us, |len| len == HOUR_US)?;
        keep_hourly_drift(registry, &deployment, now_us);
    }
    let fine_cutoff = now_us - i64::from(retention.fine_days) * DAY_US;
    let hour_cutoff = now_us - i64::from(retention.hour_days) * DAY_US;
    // drift kept for buckets goes with the hours; older periods are computed when read
    registry.delete_drift_results(hour_cutoff)?;
    for length in registry.all_window_lengths()? {
        if length < HOUR_US {
            registry.delete_windows(length, fine_cutoff.min(last_rolled(length, now_us)), None)?;
        } else if length == HOUR_US {
            registry.delete_windows(length, hour_cutoff.min(last_rolled(length, now_us)), None)?;
        }
    }
    Ok(())
}

/// Computes and keeps the hourly drift (inputs and outputs, default options) of the last
/// day's finished hours, so that reading it is a read of kept rows; hours already kept with
/// the same windows and reference are not computed again. A failure only means the reader
/// computes it.
fn keep_hourly_drift(registry: &Registry, deployment: &str, now_us: i64) {
    let until = last_rolled(1, now_us);
    let q = read::Query {
        deployment: deployment.to_string(),
        since_us: Some(until - DAY_US),
        until_us: Some(until),
        bucket_us: HOUR_US,
        version: None,
    };
    for side in [Side::Inputs, Side::Outputs] {
        if let Err(e) = read::drift(registry, &q, side, &Options::default()) {
            tracing::debug!(event = "monitor_drift_not_kept", deployment, error = %e, "hourly drift not computed ahead; readers compute it");
        }
    }
}

/// Windows of `length` are only deleted once the period holding them was rolled up: before
/// the start of the last finished period.
fn last_rolled(length: i64, now_us: i64) -> i64 {
    let period = if length < HOUR_US { HOUR_US } else { DAY_US };
    let finished = now_us - GRACE_US;
    finished - finished.rem_euclid(period)
}

/// Merges, for each finished `period` of `deployment` that has source windows (those whose
/// length `from` accepts) and no rollup yet, the sources into one window per version and
/// route.
fn roll_up(
    registry: &Registry,
    deployment: &str,
    period: i64,
    now_us: i64,
    from: impl Fn(i64) -> bool,
) -> pilothouse_registry::Result<()> {
    let finished = now_us - GRACE_US;
    let until = finished - finished.rem_euclid(period);
    let lengths: Vec<i64> = registry
        .window_lengths(deployment)?
        .into_iter()
        .filter(|l| from(*l))
        .collect();
    if lengths.is_empty() {
        return Ok(());
    }
    let done: HashSet<i64> = registry
        .windows(&WindowQuery {
            deployment: deployment.to_string(),
            length_us: period,
            until_us: Some(until),
            without_profiles: true,
            ..WindowQuery::default()
        })?
        .into_iter()
        .map(|w| w.start_us)
        .collect();
    // only periods after the newest rollup: older sources were rolled up already
    let since = done.iter().max().map(|s| s + period);
    let mut groups: BTreeMap<(i64, i64, String), Vec<MonitorWindow>> = BTreeMap::new();
    for length in lengths {
        for w in registry.windows(&WindowQuery {
            deployment: deployment.to_string(),
            length_us: length,
            since_us: since,
            until_us: Some(until),
            ..WindowQuery::default()
        })? {
            let start = w.start_us - w.start_us.rem_euclid(period);
            if !done.contains(&start) {
                groups
                    .entry((start, w.version, w.route.clone()))
                    .or_default()
                    .push(w);
            }
        }
    }
    let rollups: Vec<MonitorWindow> = groups
        .into_iter()
        .map(|((start, _, _), parts)| merge_stored(parts, start, period))
        .collect();
    registry.put_windows(&rollups)
}

/// Stored windows of one version and route merged into one (unreadable parts are skipped,
/// and said so in the log).
pub fn merge_stored(parts: Vec<MonitorWindow>, start_us: i64, length_us: i64) -> MonitorWindow {
    let first = &parts[0];
    let mut out = MonitorWindow {
        deployment: first.deployment.clone(),
        model: first.model.clone(),
        version: first.version,
        route: first.route.clone(),
        replica: ROLLUP.into(),
        length_us,
        start_us,
        ..MonitorWindow::default()
    };
    let mut health = Health::default();
    let mut quality = Quality::default();
    let (mut inputs, mut outputs): (Option<Profile>, Option<Profile>) = (None, None);
    for p in &parts {
        if let Ok(h) = serde_json::from_str::<Health>(&p.health) {
            health.merge(&h);
        }
        if let Ok(q) = serde_json::from_str::<Quality>(&p.quality) {
            quality.merge(&q);
        }
        absorb(&mut inputs, p.inputs.as_deref());
        absorb(&mut outputs, p.outputs.as_deref());
    }
    out.requests = i64::try_from(health.requests).unwrap_or(i64::MAX);
    out.inputs = inputs.as_ref().map(Profile::to_bytes);
    out.outputs = outputs.as_ref().map(Profile::to_bytes);
    out.health = serde_json::to_string(&health).expect("health serialises");
    out.quality = serde_json::to_string(&quality).expect("quality serialises");
    out
}

fn absorb(total: &mut Option<Profile>, bytes: Option<&[u8]>) {
    let Some(part) = bytes.and_then(|b| Profile::from_bytes(b).ok()) else {
        return;
    };
    match total {
        None => *total = Some(part),
        Some(t) => {
            if let Err(e) = t.absorb(&part) {
                tracing::warn!(event = "monitor_rollup_skipped", error = %e, "a window's profile does not merge with the others of its period (the inputs changed shape); left out of the rollup");
            }
        }
    }
}
