//! `bantam classify`: label texts from an argument, stdin or a JSONL file.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bantam_api::ClassifyTask;
use bantam_types::tasks::{ClassifyExample, ClassifyRequest, LabelSpec, TextInput};
use clap::Args;
use serde_json::{json, Value};

use super::generate_tasks::{open_output, progress, TaskIo};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  bantam classify qwen2.5-coder:0.5b --labels billing,technical,sales \"I was charged twice\"
  bantam classify qwen2.5-coder:0.5b --labels-file labels.txt --input tickets.jsonl --output labelled.jsonl
  echo \"Server is down\" | bantam classify smollm2:135m --labels urgent,normal -")]
pub struct ClassifyArgs {
    /// Model name (pulled first if it is a catalog name that is not installed) or a .gguf path.
    pub model: String,
    /// Labels, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Labels from a file: one per line (`label: description` allowed), or a JSON list
    /// of strings or {"label", "description"} objects.
    #[arg(long, value_name = "FILE")]
    pub labels_file: Option<PathBuf>,
    #[command(flatten)]
    pub io: TaskIo,
    /// Task instructions shown to the model before the labels.
    #[arg(long)]
    pub instructions: Option<String>,
    /// Few-shot examples: JSONL with `input` and `label`.
    #[arg(long, value_name = "FILE")]
    pub examples: Option<PathBuf>,
    /// `greedy` (fast) or `exact` (every label's full likelihood).
    #[arg(long, default_value = "greedy")]
    pub scoring: String,
    /// Below this probability the text gets no label (out of scope).
    #[arg(long)]
    pub min_confidence: Option<f64>,
    /// Report every label at or above --threshold.
    #[arg(long)]
    pub multi_label: bool,
    /// Multi-label cut-off.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Texts per engine request.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

fn read_labels(a: &ClassifyArgs) -> Result<Vec<LabelSpec>> {
    let mut labels: Vec<LabelSpec> = a
        .labels
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(|l| LabelSpec::Name(l.to_string()))
        .collect();
    if let Some(f) = &a.labels_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading labels from {}", f.display()))?;
        if text.trim_start().starts_with('[') {
            let list: Vec<LabelSpec> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON list of labels", f.display()))?;
            labels.extend(list);
        } else {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                labels.push(match line.split_once(": ") {
                    Some((l, d)) => LabelSpec::Described {
                        label: l.trim().to_string(),
                        description: Some(d.trim().to_string()),
                    },
                    None => LabelSpec::Name(line.to_string()),
                });
            }
        }
    }
    Ok(labels)
}

/// A store model made by `bantam tune classify` (it knows its labels).
fn is_classifier_model(home: &Path, model: &str) -> bool {
    bantam_store::Store::open(home)
        .and_then(|s| s.get(model))
        .is_ok_and(|m| bantam_local::is_classifier_model(&m))
}

/// What answers: a generative model scoring the labels, or a classifier model.
enum Classifier {
    Engine(Box<bantam_engine::Engine>),
    Head(bantam_local::LocalBackend),
}

impl Classifier {
    async fn run(&self, req: &ClassifyTask) -> Result<bantam_types::tasks::ClassifyResponse> {
        match self {
            Classifier::Engine(e) => bantam_tasks::classify(e, req)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
            Classifier::Head(b) => {
                match b
                    .answer(bantam_api::Request::Classify(req.clone()))
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.message()))?
                {
                    bantam_api::Reply::Full(v) => Ok(serde_json::from_value(v)?),
                    _ => bail!("a classifier answered with a stream"),
                }
            }
        }
    }
}

