//! Bantam's request contract, between the HTTP edge and every backend.
//!
//! * [`request`] — a client's body is parsed **once** into a typed request and
//!   validated into a [`Request`] (an enum over chat, completion, embeddings,
//!   classify, extract and summarize). Validated types can only be built by
//!   validating, and they are what the router, the local engine backend, upstreams,
//!   `bantam run`, the task commands, `bantam eval` and `bantam bench` receive.
//! * [`backend`] — the [`Backend`] trait (a [`Call`] in, a [`Reply`] out) that local
//!   models and OpenAI-compatible upstreams implement, and the [`LocalFactory`] that
//!   makes local backends for the router.
//! * [`error`] — [`BackendError`], typed by what happened (invalid request, context
//!   overflow, overloaded, structured output incomplete, unavailable, timeout,
//!   upstream status …): fallback and circuit breakers decide on the kind; the server
//!   maps kinds to HTTP in one place.
//! * [`features`] — the [`Embed`] trait of learned routes' featurisers and the
//!   model-free [`HashedNgrams`].
//!
//! Nothing here does I/O.

pub mod backend;
pub mod endpoint;
pub mod error;
pub mod features;
pub mod request;

pub use backend::{answer_chars, Backend, Call, ChunkStream, Headers, LocalFactory, Reply, Tokens};
pub use endpoint::Endpoint;
pub use error::BackendError;
pub use features::{Embed, HashedNgrams};
pub use request::{
    ChatRequest, ClassifyTask, CompletionRequest, EmbedRequest, ExtractTask, Invalid, Request,
    SummarizeTask,
};
