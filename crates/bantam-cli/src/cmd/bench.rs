//! `bantam bench`: measure a model on this machine (prompt processing and generation
//! speed, like llama-bench's pp512/tg128) and choose its flash-attention setting.
//!
//! Settings are measured interleaved (off, on, off, on, …) on engines loaded side by
//! side, and medians compared, so drift in machine load does not favour one setting.
//! `bantam pull` and `bantam import` run a short version of this and store the choice
//! with the model.

use std::path::Path;

use anyhow::{bail, Result};
use bantam_engine::config::FlashAttnSetting;
use bantam_engine::{Engine, ModelResolver, ResolvedModel};
use bantam_local::StoreResolver;
use bantam_store::Store;
use bantam_types::generate::{GenerateEvent, GenerateRequest, Prompt, SamplingParams, Timings};
use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model name or .gguf path.
    pub model: String,
    /// Prompt length for the prefill test.
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens generated in the decode test.
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: u32,
    /// Repetitions per setting (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Threads (default: physical cores).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Flash attention settings to compare: off, on, or both.
    #[arg(long, default_value = "both")]
    pub flash_attention: String,
    /// Store the faster flash-attention setting with the model.
    #[arg(long)]
    pub apply: bool,
    /// Also measure aggregate decode over this many concurrent sequences (0 = skip).
    #[arg(long, default_value_t = 0)]
    pub parallel: u32,
    /// Share one KV buffer across sequences in the parallel test.
    #[arg(long)]
    pub kv_unified: bool,
}

/// Results for one flash-attention setting.
pub struct Measured {
    pub fa: FlashAttnSetting,
    pub prefill: f64,
    pub decode: f64,
    pub aggregate: Option<f64>,
}

/// What to measure.
pub struct Plan {
    pub prompt_tokens: usize,
    pub gen_tokens: u32,
    pub reps: usize,
    pub threads: Option<u32>,
    pub parallel: u32,
    pub kv_unified: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn request(tokens: Vec<i32>, max: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Tokens(tokens),
        max_tokens: Some(max),
        sampling: SamplingParams::greedy(),
        stop: Vec::new(),
        logprobs: None,
        ignore_eos: true,
        constraint: None,
    }
}

fn run_once(engine: &Engine, tokens: Vec<i32>, max: u32) -> Result<(Timings, u32)> {
    let mut s = engine.generate(request(tokens, max))?;
    while let Some(ev) = s.blocking_next() {
        if let GenerateEvent::Done { timings, usage, .. } = ev? {
            return Ok((timings, usage.completion_tokens));
        }
    }
    bail!("the engine stopped")
}

