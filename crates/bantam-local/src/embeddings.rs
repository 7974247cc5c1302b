//! Embeddings on a local encoder model (all-MiniLM-L6-v2): texts or token-id lists
//! in, L2-normalised vectors out (floats or base64). An input longer than the
//! model's window is an error naming the limit unless the request opts into
//! `truncate`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bantam_api::request::EmbedInput;
use bantam_api::{BackendError, EmbedRequest, Reply};
use bantam_engine::{Embedder, EngineError};
use bantam_store::Store;
use serde_json::{json, Value};

use crate::error;

/// Loaded embedding models, by store name.
pub struct Embedders {
    store: Store,
    threads: u32,
    loaded: Mutex<HashMap<String, Arc<Embedder>>>,
    /// Requests computing or waiting (each model computes one at a time): beyond
    /// [`MAX_WAITING`], 429 rather than an ever longer wait.
    waiting: Arc<tokio::sync::Semaphore>,
}

/// Embedding requests that may compute or wait at once.
pub const MAX_WAITING: usize = 64;

impl std::fmt::Debug for Embedders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedders")
    }
}

/// Standard base64 of the vector's little-endian f32 bytes (what the OpenAI clients
/// decode for `encoding_format: "base64"`).
fn base64_f32(v: &[f32]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

impl Embedders {
    /// Embedding models of `store`, each run with `threads` threads (0 = physical
    /// cores).
    pub fn new(store: Store, threads: u32) -> Self {
        Self {
            store,
            threads,
            loaded: Mutex::default(),
            waiting: Arc::new(tokio::sync::Semaphore::new(MAX_WAITING)),
        }
    }

    /// The embedding model `model`, loaded on first use (one copy per model, whatever
    /// the spelling of its name).
    pub async fn get(&self, backend: &str, model: &str) -> Result<Arc<Embedder>, BackendError> {
        let m = self.store.get(model).map_err(|e| BackendError::NotFound {
            backend: backend.to_string(),
            message: format!("{e}; `bantam pull {model}` installs it"),
        })?;
        if let Some(e) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&m.name)
        {
            return Ok(e.clone());
        }
        let path = self.store.blob_path(&m);
        let threads = self.threads;
        let e = tokio::task::spawn_blocking(move || Embedder::load(&path, threads))
            .await
            .map_err(|e| BackendError::internal(backend, e.to_string()))?
            .map_err(|e| BackendError::Invalid {
                backend: backend.to_string(),
                param: Some("model".into()),
                code: Some("not_an_embedding_model".into()),
                // The reason only: the error names the blob's path, which is the
                // server's business.
                message: format!(
                    "{model} cannot embed: {}; use an embedding model such as all-minilm:l6-v2",
                    match &e {
                        bantam_engine::EngineError::Load { reason, .. } => reason.clone(),
                        other => other.to_string(),
                    }
                ),
            })?;
        let e = Arc::new(e);
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        // Two first requests may have loaded it at once: keep one copy.
        Ok(loaded.entry(m.name.clone()).or_insert(e).clone())
    }

    /// Answer an embeddings request with the store's model `model`.
    pub async fn embed(
        &self,
        backend: &str,
        model: &str,
        req: &EmbedRequest,
    ) -> Result<Reply, BackendError> {
        let Ok(_place) = self.waiting.clone().try_acquire_owned() else {
            return Err(BackendError::Overloaded {
                backend: backend.to_string(),
                message: format!(
                    "the server is busy: {MAX_WAITING} embedding requests are already waiting; retry later"
                ),
                retry_after_secs: Some(1),
            });
        };
        let e = self.get(backend, model).await?;
        if let Some(d) = req.dimensions() {
            if d != e.dim() {
                return Err(BackendError::invalid(
                    backend,
                    Some("dimensions"),
                    format!(
                        "{model} returns {} dimensions; it cannot shorten them to {d}",
                        e.dim()
                    ),
                ));
            }
        }
        let truncate = req.truncate();
        let mut lists = Vec::with_capacity(req.inputs().len());
        for (i, input) in req.inputs().iter().enumerate() {
            let toks = match input {
                EmbedInput::Text(t) => e.tokenize_all(t),
                EmbedInput::Tokens(ids) => e.wrap_tokens(ids).map_err(|err| match err {
                    EngineError::BadToken(id) => BackendError::invalid(
                        backend,
                        Some("input"),
                        format!("input {i}: token id {id} is outside {model}'s vocabulary"),
                    ),
                    other => error::engine(backend, other),
                })?,
            };
            if toks.len() > e.max_tokens() && !truncate {
                return Err(BackendError::Invalid {
                    backend: backend.to_string(),
                    param: Some("input".into()),
                    code: Some("context_length_exceeded".into()),
                    message: format!(
                        "input {i} has {} tokens but {model} embeds at most {}; shorten it, split it, or send \"truncate\": true to embed its first {} tokens",
                        toks.len(),
                        e.max_tokens(),
                        e.max_tokens()
                    ),
                });
            }
            lists.push(e.truncate(toks));
        }
        let out = tokio::task::spawn_blocking(move || e.embed_token_lists(&lists))
            .await
            .map_err(|e| BackendError::internal(backend, e.to_string()))?
            .map_err(|e| error::engine(backend, e))?;
        let base64 = req.base64();
        let data: Vec<Value> = out
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({
                    "object": "embedding",
                    "index": i,
                    "embedding": if base64 { json!(base64_f32(v)) } else { json!(v) },
                })
            })
            .collect();
        Ok(Reply::Full(json!({
            "object": "list",
            "data": data,
            "model": req.model(),
            "usage": {"prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens},
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        // 1.0f32 = 00 00 80 3f; 2.0 = 00 00 00 40.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(base64_f32(&[]), "");
    }
}
