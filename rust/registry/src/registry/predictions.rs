//! Served predictions, kept so that feedback joins them when the payload log keeps no
//! content: per answered row its request id (row `i` of a request of several rows is
//! `<id>/<i>`), correlation key, time, version, route, whether a shadow answered, the
//! replica, its outputs (JSON) and its segment values (JSON). A server writes them in
//! batches, one table row per batch: the rows as compressed JSON, and the sorted 64-bit
//! hashes of their ids and keys (so that telling whether feedback names a kept answer reads
//! eight bytes a row, not the rows). Writing a batch costs one insert whatever its size; a
//! row per answer with an index on random ids cost a third of a busy server's CPU.
//! Batches are deleted after the deployment's retention. This file also owns the join of
//! predictions with their latest label and flag ([`Registry::labelled`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};

use serde::Serialize;
use serde_json::Value as Json;

use crate::error::{RegistryError, Result};
use crate::names;
use crate::store::Value;

use super::feedback::{Feedback, Target};
use super::Registry;

/// One answered row as a server keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub deployment: String,
    pub request_id: String,
    pub key: Option<String>,
    pub time_us: i64,
    pub model: String,
    pub version: i64,
    pub route: String,
    pub shadow: bool,
    pub replica: String,
    /// `{output name: value}` as JSON text: a number or text, or a list for a row of several.
    pub outputs: String,
    /// `{feature: value}` of the deployment's segment features, as JSON text.
    pub segments: Option<String>,
}

/// A prediction with the feedback that reached it (the latest label and flag).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Labelled {
    pub prediction: Prediction,
    pub target: Option<Target>,
    /// When the label was known (or received).
    pub labelled_us: Option<i64>,
    pub good: Option<bool>,
    pub comment: Option<String>,
    pub user: Option<String>,
}

/// Feedback is read from this long before a period's start: the clocks of the servers
/// and of whoever sends feedback may differ.
const CLOCK_SLACK_US: i64 = 3_600_000_000;
/// The most rows a batch's data may decompress to, in bytes (a guard against a corrupt or
/// hostile blob).
const MAX_BATCH_BYTES: u64 = 1 << 30;

/// The hash that finds an id or key among a batch's (stable across builds and machines).
fn hash_of(kind: u8, text: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(text.as_bytes(), u64::from(kind))
}

const ID: u8 = 1;
const KEY: u8 = 2;

