//! `bantam tune lora`: a LoRA adapter trained on the user's examples over a
//! store model, installed as a model of kind `adapter` that is served on top
//! of its base.
//!
//! Data (JSONL, one example per line), in this order of detection:
//! * `{"messages": [{"role", "content"}, …]}`: rendered with the base model's
//!   chat template; the loss covers every assistant turn.
//! * `{"<input>": …, "<output>": …}` (`input`/`output`, `prompt`/`completion`
//!   or the fields given): a user turn and the assistant's answer; with a
//!   prompt template (as `bantam eval --prompt-template`), the messages it
//!   renders for the input, so that training and serving ask alike.
//! * labelled texts (`input`/`expected` or the fields given; JSONL or CSV):
//!   rendered with exactly the prompt `/v1/classify` uses for that label set,
//!   the label as the answer, so the adapter serves classification by label
//!   likelihood.

use std::path::{Path, PathBuf};

use bantam_api::ClassifyTask;
use bantam_engine::template::TemplateMessage;
use bantam_engine::ChatTokenizer;
use bantam_eval::prompt::{PromptTask, PromptTemplate};
use bantam_lora::train::{self, Adam, EpochLoss, Observer, Outcome, TrainState};
use bantam_lora::{BaseModel, Example, Lora, TrainOptions};
use bantam_store::Lineage;
use bantam_store::{Manifest, PullOptions, Store};
use serde_json::{json, Value};
use sha2::Digest;

use crate::classify::load_examples;
use crate::TuneError;

/// Field names of pair and label data.
#[derive(Debug, Clone)]
pub struct Fields {
    /// Input field (`input` by default; `prompt` is also recognised).
    pub input: String,
    /// Answer field of pair data (`output`, `completion`, `response`, `answer` when not given).
    pub output: Option<String>,
    /// Label field of classification data.
    pub label: String,
    /// A prompt template (`[system]`/`[user]` lines, `{input}`): for labelled
    /// data a `/v1/classify` one (`{labels}` allowed) instead of the default
    /// instructions and label list; for pairs the messages around each input
    /// (`{schema}` allowed, filled from `schema`). Serve and evaluate with the
    /// same template.
    pub prompt: Option<String>,
    /// The JSON Schema a pair template's `{schema}` stands for.
    pub schema: Option<Value>,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            input: "input".into(),
            output: None,
            label: "expected".into(),
            prompt: None,
            schema: None,
        }
    }
}

/// What the data was read as.
#[derive(Debug, Clone, PartialEq)]
pub enum DataFormat {
    Chat,
    Pairs,
    /// Labelled texts; the labels in prompt order.
    Labels(Vec<String>),
}

impl DataFormat {
    pub fn name(&self) -> &'static str {
        match self {
            DataFormat::Chat => "chat",
            DataFormat::Pairs => "input/output",
            DataFormat::Labels(_) => "labelled texts",
        }
    }
}

/// Tokenized training data.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub format: DataFormat,
    pub examples: Vec<Example>,
    /// Rows read.
    pub rows: usize,
    /// Examples cut to `max_seq` tokens.
    pub truncated: usize,
    /// Examples left out because nothing of the answer fit in `max_seq`.
    pub dropped: usize,
}

fn data_err(path: &Path, line: usize, msg: impl std::fmt::Display) -> TuneError {
    TuneError::Data(format!("{}: line {line}: {msg}", path.display()))
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>, TuneError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TuneError::Data(format!("reading {}: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| data_err(path, i + 1, format!("not JSON: {e}")))?;
        if !v.is_object() {
            return Err(data_err(path, i + 1, "each line must be a JSON object"));
        }
        rows.push(v);
    }
    if rows.is_empty() {
        return Err(TuneError::Data(format!(
            "{} has no examples",
            path.display()
        )));
    }
    Ok(rows)
}

fn output_field<'a>(fields: &'a Fields, row: &Value) -> Option<&'a str> {
    if let Some(f) = &fields.output {
        return Some(f.as_str());
    }
    ["output", "completion", "response", "answer"]
        .into_iter()
        .find(|f| row.get(f).is_some())
}

