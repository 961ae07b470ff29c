//! Reading stored windows back as series. Windows of one version merge into buckets of any
//! length that is a multiple of theirs (the windows of every replica and every route add up
//! exactly), and each bucket becomes rows: the drift of its inputs or outputs against the
//! reference, its data-quality counts, its health.

use std::borrow::Cow;
use std::collections::BTreeMap;

use pilothouse_drift::compare::{compare_profiles, Options};
use pilothouse_drift::Profile;
use serde::{Deserialize, Serialize};

use crate::error::{MonitorError, Result};
use crate::health::Health;
use crate::quality::Quality;

/// A window as stored (by any replica).
#[derive(Clone, Debug)]
pub struct Stored {
    pub version: i64,
    pub start_us: i64,
    pub length_us: i64,
    pub inputs: Option<Profile>,
    pub outputs: Option<Profile>,
    pub health: Health,
    pub quality: Quality,
    /// When it was stored (a window written again is another window to a kept result).
    pub stored_at: i64,
}

/// Windows of one version merged over `[start_us, start_us + length_us)`.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub version: i64,
    pub start_us: i64,
    pub length_us: i64,
    pub inputs: Option<Profile>,
    pub outputs: Option<Profile>,
    pub health: Health,
    pub quality: Quality,
    /// Stored windows whose profiles could not be merged into the others (their columns
    /// differ: the model's inputs changed shape); their health and quality still count.
    pub unmerged: u64,
    /// Names the windows merged here (their starts, lengths and counts), whether or not
    /// their profiles were read: a drift computed from this bucket holds while it is equal.
    pub basis: u64,
}

/// Merges `windows` into buckets of `bucket_us` (0: one bucket per version over all of
/// them), per version, oldest first. A stored window longer than the bucket is kept whole
/// in the bucket where it starts.
pub fn merge(windows: Vec<Stored>, bucket_us: i64) -> Result<Vec<Bucket>> {
    if bucket_us < 0 {
        return Err(MonitorError::Invalid(format!(
            "a window of {bucket_us} µs is not a length of time"
        )));
    }
    let mut groups: BTreeMap<(i64, i64), Vec<Stored>> = BTreeMap::new();
    for w in windows {
        let start = if bucket_us == 0 {
            i64::MIN
        } else {
            w.start_us - w.start_us.rem_euclid(bucket_us)
        };
        groups.entry((start, w.version)).or_default().push(w);
    }
    Ok(groups
        .into_iter()
        .map(|((start, version), parts)| {
            let first = parts.iter().map(|w| w.start_us).min().unwrap_or(start);
            let end = parts
                .iter()
                .map(|w| w.start_us.saturating_add(w.length_us))
                .max()
                .unwrap_or(start);
            let (start_us, length_us) = if bucket_us == 0 {
                (first, end - first)
            } else {
                (start, bucket_us)
            };
            let mut bucket = Bucket {
                version,
                start_us,
                length_us,
                inputs: None,
                outputs: None,
                health: Health::default(),
                quality: Quality::default(),
                unmerged: 0,
                basis: basis(&parts),
            };
            for w in parts {
                bucket.health.merge(&w.health);
                bucket.quality.merge(&w.quality);
                let ok_in = absorb(&mut bucket.inputs, w.inputs);
                let ok_out = absorb(&mut bucket.outputs, w.outputs);
                if !(ok_in && ok_out) {
                    bucket.unmerged += 1;
                }
            }
            bucket
        })
        .collect())
}

/// What names a bucket's windows: each one's start, length, requests, rows and when it was
/// stored, in order.
fn basis(parts: &[Stored]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut names: Vec<(i64, i64, u64, u64, i64)> = parts
        .iter()
        .map(|w| {
            (
                w.start_us,
                w.length_us,
                w.health.requests,
                w.health.rows,
                w.stored_at,
            )
        })
        .collect();
    names.sort_unstable();
    let mut h = std::hash::DefaultHasher::new();
    names.hash(&mut h);
    h.finish()
}

