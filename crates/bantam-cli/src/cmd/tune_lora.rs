//! `bantam tune lora`: a LoRA adapter trained on the user's examples over a
//! store model, installed as a model that is served by name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bantam_engine::ChatTokenizer;
use bantam_lora::train::{EpochLoss, Observer, Outcome, StepReport};
use bantam_lora::TrainOptions;
use bantam_store::Store;
use bantam_tune::lora::{self as tl, DataFormat, Fields};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(Debug, Args)]
pub struct LoraArgs {
    /// Training data (JSONL): `{"messages": [...]}` conversations, `{"input", "output"}`
    /// (or `prompt`/`completion`) pairs, or labelled texts (`{"input", "expected"}`,
    /// JSONL or CSV) — these are rendered with `/v1/classify`'s prompt for the label set.
    pub data: PathBuf,
    /// The store model to adapt (LLaMA-family or Qwen2 architecture).
    #[arg(long)]
    pub base: String,
    /// Name of the adapter to install (e.g. `support:lora`); requests naming it
    /// are served by the base with the adapter applied.
    #[arg(long)]
    pub out: String,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// Layers to adapt: a comma-separated list of q, k, v, o, gate, up, down, or `all`.
    #[arg(long, default_value = "q,k,v,o")]
    pub targets: String,
    /// Peak learning rate (AdamW, linear decay to zero).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Passes over the training data.
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Tokens per optimizer step (examples are accumulated until they hold this many).
    #[arg(long, default_value_t = 1024)]
    pub batch_tokens: usize,
    /// Longest example in tokens (longer ones are cut; the count is reported).
    /// Memory grows with its square (attention kept for the backward pass):
    /// measured 5.2 GB for SmolLM2-135M and 9.3 GB for Qwen2.5-0.5B at 512.
    #[arg(long, default_value_t = 512)]
    pub max_seq: usize,
    /// Warm-up steps of the learning rate.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Validation data (same format); default: a seeded share of DATA.
    #[arg(long, value_name = "FILE")]
    pub val: Option<PathBuf>,
    /// Share held out for validation when --val is not given (none below 10 examples).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Seed of the adapter's initial values, the shuffling and the split: the same
    /// seed and data give the same adapter.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from the checkpoint a previous run of the same command left
    /// (Ctrl-C writes one; otherwise one is written every 20 steps and after
    /// each epoch, so a killed run loses at most 20 steps).
    #[arg(long)]
    pub resume: bool,
    /// Input field of pair and labelled data.
    #[arg(long, default_value = "input")]
    pub input_field: String,
    /// Answer field of pair data (default: output, completion, response or answer).
    #[arg(long)]
    pub output_field: Option<String>,
    /// Label field of labelled data.
    #[arg(long, default_value = "expected")]
    pub label_field: String,
    /// A prompt template (`[system]`/`[user]` lines and `{input}`, as `bantam
    /// eval --prompt-template`). Labelled data: a `/v1/classify` template
    /// (`{labels}` allowed) instead of the default instructions and label list.
    /// Input/output pairs: the messages around each input (`{schema}` allowed,
    /// with --schema). Serve and evaluate with the same template.
    #[arg(long, value_name = "FILE")]
    pub prompt_template: Option<PathBuf>,
    /// The JSON Schema a pair template's `{schema}` stands for (as `bantam eval
    /// --task extract --schema`).
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
}

struct Progress {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    epochs: usize,
}

impl Observer for Progress {
    fn on_step(&mut self, r: &StepReport) {
        if self.bar.length() != Some(r.total_steps as u64) {
            self.bar.set_length(r.total_steps as u64);
        }
        self.bar.set_position(r.step as u64);
        self.bar.set_message(format!(
            "epoch {}/{} loss {:.4} lr {:.1e} {:.0} tok/s",
            r.epoch + 1,
            self.epochs,
            r.loss,
            r.lr,
            r.tokens_per_sec
        ));
    }

