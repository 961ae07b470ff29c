//! Stored windows read back as series: what `GET /v2/models/{m}/monitoring/...` answers and
//! what the Python client's `ph.monitor(...)` reads. Rollups are used where they exist (day
//! windows, then hour windows, then what is finer after the newest rollup), every replica's
//! windows merge, and each bucket is compared with its version's reference.

use std::collections::{BTreeMap, HashMap, HashSet};

use pilothouse_drift::compare::Options;
use pilothouse_drift::Profile;
use pilothouse_monitor::series::{self, Bucket, DriftRow, DriftShare, Side, Stored};
use pilothouse_monitor::{Check, Health, Quality};
use pilothouse_registry::{DriftResult, Registry, WindowQuery};
use serde::Serialize;

use crate::error::{Result, ServerError};

/// Which windows, merged how.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub deployment: String,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// The length of the buckets windows merge into (0: one bucket per version).
    pub bucket_us: i64,
    pub version: Option<i64>,
}

/// The stored windows of a query, coarsest first where they cover a period.
pub fn windows(registry: &Registry, q: &Query, profiles: bool) -> Result<Vec<Stored>> {
    // Windows no longer than a bucket first, coarsest first (each finer length only after
    // what the coarser ones cover); longer windows then fill periods nothing finer covers
    // any more (after retention), each kept whole in the bucket where it starts.
    let limit = if q.bucket_us > 0 {
        q.bucket_us
    } else {
        i64::MAX
    };
    let mut lengths = registry.window_lengths(&q.deployment)?;
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    let (fitting, longer): (Vec<i64>, Vec<i64>) = lengths.iter().partition(|l| **l <= limit);
    let lengths: Vec<i64> = fitting.into_iter().chain(longer).collect();
    let mut out: Vec<Stored> = Vec::new();
    let mut covered: HashSet<(i64, i64)> = HashSet::new();
    let mut taken_lengths: Vec<i64> = Vec::new();
    let mut covered_until: Option<i64> = None;
    for length in lengths {
        let since = match (q.since_us, covered_until) {
            _ if length > limit => q.since_us,
            (Some(s), Some(c)) => Some(s.max(c)),
            (s, c) => s.or(c),
        };
        let stored = registry.windows(&WindowQuery {
            deployment: q.deployment.clone(),
            length_us: length,
            since_us: since,
            until_us: q.until_us,
            version: q.version,
            without_profiles: !profiles,
        })?;
        let mut newest_end = covered_until;
        for w in stored {
            let inside = taken_lengths.iter().any(|l| {
                covered.contains(&(*l, w.start_us - w.start_us.rem_euclid(*l)))
                    || (*l < length && covered.contains(&(*l, w.start_us)))
            });
            if inside {
                continue;
            }
            covered.insert((length, w.start_us));
            let end = w.start_us.saturating_add(w.length_us);
            newest_end = Some(newest_end.map_or(end, |e: i64| e.max(end)));
            out.push(Stored {
                version: w.version,
                start_us: w.start_us,
                length_us: w.length_us,
                inputs: w
                    .inputs
                    .as_deref()
                    .and_then(|b| Profile::from_bytes(b).ok()),
                outputs: w
                    .outputs
                    .as_deref()
                    .and_then(|b| Profile::from_bytes(b).ok()),
                health: serde_json::from_str(&w.health).unwrap_or_default(),
                quality: serde_json::from_str(&w.quality).unwrap_or_default(),
                stored_at: w.stored_at,
            });
        }
        taken_lengths.push(length);
        covered_until = newest_end;
    }
    Ok(out)
}

/// The query's windows merged into buckets.
pub fn buckets(registry: &Registry, q: &Query, profiles: bool) -> Result<Vec<Bucket>> {
    Ok(series::merge(windows(registry, q, profiles)?, q.bucket_us)?)
}

/// The model a deployment serves (its windows name it).
fn model_of(registry: &Registry, deployment: &str) -> Result<String> {
    registry
        .deployment(deployment)
        .map(|d| d.model)
        .or_else(|_| {
            registry.monitored_model(deployment)?.ok_or_else(|| {
                pilothouse_registry::RegistryError::not_found("monitored deployment", deployment)
            })
        })
        .map_err(ServerError::from)
}

