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

impl EngineConfig {
    /// Settings within what this engine can run; `Err` names the setting to fix.
    pub fn check(&self) -> Result<(), String> {
        let bad = |k: &str, v: u64, lo: u64, hi: u64| {
            (!(lo..=hi).contains(&v)).then(|| format!("{k} = {v} is out of range ({lo}–{hi})"))
        };
        let problems = [
            bad("parallel", self.parallel.into(), 1, 256),
            bad("ctx_size", self.ctx_size.into(), 0, 1 << 20),
            bad("batch_size", self.batch_size.into(), 1, 1 << 16),
            bad("threads", self.threads.into(), 0, 1024),
            bad("max_queue", self.max_queue.into(), 0, 1 << 20),
        ];
        match problems.into_iter().flatten().next() {
            Some(p) => Err(p),
            None => Ok(()),
        }
    }
}

/// Engine settings an operator gave for every model — the `[engine]` table of
/// `bantam serve`'s TOML file, `BANTAM_*` variables and flags (one struct is all
/// three: with the `clap` feature it is also the command-line arguments).
///
/// Precedence, highest first: **flags > `BANTAM_*` environment variables > the TOML
/// file > the model's stored options** (`bantam config`, and the flash-attention
/// choice `bantam pull` measures) **> [`EngineConfig::default`]**. An operator's
/// explicit setting applies to every model; leave it unset to let each model's
/// stored value apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default, deny_unknown_fields)]
pub struct EngineOverrides {
    /// Concurrent sequences per model (continuous-batching slots).
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_PARALLEL"))]
    pub parallel: Option<u32>,
    /// Context length per request (0 = the model's, capped at 4096).
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_CTX_SIZE"))]
    pub ctx_size: Option<u32>,
    /// Tokens per decode step.
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_BATCH_SIZE"))]
    pub batch_size: Option<u32>,
    /// Threads (0 = physical cores, within the process's CPU quota).
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_THREADS"))]
    pub threads: Option<u32>,
    /// Flash attention: auto, on or off (default: each model's measured choice).
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_FLASH_ATTENTION"))]
    pub flash_attention: Option<FlashAttnSetting>,
    /// Share one KV buffer across slots (true/false).
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_KV_UNIFIED"))]
    pub kv_unified: Option<bool>,
    /// Requests that may wait for a slot before 429.
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_MAX_QUEUE"))]
    pub max_queue: Option<u32>,
    /// Memory-map the weights (true/false).
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_MMAP"))]
    pub mmap: Option<bool>,
    /// Reuse the KV cache of the longest cached prompt prefix (true/false).
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_PREFIX_CACHE"))]
    pub prefix_cache: Option<bool>,
}

impl EngineOverrides {
    /// These settings, with `lower`'s where these have none.
    pub fn or(self, lower: EngineOverrides) -> EngineOverrides {
        EngineOverrides {
            parallel: self.parallel.or(lower.parallel),
            ctx_size: self.ctx_size.or(lower.ctx_size),
            batch_size: self.batch_size.or(lower.batch_size),
            threads: self.threads.or(lower.threads),
            flash_attention: self.flash_attention.or(lower.flash_attention),
            kv_unified: self.kv_unified.or(lower.kv_unified),
            max_queue: self.max_queue.or(lower.max_queue),
            mmap: self.mmap.or(lower.mmap),
            prefix_cache: self.prefix_cache.or(lower.prefix_cache),
        }
    }

    /// Set every given field on `cfg`.
    pub fn apply(&self, cfg: &mut EngineConfig) {
        let o = self.clone();
        if let Some(v) = o.parallel {
            cfg.parallel = v;
        }
        if let Some(v) = o.ctx_size {
            cfg.ctx_size = v;
        }
        if let Some(v) = o.batch_size {
            cfg.batch_size = v;
        }
        if let Some(v) = o.threads {
            cfg.threads = v;
        }
        if let Some(v) = o.flash_attention {
            cfg.flash_attention = v;
        }
        if let Some(v) = o.kv_unified {
            cfg.kv_unified = v;
        }
        if let Some(v) = o.max_queue {
            cfg.max_queue = v;
        }
        if let Some(v) = o.mmap {
            cfg.mmap = v;
        }
        if let Some(v) = o.prefix_cache {
            cfg.prefix_cache = v;
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

/// Pool settings an operator gave (the `[pool]` table of the TOML file,
/// `BANTAM_*` variables, flags; with the `clap` feature also the command-line
/// arguments). Precedence: flags > environment > file > [`PoolConfig::default`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default, deny_unknown_fields)]
pub struct PoolOverrides {
    /// Most models loaded at once.
    #[cfg_attr(feature = "clap", arg(long, env = "BANTAM_MAX_LOADED"))]
    pub max_loaded: Option<usize>,
    /// Seconds an idle model stays loaded (0 = forever).
    #[cfg_attr(
        feature = "clap",
        arg(long = "keep-alive", env = "BANTAM_KEEP_ALIVE", value_name = "SECS")
    )]
    pub keep_alive_secs: Option<u64>,
}

impl PoolOverrides {
    /// These settings, with `lower`'s where these have none.
    pub fn or(self, lower: PoolOverrides) -> PoolOverrides {
        PoolOverrides {
            max_loaded: self.max_loaded.or(lower.max_loaded),
            keep_alive_secs: self.keep_alive_secs.or(lower.keep_alive_secs),
        }
    }

