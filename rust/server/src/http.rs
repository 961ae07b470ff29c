//! The HTTP surface: Open Inference Protocol v2 endpoints, `/metrics`, and protocol-conformant
//! `{"error": "..."}` answers for everything that goes wrong.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use pilothouse_runtime::OwnedTensor;
use serde_json::json;
use tower::{Service, ServiceExt};

use crate::batcher::JobError;
use crate::deployments::{Deployment, Loaded};
use crate::encoding;
use crate::metrics::{Metrics, RequestLabels};
use crate::paylog::{LogSender, Record};
use crate::protocol::{self, InferRequest};

pub struct App {
    pub state: Arc<crate::deployments::State>,
    pub metrics: Arc<Metrics>,
    pub log: LogSender,
    pub max_body: usize,
    /// How long a request's body may take to arrive once its headers have.
    pub body_timeout: Duration,
    /// Bytes of request bodies held by requests being read, queued or run.
    pub in_flight: ByteBudget,
}

/// A budget of bytes shared by every request: a request takes its body's bytes as they
/// arrive and gives them back when its answer is sent.
pub struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> ByteBudget {
        ByteBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `bytes` if they fit; the guard gives them back when dropped.
    fn take(&self, bytes: usize) -> Option<Held<'_>> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(bytes).filter(|n| *n <= self.limit)?;
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(Held {
                        budget: self,
                        bytes,
                    })
                }
                Err(now) => used = now,
            }
        }
    }
}

/// Bytes taken from a budget, returned on drop.
struct Held<'a> {
    budget: &'a ByteBudget,
    bytes: usize,
}