/// Drift of each bucket's inputs (or outputs) against its version's reference. Versions
/// without a reference on that side give no rows.
///
/// With buckets of a fixed length, each bucket's drift is kept in the registry with the
/// basis it was computed from (its windows, the reference, the options): a bucket whose
/// windows, reference and options are unchanged is read back, not merged and compared
/// again, and only the others have their profiles read. That keeps a week of hourly drift
/// a read of a few hundred small rows.
pub fn drift(
    registry: &Registry,
    q: &Query,
    side: Side,
    opts: &Options,
) -> Result<(Vec<DriftRow>, Vec<DriftShare>)> {
    if q.bucket_us <= 0 {
        return drift_whole(registry, q, side, opts);
    }
    let side_name = match side {
        Side::Inputs => "inputs",
        Side::Outputs => "outputs",
    };
    // the windows' names and counts only: no profile bytes are read here
    let light = buckets(registry, q, false)?;
    let model = model_of(registry, &q.deployment)?;
    let since = q.since_us.map(|s| s - s.rem_euclid(q.bucket_us));
    let cached: HashMap<(i64, i64), DriftResult> = registry
        .drift_results(&q.deployment, side_name, q.bucket_us, since, q.until_us)?
        .into_iter()
        .map(|d| ((d.version, d.start_us), d))
        .collect();
    let options = options_basis(opts);
    let mut rows = Vec::new();
    let mut shares = Vec::new();
    for (version, buckets) in by_version(light) {
        let Some(reference) = registry.reference(&model, version).ok().flatten() else {
            continue;
        };
        let updated = reference.updated_at.unwrap_or(0);
        let bytes = match side {
            Side::Inputs => reference.inputs,
            Side::Outputs => reference.outputs,
        };
        let Some(bytes) = bytes else { continue };
        let basis_of = |b: &Bucket| format!("{:016x}-{updated}-{options:016x}", b.basis);
        let mut missing: Vec<&Bucket> = Vec::new();
        for b in &buckets {
            let kept = cached
                .get(&(version, b.start_us))
                .filter(|d| d.basis == basis_of(b))
                .and_then(|d| serde_json::from_str::<Kept>(&d.result).ok());
            match kept {
                Some(k) => {
                    rows.extend(k.rows);
                    shares.extend(k.share);
                }
                None => missing.push(b),
            }
        }
        if missing.is_empty() {
            continue;
        }
        let profile = match Profile::from_bytes(&bytes) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(event = "reference_unreadable", model, version, error = %e, "the stored reference profile cannot be read; no drift for this version");
                continue;
            }
        };
        // the profiles of the buckets to compute: their period, this version
        let first = missing.iter().map(|b| b.start_us).min().unwrap_or(0);
        let last = missing
            .iter()
            .map(|b| b.start_us.saturating_add(b.length_us))
            .max()
            .unwrap_or(0);
        let narrow = Query {
            since_us: Some(q.since_us.map_or(first, |s| s.max(first))),
            until_us: Some(q.until_us.map_or(last, |u| u.min(last))),
            version: Some(version),
            ..q.clone()
        };
        let wanted: HashMap<i64, String> =
            missing.iter().map(|b| (b.start_us, basis_of(b))).collect();
        let full: Vec<Bucket> = self::buckets(registry, &narrow, true)?
            .into_iter()
            .filter(|b| wanted.contains_key(&b.start_us))
            .collect();
        let (r, s) = series::drift(&full, &profile, side, opts)?;
        {
            let mut keep: Vec<DriftResult> = Vec::new();
            for b in &full {
                // kept only when the profiles read are the windows the bucket was named by
                if wanted.get(&b.start_us) != Some(&basis_of(b)) {
                    continue;
                }
                let kept = Kept {
                    rows: r
                        .iter()
                        .filter(|x| x.window_start_us == b.start_us)
                        .cloned()
                        .collect(),
                    share: s.iter().find(|x| x.window_start_us == b.start_us).cloned(),
                };
                keep.push(DriftResult {
                    deployment: q.deployment.clone(),
                    version,
                    side: side_name.to_string(),
                    length_us: q.bucket_us,
                    start_us: b.start_us,
                    basis: basis_of(b),
                    result: serde_json::to_string(&kept).unwrap_or_default(),
                });
            }
            if let Err(e) = registry.put_drift_results(&keep) {
                // a reader without write access still answers; the next read computes again
                tracing::debug!(event = "monitor_drift_not_kept", error = %e, "computed drift could not be stored");
            }
        }
        rows.extend(r);
        shares.extend(s);
    }
    rows.sort_by_key(|r| (r.window_start_us, r.version));
    shares.sort_by_key(|s| (s.window_start_us, s.version));
    Ok((rows, shares))
}

