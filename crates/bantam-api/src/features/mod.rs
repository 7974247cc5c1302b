//! Featurisers of learned routes: the [`Embed`] trait (texts → L2-normalised
//! vectors) and the model-free [`HashedNgrams`]. The featurisers over an embedding
//! model (the MiniLM encoder and its static distillation) live with the engine, in
//! `bantam-local`.

/// A featuriser name's prefix for the static distillation of an embedding model
/// (`static:all-minilm:l6-v2`): the mean of per-token vectors distilled from the
/// encoder instead of an encoder pass per prompt.
pub const STATIC_PREFIX: &str = "static:";

/// Turns texts into L2-normalised sentence embeddings.
pub trait Embed: Send + Sync {
    /// One vector per text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;

    /// Cheap enough (microseconds) to run on the request's task, without moving off
    /// the async worker.
    fn inline(&self) -> bool {
        false
    }
}

pub use hashed::{HashedNgrams, NAME as HASHED_NGRAMS};

pub mod hashed;
