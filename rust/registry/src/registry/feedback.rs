//! Feedback on served answers: ground truth (a class label or a number) and good/bad flags
//! with a comment, addressed to a request by its id or by a correlation key the business
//! knows. Stored durably and never overwritten: a second label for the same request is a
//! new row that replaces the first when read (the history stays). Bulk ingestion writes many
//! rows per statement, so a million labels take seconds.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::json;

use crate::audit;
use crate::error::{RegistryError, Result};
use crate::names;
use crate::records::{select, Named};
use crate::store::{Tx, Value};

use super::{now_micros, Registry};

/// What a label says: a class (as text) or a number.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Target {
    Number(f64),
    Text(String),
}

/// One piece of feedback as sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewFeedback {
    /// The request's id (the `X-Request-ID` its response carried: the client's, the body's
    /// v2 `id`, or one the server made), or
    pub request_id: Option<String>,
    /// a correlation key the request carried.
    pub key: Option<String>,
    pub target: Option<Target>,
    /// A flag: the answer was good (true) or bad (false).
    pub good: Option<bool>,
    pub comment: Option<String>,
    pub user: Option<String>,
    /// When the truth was known or the flag given (None: when received).
    pub time_us: Option<i64>,
}

/// One stored piece of feedback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    pub id: i64,
    pub deployment: String,
    pub request_id: Option<String>,
    pub key: Option<String>,
    /// "target" or "flag".
    pub kind: String,
    pub target: Option<Target>,
    pub good: Option<bool>,
    pub comment: Option<String>,
    pub user: Option<String>,
    pub time_us: i64,
    pub received_us: i64,
    pub received_by: String,
}

/// What an ingestion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FeedbackCounts {
    pub accepted: u64,
    /// Labels (or flags) for a request that already had one: the new one is read from now on.
    pub replaced: u64,
}

const COLUMNS: &[&str] = &[
    "id",
    "deployment",
    "request_id",
    "correlation_key",
    "kind",
    "target_text",
    "target_number",
    "good",
    "comment",
    "user_name",
    "time_us",
    "received_us",
    "received_by",
];

/// Rows per INSERT statement: well under SQLite's and PostgreSQL's parameter limits.
const BATCH: usize = 1000;
/// The longest id, key, comment or user name kept.
const MAX_TEXT: usize = 4096;
/// 2262-01-01T00:00:00Z, in microseconds since the epoch.
const MAX_TIME_US: i64 = 9_214_646_400_000_000;

fn check(f: &NewFeedback) -> Result<()> {
    if f.request_id.is_none() == f.key.is_none() {
        return Err(RegistryError::invalid(
            "feedback",
            format!("{:?}", f.request_id.as_deref().or(f.key.as_deref())),
            "each piece of feedback names either a request id or a correlation key (one of them)",
        ));
    }
    if f.target.is_none() == f.good.is_none() {
        return Err(RegistryError::invalid(
            "feedback",
            f.request_id
                .clone()
                .or_else(|| f.key.clone())
                .unwrap_or_default(),
            "each piece of feedback is either a label (target) or a flag (good), one of them",
        ));
    }
    if let Some(Target::Number(x)) = &f.target {
        if !x.is_finite() {
            return Err(RegistryError::invalid(
                "feedback target",
                x.to_string(),
                "a numeric label must be a finite number",
            ));
        }
    }
    for (what, text) in [
        ("request id", &f.request_id),
        ("correlation key", &f.key),
        ("comment", &f.comment),
        ("user", &f.user),
    ] {
        if let Some(t) = text {
            if t.is_empty() && what != "comment" {
                return Err(RegistryError::invalid(
                    "feedback",
                    what,
                    "must not be empty",
                ));
            }
            if t.len() > MAX_TEXT {
                return Err(RegistryError::invalid(
                    "feedback",
                    what,
                    format!("{} bytes; at most {MAX_TEXT}", t.len()),
                ));
            }
            // PostgreSQL's text holds no NUL; no other control character belongs in these
            if t.chars()
                .any(|c| c.is_control() && !(what == "comment" && c.is_whitespace()))
            {
                return Err(RegistryError::invalid(
                    "feedback",
                    what,
                    "has a control character",
                ));
            }
        }
    }
    if let Some(Target::Text(t)) = &f.target {
        if t.len() > MAX_TEXT {
            return Err(RegistryError::invalid(
                "feedback target",
                format!("{} bytes", t.len()),
                format!("a label has at most {MAX_TEXT} bytes"),
            ));
        }
        if t.contains('\0') {
            return Err(RegistryError::invalid(
                "feedback target",
                t.replace('\0', "\\0"),
                "a label has no NUL character",
            ));
        }
    }
    if let Some(t) = f.time_us {
        // from 1970 to 2262: what every reader's timestamps (pandas' included) can hold
        if !(0..=MAX_TIME_US).contains(&t) {
            return Err(RegistryError::invalid(
                "feedback time",
                t.to_string(),
                "a time from 1970 to 2262 (microseconds since the epoch)",
            ));
        }
    }
    Ok(())
}

