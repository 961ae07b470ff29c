//! Served predictions, kept so that feedback joins them when the payload log keeps no
//! content: per answered row its request id (row `i` of a request of several rows is
//! `<id>/<i>`), correlation key, time, version, route, whether a shadow answered, the
//! replica, its outputs (JSON) and its segment values (JSON). Servers write them in batches;
//! they are deleted after the deployment's retention. This file also owns the join of
//! predictions with their latest label and flag ([`Registry::labelled`]).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::Result;
use crate::names;
use crate::records::{select, Named};
use crate::store::{Tx, Value};

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

const COLUMNS: &[&str] = &[
    "deployment",
    "request_id",
    "correlation_key",
    "time_us",
    "model",
    "version",
    "route",
    "shadow",
    "replica",
    "outputs",
    "segments",
];

/// Rows per INSERT statement (11 parameters each): under SQLite's parameter limit.
const BATCH: usize = 500;
/// Feedback is read from this long before a period's start: the clocks of the servers
/// and of whoever sends feedback may differ.
const CLOCK_SLACK_US: i64 = 3_600_000_000;

impl Registry {
    /// Stores predictions answered by `replica`, in one transaction.
    pub fn put_predictions(&self, rows: &[Prediction]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        for r in rows {
            names::deployment(&r.deployment)?;
        }
        self.write(|tx| {
            for batch in rows.chunks(BATCH) {
                insert(tx, batch)?;
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
        self.read(|tx| {
            let rows = tx.query(
                &format!(
                    "SELECT {} FROM monitor_predictions WHERE deployment = ? AND time_us >= ? AND time_us < ? ORDER BY time_us, request_id",
                    select(COLUMNS, "")
                ),
                &[
                    deployment.into(),
                    Value::Int(since_us.unwrap_or(i64::MIN)),
                    Value::Int(until_us.unwrap_or(i64::MAX)),
                ],
            )?;
            Ok(rows
                .iter()
                .map(|row| {
                    let r = Named::new(COLUMNS, row);
                    Prediction {
                        deployment: r.text("deployment").unwrap_or_default(),
                        request_id: r.text("request_id").unwrap_or_default(),
                        key: r.text("correlation_key"),
                        time_us: r.int("time_us").unwrap_or_default(),
                        model: r.text("model").unwrap_or_default(),
                        version: r.int("version").unwrap_or_default(),
                        route: r.text("route").unwrap_or_default(),
                        shadow: r.flag("shadow").unwrap_or(false),
                        replica: r.text("replica").unwrap_or_default(),
                        outputs: r.text("outputs").unwrap_or_default(),
                        segments: r.text("segments"),
                    }
                })
                .collect())
        })
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

    /// Which of `ids` and `keys` name a stored prediction of `deployment`.
    pub fn known_requests(
        &self,
        deployment: &str,
        ids: &[&str],
        keys: &[&str],
    ) -> Result<(HashSet<String>, HashSet<String>)> {
        self.read(|tx| {
            Ok((
                present(tx, deployment, "request_id", ids)?,
                present(tx, deployment, "correlation_key", keys)?,
            ))
        })
    }

    /// Deletes the predictions of `deployment` answered before `before_us`; answers how many.
    pub fn delete_predictions(&self, deployment: &str, before_us: i64) -> Result<i64> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM monitor_predictions WHERE deployment = ? AND time_us < ?",
                &[deployment.into(), Value::Int(before_us)],
            )?;
            Ok(i64::try_from(n).unwrap_or(i64::MAX))
        })
    }

    /// The deployments that have stored predictions.
    pub fn predicted_deployments(&self) -> Result<Vec<String>> {
        self.read(|tx| {
            let rows = tx.query("SELECT DISTINCT deployment FROM monitor_predictions", &[])?;
            Ok(rows
                .iter()
                .filter_map(|r| r.first().and_then(Value::as_str).map(str::to_string))
                .collect())
        })
    }
}

/// The values of `wanted` found in `column` among `deployment`'s predictions.
fn present(
    tx: &mut dyn Tx,
    deployment: &str,
    column: &str,
    wanted: &[&str],
) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for batch in wanted.chunks(1000) {
        let placeholders = vec!["?"; batch.len()].join(", ");
        let mut params: Vec<Value> = vec![deployment.into()];
        params.extend(batch.iter().map(|w| Value::from(*w)));
        let rows = tx.query(
            &format!(
                "SELECT DISTINCT {column} FROM monitor_predictions WHERE deployment = ? AND {column} IN ({placeholders})"
            ),
            &params,
        )?;
        found.extend(
            rows.iter()
                .filter_map(|r| r.first().and_then(Value::as_str).map(str::to_string)),
        );
    }
    Ok(found)
}

fn insert(tx: &mut dyn Tx, batch: &[Prediction]) -> Result<()> {
    let row = format!("({})", vec!["?"; COLUMNS.len()].join(", "));
    let sql = format!(
        "INSERT INTO monitor_predictions ({}) VALUES {}",
        COLUMNS.join(", "),
        vec![row.as_str(); batch.len()].join(", ")
    );
    let mut params = Vec::with_capacity(batch.len() * COLUMNS.len());
    for p in batch {
        params.extend([
            p.deployment.as_str().into(),
            p.request_id.as_str().into(),
            p.key.clone().map_or(Value::Null, Value::Text),
            Value::Int(p.time_us),
            p.model.as_str().into(),
            Value::Int(p.version),
            p.route.as_str().into(),
            Value::Int(i64::from(p.shadow)),
            p.replica.as_str().into(),
            p.outputs.as_str().into(),
            p.segments.clone().map_or(Value::Null, Value::Text),
        ]);
    }
    tx.execute(&sql, &params)?;
    Ok(())
}
