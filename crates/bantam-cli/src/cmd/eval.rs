//! `bantam eval`: run a task over a dataset with several targets, side by side.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bantam_eval::run::{self, ItemResult, Task};
use bantam_eval::{dataset, report};
use clap::Args;
use serde_json::{json, Map, Value};

use super::generate_tasks::progress;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  bantam eval ../shared/data/banking77/banking77_test.csv --task classify \\
      --input-field text --expected-field category --limit 200 \\
      --target smollm2:135m --target qwen2.5-coder:0.5b --out eval-banking77
  bantam eval qa.jsonl --task qa --target qwen2.5-coder:1.5b")]
pub struct EvalArgs {
    /// JSONL (`{\"input\", \"expected\"}`) or CSV dataset.
    pub dataset: PathBuf,
    /// classify, extract, summarize, qa or chat.
    #[arg(long)]
    pub task: String,
    /// A model to evaluate (repeat for several).
    #[arg(long = "target", required = true)]
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
    /// cost_per_1k_usd = 1000 / items_per_s × price / 3600 to every target.
    #[arg(long, value_name = "USD")]
    pub price_per_hour: Option<f64>,
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

pub fn eval(home: &Path, a: EvalArgs) -> Result<()> {
    let all_items = dataset::load(&a.dataset, &a.input_field, &a.expected_field)?;
    if all_items.is_empty() {
        bail!("{} has no items", a.dataset.display());
    }
    if let Some(p) = a.price_per_hour {
        if !(p.is_finite() && p > 0.0) {
            bail!("--price-per-hour must be a positive number of USD, not {p}");
        }
    }
    let items: Vec<dataset::Item> = match a.limit {
        Some(n) if n < all_items.len() && a.spread => (0..n)
            .map(|k| all_items[k * all_items.len() / n].clone())
            .collect(),
        Some(n) => all_items.iter().take(n).cloned().collect(),
        None => all_items.clone(),
    };
    let task = match a.task.as_str() {
        "classify" => {
            let labels = if a.labels.is_empty() {
                // Every label of the whole file, not just of the items evaluated.
                let mut l: Vec<String> = all_items
                    .iter()
                    .filter_map(|i| i.expected.as_str().map(str::to_string))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                l.dedup();
                l
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
    };
    let out_dir = a.out.clone().unwrap_or_else(|| {
        let stem = a
            .dataset
            .file_stem()
            .map_or("dataset".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("bantam-eval-{stem}-{}", task.name()))
    });
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut peak: BTreeMap<String, f64> = BTreeMap::new();
    for target in &a.targets {
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
        // Restart the peak-memory mark so each target reports its own.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let engine = super::load_engine(home, target, 1, None, a.threads)?;
        let bar = progress(true, todo.len(), &format!("{target:>20}"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&items_path)?;
        let mut write_err = None;
        rt.block_on(run::run(&engine, target, &task, &todo, |r| {
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
        peak.insert(target.clone(), peak_rss_mb());
    }
    // Summaries over everything in items.jsonl for these targets. A target that had
    // nothing left to do keeps the peak memory of the run that did its items.
    let previous: Option<Value> = std::fs::read_to_string(out_dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut summary = Map::new();
    for target in &a.targets {
        let rs: Vec<&ItemResult> = all.iter().filter(|r| &r.target == target).collect();
        let mut s = run::summarize(&task, &rs);
        let earlier = || previous.as_ref()?["targets"][target.as_str()]["peak_rss_mb"].as_f64();
        if let Some(mb) = peak.get(target).copied().or_else(earlier) {
            s.insert("peak_rss_mb".into(), json!(mb));
        }
        if let Some(price) = a.price_per_hour {
            run::add_cost(&mut s, price);
        }
        summary.insert(target.clone(), Value::Object(s));
    }
    let doc = json!({"dataset": a.dataset.display().to_string(), "task": task.name(), "targets": summary});
    write_atomic(
        &out_dir.join("summary.json"),
        &serde_json::to_string_pretty(&doc)?,
    )?;
    let table = report::markdown(&task, &summary);
    write_atomic(&out_dir.join("summary.md"), &table)?;
    let mut meta = report::Meta::new(
        format!(
            "bantam eval: {} ({})",
            a.dataset.file_name().map_or_else(
                || a.dataset.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            task.name()
        ),
        a.dataset.display().to_string(),
    );
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
    if let Some(v) = bantam_engine::runtime_info().cpu_variant {
        meta.details.push(("CPU kernels".into(), v));
    }
    if let Some(p) = a.price_per_hour {
        meta.details
            .push(("price per hour".into(), format!("${p}")));
    }
    let report_path = out_dir.join("report.html");
    write_atomic(&report_path, &report::html(&meta, &summary, &task))?;
    println!("{table}");
    eprintln!("results in {}", out_dir.display());
    eprintln!("report: {}", report_path.display());
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
