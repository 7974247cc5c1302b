//! `bantam router train` (a learned router from labelled prompts, threshold
//! calibrated to a target escalation share) and `bantam router bench` (decision
//! overhead of the configured routes).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bantam_api::{Endpoint, Request};
use bantam_router::learned::{self, CalibrationPoint, Embed, RouterModel, TrainInfo, TrainOptions};
use bantam_store::Store;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The featuriser learned routers use unless told otherwise: all-MiniLM-L6-v2
/// distilled into static token vectors, which decides in microseconds (the encoder
/// itself takes milliseconds per prompt on a CPU; BENCHMARKS.md has both).
pub const DEFAULT_EMBEDDER: &str = "static:all-minilm:l6-v2";

// Parsed once per run; boxing the arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum RouterCmd {
    /// Train a learned router on labelled prompts and calibrate its threshold.
    Train(TrainArgs),
    /// Measure the decision time of the routes in a configuration.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// JSONL: {"prompt": ..., "label": "local"|"escalate"}, or {"prompt": ...,
    /// "scores": {"<local>": q1, "<large>": q2}} with --local/--large (RouteLLM style:
    /// escalate when the large model's score beats the local one's by --margin).
    #[arg(required_unless_present = "from_eval")]
    pub data: Option<PathBuf>,
    /// Learn from a `bantam eval --out DIR` run with a local and a large target
    /// (--local/--large name them): a prompt is `escalate` where the large target
    /// scored better than the local one by more than --margin, `local` otherwise —
    /// the router learns where the small model falls short. --calibrate and --test
    /// take eval directories too.
    #[arg(long, value_name = "DIR", conflicts_with = "data")]
    pub from_eval: Option<PathBuf>,
    /// With an eval directory: the per-item metric compared (default: `correct`,
    /// `field_f1`, `f1` or `rougeL`, whichever the task recorded).
    #[arg(long)]
    pub metric: Option<String>,
    /// Calibrate the threshold on this file (default: the training data).
    #[arg(long, value_name = "FILE")]
    pub calibrate: Option<PathBuf>,
    /// Report routing quality on this held-out file.
    #[arg(long, value_name = "FILE")]
    pub test: Option<PathBuf>,
    /// Target share of prompts to escalate, e.g. 20% or 0.2.
    #[arg(long, default_value = "20%")]
    pub escalate: String,
    /// Where to write the router.
    #[arg(long, short, default_value = "router.json")]
    pub out: PathBuf,
    /// Featuriser: `static:MODEL`, an embedding model of the store distilled into one
    /// vector per token (once, kept in the store; then microseconds per prompt);
    /// `MODEL`, the embedding model itself (an encoder pass per prompt: better
    /// routing, milliseconds); or `hashed-ngrams` (built in, no model).
    /// BENCHMARKS.md compares their routing quality and decision time.
    #[arg(long, default_value = DEFAULT_EMBEDDER)]
    pub embedder: String,
    /// Score field of the local model (with "scores").
    #[arg(long)]
    pub local: Option<String>,
    /// Score field of the large model (with "scores").
    #[arg(long)]
    pub large: Option<String>,
    /// Escalate when large − local exceeds this (with "scores").
    #[arg(long, default_value_t = 0.0)]
    pub margin: f64,
    /// Gradient steps.
    #[arg(long, default_value_t = 400)]
    pub epochs: usize,
    /// L2 penalty.
    #[arg(long, default_value_t = 1e-4)]
    pub l2: f32,
    /// Threads for the embedding model (0 = physical cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The server configuration with the routes.
    #[arg(long, env = "BANTAM_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Prompts (JSONL with "prompt"); default: a built-in mix.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Decisions per route.
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
}

pub fn router(home: &Path, cmd: RouterCmd) -> Result<()> {
    match cmd {
        RouterCmd::Train(a) => train(home, a),
        RouterCmd::Bench(a) => bench(home, a),
    }
}

fn parse_share(s: &str) -> Result<f64> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .with_context(|| format!("--escalate takes a share like 20% or 0.2, got {s:?}"))?;
    if !(0.0..=1.0).contains(&v) {
        bail!("--escalate must be between 0% and 100%, got {s:?}");
    }
    Ok(v)
}

struct Labelled {
    prompts: Vec<String>,
    escalate: Vec<bool>,
    sha256: String,
}

/// Per-item metrics `bantam eval` records, in the order one is chosen.
const EVAL_METRICS: [&str; 4] = ["correct", "field_f1", "f1", "rougeL"];