impl Held<'_> {
    /// Adjusts what is held to the body's real size (a chunked body had no length).
    fn resize(&mut self, bytes: usize) -> bool {
        if bytes <= self.bytes {
            self.budget
                .used
                .fetch_sub(self.bytes - bytes, Ordering::AcqRel);
            self.bytes = bytes;
            return true;
        }
        match self.budget.take(bytes - self.bytes) {
            Some(more) => {
                self.bytes += more.bytes;
                std::mem::forget(more);
                true
            }
            None => false,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

type Shared = State<Arc<App>>;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");
const X_MODEL_ROUTE: HeaderName = HeaderName::from_static("x-model-route");
const INFERENCE_HEADER_LENGTH: HeaderName =
    HeaderName::from_static("inference-header-content-length");

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": message.into()}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn ok_json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The service the listener runs. Inference (`POST /v2/models/{name}/infer`, nearly all the
/// traffic) goes straight to its handler, skipping the router's matching, path-parameter
/// extraction and boxed futures; every other request goes through the router.
pub fn service(
    app: Arc<App>,
) -> impl Service<Request, Response = Response, Error = std::convert::Infallible, Future: Send>
       + Clone
       + Send
       + 'static {
    let router = router(app.clone());
    tower::service_fn(move |request: Request| {
        let (app, router) = (app.clone(), router.clone());
        async move {
            match infer_target(&request) {
                Some(name) => Ok(serve(app, name, None, request).await),
                None => router.oneshot(request).await,
            }
        }
    })
}

/// The deployment a plain inference request names: `POST /v2/models/{name}/infer` with a name
/// that needs no percent-decoding. Anything else is left to the router.
fn infer_target(request: &Request) -> Option<String> {
    if request.method() != Method::POST {
        return None;
    }
    let name = request
        .uri()
        .path()
        .strip_prefix("/v2/models/")?
        .strip_suffix("/infer")?;
    (!name.is_empty() && !name.contains(['/', '%'])).then(|| name.to_string())
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/", get(server_metadata))
        .route(
            "/v2/health/live",
            get(|| async { ok_json(json!({"live": true})) }),
        )
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(version_ready),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{name}/stats", get(model_stats))
        .route(
            "/v2/models/{name}/versions/{version}/stats",
            get(version_stats),
        )
        .route("/v2/models/{name}/config", get(model_config))
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(version_config),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// The protocol extensions this server implements (Triton's names).
const EXTENSIONS: [&str; 5] = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "statistics",
    "parameters",
];

async fn server_metadata() -> Response {
    ok_json(
        json!({"name": "pilothouse", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS}),
    )
}

fn stats_answer(entries: Vec<serde_json::Value>) -> Response {
    ok_json(json!({"model_stats": entries}))
}

async fn all_stats(State(app): Shared) -> Response {
    let deployments = app.state.deployments.load();
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

async fn model_stats(State(app): Shared, Path(name): Path<String>) -> Response {
    match find(&app, &name) {
        Ok(d) => stats_answer(
            d.loaded()
                .into_iter()
                .map(|l| l.metrics.stats.json(&name, l.version))
                .collect(),
        ),
        Err(r) => refuse(r),
    }
}

async fn version_stats(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match find_deployed(&app, &name, &version) {
        Ok(l) => stats_answer(vec![l.metrics.stats.json(&name, l.version)]),
        Err(r) => refuse(r),
    }
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

async fn model_config(State(app): Shared, Path(name): Path<String>) -> Response {
    match find(&app, &name) {
        Ok(d) => config_answer(&name, &d.versions(), d.primary()),
        Err(r) => refuse(r),
    }
}

async fn version_config(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match find_deployed(&app, &name, &version) {
        Ok(l) => config_answer(&name, &[l.version], &l),
        Err(r) => refuse(r),
    }
}

/// Ready once every deployment has been loaded or has failed to: one deployment that cannot
/// load answers "not ready" on its own ready endpoint and never takes the others down.
async fn server_ready(State(app): Shared) -> Response {
    if app.state.ready.load(Ordering::SeqCst) {
        let not_ready = app.state.failed.load().len();
        ok_json(json!({"ready": true, "deployments_not_ready": not_ready}))
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the deployments are still loading",
        )
    }
}

async fn metrics(State(app): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// An answer other than success: status and message, made into a response at the end.
type Refusal = (StatusCode, String);

fn refuse((status, message): Refusal) -> Response {
    let mut r = error(status, message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
    }
    r
}

fn find(app: &App, name: &str) -> Result<Arc<Deployment>, Refusal> {
    let deployments = app.state.deployments.load();
    // The names of other deployments are not the caller's business: GET /v2/models/{m}
    // answers for a name they know, and `pilothouse deployments` lists them for operators.
    deployments.get(name).cloned().ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("no deployment named '{name}' on this server"),
        )
    })
}

fn find_version(d: &Deployment, version: &str) -> Result<Arc<Loaded>, Refusal> {
    let v: i64 = version.parse().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            format!("version '{version}' is not a number"),
        )
    })?;
    d.version(v).cloned().ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!(
                "version {v} of '{}' is not deployed; deployed versions: {:?}",
                d.name,
                d.versions()
            ),
        )
    })
}

async fn model_metadata(State(app): Shared, Path(name): Path<String>) -> Response {
    match find(&app, &name) {
        Ok(d) => ok_json(protocol::model_metadata(
            &name,
            &d.versions(),
            d.primary().model.signature(),
        )),
        Err(r) => refuse(r),
    }
}

/// The version `version` of deployment `name`, as the `/versions/{v}` endpoints address it.
fn find_deployed(app: &App, name: &str, version: &str) -> Result<Arc<Loaded>, Refusal> {
    let deployment = find(app, name)?;
    find_version(&deployment, version)
}

async fn version_metadata(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match find_deployed(&app, &name, &version) {
        Ok(l) => ok_json(protocol::model_metadata(
            &name,
            &[l.version],
            l.model.signature(),
        )),
        Err(r) => refuse(r),
    }
}

async fn model_ready(State(app): Shared, Path(name): Path<String>) -> Response {
    match find(&app, &name) {
        Ok(_) => ok_json(json!({"name": name, "ready": true})),
        Err(r) => match app.state.failed.load().get(&name) {
            Some(why) => refuse((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("deployment '{name}' is not ready: {why}"),
            )),
            None => refuse(r),
        },
    }
}

