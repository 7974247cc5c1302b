//! `bantam eval`: run a task over a dataset with several targets, side by side.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bantam_eval::prompt;
use bantam_eval::remote::TargetSpec;
use bantam_eval::run::{self, ItemResult, Target, Task};
use bantam_eval::{dataset, report};
use bantam_upstream::Upstream;
use clap::Args;
use serde_json::{json, Map, Value};

use super::generate_tasks::progress;

mod hardware_check;
use hardware_check::hardware_check;

#[derive(Debug, Args)]
#[command(after_help = "Targets:
  NAME              a model in the local store (or a .gguf path), run in this process
  URL#MODEL         an OpenAI-compatible API: its base URL (up to /v1) and, after #,
                    the model or route name sent as `model`, e.g.
                    http://127.0.0.1:8090/v1#auto (a route of a `bantam serve`) or
                    https://api.openai.com/v1#gpt-4o-mini. The API key comes from the
                    variable named by --api-key-env, else from OPENAI_API_KEY when set.
  Remote targets get the same prompts, temperature 0 and seed 0; classify asks for
  one label (response_format choice, or a json_schema enum where that is rejected),
  extract for the schema (json_schema). Their latency includes the network; their
  memory is not measured; their cost comes from --price-in/--price-out.

Prompt templates (every task): a chat as text; lines [system], [user] and
  [assistant] start messages; {input} is the item, {schema} (extract) the JSON
  Schema, {labels} (classify) the label list, {{ and }} literal braces. See the
  defaults with --show-template TASK.

Per item, items.jsonl has the latency and, for generated answers (extract,
  summarize, qa, chat), the time to the first token (ttft_ms; remote answers are
  streamed to measure it; classify scores labels, so it has none); a remote Bantam
  route also says which backend answered (served: backend, route_reason, cost_usd),
  counted per target in the summary (backends).

Examples:
  bantam eval ../shared/data/banking77/banking77_test.csv --task classify \\
      --input-field text --expected-field category --limit 200 \\
      --target smollm2:135m --target qwen2.5-coder:0.5b --out eval-banking77
  bantam eval qa.jsonl --task qa --target qwen2.5-coder:1.5b \\
      --target https://api.openai.com/v1#gpt-4o-mini --price-in 0.15 --price-out 0.6
  bantam eval qa.jsonl --task qa --target smollm2:135m --prompt-template qa.txt
  bantam eval test.jsonl --task classify --target qwen2.5-coder:0.5b \\
      --target banking:lora --target-template banking:lora=prompt.txt
  bantam eval --show-template summarize
  bantam eval --hardware --target smollm2:135m --target gemma3:270m --out hw")]
pub struct EvalArgs {
    /// JSONL (`{\"input\", \"expected\"}`) or CSV dataset.
    #[arg(required_unless_present_any = ["hardware", "show_template"])]
    pub dataset: Option<PathBuf>,
    /// classify, extract, summarize, qa or chat.
    #[arg(long, required_unless_present_any = ["hardware", "show_template"])]
    pub task: Option<String>,
    /// A target to evaluate: a local model, or URL#MODEL for an OpenAI-compatible API
    /// (repeat for several; see "Targets" below).
    #[arg(long = "target", required_unless_present = "show_template")]
    pub targets: Vec<String>,
    /// Field (JSONL) or column (CSV) with the input.
    #[arg(long, default_value = "input")]
    pub input_field: String,
    /// Field or column with the expected answer.
    #[arg(long, default_value = "expected")]
    pub expected_field: String,
    /// Classification labels (default: every expected value in the dataset).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// JSON Schema for extraction.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// Prompt template (replaces the task's default, shown by --show-template).
    #[arg(long, value_name = "FILE")]
    pub prompt_template: Option<PathBuf>,
    /// A prompt template for one target only, instead of --prompt-template or the
    /// default (repeatable): e.g. a tuned adapter asked as it was trained, beside
    /// base models asked with the default prompt.
    #[arg(long, value_name = "TARGET=FILE")]
    pub target_template: Vec<String>,
    /// Print the default prompt template of a task and exit.
    #[arg(long, value_name = "TASK")]
    pub show_template: Option<String>,
    /// Evaluate only N items: the first N, or N spread evenly with --spread.
    #[arg(long)]
    pub limit: Option<usize>,
    /// With --limit: take items spread evenly over the file (for files grouped by
    /// label).
    #[arg(long)]
    pub spread: bool,
    /// Results directory (items.jsonl, summary.json, summary.md, report.html); a run
    /// that was stopped continues where it left off.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// What this machine costs per hour in USD (e.g. its cloud instance price): adds
    /// cost_per_1k_usd = 1000 / items_per_s × price / 3600 to every local target.
    #[arg(long, value_name = "USD")]
    pub price_per_hour: Option<f64>,
    /// Remote targets' price in USD per 1M prompt tokens (with --price-out): adds
    /// cost_per_1k_usd from the tokens each answer's `usage` reports.
    #[arg(long, value_name = "USD", requires = "price_out")]
    pub price_in: Option<f64>,
    /// Remote targets' price in USD per 1M completion tokens (with --price-in).
    #[arg(long, value_name = "USD", requires = "price_in")]
    pub price_out: Option<f64>,
    /// Environment variable holding the API key of remote targets (default:
    /// OPENAI_API_KEY when it is set; none otherwise).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// The target-hardware check: for each local target, bench's prefill and decode
    /// tokens/s, time to first token and latency percentiles over a fixed prompt set,
    /// and peak memory, in the same files (alone, or after the evaluation when a
    /// dataset is given).
    #[arg(long)]
    pub hardware: bool,
    /// With --hardware: runs per measurement (bench medians, passes over the prompts).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub hardware_reps: usize,
    /// Threads (default: physical cores).
    #[arg(long)]
    pub threads: Option<u32>,
}

