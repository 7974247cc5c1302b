//! Bantam's inference engine.
//!
//! * [`Engine`] — one loaded model served by its own OS thread: a continuous-batching
//!   scheduler over a fixed number of sequence slots sharing one llama.cpp context, with
//!   prompt-prefix reuse across requests (see [`scheduler`]).
//! * [`ModelPool`] — several engines at once, loaded on demand and unloaded when idle
//!   (keep-alive, least-recently-used), like Ollama.
//! * [`sampler`], [`stop`], [`detok`] — per-request token selection, stop strings and
//!   incremental UTF-8 decoding, independent of llama.cpp and unit-tested here.
//! * [`template`] — chat templates rendered from the model's own Jinja template, with
//!   family fallbacks for models that ship none.
//! * [`Embedder`] — sentence embeddings from an encoder model (all-MiniLM-L6-v2),
//!   pooled and L2-normalised, several texts per llama.cpp batch; [`StaticEmbedder`] —
//!   the same model distilled into one vector per vocabulary token (microseconds per
//!   text, for routing decisions).
//!
//! Concurrency: the engine thread owns the llama.cpp context exclusively; everything
//! else talks to it over channels. The shared [`bantam_llama::Model`] is read-only.

pub mod chat_tokens;
pub mod compare;
pub mod config;
pub mod detok;
mod embed;
mod engine;
mod error;
mod pool;
pub mod sampler;
pub mod scheduler;
pub mod score;
mod static_embed;
pub mod stop;
pub mod template;

pub use bantam_llama::Pooling;
pub use chat_tokens::ChatTokenizer;
pub use config::{EngineConfig, EngineOverrides, PoolConfig, PoolOverrides};
pub use embed::{Embedder, Embeddings};
pub use engine::{Engine, EventStream, ModelInfo};
pub use error::EngineError;
pub use pool::{ModelPool, ModelResolver, ResolvedModel};
pub use score::{ScoreMode, ScoreOutput};
pub use static_embed::StaticEmbedder;

/// What llama.cpp found on this machine: the CPU kernel variant chosen at run time,
/// devices and features (initialises llama.cpp on first call).
pub fn runtime_info() -> bantam_llama::RuntimeInfo {
    bantam_llama::runtime().info().clone()
}
