//! [`ModelPool`]: several models loaded at once, on demand, unloaded when idle.
//!
//! A request for a model that is not loaded loads it (once, however many requests
//! ask at the same time). When more than `max_loaded` models would be resident, the
//! least recently used one without running requests is unloaded; a background reaper
//! also unloads models idle for longer than `keep_alive`. Requests hold an
//! `Arc<Engine>`, so an engine is only torn down after its last request ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use bantam_llama::Model;

use tokio::sync::OnceCell;

use crate::config::{EngineConfig, PoolConfig};
use crate::{Engine, EngineError, ModelInfo};

/// A model name resolved to a file and its stored settings.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// Canonical name (`smollm2:135m`).
    pub name: String,
    /// GGUF path.
    pub path: PathBuf,
    /// Chat template stored with the model, if any.
    pub template: Option<String>,
    /// Engine settings for this model (defaults merged with its stored options).
    pub config: EngineConfig,
    /// A LoRA adapter applied over `path` (the base model's file): the model is
    /// an adapter from `bantam tune lora`.
    pub adapter: Option<PathBuf>,
}

/// Turns model names into files (implemented over the model store).
pub trait ModelResolver: Send + Sync {
    /// Resolve a name; `Err(EngineError::Load)` with a helpful reason if unknown.
    fn resolve(&self, name: &str) -> Result<ResolvedModel, EngineError>;
}

type Cell = Arc<OnceCell<Arc<Engine>>>;

/// Loaded engines by canonical name.
pub struct ModelPool {
    resolver: Arc<dyn ModelResolver>,
    cfg: PoolConfig,
    engines: Mutex<HashMap<String, Cell>>,
    /// Loaded weights by file, shared by the engines of a base and its adapters.
    weights: Mutex<HashMap<PathBuf, Weak<Model>>>,
    /// One turn lock per file: the engines of a base and its adapters decode in
    /// turn rather than at once (see `bantam_llama::ContextParams::turn`).
    turns: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

impl std::fmt::Debug for ModelPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelPool").field("cfg", &self.cfg).finish()
    }
}

impl ModelPool {
    /// A pool over `resolver`.
    pub fn new(resolver: Arc<dyn ModelResolver>, cfg: PoolConfig) -> Self {
        Self {
            resolver,
            cfg,
            engines: Mutex::new(HashMap::new()),
            weights: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
        }
    }

    /// The engine for `name`, loading it if needed.
    pub async fn get(&self, name: &str) -> Result<Arc<Engine>, EngineError> {
        let resolved = self.resolver.resolve(name)?;
        let cell = {
            let mut map = self.engines.lock().expect("pool lock");
            map.entry(resolved.name.clone()).or_default().clone()
        };
        let engine = cell
            .get_or_try_init(|| async {
                let r = resolved.clone();
                // A base and its adapters share one copy of the weights.
                let shared = self
                    .weights
                    .lock()
                    .expect("pool lock")
                    .get(&r.path)
                    .and_then(Weak::upgrade);
                let turn = self
                    .turns
                    .lock()
                    .expect("pool lock")
                    .entry(r.path.clone())
                    .or_default()
                    .clone();
                let engine = tokio::task::spawn_blocking(move || {
                    Engine::load_resolved(&r, shared, Some(turn))
                })
                .await
                .map_err(|e| EngineError::Load {
                    model: resolved.name.clone(),
                    reason: e.to_string(),
                })??;
                let mut weights = self.weights.lock().expect("pool lock");
                weights.retain(|_, w| w.strong_count() > 0);
                weights.insert(resolved.path.clone(), Arc::downgrade(engine.model()));
                drop(weights);
                Ok::<_, EngineError>(Arc::new(engine))
            })
            .await?
            .clone();
        let victims = self.enforce_limit(&resolved.name);
        if !victims.is_empty() {
            // Joining an engine thread blocks: not on the async worker.
            tokio::task::spawn_blocking(move || drop(victims));
        }
        Ok(engine)
    }

    /// Load a model now (for `--preload`).
    pub async fn preload(&self, name: &str) -> Result<ModelInfo, EngineError> {
        Ok(self.get(name).await?.info().clone())
    }

    /// Remove the least recently used idle models beyond `max_loaded` from the pool;
    /// they unload when the returned handles drop.
    fn enforce_limit(&self, keep: &str) -> Vec<Cell> {
        let mut victims = Vec::new();
        let mut map = self.engines.lock().expect("pool lock");
        while map.len() > self.cfg.max_loaded.max(1) {
            let victim = map
                .iter()
                .filter(|(n, _)| n.as_str() != keep)
                .filter_map(|(n, c)| c.get().map(|e| (n.clone(), e.clone())))
                .filter(|(_, e)| e.inflight() == 0)
                .max_by_key(|(_, e)| e.idle_for())
                .map(|(n, _)| n);
            match victim {
                Some(n) => {
                    tracing::info!(model = %n, "unloading least recently used model");
                    victims.extend(map.remove(&n));
                }
                None => break,
            }
        }
        victims
    }

    /// Unload models idle for longer than the keep-alive. Returns their names.
    pub fn reap_idle(&self) -> Vec<String> {
        let Some(keep_alive) = self.cfg.keep_alive() else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        let mut map = self.engines.lock().expect("pool lock");
        let idle: Vec<String> = map
            .iter()
            .filter_map(|(n, c)| c.get().map(|e| (n, e)))
            .filter(|(_, e)| e.inflight() == 0 && e.idle_for() >= keep_alive)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &idle {
            tracing::info!(model = %n, "unloading idle model (keep-alive expired)");
            removed.extend(map.remove(n));
        }
        // Engines are joined here, outside the lock.
        drop(map);
        drop(removed);
        idle
    }

    /// Unload everything (shutdown).
    pub fn unload_all(&self) {
        self.engines.lock().expect("pool lock").clear();
    }

    /// Information about loaded models.
    pub fn loaded(&self) -> Vec<ModelInfo> {
        let map = self.engines.lock().expect("pool lock");
        let mut v: Vec<ModelInfo> = map
            .values()
            .filter_map(|c| c.get().map(|e| e.info().clone()))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Requests queued or running across all models.
    pub fn inflight(&self) -> usize {
        let map = self.engines.lock().expect("pool lock");
        map.values()
            .filter_map(|c| c.get().map(|e| e.inflight()))
            .sum()
    }
}
