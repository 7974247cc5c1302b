//! `GET /health`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The server's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `ok` while the server accepts requests.
    pub status: String,
    /// Bantam's version.
    pub version: String,
    /// Seconds since start-up.
    pub uptime_secs: u64,
    /// Requests being served now.
    pub inflight: u64,
    /// Models loaded in memory.
    pub models_loaded: Vec<LoadedModel>,
    /// The CPU kernel variant llama.cpp chose at run time.
    pub cpu_backend: Option<String>,
}

/// A loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoadedModel {
    /// Its name.
    pub name: String,
    /// Context window, in tokens.
    pub ctx_size: u32,
    /// Sequences served at once.
    pub parallel: u32,
    /// Threads it decodes with.
    pub threads: u32,
    /// Seconds loading took.
    pub load_secs: f64,
}
