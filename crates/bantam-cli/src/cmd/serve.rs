//! `bantam serve`: settings from flags, `BANTAM_*` environment variables and a TOML
//! file (in that order of precedence), then the HTTP server.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bantam_engine::config::FlashAttnSetting;
use bantam_server::{AppState, ServerConfig};
use bantam_store::Store;
use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see examples/bantam.toml).
    #[arg(long, env = "BANTAM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, env = "BANTAM_HOST")]
    pub host: Option<String>,
    /// Port (0 picks a free one; the chosen address is printed).
    #[arg(long, short, env = "BANTAM_PORT")]
    pub port: Option<u16>,
    /// Load these models at start-up (repeatable).
    #[arg(long, env = "BANTAM_PRELOAD", value_delimiter = ',')]
    pub preload: Vec<String>,
    /// Concurrent sequences per model (continuous-batching slots).
    #[arg(long, env = "BANTAM_PARALLEL")]
    pub parallel: Option<u32>,
    /// Context length per request (0 = the model's, capped at 4096).
    #[arg(long, env = "BANTAM_CTX_SIZE")]
    pub ctx_size: Option<u32>,
    /// Threads (0 = physical cores).
    #[arg(long, env = "BANTAM_THREADS")]
    pub threads: Option<u32>,
    /// Threads of each embedding model (learned routes, /v1/embeddings; 0 = physical
    /// cores). Default 1, so embeddings do not fight the generation engines for cores.
    #[arg(long, env = "BANTAM_EMBED_THREADS")]
    pub embed_threads: Option<u32>,
    /// Tokens per decode step.
    #[arg(long, env = "BANTAM_BATCH_SIZE")]
    pub batch_size: Option<u32>,
    /// Flash attention: auto, on or off.
    #[arg(long, env = "BANTAM_FLASH_ATTENTION")]
    pub flash_attention: Option<FlashAttnSetting>,
    /// Share one KV buffer across slots.
    #[arg(long, env = "BANTAM_KV_UNIFIED")]
    pub kv_unified: Option<bool>,
    /// Requests that may wait for a slot before 429.
    #[arg(long, env = "BANTAM_MAX_QUEUE")]
    pub max_queue: Option<u32>,
    /// Disable prompt-prefix reuse.
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Seconds an idle model stays loaded (0 = forever).
    #[arg(long, env = "BANTAM_KEEP_ALIVE")]
    pub keep_alive: Option<u64>,
    /// Most models loaded at once.
    #[arg(long, env = "BANTAM_MAX_LOADED")]
    pub max_loaded: Option<usize>,
    /// Retries of a non-streamed structured output cut short by max_tokens or failing
    /// validation (with a growing repetition penalty) before the request fails.
    #[arg(long, env = "BANTAM_STRUCTURED_RETRIES")]
    pub structured_retries: Option<u32>,
    /// The cost ledger (SQLite; default BANTAM_HOME/usage.db).
    #[arg(long, env = "BANTAM_USAGE_DB", value_name = "FILE")]
    pub usage_db: Option<PathBuf>,
}

/// Resolve the final configuration.
pub fn resolve(a: &ServeArgs) -> Result<ServerConfig> {
    let mut cfg: ServerConfig = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config file {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing config file {}", p.display()))?
        }
        None => ServerConfig::default(),
    };
    if let Some(v) = &a.host {
        cfg.host.clone_from(v);
    }
    if let Some(v) = a.port {
        cfg.port = v;
    }
    if !a.preload.is_empty() {
        cfg.preload.clone_from(&a.preload);
    }
    if let Some(v) = a.embed_threads {
        cfg.embed_threads = v;
    }
    let e = &mut cfg.engine;
    if let Some(v) = a.parallel {
        e.parallel = v;
    }
    if let Some(v) = a.ctx_size {
        e.ctx_size = v;
    }
    if let Some(v) = a.threads {
        e.threads = v;
    }
    if let Some(v) = a.batch_size {
        e.batch_size = v;
    }
    if let Some(v) = a.flash_attention {
        e.flash_attention = v;
    }
    if let Some(v) = a.kv_unified {
        e.kv_unified = v;
    }
    if let Some(v) = a.max_queue {
        e.max_queue = v;
    }
    if a.no_prefix_cache {
        e.prefix_cache = false;
    }
    if let Some(v) = a.keep_alive {
        cfg.pool.keep_alive_secs = v;
    }
    if let Some(v) = a.max_loaded {
        cfg.pool.max_loaded = v;
    }
    if let Some(v) = a.structured_retries {
        cfg.structured_retries = v;
    }
    if let Some(v) = &a.usage_db {
        cfg.usage.path = Some(v.clone());
    }
    Ok(cfg)
}

pub fn serve(home: &Path, a: ServeArgs) -> Result<()> {
    let cfg = resolve(&a)?;
    let store = Store::open(home)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Upstream clients need the runtime; configuration errors stop here, before
    // the port opens.
    let state = {
        let _guard = rt.enter();
        AppState::new(store, cfg)?
    };
    rt.block_on(async move {
        // Register the handlers before the port opens: a signal that arrives before
        // registration would kill the process without a graceful shutdown.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        bantam_server::serve(state, shutdown).await
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        a: ServeArgs,
    }

    #[test]
    fn example_config_parses_and_flags_override_it() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bantam.toml");
        let w = Wrap::try_parse_from(["x", "--config", file, "--port", "9999", "--parallel", "2"])
            .unwrap();
        let cfg = resolve(&w.a).unwrap();
        assert_eq!(cfg.port, 9999, "flag wins");
        assert_eq!(cfg.engine.parallel, 2, "flag wins");
        assert_eq!(cfg.engine.ctx_size, 4096, "from the file");
        assert_eq!(cfg.pool.max_loaded, 2, "from the file");
        assert_eq!(cfg.preload, vec!["smollm2:135m".to_string()]);
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let dir = std::env::temp_dir().join(format!("bantam-cfg-{}", std::process::id()));
        std::fs::write(&dir, "[engine]\nparalel = 3\n").unwrap();
        let w = Wrap::try_parse_from(["x", "--config", dir.to_str().unwrap()]).unwrap();
        let err = format!("{:#}", resolve(&w.a).unwrap_err());
        assert!(err.contains("paralel"), "{err}");
        let _ = std::fs::remove_file(dir);
    }
}