/// Reads and tokenizes `path`. `labels` fixes the label order of
/// classification data (the training set's, for a validation file).
pub fn prepare(
    tok: &ChatTokenizer,
    base_name: &str,
    path: &Path,
    fields: &Fields,
    labels: Option<&[String]>,
    max_seq: usize,
) -> Result<Prepared, TuneError> {
    let is_jsonl = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"));
    let first = if is_jsonl {
        Some(read_jsonl(path)?)
    } else {
        None
    };
    let mut seqs: Vec<(Vec<u32>, Vec<bool>)> = Vec::new();
    let format;
    let rows;
    match first.as_ref().map(|r| (r, &r[0])) {
        Some((rows_v, r0)) if r0.get("messages").is_some() => {
            if fields.prompt.is_some() {
                return Err(TuneError::Data(format!(
                    "{}: conversations carry their own messages; a prompt template applies \
                     to input/output pairs and labelled texts",
                    path.display()
                )));
            }
            format = DataFormat::Chat;
            rows = rows_v.len();
            for (i, r) in rows_v.iter().enumerate() {
                let msgs: Vec<TemplateMessage> = serde_json::from_value(r["messages"].clone())
                    .map_err(|e| data_err(path, i + 1, format!("messages: {e}")))?;
                if !msgs.iter().any(|m| m.role == "assistant") {
                    return Err(data_err(
                        path,
                        i + 1,
                        "the conversation has no assistant turn to learn",
                    ));
                }
                seqs.push(
                    tok.tokenize_chat(&msgs)
                        .map_err(|e| data_err(path, i + 1, e))?,
                );
            }
        }
        Some((rows_v, r0))
            if output_field(fields, r0).is_some() && r0.get(&fields.label).is_none() =>
        {
            format = DataFormat::Pairs;
            rows = rows_v.len();
            let input_f = if r0.get(&fields.input).is_some() {
                fields.input.as_str()
            } else {
                "prompt"
            };
            let template = match &fields.prompt {
                Some(text) => {
                    let t = PromptTemplate::parse(text, PromptTask::Extract)
                        .map_err(|e| TuneError::Data(format!("prompt template: {e}")))?;
                    if t.uses_schema() && fields.schema.is_none() {
                        return Err(TuneError::Data(
                            "the prompt template uses {schema}: give the schema (--schema FILE)"
                                .into(),
                        ));
                    }
                    Some(t)
                }
                None => None,
            };
            for (i, r) in rows_v.iter().enumerate() {
                let out_f = output_field(fields, r).unwrap_or("output");
                let (Some(inp), Some(out)) = (
                    r.get(input_f).and_then(Value::as_str),
                    r.get(out_f).and_then(Value::as_str),
                ) else {
                    return Err(data_err(
                        path,
                        i + 1,
                        format!("needs string fields {input_f:?} and {out_f:?}"),
                    ));
                };
                let mut msgs = match &template {
                    Some(t) => t.render(inp, fields.schema.as_ref()),
                    None => vec![TemplateMessage::new("user", inp)],
                };
                msgs.push(TemplateMessage::new("assistant", out));
                seqs.push(match tok.tokenize_chat(&msgs) {
                    Ok(s) => s,
                    // No chat template: plain completion text.
                    Err(bantam_engine::EngineError::Template(_)) if template.is_none() => {
                        tok.tokenize_plain(inp, out)
                    }
                    Err(e) => return Err(data_err(path, i + 1, e)),
                });
            }
        }
        _ => {
            let (ex, _blank) = load_examples(path, &fields.input, &fields.label)?;
            rows = ex.len();
            let names: Vec<String> = match labels {
                Some(l) => l.to_vec(),
                None => {
                    let mut l: Vec<String> = ex.iter().map(|e| e.label.clone()).collect();
                    l.sort();
                    l.dedup();
                    l
                }
            };
            if names.len() < 2 {
                return Err(TuneError::Data(format!(
                    "{}: classification data needs at least two labels",
                    path.display()
                )));
            }
            // The prompt /v1/classify renders for this label set.
            let task = ClassifyTask::new(
                serde_json::from_value(json!({"model": base_name, "input": "x", "labels": names,
                    "prompt": fields.prompt}))
                .map_err(|e| TuneError::Data(format!("labels: {e}")))?,
            )
            .map_err(|e| TuneError::Data(format!("labels: {}", e.message)))?;
            for (i, e) in ex.iter().enumerate() {
                if !names.contains(&e.label) {
                    return Err(data_err(
                        path,
                        i + 1,
                        format!("label {:?} is not among the training labels", e.label),
                    ));
                }
                let mut msgs = task.messages(&e.text);
                msgs.push(TemplateMessage::new("assistant", &e.label));
                seqs.push(
                    tok.tokenize_chat(&msgs)
                        .map_err(|err| data_err(path, i + 1, err))?,
                );
            }
            format = DataFormat::Labels(names);
        }
    }
    let mut examples = Vec::with_capacity(seqs.len());
    let (mut truncated, mut dropped) = (0, 0);
    for (mut tokens, mut mask) in seqs {
        if tokens.len() > max_seq {
            tokens.truncate(max_seq);
            mask.truncate(max_seq);
            truncated += 1;
        }
        let ex = Example { tokens, mask };
        if ex.target_count() == 0 {
            dropped += 1;
            continue;
        }
        examples.push(ex);
    }
    if examples.is_empty() {
        return Err(TuneError::Data(format!(
            "{}: no example has answer tokens within {max_seq} tokens",
            path.display()
        )));
    }
    Ok(Prepared {
        format,
        examples,
        rows,
        truncated,
        dropped,
    })
}

