//! An OpenAI-compatible upstream (another Bantam, vLLM, llama-server, a hosted API).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bantam_api::error::truncate;
use bantam_api::{Backend, BackendError, Call, ChunkStream, Endpoint, Reply};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::Value;

use crate::sse::SseParser;

/// How to reach an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Backend name (in errors, headers and the ledger).
    pub name: String,
    /// Base URL up to and including `/v1`, without a trailing slash.
    pub base_url: String,
    /// API key, sent as a bearer token.
    pub api_key: Option<String>,
    /// Seconds to wait for the response headers, and at most between two streamed
    /// chunks.
    pub timeout_secs: f64,
    /// Seconds to wait for a TCP connection.
    pub connect_timeout_secs: f64,
    /// Send task requests to the upstream's own task endpoints (another Bantam)
    /// instead of translating them into chat completions.
    pub native_tasks: bool,
}

/// Longest server-sent event accepted from an upstream.
const MAX_EVENT_BYTES: usize = 16 << 20;

/// A remote backend.
#[derive(Debug, Clone)]
pub struct Upstream {
    cfg: Arc<UpstreamConfig>,
    client: reqwest::Client,
    /// Accepts `response_format` `choice` (until it rejects it once).
    choice: Arc<AtomicBool>,
}

/// Headers of an answer (names lower-cased; values that are not visible ASCII are
/// left out).
pub use bantam_api::Headers;

