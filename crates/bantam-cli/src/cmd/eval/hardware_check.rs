//! `bantam eval --hardware`: one local model measured on this machine.

use std::path::Path;

use anyhow::Result;
use bantam_engine::{Engine, EngineConfig, ModelResolver};
use bantam_eval::hardware;
use bantam_local::StoreResolver;
use bantam_store::Store;
use serde_json::{json, Map, Value};

use super::EvalArgs;

/// Tokens each request of the hardware check generates.
const HARDWARE_GEN_TOKENS: u32 = 64;
/// bench's prefill test length in the hardware check.
const HARDWARE_BENCH_PROMPT: usize = 512;
/// bench's decode test length in the hardware check.
const HARDWARE_BENCH_GEN: u32 = 128;

/// The hardware check of one local model: time to first token, latency and peak
/// memory over the fixed prompts (prefix cache off, one request at a time), then
/// bench's prefill and decode speed with the model's stored flash-attention setting.
pub(super) fn hardware_check(
    home: &Path,
    model: &str,
    a: &EvalArgs,
    rt: &tokio::runtime::Runtime,
) -> Result<Map<String, Value>> {
    eprintln!("{model}: measuring on this machine (hardware check)…");
    let store = Store::open(home)?;
    let defaults = EngineConfig {
        parallel: 1,
        ..EngineConfig::default()
    };
    let mut resolved = StoreResolver::new(store, defaults, Default::default())
        .resolve(model)
        .map_err(anyhow::Error::from)?;
    resolved.config.parallel = 1;
    if let Some(t) = a.threads {
        resolved.config.threads = t;
    }
    let mut cfg = resolved.config.clone();
    // Every request computes its whole prompt, so repeats measure the same work.
    cfg.prefix_cache = false;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    resolved.config = cfg.clone();
    let engine = Engine::load_resolved(&resolved, None, None)?;
    let timings = rt.block_on(hardware::serve_prompts(
        &engine,
        &hardware::PROMPTS,
        HARDWARE_GEN_TOKENS,
        a.hardware_reps,
    ))?;
    let peak = super::peak_rss_mb();
    let threads = engine.info().threads;
    drop(engine);
    let fa = resolved.config.flash_attention;
    let plan = crate::cmd::bench::Plan {
        prompt_tokens: HARDWARE_BENCH_PROMPT,
        gen_tokens: HARDWARE_BENCH_GEN,
        reps: a.hardware_reps,
        threads: a.threads,
        parallel: 0,
        kv_unified: false,
    };
    let measured = crate::cmd::bench::measure(&resolved, &[fa], &plan)?;
    let mut s = hardware::summarize(&timings);
    if let Some(m) = measured.first() {
        s.insert("prefill_tok_s".into(), json!(m.prefill));
        s.insert("decode_tok_s".into(), json!(m.decode));
    }
    if peak > 0.0 {
        s.insert("peak_rss_mb".into(), json!(peak));
    }
    s.insert("bench_prompt_tokens".into(), json!(HARDWARE_BENCH_PROMPT));
    s.insert("bench_gen_tokens".into(), json!(HARDWARE_BENCH_GEN));
    s.insert("bench_reps".into(), json!(a.hardware_reps));
    s.insert("flash_attention".into(), serde_json::to_value(fa)?);
    s.insert("threads".into(), json!(threads));
    Ok(s)
}
