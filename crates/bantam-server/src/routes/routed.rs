//! The chat and completions handlers: every request goes through the router (a
//! route picks a backend; a plain model name is a local backend of its own), and
//! the answer carries `x-bantam-*` headers saying what happened. The task handlers
//! (`tasks.rs`) use the same [`route`] and [`respond`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bantam_engine::ModelPool;
use bantam_router::learned::Embed;
use bantam_router::{Backend, BackendConfig, Call, Endpoint, LocalFactory, Reply};
use bantam_types::openai::{ChatCompletionRequest, CompletionRequest};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{parse_json, RawBody};
use crate::error::ApiError;
use crate::state::AppState;

/// Makes local backends over the engine pool, and embedders from the store.
#[derive(Clone)]
pub(crate) struct Local {
    pub(crate) pool: Arc<ModelPool>,
    pub(crate) structured_retries: u32,
    pub(crate) store: bantam_store::Store,
    pub(crate) threads: u32,
}

impl LocalFactory for Local {
    fn local(&self, cfg: BackendConfig) -> Arc<dyn Backend> {
        Arc::new(LocalBackend {
            cfg,
            local: self.clone(),
        })
    }

    fn embedder(&self, model: &str) -> Result<Arc<dyn Embed>, String> {
        let mut last = 0;
        let mut progress = |done: usize, total: usize| {
            // A line every tenth of the vocabulary.
            if done * 10 / total.max(1) > last {
                last = done * 10 / total.max(1);
                tracing::info!(model, done, total, "distilling static token embeddings");
            }
        };
        crate::featurise::featuriser(&self.store, model, self.threads, &mut progress)
            .map_err(|e| e.to_string())
    }
}

/// A model of the local store as a backend.
struct LocalBackend {
    cfg: BackendConfig,
    local: Local,
}

fn parse<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body)
        .map_err(|e| ApiError::invalid(None, format!("invalid request: {e}")))
}

impl LocalBackend {
    async fn run(&self, call: Call) -> Result<Reply, ApiError> {
        let name = &self.cfg.name;
        match call.endpoint {
            Endpoint::Chat => {
                let req: ChatCompletionRequest = parse(call.body)?;
                super::chat::local_chat(&self.local.pool, self.local.structured_retries, name, req)
                    .await
            }
            Endpoint::Completions => {
                let req: CompletionRequest = parse(call.body)?;
                super::completions::local_completions(&self.local.pool, name, req).await
            }
            Endpoint::Classify | Endpoint::Extract | Endpoint::Summarize => {
                super::tasks::local_task(&self.local.pool, call.endpoint, call.body).await
            }
        }
    }
}

impl Backend for LocalBackend {
    fn config(&self) -> &BackendConfig {
        &self.cfg
    }

    fn call(&self, call: Call) -> BoxFuture<'_, Result<Reply, bantam_router::BackendError>> {
        Box::pin(async move {
            self.run(call)
                .await
                .map_err(|e| e.for_backend(&self.cfg.name))
        })
    }
}

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

/// Parse the body as `T` (the same 400s whichever backend answers), check `model`,
/// then route.
async fn handle<T: DeserializeOwned>(
    st: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let _: T = parse_json(bytes)?;
    let body: Value = parse_json(bytes)?;
    let routed = route(st, endpoint, headers, body).await?;
    Ok(respond(routed, |_| {}))
}

/// Route a parsed body (`model` checked here).
pub(crate) async fn route(
    st: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Value,
) -> Result<bantam_router::Routed, ApiError> {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err(ApiError::invalid(Some("model"), "model is required")),
    }
    Ok(st
        .router
        .handle(endpoint, body, header_map(headers))
        .await?)
}

/// The HTTP response of a routed answer, with the `x-bantam-*` headers; `finish`
/// may complete a full JSON answer (e.g. spans of an upstream's extraction).
pub(crate) fn respond(routed: bantam_router::Routed, finish: impl FnOnce(&mut Value)) -> Response {
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
        Reply::Full(mut v) => {
            finish(&mut v);
            Json(v).into_response()
        }
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
                                let err = ApiError::from(bantam_router::RouterError::Backend {
                                    error: e,
                                    tried: Vec::new(),
                                });
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

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    handle::<ChatCompletionRequest>(&st, Endpoint::Chat, &headers, &body).await
}

/// `POST /v1/completions`.
pub(crate) async fn completions(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    handle::<CompletionRequest>(&st, Endpoint::Completions, &headers, &body).await
}
