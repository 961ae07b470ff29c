//! `GET /v2/models/{name}/monitoring/{drift, prediction_drift, quality, health}`: the stored
//! windows of a deployment as JSON series (`?since=1h&until=...&window=5m&version=3`), read
//! from the registry off the async threads.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use pilothouse_drift::compare::Options;

use super::{ok_json, Shared};
use pilothouse_registry::RegistryError;

use crate::error::{RequestError, ServerError};
use crate::monitor::read::{self, Query as SeriesQuery};

/// A span back from now (`90s`, `15m`, `1h`, `7d`, `2w`) in microseconds.
pub fn parse_span(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        _ => return None,
    };
    let us = n * seconds * 1e6;
    (0.0..1e17).contains(&us).then_some(us as i64)
}

/// `since`/`until` as a span back from now, an ISO 8601 time, or microseconds.
fn parse_time(what: &str, text: &str, now_us: i64) -> Result<i64, RequestError> {
    if let Some(span) = parse_span(text) {
        return Ok(now_us - span);
    }
    if let Ok(us) = text.parse::<i64>() {
        return Ok(us);
    }
    pilothouse_registry::parse_time(text).map_err(|_| {
        RequestError::BadRequest(format!(
            "{what}={text:?}: give a span back from now (15m, 1h, 7d), an ISO 8601 time or microseconds since the epoch"
        ))
    })
}

fn query(name: String, params: &HashMap<String, String>) -> Result<SeriesQuery, RequestError> {
    let now = crate::now_us();
    let time = |key: &str| params.get(key).map(|t| parse_time(key, t, now)).transpose();
    let bucket_us = match params.get("window") {
        None => 0,
        Some(w) => parse_span(w).filter(|us| *us >= 1_000_000).ok_or_else(|| {
            RequestError::BadRequest(format!(
                "window={w:?}: give a length of at least one second (1m, 1h, 1d)"
            ))
        })?,
    };
    let version = params
        .get("version")
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                RequestError::BadRequest(format!("version={v:?} is not a version number"))
            })
        })
        .transpose()?;
    Ok(SeriesQuery {
        deployment: name,
        since_us: time("since")?,
        until_us: time("until")?,
        bucket_us,
        version,
    })
}

pub(super) async fn monitoring(
    State(app): Shared,
    Path((name, kind)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, RequestError> {
    let q = query(name, &params)?;
    let registry = app.registry.clone();
    let answer = tokio::task::spawn_blocking(move || {
        read::series(&registry, &kind, &q, &Options::default())
            .map_err(failed)?
            .ok_or_else(|| {
                RequestError::NotFound(format!(
                    "no such monitoring series '{kind}': {}",
                    read::SERIES
                ))
            })
    })
    .await
    .map_err(|e| RequestError::Inference(format!("the monitoring read failed: {e}")))?;
    Ok(ok_json(answer?))
}

/// A deployment or version that is not there is 404; a registry that cannot be read, 503.
fn failed(e: ServerError) -> RequestError {
    match e {
        ServerError::Registry(r @ RegistryError::NotFound { .. }) => {
            RequestError::NotFound(r.to_string())
        }
        other => RequestError::Unavailable(format!("cannot read the monitoring windows: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_nonsense_does_not() {
        assert_eq!(parse_span("90s"), Some(90_000_000));
        assert_eq!(parse_span("1.5h"), Some(5_400_000_000));
        assert_eq!(parse_span("7d"), Some(604_800_000_000));
        for bad in ["", "h", "1y", "-1h", "1e400h", "abc"] {
            assert_eq!(parse_span(bad), None, "{bad}");
        }
    }
}
