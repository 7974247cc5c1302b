//! `bantam extract` and `bantam summarize`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bantam_api::{ExtractTask, SummarizeTask};
use bantam_types::tasks::{ExtractRequest, SummarizeRequest};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::classify::read_inputs;

/// Input and output options shared by the text tasks.
#[derive(Debug, Args)]
pub struct TaskIo {
    /// Text to process ("-" reads stdin). Without it, give --input.
    pub text: Option<String>,
    /// JSONL file: one object per line with the text in --field (or plain text lines).
    #[arg(long, short, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Field holding the text in --input records.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// Write JSONL results here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Threads (default: physical cores).
    #[arg(long)]
    pub threads: Option<u32>,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:
  bantam extract qwen2.5-coder:0.5b --schema invoice.schema.json --spans \"Invoice 17 from ACME, total 120 EUR\"")]
pub struct ExtractArgs {
    /// Model name or .gguf path.
    pub model: String,
    /// JSON Schema file of the result.
    #[arg(long, value_name = "FILE")]
    pub schema: PathBuf,
    /// Report where each value appears in the text.
    #[arg(long)]
    pub spans: bool,
    /// Instructions for the model.
    #[arg(long)]
    pub instructions: Option<String>,
    #[command(flatten)]
    pub io: TaskIo,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:
  bantam summarize qwen2.5-coder:0.5b --style bullets --length 3 - < report.txt")]
pub struct SummarizeArgs {
    /// Model name or .gguf path.
    pub model: String,
    /// paragraph, bullets or sentences.
    #[arg(long, default_value = "paragraph")]
    pub style: String,
    /// Bullets or sentences wanted.
    #[arg(long, default_value_t = 3)]
    pub length: u32,
    /// Most tokens of the summary.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Instructions for the model.
    #[arg(long)]
    pub instructions: Option<String>,
    #[command(flatten)]
    pub io: TaskIo,
}

/// A progress bar over `len` records when reading a file (hidden otherwise).
pub(crate) fn progress(show: bool, len: usize, verb: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{verb} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    b
}

/// The JSONL destination: a file, or stdout.
pub(crate) fn open_output(path: Option<&Path>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout())),
    })
}

/// Run `task` over every input; one text prints the bare result, files get JSONL.
fn run_all(
    home: &Path,
    model: &str,
    io: &TaskIo,
    verb: &str,
    task: impl Fn(&bantam_engine::Engine, &tokio::runtime::Runtime, &str) -> Result<Value>,
    human: impl Fn(&Value) -> String,
) -> Result<()> {
    let inputs = read_inputs(io.text.as_deref(), io.input.as_deref(), &io.field)?;
    let engine = super::load_engine(home, model, 1, None, io.threads)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let to_jsonl = io.input.is_some() || io.output.is_some();
    let bar = progress(io.input.is_some(), inputs.len(), verb);
    let mut out = open_output(io.output.as_deref())?;
    for (record, text) in &inputs {
        let result = task(&engine, &rt, text)?;
        if to_jsonl {
            let mut line = match record {
                Value::Object(o) => Value::Object(o.clone()),
                _ => json!({ "text": text }),
            };
            line["result"] = result;
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", human(&result))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.flush()?;
    Ok(())
}

pub fn extract(home: &Path, a: ExtractArgs) -> Result<()> {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(&a.schema)
            .with_context(|| format!("reading {}", a.schema.display()))?,
    )
    .with_context(|| format!("{} is not JSON", a.schema.display()))?;
    run_all(
        home,
        &a.model,
        &a.io,
        "extracting",
        |engine, rt, text| {
            let req = ExtractRequest {
                model: a.model.clone(),
                input: text.to_string(),
                schema: schema.clone(),
                instructions: a.instructions.clone(),
                spans: a.spans,
                max_tokens: None,
                prompt: None,
            };
            let req = ExtractTask::new(req).map_err(super::flag_error)?;
            let r = rt
                .block_on(bantam_tasks::extract(engine, &req))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut v = json!({"data": r.data});
            if let Some(s) = r.spans {
                v["spans"] = Value::Object(s);
            }
            Ok(v)
        },
        |v| serde_json::to_string_pretty(v).unwrap_or_default(),
    )
}

pub fn summarize(home: &Path, a: SummarizeArgs) -> Result<()> {
    run_all(
        home,
        &a.model,
        &a.io,
        "summarizing",
        |engine, rt, text| {
            let req = SummarizeRequest {
                model: a.model.clone(),
                input: text.to_string(),
                style: Some(a.style.clone()),
                length: Some(a.length),
                instructions: a.instructions.clone(),
                max_tokens: Some(a.max_tokens),
                prompt: None,
            };
            let req = SummarizeTask::new(req).map_err(super::flag_error)?;
            let r = rt
                .block_on(bantam_tasks::summarize(engine, &req))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(json!({"summary": r.summary, "chunks": r.chunks, "levels": r.levels}))
        },
        |v| v["summary"].as_str().unwrap_or_default().to_string(),
    )
}
