//! The engine's validated generation request and the events it produces.

use serde::{Deserialize, Serialize};

/// A chat message as chat templates expect it (`content` flattened to a string).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemplateMessage {
    /// Role.
    pub role: String,
    /// Text content.
    pub content: String,
    /// Tool calls of an assistant message, passed through to templates that use them
    /// (each `function.arguments` an object, as templates expect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// Id of the tool call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl TemplateMessage {
    /// A plain text message.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
}

/// Sampling settings, already range-checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 = greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling mass; 1.0 disables.
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: u32,
    /// Drop tokens below `min_p × p(max)`; 0 disables.
    pub min_p: f32,
    /// Multiplicative repetition penalty (llama.cpp style); 1.0 disables.
    pub repetition_penalty: f32,
    /// OpenAI frequency penalty (−2..2).
    pub frequency_penalty: f32,
    /// OpenAI presence penalty (−2..2).
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: u32,
    /// Seed of the request's own RNG; equal seeds give equal samples.
    pub seed: u64,
    /// Additive logit bias per token id.
    pub logit_bias: Vec<(i32, f32)>,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_p: 0.95,
            top_k: 40,
            min_p: 0.05,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }
}

/// The prompt, already rendered and ready to tokenise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Prompt {
    /// Text to tokenise. `special` lets special-token text (`<|im_start|>`) become
    /// special tokens — true for chat templates, false for raw user text.
    Text {
        /// The text.
        text: String,
        /// Parse special tokens in the text.
        special: bool,
        /// Add BOS if the model wants one and the text does not start with it.
        add_bos: bool,
    },
    /// Token ids given by the client.
    Tokens(Vec<i32>),
}

/// A validated generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// What to continue.
    pub prompt: Prompt,
    /// Upper bound on generated tokens (`None` = until the context is full).
    pub max_tokens: Option<u32>,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Stop strings; generation ends before the first match, which is not returned.
    pub stop: Vec<String>,
    /// Number of most likely alternatives to report per token (0 = none); `Some`
    /// when log-probabilities of the chosen tokens are wanted.
    pub logprobs: Option<u32>,
    /// Ignore end-of-generation tokens (for benchmarks).
    pub ignore_eos: bool,
    /// A form the output must take, enforced token by token and validated at the end.
    pub constraint: Option<OutputConstraint>,
}

/// A form the output must take (structured output). The engine enforces it while
/// sampling (llguidance) and validates the finished output; an output that does not
/// validate ends the request with an error, never as a success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OutputConstraint {
    /// JSON valid against this JSON Schema.
    JsonSchema(serde_json::Value),
    /// Any JSON object.
    JsonObject,
    /// Text matching this regular expression as a whole.
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// Text derived from this grammar (Lark syntax, llguidance dialect; may embed
    /// `%json {...}` schemas).
    Lark(String),
    /// Tool calls in Bantam's tool-call format, arguments valid against each tool's
    /// parameter schema.
    ToolCalls {
        /// Tools the model may call.
        tools: Vec<ToolSpec>,
        /// The output must be tool calls (`tool_choice` `required` or a named
        /// function); otherwise the model may answer in text and the constraint starts
        /// when it opens a tool call.
        required: bool,
        /// Several calls allowed in one answer.
        parallel: bool,
    },
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Function name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of its arguments (an object schema).
    pub parameters: serde_json::Value,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
}

impl FinishReason {
    /// The OpenAI string.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One alternative token with its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// Token id.
    pub id: i32,
    /// Token text (may be a partial UTF-8 sequence rendered lossily).
    pub text: String,
    /// Raw bytes of the token.
    pub bytes: Vec<u8>,
    /// Natural-log probability under the model's distribution (before sampling filters).
    pub logprob: f32,
}

/// Log-probability information for one generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogprobEntry {
    /// The chosen token.
    pub token: TokenLogprob,
    /// The most likely alternatives, best first.
    pub top: Vec<TokenLogprob>,
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u32,
    /// Engine time attributed to this request, in microseconds: its share (by
    /// tokens in the batch) of every decode step it took part in, plus its own
    /// sampling. Summed over concurrent requests it is the engine's busy time, so
    /// pricing it per second charges a dedicated machine's cost exactly once.
    #[serde(default)]
    pub compute_us: u64,
}

/// Timing of a finished request, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Timings {
    /// Waiting for a free slot.
    pub queue_ms: f64,
    /// Prompt processing (until the first token was sampled).
    pub prefill_ms: f64,
    /// From the first to the last generated token.
    pub decode_ms: f64,
}

/// What the engine streams back for a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GenerateEvent {
    /// New text (complete UTF-8; stop strings withheld until ruled out).
    Delta {
        /// Text since the previous delta.
        text: String,
        /// Log-probabilities of the tokens behind this text, if requested.
        logprobs: Vec<LogprobEntry>,
    },
    /// Generation finished.
    Done {
        /// Why it ended.
        finish_reason: FinishReason,
        /// Token counts.
        usage: Usage,
        /// Timings.
        timings: Timings,
    },
}