    /// The pool configuration: defaults with these settings applied.
    pub fn resolve(&self) -> PoolConfig {
        let d = PoolConfig::default();
        PoolConfig {
            max_loaded: self.max_loaded.unwrap_or(d.max_loaded),
            keep_alive_secs: self.keep_alive_secs.unwrap_or(d.keep_alive_secs),
        }
    }
}

impl PoolConfig {
    /// Keep-alive as a duration (`None` = forever).
    pub fn keep_alive(&self) -> Option<Duration> {
        (self.keep_alive_secs > 0).then(|| Duration::from_secs(self.keep_alive_secs))
    }
}

/// The default thread count: physical CPU cores (SMT siblings counted once), no more
/// than the CPUs this process may run on (its affinity mask) and no more than its
/// cgroup CPU quota (a container limited to 1.5 CPUs gets 1), at least 1.
///
/// Why not more: llama.cpp's worker threads spin while they wait for each other, so
/// a thread the scheduler cannot give a core to stalls every other one at each
/// step; on the 2-core development machine 32 tokens of SmolLM2 took 35–81 s
/// instead of 0.6 s when two threads shared the cores with a compiler
/// (`BENCHMARKS.md`, "Threads and other work on the same cores").
pub fn physical_cores() -> u32 {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .map(|info| cores_in_cpuinfo(&info))
        .filter(|&n| n > 0)
        .unwrap_or(logical);
    let quota = cgroup_cpu_quota(std::path::Path::new("/sys/fs/cgroup"))
        .map_or(u32::MAX, |q| (q.floor() as u32).max(1));
    cores.min(logical).min(quota).max(1)
}

/// Distinct (physical id, core id) pairs in `/proc/cpuinfo`.
fn cores_in_cpuinfo(info: &str) -> u32 {
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
    cores.len() as u32
}

/// CPUs the process's cgroup may use (quota / period), from cgroup v2's `cpu.max`
/// or v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us` under `root`; `None` without a
/// limit.
pub fn cgroup_cpu_quota(root: &std::path::Path) -> Option<f64> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
    let ratio = |quota: &str, period: &str| -> Option<f64> {
        let q: f64 = quota.trim().parse().ok()?;
        let p: f64 = period.trim().parse().ok()?;
        (q > 0.0 && p > 0.0).then_some(q / p)
    };
    if let Some(max) = read("cpu.max") {
        let mut it = max.split_whitespace();
        let quota = it.next()?;
        if quota == "max" {
            return None;
        }
        return ratio(quota, it.next().unwrap_or("100000"));
    }
    let quota = read("cpu/cpu.cfs_quota_us").or_else(|| read("cpu,cpuacct/cpu.cfs_quota_us"))?;
    let period = read("cpu/cpu.cfs_period_us").or_else(|| read("cpu,cpuacct/cpu.cfs_period_us"))?;
    ratio(&quota, &period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_quotas_v1_and_v2() {
        let dir = std::env::temp_dir().join(format!("bantam-cg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cpu")).unwrap();
        assert_eq!(cgroup_cpu_quota(&dir), None, "no files: no limit");
        std::fs::write(dir.join("cpu/cpu.cfs_quota_us"), "-1\n").unwrap();
        std::fs::write(dir.join("cpu/cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(cgroup_cpu_quota(&dir), None, "v1 unlimited");
        std::fs::write(dir.join("cpu/cpu.cfs_quota_us"), "250000\n").unwrap();
        assert_eq!(cgroup_cpu_quota(&dir), Some(2.5));
        std::fs::write(dir.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(cgroup_cpu_quota(&dir), None, "v2 wins: unlimited");
        std::fs::write(dir.join("cpu.max"), "150000 100000\n").unwrap();
        assert_eq!(cgroup_cpu_quota(&dir), Some(1.5));
        std::fs::remove_dir_all(&dir).unwrap();
        let info = "processor: 0\nphysical id: 0\ncore id: 0\n\nprocessor: 1\nphysical id: 0\ncore id: 0\n\nprocessor: 2\nphysical id: 0\ncore id: 1\n";
        assert_eq!(cores_in_cpuinfo(info), 2, "SMT siblings count once");
    }

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