/// Peak resident memory of this process so far (MB).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn read_done(path: &Path) -> Result<Vec<ItemResult>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line?;
        // A line cut by a kill is dropped and recomputed.
        if let Ok(r) = serde_json::from_str::<ItemResult>(&line) {
            out.push(r);
        }
    }
    Ok(out)
}

fn parse_task(a: &EvalArgs, name: &str, all_items: &[dataset::Item]) -> Result<Task> {
    Ok(match name {
        "classify" => {
            let labels = if a.labels.is_empty() {
                // Every label of the whole file, not just of the items evaluated.
                all_items
                    .iter()
                    .filter_map(|i| i.expected.as_str().map(str::to_string))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect()
            } else {
                a.labels.clone()
            };
            Task::Classify { labels }
        }
        "extract" => {
            let p = a
                .schema
                .as_ref()
                .context("--task extract needs --schema FILE")?;
            Task::Extract {
                schema: serde_json::from_str(&std::fs::read_to_string(p)?)
                    .with_context(|| format!("{} is not JSON", p.display()))?,
            }
        }
        "summarize" => Task::Summarize,
        "qa" => Task::Qa,
        "chat" => Task::Chat,
        other => bail!("unknown task {other:?}; use classify, extract, summarize, qa or chat"),
    })
}

fn show_template(name: &str) -> Result<()> {
    let task = match name {
        "classify" => Task::Classify { labels: Vec::new() },
        "extract" => Task::Extract { schema: json!({}) },
        _ => parse_task_name(name)?,
    };
    print!("{}", prompt::default_text(&task));
    Ok(())
}

fn parse_task_name(name: &str) -> Result<Task> {
    Ok(match name {
        "summarize" => Task::Summarize,
        "qa" => Task::Qa,
        "chat" => Task::Chat,
        other => bail!("unknown task {other:?}; use classify, extract, summarize, qa or chat"),
    })
}

/// The targets, parsed, with a client for every remote one (so a missing API key
/// stops the command before any work).
fn targets(a: &EvalArgs) -> Result<Vec<(String, TargetSpec, Option<Upstream>)>> {
    let key_env = match &a.api_key_env {
        Some(v) => Some(v.clone()),
        None => std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(|_| "OPENAI_API_KEY".to_string()),
    };
    let env = |k: &str| std::env::var(k).ok();
    let mut out: Vec<(String, TargetSpec, Option<Upstream>)> = Vec::new();
    for t in &a.targets {
        if out.iter().any(|(n, _, _)| n == t) {
            bail!("target {t:?} is given twice");
        }
        let spec = TargetSpec::parse(t)?;
        let remote = match &spec {
            TargetSpec::Local(_) => None,
            TargetSpec::Remote { base_url, .. } => Some(bantam_eval::remote::backend(
                t,
                base_url,
                key_env.as_deref(),
                &env,
            )?),
        };
        out.push((t.clone(), spec, remote));
    }
    Ok(out)
}