/// Splits off a seeded validation share (none below 10 examples).
pub fn split(examples: Vec<Example>, fraction: f64, seed: u64) -> (Vec<Example>, Vec<Example>) {
    let n = examples.len();
    let k = ((n as f64) * fraction).round() as usize;
    if n < 10 || k == 0 {
        return (examples, Vec::new());
    }
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = bantam_lora::lora::SplitMix::new(seed ^ 0x5EED);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    let val_set: std::collections::HashSet<usize> = idx[..k].iter().copied().collect();
    let mut train = Vec::with_capacity(n - k);
    let mut val = Vec::with_capacity(k);
    for (i, e) in examples.into_iter().enumerate() {
        if val_set.contains(&i) {
            val.push(e);
        } else {
            train.push(e);
        }
    }
    (train, val)
}

/// A training run's identity: a checkpoint only resumes the same run.
pub fn fingerprint(
    base_digest: &str,
    data_sha: &str,
    opts: &TrainOptions,
    max_seq: usize,
) -> String {
    let mut h = sha2::Sha256::new();
    h.update(base_digest.as_bytes());
    h.update(data_sha.as_bytes());
    h.update(serde_json::to_vec(opts).expect("json"));
    h.update(max_seq.to_le_bytes());
    hex::encode(h.finalize())
}

/// Where `bantam tune lora --out NAME` keeps its checkpoint.
pub fn checkpoint_dir(store: &Store, out: &str) -> PathBuf {
    let safe: String = out
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    store
        .home()
        .join("checkpoints")
        .join(format!("lora-{safe}"))
}

/// The trained adapter and how it got there.
pub struct Trained {
    pub base: BaseModel,
    pub lora: Lora,
    pub curve: Vec<EpochLoss>,
    pub initial_val_loss: Option<f64>,
    pub outcome: Outcome,
    pub steps: usize,
}

/// Forwards to the caller's observer and writes the periodic checkpoints.
struct Checkpointing<'a> {
    inner: &'a mut dyn Observer,
    dir: &'a Path,
    opts: &'a TrainOptions,
    fingerprint: &'a str,
}

