//! Featurisers for learned routes, by the name a router model records:
//!
//! * `hashed-ngrams`: the built-in hashed n-grams (no model);
//! * `static:NAME`: the static distillation of the store's embedding model `NAME`
//!   (one vector per vocabulary token). The table is distilled on first use (one
//!   encoder pass per token, about a minute for all-MiniLM-L6-v2 here) and kept
//!   beside the model in the store (`derived/sha256-….static-v1`, checksummed,
//!   removed with the model); later loads take a fraction of a second;
//! * `NAME`: the store's embedding model itself, one encoder pass per prompt;
//! * `mean:MODEL` / `last:MODEL`: any store model's last hidden states (a
//!   generative decoder's too), mean-pooled or at the last token — classifier
//!   features (`bantam tune classify`).
//!
//! `bantam router train` and `bantam serve` both come here, so a router is served
//! with exactly the features it was trained on.

use std::sync::Arc;

use bantam_api::features::{hashed, Embed, HashedNgrams, STATIC_PREFIX};
use bantam_engine::{Embedder, EngineError, StaticEmbedder};
use bantam_store::{Store, StoreError};

/// Why a featuriser could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeaturiserError {
    /// The embedding model is not in the store.
    #[error("embedding model {model} is not installed; run `bantam pull {model}` (or use the built-in `{}` featuriser)", hashed::NAME)]
    NotInstalled {
        /// Store name.
        model: String,
        /// What the store said.
        #[source]
        source: StoreError,
    },
    /// Loading the model or distilling it failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The kind of static table this Bantam writes (bump when its contents change).
const STATIC_KIND: &str = "static-v1";

/// The featuriser `name` names. `threads` (0 = physical cores) is for the encoder
/// when it embeds prompts (a distillation uses every core); `progress(done, total)`
/// reports a distillation in progress.
pub fn featuriser(
    store: &Store,
    name: &str,
    threads: u32,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Arc<dyn Embed>, FeaturiserError> {
    if name == hashed::NAME {
        return Ok(Arc::new(HashedNgrams));
    }
    let installed = |model: &str| {
        store
            .get(model)
            .map_err(|source| FeaturiserError::NotInstalled {
                model: model.to_string(),
                source,
            })
    };
    if let Some((pooling, model)) = hidden_state_features(name) {
        let m = installed(model)?;
        let e = Embedder::load_pooled(&store.blob_path(&m), threads, pooling)?;
        return Ok(Arc::new(Contextual(e)));
    }
    let (model, distilled) = match name.strip_prefix(STATIC_PREFIX) {
        Some(m) => (m, true),
        None => (name, false),
    };
    let m = installed(model)?;
    let blob = store.blob_path(&m);
    if !distilled {
        return Ok(Arc::new(Contextual(Embedder::load(&blob, threads)?)));
    }
    let cache = store.derived_path(&m, STATIC_KIND);
    match StaticEmbedder::load(&cache, &blob, &m.digest) {
        Ok(s) => return Ok(Arc::new(Static(s))),
        Err(e) if cache.exists() => {
            tracing::warn!(table = %cache.display(), error = %e, "distilling the static embedding table again");
        }
        Err(_) => {}
    }
    tracing::info!(model = %m.name, "distilling static token embeddings (once per model)");
    // A one-off job, before anything else runs (serve builds its routes before it
    // opens the port): all cores, whatever `threads` says for the encoder at work.
    let encoder = Embedder::load(&blob, 0)?;
    let started = std::time::Instant::now();
    let s = StaticEmbedder::distill(&encoder, &m.digest, progress)?;
    tracing::info!(model = %m.name, secs = started.elapsed().as_secs_f64(), "static token embeddings distilled");
    if let Err(e) = s.save(&cache) {
        // Still usable now; only the next start pays again.
        tracing::warn!(table = %cache.display(), error = %e, "could not keep the static embedding table");
    }
    Ok(Arc::new(Static(s)))
}

/// `mean:MODEL` / `last:MODEL`: a (generative) model's last hidden states, averaged
/// over the text's tokens or taken at its last token.
pub fn hidden_state_features(name: &str) -> Option<(bantam_engine::Pooling, &str)> {
    if let Some(m) = name.strip_prefix(MEAN_PREFIX) {
        return Some((bantam_engine::Pooling::Mean, m));
    }
    name.strip_prefix(LAST_PREFIX)
        .map(|m| (bantam_engine::Pooling::Last, m))
}

/// The store model a featuriser reads (none for the built-in hashed n-grams).
pub fn features_model(name: &str) -> Option<&str> {
    if name == hashed::NAME {
        return None;
    }
    Some(
        hidden_state_features(name)
            .map(|(_, m)| m)
            .or_else(|| name.strip_prefix(STATIC_PREFIX))
            .unwrap_or(name),
    )
}

/// Featuriser prefix: mean-pooled hidden states of a model.
pub const MEAN_PREFIX: &str = "mean:";
/// Featuriser prefix: the last token's hidden state.
pub const LAST_PREFIX: &str = "last:";

/// An encoder pass per prompt.
struct Contextual(Embedder);

impl Embed for Contextual {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.0.embed(texts).map_err(|e| e.to_string())
    }
}

/// Token vectors distilled from the encoder.
struct Static(StaticEmbedder);

impl Embed for Static {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts.iter().map(|t| self.0.embed(t)).collect())
    }

    fn inline(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_resolved_and_missing_models_say_how_to_install_them() {
        let dir = std::env::temp_dir().join(format!("bantam-feat-{}", std::process::id()));
        let store = Store::open(&dir).unwrap();
        let mut none = |_: usize, _: usize| {};
        let h = featuriser(&store, "hashed-ngrams", 1, &mut none).unwrap();
        assert!(h.inline());
        assert_eq!(
            h.embed(&["reset my card pin"]).unwrap()[0].len(),
            hashed::DIM
        );
        for (name, model) in [
            ("all-minilm:l6-v2", "all-minilm:l6-v2"),
            ("static:all-minilm:l6-v2", "all-minilm:l6-v2"),
            ("static:other:v1", "other:v1"),
        ] {
            let e = featuriser(&store, name, 1, &mut none)
                .err()
                .expect("not installed");
            assert!(
                e.to_string().contains(&format!("bantam pull {model}")),
                "{name}: {e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
