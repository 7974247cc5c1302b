//! Requests parsed once and validated once.
//!
//! [`Request::parse`] turns a client's body into the typed wire request
//! (`bantam_types::openai`, `bantam_types::tasks`) in one pass, then validates it into
//! one of the types here. Each keeps the wire request it was built from (so an
//! upstream receives what the client sent, unknown fields included, with only the
//! model name replaced) next to what validation derived from it: messages ready for a
//! chat template, sampling settings in range, the output constraint, the texts to
//! classify. Their fields are private and the only constructors validate, so holding
//! one means the checks ran; what can only be checked against a particular model
//! (token ids against its vocabulary, the prompt against its context) is checked by
//! the backend that runs it.

mod chat;
mod completion;
mod embed;
pub mod format;
pub mod sampling;
mod tasks;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use chat::ChatRequest;
pub use completion::CompletionRequest;
pub use embed::{EmbedInput, EmbedRequest};
pub use tasks::{ClassifyTask, ExtractTask, Scoring, SummarizeTask};

use crate::endpoint::Endpoint;

/// Why a request cannot be served as sent: the parameter to change and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// The offending parameter (`temperature`, `messages[2].role`, …).
    pub param: Option<String>,
    /// What to change.
    pub message: String,
    /// A stable machine-readable code, where there is one.
    pub code: Option<String>,
}

impl Invalid {
    /// About `param`.
    pub fn new(param: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            param: param.map(str::to_string),
            message: message.into(),
            code: None,
        }
    }

    /// About `param` (always named).
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        Self::new(Some(param), message)
    }

    /// With a code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }
}

/// Longest model (or route) name.
pub const MAX_MODEL_NAME: usize = bantam_types::limits::MAX_MODEL_NAME;

/// A model name: present, at most [`MAX_MODEL_NAME`] bytes, no control characters
/// (it ends up in logs, headers and the ledger).
pub(crate) fn check_model(model: &str) -> Result<(), Invalid> {
    if model.trim().is_empty() {
        return Err(Invalid::param("model", "model is required"));
    }
    if model.len() > MAX_MODEL_NAME {
        return Err(Invalid::param(
            "model",
            format!(
                "model names are at most {MAX_MODEL_NAME} bytes, got {}",
                model.len()
            ),
        ));
    }
    if model.chars().any(char::is_control) {
        return Err(Invalid::param(
            "model",
            "model names have no control characters",
        ));
    }
    Ok(())
}