fn kind(f: &NewFeedback) -> &'static str {
    if f.target.is_some() {
        "target"
    } else {
        "flag"
    }
}

impl Registry {
    /// Stores feedback for deployment `deployment`, sent by `actor`: all of it or, when one
    /// piece is invalid, none (the error names it).
    pub fn put_feedback(
        &self,
        actor: &str,
        deployment: &str,
        feedback: &[NewFeedback],
    ) -> Result<FeedbackCounts> {
        names::deployment(deployment)?;
        for f in feedback {
            check(f)?;
        }
        let at = now_micros();
        let mut counts = FeedbackCounts::default();
        self.write(|tx| {
            counts = FeedbackCounts::default();
            // what is replaced is looked up before anything is inserted: the lookups then
            // read the table as it was (a table filled within this transaction has no
            // statistics yet, and PostgreSQL would scan it whole for each batch)
            let mut seen = HashSet::new();
            for batch in feedback.chunks(BATCH) {
                counts.replaced += replaced(tx, deployment, batch, &mut seen)?;
            }
            for batch in feedback.chunks(BATCH) {
                insert(tx, deployment, actor, at, batch)?;
                counts.accepted += batch.len() as u64;
            }
            audit::append(
                tx,
                at,
                actor,
                "feedback.logged",
                None,
                &json!({"deployment": deployment, "accepted": counts.accepted, "replaced": counts.replaced}),
            )
        })?;
        Ok(counts)
    }

    /// The feedback on `deployment` received in `[since_us, until_us)`, oldest first;
    /// `kind` keeps "target" or "flag" rows, `good` flags of that value.
    pub fn feedback(
        &self,
        deployment: &str,
        since_us: Option<i64>,
        until_us: Option<i64>,
        kind: Option<&str>,
        good: Option<bool>,
    ) -> Result<Vec<Feedback>> {
        self.read(|tx| {
            let sql = format!(
                "SELECT {} FROM monitor_feedback WHERE deployment = ? AND received_us >= ? AND received_us < ? \
                 AND (? = '' OR kind = ?) AND (? < 0 OR good = ?) ORDER BY id",
                select(COLUMNS, "")
            );
            let kind = kind.unwrap_or("");
            let good = good.map_or(-1, i64::from);
            let rows = tx.query(
                &sql,
                &[
                    deployment.into(),
                    Value::Int(since_us.unwrap_or(i64::MIN)),
                    Value::Int(until_us.unwrap_or(i64::MAX)),
                    kind.into(),
                    kind.into(),
                    Value::Int(good),
                    Value::Int(good),
                ],
            )?;
            Ok(rows
                .iter()
                .map(|row| {
                    let r = Named::new(COLUMNS, row);
                    let target = match (r.text("target_text"), r.float("target_number")) {
                        (Some(t), _) => Some(Target::Text(t)),
                        (None, Some(x)) => Some(Target::Number(x)),
                        _ => None,
                    };
                    Feedback {
                        id: r.int("id").unwrap_or_default(),
                        deployment: r.text("deployment").unwrap_or_default(),
                        request_id: r.text("request_id"),
                        key: r.text("correlation_key"),
                        kind: r.text("kind").unwrap_or_default(),
                        target,
                        good: r.flag("good"),
                        comment: r.text("comment"),
                        user: r.text("user_name"),
                        time_us: r.int("time_us").unwrap_or_default(),
                        received_us: r.int("received_us").unwrap_or_default(),
                        received_by: r.text("received_by").unwrap_or_default(),
                    }
                })
                .collect())
        })
    }
}

