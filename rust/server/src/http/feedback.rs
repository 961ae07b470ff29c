//! `POST /v2/models/{name}/feedback`: labels and good/bad flags on a deployment's answers,
//! a JSON list of `{"id" | "key", "target" | "good", "comment", "user", "time"}`. Stored in
//! the registry whole or not at all; answers how many were accepted, how many name a request
//! this deployment has no record of (kept: the record may not be stored yet), and how many
//! replace an earlier label or flag.

use axum::extract::{Path, Request, State};
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

pub(super) async fn feedback(
    State(app): Shared,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, RequestError> {
    app.plane.find(&name)?;
    let (_, body, _held) = read_body(&app, request).await?;
    let sent: Vec<Sent> = serde_json::from_slice(&body).map_err(|e| {
        RequestError::BadRequest(format!(
            "feedback is a JSON list of {{\"id\" or \"key\", \"target\" or \"good\", \"comment\", \"user\", \"time\"}}: {e}"
        ))
    })?;
    let items = sent
        .into_iter()
        .enumerate()
        .map(|(i, s)| convert(i, s))
        .collect::<Result<Vec<_>, _>>()?;
    let registry = app.registry.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let counts = registry
            .put_feedback("http", &name, &items)
            .map_err(stored)?;
        let ids: Vec<&str> = items
            .iter()
            .filter_map(|f| f.request_id.as_deref())
            .collect();
        let keys: Vec<&str> = items.iter().filter_map(|f| f.key.as_deref()).collect();
        let (known_ids, known_keys) = registry
            .known_requests(&name, &ids, &keys)
            .map_err(stored)?;
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
        Ok::<_, RequestError>(json!({
            "accepted": counts.accepted,
            "duplicates": counts.replaced,
            "unknown_ids": unknown_ids.len(),
            "unknown_keys": unknown_keys.len(),
            "unknown": unknown_ids.iter().chain(&unknown_keys).take(EXAMPLES).collect::<Vec<_>>(),
        }))
    })
    .await
    .map_err(|e| RequestError::Inference(format!("storing the feedback failed: {e}")))??;
    Ok(ok_json(answer))
}

/// Invalid feedback is the client's to fix (400); a registry that cannot be written, 503.
fn stored(e: RegistryError) -> RequestError {
    match e {
        e @ RegistryError::Invalid { .. } => RequestError::BadRequest(e.to_string()),
        other => RequestError::Unavailable(format!("cannot store the feedback: {other}")),
    }
}
