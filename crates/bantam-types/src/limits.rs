//! Bounds on request sizes, shared by validation (`bantam-api`) and the OpenAPI
//! document (`GET /openapi.json`), so the contract states what the server enforces.

/// Longest model (or route) name, in bytes.
pub const MAX_MODEL_NAME: usize = 256;
/// Most messages in one chat request.
pub const MAX_MESSAGES: usize = 4096;
/// Most prompts in one legacy completion request (prompts × `n`).
pub const MAX_PROMPTS: usize = 64;
/// Most inputs in one embeddings request.
pub const MAX_EMBED_INPUTS: usize = 2048;
/// Most texts in one classification request.
pub const MAX_TASK_INPUTS: usize = 4096;
/// Most labels of a classification.
pub const MAX_LABELS: usize = 256;
/// Most stop sequences.
pub const MAX_STOP: usize = 16;
/// Most choices (`n`).
pub const MAX_N: u32 = 16;
/// Most alternatives per token (`top_logprobs`, legacy `logprobs`).
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Largest `top_k`.
pub const MAX_TOP_K: u32 = 100_000;
/// Most bullets or sentences of a summary (`length`).
pub const MAX_SUMMARY_LENGTH: u32 = 20;
/// Longest summary, in tokens (`max_tokens` of `/v1/summarize`; the model's
/// context must also hold it).
pub const MAX_SUMMARY_TOKENS: u32 = 2048;
