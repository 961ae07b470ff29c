//! The endpoints other than inference: server and model metadata, health and readiness,
//! Triton's configuration and statistics extensions, and `/metrics`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ok_json, Shared};
use crate::error::RequestError;
use crate::protocol;
use crate::serving::deployments::Loaded;

type Answer = Result<Response, RequestError>;

pub(super) async fn not_found(method: Method, uri: Uri) -> RequestError {
    RequestError::NotFound(format!("no such endpoint: {method} {}", uri.path()))
}

pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> RequestError {
    RequestError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

/// The protocol extensions this server implements (Triton's names).
const EXTENSIONS: [&str; 5] = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "statistics",
    "parameters",
];

pub(super) async fn server_metadata() -> Response {
    ok_json(
        json!({"name": "pilothouse", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS}),
    )
}

fn stats_answer(entries: Vec<serde_json::Value>) -> Response {
    ok_json(json!({"model_stats": entries}))
}

pub(super) async fn all_stats(State(app): Shared) -> Response {
    let deployments = app.plane.state.deployments.load();
    let mut names: Vec<&String> = deployments.keys().collect();
    names.sort();
    let entries = names
        .into_iter()
        .flat_map(|n| {
            deployments[n]
                .loaded()
                .into_iter()
                .map(|l| l.metrics.stats.json(n, l.version))
                .collect::<Vec<_>>()
        })
        .collect();
    stats_answer(entries)
}

pub(super) async fn model_stats(State(app): Shared, Path(name): Path<String>) -> Answer {
    let d = app.plane.find(&name)?;
    Ok(stats_answer(
        d.loaded()
            .into_iter()
            .map(|l| l.metrics.stats.json(&name, l.version))
            .collect(),
    ))
}

pub(super) async fn version_stats(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Answer {
    let l = app.plane.find_deployed(&name, &version)?;
    Ok(stats_answer(vec![l.metrics.stats.json(&name, l.version)]))
}

fn config_answer(name: &str, versions: &[i64], l: &Loaded) -> Response {
    ok_json(crate::stats::config_json(&crate::stats::ConfigView {
        name,
        versions,
        signature: l.model.signature(),
        max_batch_rows: l.max_batch_rows,
        max_queue_delay: Duration::from_micros(l.batching.max_queue_delay_us),
        threads: l.threads,
    }))
}

pub(super) async fn model_config(State(app): Shared, Path(name): Path<String>) -> Answer {
    let d = app.plane.find(&name)?;
    Ok(config_answer(&name, &d.versions(), d.primary()))
}

pub(super) async fn version_config(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Answer {
    let l = app.plane.find_deployed(&name, &version)?;
    Ok(config_answer(&name, &[l.version], &l))
}

/// Ready once every deployment has been loaded or has failed to: one deployment that cannot
/// load answers "not ready" on its own ready endpoint and never takes the others down.
pub(super) async fn server_ready(State(app): Shared) -> Answer {
    let state = &app.plane.state;
    if !state.ready.load(Ordering::SeqCst) {
        return Err(RequestError::Unavailable(
            "not ready: the deployments are still loading".into(),
        ));
    }
    let not_ready = state.failed.load().len();
    Ok(ok_json(
        json!({"ready": true, "deployments_not_ready": not_ready}),
    ))
}

pub(super) async fn metrics(State(app): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.plane.metrics.encode(),
    )
        .into_response()
}

pub(super) async fn model_metadata(State(app): Shared, Path(name): Path<String>) -> Answer {
    let d = app.plane.find(&name)?;
    Ok(ok_json(protocol::model_metadata(
        &name,
        &d.versions(),
        d.primary().model.signature(),
    )))
}

pub(super) async fn version_metadata(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Answer {
    let l = app.plane.find_deployed(&name, &version)?;
    Ok(ok_json(protocol::model_metadata(
        &name,
        &[l.version],
        l.model.signature(),
    )))
}

pub(super) async fn model_ready(State(app): Shared, Path(name): Path<String>) -> Answer {
    match app.plane.find(&name) {
        Ok(_) => Ok(ok_json(json!({"name": name, "ready": true}))),
        Err(e) => Err(match app.plane.load_failure(&name) {
            Some(why) => {
                RequestError::Unavailable(format!("deployment '{name}' is not ready: {why}"))
            }
            None => e,
        }),
    }
}

pub(super) async fn version_ready(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Answer {
    let l = app.plane.find_deployed(&name, &version)?;
    Ok(ok_json(
        json!({"name": name, "version": l.version.to_string(), "ready": true}),
    ))
}
