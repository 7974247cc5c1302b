//! The OpenAI-compatible wire format.
//!
//! Requests accept what the official clients send (unknown fields are ignored, strings
//! or arrays where OpenAI allows both); responses carry exactly the fields the clients
//! parse. Range checks live in the server's validation step, not here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::limits::{MAX_MESSAGES, MAX_MODEL_NAME, MAX_N, MAX_TOP_K, MAX_TOP_LOGPROBS};

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum StopSpec {
    /// A single stop string.
    One(String),
    /// Up to four stop strings (Bantam allows more).
    Many(Vec<String>),
}

impl StopSpec {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSpec::One(s) => vec![s],
            StopSpec::Many(v) => v,
        }
    }
}

/// Message content: a string, or an array of typed parts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type":"text","text":...}`); other part types are rejected
    /// during validation.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ContentPart {
    /// Part type: Bantam serves text models, so only `text` is accepted
    /// (`image_url` and other parts are a 400).
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["text"]))]
    pub kind: String,
    /// Text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, extend("type" = "string"))]
    pub text: Option<String>,
}

/// A chat message as sent by clients: `content`, or an assistant's `tool_calls`, or
/// both.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[schemars(extend("anyOf" = [
    {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
    {"required": ["tool_calls"], "properties": {"tool_calls": {"not": {"type": "null"}}}}
]))]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    #[schemars(extend("enum" = ["system", "developer", "user", "assistant", "tool"]))]
    pub role: String,
    /// Content; may be null for assistant messages with tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// Id of the call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Fields Bantam does not interpret (kept for upstreams).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct StreamOptions {
    /// Send a final chunk with token usage.
    #[serde(default)]
    pub include_usage: bool,
    /// Other options (kept for upstreams).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Sampling fields shared by chat and text completions (flattened into both).
/// Numbers are read as `f64`, so a range check sees what the client wrote (an `f32`
/// would round 2.0000001 to 2).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct SamplingOptions {
    /// Sampling temperature (0..2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2))]
    pub temperature: Option<f64>,
    /// Nucleus sampling (0..1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1), extend("exclusiveMinimum" = 0))]
    pub top_p: Option<f64>,
    /// Number of choices (1–16; choice i samples with `seed + i`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_N))]
    pub n: Option<u32>,
    /// Stop strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSpec>,
    /// −2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -2, max = 2))]
    pub presence_penalty: Option<f64>,
    /// −2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -2, max = 2))]
    pub frequency_penalty: Option<f64>,
    /// Token id (as a string) → bias −100..100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<std::collections::HashMap<String, f64>>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Extension: top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_TOP_K))]
    pub top_k: Option<u32>,
    /// Extension: min-p sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub min_p: Option<f64>,
    /// Extension: multiplicative repetition penalty.
    #[serde(
        default,
        alias = "repeat_penalty",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0.01, max = 10))]
    pub repetition_penalty: Option<f64>,
    /// Extension: keep generating past end-of-generation tokens (benchmarks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ChatCompletionRequest {
    /// Model name.
    #[schemars(length(min = 1, max = MAX_MODEL_NAME))]
    pub model: String,
    /// The conversation.
    #[schemars(length(min = 1, max = MAX_MESSAGES))]
    pub messages: Vec<ChatMessage>,
    /// Stream server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Deprecated name of `max_completion_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_completion_tokens: Option<u32>,
    /// Return log-probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// 0..20 most likely alternatives per token (needs `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_TOP_LOGPROBS))]
    pub top_logprobs: Option<u32>,
    /// End-user id (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Structured output (handled by the structured-output feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Tools (handled by the tool-calling feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
    /// Tool choice: `none`, `auto`, `required` or `{"type":"function","function":{"name":...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Allow several tool calls in one answer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Sampling settings.
    #[serde(flatten)]
    pub sampling: SamplingOptions,
    /// Fields Bantam does not interpret, kept so that an upstream receives the
    /// request as the client sent it.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `prompt` of a legacy completion: text, texts, tokens or token lists.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PromptSpec {
    /// One string.
    Text(String),
    /// Several strings (one choice each).
    Texts(Vec<String>),
    /// One token list.
    Tokens(Vec<i32>),
    /// Several token lists.
    TokenLists(Vec<Vec<i32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct CompletionRequest {
    /// Model name.
    #[schemars(length(min = 1, max = MAX_MODEL_NAME))]
    pub model: String,
    /// The prompt.
    pub prompt: PromptSpec,
    /// Upper bound on generated tokens (OpenAI's default is 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
    /// Stream server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// 0..5 most likely alternatives per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_TOP_LOGPROBS))]
    pub logprobs: Option<u32>,
    /// Prepend the prompt to the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Text after the completion (not supported; rejected when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Server-side best-of (only 1 supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<u32>,
    /// End-user id (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Sampling settings.
    #[serde(flatten)]
    pub sampling: SamplingOptions,
    /// Fields Bantam does not interpret (kept for upstreams).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input` of an embeddings request: text, texts, tokens or token lists.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One string.
    Text(String),
    /// Several strings (one vector each).
    Texts(Vec<String>),
    /// One token list.
    Tokens(Vec<i64>),
    /// Several token lists.
    TokenLists(Vec<Vec<i64>>),
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct EmbeddingsRequest {
    /// Model name.
    #[schemars(length(min = 1, max = MAX_MODEL_NAME))]
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["float", "base64", null]))]
    pub encoding_format: Option<String>,
    /// Dimensions wanted (must equal the model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub dimensions: Option<usize>,
    /// End-user id (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Extension: cut inputs longer than the model's window instead of rejecting
    /// them (the default is a 400 naming the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// Fields Bantam does not interpret (kept for upstreams).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token usage in responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageBody {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Sum.
    pub total_tokens: u32,
    /// Cached prompt tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Bantam's extension: engine time attributed to the request, in milliseconds
    /// (what `per_second` prices of local backends charge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_ms: Option<f64>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u32,
}

