//! Shared server state and the store-backed model resolver.

use std::sync::Arc;
use std::time::SystemTime;

use bantam_engine::config::EngineOverrides;
use bantam_engine::{ModelPool, PoolConfig};
use bantam_local::Local;
use bantam_router::{ConfigError, Ledger, Router, RoutingConfig};
use bantam_store::Store;
use serde::{Deserialize, Serialize};

/// The server's resolved configuration ([`crate::ServeSettings::load`] makes it
/// from flags, `BANTAM_*` variables and the TOML file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Models to load at start-up.
    pub preload: Vec<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Seconds to wait for running requests on shutdown.
    pub shutdown_grace_secs: u64,
    /// Most client connections at once (further clients wait until one closes).
    pub max_connections: usize,
    /// A connection without a request in flight for this long is closed (idle
    /// keep-alive, or request headers sent too slowly), and so is one whose client
    /// has not read any of its answer for this long.
    pub idle_timeout_secs: u64,
    /// Seconds a request body may take to arrive after its headers (a slower one is
    /// a 408).
    pub body_timeout_secs: u64,
    /// Non-streamed structured outputs cut short by `max_tokens` (small models can
    /// loop inside a string) or failing validation are generated again this many
    /// times, with a growing repetition penalty, before the request fails.
    pub structured_retries: u32,
    /// Engine settings for every model (over each model's stored options).
    pub engine: EngineOverrides,
    /// Threads of each embedding model (learned routes, `/v1/embeddings`; 0 =
    /// physical cores). Default 1: embeddings run beside the generation engines, and
    /// two multi-threaded llama.cpp computations on the same cores slow each other
    /// down many times over (measured on 2 cores: a learned route embedding with 2
    /// threads beside a 2-thread engine served 0.19× the requests/s of a direct call;
    /// with 1 thread, 0.99×).
    pub embed_threads: u32,
    /// How many models stay loaded.
    pub pool: PoolConfig,
    /// Longest `/v1/summarize` input, in characters.
    pub max_summarize_chars: usize,
    /// Declared backends: local models and OpenAI-compatible upstreams.
    pub backends: Vec<bantam_router::BackendConfig>,
    /// Routes: virtual model names whose policy picks a backend per request.
    pub routes: Vec<bantam_router::RouteConfig>,
    /// The cost ledger.
    pub usage: bantam_router::UsageConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            preload: Vec::new(),
            max_body_bytes: 32 << 20,
            shutdown_grace_secs: 30,
            max_connections: 1024,
            idle_timeout_secs: 60,
            body_timeout_secs: 60,
            structured_retries: 2,
            engine: EngineOverrides::default(),
            embed_threads: 1,
            pool: PoolConfig::default(),
            max_summarize_chars: bantam_local::MAX_SUMMARIZE_CHARS,
            backends: Vec::new(),
            routes: Vec::new(),
            usage: bantam_router::UsageConfig::default(),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Loaded engines.
    pub pool: Arc<ModelPool>,
    /// The model store (for `/v1/models`).
    pub store: Store,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Start time.
    pub started: SystemTime,
    /// In-flight requests, for a shutdown that lets them finish.
    pub drain: Arc<crate::drain::Drain>,
    /// Routes, backends and the cost ledger; every chat and completions request
    /// goes through it.
    pub router: Arc<Router>,
    /// Local backends (the engine pool, embedding models, featurisers).
    pub local: Local,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish()
    }
}

impl AppState {
    /// State over a store with the given settings; upstream URLs and keys come from
    /// the process environment.
    pub fn new(store: Store, config: ServerConfig) -> Result<Self, ConfigError> {
        Self::with_env(store, config, &|k| std::env::var(k).ok())
    }

    /// As [`AppState::new`], reading environment variables through `env`.
    pub fn with_env(
        store: Store,
        config: ServerConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // The files a client may name: those the operator named.
        let files: Vec<String> = config
            .preload
            .iter()
            .chain(
                config
                    .backends
                    .iter()
                    .filter(|b| b.kind == bantam_router::BackendKind::Local)
                    .map(|b| &b.model),
            )
            .cloned()
            .collect();
        let mut local = Local::open(
            store.clone(),
            config.engine.clone(),
            config.pool.clone(),
            files,
            config.structured_retries,
            config.embed_threads,
        );
        local.max_summarize_chars = config.max_summarize_chars;
        let pool = local.pool.clone();
        let routing = RoutingConfig {
            backends: config.backends.clone(),
            routes: config.routes.clone(),
            usage: config.usage.clone(),
        };
        let ledger = if config.usage.enabled {
            let path = ledger_path(&store, &config);
            Some(Ledger::open(&path).map_err(|e| ConfigError(e.to_string()))?)
        } else {
            None
        };
        let router = Router::new(&routing, Arc::new(local.clone()), ledger, env)?;
        Ok(Self {
            pool,
            store,
            config: Arc::new(config),
            started: SystemTime::now(),
            drain: Arc::default(),
            router: Arc::new(router),
            local,
        })
    }
}

/// Where the cost ledger lives: `[usage] path`, else `$BANTAM_HOME/usage.db`.
pub fn ledger_path(store: &Store, config: &ServerConfig) -> std::path::PathBuf {
    config
        .usage
        .path
        .clone()
        .unwrap_or_else(|| store.home().join("usage.db"))
}
