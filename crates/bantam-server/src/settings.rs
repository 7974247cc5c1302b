//! `bantam serve`'s settings: one struct that is both the command-line arguments
//! (with their `BANTAM_*` environment variables) and the TOML file, and one loader.
//!
//! Precedence, highest first: **flags > `BANTAM_*` environment variables > the TOML
//! file (`--config`) > each model's stored options > defaults**. Flags and variables
//! are merged by clap (a flag beats its variable); [`ServeSettings::load`] lays them
//! over the file; engine settings are laid over each model's stored options when the
//! model loads (`bantam_local::StoreResolver`). Backends, routes and the ledger's
//! settings come from the file only.

use std::path::{Path, PathBuf};

use bantam_engine::config::{EngineOverrides, PoolOverrides};
use bantam_router::{BackendConfig, RouteConfig, UsageConfig};
use serde::Deserialize;

use crate::state::ServerConfig;

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings (an unknown key, a wrong type).
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        #[source]
        source: toml::de::Error,
    },
}

/// Settings as given, every one optional (see the module docs for precedence).
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeSettings {
    /// TOML configuration file (see examples/bantam.toml).
    #[arg(long, env = "BANTAM_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to bind (default 127.0.0.1).
    #[arg(long, env = "BANTAM_HOST")]
    pub host: Option<String>,
    /// Port (default 8080; 0 picks a free one, and the chosen address is printed).
    #[arg(long, short, env = "BANTAM_PORT")]
    pub port: Option<u16>,
    /// Load these models at start-up (repeatable, or comma-separated).
    #[arg(long, env = "BANTAM_PRELOAD", value_delimiter = ',')]
    pub preload: Option<Vec<String>>,
    /// Largest request body in bytes.
    #[arg(long, env = "BANTAM_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds running requests may take to finish after SIGTERM.
    #[arg(long, env = "BANTAM_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Most client connections at once (default 1024; further clients wait).
    #[arg(long, env = "BANTAM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a connection may go without a request in flight before it is closed
    /// (idle keep-alive, slow headers), or without its client reading any of the
    /// answer (default 60).
    #[arg(long, env = "BANTAM_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a request body may take to arrive once its headers have (default 60);
    /// a slower one is answered 408 and its connection closed.
    #[arg(long, env = "BANTAM_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Retries of a non-streamed structured output cut short by max_tokens or failing
    /// validation (with a growing repetition penalty) before the request fails.
    #[arg(long, env = "BANTAM_STRUCTURED_RETRIES")]
    pub structured_retries: Option<u32>,
    /// Threads of each embedding model (learned routes, /v1/embeddings; 0 = physical
    /// cores). Default 1, so embeddings do not fight the generation engines for cores.
    #[arg(long, env = "BANTAM_EMBED_THREADS")]
    pub embed_threads: Option<u32>,
    /// Longest `/v1/summarize` input, in characters (default 1000000).
    #[arg(long, env = "BANTAM_MAX_SUMMARIZE_CHARS")]
    pub max_summarize_chars: Option<usize>,
    /// Engine settings for every model (the `[engine]` table).
    #[command(flatten)]
    pub engine: EngineOverrides,
    /// How many models stay loaded (the `[pool]` table).
    #[command(flatten)]
    pub pool: PoolOverrides,
    /// The cost ledger (SQLite; default BANTAM_HOME/usage.db; the file's
    /// `[usage] path`).
    #[arg(long, env = "BANTAM_USAGE_DB", value_name = "FILE")]
    #[serde(skip)]
    pub usage_db: Option<PathBuf>,
    /// Declared backends (`[[backends]]`, file only).
    #[arg(skip)]
    pub backends: Vec<BackendConfig>,
    /// Routes (`[[routes]]`, file only).
    #[arg(skip)]
    pub routes: Vec<RouteConfig>,
    /// The ledger (`[usage]`, file only).
    #[arg(skip)]
    pub usage: Option<UsageConfig>,
}