    fn on_epoch(&mut self, e: &EpochLoss) {
        // A hidden bar (stderr not a terminal: logs, CI) prints nothing itself.
        let line = format!(
            "epoch {}: train loss {:.4}{}  ({:.0} tok/s)",
            e.epoch,
            e.train_loss,
            e.val_loss
                .map(|v| format!(", validation loss {v:.4}"))
                .unwrap_or_default(),
            e.tokens_per_sec
        );
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

pub fn lora(home: &Path, a: LoraArgs) -> Result<()> {
    let store = Store::open(home)?;
    bantam_store::ModelName::parse(&a.out).with_context(|| format!("--out {}", a.out))?;
    if !(0.0..0.9).contains(&a.val_fraction) {
        bail!("--val-fraction must be between 0 and 0.9");
    }
    if a.epochs == 0 || a.batch_tokens == 0 || a.max_seq < 2 {
        bail!("--epochs and --batch-tokens must be at least 1, --max-seq at least 2");
    }
    if !(a.lr > 0.0 && a.lr.is_finite()) {
        bail!("--lr must be a positive number");
    }
    let base = store.get(&a.base).with_context(|| {
        format!(
            "--base {}: not in the store (`bantam list` shows what is; `bantam pull` adds)",
            a.base
        )
    })?;
    if base.is_adapter() {
        bail!(
            "--base {} is itself an adapter; give its base model ({})",
            a.base,
            base.lineage.base_model.as_deref().unwrap_or("?")
        );
    }
    let arch = base.architecture.clone().unwrap_or_default();
    if !bantam_lora::SUPPORTED_ARCHS.contains(&arch.as_str()) {
        return Err(bantam_lora::LoraError::UnsupportedArch(arch).into());
    }
    let base_path = store.blob_path(&base);
    let targets = bantam_lora::parse_targets(&a.targets)?;
    let opts = TrainOptions {
        rank: a.rank,
        alpha: a.alpha,
        targets: targets.iter().map(|t| t.gguf_name().to_string()).collect(),
        lr: a.lr,
        epochs: a.epochs,
        batch_tokens: a.batch_tokens,
        seed: a.seed,
        weight_decay: a.weight_decay,
        max_grad_norm: 1.0,
        warmup_steps: a.warmup,
    };
    let prompt = match &a.prompt_template {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let schema: Option<serde_json::Value> = match &a.schema {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a JSON Schema", p.display()))?,
            )
        }
        None => None,
    };
    let fields = Fields {
        input: a.input_field.clone(),
        output: a.output_field.clone(),
        label: a.label_field.clone(),
        prompt: prompt.clone(),
        schema: schema.clone(),
    };
    let started = Instant::now();
    let tok = ChatTokenizer::load(&base_path, base.template.as_deref())?;
    let max_seq = a
        .max_seq
        .min(base.context_length.unwrap_or(u64::MAX) as usize);
    let prepared = tl::prepare(&tok, &a.base, &a.data, &fields, None, max_seq)?;
    let labels = match &prepared.format {
        DataFormat::Labels(l) => Some(l.clone()),
        _ => None,
    };
    let (train, val) = match &a.val {
        Some(p) => {
            let v = tl::prepare(&tok, &a.base, p, &fields, labels.as_deref(), max_seq)?;
            (prepared.examples.clone(), v.examples)
        }
        None => tl::split(prepared.examples.clone(), a.val_fraction, a.seed),
    };
    let train_tokens: usize = train.iter().map(|e| e.tokens.len()).sum();
    let answer_tokens: usize = train.iter().map(|e| e.target_count()).sum();
    eprintln!(
        "data: {} rows as {}, {} training examples ({train_tokens} tokens, {answer_tokens} learned), {} validation{}{}",
        prepared.rows,
        prepared.format.name(),
        train.len(),
        val.len(),
        if prepared.truncated > 0 { format!("; {} cut to {max_seq} tokens", prepared.truncated) } else { String::new() },
        if prepared.dropped > 0 { format!("; {} left out (no answer within {max_seq} tokens)", prepared.dropped) } else { String::new() },
    );
    let data_sha = bantam_tune::classify::data_sha256(&a.data)?;
    let fp = tl::fingerprint(&base.digest, &data_sha, &opts, max_seq);
    let ckpt = tl::checkpoint_dir(&store, &a.out);
    if a.resume && !ckpt.join("state.json").exists() {
        bail!(
            "--resume: no checkpoint at {}; run without --resume to start",
            ckpt.display()
        );
    }
    if !a.resume && ckpt.join("state.json").exists() {
        eprintln!("note: a checkpoint of an earlier run exists at {}; it is replaced (give --resume to continue it instead)", ckpt.display());
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping after this step and writing a checkpoint (Ctrl-C again to quit at once)");
        });
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "[{elapsed_precise}] [{bar:30}] {pos}/{len} steps, eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut progress = Progress {
        bar,
        stop,
        epochs: a.epochs,
    };
    eprintln!(
        "training LoRA r={} alpha={} on {} of {} ({}), {} epoch{}",
        a.rank,
        a.alpha,
        opts.targets.join(","),
        a.base,
        base.architecture.as_deref().unwrap_or("?"),
        a.epochs,
        if a.epochs == 1 { "" } else { "s" }
    );
    let trained = tl::train_adapter(
        &base_path,
        &train,
        &val,
        &opts,
        &fp,
        &ckpt,
        a.resume,
        &mut progress,
    )?;
    progress.bar.finish_and_clear();
    if trained.outcome == Outcome::Interrupted {
        bail!(
            "interrupted after step {}; the checkpoint is at {}: run the same command with --resume to continue",
            trained.steps,
            ckpt.display()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let training = json!({
        "method": "lora",
        "base_model": base.name,
        "base_digest": base.digest,
        "options": opts,
        "max_seq": max_seq,
        "trainable_parameters": trained.lora.parameter_count(),
        "data": {
            "path": a.data.display().to_string(),
            "sha256": data_sha,
            "rows": prepared.rows,
            "format": prepared.format.name(),
            "train_examples": train.len(),
            "val_examples": val.len(),
            "train_tokens": train_tokens,
            "truncated": prepared.truncated,
            "dropped": prepared.dropped,
        },
        "labels": labels,
        "prompt_template": prompt,
        "schema": schema,
        "initial_val_loss": trained.initial_val_loss,
        "curve": trained.curve,
        "steps": trained.steps,
        "seconds": (secs * 10.0).round() / 10.0,
    });
    let source = format!("bantam tune lora {} --base {}", a.data.display(), a.base);
    let m = tl::install_adapter(
        &store, &a.out, &base, &trained, training, &data_sha, &source,
    )?;
    let _ = std::fs::remove_dir_all(&ckpt);
    println!("| epoch | train loss | validation loss | tok/s |");
    println!("|---|---|---|---|");
    if let Some(v) = trained.initial_val_loss {
        println!("| 0 (base) | | {v:.4} | |");
    }
    for e in &trained.curve {
        println!(
            "| {} | {:.4} | {} | {:.0} |",
            e.epoch,
            e.train_loss,
            e.val_loss
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into()),
            e.tokens_per_sec
        );
    }
    println!(
        "installed {} (adapter over {}, {} trainable parameters, {:.1} MB, {} steps in {:.0} s)",
        m.name,
        base.name,
        trained.lora.parameter_count(),
        m.size as f64 / 1e6,
        trained.steps,
        secs
    );
    if let Some(l) = &labels {
        println!(
            "serve: /v1/classify {{\"model\": \"{}\", \"labels\": [{} labels as trained], \"input\": ...}}",
            m.name,
            l.len()
        );
    } else {
        println!(
            "serve: {{\"model\": \"{}\"}} on /v1/chat/completions",
            m.name
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The adapter to merge (a model of kind adapter, from `bantam tune lora`).
    pub adapter: String,
    /// Name to install the merged model under.
    #[arg(long)]
    pub out: String,
    /// Type of the merged model: f16 (default), f32, or a quantized type (q8_0,
    /// q6_k, q5_k_m, q4_k_m, …: the F16 merge is quantized and the cost reported).
    #[arg(long, default_value = "f16")]
    pub to: String,
    /// Threads (0 = physical cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
}

pub fn merge(home: &Path, a: MergeArgs) -> Result<()> {
    let store = Store::open(home)?;
    bantam_store::ModelName::parse(&a.out).with_context(|| format!("--out {}", a.out))?;
    let to = super::tune::quant_type(&a.to)?;
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(format!(
        "merging {} into its base ({})",
        a.adapter,
        to.name()
    ));
    let r = bantam_tune::merge::merge_adapter(
        &store,
        &a.adapter,
        &a.out,
        to,
        a.threads,
        bantam_tune::quantize::DEFAULT_TEXTS,
    );
    bar.finish_and_clear();
    let r = r?;
    println!(
        "merged {} ({} tensors adapted, rank {}, alpha {}) into {}: {} tensors, {:.1} MB, {:.0} s",
        a.adapter,
        r.report.adapted,
        r.report.rank,
        r.report.alpha,
        r.manifest.lineage.base_model.as_deref().unwrap_or("?"),
        r.report.tensors,
        r.manifest.size as f64 / 1e6,
        r.secs
    );
    if let Some(d) = &r.divergence {
        println!(
            "{} against the F16 merge on {} tokens: mean KL {:.5}, same top token {:.1}%, perplexity {:.3} -> {:.3}",
            to.name(),
            d.tokens,
            d.kl_mean,
            d.same_top * 100.0,
            d.ppl_source,
            d.ppl_other
        );
    }
    println!(
        "installed {} ({})",
        r.manifest.name,
        &r.manifest.digest[..19.min(r.manifest.digest.len())]
    );
    Ok(())
}
