//! Engine and pool configuration (one typed struct each; the CLI fills them from
//! flags, `BANTAM_*` environment variables and the TOML file).

use std::time::Duration;

use bantam_llama::FlashAttention;
use serde::{Deserialize, Serialize};

/// How one loaded model is served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Concurrent sequences decoded together (continuous-batching slots).
    pub parallel: u32,
    /// Context length per sequence (prompt + output); 0 = the model's training
    /// context, capped at 4096.
    pub ctx_size: u32,
    /// Tokens per decode step (prompt chunks and decode tokens together).
    pub batch_size: u32,
    /// Threads; 0 = the number of physical cores.
    pub threads: u32,
    /// Flash attention: "auto", "on" or "off" (off measured faster on CPU here).
    pub flash_attention: FlashAttnSetting,
    /// One KV buffer shared by all slots (cheap prefix sharing, but every token
    /// attends over all cached cells).
    pub kv_unified: bool,
    /// Requests that may wait for a slot before new ones get 429.
    pub max_queue: u32,
    /// Memory-map the weights.
    pub mmap: bool,
    /// Reuse the KV cache of the longest cached prompt prefix.
    pub prefix_cache: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            // Four slots of 4096 tokens: ~0.4 s cold start for SmolLM2 here (the KV
            // cache is allocated and cleared up front; 8 x 4096 took ~0.7 s).
            parallel: 4,
            ctx_size: 0,
            batch_size: 512,
            threads: 0,
            flash_attention: FlashAttnSetting::Off,
            kv_unified: false,
            max_queue: 64,
            mmap: true,
            prefix_cache: true,
        }
    }
}

/// Flash attention setting as written in config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttnSetting {
    /// llama.cpp decides.
    Auto,
    /// On.
    On,
    /// Off.
    #[default]
    Off,
}

impl From<FlashAttnSetting> for FlashAttention {
    fn from(v: FlashAttnSetting) -> Self {
        match v {
            FlashAttnSetting::Auto => FlashAttention::Auto,
            FlashAttnSetting::On => FlashAttention::On,
            FlashAttnSetting::Off => FlashAttention::Off,
        }
    }
}

impl std::str::FromStr for FlashAttnSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" | "true" => Ok(Self::On),
            "off" | "false" => Ok(Self::Off),
            _ => Err(format!(
                "flash attention must be auto, on or off, not {s:?}"
            )),
        }
    }
}

/// How many models stay loaded and for how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Most models loaded at once; the least recently used idle one is unloaded first.
    pub max_loaded: usize,
    /// Unload a model after this long without requests (seconds; 0 = never).
    pub keep_alive_secs: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_loaded: 3,
            keep_alive_secs: 300,
        }
    }
}

impl PoolConfig {
    /// Keep-alive as a duration (`None` = forever).
    pub fn keep_alive(&self) -> Option<Duration> {
        (self.keep_alive_secs > 0).then(|| Duration::from_secs(self.keep_alive_secs))
    }
}

/// Number of physical CPU cores (SMT siblings counted once), at least 1.
pub fn physical_cores() -> u32 {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::HashSet::new();
    let mut phys = String::new();
    for line in info.lines() {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "physical id" => phys = v.trim().to_string(),
                "core id" => {
                    cores.insert((phys.clone(), v.trim().to_string()));
                }
                _ => {}
            }
        }
    }
    // Never more threads than the CPUs this process may run on (cgroups, taskset).
    let n = if cores.is_empty() {
        logical
    } else {
        cores.len() as u32
    };
    n.min(logical).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_cores_is_sane() {
        let n = physical_cores();
        assert!(n >= 1);
        assert!(n <= std::thread::available_parallelism().unwrap().get() as u32);
    }

    #[test]
    fn config_rejects_unknown_keys() {
        assert!(toml_like(r#"{"parallel": 2}"#).is_ok());
        assert!(toml_like(r#"{"paralel": 2}"#).is_err());
    }

    fn toml_like(s: &str) -> Result<EngineConfig, serde_json::Error> {
        serde_json::from_str(s)
    }
}
