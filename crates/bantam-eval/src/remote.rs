//! Eval targets: a local model, or an OpenAI-compatible API (another Bantam and its
//! routes, vLLM, llama-server, a hosted API) called through `bantam-router`'s
//! [`Upstream`] backend.
//!
//! A target is written `NAME` (a model in the local store or a `.gguf` path) or
//! `URL#MODEL`: the base URL of the API (up to and including `/v1`) and, after `#`,
//! the model or route name sent as `model`.
//!
//! Remote calls are deterministic (temperature 0, seed 0) and ask for the same kind
//! of answer as the local runner produces: one label for classification
//! (`response_format` `choice`, Bantam's extension, falling back to a `json_schema`
//! with an enum on servers that reject it), a schema-valid object for extraction
//! (`json_schema`), plain text otherwise.
//!
//! Generated answers (extraction and text) are streamed with their usage, so the
//! first content chunk is timed (`ttft_ms`); a label is one non-streamed call, not
//! timed. Against a Bantam route a streamed answer is committed to its backend once
//! it began: an object that fails its schema there is the item's error rather than
//! a fallback to the route's next backend. A Bantam server's `x-bantam-*` headers
//! say which backend answered ([`Served`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bantam_router::upstream::Upstream;
use bantam_router::{BackendConfig, BackendError, BackendKind, Call, ChunkStream, Endpoint, Reply};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::prompt::Message;

/// What a `--target` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// A model from the local store (or a `.gguf` path).
    Local(String),
    /// An OpenAI-compatible API.
    Remote {
        /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8090/v1`.
        base_url: String,
        /// The model or route name sent as `model`.
        model: String,
    },
}

/// A target that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Malformed `--target`.
    #[error("target {target:?}: {reason}")]
    Syntax {
        /// As given.
        target: String,
        /// What to write instead.
        reason: String,
    },
    /// The HTTP client could not be set up (e.g. the API key variable is not set).
    #[error("target {target:?}: {reason}")]
    Setup {
        /// As given.
        target: String,
        /// Why.
        reason: String,
    },
}

impl TargetSpec {
    /// Parse a `--target` value.
    pub fn parse(s: &str) -> Result<TargetSpec, TargetError> {
        let bad = |reason: &str| TargetError::Syntax {
            target: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty target"));
        }
        if !(t.starts_with("http://") || t.starts_with("https://")) {
            if t.contains("://") {
                return Err(bad("only http:// and https:// APIs can be targets"));
            }
            return Ok(TargetSpec::Local(t.to_string()));
        }
        let (url, model) = t.split_once('#').ok_or_else(|| {
            bad("name the model or route after `#`, e.g. http://127.0.0.1:8090/v1#auto or https://api.openai.com/v1#gpt-4o-mini")
        })?;
        let model = model.trim();
        if model.is_empty() {
            return Err(bad("the model name after `#` is empty"));
        }
        let url = url.trim_end_matches('/');
        let host = url.split_once("://").map_or("", |(_, rest)| rest);
        if host.is_empty() || host.starts_with('/') {
            return Err(bad("the URL has no host"));
        }
        if url.ends_with("/chat/completions") {
            return Err(bad(
                "give the API's base URL (ending in /v1), not the chat/completions endpoint",
            ));
        }
        Ok(TargetSpec::Remote {
            base_url: url.to_string(),
            model: model.to_string(),
        })
    }
}

/// A remote call that failed (the message names the target and the cause).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The backend failed (HTTP error, unreachable, timeout).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The answer has no usable content.
    #[error("{0}")]
    Answer(String),
}

/// One remote answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAnswer {
    /// `choices[0].message.content`.
    pub text: String,
    /// `usage.prompt_tokens` (0 when not reported).
    pub prompt_tokens: u32,
    /// `usage.completion_tokens` (0 when not reported).
    pub completion_tokens: u32,
    /// Milliseconds from sending the request to the first content chunk (streamed
    /// calls only).
    pub ttft_ms: Option<f64>,
    /// What a Bantam server said about the request (its `x-bantam-*` headers).
    pub served: Option<Served>,
}

