//! `bantam tune classify`: a classifier model from labelled texts (a head over
//! frozen features, installed in the store, served by `/v1/classify`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bantam_api::features::{hashed, STATIC_PREFIX};
use bantam_learn::{MlpOptions, SoftmaxOptions};
use bantam_store::Store;
use bantam_tune::{load_examples, HeadKind, TuneOptions};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Subcommand)]
pub enum TuneCmd {
    /// Train a classifier model on labelled texts (JSONL or CSV) and install it.
    Classify(ClassifyArgs),
    /// Train a LoRA adapter over a store model on conversations, input/output
    /// pairs or labelled texts, and install it as a model served by name.
    Lora(super::tune_lora::LoraArgs),
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Labelled texts: JSONL ({"input": ..., "expected": ...} by default) or CSV.
    pub data: PathBuf,
    /// Name of the classifier model to install (e.g. `banking:v1`).
    #[arg(long)]
    pub out: String,
    /// Features: `static:all-minilm:l6-v2` (the MiniLM token table: microseconds
    /// per text), `all-minilm:l6-v2` (the MiniLM encoder: better, milliseconds per
    /// text), `mean:MODEL` / `last:MODEL` (a generative model's hidden states,
    /// mean-pooled or at the last token: e.g. `mean:qwen2.5-coder:0.5b`; slower),
    /// `hashed-ngrams` (built in), or `auto` (the MiniLM table and encoder where
    /// installed; the best on validation is kept). A comma-separated list is tried
    /// in turn, the best kept.
    #[arg(long, default_value = "auto")]
    pub features: String,
    /// The head over the features: `linear` (softmax regression), `mlp` (one
    /// hidden ReLU layer; for label sets a line separates poorly), or `auto`
    /// (both on every featuriser; the best on validation is kept, the linear one
    /// on a tie).
    #[arg(long, default_value = "auto")]
    pub head: String,
    /// Hidden units of an MLP head.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Field (JSONL) or column (CSV) of the text.
    #[arg(long, default_value = "input")]
    pub input_field: String,
    /// Field or column of the label.
    #[arg(long, default_value = "expected")]
    pub label_field: String,
    /// Validation data (same format); default: a stratified share of DATA.
    #[arg(long, value_name = "FILE")]
    pub val: Option<PathBuf>,
    /// Share of each label held out for validation when --val is not given.
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    /// Seed of the validation split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// L2 penalty of the linear head.
    #[arg(long, default_value_t = 1e-3)]
    pub l2: f32,
    /// Adam step size of the linear head.
    #[arg(long, default_value_t = 0.02)]
    pub lr: f32,
    /// Most full-batch steps of the linear head (training stops earlier when the
    /// validation loss stops improving).
    #[arg(long, default_value_t = 600)]
    pub max_epochs: usize,
    /// Threads of the encoder (0 = physical cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
}

pub fn tune(home: &Path, cmd: TuneCmd) -> Result<()> {
    match cmd {
        TuneCmd::Classify(a) => classify(home, a),
        TuneCmd::Lora(a) => super::tune_lora::lora(home, a),
    }
}