/// Adds `part` into `total`; false when their columns differ.
fn absorb(total: &mut Option<Profile>, part: Option<Profile>) -> bool {
    match (total.as_mut(), part) {
        (_, None) => true,
        (None, Some(p)) => {
            *total = Some(p);
            true
        }
        (Some(t), Some(p)) => t.absorb(&p).is_ok(),
    }
}

/// One column of one bucket compared with the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftRow {
    pub window_start_us: i64,
    pub version: i64,
    pub column: String,
    pub method: Option<Cow<'static, str>>,
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    pub threshold: Option<f64>,
    pub drifted: bool,
    /// Rows of the window that the column's verdict rests on.
    pub rows: u64,
}

/// The dataset-level verdict of one bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftShare {
    pub window_start_us: i64,
    pub version: i64,
    pub drifted_share: f64,
    pub dataset_drift: bool,
}

/// Which half of a window is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Inputs,
    Outputs,
}

/// Each bucket's `side` compared with `reference` (the drift crate's profile mode, with
/// `opts`): a row per column and the bucket's drift share. Buckets without data on that
/// side give no rows.
pub fn drift(
    buckets: &[Bucket],
    reference: &Profile,
    side: Side,
    opts: &Options,
) -> Result<(Vec<DriftRow>, Vec<DriftShare>)> {
    let mut rows = Vec::new();
    let mut shares = Vec::new();
    for b in buckets {
        let current = match side {
            Side::Inputs => &b.inputs,
            Side::Outputs => &b.outputs,
        };
        let Some(current) = current else { continue };
        let report = compare_profiles(reference, current, opts)?;
        shares.push(DriftShare {
            window_start_us: b.start_us,
            version: b.version,
            drifted_share: report.drifted_share,
            dataset_drift: report.dataset_drift,
        });
        rows.extend(report.columns.into_iter().map(|c| DriftRow {
            window_start_us: b.start_us,
            version: b.version,
            column: c.column,
            method: c.method.map(Cow::Borrowed),
            statistic: c.statistic,
            p_value: c.p_value,
            threshold: c.threshold,
            drifted: c.drifted,
            rows: c.current_rows,
        }));
    }
    Ok((rows, shares))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn profile(values: impl Iterator<Item = f64>) -> Profile {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)])),
            vec![Arc::new(Float64Array::from(values.collect::<Vec<_>>()))],
        )
        .unwrap();
        Profile::of_batches(&[batch]).unwrap()
    }

    fn stored(minute: i64, shift: f64) -> Stored {
        let health = Health {
            requests: 100,
            ..Health::default()
        };
        Stored {
            version: 1,
            start_us: minute * MINUTE,
            length_us: MINUTE,
            inputs: Some(profile((0..500).map(|i| f64::from(i) / 50.0 + shift))),
            outputs: None,
            health,
            quality: Quality::default(),
            stored_at: 0,
        }
    }

    #[test]
    fn replicas_and_minutes_merge_into_hours_and_the_shift_shows() {
        // two replicas, 120 minutes; the second hour is shifted
        let windows: Vec<Stored> = (0..120)
            .flat_map(|m| {
                let shift = if m >= 60 { 20.0 } else { 0.0 };
                [stored(m, shift), stored(m, shift)]
            })
            .collect();
        let hours = merge(windows, 60 * MINUTE).unwrap();
        assert_eq!(hours.len(), 2);
        assert_eq!(hours[0].health.requests, 120 * 100);
        assert_eq!(hours[1].inputs.as_ref().unwrap().rows, 120 * 500);
        let reference = profile((0..5000).map(|i| f64::from(i) / 500.0));
        let (rows, shares) = drift(&hours, &reference, Side::Inputs, &Options::default()).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(!rows[0].drifted && rows[1].drifted, "{rows:?}");
        assert!(shares[1].dataset_drift && !shares[0].dataset_drift);
        let (none, _) = drift(&hours, &reference, Side::Outputs, &Options::default()).unwrap();
        assert!(none.is_empty());
        let all = merge(vec![stored(3, 0.0), stored(7, 0.0)], 0).unwrap();
        assert_eq!(
            (all.len(), all[0].start_us, all[0].length_us),
            (1, 3 * MINUTE, 5 * MINUTE)
        );
    }
}