/// A response message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: String,
    /// The text.
    pub content: Option<String>,
    /// Tool calls the model made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// A function call in a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCall {
    /// `call_…`.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The call.
    pub function: FunctionCall,
}

/// Name and arguments of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON text.
    pub arguments: String,
}

/// A streamed piece of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallDelta {
    /// Which call of the answer.
    pub index: u32,
    /// Sent with the call's first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, with the first piece.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (first piece) and more arguments text.
    pub function: FunctionCallDelta,
}

/// Streamed name/arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FunctionCallDelta {
    /// Function name, with the first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Arguments text to append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// One alternative in chat logprobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopLogprob {
    /// Token text.
    pub token: String,
    /// Log-probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Vec<u8>,
}

/// One token in chat logprobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatTokenLogprob {
    /// Token text.
    pub token: String,
    /// Log-probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Vec<u8>,
    /// Most likely alternatives.
    pub top_logprobs: Vec<TopLogprob>,
}

/// `choices[].logprobs` of a chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatLogprobs {
    /// Per-token entries.
    pub content: Vec<ChatTokenLogprob>,
}

/// A chat choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatChoice {
    /// Index (always 0).
    pub index: u32,
    /// The reply.
    pub message: ResponseMessage,
    /// Log-probabilities if requested.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop` or `length`.
    pub finish_reason: String,
}

/// `chat.completion` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model name as requested.
    pub model: String,
    /// Fingerprint of the serving configuration.
    pub system_fingerprint: String,
    /// Choices.
    pub choices: Vec<ChatChoice>,
    /// Token usage.
    pub usage: UsageBody,
}

/// Delta of a streamed chat choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatDelta {
    /// Sent in the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool-call pieces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A streamed chat choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatChunkChoice {
    /// Index (always 0).
    pub index: u32,
    /// What changed.
    pub delta: ChatDelta,
    /// Log-probabilities of this chunk's tokens.
    pub logprobs: Option<ChatLogprobs>,
    /// Set on the last content chunk.
    pub finish_reason: Option<String>,
}

/// `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCompletionChunk {
    /// Same id for every chunk of a response.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model name.
    pub model: String,
    /// Fingerprint.
    pub system_fingerprint: String,
    /// Choices (empty in the usage-only chunk).
    pub choices: Vec<ChatChunkChoice>,
    /// Usage, in the last chunk when `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageBody>,
}

/// Legacy completion logprobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompletionLogprobs {
    /// Token texts.
    pub tokens: Vec<String>,
    /// Their log-probabilities.
    pub token_logprobs: Vec<f32>,
    /// Alternatives per position: text → logprob.
    pub top_logprobs: Vec<serde_json::Map<String, Value>>,
    /// Character offset of each token in the returned text.
    pub text_offset: Vec<u32>,
}

/// A completion choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompletionChoice {
    /// The text.
    pub text: String,
    /// Index of the prompt this answers.
    pub index: u32,
    /// Log-probabilities if requested.
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop` or `length` (null in intermediate stream chunks).
    pub finish_reason: Option<String>,
}

/// `text_completion` response (also the stream chunk shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Completion {
    /// `cmpl-…`.
    pub id: String,
    /// `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model name.
    pub model: String,
    /// Fingerprint.
    pub system_fingerprint: String,
    /// Choices.
    pub choices: Vec<CompletionChoice>,
    /// Usage (absent in intermediate stream chunks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageBody>,
}

/// An entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelCard {
    /// Model name.
    pub id: String,
    /// `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Owner.
    pub owned_by: String,
    /// Extension: Bantam's details (architecture, quantization, context, loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    /// Models.
    pub data: Vec<ModelCard>,
}

/// The body of an error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub message: String,
    /// `invalid_request_error`, `not_found_error`, `server_error`, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The offending parameter, when there is one.
    #[serde(default)]
    pub param: Option<String>,
    /// A stable machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_request_accepts_openai_client_shapes() {
        let body = r#"{"model":"m","messages":[{"role":"system","content":"s"},
            {"role":"user","content":[{"type":"text","text":"hi"}]}],
            "stop":"x","stream":true,"stream_options":{"include_usage":true},
            "some_future_field":1}"#;
        let r: ChatCompletionRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.sampling.stop.unwrap().into_vec(), vec!["x".to_string()]);
        assert!(r.stream_options.unwrap().include_usage);
        assert!(matches!(
            r.messages[1].content,
            Some(MessageContent::Parts(_))
        ));
    }

    #[test]
    fn completion_prompt_variants() {
        for (body, ok) in [
            (r#"{"model":"m","prompt":"a"}"#, true),
            (r#"{"model":"m","prompt":["a","b"]}"#, true),
            (r#"{"model":"m","prompt":[1,2,3]}"#, true),
            (r#"{"model":"m","prompt":[[1],[2]]}"#, true),
            (r#"{"model":"m","prompt":{"x":1}}"#, false),
        ] {
            assert_eq!(
                serde_json::from_str::<CompletionRequest>(body).is_ok(),
                ok,
                "{body}"
            );
        }
    }
}
