//! Request bodies: read within the size limit, the body timeout and the in-flight byte
//! budget (grown as bytes arrive), and decompressed when they are gzip or deflate.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use http_body_util::BodyExt;

use super::App;
use crate::encoding;
use crate::error::RequestError;

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
pub(super) struct Held<'a> {
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

/// The answer when the in-flight byte budget is spent.
fn busy(app: &App) -> RequestError {
    RequestError::Unavailable(format!(
        "the server holds as many request bytes as it may (max_inflight_bytes = {}); retry later",
        app.in_flight.limit
    ))
}

/// Reads the body within the size limit, the in-flight byte budget and the body timeout.
/// What it returns holds the body's bytes in the budget until dropped.
pub(super) async fn read_body(
    app: &App,
    request: Request,
) -> Result<(HeaderMap, Bytes, Held<'_>), RequestError> {
    let (parts, body) = request.into_parts();
    let too_large = |size: String| {
        RequestError::TooLarge(format!(
            "the request body is {size}, over the server's limit of {} bytes (max_body_bytes)",
            app.max_body
        ))
    };
    let busy = || busy(app);
    if let Some(v) = parts.headers.get(header::CONTENT_LENGTH) {
        match v.to_str().ok().and_then(|v| v.parse::<usize>().ok()) {
            Some(n) if n > app.max_body => return Err(too_large(format!("{n} bytes"))),
            Some(_) => {}
            None => {
                return Err(RequestError::BadRequest(
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
                return Err(RequestError::BodyTimeout(format!(
                    "the request body did not arrive within {} ms (body_read_timeout_ms)",
                    app.body_timeout.as_millis()
                )))
            }
        },
    }?;
    Ok((parts.headers, bytes, held))
}

/// A body sent with `Content-Encoding`, decoded off the HTTP thread; the size limit and the
/// in-flight budget apply to the decoded bytes.
pub(super) async fn decode_body(
    app: &App,
    coding: &HeaderValue,
    body: Bytes,
    held: &mut Held<'_>,
) -> Result<Bytes, RequestError> {
    use encoding::DecodeError;
    let refusal = |e: DecodeError| match e {
        DecodeError::Unsupported(c) => RequestError::UnsupportedEncoding(format!(
            "Content-Encoding '{c}' is not supported; send gzip, deflate or identity"
        )),
        DecodeError::TooLarge => RequestError::TooLarge(format!(
            "the decompressed request body is over the server's limit of {} bytes (max_body_bytes)",
            app.max_body
        )),
        DecodeError::Corrupt(m) => RequestError::BadRequest(m),
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
            RequestError::Inference("the request body could not be decompressed".to_string())
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