impl Registry {
    /// Stores predictions answered by `replica` (their own `replica` is not read), one batch
    /// per deployment among them, in one transaction.
    pub fn put_predictions(&self, replica: &str, rows: &[Prediction]) -> Result<()> {
        let mut batches: BTreeMap<(&str, &str), Vec<&Prediction>> = BTreeMap::new();
        for r in rows {
            names::deployment(&r.deployment)?;
            batches
                .entry((r.deployment.as_str(), replica))
                .or_default()
                .push(r);
        }
        let encoded = batches
            .into_iter()
            .map(|((deployment, replica), rows)| Ok((deployment, replica, encode(&rows)?)))
            .collect::<Result<Vec<_>>>()?;
        if encoded.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            for (deployment, replica, batch) in &encoded {
                tx.execute(
                    "INSERT INTO monitor_prediction_batches (deployment, replica, first_us, last_us, row_count, hashes, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    &[
                        (*deployment).into(),
                        (*replica).into(),
                        Value::Int(batch.first_us),
                        Value::Int(batch.last_us),
                        Value::Int(batch.rows),
                        Value::Blob(batch.hashes.clone()),
                        Value::Blob(batch.data.clone()),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The predictions of `deployment` answered in `[since_us, until_us)`, by time.
    pub fn predictions(
        &self,
        deployment: &str,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<Prediction>> {
        let (since, until) = (since_us.unwrap_or(i64::MIN), until_us.unwrap_or(i64::MAX));
        let blobs = self.read(|tx| {
            let rows = tx.query(
                "SELECT replica, data FROM monitor_prediction_batches WHERE deployment = ? AND last_us >= ? AND first_us < ? ORDER BY id",
                &[deployment.into(), Value::Int(since), Value::Int(until)],
            )?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let replica = r.first().and_then(Value::as_str).unwrap_or("").to_string();
                    let data = r.get(1).and_then(Value::as_bytes).map(<[u8]>::to_vec).unwrap_or_default();
                    (replica, data)
                })
                .collect::<Vec<_>>())
        })?;
        let mut out = Vec::new();
        for (replica, data) in blobs {
            for p in decode(deployment, &replica, &data)? {
                if (since..until).contains(&p.time_us) {
                    out.push(p);
                }
            }
        }
        out.sort_by(|a, b| (a.time_us, &a.request_id).cmp(&(b.time_us, &b.request_id)));
        Ok(out)
    }

    /// The predictions of `deployment` answered in `[since_us, until_us)`, each with the
    /// latest label and the latest flag sent for its request id or, failing that, its
    /// correlation key.
    pub fn labelled(
        &self,
        deployment: &str,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<Labelled>> {
        let predictions = self.predictions(deployment, since_us, until_us)?;
        let feedback = self.feedback(
            deployment,
            since_us.map(|s| s.saturating_sub(CLOCK_SLACK_US)),
            None,
            None,
            None,
        )?;
        // oldest first: a later piece of feedback replaces an earlier one
        let mut by_id: HashMap<(&str, &str), &Feedback> = HashMap::new();
        let mut by_key: HashMap<(&str, &str), &Feedback> = HashMap::new();
        for f in &feedback {
            if let Some(id) = &f.request_id {
                by_id.insert((f.kind.as_str(), id.as_str()), f);
            }
            if let Some(key) = &f.key {
                by_key.insert((f.kind.as_str(), key.as_str()), f);
            }
        }
        let find = |kind: &str, p: &Prediction| -> Option<&Feedback> {
            by_id
                .get(&(kind, p.request_id.as_str()))
                .or_else(|| p.key.as_deref().and_then(|k| by_key.get(&(kind, k))))
                .copied()
        };
        Ok(predictions
            .into_iter()
            .map(|p| {
                let label = find("target", &p);
                let flag = find("flag", &p);
                Labelled {
                    target: label.and_then(|f| f.target.clone()),
                    labelled_us: label.map(|f| f.time_us),
                    good: flag.and_then(|f| f.good),
                    comment: flag.and_then(|f| f.comment.clone()),
                    user: flag.and_then(|f| f.user.clone()),
                    prediction: p,
                }
            })
            .collect())
    }

    /// Which of `ids` and `keys` name a prediction of `deployment` kept in a batch that
    /// ended at `since_us` or later (by their hashes: a false match is a 64-bit collision).
    pub fn known_requests(
        &self,
        deployment: &str,
        ids: &[&str],
        keys: &[&str],
        since_us: i64,
    ) -> Result<(HashSet<String>, HashSet<String>)> {
        let mut wanted: Vec<(u64, u8, &str)> = ids
            .iter()
            .map(|i| (hash_of(ID, i), ID, *i))
            .chain(keys.iter().map(|k| (hash_of(KEY, k), KEY, *k)))
            .collect();
        wanted.sort_unstable();
        let (mut known_ids, mut known_keys) = (HashSet::new(), HashSet::new());
        if wanted.is_empty() {
            return Ok((known_ids, known_keys));
        }
        self.read(|tx| {
            let rows = tx.query(
                "SELECT hashes FROM monitor_prediction_batches WHERE deployment = ? AND last_us >= ?",
                &[deployment.into(), Value::Int(since_us)],
            )?;
            for r in &rows {
                let Some(bytes) = r.first().and_then(Value::as_bytes) else {
                    continue;
                };
                let hashes: Vec<u64> = bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect();
                for (h, kind, text) in &wanted {
                    if hashes.binary_search(h).is_ok() {
                        if *kind == ID {
                            known_ids.insert((*text).to_string());
                        } else {
                            known_keys.insert((*text).to_string());
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok((known_ids, known_keys))
    }

    /// Deletes the batches of `deployment` whose every row was answered before
    /// `before_us`; answers how many.
    pub fn delete_predictions(&self, deployment: &str, before_us: i64) -> Result<i64> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM monitor_prediction_batches WHERE deployment = ? AND last_us < ?",
                &[deployment.into(), Value::Int(before_us)],
            )?;
            Ok(i64::try_from(n).unwrap_or(i64::MAX))
        })
    }
}

/// A batch as stored.
struct Encoded {
    first_us: i64,
    last_us: i64,
    rows: i64,
    hashes: Vec<u8>,
    data: Vec<u8>,
}

/// One batch's rows as gzip-compressed JSON (a list of row arrays), with the sorted hashes
/// of their ids and keys.
fn encode(rows: &[&Prediction]) -> Result<Encoded> {
    let corrupt = |e: std::io::Error| RegistryError::Store(format!("encoding predictions: {e}"));
    let mut hashes = Vec::with_capacity(rows.len() * 2);
    let mut text = Vec::with_capacity(rows.len() * 160);
    text.push(b'[');
    for (i, p) in rows.iter().enumerate() {
        hashes.push(hash_of(ID, &p.request_id));
        if let Some(k) = &p.key {
            hashes.push(hash_of(KEY, k));
        }
        // the outputs and segments are JSON already: checked, then written as they are
        let valid = |t: &str| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok();
        if !valid(&p.outputs) || !p.segments.as_deref().is_none_or(valid) {
            return Err(RegistryError::invalid(
                "prediction",
                &p.request_id,
                "its outputs and segments must be JSON",
            ));
        }
        if i > 0 {
            text.push(b',');
        }
        let head = (
            &p.request_id,
            &p.key,
            p.time_us,
            &p.model,
            p.version,
            &p.route,
            p.shadow,
        );
        serde_json::to_writer(&mut text, &head)
            .map_err(|e| RegistryError::Store(format!("encoding predictions: {e}")))?;
        text.pop(); // the head's closing bracket: the row goes on
        text.push(b',');
        text.extend_from_slice(p.outputs.as_bytes());
        text.push(b',');
        text.extend_from_slice(p.segments.as_deref().unwrap_or("null").as_bytes());
        text.push(b']');
    }
    text.push(b']');
    hashes.sort_unstable();
    hashes.dedup();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).map_err(corrupt)?;
    let data = gz.finish().map_err(corrupt)?;
    Ok(Encoded {
        first_us: rows.iter().map(|p| p.time_us).min().unwrap_or(0),
        last_us: rows.iter().map(|p| p.time_us).max().unwrap_or(0),
        rows: i64::try_from(rows.len()).unwrap_or(i64::MAX),
        hashes: hashes.iter().flat_map(|h| h.to_le_bytes()).collect(),
        data,
    })
}

/// A row as a batch stores it: id, key, time, model, version, route, shadow, outputs,
/// segments.
type StoredRow = (
    String,
    Option<String>,
    i64,
    String,
    i64,
    String,
    bool,
    Json,
    Json,
);

/// The rows of a stored batch.
fn decode(deployment: &str, replica: &str, data: &[u8]) -> Result<Vec<Prediction>> {
    let corrupt = |why: String| {
        RegistryError::Store(format!(
            "a stored batch of predictions of '{deployment}' cannot be read: {why}"
        ))
    };
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(MAX_BATCH_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| corrupt(e.to_string()))?;
    let rows: Vec<StoredRow> = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    Ok(rows
        .into_iter()
        .map(
            |(request_id, key, time_us, model, version, route, shadow, outputs, segments)| {
                Prediction {
                    deployment: deployment.to_string(),
                    request_id,
                    key,
                    time_us,
                    model,
                    version,
                    route,
                    shadow,
                    replica: replica.to_string(),
                    outputs: outputs.to_string(),
                    segments: (!segments.is_null()).then(|| segments.to_string()),
                }
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_its_hashes_find_its_ids_and_keys() {
        let rows: Vec<Prediction> = (0..300)
            .map(|i| Prediction {
                deployment: "churn".into(),
                request_id: format!("r{i}"),
                key: (i % 2 == 0).then(|| format!("loan-{i}")),
                time_us: 1_000 + i,
                model: "churn".into(),
                version: 1 + i % 2,
                route: "v1".into(),
                shadow: i % 3 == 0,
                replica: "a".into(),
                outputs: format!("{{\"label\":{},\"probabilities\":[0.25,0.75]}}", i % 2),
                segments: (i % 5 == 0).then(|| "{\"city\":\"oslo\"}".to_string()),
            })
            .collect();
        let refs: Vec<&Prediction> = rows.iter().collect();
        let batch = encode(&refs).unwrap();
        assert_eq!(
            (batch.first_us, batch.last_us, batch.rows),
            (1_000, 1_299, 300)
        );
        assert_eq!(decode("churn", "a", &batch.data).unwrap(), rows);
        let hashes: Vec<u64> = batch
            .hashes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert!(hashes.windows(2).all(|w| w[0] < w[1]));
        assert!(hashes.binary_search(&hash_of(ID, "r7")).is_ok());
        assert!(hashes.binary_search(&hash_of(KEY, "loan-8")).is_ok());
        assert!(hashes.binary_search(&hash_of(KEY, "r8")).is_err());
        assert!(decode("churn", "a", b"not gzip").is_err());
    }
}