async fn version_ready(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match find_deployed(&app, &name, &version) {
        Ok(l) => ok_json(json!({"name": name, "version": l.version.to_string(), "ready": true})),
        Err(r) => refuse(r),
    }
}

async fn infer(State(app): Shared, Path(name): Path<String>, request: Request) -> Response {
    serve(app, name, None, request).await
}

async fn infer_version(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    serve(app, name, Some(version), request).await
}

struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
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
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map_or_else(new_request_id, str::to_string)
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

/// The answer when the in-flight byte budget is spent.
fn busy(app: &App) -> Refusal {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the server holds as many request bytes as it may (max_inflight_bytes = {}); retry later",
            app.in_flight.limit
        ),
    )
}

/// Reads the body within the size limit, the in-flight byte budget and the body timeout.
/// What it returns holds the body's bytes in the budget until dropped.
async fn read_body(app: &App, request: Request) -> Result<(HeaderMap, Bytes, Held<'_>), Refusal> {
    let (parts, body) = request.into_parts();
    let too_large = |size: String| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is {size}, over the server's limit of {} bytes (max_body_bytes)",
                app.max_body
            ),
        )
    };
    let busy = || busy(app);
    if let Some(v) = parts.headers.get(header::CONTENT_LENGTH) {
        match v.to_str().ok().and_then(|v| v.parse::<usize>().ok()) {
            Some(n) if n > app.max_body => return Err(too_large(format!("{n} bytes"))),
            Some(_) => {}
            None => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "Content-Length is not a number".into(),
                ))
            }
        }
    }
    // The budget grows with the bytes that arrive, never with what a header claims: a client
    // that sends headers and then nothing holds nothing.
    let mut held = app.in_flight.take(0).ok_or_else(busy)?;
    let read = async move {
        let mut body = body;
        let mut first: Option<Bytes> = None;
        let mut rest: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(too_large("larger than that, or was cut off".into()));
            };
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers
            };
            let total = first.as_ref().map_or(0, Bytes::len) + rest.len() + chunk.len();
            if total > app.max_body {
                return Err(too_large("larger than that".into()));
            }
            if !held.resize(total) {
                return Err(busy());
            }
            // One chunk (the usual case) is kept as it came; more are joined.
            match first.take() {
                None if rest.is_empty() => first = Some(chunk),
                Some(f) => {
                    rest.extend_from_slice(&f);
                    rest.extend_from_slice(&chunk);
                }
                None => rest.extend_from_slice(&chunk),
            }
        }
        Ok((first.unwrap_or_else(|| Bytes::from(rest)), held))
    };
    let mut read = std::pin::pin!(read);
    // Most bodies are already buffered when the headers are: no timer for those.
    let (bytes, held) = match futures_poll_once(read.as_mut()).await {
        Some(done) => done,
        None => match tokio::time::timeout(app.body_timeout, read).await {
            Ok(done) => done,
            Err(_) => {
                return Err((
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} ms (body_read_timeout_ms)",
                        app.body_timeout.as_millis()
                    ),
                ))
            }
        },
    }?;
    Ok((parts.headers, bytes, held))
}

