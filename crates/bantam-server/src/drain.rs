//! Graceful shutdown that does not cut streams.
//!
//! hyper's graceful connection shutdown treats an HTTP/1 connection whose streamed
//! response body is momentarily pending (waiting for the next token) as idle and
//! closes it. So Bantam drains its own requests first: [`track`] counts every
//! request until its response body has been sent (or dropped), and once draining
//! starts answers new requests with 503. Only when the count reaches zero is axum
//! told to shut down, and by then every connection really is idle.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::error::ApiError;
use crate::state::AppState;

/// In-flight requests and whether the server is draining.
#[derive(Debug, Default)]
pub struct Drain {
    inflight: AtomicUsize,
    draining: AtomicBool,
}

/// Decrements the in-flight count when dropped.
/// A request in flight, for the server and for its connection.
struct Guard(Arc<Drain>, Option<Arc<AtomicUsize>>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
        if let Some(c) = &self.1 {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drain {
    /// Stop taking requests.
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Requests whose response has not been fully sent.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Wait until no request is in flight, at most `grace`. Returns false on timeout.
    pub async fn wait_idle(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        while self.inflight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// Middleware: count the request until its body is done; refuse new work while draining.
pub(crate) async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let drain = st.drain.clone();
    if drain.draining.load(Ordering::SeqCst) {
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            None,
            Some("shutting_down"),
            "the server is shutting down; retry against another instance",
        )
        .into_response();
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return r;
    }
    drain.inflight.fetch_add(1, Ordering::SeqCst);
    // The connection's own count: an idle-connection timeout never cuts a request.
    let conn = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::conn::ConnMeta>>()
        .map(|c| c.0.busy.clone());
    if let Some(c) = &conn {
        c.fetch_add(1, Ordering::SeqCst);
    }
    let guard = Guard(drain, conn);
    let (parts, body) = next.run(req).await.into_parts();
    // The guard lives as long as the body stream: until the last byte or a disconnect.
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _ = &guard;
        chunk
    }));
    Response::from_parts(parts, body)
}