pub fn eval(home: &Path, a: EvalArgs) -> Result<()> {
    if let Some(name) = &a.show_template {
        return show_template(name);
    }
    for (flag, v) in [
        ("--price-per-hour", a.price_per_hour),
        ("--price-in", a.price_in),
        ("--price-out", a.price_out),
    ] {
        if let Some(p) = v {
            if !(p.is_finite() && p >= 0.0) || (flag == "--price-per-hour" && p == 0.0) {
                bail!("{flag} must be a positive number of USD, not {p}");
            }
        }
    }
    if a.hardware && a.hardware_reps == 0 {
        bail!("--hardware-reps must be at least 1");
    }
    let targets = targets(&a)?;
    target_templates(&a)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out_dir = a
        .out
        .clone()
        .unwrap_or_else(|| match (&a.dataset, &a.task) {
            (Some(d), Some(t)) => {
                let stem = d
                    .file_stem()
                    .map_or("dataset".into(), |s| s.to_string_lossy().into_owned());
                PathBuf::from(format!("bantam-eval-{stem}-{t}"))
            }
            _ => PathBuf::from("bantam-eval-hardware"),
        });
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let previous: Option<Value> = std::fs::read_to_string(out_dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut doc = Map::new();
    let mut meta = report::Meta::new("bantam eval: hardware check", "");
    let evaluation = match &a.dataset {
        Some(dataset) => {
            let task = a
                .task
                .as_deref()
                .context("a dataset needs --task (classify, extract, summarize, qa or chat)")?;
            let (task, summary) = evaluate(
                home,
                &a,
                dataset,
                task,
                &targets,
                &rt,
                &out_dir,
                previous.as_ref(),
                &mut meta,
            )?;
            doc.insert("dataset".into(), json!(dataset.display().to_string()));
            doc.insert("task".into(), json!(task.name()));
            doc.insert("targets".into(), Value::Object(summary.clone()));
            record_in_manifests(home, &a, dataset, &task, &targets, &summary, &out_dir)?;
            Some((task, summary))
        }
        None => {
            if previous
                .as_ref()
                .is_some_and(|p| p.get("targets").is_some())
            {
                bail!(
                    "{} holds the results of an evaluation; give its dataset and --task too \
                     to add the hardware check to it, or choose another --out",
                    out_dir.display()
                );
            }
            None
        }
    };
    // The hardware check: measured now, or kept from an earlier run.
    let mut hardware = previous
        .as_ref()
        .and_then(|p| p.get("hardware")?.as_object().cloned())
        .unwrap_or_default();
    if a.hardware {
        for (name, spec, _) in &targets {
            match spec {
                TargetSpec::Local(model) => {
                    let figures = hardware_check(home, model, &a, &rt)?;
                    hardware.insert(name.clone(), Value::Object(figures));
                }
                TargetSpec::Remote { .. } => eprintln!(
                    "{name}: remote target, skipped by the hardware check (it measures this machine)"
                ),
            }
        }
    }
    // Only the targets of this command.
    hardware.retain(|k, _| a.targets.contains(k));
    if !hardware.is_empty() {
        doc.insert("hardware".into(), Value::Object(hardware.clone()));
    }
    write_atomic(
        &out_dir.join("summary.json"),
        &serde_json::to_string_pretty(&Value::Object(doc))?,
    )?;
    let mut md = String::new();
    if let Some((task, summary)) = &evaluation {
        md.push_str(&report::markdown(task, summary));
    }
    if !hardware.is_empty() {
        if !md.is_empty() {
            md.push_str("\nHardware check\n\n");
        }
        md.push_str(&report::hardware_markdown(&hardware));
    }
    write_atomic(&out_dir.join("summary.md"), &md)?;
    if let Some(v) = bantam_engine::runtime_info().cpu_variant {
        meta.details.push(("CPU kernels".into(), v));
    }
    if let Some(p) = a.price_per_hour {
        meta.details
            .push(("price per hour".into(), format!("${p}")));
    }
    if let (Some(i), Some(o)) = (a.price_in, a.price_out) {
        meta.details.push((
            "remote price per 1M tokens".into(),
            format!("${i} in, ${o} out"),
        ));
    }
    let report_path = out_dir.join("report.html");
    let html = report::html_report(
        &meta,
        evaluation.as_ref().map(|(t, s)| (t, s)),
        (!hardware.is_empty()).then_some(&hardware),
    );
    write_atomic(&report_path, &html)?;
    println!("{md}");
    eprintln!("results in {}", out_dir.display());
    eprintln!("report: {}", report_path.display());
    Ok(())
}

/// Run the evaluation over every target; the per-target summaries.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    home: &Path,
    a: &EvalArgs,
    dataset: &Path,
    task_name: &str,
    targets: &[(String, TargetSpec, Option<Upstream>)],
    rt: &tokio::runtime::Runtime,
    out_dir: &Path,
    previous: Option<&Value>,
    meta: &mut report::Meta,
) -> Result<(Task, Map<String, Value>)> {
    let all_items = dataset::load(dataset, &a.input_field, &a.expected_field)?;
    if all_items.is_empty() {
        bail!("{} has no items", dataset.display());
    }
    let items: Vec<dataset::Item> = match a.limit {
        Some(n) if n < all_items.len() && a.spread => (0..n)
            .map(|k| all_items[k * all_items.len() / n].clone())
            .collect(),
        Some(n) => all_items.iter().take(n).cloned().collect(),
        None => all_items.clone(),
    };
    let task = parse_task(a, task_name, &all_items)?;
    let load = |p: &Path| -> Result<prompt::PromptTemplate> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        prompt::parse(&text, &task).with_context(|| format!("{}", p.display()))
    };
    let template = match &a.prompt_template {
        Some(p) => Some(load(p)?),
        None => None,
    };
    let mut per_target: BTreeMap<String, prompt::PromptTemplate> = BTreeMap::new();
    for (target, path) in target_templates(a)? {
        per_target.insert(target, load(&path)?);
    }
    let items_path = out_dir.join("items.jsonl");
    let mut all = read_done(&items_path)?;
    // Rewrite what survived (a line cut by a kill is dropped) before appending.
    if items_path.exists() {
        let mut text = String::new();
        for r in &all {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_atomic(&items_path, &text)?;
    }
    let done: HashSet<(String, usize)> = all.iter().map(|r| (r.target.clone(), r.index)).collect();
    let mut peak: BTreeMap<String, f64> = BTreeMap::new();
    for (target, spec, remote) in targets {
        let todo: Vec<dataset::Item> = items
            .iter()
            .filter(|i| !done.contains(&(target.clone(), i.index)))
            .cloned()
            .collect();
        if todo.is_empty() {
            eprintln!("{target}: all {} items already done", items.len());
            continue;
        }
        if todo.len() < items.len() {
            eprintln!(
                "{target}: continuing, {} of {} items left",
                todo.len(),
                items.len()
            );
        }
        let local = match spec {
            TargetSpec::Local(model) => {
                // Restart the peak-memory mark so each target reports its own.
                let _ = std::fs::write("/proc/self/clear_refs", "5");
                Some(super::local_backend(home, model, a.threads, rt)?)
            }
            TargetSpec::Remote { .. } => None,
        };
        let (model, backend): (&str, &dyn bantam_api::Backend) = match (spec, &local, remote) {
            (TargetSpec::Local(m), Some(l), _) => (m, l),
            (TargetSpec::Remote { model, .. }, _, Some(r)) => (model, r),
            _ => bail!("{target}: no engine and no client"),
        };
        let runner = Target {
            name: target,
            model,
            backend,
            local: local.is_some(),
        };
        let bar = progress(true, todo.len(), &format!("{target:>20}"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&items_path)?;
        let mut write_err = None;
        let template = per_target.get(target).or(template.as_ref());
        let outcome = rt.block_on(run::run(runner, &task, template, &todo, |r| {
            let line = serde_json::to_string(&r).unwrap_or_default();
            if let Err(e) = writeln!(file, "{line}").and_then(|()| file.flush()) {
                write_err.get_or_insert(e);
            }
            all.push(r);
            bar.inc(1);
        }));
        bar.finish_and_clear();
        if let Some(e) = write_err {
            return Err(e).context(format!("writing {}", items_path.display()));
        }
        if let Err(e) = outcome {
            bail!(
                "{e}\nthe items answered so far are in {}; run the same command again to continue",
                items_path.display()
            );
        }
        if local.is_some() {
            peak.insert(target.clone(), peak_rss_mb());
        }
        drop(local);
    }
    // Summaries over this command's items in items.jsonl (a directory may also
    // hold results of another --limit; they are kept but not counted). A target
    // that had nothing left to do keeps the peak memory of the run that did its
    // items.
    let selected: HashSet<usize> = items.iter().map(|i| i.index).collect();
    let mut summary = Map::new();
    for (target, spec, _) in targets {
        let rs: Vec<&ItemResult> = all
            .iter()
            .filter(|r| &r.target == target && selected.contains(&r.index))
            .collect();
        let mut s = run::summarize(&task, &rs);
        match spec {
            TargetSpec::Local(_) => {
                s.insert("kind".into(), json!("local"));
                let earlier = || previous?["targets"][target.as_str()]["peak_rss_mb"].as_f64();
                if let Some(mb) = peak.get(target).copied().or_else(earlier) {
                    s.insert("peak_rss_mb".into(), json!(mb));
                }
                if let Some(price) = a.price_per_hour {
                    run::add_cost(&mut s, price);
                }
            }
            TargetSpec::Remote { base_url, model } => {
                s.insert("kind".into(), json!("remote"));
                s.insert("base_url".into(), json!(base_url));
                s.insert("model".into(), json!(model));
                if let (Some(i), Some(o)) = (a.price_in, a.price_out) {
                    run::add_token_cost(&mut s, &rs, i, o);
                }
            }
        }
        summary.insert(target.clone(), Value::Object(s));
    }
    meta.title = format!(
        "bantam eval: {} ({})",
        dataset.file_name().map_or_else(
            || dataset.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        ),
        task.name()
    );
    meta.dataset = dataset.display().to_string();
    meta.details.push((
        "items evaluated".into(),
        match a.limit {
            Some(n) if n < all_items.len() => format!(
                "{} of {}{}",
                items.len(),
                all_items.len(),
                if a.spread {
                    ", spread evenly over the file"
                } else {
                    ", the first ones"
                }
            ),
            _ => format!("all {}", all_items.len()),
        },
    ));
    if let Task::Classify { labels } = &task {
        meta.details
            .push(("labels".into(), labels.len().to_string()));
    }
    if let Some(p) = &a.prompt_template {
        meta.details
            .push(("prompt template".into(), p.display().to_string()));
    }
    for (target, path) in target_templates(a)? {
        meta.details.push((
            format!("prompt template of {target}"),
            path.display().to_string(),
        ));
    }
    Ok((task, summary))
}

/// `--target-template TARGET=FILE` pairs; each TARGET must be a `--target`.
fn target_templates(a: &EvalArgs) -> Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for spec in &a.target_template {
        let Some((target, file)) = spec.rsplit_once('=') else {
            bail!("--target-template {spec:?}: write TARGET=FILE");
        };
        if !a.targets.iter().any(|t| t == target) {
            bail!(
                "--target-template {spec:?}: {target:?} is not one of the --target values ({})",
                a.targets.join(", ")
            );
        }
        if out.iter().any(|(t, _)| t == target) {
            bail!("--target-template: {target:?} is given twice");
        }
        out.push((target.to_string(), PathBuf::from(file)));
    }
    Ok(out)
}