/// How a Bantam server (a route) answered, from its response headers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    /// `x-bantam-backend`: the backend that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// `x-bantam-route-reason`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_reason: Option<String>,
    /// `x-bantam-cost-usd`: what the server charged (absent for streamed answers,
    /// whose cost is in the usage chunk: `usage.cost_usd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Served {
    /// From response headers (and a streamed answer's usage); `None` when the server
    /// is not a Bantam (no `x-bantam-backend`).
    pub fn from_headers(h: &HashMap<String, String>, usage: Option<&Value>) -> Option<Served> {
        let backend = h.get("x-bantam-backend")?.clone();
        let cost = h
            .get("x-bantam-cost-usd")
            .and_then(|c| c.parse::<f64>().ok())
            .or_else(|| {
                usage
                    .and_then(|u| u.get("cost_usd"))
                    .and_then(Value::as_f64)
            });
        Some(Served {
            backend: Some(backend),
            route_reason: h.get("x-bantam-route-reason").cloned(),
            cost_usd: cost,
        })
    }
}

/// Attempts on transient failures (connection errors, timeouts, 429, 5xx).
const ATTEMPTS: u32 = 3;

/// An OpenAI-compatible API as an eval target.
pub struct Remote {
    upstream: Upstream,
    model: String,
    /// The server accepts `response_format: {"type": "choice"}`.
    choice: AtomicBool,
    /// The server accepts `repetition_penalty`.
    repetition_penalty: AtomicBool,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("base_url", &self.upstream.base_url())
            .field("model", &self.model)
            .finish()
    }
}

