//! The model endpoints: every body is parsed and validated once, here, into a
//! [`Request`]; the router picks a backend (a route's policy, or the model itself)
//! and the answer carries `x-bantam-*` headers saying what happened.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bantam_api::{Endpoint, Reply, Request};
use futures::StreamExt;

use super::RawBody;
use crate::error::ApiError;
use crate::state::AppState;

fn header_map(h: &HeaderMap) -> HashMap<String, String> {
    h.iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect()
}

/// Parse and validate `bytes` for `endpoint`, then route the request.
async fn handle(
    st: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let req = Request::parse(endpoint, bytes)?;
    let routed = st.router.handle(req, header_map(headers)).await?;
    Ok(respond(routed))
}

/// The HTTP response of a routed answer, with the `x-bantam-*` headers.
fn respond(routed: bantam_router::Routed) -> Response {
    let mut extra = vec![
        ("x-bantam-backend", routed.backend.clone()),
        ("x-bantam-route-reason", routed.reason.clone()),
    ];
    if let Some(r) = &routed.route {
        extra.push(("x-bantam-route", r.clone()));
    }
    if let Some(c) = routed.cost_usd {
        extra.push(("x-bantam-cost-usd", format!("{c:.10}")));
    }
    let mut resp = match routed.reply {
        Reply::Full(v) => Json(v).into_response(),
        Reply::Stream(s) => {
            // Chunks as SSE events; an error ends the stream with an error event;
            // `[DONE]` always closes it.
            let events = s
                .scan(false, |failed, item| {
                    let out = if *failed {
                        None
                    } else {
                        Some(match item {
                            Ok(v) => Event::default().data(v.to_string()),
                            Err(e) => {
                                *failed = true;
                                let err = ApiError::from(e);
                                Event::default()
                                    .data(serde_json::to_string(&err.to_body()).unwrap_or_default())
                            }
                        })
                    };
                    futures::future::ready(out)
                })
                .chain(futures::stream::once(async {
                    Event::default().data("[DONE]")
                }))
                .map(Ok::<_, std::convert::Infallible>);
            Sse::new(events).into_response()
        }
    };
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(HeaderName::from_static(k), v);
        }
    }
    resp
}

macro_rules! endpoint {
    ($(#[$doc:meta])* $name:ident, $endpoint:expr) => {
        $(#[$doc])*
        pub(crate) async fn $name(
            State(st): State<AppState>,
            headers: HeaderMap,
            RawBody(body): RawBody,
        ) -> Result<Response, ApiError> {
            handle(&st, $endpoint, &headers, &body).await
        }
    };
}

endpoint!(
    /// `POST /v1/chat/completions`.
    chat_completions,
    Endpoint::Chat
);
endpoint!(
    /// `POST /v1/completions`.
    completions,
    Endpoint::Completions
);
endpoint!(
    /// `POST /v1/embeddings`.
    embeddings,
    Endpoint::Embeddings
);
endpoint!(
    /// `POST /v1/classify`.
    classify,
    Endpoint::Classify
);
endpoint!(
    /// `POST /v1/extract`.
    extract,
    Endpoint::Extract
);
endpoint!(
    /// `POST /v1/summarize`.
    summarize,
    Endpoint::Summarize
);
