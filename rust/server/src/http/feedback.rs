//! `POST /v2/models/{name}/feedback`: labels and good/bad flags on a deployment's answers,
//! a JSON list of `{"id" | "key", "target" | "good", "comment", "user", "time"}`. Stored in
//! the registry whole or not at all; answers how many were accepted, how many replace an
//! earlier label or flag, and how many name no answer kept in the last day (`?check=7d` looks
//! further back; they are kept anyway: the answer's record may not be stored yet).

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use pilothouse_registry::{NewFeedback, RegistryError, Target};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::body::read_body;
use super::{ok_json, Shared};
use crate::error::RequestError;

/// One piece of feedback as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    id: Option<String>,
    key: Option<String>,
    target: Option<Json>,
    good: Option<bool>,
    comment: Option<String>,
    user: Option<String>,
    /// When the truth was known: ISO 8601 text, or seconds since the epoch.
    time: Option<Json>,
}

/// Unknown ids or keys named in the answer, at most.
const EXAMPLES: usize = 10;
/// The largest feedback body, and the most pieces in one call.
const MAX_BODY: usize = 4 << 20;
const MAX_ITEMS: usize = 100_000;

fn convert(i: usize, s: Sent) -> Result<NewFeedback, RequestError> {
    let what = |m: String| RequestError::BadRequest(format!("feedback item {i}: {m}"));
    let target = match s.target {
        None | Some(Json::Null) => None,
        Some(Json::String(t)) => Some(Target::Text(t)),
        Some(Json::Number(n)) => {
            Some(Target::Number(n.as_f64().ok_or_else(|| {
                what(format!("target {n} is not a number this server reads"))
            })?))
        }
        Some(other) => {
            return Err(what(format!(
                "target is a class label (text) or a number, got {other}"
            )))
        }
    };
    let time_us = match s.time {
        None | Some(Json::Null) => None,
        Some(Json::String(t)) => Some(
            pilothouse_registry::parse_time(&t)
                .map_err(|_| what(format!("time {t:?} is not an ISO 8601 time")))?,
        ),
        Some(Json::Number(n)) => {
            let seconds = n.as_f64().unwrap_or(f64::NAN);
            if !(0.0..1e11).contains(&seconds) {
                return Err(what(format!(
                    "time {n} is not a number of seconds since the epoch"
                )));
            }
            Some((seconds * 1e6) as i64)
        }
        Some(other) => {
            return Err(what(format!(
                "time is ISO 8601 text or seconds since the epoch, got {other}"
            )))
        }
    };
    Ok(NewFeedback {
        request_id: s.id,
        key: s.key,
        target,
        good: s.good,
        comment: s.comment,
        user: s.user,
        time_us,
    })
}

/// How far back the ids and keys are looked for among kept answers by default.
const CHECK_DEFAULT_US: i64 = 24 * 3_600_000_000;

pub(super) async fn feedback(
    State(app): Shared,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, RequestError> {
    app.plane.find(&name)?;
    let check_us = match params.get("check") {
        None => CHECK_DEFAULT_US,
        Some(c) => super::monitoring::parse_span(c).ok_or_else(|| {
            RequestError::BadRequest(format!(
                "check={c:?}: give how far back to look for the answers named (1h, 7d, 30d)"
            ))
        })?,
    };
    let checked_since = crate::now_us().saturating_sub(check_us);
    let (_, body, _held) = read_body(&app, request).await?;
    if body.len() > MAX_BODY {
        return Err(RequestError::TooLarge(format!(
            "a feedback body is at most {MAX_BODY} bytes, this one {}: send it in parts",
            body.len()
        )));
    }
    let registry = app.registry.clone();
    // parsing a few megabytes and the registry's work both stay off the async threads
    let answer = tokio::task::spawn_blocking(move || {
        let sent: Vec<Sent> = serde_json::from_slice(&body).map_err(|e| {
            RequestError::BadRequest(format!(
                "feedback is a JSON list of {{\"id\" or \"key\", \"target\" or \"good\", \"comment\", \"user\", \"time\"}}: {e}"
            ))
        })?;
        if sent.len() > MAX_ITEMS {
            return Err(RequestError::TooLarge(format!(
                "{} pieces of feedback in one call; at most {MAX_ITEMS}: send them in parts",
                sent.len()
            )));
        }
        let items = sent
            .into_iter()
            .enumerate()
            .map(|(i, s)| convert(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        let counts = registry
            .put_feedback("http", &name, &items)
            .map_err(stored)?;
        let mut answer = json!({
            "accepted": counts.accepted,
            "duplicates": counts.replaced,
            "checked_since": rfc3339(checked_since),
        });
        let ids: Vec<&str> = items
            .iter()
            .filter_map(|f| f.request_id.as_deref())
            .collect();
        let keys: Vec<&str> = items.iter().filter_map(|f| f.key.as_deref()).collect();
        match registry.known_requests(&name, &ids, &keys, checked_since) {
            Ok((known_ids, known_keys)) => {
                let unknown_ids: Vec<&str> = ids
                    .iter()
                    .filter(|i| !known_ids.contains(**i))
                    .copied()
                    .collect();
                let unknown_keys: Vec<&str> = keys
                    .iter()
                    .filter(|k| !known_keys.contains(**k))
                    .copied()
                    .collect();
                answer["unknown_ids"] = json!(unknown_ids.len());
                answer["unknown_keys"] = json!(unknown_keys.len());
                answer["unknown"] = json!(unknown_ids
                    .iter()
                    .chain(&unknown_keys)
                    .take(EXAMPLES)
                    .collect::<Vec<_>>());
            }
            // stored already: the call succeeded, only the check could not be made
            Err(e) => {
                tracing::warn!(event = "feedback_check_failed", deployment = %name, error = %e, "feedback stored, but which ids are known could not be read");
                answer["unknown_ids"] = Json::Null;
                answer["unknown_keys"] = Json::Null;
                answer["unknown"] = json!([]);
            }
        }
        Ok::<_, RequestError>(answer)
    })
    .await
    .map_err(|e| RequestError::Inference(format!("storing the feedback failed: {e}")))??;
    Ok(ok_json(answer))
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Invalid feedback is the client's to fix (400); a registry that cannot be written, 503.
fn stored(e: RegistryError) -> RequestError {
    match e {
        e @ RegistryError::Invalid { .. } => RequestError::BadRequest(e.to_string()),
        other => RequestError::Unavailable(format!("cannot store the feedback: {other}")),
    }
}
