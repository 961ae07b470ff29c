//! Inference over HTTP: request ids, the body read and decoded, the request parsed, the data
//! plane asked, and the answer encoded with its headers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::body::{decode_body, read_body};
use super::{App, Shared, INFERENCE_HEADER_LENGTH, X_MODEL_ROUTE, X_MODEL_VERSION, X_REQUEST_ID};
use crate::encoding;
use crate::error::RequestError;
use crate::protocol;
use crate::serving::dataplane::Arrival;

pub(super) async fn infer(
    State(app): Shared,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    serve(app, name, None, request).await
}

pub(super) async fn infer_version(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    serve(app, name, Some(version), request).await
}

/// A random (version 4) UUID from a fast thread-local generator: no system call per request.
fn new_request_id() -> String {
    let bytes = fastrand::u128(..).to_le_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| usable_id(v))
        .map_or_else(new_request_id, str::to_string)
}

/// An id a client gave that the server uses as the request's: 1 to 200 bytes that a
/// header can carry (visible ASCII and spaces).
fn usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn with_ids(
    mut response: Response,
    id: &str,
    version: Option<i64>,
    route: Option<&str>,
) -> Response {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert(X_REQUEST_ID, v);
    }
    if let Some(v) = version {
        h.insert(X_MODEL_VERSION, HeaderValue::from(v));
    }
    if let Some(r) = route.and_then(|r| HeaderValue::from_str(r).ok()) {
        h.insert(X_MODEL_ROUTE, r);
    }
    response
}

/// One inference request over HTTP. Failures before admission carry only the request id;
/// after it, the version and route too.
pub(super) async fn serve(
    app: Arc<App>,
    name: String,
    version: Option<String>,
    request: Request,
) -> Response {
    let sent_id = request.headers().contains_key(X_REQUEST_ID);
    let arrival = Arrival {
        id: request_id(request.headers()),
        keys: Arc::default(),
        at: Instant::now(),
        time_us: crate::now_us(),
    };
    let plane = &app.plane;
    let sticky = |h: &str| request.headers().get(h).map(|v| v.as_bytes().to_vec());
    let admitted = match plane.admit(&name, version.as_deref(), sticky) {
        Ok(a) => a,
        Err(e) => return with_ids(e.into_response(), &arrival.id, None, None),
    };
    let (id, version, route) = (
        arrival.id.clone(),
        admitted.loaded.version,
        admitted.route.clone(),
    );
    let fail = |e: RequestError| {
        plane.count(&name, &version.to_string(), e.status());
        with_ids(e.into_response(), &id, Some(version), Some(&route))
    };
    let (headers, body, mut held) = match read_body(&app, request).await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let body = match headers.get(header::CONTENT_ENCODING) {
        None => body,
        Some(coding) => match decode_body(&app, coding, body, &mut held).await {
            Ok(b) => b,
            Err(e) => return fail(e),
        },
    };
    let answer_coding = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .and_then(encoding::accepted);
    let header_length = match headers
        .get(INFERENCE_HEADER_LENGTH)
        .map(|v| v.to_str().ok().and_then(|s| s.parse::<usize>().ok()))
    {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => {
            return fail(RequestError::BadRequest(
                "Inference-Header-Content-Length is not a number".into(),
            ))
        }
    };
    let parsed = if body.len() > 256 * 1024 {
        let body = body.clone();
        tokio::task::spawn_blocking(move || protocol::parse_request(&body, header_length))
            .await
            .unwrap_or_else(|_| {
                Err(RequestError::BadRequest(
                    "the request could not be decoded".into(),
                ))
            })
    } else {
        protocol::parse_request(&body, header_length)
    };
    let mut request = match parsed {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    // without an X-Request-ID, the body's v2 "id" (echoed in the answer) is the request's
    // id: the log, the kept prediction and feedback know it by the same name
    let mut arrival = arrival;
    let id = match request.id.as_deref() {
        Some(body_id) if !sent_id && usable_id(body_id) => {
            arrival.id = body_id.to_string();
            arrival.id.clone()
        }
        _ => id,
    };
    let loaded = admitted.loaded.clone();
    let answer = match plane.infer(&admitted, &mut request, arrival).await {
        Ok(answer) => answer,
        // Counted by the data plane.
        Err(e) => return with_ids(e.into_response(), &id, Some(version), Some(&route)),
    };
    let encoded = protocol::encode_response(
        &name,
        loaded.version,
        request.id.as_deref(),
        loaded.model.signature(),
        &answer.outputs,
        &request,
        answer.quality.as_deref(),
    );
    let content_type = if encoded.header_length.is_some() {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let mut response = match answer_coding {
        None => ([(header::CONTENT_TYPE, content_type)], encoded.body).into_response(),
        Some(coding) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CONTENT_ENCODING, coding.name()),
                (header::VARY, "accept-encoding"),
            ],
            encoding::encode(coding, &encoded.body),
        )
            .into_response(),
    };
    if let Some(n) = encoded.header_length {
        response
            .headers_mut()
            .insert(INFERENCE_HEADER_LENGTH, HeaderValue::from(n));
    }
    with_ids(response, &id, Some(version), Some(&route))
}
