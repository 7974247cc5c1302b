//! Engine errors. The server maps each variant to an HTTP status in one place.

/// Everything that can go wrong between a validated request and its last token.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum EngineError {
    /// The prompt (plus requested output) does not fit the context.
    #[error("the prompt has {prompt_tokens} tokens but this model's context holds {ctx_size} per request; shorten the prompt or serve the model with a larger --ctx-size")]
    ContextOverflow {
        /// Prompt length in tokens.
        prompt_tokens: usize,
        /// Per-request context size.
        ctx_size: usize,
    },
    /// The prompt is empty after tokenisation.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// A token id outside the vocabulary.
    #[error("token id {0} is outside the model's vocabulary")]
    BadToken(i32),
    /// Too many requests are already waiting.
    #[error("the server is busy: {waiting} requests are already waiting for {model}; retry later")]
    QueueFull {
        /// Model name.
        model: String,
        /// Requests waiting.
        waiting: usize,
    },
    /// No model by that name is installed.
    #[error("the model `{0}` does not exist; GET /v1/models lists the available models, `bantam pull {0}` installs it")]
    ModelNotFound(String),
    /// The model could not be loaded.
    #[error("could not load model {model}: {reason}")]
    Load {
        /// Model name.
        model: String,
        /// Why.
        reason: String,
    },
    /// The model's file cannot be loaded (not a GGUF file, truncated, an
    /// architecture llama.cpp does not know).
    #[error("model {0} cannot be loaded: its file is not a GGUF model llama.cpp can read (truncated, corrupt or an unsupported architecture); reinstall it (`bantam rm`, then `bantam pull` or `bantam import`)")]
    BadModelFile(String),
    /// An embedding model was asked to generate.
    #[error("{0} is an embedding model: it answers /v1/embeddings, not chat, completions or the task endpoints")]
    NotGenerative(String),
    /// The chat template failed to render.
    #[error("chat template error: {0}")]
    Template(String),
    /// The engine stopped (model unloaded or process shutting down).
    #[error("the engine for this model stopped")]
    Stopped,
    /// llama.cpp failed while decoding.
    #[error("inference failed: {0}")]
    Decode(String),
    /// A structured-output constraint could not be compiled, or the output did not
    /// satisfy it (never returned as a success).
    #[error(transparent)]
    Constraint(#[from] bantam_structured::StructuredError),
}