impl ServeSettings {
    /// Parse a TOML file's text.
    pub fn from_toml(text: &str, path: &Path) -> Result<ServeSettings, SettingsError> {
        toml::from_str(text).map_err(|source| SettingsError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// These settings over `lower`'s (these win where both have a value).
    pub fn or(self, lower: ServeSettings) -> ServeSettings {
        ServeSettings {
            config: self.config.or(lower.config),
            host: self.host.or(lower.host),
            port: self.port.or(lower.port),
            preload: self.preload.or(lower.preload),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            shutdown_grace_secs: self.shutdown_grace_secs.or(lower.shutdown_grace_secs),
            max_connections: self.max_connections.or(lower.max_connections),
            idle_timeout_secs: self.idle_timeout_secs.or(lower.idle_timeout_secs),
            body_timeout_secs: self.body_timeout_secs.or(lower.body_timeout_secs),
            structured_retries: self.structured_retries.or(lower.structured_retries),
            embed_threads: self.embed_threads.or(lower.embed_threads),
            max_summarize_chars: self.max_summarize_chars.or(lower.max_summarize_chars),
            engine: self.engine.or(lower.engine),
            pool: self.pool.or(lower.pool),
            usage_db: self.usage_db.or(lower.usage_db),
            backends: if self.backends.is_empty() {
                lower.backends
            } else {
                self.backends
            },
            routes: if self.routes.is_empty() {
                lower.routes
            } else {
                self.routes
            },
            usage: self.usage.or(lower.usage),
        }
    }

    /// The configuration: these settings (flags and variables) over the file they
    /// name, over the defaults.
    pub fn load(self) -> Result<ServerConfig, SettingsError> {
        let file = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| SettingsError::Read {
                    path: p.clone(),
                    source,
                })?;
                Self::from_toml(&text, p)?
            }
            None => ServeSettings::default(),
        };
        Ok(self.or(file).resolve())
    }

    /// The configuration from these settings alone, over the defaults.
    pub fn resolve(self) -> ServerConfig {
        let d = ServerConfig::default();
        let mut usage = self.usage.unwrap_or(d.usage);
        if let Some(p) = self.usage_db {
            usage.path = Some(p);
        }
        ServerConfig {
            host: self.host.unwrap_or(d.host),
            port: self.port.unwrap_or(d.port),
            preload: self.preload.unwrap_or(d.preload),
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            shutdown_grace_secs: self.shutdown_grace_secs.unwrap_or(d.shutdown_grace_secs),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            idle_timeout_secs: self.idle_timeout_secs.unwrap_or(d.idle_timeout_secs),
            body_timeout_secs: self.body_timeout_secs.unwrap_or(d.body_timeout_secs),
            structured_retries: self.structured_retries.unwrap_or(d.structured_retries),
            engine: self.engine,
            embed_threads: self.embed_threads.unwrap_or(d.embed_threads),
            pool: self.pool.resolve(),
            max_summarize_chars: self.max_summarize_chars.unwrap_or(d.max_summarize_chars),
            backends: self.backends,
            routes: self.routes,
            usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bantam_engine::config::FlashAttnSetting;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        s: ServeSettings,
    }

    fn example() -> String {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bantam.toml").to_string()
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let w = Wrap::try_parse_from([
            "x",
            "--config",
            &example(),
            "--port",
            "9999",
            "--parallel",
            "2",
            "--flash-attention",
            "on",
        ])
        .unwrap();
        let cfg = w.s.load().unwrap();
        assert_eq!(cfg.port, 9999, "flag wins");
        assert_eq!(cfg.engine.parallel, Some(2), "flag wins");
        assert_eq!(
            cfg.engine.flash_attention,
            Some(FlashAttnSetting::On),
            "flag wins"
        );
        assert_eq!(cfg.engine.ctx_size, Some(4096), "from the file");
        assert_eq!(cfg.pool.max_loaded, 2, "from the file");
        assert_eq!(cfg.preload, vec!["smollm2:135m".to_string()]);
        assert_eq!(cfg.engine.kv_unified, None, "unset: each model's own");
        let d = Wrap::try_parse_from(["x"]).unwrap().s.load().unwrap();
        assert_eq!((d.port, d.engine.parallel), (8080, None), "defaults");
    }

    #[test]
    fn the_environment_sits_between_flags_and_the_file() {
        // Only this test sets this variable.
        std::env::set_var("BANTAM_MAX_QUEUE", "7");
        let env = Wrap::try_parse_from(["x", "--config", &example()]).unwrap();
        let flag = Wrap::try_parse_from(["x", "--config", &example(), "--max-queue", "9"]).unwrap();
        std::env::remove_var("BANTAM_MAX_QUEUE");
        assert_eq!(
            env.s.load().unwrap().engine.max_queue,
            Some(7),
            "env beats the file (64)"
        );
        assert_eq!(
            flag.s.load().unwrap().engine.max_queue,
            Some(9),
            "flag beats env"
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_them() {
        let e =
            ServeSettings::from_toml("[engine]\nparalel = 3\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("paralel"), "{e}");
        let e = ServeSettings::from_toml("prot = 1\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
    }
}