/// A body sent with `Content-Encoding`, decoded off the HTTP thread; the size limit and the
/// in-flight budget apply to the decoded bytes.
async fn decode_body(
    app: &App,
    coding: &HeaderValue,
    body: Bytes,
    held: &mut Held<'_>,
) -> Result<Bytes, Refusal> {
    use encoding::DecodeError;
    let refusal = |e: DecodeError| {
        match e {
        DecodeError::Unsupported(c) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding '{c}' is not supported; send gzip, deflate or identity"),
        ),
        DecodeError::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the decompressed request body is over the server's limit of {} bytes (max_body_bytes)",
                app.max_body
            ),
        ),
        DecodeError::Corrupt(m) => (StatusCode::BAD_REQUEST, m),
    }
    };
    let coding = match encoding::content_coding(coding.to_str().unwrap_or("(not text)")) {
        Ok(None) => return Ok(body),
        Ok(Some(c)) => c,
        Err(e) => return Err(refusal(e)),
    };
    // Decoding may take up to the limit before it knows the size: hold that much meanwhile.
    if !held.resize(body.len().saturating_add(app.max_body)) {
        return Err(busy(app));
    }
    let limit = app.max_body;
    let decoded = tokio::task::spawn_blocking(move || encoding::decode(coding, &body, limit))
        .await
        .map_err(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request body could not be decompressed".to_string(),
            )
        })?
        .map_err(refusal)?;
    if !held.resize(decoded.len()) {
        return Err(busy(app));
    }
    Ok(Bytes::from(decoded))
}