/// Parse a JSON body as `T`; a parse error is an [`Invalid`] that points at the
/// problem (line and column, or the field and what was expected).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Invalid> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Invalid::new(
            None,
            "the request body is empty; send a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let e = e.into_inner();
        if e.is_syntax() || e.is_eof() {
            return Invalid::new(None, format!("malformed JSON: {e}"));
        }
        // `.` is the whole body (a field is missing, or the body is not an object).
        match path.as_str() {
            "." | "" => Invalid::new(None, format!("invalid request: {e}")),
            p => Invalid::param(p, format!("invalid request: {p}: {e}")),
        }
    })?;
    // Nothing but whitespace may follow the object.
    de.end()
        .map_err(|e| Invalid::new(None, format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A validated request, for any endpoint.
// One per request, moved a handful of times on its way to the engine: the size of
// the chat variant costs nothing measurable, a box would cost an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Request {
    /// `/v1/chat/completions`.
    Chat(ChatRequest),
    /// `/v1/completions`.
    Completion(CompletionRequest),
    /// `/v1/embeddings`.
    Embed(EmbedRequest),
    /// `/v1/classify`.
    Classify(ClassifyTask),
    /// `/v1/extract`.
    Extract(ExtractTask),
    /// `/v1/summarize`.
    Summarize(SummarizeTask),
}

impl Request {
    /// Parse and validate a body sent to `endpoint`.
    pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<Request, Invalid> {
        Ok(match endpoint {
            Endpoint::Chat => Request::Chat(ChatRequest::new(parse_json(body)?)?),
            Endpoint::Completions => {
                Request::Completion(CompletionRequest::new(parse_json(body)?)?)
            }
            Endpoint::Embeddings => Request::Embed(EmbedRequest::new(parse_json(body)?)?),
            Endpoint::Classify => Request::Classify(ClassifyTask::new(parse_json(body)?)?),
            Endpoint::Extract => Request::Extract(ExtractTask::new(parse_json(body)?)?),
            Endpoint::Summarize => Request::Summarize(SummarizeTask::new(parse_json(body)?)?),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Request::Chat(_) => Endpoint::Chat,
            Request::Completion(_) => Endpoint::Completions,
            Request::Embed(_) => Endpoint::Embeddings,
            Request::Classify(_) => Endpoint::Classify,
            Request::Extract(_) => Endpoint::Extract,
            Request::Summarize(_) => Endpoint::Summarize,
        }
    }

    /// The model (or route) name.
    pub fn model(&self) -> &str {
        match self {
            Request::Chat(r) => r.model(),
            Request::Completion(r) => r.model(),
            Request::Embed(r) => r.model(),
            Request::Classify(r) => &r.model,
            Request::Extract(r) => &r.model,
            Request::Summarize(r) => &r.model,
        }
    }

    /// The same request for another model (a backend's own name for it).
    pub fn set_model(&mut self, model: &str) {
        match self {
            Request::Chat(r) => r.set_model(model),
            Request::Completion(r) => r.set_model(model),
            Request::Embed(r) => r.set_model(model),
            Request::Classify(r) => r.set_model(model),
            Request::Extract(r) => r.set_model(model),
            Request::Summarize(r) => r.set_model(model),
        }
    }

    /// The client asked for a stream of chunks.
    pub fn stream(&self) -> bool {
        match self {
            Request::Chat(r) => r.stream(),
            Request::Completion(r) => r.stream(),
            _ => false,
        }
    }

    /// The client asked for the usage chunk at the end of its stream.
    pub fn include_usage(&self) -> bool {
        match self {
            Request::Chat(r) => r.include_usage(),
            Request::Completion(r) => r.include_usage(),
            _ => false,
        }
    }

    /// Ask for the usage chunk of a stream whatever the client asked (the ledger
    /// needs it; the router removes the chunk again when the client did not want it).
    pub fn force_usage(&mut self) {
        match self {
            Request::Chat(r) => r.force_usage(),
            Request::Completion(r) => r.force_usage(),
            _ => {}
        }
    }

    /// A cascade's first, local attempt: not streamed, with log-probabilities of the
    /// answer's tokens; and whether the client asked for those itself.
    pub fn for_cascade(&self) -> (Request, bool) {
        match self {
            Request::Chat(r) => {
                let (r, asked) = r.for_cascade();
                (Request::Chat(r), asked)
            }
            Request::Completion(r) => {
                let (r, asked) = r.for_cascade();
                (Request::Completion(r), asked)
            }
            other => (other.clone(), true),
        }
    }

    /// The body to send to an OpenAI-compatible upstream: the wire request as the
    /// client sent it (after [`Request::set_model`] and [`Request::force_usage`]).
    pub fn to_json(&self) -> Value {
        let v = match self {
            Request::Chat(r) => serde_json::to_value(r.wire()),
            Request::Completion(r) => serde_json::to_value(r.wire()),
            Request::Embed(r) => serde_json::to_value(r.wire()),
            Request::Classify(r) => serde_json::to_value(r.wire()),
            Request::Extract(r) => serde_json::to_value(r.wire()),
            Request::Summarize(r) => serde_json::to_value(r.wire()),
        };
        // Plain data with string keys: serialising it cannot fail.
        v.unwrap_or(Value::Null)
    }

    /// The text routing rules look at: the user's messages (chat), the prompts
    /// (completions), the inputs (embeddings and tasks), joined by newlines.
    pub fn user_text(&self) -> String {
        match self {
            Request::Chat(r) => r
                .messages()
                .iter()
                .filter(|m| m.role == "user")
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            Request::Completion(r) => r.prompt_texts().join("\n"),
            Request::Embed(r) => r.texts().join("\n"),
            Request::Classify(r) => r.texts().join("\n"),
            Request::Extract(r) => r.input.clone(),
            Request::Summarize(r) => r.input.clone(),
        }
    }

    /// Characters of the whole prompt: every message (chat); for tasks the inputs
    /// plus instructions, labels, examples and the schema.
    pub fn prompt_chars(&self) -> usize {
        let n = |s: &str| s.chars().count();
        match self {
            Request::Chat(r) => r.messages().iter().map(|m| n(&m.content)).sum(),
            Request::Completion(r) => r.prompt_texts().iter().map(|t| n(t) + 1).sum(),
            Request::Embed(r) => r.texts().iter().map(|t| n(t)).sum(),
            Request::Classify(r) => {
                let mut c: usize = r.texts().iter().map(|t| n(t)).sum();
                c += r.instructions.as_deref().map_or(0, n);
                c += r
                    .labels
                    .iter()
                    .map(|l| n(l.name()) + l.description().map_or(0, n))
                    .sum::<usize>();
                c += r
                    .examples
                    .iter()
                    .map(|e| n(&e.input) + n(&e.label))
                    .sum::<usize>();
                c
            }
            Request::Extract(r) => {
                n(&r.input) + r.instructions.as_deref().map_or(0, n) + n(&r.schema.to_string())
            }
            Request::Summarize(r) => n(&r.input) + r.instructions.as_deref().map_or(0, n),
        }
    }

    /// The request offers tools the model may call.
    pub fn has_tools(&self) -> bool {
        matches!(self, Request::Chat(r) if !r.tools().is_empty())
    }

    /// The request asks for structured output (a JSON schema, JSON mode, a grammar,
    /// a regex, a choice) or is an extraction.
    pub fn wants_structure(&self) -> bool {
        match self {
            Request::Chat(r) => r.response_format_constraint(),
            Request::Extract(_) => true,
            _ => false,
        }
    }
}
