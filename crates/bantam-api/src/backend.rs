//! The one interface every backend implements: a validated [`Request`] in, an
//! OpenAI-shaped answer (a JSON body or a stream of chunks) out.
//!
//! Local models implement it in `bantam-local` (over the engine pool), OpenAI-
//! compatible servers in `bantam-upstream`; the router and `bantam eval` call both
//! the same way.

use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::Stream;
use serde_json::Value;

use crate::error::BackendError;
use crate::features::Embed;
use crate::request::Request;

/// One call to one backend: the request, its `model` already the backend's own
/// name for the model. A streaming chat or completion call asks for the usage chunk
/// (the router removes it again when the client did not).
#[derive(Debug, Clone)]
pub struct Call {
    /// The validated request.
    pub request: Request,
}

impl Call {
    /// A call for `request`.
    pub fn new(request: Request) -> Self {
        Self { request }
    }
}

/// Chunks of a streamed answer (`chat.completion.chunk` or `text_completion`
/// objects); an error item ends the stream.
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

/// Response headers worth passing on (names lower-cased).
pub type Headers = Vec<(String, String)>;

/// A model that answers requests.
pub trait Backend: Send + Sync {
    /// Its name (in errors, headers and the ledger).
    fn name(&self) -> &str;

    /// Answer one call. Errors before the first chunk are returned here; a stream may
    /// still end with an error item.
    fn call(&self, call: Call) -> BoxFuture<'_, Result<Reply, BackendError>>;

    /// Response headers of the last answer worth keeping (another Bantam's
    /// `x-bantam-*`), for callers that report where an answer came from; most
    /// backends have none.
    fn call_with_headers(
        &self,
        call: Call,
    ) -> BoxFuture<'_, Result<(Reply, Headers), BackendError>> {
        Box::pin(async move { self.call(call).await.map(|r| (r, Vec::new())) })
    }
}

/// Makes local backends and featurisers (implemented by `bantam-local`, where the
/// engine and the store are; the router only knows this trait).
pub trait LocalFactory: Send + Sync {
    /// A backend named `name` running the store's model `model`.
    fn local(&self, name: &str, model: &str) -> Arc<dyn Backend>;

    /// The featuriser a learned route was trained with (`hashed-ngrams`,
    /// `static:MODEL`, or an embedding model `MODEL`).
    fn featuriser(&self, name: &str) -> Result<Arc<dyn Embed>, String> {
        if name == crate::features::HASHED_NGRAMS {
            return Ok(Arc::new(crate::features::HashedNgrams));
        }
        Err(format!("no embedding model {name:?} available here"))
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

/// Characters of an answer (for token estimates when a backend reports no usage):
/// every choice's text and tool calls, or a task's summary, object or labels.
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
