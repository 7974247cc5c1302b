//! An OpenAI-compatible upstream (another Bantam, vLLM, llama-server, a hosted API).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::Value;

use crate::backend::{Backend, Call, ChunkStream, Reply};
use crate::config::{BackendConfig, TaskApi};
use crate::error::{truncate, BackendError, ConfigError};
use crate::sse::SseParser;

/// A remote backend.
#[derive(Debug, Clone)]
pub struct Upstream {
    cfg: BackendConfig,
    base: String,
    key: Option<String>,
    client: reqwest::Client,
    /// Accepts `response_format` `choice` (until it rejects it once).
    choice: Arc<AtomicBool>,
}

impl Upstream {
    /// A backend from its configuration; the base URL and the key are read through
    /// `env` now (a missing variable is an error that names it).
    pub fn new(
        cfg: BackendConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let base = cfg.resolve_base_url(env)?;
        let key = match &cfg.api_key_env {
            Some(var) => Some(env(var).filter(|k| !k.is_empty()).ok_or_else(|| {
                ConfigError(format!(
                    "backend {:?}: environment variable {var} (its API key) is not set",
                    cfg.name
                ))
            })?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(cfg.connect_timeout_secs))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ConfigError(format!("backend {:?}: HTTP client: {e}", cfg.name)))?;
        Ok(Self {
            cfg,
            base,
            key,
            client,
            choice: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        &self.base
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
        let what = if e.is_connect() {
            "connect"
        } else if e.is_timeout() {
            "timeout"
        } else if e.is_body() || e.is_decode() {
            "reading the response"
        } else {
            "request"
        };
        BackendError::Unreachable {
            backend: self.cfg.name.clone(),
            reason: format!("{what}: {cause}"),
            timeout: e.is_timeout(),
        }
    }

    fn timeout(&self, what: &str) -> BackendError {
        BackendError::Unreachable {
            backend: self.cfg.name.clone(),
            reason: format!("no {what} within {} s", self.cfg.timeout_secs),
            timeout: true,
        }
    }

    async fn run(&self, call: Call) -> Result<Reply, BackendError> {
        self.call_with_headers(call).await.map(|(reply, _)| reply)
    }

    /// Like [`Backend::call`], also returning the response's headers (names
    /// lower-cased; values that are not visible ASCII are left out), e.g. another
    /// Bantam's `x-bantam-backend` and `x-bantam-cost-usd`. Task endpoints are sent
    /// as they are (no translation into chat).
    pub async fn call_with_headers(
        &self,
        call: Call,
    ) -> Result<(Reply, HashMap<String, String>), BackendError> {
        let url = format!("{}{}", self.base, call.endpoint.path());
        let mut req = self.client.post(&url).json(&call.body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let limit = Duration::from_secs_f64(self.cfg.timeout_secs);
        let resp = match tokio::time::timeout(limit, req.send()).await {
            Err(_) => return Err(self.timeout("response")),
            Ok(Err(e)) => return Err(self.unreachable(&e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let headers: HashMap<String, String> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        if status >= 400 || !call.stream {
            let bytes = match tokio::time::timeout(limit, resp.bytes()).await {
                Err(_) => return Err(self.timeout("response body")),
                Ok(Err(e)) => return Err(self.unreachable(&e)),
                Ok(Ok(b)) => b,
            };
            let body: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(truncate(&String::from_utf8_lossy(&bytes), 500)));
            if status >= 400 {
                return Err(BackendError::status(&self.cfg.name, status, body));
            }
            if !body.is_object() {
                return Err(BackendError::status(&self.cfg.name, 502, body));
            }
            return Ok((Reply::Full(body), headers));
        }
        Ok((Reply::Stream(self.chunks(resp, limit)), headers))
    }

    fn chunks(&self, resp: reqwest::Response, idle: Duration) -> ChunkStream {
        struct St {
            bytes: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
            parser: SseParser,
            pending: std::collections::VecDeque<String>,
            done: bool,
            me: Upstream,
        }
        let st = St {
            bytes: resp.bytes_stream().boxed(),
            parser: SseParser::default(),
            pending: Default::default(),
            done: false,
            me: self.clone(),
        };
        let s = futures::stream::unfold(st, move |mut st| async move {
            loop {
                if st.done {
                    return None;
                }
                if let Some(data) = st.pending.pop_front() {
                    if data.trim() == "[DONE]" {
                        return None;
                    }
                    let item = match serde_json::from_str::<Value>(&data) {
                        Ok(v) if v.get("error").is_some() => {
                            st.done = true;
                            Err(BackendError::status(&st.me.cfg.name, 502, v))
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
                    }
                    Ok(Some(Err(e))) => {
                        st.done = true;
                        let e = BackendError::Broken {
                            backend: st.me.cfg.name.clone(),
                            reason: st.me.unreachable(&e).to_string(),
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
    fn config(&self) -> &BackendConfig {
        &self.cfg
    }

    fn call(&self, call: Call) -> BoxFuture<'_, Result<Reply, BackendError>> {
        if call.endpoint.is_task() && self.cfg.tasks == TaskApi::Chat {
            return Box::pin(crate::tasks::via_chat(self, call));
        }
        Box::pin(self.run(call))
    }
}

impl crate::tasks::ChatCall for Upstream {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn model(&self) -> &str {
        &self.cfg.model
    }

    fn chat(&self, body: Value) -> BoxFuture<'_, Result<Value, BackendError>> {
        Box::pin(async move {
            let call = Call {
                endpoint: crate::backend::Endpoint::Chat,
                body,
                stream: false,
            };
            match self.run(call).await? {
                Reply::Full(v) => Ok(v),
                Reply::Stream(_) => Err(BackendError::Broken {
                    backend: self.cfg.name.clone(),
                    reason: "streamed answer to a non-streaming request".into(),
                }),
            }
        })
    }

    fn choice_flag(&self) -> &AtomicBool {
        &self.choice
    }
}