/// Buckets grouped by version, in version order.
fn by_version(buckets: Vec<Bucket>) -> BTreeMap<i64, Vec<Bucket>> {
    let mut out: BTreeMap<i64, Vec<Bucket>> = BTreeMap::new();
    for b in buckets {
        out.entry(b.version).or_default().push(b);
    }
    out
}

/// What names a set of options in a kept result's basis: the per-column maps in sorted
/// order (two equal HashMaps iterate differently), everything else as it prints.
fn options_basis(opts: &Options) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut rest = opts.clone();
    let methods: BTreeMap<String, _> = rest.column_methods.drain().collect();
    let thresholds: BTreeMap<String, f64> = rest.column_thresholds.drain().collect();
    let mut h = std::hash::DefaultHasher::new();
    format!("{rest:?}{methods:?}{thresholds:?}").hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_options_name_one_basis_however_their_maps_iterate() {
        let with = |order: &[usize]| Options {
            column_thresholds: order.iter().map(|i| (format!("c{i}"), 0.01)).collect(),
            ..Options::default()
        };
        let forward: Vec<usize> = (0..16).collect();
        let backward: Vec<usize> = (0..16).rev().collect();
        assert_eq!(
            options_basis(&with(&forward)),
            options_basis(&with(&backward))
        );
        assert_ne!(
            options_basis(&with(&forward)),
            options_basis(&Options::default())
        );
    }
}

/// Drift with one bucket per version over the whole period (computed each time: such a
/// bucket ends wherever the query does).
fn drift_whole(
    registry: &Registry,
    q: &Query,
    side: Side,
    opts: &Options,
) -> Result<(Vec<DriftRow>, Vec<DriftShare>)> {
    let all = buckets(registry, q, true)?;
    let model = model_of(registry, &q.deployment)?;
    let mut rows = Vec::new();
    let mut shares = Vec::new();
    for (version, buckets) in by_version(all) {
        let Some(reference) = registry.reference(&model, version).ok().flatten() else {
            continue;
        };
        let bytes = match side {
            Side::Inputs => reference.inputs,
            Side::Outputs => reference.outputs,
        };
        let Some(profile) = bytes.and_then(|b| Profile::from_bytes(&b).ok()) else {
            continue;
        };
        let (r, s) = series::drift(&buckets, &profile, side, opts)?;
        rows.extend(r);
        shares.extend(s);
    }
    rows.sort_by_key(|r| (r.window_start_us, r.version));
    shares.sort_by_key(|s| (s.window_start_us, s.version));
    Ok((rows, shares))
}

/// One bucket's drift as kept in the registry.
#[derive(Serialize, serde::Deserialize)]
struct Kept {
    rows: Vec<DriftRow>,
    share: Option<DriftShare>,
}

/// The series names, for messages.
pub const SERIES: &str = "drift, prediction_drift, quality or health";

/// The series `kind` names ("drift", "prediction_drift", "quality" or "health") as the JSON
/// document the HTTP API and the Python client return; None for another name.
pub fn series(
    registry: &Registry,
    kind: &str,
    q: &Query,
    opts: &Options,
) -> Result<Option<serde_json::Value>> {
    Ok(Some(match kind {
        "drift" | "prediction_drift" => {
            let side = if kind == "drift" {
                Side::Inputs
            } else {
                Side::Outputs
            };
            let (rows, shares) = drift(registry, q, side, opts)?;
            serde_json::json!({"columns": rows, "windows": shares})
        }
        "quality" => serde_json::json!({"rows": quality(registry, q)?}),
        "health" => serde_json::json!({"rows": health(registry, q)?}),
        _ => return Ok(None),
    }))
}

