//! OpenAI-compatible servers (another Bantam, vLLM, llama-server, a hosted API) as
//! Bantam [`Backend`](bantam_api::Backend)s.
//!
//! * [`upstream`] — [`Upstream`]: the client's request passed through as it was sent
//!   (model name replaced), answers and SSE streams relayed, HTTP errors read back
//!   into typed [`BackendError`](bantam_api::BackendError)s, timeouts;
//! * [`tasks`] — Bantam's task endpoints on servers that have none: each becomes
//!   chat completions asking the same question the local tasks ask;
//! * [`sse`] — the server-sent-events parser.

pub mod sse;
pub mod tasks;
pub mod upstream;

pub use upstream::{Upstream, UpstreamConfig};