/// Keep each result in the manifest of the store model it measured, when that
/// model was made here (tuned, quantized, merged): `bantam show` then says what
/// the tuning bought. Pulled models and `.gguf` paths are left as they are.
fn record_in_manifests(
    home: &Path,
    a: &EvalArgs,
    dataset: &Path,
    task: &Task,
    targets: &[(String, TargetSpec, Option<Upstream>)],
    summary: &Map<String, Value>,
    out_dir: &Path,
) -> Result<()> {
    let store = bantam_store::Store::open(home)?;
    let mut derived = Vec::new();
    for (target, spec, _) in targets {
        if let TargetSpec::Local(model) = spec {
            match store.get(model) {
                Ok(m) if m.is_derived() => derived.push((target, m)),
                _ => {}
            }
        }
    }
    if derived.is_empty() {
        return Ok(());
    }
    let data_sha = bantam_tune::classify::data_sha256(dataset)?;
    let per_target = target_templates(a)?;
    for (target, m) in derived {
        let template_path = per_target
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, p)| p)
            .or(a.prompt_template.as_ref());
        let template = match template_path {
            Some(p) => {
                let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                Some(hex_sha256(&text))
            }
            None => None,
        };
        let s = &summary[target.as_str()];
        let items = s["items"].as_u64().unwrap_or(0);
        let metrics: Map<String, Value> = s
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.is_number())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let key = format!(
            "{}:{}:{}:{}",
            task.name(),
            &data_sha[..16],
            items,
            template.as_deref().map_or("default", |t| &t[..16])
        );
        let record = json!({
            "task": task.name(),
            "dataset": dataset.display().to_string(),
            "dataset_sha256": data_sha,
            "items": items,
            "prompt_template": template_path.map(|p| p.display().to_string()),
            "metrics": metrics,
            "results": out_dir.display().to_string(),
        });
        if store.record_eval(&m.name, &m.digest, &key, record)? {
            eprintln!(
                "{}: result kept in its manifest (bantam show {})",
                m.name, m.name
            );
        }
    }
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