/// How many of `batch` give a request a second label (or flag): one that is stored already
/// or came earlier in this ingestion (`seen`: address column, kind and address so far).
fn replaced<'a>(
    tx: &mut dyn Tx,
    deployment: &str,
    batch: &'a [NewFeedback],
    seen: &mut HashSet<(&'static str, &'static str, &'a str)>,
) -> Result<u64> {
    let mut count = 0;
    for (column, pick) in [
        (
            "request_id",
            (|f: &NewFeedback| f.request_id.as_deref()) as fn(&NewFeedback) -> Option<&str>,
        ),
        ("correlation_key", |f: &NewFeedback| f.key.as_deref()),
    ] {
        for k in ["target", "flag"] {
            let wanted: Vec<&str> = batch
                .iter()
                .filter(|f| kind(f) == k)
                .filter_map(pick)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let placeholders = vec!["?"; wanted.len()].join(", ");
            let mut params: Vec<Value> = vec![deployment.into(), k.into()];
            params.extend(wanted.iter().map(|w| Value::from(*w)));
            let stored = tx.query(
                &format!(
                    "SELECT DISTINCT {column} FROM monitor_feedback WHERE deployment = ? AND kind = ? AND {column} IN ({placeholders})"
                ),
                &params,
            )?;
            let stored: HashSet<String> = stored
                .iter()
                .filter_map(|r| r.first().and_then(Value::as_str).map(str::to_string))
                .collect();
            for w in wanted {
                if !seen.insert((column, k, w)) || stored.contains(w) {
                    count += 1;
                }
            }
        }
    }
    Ok(count)
}

fn insert(
    tx: &mut dyn Tx,
    deployment: &str,
    actor: &str,
    at: i64,
    batch: &[NewFeedback],
) -> Result<()> {
    let columns = &COLUMNS[1..];
    let row = format!("({})", vec!["?"; columns.len()].join(", "));
    let sql = format!(
        "INSERT INTO monitor_feedback ({}) VALUES {}",
        columns.join(", "),
        vec![row.as_str(); batch.len()].join(", ")
    );
    let text = |t: &Option<String>| t.clone().map_or(Value::Null, Value::Text);
    let mut params = Vec::with_capacity(batch.len() * columns.len());
    for f in batch {
        let (target_text, target_number) = match &f.target {
            Some(Target::Text(t)) => (Value::Text(t.clone()), Value::Null),
            Some(Target::Number(x)) => (Value::Null, Value::Float(*x)),
            None => (Value::Null, Value::Null),
        };
        params.extend([
            deployment.into(),
            text(&f.request_id),
            text(&f.key),
            kind(f).into(),
            target_text,
            target_number,
            f.good.map_or(Value::Null, |g| Value::Int(i64::from(g))),
            text(&f.comment),
            text(&f.user),
            Value::Int(f.time_us.unwrap_or(at)),
            Value::Int(at),
            actor.into(),
        ]);
    }
    tx.execute(&sql, &params)?;
    Ok(())
}