/// `auto`: the MiniLM table and encoder where MiniLM is installed, else hashed n-grams.
fn candidates(store: &Store, spec: &str) -> Vec<String> {
    if spec != "auto" {
        return spec
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    let minilm = "all-minilm:l6-v2";
    if store.get(minilm).is_ok() {
        vec![format!("{STATIC_PREFIX}{minilm}"), minilm.to_string()]
    } else {
        eprintln!(
            "{minilm} is not installed, so only {} features are tried; `bantam pull {minilm}` gives better ones",
            hashed::NAME
        );
        vec![hashed::NAME.to_string()]
    }
}

fn classify(home: &Path, a: ClassifyArgs) -> Result<()> {
    let store = Store::open(home)?;
    bantam_store::ModelName::parse(&a.out).with_context(|| format!("--out {}", a.out))?;
    if !(0.0..0.9).contains(&a.val_fraction) {
        bail!("--val-fraction must be between 0 and 0.9");
    }
    let (train, blank) = load_examples(&a.data, &a.input_field, &a.label_field)?;
    if blank > 0 {
        eprintln!("skipped {blank} rows with an empty text");
    }
    let val = match &a.val {
        Some(p) => {
            let (v, blank) = load_examples(p, &a.input_field, &a.label_field)?;
            if blank > 0 {
                eprintln!("skipped {blank} validation rows with an empty text");
            }
            Some(v)
        }
        None => None,
    };
    if !(1..=8192).contains(&a.hidden) {
        bail!("--hidden must be between 1 and 8192 units");
    }
    let opts = TuneOptions {
        features: candidates(&store, &a.features),
        heads: HeadKind::parse_list(&a.head).context("--head")?,
        mlp: MlpOptions {
            hidden: a.hidden,
            ..MlpOptions::default()
        },
        val_fraction: a.val_fraction,
        seed: a.seed,
        learner: SoftmaxOptions {
            l2: a.l2,
            lr: a.lr,
            max_epochs: a.max_epochs,
            ..SoftmaxOptions::default()
        },
        threads: a.threads,
    };
    let started = Instant::now();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:28} [{bar:30}] {pos}/{len} texts {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut current = String::new();
    let mut progress = |what: &str, done: usize, total: usize| {
        if what != current {
            current = what.to_string();
            bar.reset();
            bar.set_length(total as u64);
            bar.set_message(format!("features {what}"));
        }
        bar.set_position(done as u64);
    };
    let tuned = bantam_tune::tune_classifier(&store, &train, val.as_deref(), &opts, &mut progress)?;
    bar.finish_and_clear();
    let sha = bantam_tune::classify::data_sha256(&a.data)?;
    let source = format!("bantam tune classify {}", a.data.display());
    let manifest = bantam_tune::install(&store, &a.out, &tuned, &sha, &source)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(
        out,
        "{} labels, {} training and {} validation examples",
        tuned.head.meta.labels.len(),
        tuned.train_rows,
        tuned.val_rows
    )?;
    writeln!(
        out,
        "\n{:<28} {:<6} {:>14} {:>9} {:>10} {:>9}",
        "features", "head", "val accuracy", "val loss", "features s", "train s"
    )?;
    for (i, c) in tuned.candidates.iter().enumerate() {
        writeln!(
            out,
            "{:<28} {:<6} {:>13.1}% {:>9.3} {:>10.1} {:>9.1}{}",
            c.features,
            c.head.name(),
            c.val_accuracy * 100.0,
            c.val_loss,
            c.featurise_secs,
            c.train_secs,
            if i == tuned.chosen && tuned.candidates.len() > 1 {
                "  ← kept (best validation accuracy)"
            } else {
                ""
            }
        )?;
    }
    let c = &tuned.candidates[tuned.chosen];
    writeln!(
        out,
        "\ncalibrated: temperature {:.2}, validation ECE {:.3} → {:.3}",
        tuned.head.meta.temperature, c.report.val_ece.0, c.report.val_ece.1
    )?;
    writeln!(
        out,
        "installed {} ({}) in {:.0} s; try it:\n  bantam classify {} \"some text\"\n  curl localhost:8080/v1/classify -d '{{\"model\": \"{}\", \"input\": \"some text\"}}'",
        manifest.name,
        &manifest.digest[..19.min(manifest.digest.len())],
        started.elapsed().as_secs_f64(),
        manifest.name,
        manifest.name
    )?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The store model to quantize (an F32/F16 one: a converted encoder, a merged
    /// tuned model).
    pub model: String,
    /// Target type: f16, q8_0, q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q4_0, q3_k_m, q2_k.
    #[arg(long)]
    pub to: String,
    /// Name to install the result under.
    #[arg(long)]
    pub out: String,
    /// Held-out texts to compare source and result on, one per line (default: 20
    /// built-in sentences from several domains).
    #[arg(long, value_name = "FILE")]
    pub eval_text: Option<PathBuf>,
    /// Quantize a model that is already quantized (the loss compounds).
    #[arg(long)]
    pub allow_requantize: bool,
    /// Threads (0 = physical cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
}

pub fn quantize(home: &Path, a: QuantizeArgs) -> Result<()> {
    let store = Store::open(home)?;
    bantam_store::ModelName::parse(&a.out).with_context(|| format!("--out {}", a.out))?;
    let to = quant_type(&a.to)?;
    let owned: Vec<String> = match &a.eval_text {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => bantam_tune::quantize::DEFAULT_TEXTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    if owned.is_empty() {
        bail!("--eval-text holds no text");
    }
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(format!("quantizing {} to {}", a.model, to.name()));
    let result = bantam_tune::quantize::quantize_model(
        &store,
        &a.model,
        to,
        &a.out,
        a.threads,
        a.allow_requantize,
        &texts,
    );
    bar.finish_and_clear();
    let (m, r) = result?;
    let mb = |b: u64| b as f64 / 1e6;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "installed {} ({}): {} → {}",
        m.name,
        &m.digest[..19.min(m.digest.len())],
        r.source,
        r.to
    )?;
    writeln!(out, "\n| | {} | {} |", r.source, r.target)?;
    writeln!(out, "|---|---:|---:|")?;
    writeln!(
        out,
        "| size | {:.1} MB | {:.1} MB ({:.0} %) |",
        mb(r.size_before),
        mb(r.size_after),
        100.0 * r.size_after as f64 / r.size_before.max(1) as f64
    )?;
    if let Some((mean, min)) = r.cosine {
        writeln!(
            out,
            "| texts/s ({} texts) | {:.1} | {:.1} |",
            r.texts, r.texts_per_s.0, r.texts_per_s.1
        )?;
        writeln!(
            out,
            "| cosine to the source (sentence embedding) | 1 | mean {mean:.5}, min {min:.5} |"
        )?;
    }
    if let Some(d) = r.divergence {
        writeln!(
            out,
            "| perplexity ({} tokens of {} texts) | {:.3} | {:.3} ({:+.2} %) |",
            d.tokens,
            r.texts,
            d.ppl_source,
            d.ppl_other,
            100.0 * (d.ppl_other / d.ppl_source - 1.0)
        )?;
        writeln!(
            out,
            "| mean KL divergence from the source | 0 | {:.5} nats |",
            d.kl_mean
        )?;
        writeln!(
            out,
            "| same top token as the source | 100 % | {:.1} % |",
            100.0 * d.same_top
        )?;
    }
    let next = if r.cosine.is_some() {
        format!(
            "a classifier on its features: `bantam tune classify DATA --features {}`",
            r.target
        )
    } else {
        format!(
            "`bantam eval DATA --target {} --target {}`",
            r.source, r.target
        )
    };
    writeln!(
        out,
        "\nquantized in {:.1} s; measure your task before and after: {next}",
        r.quantize_secs
    )?;
    Ok(())
}

/// A `--to` type name, or an error listing the known ones.
pub fn quant_type(name: &str) -> Result<bantam_llama::QuantType> {
    bantam_llama::QuantType::parse(name).with_context(|| {
        format!(
            "unknown type {name:?}; use one of {}",
            bantam_llama::QuantType::ALL
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}