impl Observer for Checkpointing<'_> {
    fn on_step(&mut self, r: &train::StepReport) {
        self.inner.on_step(r)
    }
    fn on_epoch(&mut self, e: &EpochLoss) {
        self.inner.on_epoch(e)
    }
    fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }
    fn checkpoint(
        &mut self,
        lora: &Lora,
        adam: &Adam,
        state: &TrainState,
    ) -> Result<(), bantam_lora::LoraError> {
        train::save_checkpoint(self.dir, lora, adam, state, self.opts, self.fingerprint)
    }
}

/// Trains (or resumes) an adapter over the GGUF at `base_path`.
#[allow(clippy::too_many_arguments)]
pub fn train_adapter(
    base_path: &Path,
    train_set: &[Example],
    val_set: &[Example],
    opts: &TrainOptions,
    fingerprint: &str,
    checkpoint: &Path,
    resume: bool,
    obs: &mut dyn Observer,
) -> Result<Trained, TuneError> {
    let err = |e: bantam_lora::LoraError| TuneError::Train(e.to_string());
    let base = BaseModel::load(base_path).map_err(err)?;
    let targets = opts.parsed_targets().map_err(err)?;
    let lora = Lora::init(&base, &targets, opts.rank, opts.alpha, opts.seed).map_err(err)?;
    let (mut adam, mut state) = if resume {
        let (adam, state, _) =
            train::load_checkpoint(checkpoint, &lora, fingerprint).map_err(err)?;
        (adam, state)
    } else {
        (Adam::new(&lora).map_err(err)?, TrainState::default())
    };
    let initial_val_loss = if !resume && !val_set.is_empty() {
        Some(train::mean_loss(&base, None, val_set).map_err(err)?)
    } else {
        None
    };
    let mut obs = Checkpointing {
        inner: obs,
        dir: checkpoint,
        opts,
        fingerprint,
    };
    let outcome = train::train(
        &base, &lora, &mut adam, &mut state, train_set, val_set, opts, &mut obs,
    )
    .map_err(err)?;
    train::save_checkpoint(checkpoint, &lora, &adam, &state, opts, fingerprint).map_err(err)?;
    Ok(Trained {
        base,
        lora,
        curve: state.curve.clone(),
        initial_val_loss,
        outcome,
        steps: state.step,
    })
}

/// Installs the adapter as `name` (kind `adapter`), its manifest holding the
/// lineage: the base's name and digest, the data's hash, and `training`
/// (hyperparameters, data set, loss curve).
pub fn install_adapter(
    store: &Store,
    name: &str,
    base: &Manifest,
    trained: &Trained,
    training: Value,
    data_sha: &str,
    source: &str,
) -> Result<Manifest, TuneError> {
    let inst = |e: String| TuneError::Install(format!("{e}{}", store.full_disk_hint()));
    let mut tmp = store.staging_file().map_err(|e| inst(e.to_string()))?;
    trained
        .lora
        .write_gguf(
            &trained.base.config.arch,
            name,
            &[
                ("bantam.base_model", base.name.clone()),
                ("bantam.base_digest", base.digest.clone()),
            ],
            tmp.as_file_mut(),
        )
        .map_err(|e| inst(e.to_string()))?;
    tmp.as_file().sync_all().map_err(|e| inst(e.to_string()))?;
    let opts = PullOptions {
        name: Some(name.to_string()),
        lineage: Lineage {
            base_model: Some(base.name.clone()),
            adapter: Some("lora".into()),
            training_data_hash: Some(data_sha.to_string()),
            parent_digest: Some(base.digest.clone()),
            ..Lineage::default()
        },
        ..PullOptions::default()
    };
    let mut m = store
        .import_file(tmp.path(), &opts, &bantam_store::NoProgress)
        .map_err(|e| inst(e.to_string()))?;
    m.source = source.to_string();
    m.kind = Some("adapter".into());
    m.training = Some(training);
    m.context_length = base.context_length;
    store.write_manifest(&m).map_err(|e| inst(e.to_string()))?;
    Ok(m)
}