impl Remote {
    /// A client for `base_url` and `model`; the API key is read from the variable
    /// `api_key_env` through `env` (an error if it is not set), else none is sent.
    /// `name` (the target as given) names it in errors.
    pub fn new(
        name: &str,
        base_url: &str,
        model: &str,
        api_key_env: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Remote, TargetError> {
        let cfg = BackendConfig {
            name: name.to_string(),
            kind: BackendKind::Openai,
            model: model.to_string(),
            base_url: Some(base_url.to_string()),
            api_key_env: api_key_env.map(str::to_string),
            // A long generation on a slow server is not a failure.
            timeout_secs: 600.0,
            connect_timeout_secs: 10.0,
            ..BackendConfig::local(model, Default::default())
        };
        let upstream = Upstream::new(cfg, env).map_err(|e| TargetError::Setup {
            target: name.to_string(),
            reason: e.0,
        })?;
        Ok(Remote {
            upstream,
            model: model.to_string(),
            choice: AtomicBool::new(true),
            repetition_penalty: AtomicBool::new(true),
        })
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        self.upstream.base_url()
    }

    /// The model or route name.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn body(&self, messages: &[Message], max_tokens: u32) -> Value {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        json!({
            "model": self.model,
            "messages": msgs,
            "temperature": 0,
            "seed": 0,
            "max_tokens": max_tokens,
        })
    }

    async fn call(&self, body: &Value) -> Result<RemoteAnswer, RemoteError> {
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let mut attempt = 0;
        let (reply, headers, t0) = loop {
            attempt += 1;
            let call = Call {
                endpoint: Endpoint::Chat,
                body: body.clone(),
                stream,
            };
            let t0 = Instant::now();
            match self.upstream.call_with_headers(call).await {
                Ok((r, h)) => break (r, h, t0),
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let v = match reply {
            Reply::Full(v) => v,
            Reply::Stream(chunks) => return self.collect(chunks, &headers, t0).await,
        };
        let choice = &v["choices"][0];
        let text = choice["message"]["content"].as_str().ok_or_else(|| {
            RemoteError::Answer(format!(
                "no message content in the answer (finish_reason {})",
                choice["finish_reason"]
            ))
        })?;
        let n = |k: &str| v["usage"][k].as_u64().map_or(0, |x| x as u32);
        Ok(RemoteAnswer {
            text: text.to_string(),
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
            ttft_ms: None,
            served: Served::from_headers(&headers, None),
        })
    }

    /// A streamed answer: the content deltas, the usage chunk, and when the first
    /// content arrived.
    async fn collect(
        &self,
        mut chunks: ChunkStream,
        headers: &HashMap<String, String>,
        t0: Instant,
    ) -> Result<RemoteAnswer, RemoteError> {
        let mut text = String::new();
        let mut ttft = None;
        let mut usage = Value::Null;
        while let Some(c) = chunks.next().await {
            let c = c.map_err(Self::in_stream)?;
            if let Some(d) = c
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
            {
                if !d.is_empty() && ttft.is_none() {
                    ttft = Some(t0.elapsed().as_secs_f64() * 1e3);
                }
                text.push_str(d);
            }
            if let Some(u) = c.get("usage").filter(|u| u.is_object()) {
                usage = u.clone();
            }
        }
        let n = |k: &str| usage[k].as_u64().map_or(0, |x| x as u32);
        Ok(RemoteAnswer {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
            text,
            ttft_ms: ttft,
            served: Served::from_headers(headers, Some(&usage)),
        })
    }

    /// An error event inside a stream. A structured output the server could not
    /// finish or validate is the item's failure (the same request fails the same
    /// way again), not the target's: the run goes on.
    fn in_stream(e: BackendError) -> RemoteError {
        match &e {
            BackendError::Status { code: Some(c), .. } if c.starts_with("structured_output") => {
                RemoteError::Answer(e.to_string())
            }
            _ => RemoteError::Backend(e),
        }
    }

    /// Ask for a streamed answer with its usage (to time the first token).
    fn streamed(body: &mut Value) {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }

    /// A 400 that rejects the request field `field` (an extension the server does
    /// not know).
    fn rejects(e: &RemoteError, field: &str) -> bool {
        match e {
            RemoteError::Backend(BackendError::Status {
                status: 400 | 422,
                message,
                body,
                ..
            }) => {
                let param = body["error"]["param"].as_str().unwrap_or("");
                param.starts_with(field) || message.contains(field)
            }
            _ => false,
        }
    }

    /// Plain chat, streamed (so the first token is timed); `repetition_penalty`
    /// (Bantam's, vLLM's extension) is dropped for the rest of the run if the server
    /// rejects it.
    pub async fn chat(
        &self,
        messages: &[Message],
        max_tokens: u32,
        repetition_penalty: Option<f32>,
    ) -> Result<RemoteAnswer, RemoteError> {
        let mut body = self.body(messages, max_tokens);
        Self::streamed(&mut body);
        let penalty = repetition_penalty.filter(|p| *p != 1.0);
        if let Some(p) = penalty.filter(|_| self.repetition_penalty.load(Ordering::Relaxed)) {
            body["repetition_penalty"] = json!(p);
            match self.call(&body).await {
                Err(e) if Self::rejects(&e, "repetition_penalty") => {
                    self.repetition_penalty.store(false, Ordering::Relaxed);
                    if let Some(o) = body.as_object_mut() {
                        o.remove("repetition_penalty");
                    }
                }
                other => return other,
            }
        }
        self.call(&body).await
    }

    /// Structured output, streamed (so the first token is timed): the answer is
    /// JSON valid against `schema`.
    pub async fn json(
        &self,
        messages: &[Message],
        max_tokens: u32,
        schema: &Value,
    ) -> Result<(Value, RemoteAnswer), RemoteError> {
        let mut body = self.body(messages, max_tokens);
        Self::streamed(&mut body);
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "extraction", "schema": schema},
        });
        let a = self.call(&body).await?;
        let v = serde_json::from_str(a.text.trim())
            .map_err(|e| RemoteError::Answer(format!("the answer is not JSON ({e})")))?;
        Ok((v, a))
    }

    /// One label out of `labels`: `response_format` `choice` (the bare label, as the
    /// local scorer answers), or on servers that reject it a `json_schema` object
    /// `{"label": <enum>}`.
    pub async fn label(
        &self,
        messages: &[Message],
        labels: &[String],
    ) -> Result<(String, RemoteAnswer), RemoteError> {
        let mut body = self.body(messages, 96);
        if self.choice.load(Ordering::Relaxed) {
            body["response_format"] = json!({"type": "choice", "choices": labels});
            match self.call(&body).await {
                Err(e) if Self::rejects(&e, "response_format") => {
                    self.choice.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
                Ok(a) => return Ok((a.text.trim().to_string(), a)),
            }
        }
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {
                "name": "classification",
                "strict": true,
                "schema": {
                    "type": "object",
                    "properties": {"label": {"type": "string", "enum": labels}},
                    "required": ["label"],
                    "additionalProperties": false,
                },
            },
        });
        let a = self.call(&body).await?;
        let v: Value = serde_json::from_str(a.text.trim())
            .map_err(|e| RemoteError::Answer(format!("the answer is not JSON ({e})")))?;
        let label = v["label"]
            .as_str()
            .ok_or_else(|| RemoteError::Answer(format!("no \"label\" in the answer {v}")))?;
        Ok((label.to_string(), a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_syntax() {
        assert_eq!(
            TargetSpec::parse("smollm2:135m").unwrap(),
            TargetSpec::Local("smollm2:135m".into())
        );
        assert_eq!(
            TargetSpec::parse("/models/x.gguf").unwrap(),
            TargetSpec::Local("/models/x.gguf".into())
        );
        assert_eq!(
            TargetSpec::parse("http://127.0.0.1:8090/v1/#auto").unwrap(),
            TargetSpec::Remote {
                base_url: "http://127.0.0.1:8090/v1".into(),
                model: "auto".into()
            }
        );
        assert_eq!(
            TargetSpec::parse("https://api.openai.com/v1#gpt-4o-mini").unwrap(),
            TargetSpec::Remote {
                base_url: "https://api.openai.com/v1".into(),
                model: "gpt-4o-mini".into()
            }
        );
        for (bad, why) in [
            ("http://127.0.0.1:8090/v1", "after `#`"),
            ("http://127.0.0.1:8090/v1#", "empty"),
            ("http://#m", "no host"),
            ("http://h/v1/chat/completions#m", "base URL"),
            ("ftp://h/v1#m", "http:// and https://"),
            ("  ", "empty target"),
        ] {
            let e = TargetSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn api_key_variable_must_be_set() {
        let env = |k: &str| (k == "SET").then(|| "sk-x".to_string());
        let e = Remote::new("t", "http://h/v1", "m", Some("UNSET"), &env).unwrap_err();
        assert!(e.to_string().contains("UNSET"), "{e}");
        let r = Remote::new("t", "http://h/v1", "m", Some("SET"), &env).unwrap();
        assert_eq!((r.base_url(), r.model()), ("http://h/v1", "m"));
    }

    #[test]
    fn a_failed_object_in_a_stream_is_the_items_error() {
        // As Upstream reports an error event inside a stream: status 502 with the
        // server's code.
        let event = |code: &str| {
            BackendError::status(
                "t",
                502,
                json!({"error": {"message": "output cut short", "code": code}}),
            )
        };
        let e = Remote::in_stream(event("structured_output_incomplete"));
        assert!(
            matches!(e, RemoteError::Answer(ref m) if m.contains("cut short")),
            "{e:?}"
        );
        assert!(matches!(
            Remote::in_stream(event("structured_output_invalid")),
            RemoteError::Answer(_)
        ));
        // Anything else stays the backend's (retryable: the run stops, a rerun retries).
        let e = Remote::in_stream(event("server_error"));
        assert!(
            matches!(&e, RemoteError::Backend(b) if b.retryable()),
            "{e:?}"
        );
    }

    #[test]
    fn extension_rejections_are_recognised() {
        let e = |status, body: Value| RemoteError::Backend(BackendError::status("t", status, body));
        let bantam = e(
            400,
            json!({"error": {"message": "unknown response_format type \"choice\"", "param": "response_format"}}),
        );
        assert!(Remote::rejects(&bantam, "response_format"));
        let openai = e(
            400,
            json!({"error": {"message": "Invalid value: 'choice'.", "param": "response_format.type"}}),
        );
        assert!(Remote::rejects(&openai, "response_format"));
        let unknown = e(
            400,
            json!({"error": {"message": "Unrecognized request argument supplied: repetition_penalty", "param": null}}),
        );
        assert!(Remote::rejects(&unknown, "repetition_penalty"));
        assert!(!Remote::rejects(&unknown, "response_format"));
        // Server errors and other 4xx are not about the extension.
        assert!(!Remote::rejects(
            &e(500, json!({"error": {"message": "response_format broke"}})),
            "response_format"
        ));
        assert!(!Remote::rejects(
            &e(401, json!({"error": {"message": "bad key"}})),
            "response_format"
        ));
    }
}