impl Upstream {
    /// A backend from its configuration; `Err` names what is wrong.
    pub fn new(cfg: UpstreamConfig) -> Result<Self, String> {
        let url = &cfg.base_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "backend {:?}: base URL {url:?} must start with http:// or https://",
                cfg.name
            ));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(cfg.connect_timeout_secs))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("backend {:?}: HTTP client: {e}", cfg.name))?;
        Ok(Self {
            cfg: Arc::new(UpstreamConfig {
                base_url: url.trim_end_matches('/').to_string(),
                ..cfg
            }),
            client,
            choice: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        &self.cfg.base_url
    }

    fn unreachable(&self, e: &reqwest::Error) -> BackendError {
        // reqwest's Display hides the cause ("error sending request for url …"); the
        // innermost source says what happened ("Connection refused (os error 111)").
        let mut cause = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        let backend = self.cfg.name.clone();
        if e.is_timeout() {
            return BackendError::Timeout {
                backend,
                reason: format!("timeout: {cause}"),
            };
        }
        let what = if e.is_connect() {
            "connect"
        } else if e.is_body() || e.is_decode() {
            "reading the response"
        } else {
            "request"
        };
        BackendError::Unavailable {
            backend,
            reason: format!("{what}: {cause}"),
        }
    }

    fn timeout(&self, what: &str) -> BackendError {
        BackendError::Timeout {
            backend: self.cfg.name.clone(),
            reason: format!("no {what} within {} s", self.cfg.timeout_secs),
        }
    }

    /// POST `body` to `endpoint` and read the answer: a JSON body, or the chunks of a
    /// stream when `stream`; with the response's headers (e.g. another Bantam's
    /// `x-bantam-backend` and `x-bantam-cost-usd`). Task endpoints are posted as
    /// they are (no translation into chat).
    pub async fn post(
        &self,
        endpoint: Endpoint,
        body: &Value,
        stream: bool,
    ) -> Result<(Reply, Headers), BackendError> {
        let url = format!("{}{}", self.cfg.base_url, endpoint.path());
        let mut req = self.client.post(&url).json(body);
        if let Some(k) = &self.cfg.api_key {
            req = req.bearer_auth(k);
        }
        let limit = Duration::from_secs_f64(self.cfg.timeout_secs);
        let resp = match tokio::time::timeout(limit, req.send()).await {
            Err(_) => return Err(self.timeout("response")),
            Ok(Err(e)) => return Err(self.unreachable(&e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let headers: Headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        if status >= 400 || !stream {
            let bytes = match tokio::time::timeout(limit, resp.bytes()).await {
                Err(_) => return Err(self.timeout("response body")),
                Ok(Err(e)) => return Err(self.unreachable(&e)),
                Ok(Ok(b)) => b,
            };
            let body: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(truncate(&String::from_utf8_lossy(&bytes), 500)));
            if status >= 400 {
                let mut e = BackendError::from_http(&self.cfg.name, status, body);
                if let BackendError::Overloaded {
                    retry_after_secs, ..
                } = &mut e
                {
                    *retry_after_secs =
                        header(&headers, "retry-after").and_then(|v| v.parse().ok());
                }
                return Err(e);
            }
            if !body.is_object() {
                return Err(BackendError::broken(
                    &self.cfg.name,
                    format!(
                        "the answer is not a JSON object: {}",
                        truncate(&body.to_string(), 200)
                    ),
                ));
            }
            return Ok((Reply::Full(body), headers));
        }
        Ok((Reply::Stream(self.chunks(resp, limit)), headers))
    }

    async fn run(&self, call: Call) -> Result<(Reply, Headers), BackendError> {
        let r = &call.request;
        if r.endpoint().is_task() && !self.cfg.native_tasks {
            return crate::tasks::via_chat(self, r).await;
        }
        self.post(r.endpoint(), &r.to_json(), r.stream()).await
    }

    fn chunks(&self, resp: reqwest::Response, idle: Duration) -> ChunkStream {
        struct St {
            bytes: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
            parser: SseParser,
            pending: std::collections::VecDeque<String>,
            done: bool,
            me: Upstream,
            /// When the last event (not a keep-alive comment) arrived.
            last_event: std::time::Instant,
        }
        let st = St {
            bytes: resp.bytes_stream().boxed(),
            parser: SseParser::default(),
            pending: Default::default(),
            done: false,
            me: self.clone(),
            last_event: std::time::Instant::now(),
        };
        let s = futures::stream::unfold(st, move |mut st| async move {
            loop {
                if st.done {
                    return None;
                }
                if let Some(data) = st.pending.pop_front() {
                    st.last_event = std::time::Instant::now();
                    if data.trim() == "[DONE]" {
                        return None;
                    }
                    let item = match serde_json::from_str::<Value>(&data) {
                        Ok(v) if v.get("error").is_some() => {
                            st.done = true;
                            Err(BackendError::from_http(&st.me.cfg.name, 502, v))
                        }
                        Ok(v) => Ok(v),
                        Err(e) => {
                            st.done = true;
                            Err(BackendError::Broken {
                                backend: st.me.cfg.name.clone(),
                                reason: format!("bad chunk ({e}): {}", truncate(&data, 200)),
                            })
                        }
                    };
                    return Some((item, st));
                }
                match tokio::time::timeout(idle, st.bytes.next()).await {
                    Err(_) => {
                        st.done = true;
                        let e = BackendError::Broken {
                            backend: st.me.cfg.name.clone(),
                            reason: format!("no data for {} s", idle.as_secs_f64()),
                        };
                        return Some((Err(e), st));
                    }
                    Ok(Some(Ok(b))) => {
                        let evs = st.parser.push(&b);
                        st.pending.extend(evs);
                        // Bytes are not progress: an upstream sending only
                        // keep-alive comments, or one endless line, is cut off.
                        let stalled = st.pending.is_empty() && st.last_event.elapsed() > idle;
                        let bloated = st.parser.pending() > MAX_EVENT_BYTES;
                        if stalled || bloated {
                            st.done = true;
                            let reason = if bloated {
                                format!("an event longer than {} MiB", MAX_EVENT_BYTES >> 20)
                            } else {
                                format!(
                                    "no event for {} s (only keep-alive comments)",
                                    idle.as_secs_f64()
                                )
                            };
                            let e = BackendError::Broken {
                                backend: st.me.cfg.name.clone(),
                                reason,
                            };
                            return Some((Err(e), st));
                        }
                    }
                    Ok(Some(Err(e))) => {
                        st.done = true;
                        let e = BackendError::Broken {
                            backend: st.me.cfg.name.clone(),
                            reason: st.me.unreachable(&e).message().to_string(),
                        };
                        return Some((Err(e), st));
                    }
                    Ok(None) => {
                        st.pending.extend(st.parser.finish());
                        if st.pending.is_empty() {
                            // Ended without [DONE]: the upstream went away.
                            st.done = true;
                            let e = BackendError::Broken {
                                backend: st.me.cfg.name.clone(),
                                reason: "the connection closed before [DONE]".into(),
                            };
                            return Some((Err(e), st));
                        }
                        st.pending.push_back("[DONE]".into());
                    }
                }
            }
        });
        Box::pin(s)
    }
}

impl Backend for Upstream {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn call(&self, call: Call) -> BoxFuture<'_, Result<Reply, BackendError>> {
        Box::pin(async move { self.run(call).await.map(|(r, _)| r) })
    }

    fn call_with_headers(
        &self,
        call: Call,
    ) -> BoxFuture<'_, Result<(Reply, Headers), BackendError>> {
        Box::pin(self.run(call))
    }
}

impl crate::tasks::ChatCall for Upstream {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn chat(&self, body: Value) -> BoxFuture<'_, Result<(Value, Headers), BackendError>> {
        Box::pin(async move {
            match self.post(Endpoint::Chat, &body, false).await? {
                (Reply::Full(v), h) => Ok((v, h)),
                (Reply::Stream(_), _) => Err(BackendError::broken(
                    &self.cfg.name,
                    "streamed answer to a non-streaming request",
                )),
            }
        })
    }

    fn choice_flag(&self) -> &AtomicBool {
        &self.choice
    }
}

/// A header's value (names are lower-case).
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
