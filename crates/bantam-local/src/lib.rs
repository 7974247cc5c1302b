//! Models of Bantam's store as [`Backend`]s.
//!
//! * [`LocalBackend`] — one store model answering validated requests: chat and text
//!   completions (`n` choices batched, streamed or not, tools, structured output with
//!   retries), embeddings, and the tasks (`bantam-tasks`). It loads the model through
//!   the shared [`ModelPool`], turns the request into engine requests (the model's
//!   chat template, its vocabulary for `logit_bias`) and the engine's events into
//!   OpenAI-shaped answers or chunks. Engine errors become typed
//!   [`BackendError`]s here ([`error`]).
//! * [`Local`] — the [`LocalFactory`] the router gets: local backends over one pool
//!   and store, and the learned routes' featurisers ([`featurise`]).
//! * [`StoreResolver`] — model names → files, chat templates and engine settings
//!   (defaults, then the model's stored options, then explicit overrides).
//!
//! Below the HTTP server: the server, `bantam run`, the task commands and
//! `bantam eval` all call into this crate.

// `BackendError` carries messages and an upstream's body (~130 bytes); it is only
// built on the error path.
#![allow(clippy::result_large_err)]

mod chat;
mod completions;
pub mod embeddings;
pub mod error;
pub mod featurise;
mod heads;
mod resolver;
mod stream;
mod tasks;

use std::sync::Arc;

use bantam_api::{Backend, BackendError, Call, Embed, LocalFactory, Reply, Request};
use bantam_engine::ModelPool;
use bantam_store::Store;
use futures::future::BoxFuture;

pub use chat::{chat_generate, collect_with_retries};
pub use embeddings::Embedders;
pub use featurise::{features_model, featuriser, FeaturiserError, LAST_PREFIX, MEAN_PREFIX};
pub use heads::is_head as is_classifier_model;
pub use resolver::{EngineOverrides, StoreResolver};

/// What local backends share: the engine pool, the store and their settings.
#[derive(Clone)]
pub struct Local {
    /// Loaded generation engines.
    pub pool: Arc<ModelPool>,
    /// The model store (embedding models, featurisers).
    pub store: Store,
    /// Loaded embedding models.
    pub embedders: Arc<Embedders>,
    /// Retries of a non-streamed structured output cut short or failing validation.
    pub structured_retries: u32,
    /// Threads of each embedding model (0 = physical cores).
    pub embed_threads: u32,
    /// Longest input `/v1/summarize` takes, in characters (summarising in parts is
    /// linear in the input, but not free).
    pub max_summarize_chars: usize,
    /// Loaded classifier models (`bantam tune classify`).
    pub heads: Arc<heads::Heads>,
}

/// Default of [`Local::max_summarize_chars`]: about 250k tokens of text.
pub const MAX_SUMMARIZE_CHARS: usize = 1_000_000;

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("structured_retries", &self.structured_retries)
            .field("embed_threads", &self.embed_threads)
            .finish()
    }
}

impl Local {
    /// Local backends over `store` for a server: a model pool with `pool`'s limits
    /// whose engines take the defaults, each model's stored options and then
    /// `engine`. Names resolve to the store's models, and to files only where the
    /// operator named them (`files`: `--preload` entries, declared backends' models).
    pub fn open(
        store: Store,
        engine: EngineOverrides,
        pool: bantam_engine::PoolConfig,
        files: Vec<String>,
        structured_retries: u32,
        embed_threads: u32,
    ) -> Self {
        let resolver = StoreResolver::new(
            store.clone(),
            bantam_engine::EngineConfig::default(),
            engine,
        )
        .store_only(files);
        let pool = Arc::new(ModelPool::new(Arc::new(resolver), pool));
        Self::new(pool, store, structured_retries, embed_threads)
    }

    /// Local backends over `pool` and `store`.
    pub fn new(
        pool: Arc<ModelPool>,
        store: Store,
        structured_retries: u32,
        embed_threads: u32,
    ) -> Self {
        Self {
            pool,
            embedders: Arc::new(Embedders::new(store.clone(), embed_threads)),
            heads: Arc::new(heads::Heads::new(store.clone(), embed_threads)),
            store,
            structured_retries,
            embed_threads,
            max_summarize_chars: MAX_SUMMARIZE_CHARS,
        }
    }

