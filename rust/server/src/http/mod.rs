//! The HTTP surface: Open Inference Protocol v2 endpoints, `/metrics`, and protocol-conformant
//! `{"error": "..."}` answers for everything that goes wrong. This is the transport: routes,
//! bodies, headers and statuses; what a request does is the data plane's (`dataplane.rs`).

mod body;
mod endpoints;
mod feedback;
mod infer;
mod monitoring;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use tower::{Service, ServiceExt};

pub use body::ByteBudget;
use endpoints::*;
use infer::{infer, infer_version, serve};

use crate::error::RequestError;
use crate::serving::dataplane::DataPlane;

/// What the transport holds: the data plane, and the limits on reading bodies.
pub struct App {
    pub plane: Arc<DataPlane>,
    pub max_body: usize,
    /// How long a request's body may take to arrive once its headers have.
    pub body_timeout: Duration,
    /// Bytes of request bodies held by requests being read, queued or run.
    pub in_flight: ByteBudget,
    /// For the monitoring series and feedback.
    pub registry: Arc<pilothouse_registry::Registry>,
}

type Shared = State<Arc<App>>;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const X_MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");

const X_MODEL_ROUTE: HeaderName = HeaderName::from_static("x-model-route");

const INFERENCE_HEADER_LENGTH: HeaderName =
    HeaderName::from_static("inference-header-content-length");

/// Every failure is answered the same way: its status, the protocol's `{"error": "..."}`
/// body, and Retry-After when the same request may succeed shortly.
impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": self.message()}).to_string();
        let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        r
    }
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
        .route("/v2/models/{name}/feedback", post(feedback::feedback))
        .route(
            "/v2/models/{name}/monitoring/{kind}",
            get(monitoring::monitoring),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
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
