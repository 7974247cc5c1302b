//! The one interface every backend implements: an OpenAI-shaped call in, an
//! OpenAI-shaped answer (a JSON body or a stream of chunks) out.
//!
//! Local models implement it in `bantam-server` (they need the engine pool and the
//! request validation); OpenAI-compatible upstreams in [`crate::upstream`].

use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::Stream;
use serde_json::Value;

use crate::config::BackendConfig;
use crate::error::BackendError;

/// Which endpoint a call is for: OpenAI's chat and completions, or one of Bantam's
/// task endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
    /// `/v1/classify` (a `ClassifyRequest` body).
    Classify,
    /// `/v1/extract` (an `ExtractRequest` body).
    Extract,
    /// `/v1/summarize` (a `SummarizeRequest` body).
    Summarize,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Chat,
        Endpoint::Completions,
        Endpoint::Classify,
        Endpoint::Extract,
        Endpoint::Summarize,
    ];

    /// `chat`, `completions`, `classify`, `extract` or `summarize` (as in rules and
    /// the ledger).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Classify => "classify",
            Endpoint::Extract => "extract",
            Endpoint::Summarize => "summarize",
        }
    }

    /// The endpoint named `s` (see [`Endpoint::as_str`]).
    pub fn parse(s: &str) -> Option<Endpoint> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The path below the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Classify => "/classify",
            Endpoint::Extract => "/extract",
            Endpoint::Summarize => "/summarize",
        }
    }

    /// One of Bantam's task endpoints (never streamed; an OpenAI-compatible upstream
    /// answers them through chat completions).
    pub fn is_task(self) -> bool {
        matches!(
            self,
            Endpoint::Classify | Endpoint::Extract | Endpoint::Summarize
        )
    }
}

/// One call to one backend.
#[derive(Debug, Clone)]
pub struct Call {
    /// Endpoint.
    pub endpoint: Endpoint,
    /// The client's JSON body, `model` replaced by the backend's model; a streaming
    /// call always asks for the usage chunk (the router removes it again when the
    /// client did not ask for it).
    pub body: Value,
    /// `"stream": true`.
    pub stream: bool,
}

/// Chunks of a streamed answer (`chat.completion.chunk` or `text_completion` objects).
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value, BackendError>> + Send>>;

/// A backend's answer.
pub enum Reply {
    /// A complete JSON body.
    Full(Value),
    /// A stream of chunks.
    Stream(ChunkStream),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Full(v) => f.debug_tuple("Full").field(v).finish(),
            Reply::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// A model that answers OpenAI calls.
pub trait Backend: Send + Sync {
    /// Its configuration (name, kind, price, retries, breaker).
    fn config(&self) -> &BackendConfig;

    /// Answer one call. Errors before the first chunk are returned here; a stream may
    /// still end with an error item.
    fn call(&self, call: Call) -> BoxFuture<'_, Result<Reply, BackendError>>;
}

/// Makes local backends and embedders (implemented above this crate, where the
/// engine and the store are).
pub trait LocalFactory: Send + Sync {
    /// A backend running `cfg.model` from the local store.
    fn local(&self, cfg: BackendConfig) -> Arc<dyn Backend>;

    /// An embedding model from the local store (for `learned` routes).
    fn embedder(&self, model: &str) -> Result<Arc<dyn crate::learned::Embed>, String> {
        Err(format!("no embedding model {model:?} available here"))
    }
}

/// Token counts of an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
    /// The backend reported no usage; the counts are estimates (characters / 4).
    pub estimated: bool,
    /// Engine time a Bantam backend attributed to the answer (`usage.compute_ms`),
    /// in microseconds: what `per_second` prices charge; wall-clock time otherwise.
    pub compute_us: Option<u64>,
}

impl Tokens {
    /// From an OpenAI `usage` object, or a task endpoint's (whose `prompt_tokens`
    /// leaves out `cached_tokens` and the classifier's `label_tokens`: every token
    /// but the completion's is input here, as OpenAI counts cached prompt tokens).
    pub fn from_usage(u: &Value) -> Option<Self> {
        let mut p = u.get("prompt_tokens")?.as_u64()?;
        let c = u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if u.get("cached_tokens").is_some() {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            p += n("cached_tokens") + n("label_tokens");
        }
        let compute_us = u
            .get("compute_ms")
            .and_then(Value::as_f64)
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map(|ms| (ms * 1e3).round() as u64);
        Some(Self {
            prompt: p,
            completion: c,
            estimated: false,
            compute_us,
        })
    }
}

/// Text of an answer's choices (for token estimates when a backend reports no usage).
pub fn answer_chars(body: &Value) -> usize {
    let Some(choices) = body.get("choices").and_then(Value::as_array) else {
        return task_answer_chars(body);
    };
    choices
        .iter()
        .map(|c| {
            let s = |v: Option<&Value>| v.and_then(Value::as_str).map_or(0, |t| t.chars().count());
            s(c.get("text"))
                + s(c.pointer("/message/content"))
                + s(c.pointer("/delta/content"))
                + c.pointer("/message/tool_calls")
                    .or_else(|| c.pointer("/delta/tool_calls"))
                    .map_or(0, |t| t.to_string().len())
        })
        .sum()
}

/// Characters of a task endpoint's answer: the summary, the extracted object, or
/// the chosen labels.
fn task_answer_chars(body: &Value) -> usize {
    match body.get("object").and_then(Value::as_str) {
        Some("summary") => body
            .get("summary")
            .and_then(Value::as_str)
            .map_or(0, |t| t.chars().count()),
        Some("extraction") => body.get("data").map_or(0, |d| d.to_string().len()),
        Some("list") => body
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("label").and_then(Value::as_str))
            .map(|l| l.chars().count())
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_usage_counts_cached_and_label_tokens_as_input() {
        let chat = json!({"prompt_tokens": 49, "completion_tokens": 1,
                          "prompt_tokens_details": {"cached_tokens": 3}});
        assert_eq!(Tokens::from_usage(&chat).unwrap().prompt, 49);
        let task = json!({"prompt_tokens": 46, "cached_tokens": 3, "label_tokens": 2,
                          "completion_tokens": 1, "total_tokens": 52});
        let t = Tokens::from_usage(&task).unwrap();
        assert_eq!((t.prompt, t.completion, t.compute_us), (51, 1, None));
        let timed = json!({"prompt_tokens": 9, "completion_tokens": 4, "compute_ms": 12.5});
        assert_eq!(Tokens::from_usage(&timed).unwrap().compute_us, Some(12_500));
        let summary = json!({"object": "summary", "summary": "Short."});
        assert_eq!(answer_chars(&summary), 6);
        let list = json!({"object": "list", "data": [{"label": "ab"}, {"label": null}]});
        assert_eq!(answer_chars(&list), 2);
    }
}