/// One bucket's service health.
#[derive(Clone, Debug, Serialize)]
pub struct HealthRow {
    pub window_start_us: i64,
    pub version: i64,
    pub requests: u64,
    pub errors: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub rows: u64,
    /// Requests per second over the bucket.
    pub throughput: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub queue_p50_ms: Option<f64>,
    pub queue_p99_ms: Option<f64>,
    pub inference_p50_ms: Option<f64>,
    pub batch_rows_mean: Option<f64>,
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    /// The p99 latency stands far above the windows before it.
    pub latency_anomaly: bool,
}

pub fn health(registry: &Registry, q: &Query) -> Result<Vec<HealthRow>> {
    let all = buckets(registry, q, false)?;
    // A window's baseline is the windows before it of its version; a version with too few
    // of its own yet (just deployed) is held against the deployment's recent windows of any
    // version, so that a slower new version is flagged when it takes over.
    let mut recent: HashMap<i64, Vec<Health>> = HashMap::new();
    let mut deployment: Vec<Health> = Vec::new();
    Ok(all
        .into_iter()
        .map(|b| {
            let h = &b.health;
            let history = recent.entry(b.version).or_default();
            let served = |w: &&Health| w.requests > 0;
            let own: Vec<&Health> = history.iter().rev().filter(served).take(30).collect();
            let baseline: Vec<&Health> = if own.len() >= pilothouse_monitor::MIN_BASELINE {
                own
            } else {
                deployment.iter().rev().filter(served).take(30).collect()
            };
            let anomaly = pilothouse_monitor::latency_anomaly(&baseline, h).is_some();
            deployment.push(b.health.clone());
            let row = HealthRow {
                window_start_us: b.start_us,
                version: b.version,
                requests: h.requests,
                errors: h.errors(),
                by_status: h.by_status.clone(),
                rows: h.rows,
                throughput: h.requests as f64 / (b.length_us.max(1) as f64 / 1e6),
                latency_p50_ms: h.latency_ms.quantile(0.5),
                latency_p90_ms: h.latency_ms.quantile(0.9),
                latency_p99_ms: h.latency_ms.quantile(0.99),
                queue_p50_ms: h.queue_ms.quantile(0.5),
                queue_p99_ms: h.queue_ms.quantile(0.99),
                inference_p50_ms: h.inference_ms.quantile(0.5),
                batch_rows_mean: h.batch_rows.mean(),
                cpu_seconds: h.cpu_seconds,
                rss_bytes: h.rss_bytes,
                latency_anomaly: anomaly,
            };
            history.push(b.health);
            row
        })
        .collect())
}

/// One bucket's count of one check on one column.
#[derive(Clone, Debug, Serialize)]
pub struct QualityRow {
    pub window_start_us: i64,
    pub version: i64,
    pub column: String,
    pub check: &'static str,
    pub count: u64,
    /// Rows checked in the bucket.
    pub rows: u64,
}

pub fn quality(registry: &Registry, q: &Query) -> Result<Vec<QualityRow>> {
    let mut out = Vec::new();
    for b in buckets(registry, q, false)? {
        let Quality { rows, issues } = b.quality;
        for (column, checks) in issues {
            for (check, count) in checks {
                out.push(QualityRow {
                    window_start_us: b.start_us,
                    version: b.version,
                    column: column.clone(),
                    check: Check::name(check),
                    count,
                    rows,
                });
            }
        }
    }
    Ok(out)
}

/// The merged profile of the inputs (or outputs) served in a period.
pub fn profile(registry: &Registry, q: &Query, side: Side) -> Result<Option<Profile>> {
    let mut total: Option<Profile> = None;
    for w in windows(registry, q, true)? {
        let part = match side {
            Side::Inputs => w.inputs,
            Side::Outputs => w.outputs,
        };
        let Some(part) = part else { continue };
        match &mut total {
            None => total = Some(part),
            Some(t) => t.absorb(&part).map_err(|e| {
                ServerError::Config(format!(
                    "the windows of this period describe different columns (the model's inputs changed between versions; pick one with version=): {e}"
                ))
            })?,
        }
    }
    Ok(total)
}