/// Records to process: (original record or null, text), from a JSONL file (the text
/// in `field`; plain lines allowed), or one text from an argument or stdin ("-").
pub(crate) fn read_inputs(
    text: Option<&str>,
    input: Option<&Path>,
    field: &str,
) -> Result<Vec<(Value, String)>> {
    if let Some(path) = input {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(o)) => {
                    let text = o
                        .get(field)
                        .and_then(Value::as_str)
                        .with_context(|| {
                            format!(
                                "{}:{}: no string field {:?} (choose it with --field)",
                                path.display(),
                                i + 1,
                                field
                            )
                        })?
                        .to_string();
                    out.push((Value::Object(o), text));
                }
                _ => out.push((Value::Null, line)),
            }
        }
        return Ok(out);
    }
    let text = match text {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.trim().to_string()
        }
        Some(t) => t.to_string(),
        None => bail!("give a text, \"-\" for stdin, or --input FILE.jsonl"),
    };
    Ok(vec![(Value::Null, text)])
}

pub fn classify(home: &Path, a: ClassifyArgs) -> Result<()> {
    let labels = read_labels(&a)?;
    let head = is_classifier_model(home, &a.model);
    if labels.len() < 2 && !(head && labels.is_empty()) {
        bail!("give at least two labels with --labels a,b,c or --labels-file FILE (a classifier model from `bantam tune classify` needs none)");
    }
    let inputs = read_inputs(a.io.text.as_deref(), a.io.input.as_deref(), &a.io.field)?;
    let examples: Vec<ClassifyExample> = match &a.examples {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: lines must be {{\"input\", \"label\"}}", p.display()))?,
        None => Vec::new(),
    };
    let template = ClassifyRequest {
        model: a.model.clone(),
        input: TextInput::Many(Vec::new()),
        labels,
        instructions: a.instructions.clone(),
        examples,
        multi_label: a.multi_label,
        threshold: a.threshold,
        min_confidence: a.min_confidence,
        scoring: Some(a.scoring.clone()),
        prompt: None,
    };
    // The labels, examples and options are checked before the model loads.
    let check = ClassifyRequest {
        input: TextInput::One("-".into()),
        ..template.clone()
    };
    ClassifyTask::new(check).map_err(super::flag_error)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let classifier = if head {
        Classifier::Head(super::local_backend(home, &a.model, a.io.threads, &rt)?)
    } else {
        Classifier::Engine(Box::new(super::load_engine(
            home,
            &a.model,
            1,
            None,
            a.io.threads,
        )?))
    };
    let to_file = a.io.input.is_some();
    let bar = progress(to_file, inputs.len(), "classifying");
    let mut out = open_output(a.io.output.as_deref())?;
    for chunk in inputs.chunks(a.batch.max(1)) {
        let texts: Vec<String> = chunk.iter().map(|(_, t)| t.clone()).collect();
        let req = ClassifyTask::new(ClassifyRequest {
            input: TextInput::Many(texts),
            ..template.clone()
        })
        .map_err(super::flag_error)?;
        let resp = rt.block_on(classifier.run(&req))?;
        for ((record, text), r) in chunk.iter().zip(resp.data) {
            if !to_file && a.io.output.is_none() {
                // One text on a terminal: readable.
                let mut top: Vec<(&String, f64)> = r
                    .probabilities
                    .iter()
                    .map(|(k, v)| (k, v.as_f64().unwrap_or(0.0)))
                    .collect();
                top.sort_by(|x, y| y.1.total_cmp(&x.1));
                writeln!(
                    out,
                    "{}  (confidence {:.3})",
                    r.label
                        .as_deref()
                        .unwrap_or("(none: below --min-confidence)"),
                    r.confidence
                )?;
                for (l, p) in top.iter().take(5) {
                    writeln!(out, "  {p:6.3}  {l}")?;
                }
                continue;
            }
            let mut line = match record {
                Value::Object(o) => Value::Object(o.clone()),
                _ => json!({ "text": text }),
            };
            line["label"] = json!(r.label);
            if let Some(ls) = &r.labels {
                line["labels"] = json!(ls);
            }
            line["confidence"] = json!(r.confidence);
            line["probabilities"] = Value::Object(r.probabilities);
            writeln!(out, "{line}")?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    out.flush()?;
    Ok(())
}