    /// The backend `name` running the store model `model`.
    pub fn backend(&self, name: &str, model: &str) -> LocalBackend {
        LocalBackend {
            name: name.to_string(),
            model: model.to_string(),
            local: self.clone(),
        }
    }
}

impl LocalFactory for Local {
    fn local(&self, name: &str, model: &str) -> Arc<dyn Backend> {
        Arc::new(self.backend(name, model))
    }

    fn featuriser(&self, name: &str) -> Result<Arc<dyn Embed>, String> {
        let mut last = 0;
        let mut progress = |done: usize, total: usize| {
            // A line every tenth of the vocabulary.
            if done * 10 / total.max(1) > last {
                last = done * 10 / total.max(1);
                tracing::info!(
                    model = name,
                    done,
                    total,
                    "distilling static token embeddings"
                );
            }
        };
        featurise::featuriser(&self.store, name, self.embed_threads, &mut progress)
            .map_err(|e| e.to_string())
    }
}

/// A model of the local store as a backend.
#[derive(Clone)]
pub struct LocalBackend {
    name: String,
    model: String,
    local: Local,
}

impl LocalBackend {
    /// Answer one validated request with this backend's model (the request's own
    /// `model` is what the answer reports).
    pub async fn answer(&self, req: Request) -> Result<Reply, BackendError> {
        let l = &self.local;
        let name = self.name.as_str();
        if let Some(m) = l.store.get(&self.model).ok().filter(heads::is_head) {
            return match req {
                Request::Classify(r) => Ok(Reply::Full(stream::to_value(
                    &l.heads.classify(name, m, &r).await?,
                ))),
                other => Err(BackendError::Invalid {
                    backend: name.to_string(),
                    param: Some("model".into()),
                    code: Some("not_a_generative_model".into()),
                    message: format!(
                        "{} is a classifier (bantam tune classify); it answers /v1/classify only, not {}",
                        self.model,
                        other.endpoint()
                    ),
                }),
            };
        }
        match req {
            Request::Chat(r) => {
                let engine = l
                    .pool
                    .get(&self.model)
                    .await
                    .map_err(|e| error::engine(name, e))?;
                chat::chat(&engine, name, l.structured_retries, &r).await
            }
            Request::Completion(r) => {
                let engine = l
                    .pool
                    .get(&self.model)
                    .await
                    .map_err(|e| error::engine(name, e))?;
                completions::completions(&engine, name, &r).await
            }
            Request::Embed(r) => l.embedders.embed(name, &self.model, &r).await,
            Request::Summarize(r) if r.input.len() > l.max_summarize_chars => {
                Err(BackendError::invalid(
                    name,
                    Some("input"),
                    format!(
                        "the input has {} characters; this server summarises at most {} (its max_summarize_chars); split the text",
                        r.input.len(),
                        l.max_summarize_chars
                    ),
                ))
            }
            other => tasks::task(&l.pool, name, &self.model, &other).await,
        }
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn call(&self, call: Call) -> BoxFuture<'_, Result<Reply, BackendError>> {
        Box::pin(async move {
            // A panic while answering is a 500 for this request, never the end of
            // the process.
            match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                self.answer(call.request),
            ))
            .await
            {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!(backend = %self.name, "answering a request panicked");
                    Err(BackendError::internal(
                        &self.name,
                        "internal error while answering (logged on the server)",
                    ))
                }
            }
        })
    }
}

/// The OpenAI `usage` object of an engine answer (`compute_ms`: Bantam's extension,
/// the engine time attributed to the request).
pub(crate) fn usage_body(u: &bantam_types::generate::Usage) -> bantam_types::openai::UsageBody {
    bantam_types::openai::UsageBody {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
        prompt_tokens_details: Some(bantam_types::openai::PromptTokensDetails {
            cached_tokens: u.cached_tokens,
        }),
        compute_ms: Some(u.compute_us as f64 / 1e3),
    }
}