/// Polls a future once: its output if it is ready now, else None (it can be polled again).
async fn futures_poll_once<F: std::future::Future + Unpin>(fut: F) -> Option<F::Output> {
    let mut fut = Some(fut);
    std::future::poll_fn(move |cx| {
        let f = fut.as_mut().expect("polled once");
        std::task::Poll::Ready(match std::pin::Pin::new(f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// Where a request's time went, for the response, metrics and the log.
struct Outcome {
    status: StatusCode,
    queue: Duration,
    inference: Duration,
    batch_rows: usize,
    outputs: Option<Arc<Vec<OwnedTensor>>>,
    error: Option<String>,
}

async fn serve(app: Arc<App>, name: String, version: Option<String>, request: Request) -> Response {
    let arrived = Instant::now();
    let time_us = crate::now_us();
    let id = request_id(request.headers());
    let deployment = match find(&app, &name) {
        Ok(d) => d,
        Err(r) => {
            count(&app.metrics, "", "", 404);
            return with_ids(refuse(r), &id, None, None);
        }
    };
    // Under log_overflow = "block", nothing is answered that the log could not keep.
    if let Err(message) = app.log.admit() {
        count(&app.metrics, &name, "", 503);
        return with_ids(
            refuse((StatusCode::SERVICE_UNAVAILABLE, message)),
            &id,
            None,
            None,
        );
    }
    deployment.in_flight.inc();
    let _guard = InFlight(deployment.in_flight.clone());
    let (loaded, route) = match &version {
        Some(v) => match find_version(&deployment, v) {
            Ok(l) => (l, Arc::<str>::from(format!("v{}", v))),
            Err(r) => {
                count(&app.metrics, &name, "", r.0.as_u16());
                return with_ids(refuse(r), &id, None, None);
            }
        },
        None => {
            let sticky = deployment
                .spec
                .sticky_header
                .as_ref()
                .and_then(|h| request.headers().get(h.as_str()))
                .map(|v| v.as_bytes().to_vec());
            let r = deployment.pick(sticky.as_deref());
            (r.loaded.clone(), r.label.clone())
        }
    };
    let fail = |status: StatusCode, message: String| {
        count(
            &app.metrics,
            &name,
            &loaded.version.to_string(),
            status.as_u16(),
        );
        with_ids(
            refuse((status, message)),
            &id,
            Some(loaded.version),
            Some(&route),
        )
    };
    let (headers, body, mut held) = match read_body(&app, request).await {
        Ok(b) => b,
        Err((status, message)) => return fail(status, message),
    };
    let body = match headers.get(header::CONTENT_ENCODING) {
        None => body,
        Some(coding) => match decode_body(&app, coding, body, &mut held).await {
            Ok(b) => b,
            Err((status, message)) => return fail(status, message),
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
            return fail(
                StatusCode::BAD_REQUEST,
                "Inference-Header-Content-Length is not a number".into(),
            )
        }
    };
    let parsed = if body.len() > 256 * 1024 {
        let body = body.clone();
        tokio::task::spawn_blocking(move || protocol::parse_request(&body, header_length))
            .await
            .unwrap_or_else(|_| {
                Err(protocol::BadRequest(
                    "the request could not be decoded".into(),
                ))
            })
    } else {
        protocol::parse_request(&body, header_length)
    };
    let request = match parsed {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e.0),
    };
    let shadow_inputs = deployment.shadow.as_ref().map(|_| request.inputs.clone());
    let mut request = request;
    let (outcome, inputs) = run(&loaded, &deployment, &mut request).await;
    let latency = arrived.elapsed();
    let status = outcome.status;
    let response = if status == StatusCode::OK {
        loaded.metrics.ok.inc();
        let outputs = outcome.outputs.as_ref().expect("set on success");
        let encoded = protocol::encode_response(
            &name,
            loaded.version,
            request.id.as_deref(),
            loaded.model.signature(),
            outputs,
            &request,
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
        with_ids(response, &id, Some(loaded.version), Some(&route))
    } else {
        fail(status, outcome.error.clone().unwrap_or_default())
    };
    deployment.request_seconds.observe(latency.as_secs_f64());
    loaded
        .metrics
        .stats
        .answered(status == StatusCode::OK, latency);
    app.log.send(Record {
        deployment: deployment.name.clone(),
        request_id: id.clone(),
        time_us,
        model: loaded.model_name.clone(),
        version: loaded.version,
        role: "primary",
        route: route.clone(),
        status: status.as_u16(),
        latency,
        queue: outcome.queue,
        inference: outcome.inference,
        batch_rows: outcome.batch_rows,
        input_names: loaded.input_names.clone(),
        inputs,
        output_names: loaded.output_names.clone(),
        outputs: outcome.outputs,
        error: outcome.error,
    });
    if let (Some((shadow, label)), Some(inputs), true, true) = (
        &deployment.shadow,
        shadow_inputs,
        status == StatusCode::OK,
        app.log.admit().is_ok(),
    ) {
        shadow_run(
            app.clone(),
            deployment.clone(),
            shadow.clone(),
            label.clone(),
            id,
            time_us,
            inputs,
        );
    }
    response
}

fn count(metrics: &Metrics, deployment: &str, version: &str, status: u16) {
    metrics
        .requests
        .get_or_create(&RequestLabels {
            deployment: deployment.into(),
            version: version.into(),
            status: status.to_string(),
        })
        .inc();
}

/// Validates `request` against `loaded`, queues its inputs and waits for the answer. The
/// inputs (in the model's order) come back for the log once they were accepted.
async fn run(
    loaded: &Arc<Loaded>,
    deployment: &Deployment,
    request: &mut InferRequest,
) -> (Outcome, Option<Arc<Vec<OwnedTensor>>>) {
    let failed = |status: StatusCode, message: String| Outcome {
        status,
        queue: Duration::ZERO,
        inference: Duration::ZERO,
        batch_rows: 0,
        outputs: None,
        error: Some(message),
    };
    let signature = loaded.model.signature();
    if let Err(e) = protocol::check_inputs(&request.inputs, signature)
        .and_then(|_| protocol::check_outputs(&request.outputs, signature))
    {
        return (failed(StatusCode::BAD_REQUEST, e.0), None);
    }
    // Model input order (check_inputs made sure each input is there exactly once).
    request
        .inputs
        .sort_by_key(|(n, _)| signature.inputs.iter().position(|s| &s.name == n));
    let rows = request.inputs[0].1.shape.first().copied().unwrap_or(1);
    if request
        .inputs
        .iter()
        .any(|(_, t)| t.shape.first().copied().unwrap_or(1) != rows)
    {
        return (
            failed(
                StatusCode::BAD_REQUEST,
                "the inputs disagree on the number of rows (their first dimension)".into(),
            ),
            None,
        );
    }
    let timeout = request.timeout_us.map_or(deployment.timeout, |us| {
        Duration::from_micros(us).min(deployment.timeout)
    });
    // The timeout is bounded by the deployment spec's validation; checked all the same.
    let now = Instant::now();
    let deadline = now.checked_add(timeout).unwrap_or(now);
    let inputs: Arc<Vec<OwnedTensor>> = Arc::new(
        std::mem::take(&mut request.inputs)
            .into_iter()
            .map(|(_, t)| t)
            .collect(),
    );
    let Ok(receiver) = loaded.batcher.submit(inputs.clone(), rows, deadline) else {
        let message = format!(
            "deployment '{}' is at capacity ({} requests queued for version {}); retry later",
            deployment.name, loaded.batcher.capacity, loaded.version
        );
        return (
            failed(StatusCode::SERVICE_UNAVAILABLE, message),
            Some(inputs),
        );
    };
    let outcome = match tokio::time::timeout_at(deadline.into(), receiver).await {
        Ok(Ok(Ok(done))) => Outcome {
            status: StatusCode::OK,
            queue: done.queue,
            inference: done.inference,
            batch_rows: done.batch_rows,
            outputs: Some(done.outputs),
            error: None,
        },
        Ok(Ok(Err(JobError::Timeout))) | Err(_) => failed(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within {} ms (timeout_ms of deployment '{}', or the request's timeout parameter)", timeout.as_millis(), deployment.name),
        ),
        Ok(Ok(Err(JobError::Inference(m)))) => failed(StatusCode::INTERNAL_SERVER_ERROR, m),
        Ok(Err(_)) => failed(StatusCode::SERVICE_UNAVAILABLE, "the version was unloaded before the request ran; retry".into()),
    };
    (outcome, Some(inputs))
}

/// Runs a copy of the request on the shadow version, off the response path, and logs it.
fn shadow_run(
    app: Arc<App>,
    deployment: Arc<Deployment>,
    shadow: Arc<Loaded>,
    label: Arc<str>,
    id: String,
    time_us: i64,
    inputs: Vec<(String, OwnedTensor)>,
) {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut request = InferRequest {
            id: None,
            inputs,
            outputs: None,
            binary_outputs: false,
            timeout_us: None,
        };
        let (outcome, inputs) = run(&shadow, &deployment, &mut request).await;
        if outcome.status != StatusCode::OK {
            app.metrics
                .shadow_dropped
                .get_or_create(&crate::metrics::DeploymentLabels {
                    deployment: deployment.name.to_string(),
                })
                .inc();
        }
        app.log.send(Record {
            deployment: deployment.name.clone(),
            request_id: id,
            time_us,
            model: shadow.model_name.clone(),
            version: shadow.version,
            role: "shadow",
            route: label,
            status: outcome.status.as_u16(),
            latency: started.elapsed(),
            queue: outcome.queue,
            inference: outcome.inference,
            batch_rows: outcome.batch_rows,
            input_names: shadow.input_names.clone(),
            inputs,
            output_names: shadow.output_names.clone(),
            outputs: outcome.outputs,
            error: outcome.error,
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: Method, uri: &str) -> Option<String> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        infer_target(&request)
    }

    #[test]
    fn only_plain_inference_requests_skip_the_router() {
        assert_eq!(
            target(Method::POST, "/v2/models/churn/infer"),
            Some("churn".into())
        );
        assert_eq!(
            target(Method::POST, "/v2/models/churn-v.2_x/infer?x=1"),
            Some("churn-v.2_x".into())
        );
        for (method, uri) in [
            (Method::GET, "/v2/models/churn/infer"),
            (Method::PUT, "/v2/models/churn/infer"),
            (Method::POST, "/v2/models/churn/versions/2/infer"),
            (Method::POST, "/v2/models/ch%20urn/infer"),
            (Method::POST, "/v2/models//infer"),
            (Method::POST, "/v2/models/churn/infer/"),
            (Method::POST, "/v2/models/churn"),
            (Method::POST, "/v2/models/infer"),
            (Method::POST, "/v3/models/churn/infer"),
        ] {
            assert_eq!(target(method.clone(), uri), None, "{method} {uri}");
        }
    }
}