/// Aggregate tok/s of greedy requests decoding together.
fn run_parallel(engine: &Engine, prompts: Vec<Vec<i32>>, max: u32) -> Result<f64> {
    let start = std::time::Instant::now();
    let streams = prompts
        .into_iter()
        .map(|p| engine.generate(request(p, max)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = 0u64;
    for mut s in streams {
        while let Some(ev) = s.blocking_next() {
            if let GenerateEvent::Done { usage, .. } = ev? {
                total += u64::from(usage.completion_tokens);
            }
        }
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Deterministic pseudo-random token ids (so no cache helps).
struct Tokens {
    x: u64,
    n_vocab: u64,
}

impl Tokens {
    fn take(&mut self, n: usize) -> Vec<i32> {
        (0..n)
            .map(|_| {
                self.x ^= self.x << 13;
                self.x ^= self.x >> 7;
                self.x ^= self.x << 17;
                100 + (self.x % (self.n_vocab - 200)) as i32
            })
            .collect()
    }
}

/// Measure each setting, interleaved.
pub fn measure(
    resolved: &ResolvedModel,
    settings: &[FlashAttnSetting],
    plan: &Plan,
) -> Result<Vec<Measured>> {
    let mut engines = Vec::new();
    for &fa in settings {
        let mut cfg = resolved.config.clone();
        cfg.parallel = plan.parallel.max(1);
        cfg.kv_unified = plan.kv_unified;
        cfg.prefix_cache = false;
        cfg.flash_attention = fa;
        if let Some(t) = plan.threads {
            cfg.threads = t;
        }
        cfg.ctx_size = (plan.prompt_tokens as u32 + plan.gen_tokens + 16).max(256);
        let mut r = resolved.clone();
        r.config = cfg;
        engines.push(Engine::load_resolved(&r, None, None)?);
    }
    let mut toks = Tokens {
        x: 0x9e37_79b9_7f4a_7c15,
        n_vocab: engines[0].info().n_vocab as u64,
    };
    for e in &engines {
        run_once(e, toks.take(16), 4)?; // warm-up
    }
    let n = engines.len();
    let (mut pp, mut tg, mut agg) = (
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
    );
    for rep in 0..plan.reps {
        // Alternate which setting goes first.
        let order: Vec<usize> = if rep % 2 == 0 {
            (0..n).collect()
        } else {
            (0..n).rev().collect()
        };
        for &i in &order {
            let (t, _) = run_once(&engines[i], toks.take(plan.prompt_tokens), 1)?;
            pp[i].push(plan.prompt_tokens as f64 / (t.prefill_ms / 1000.0));
            let (t, k) = run_once(&engines[i], toks.take(8), plan.gen_tokens)?;
            tg[i].push(f64::from(k.saturating_sub(1)) / (t.decode_ms / 1000.0));
            if plan.parallel > 1 {
                let prompts = (0..plan.parallel).map(|_| toks.take(8)).collect();
                agg[i].push(run_parallel(&engines[i], prompts, plan.gen_tokens)?);
            }
        }
    }
    Ok(settings
        .iter()
        .enumerate()
        .map(|(i, &fa)| Measured {
            fa,
            prefill: median(pp[i].clone()),
            decode: median(tg[i].clone()),
            aggregate: (plan.parallel > 1).then(|| median(agg[i].clone())),
        })
        .collect())
}

/// The better setting: the one whose prefill and decode speed-ups multiply to more.
pub fn choose(results: &[Measured]) -> Option<FlashAttnSetting> {
    let off = results.iter().find(|m| m.fa == FlashAttnSetting::Off)?;
    let on = results.iter().find(|m| m.fa == FlashAttnSetting::On)?;
    let gain = (on.prefill / off.prefill) * (on.decode / off.decode);
    Some(if gain > 1.0 {
        FlashAttnSetting::On
    } else {
        FlashAttnSetting::Off
    })
}

fn name(fa: FlashAttnSetting) -> &'static str {
    match fa {
        FlashAttnSetting::On => "on",
        FlashAttnSetting::Off => "off",
        FlashAttnSetting::Auto => "auto",
    }
}

/// Short measurement after `pull`/`import`: store the faster setting with the model.
pub fn tune_after_install(store: &Store, model: &str) -> Result<()> {
    let resolver = StoreResolver::new(
        store.clone(),
        bantam_engine::EngineConfig::default(),
        bantam_engine::EngineOverrides::default(),
    );
    let resolved = resolver.resolve(model)?;
    // Sentence encoders do not generate: there is nothing to measure (the embedder
    // runs without flash attention).
    if bantam_store::gguf::GgufInfo::read(&resolved.path).is_ok_and(|i| i.is_embedding_model()) {
        return Ok(());
    }
    eprintln!("measuring flash attention on this machine (skip with --no-tune)…");
    let plan = Plan {
        prompt_tokens: 128,
        gen_tokens: 32,
        reps: 3,
        threads: None,
        parallel: 0,
        kv_unified: false,
    };
    let results = measure(
        &resolved,
        &[FlashAttnSetting::Off, FlashAttnSetting::On],
        &plan,
    )?;
    if let Some(best) = choose(&results) {
        let mut m = store.get(model)?;
        m.options.insert(
            "flash_attention".into(),
            serde_json::Value::String(name(best).into()),
        );
        store.write_manifest(&m)?;
        let fmt = |r: &Measured| format!("{} {:.0}/{:.0} tok/s", name(r.fa), r.prefill, r.decode);
        eprintln!(
            "flash_attention = {} (prefill/decode: {}; {}); change with `bantam config {model} --set flash_attention=on|off`",
            name(best),
            fmt(&results[0]),
            fmt(&results[1])
        );
    }
    Ok(())
}

pub fn bench(home: &Path, a: BenchArgs) -> Result<()> {
    let store = Store::open(home)?;
    let resolver = StoreResolver::new(
        store.clone(),
        bantam_engine::EngineConfig::default(),
        bantam_engine::EngineOverrides::default(),
    );
    let resolved = resolver.resolve(&a.model)?;
    let settings = match a.flash_attention.as_str() {
        "both" => vec![FlashAttnSetting::Off, FlashAttnSetting::On],
        one => vec![one.parse().map_err(anyhow::Error::msg)?],
    };
    let rt = bantam_engine::runtime_info();
    println!(
        "model {} | cpu kernels {} | threads {} | {} interleaved reps, medians",
        resolved.name,
        rt.cpu_variant.as_deref().unwrap_or("built in"),
        a.threads
            .unwrap_or_else(bantam_engine::config::physical_cores),
        a.reps
    );
    let plan = Plan {
        prompt_tokens: a.prompt_tokens,
        gen_tokens: a.gen_tokens,
        reps: a.reps.max(1),
        threads: a.threads,
        parallel: a.parallel,
        kv_unified: a.kv_unified,
    };
    let results = measure(&resolved, &settings, &plan)?;
    for m in &results {
        println!(
            "flash attention {:<4} prefill (pp{}) {:>8.1} tok/s   decode (tg{}) {:>7.1} tok/s",
            name(m.fa),
            a.prompt_tokens,
            m.prefill,
            a.gen_tokens,
            m.decode
        );
        if let Some(agg) = m.aggregate {
            println!(
                "    aggregate decode, {} sequences x {} tokens: {agg:.1} tok/s",
                a.parallel, a.gen_tokens
            );
        }
    }
    if let Some(best) = choose(&results) {
        println!("faster: flash_attention = {}", name(best));
        if a.apply {
            if a.model.ends_with(".gguf") {
                bail!("--apply needs an installed model name, not a path");
            }
            let mut m = store.get(&a.model)?;
            m.options.insert(
                "flash_attention".into(),
                serde_json::Value::String(name(best).into()),
            );
            store.write_manifest(&m)?;
            println!("stored flash_attention = {} for {}", name(best), m.name);
        }
    }
    Ok(())
}