/// Labels from a `bantam eval` run: each item both targets answered, `escalate`
/// where the large target's metric beats the local one's by more than the margin
/// (an item a target failed on scores 0).
fn read_eval_run(dir: &Path, a: &TrainArgs) -> Result<Labelled> {
    let (Some(lo), Some(hi)) = (&a.local, &a.large) else {
        bail!("an eval directory needs --local TARGET and --large TARGET (the target names `bantam eval` printed)");
    };
    let path = dir.join("items.jsonl");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading {}: is {} a `bantam eval --out` directory?",
            path.display(),
            dir.display()
        )
    })?;
    let mut by_item: std::collections::BTreeMap<usize, (String, Option<f64>, Option<f64>)> =
        Default::default();
    let mut metric: Option<String> = a.metric.clone();
    let mut targets = std::collections::BTreeSet::new();
    for (i, line) in bytes.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        let target = v["target"].as_str().unwrap_or_default().to_string();
        targets.insert(target.clone());
        if target != *lo && target != *hi {
            continue;
        }
        let m = &v["metrics"];
        if metric.is_none() {
            metric = EVAL_METRICS
                .iter()
                .find(|k| m.get(**k).is_some())
                .map(|k| k.to_string());
        }
        let score = metric
            .as_deref()
            .and_then(|k| m.get(k))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let index = v["index"].as_u64().unwrap_or(0) as usize;
        let e = by_item.entry(index).or_insert_with(|| {
            (
                v["input"].as_str().unwrap_or_default().to_string(),
                None,
                None,
            )
        });
        if target == *lo {
            e.1 = Some(score);
        } else {
            e.2 = Some(score);
        }
    }
    for t in [lo, hi] {
        if !targets.contains(t) {
            bail!(
                "{} has no results for target {t:?}; its targets: {}",
                path.display(),
                targets.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let (mut prompts, mut escalate) = (Vec::new(), Vec::new());
    for (prompt, l, h) in by_item.into_values() {
        if let (Some(l), Some(h)) = (l, h) {
            prompts.push(prompt);
            escalate.push(h - l > a.margin);
        }
    }
    if prompts.is_empty() {
        bail!(
            "{}: no item has results for both {lo} and {hi}",
            path.display()
        );
    }
    eprintln!(
        "{}: {} items, compared on {}",
        dir.display(),
        prompts.len(),
        metric
            .as_deref()
            .unwrap_or("(no metric: every item scores 0)")
    );
    Ok(Labelled {
        prompts,
        escalate,
        sha256: hex_digest(&bytes),
    })
}

fn read_labelled(path: &Path, a: &TrainArgs) -> Result<Labelled> {
    if path.is_dir() {
        return read_eval_run(path, a);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let sha256 = hex_digest(&bytes);
    let mut prompts = Vec::new();
    let mut escalate = Vec::new();
    for (i, line) in bytes.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(&line).with_context(at)?;
        let prompt = ["prompt", "input", "text"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .with_context(|| format!("{}: no \"prompt\" string", at()))?;
        let esc = if let Some(l) = v.get("label") {
            match l.as_str() {
                Some("escalate") | Some("large") => true,
                Some("local") | Some("small") => false,
                _ => bail!("{}: label must be \"local\" or \"escalate\", got {l}", at()),
            }
        } else if let Some(s) = v.get("scores") {
            let (Some(lo), Some(hi)) = (&a.local, &a.large) else {
                bail!("{}: \"scores\" needs --local NAME and --large NAME", at());
            };
            let get = |k: &str| {
                s.get(k)
                    .and_then(Value::as_f64)
                    .with_context(|| format!("{}: scores has no number for {k:?}", at()))
            };
            get(hi)? - get(lo)? > a.margin
        } else {
            bail!("{}: each line needs \"label\" or \"scores\"", at());
        };
        prompts.push(prompt.to_string());
        escalate.push(esc);
    }
    if prompts.is_empty() {
        bail!("{} holds no prompts", path.display());
    }
    Ok(Labelled {
        prompts,
        escalate,
        sha256,
    })
}

fn hex_digest(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The featuriser a router uses (see `bantam_local::featurise`), with a progress bar
/// while a static table is distilled.
fn load_embedder(home: &Path, name: &str, threads: u32) -> Result<Arc<dyn Embed>> {
    let store = Store::open(home)?;
    let mut bar: Option<ProgressBar> = None;
    let mut progress = |done: usize, total: usize| {
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:30}] {pos}/{len} tokens {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message("distil");
            b
        });
        b.set_position(done as u64);
    };
    let e = bantam_local::featuriser(&store, name, threads, &mut progress)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(e)
}

fn embed_all(e: &dyn Embed, texts: &[String], what: &str) -> Result<Vec<Vec<f32>>> {
    let bar = ProgressBar::new(texts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(32) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.extend(e.embed(&refs).map_err(anyhow::Error::msg)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

fn table(points: &[CalibrationPoint], chosen: f32) -> String {
    let mut s = String::from(
        "threshold  escalated  accuracy  escalate recall  escalate precision  cost vs all-large\n",
    );
    for p in points {
        s.push_str(&format!(
            "{:>9.4}  {:>8.1}%  {:>7.1}%  {:>14.1}%  {:>17.1}%  {:>16.1}%{}\n",
            p.threshold,
            p.escalated * 100.0,
            p.accuracy * 100.0,
            p.escalate_recall * 100.0,
            p.escalate_precision * 100.0,
            p.escalated * 100.0,
            if p.threshold == chosen {
                "  ← chosen"
            } else {
                ""
            }
        ));
    }
    s
}

fn train(home: &Path, a: TrainArgs) -> Result<()> {
    let share = parse_share(&a.escalate)?;
    let source = a
        .data
        .clone()
        .or_else(|| a.from_eval.clone())
        .context("give the training data or --from-eval DIR")?;
    let data = read_labelled(&source, &a)?;
    let pos = data.escalate.iter().filter(|&&e| e).count();
    if pos == 0 || pos == data.escalate.len() {
        bail!(
            "{} needs prompts of both kinds (it has {pos} escalate of {})",
            source.display(),
            data.escalate.len()
        );
    }
    let started = Instant::now();
    let e = load_embedder(home, &a.embedder, a.threads)?;
    let x = embed_all(e.as_ref(), &data.prompts, "train")?;
    let opts = TrainOptions {
        l2: a.l2,
        epochs: a.epochs,
        ..TrainOptions::default()
    };
    let (weights, bias) = learned::train(&x, &data.escalate, opts);
    let mut model = RouterModel {
        format: 1,
        embedding_model: a.embedder.clone(),
        dim: weights.len(),
        weights,
        bias,
        threshold: 0.5,
        target_escalation: Some(share),
        calibration: Vec::new(),
        trained: TrainInfo {
            examples: data.prompts.len(),
            escalate_examples: pos,
            data_sha256: data.sha256.clone(),
            epochs: a.epochs,
            l2: a.l2,
            calibration_examples: 0,
        },
    };
    let (cal_scores, cal_labels) = match &a.calibrate {
        Some(p) => {
            let c = read_labelled(p, &a)?;
            let cx = embed_all(e.as_ref(), &c.prompts, "calibrate")?;
            (
                cx.iter().map(|v| model.score(v)).collect::<Vec<_>>(),
                c.escalate,
            )
        }
        None => (
            x.iter().map(|v| model.score(v)).collect::<Vec<_>>(),
            data.escalate.clone(),
        ),
    };
    model.threshold = learned::threshold_for_share(&cal_scores, share);
    model.calibration = learned::calibration_table(&cal_scores, &cal_labels, &[model.threshold]);
    model.trained.calibration_examples = cal_scores.len();
    let text = serde_json::to_string_pretty(&model)?;
    let tmp = a.out.with_extension("json.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.out)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "trained on {} prompts ({} escalate) in {:.1} s; calibrated on {} prompts{}",
        data.prompts.len(),
        pos,
        started.elapsed().as_secs_f64(),
        cal_scores.len(),
        if a.calibrate.is_none() {
            " (the training data: pass --calibrate FILE for an unbiased threshold)"
        } else {
            ""
        }
    )?;
    writeln!(out, "\n{}", table(&model.calibration, model.threshold))?;
    if let Some(p) = &a.test {
        let t = read_labelled(p, &a)?;
        let tx = embed_all(e.as_ref(), &t.prompts, "test")?;
        let scores: Vec<f32> = tx.iter().map(|v| model.score(v)).collect();
        let r = learned::evaluate(&scores, &t.escalate, model.threshold);
        let tpos = t.escalate.iter().filter(|&&e| e).count();
        writeln!(
            out,
            "test {} ({} prompts, {} labelled escalate): escalated {:.1}%, routed as labelled \
             {:.1}%, escalate recall {:.1}%, precision {:.1}%; with the local model free, cost \
             {:.1}% of sending everything to the large model (saves {:.1}%)",
            p.display(),
            t.prompts.len(),
            tpos,
            r.escalated * 100.0,
            r.accuracy * 100.0,
            r.escalate_recall * 100.0,
            r.escalate_precision * 100.0,
            r.escalated * 100.0,
            (1.0 - r.escalated) * 100.0
        )?;
    }
    writeln!(
        out,
        "wrote {} (threshold {:.4}); use it in a route:\n\n[[routes]]\nname = \"auto\"\npolicy = \"learned\"\nbackends = [\"LOCAL\", \"LARGE\"]\nlearned = {{ model = \"{}\", local = \"LOCAL\", escalate = \"LARGE\" }}",
        a.out.display(),
        model.threshold,
        a.out.display()
    )?;
    Ok(())
}

const BUILTIN_PROMPTS: &[&str] = &[
    "What's my account balance?",
    "Reset my password please",
    "Summarise the attached contract and list the termination clauses with their notice periods.",
    "hi",
    "Write a Python function that parses RFC 3339 timestamps and explain the edge cases.",
    "Which of these transactions look fraudulent and why? 1) 4 x $999 at 3am 2) $12 coffee",
    "Translate 'good morning' to French",
    "Explain why the sky is blue step by step, with the physics.",
];

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1);
    v[i]
}

fn bench(home: &Path, a: BenchArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    let cfg = bantam_server::ServeSettings::from_toml(&text, &a.config)?.resolve();
    if cfg.routes.is_empty() {
        bail!("{} declares no [[routes]]", a.config.display());
    }
    let prompts: Vec<String> = match &a.prompts {
        Some(p) => std::fs::read_to_string(p)?
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("prompt").and_then(Value::as_str).map(str::to_string))
            .collect(),
        None => BUILTIN_PROMPTS.iter().map(|s| s.to_string()).collect(),
    };
    if prompts.is_empty() {
        bail!("no prompts");
    }
    let store = Store::open(home)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut cfg = cfg;
    cfg.usage.enabled = false;
    let threads = cfg.embed_threads;
    let learned_routes: Vec<bantam_router::RouteConfig> = cfg
        .routes
        .iter()
        .filter(|r| r.learned.is_some())
        .cloned()
        .collect();
    let routes: Vec<String> = cfg.routes.iter().map(|r| r.name.clone()).collect();
    let routing = bantam_router::RoutingConfig {
        backends: cfg.backends.clone(),
        routes: cfg.routes.clone(),
        usage: cfg.usage.clone(),
    };
    let files: Vec<String> = cfg.backends.iter().map(|b| b.model.clone()).collect();
    let local = bantam_local::Local::open(
        store,
        cfg.engine.clone(),
        cfg.pool.clone(),
        files,
        cfg.structured_retries,
        cfg.embed_threads,
    );
    let router = {
        let _g = rt.enter();
        bantam_router::Router::new(&routing, Arc::new(local), None, &|k| std::env::var(k).ok())?
    };
    println!(
        "{:<12} {:>9} {:>10} {:>10} {:>10}  decisions",
        "route", "n", "p50 µs", "p99 µs", "max µs"
    );
    for name in routes {
        let mut times = Vec::with_capacity(a.n);
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for i in 0..a.n {
            let body = json!({"model": name, "messages": [{"role": "user", "content": prompts[i % prompts.len()]}]});
            // Parsing is the HTTP edge's work; the router's decision is timed.
            let req = Request::parse(Endpoint::Chat, body.to_string().as_bytes())?;
            let t = Instant::now();
            let d = rt.block_on(router.decide(&req, Default::default()));
            times.push(t.elapsed().as_secs_f64() * 1e6);
            *counts.entry(d.backend).or_default() += 1;
        }
        let p50 = pct(&mut times, 0.5);
        let p99 = pct(&mut times, 0.99);
        let max = pct(&mut times, 1.0);
        println!(
            "{name:<12} {:>9} {p50:>10.1} {p99:>10.1} {max:>10.1}  {counts:?}",
            a.n
        );
    }
    // Where a learned decision's time goes: the embedding, then the classifier.
    for r in learned_routes {
        let Some(l) = &r.learned else { continue };
        let model = RouterModel::load(&l.model)?;
        let e = load_embedder(home, &model.embedding_model, threads)?;
        let n = a.n.min(500);
        let mut emb_t = Vec::with_capacity(n);
        let mut cls_t = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            let v = e
                .embed(&[prompts[i % prompts.len()].as_str()])
                .map_err(anyhow::Error::msg)?;
            emb_t.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            let s = model.score(&v[0]);
            cls_t.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(s);
        }
        println!(
            "{:<12} {n:>9} {:>10.1} {:>10.1} {:>10.1}  embedding only ({})",
            format!("{}:embed", r.name),
            pct(&mut emb_t, 0.5),
            pct(&mut emb_t, 0.99),
            pct(&mut emb_t, 1.0),
            model.embedding_model
        );
        println!(
            "{:<12} {n:>9} {:>10.2} {:>10.2} {:>10.2}  classifier only ({} weights)",
            format!("{}:score", r.name),
            pct(&mut cls_t, 0.5),
            pct(&mut cls_t, 0.99),
            pct(&mut cls_t, 1.0),
            model.dim
        );
    }
    Ok(())
}
