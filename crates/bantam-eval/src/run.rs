//! Running a task over a dataset with one target, and summarising the results.

use std::time::Instant;

use bantam_engine::template::TemplateMessage;
use bantam_engine::{Engine, EngineError};
use bantam_structured::{StructuredError, Validator};
use bantam_tasks::generate::complete_timed;
use bantam_types::generate::{OutputConstraint, Timings, Usage};
use bantam_types::tasks::{ClassifyRequest, SummarizeRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::dataset::Item;
use crate::prompt::{self, Message, PromptTemplate};
use crate::remote::{Remote, RemoteAnswer, RemoteError, Served};
use crate::{qa, rouge};

pub(crate) use crate::summary::percentile;
pub use crate::summary::{add_cost, add_token_cost, summarize};

/// What is evaluated.
#[derive(Debug, Clone)]
pub enum Task {
    /// Labels (expected: a label).
    Classify {
        /// The label set.
        labels: Vec<String>,
    },
    /// JSON extraction (expected: an object).
    Extract {
        /// Schema the outputs must satisfy.
        schema: Value,
    },
    /// Summaries (expected: one reference or a list).
    Summarize,
    /// Short answers (expected: one answer or a list).
    Qa,
    /// Free answers (expected: one reference or a list).
    Chat,
}

impl Task {
    /// The task's name.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Classify { .. } => "classify",
            Task::Extract { .. } => "extract",
            Task::Summarize => "summarize",
            Task::Qa => "qa",
            Task::Chat => "chat",
        }
    }
}

/// One item's outcome for one target (a line of `items.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// Target name.
    pub target: String,
    /// Item index.
    pub index: usize,
    /// Input text.
    pub input: String,
    /// Expected answer.
    pub expected: Value,
    /// The target's answer (null on error).
    pub prediction: Value,
    /// Per-item metrics.
    pub metrics: Map<String, Value>,
    /// Milliseconds (for batched classification: the batch's time per item).
    pub latency_ms: f64,
    /// Prompt tokens as the target counted them (0 when unknown; for local
    /// classification, which scores a batch at once, not counted).
    #[serde(default)]
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Milliseconds from the item's start to its answer's first token (generative
    /// tasks: locally the item's latency less the engine's decode time of the
    /// generation that was kept; remote answers are streamed and timed at their
    /// first content chunk). Absent for classification, which scores (locally) or
    /// constrains (remotely) a label rather than generating text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// For a remote Bantam (a route): which backend answered, why, at what cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Served>,
    /// What went wrong, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(crate) fn references(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    }
}

/// JSON leaves as (pointer, value) pairs.
fn leaves(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| leaves(x, format!("{path}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| leaves(x, format!("{path}/{i}"), out)),
        other => out.push((path, other.clone())),
    }
}

/// Field-level counts of an extraction: (correct, predicted, expected).
pub fn field_counts(pred: &Value, expected: &Value) -> (usize, usize, usize) {
    let (mut p, mut e) = (Vec::new(), Vec::new());
    leaves(pred, String::new(), &mut p);
    leaves(expected, String::new(), &mut e);
    let tp = p.iter().filter(|x| e.contains(x)).count();
    (tp, p.len(), e.len())
}

pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

fn text_metrics(pred: &str, expected: &Value) -> Map<String, Value> {
    let r = rouge::score_multi(&references(expected), pred);
    let mut m = Map::new();
    m.insert("rouge1".into(), json!(r.rouge1.fmeasure));
    m.insert("rouge2".into(), json!(r.rouge2.fmeasure));
    m.insert("rougeL".into(), json!(r.rouge_l.fmeasure));
    m.insert("rougeLsum".into(), json!(r.rouge_lsum.fmeasure));
    m
}

/// Where a target's answers come from.
#[derive(Debug, Clone, Copy)]
pub enum Runner<'a> {
    /// A local model.
    Local(&'a Engine),
    /// An OpenAI-compatible API.
    Remote(&'a Remote),
}

/// What one item's generation produced.
struct Answer {
    prediction: Value,
    prompt_tokens: u32,
    completion_tokens: u32,
    /// Remote: measured time to the first content chunk.
    ttft_ms: Option<f64>,
    /// Local: decode time of the kept generation (its first token came that long
    /// before the end).
    decode_ms: Option<f64>,
    served: Option<Served>,
}

/// Most tokens a QA answer may have.
const QA_MAX_TOKENS: u32 = 48;
/// Most tokens of a chat answer or a summary.
const TEXT_MAX_TOKENS: u32 = 256;
/// Most tokens of an extracted object.
const EXTRACT_MAX_TOKENS: u32 = 1024;
/// bantam-tasks' penalty against loops in summaries (Ollama's default).
const SUMMARY_PENALTY: f32 = 1.1;

fn engine_messages(messages: &[Message]) -> Vec<TemplateMessage> {
    messages
        .iter()
        .map(|m| TemplateMessage::new(&m.role, &m.content))
        .collect()
}

/// One item of a generative task on a local engine.
async fn local_item(
    engine: &Engine,
    target: &str,
    task: &Task,
    template: &PromptTemplate,
    custom: bool,
    it: &Item,
) -> Result<Answer, String> {
    let schema = match task {
        Task::Extract { schema } => Some(schema),
        _ => None,
    };
    let messages = engine_messages(&template.render(&it.input, schema));
    let text = |r: Result<(String, Usage, Timings), EngineError>| {
        r.map(|(text, u, t)| Answer {
            prediction: json!(text.trim()),
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            ttft_ms: None,
            decode_ms: Some(t.decode_ms),
            served: None,
        })
        .map_err(|e| e.to_string())
    };
    match task {
        Task::Extract { schema } => {
            let prompt = engine
                .render_chat(&messages, &[])
                .map_err(|e| e.to_string())?;
            // As bantam-tasks' extract: an output cut short or failing validation is
            // tried twice more with a growing repetition penalty.
            let mut penalty = 1.0;
            let (text, u, t) = loop {
                let r = complete_timed(
                    engine,
                    prompt.clone(),
                    EXTRACT_MAX_TOKENS,
                    Some(OutputConstraint::JsonSchema(schema.clone())),
                    penalty,
                )
                .await;
                match r {
                    Err(EngineError::Constraint(
                        StructuredError::Incomplete(_) | StructuredError::Violated(_),
                    )) if penalty < 1.3 => penalty += 0.15,
                    other => break other.map_err(|e| e.to_string())?,
                }
            };
            // The engine validated the text against the schema.
            let data: Value =
                serde_json::from_str(&text).map_err(|e| format!("output is not JSON: {e}"))?;
            Ok(Answer {
                prediction: data,
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                ttft_ms: None,
                decode_ms: Some(t.decode_ms),
                served: None,
            })
        }
        // The default prompt goes through bantam-tasks, which summarises inputs
        // longer than the context hierarchically.
        Task::Summarize if !custom => {
            let req = SummarizeRequest {
                model: target.to_string(),
                input: it.input.clone(),
                style: None,
                length: None,
                instructions: None,
                max_tokens: Some(TEXT_MAX_TOKENS),
            };
            bantam_tasks::summarize::summarize_timed(engine, &req)
                .await
                .map(|(r, t)| Answer {
                    prediction: json!(r.summary),
                    prompt_tokens: r.usage.prompt_tokens + r.usage.cached_tokens,
                    completion_tokens: r.usage.completion_tokens,
                    ttft_ms: None,
                    decode_ms: Some(t.decode_ms),
                    served: None,
                })
                .map_err(|e| e.to_string())
        }
        _ => {
            let (max, penalty) = generation(task);
            let prompt = engine
                .render_chat(&messages, &[])
                .map_err(|e| e.to_string())?;
            text(complete_timed(engine, prompt, max, None, penalty).await)
        }
    }
}

/// Token limit and repetition penalty of the free-text tasks.
fn generation(task: &Task) -> (u32, f32) {
    match task {
        Task::Qa => (QA_MAX_TOKENS, 1.0),
        Task::Summarize => (TEXT_MAX_TOKENS, SUMMARY_PENALTY),
        _ => (TEXT_MAX_TOKENS, 1.0),
    }
}

/// Why a remote item has no answer.
enum Failure {
    /// About this item (a 4xx, an answer that is not JSON or not schema-valid): an
    /// error result.
    Item(String),
    /// About the target (unreachable, timed out, 408/429/5xx after retries): the
    /// run stops so that a rerun retries the item.
    Target(String),
}

impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Self {
        match &e {
            RemoteError::Backend(b) if b.retryable() => Failure::Target(e.to_string()),
            _ => Failure::Item(e.to_string()),
        }
    }
}

/// A run stopped before its last item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{target}: {reason}")]
pub struct RunError {
    /// The target.
    pub target: String,
    /// What failed.
    pub reason: String,
}

/// One item of a generative task on a remote API.
async fn remote_item(
    remote: &Remote,
    task: &Task,
    template: &PromptTemplate,
    it: &Item,
) -> Result<Answer, Failure> {
    let answer = |prediction, a: RemoteAnswer| Answer {
        prediction,
        prompt_tokens: a.prompt_tokens,
        completion_tokens: a.completion_tokens,
        ttft_ms: a.ttft_ms,
        decode_ms: None,
        served: a.served,
    };
    match task {
        Task::Extract { schema } => {
            let messages = template.render(&it.input, Some(schema));
            let (v, a) = remote.json(&messages, EXTRACT_MAX_TOKENS, schema).await?;
            // Not every server enforces the schema: check it here, as the engine does.
            Validator::schema(schema)
                .and_then(|val| val.check(&v.to_string()))
                .map_err(|e| {
                    Failure::Item(format!("the answer does not satisfy the schema: {e}"))
                })?;
            Ok(answer(v, a))
        }
        _ => {
            let (max, penalty) = generation(task);
            let messages = template.render(&it.input, None);
            let a = remote.chat(&messages, max, Some(penalty)).await?;
            Ok(answer(json!(a.text.trim()), a))
        }
    }
}

/// Per-item metrics of a generative task's prediction.
fn item_metrics(task: &Task, pred: &Value, it: &Item) -> Map<String, Value> {
    match task {
        Task::Extract { .. } => {
            let (tp, np, ne) = field_counts(pred, &it.expected);
            let p = ratio(tp as f64, np as f64);
            let r = ratio(tp as f64, ne as f64);
            let mut m = Map::new();
            m.insert("field_tp".into(), json!(tp));
            m.insert("field_pred".into(), json!(np));
            m.insert("field_expected".into(), json!(ne));
            m.insert("field_f1".into(), json!(ratio(2.0 * p * r, p + r)));
            m.insert("schema_valid".into(), json!(1));
            m
        }
        Task::Qa => {
            let refs = references(&it.expected);
            let text = pred.as_str().unwrap_or_default();
            let mut m = Map::new();
            m.insert("exact_match".into(), json!(qa::exact_match(text, &refs)));
            m.insert("f1".into(), json!(qa::token_f1(text, &refs)));
            m
        }
        _ => text_metrics(pred.as_str().unwrap_or_default(), &it.expected),
    }
}

/// Run `task` over `items` with a target, handing each result to `sink` as soon as
/// it exists (so a killed run keeps what it did). `template` replaces the task's
/// default prompt.
///
/// An error that is the item's (a rejected request, a local engine error) becomes an
/// error result; a remote target that stays unreachable, times out or keeps
/// answering 408/429/5xx after its retries stops the run with [`RunError`] before
/// that item, so a rerun continues there.
pub async fn run(
    runner: Runner<'_>,
    target: &str,
    task: &Task,
    template: Option<&PromptTemplate>,
    items: &[Item],
    mut sink: impl FnMut(ItemResult),
) -> Result<(), RunError> {
    let stop = |reason: String| RunError {
        target: target.to_string(),
        reason,
    };
    let result = |it: &Item, prediction: Value, metrics: Map<String, Value>, ms: f64| ItemResult {
        target: target.to_string(),
        index: it.index,
        input: it.input.clone(),
        expected: it.expected.clone(),
        prediction,
        metrics,
        latency_ms: ms,
        prompt_tokens: 0,
        completion_tokens: 0,
        ttft_ms: None,
        served: None,
        error: None,
    };
    let label_metrics = |it: &Item, label: &str, confidence: Option<f32>| {
        let ok = it.expected.as_str() == Some(label);
        let mut m = Map::new();
        m.insert("correct".into(), json!(ok as u8));
        if let Some(c) = confidence {
            m.insert("confidence".into(), json!(c));
        }
        m
    };
    let default = prompt::default_for(task);
    let Some(template) = template.or(default.as_ref()) else {
        return Ok(());
    };
    match (task, runner) {
        (Task::Classify { labels }, Runner::Local(engine)) => {
            for batch in items.chunks(16) {
                let req = ClassifyRequest::new(target, labels.clone());
                let texts: Vec<String> = batch.iter().map(|i| i.input.clone()).collect();
                let t = Instant::now();
                let out = bantam_tasks::classify::classify_with(engine, &req, &texts, |text| {
                    engine_messages(&template.render_labels(text, labels))
                })
                .await;
                let ms = t.elapsed().as_secs_f64() * 1000.0 / batch.len() as f64;
                match out {
                    Ok(resp) => {
                        for (it, d) in batch.iter().zip(resp.data) {
                            let label = d.label.clone().unwrap_or_default();
                            let m = label_metrics(it, &label, Some(d.confidence));
                            sink(result(it, json!(label), m, ms));
                        }
                    }
                    Err(e) => {
                        for it in batch {
                            let mut r = result(it, Value::Null, Map::new(), ms);
                            r.error = Some(e.to_string());
                            sink(r);
                        }
                    }
                }
            }
        }
        (Task::Classify { labels }, Runner::Remote(remote)) => {
            // The same prompt as the local scorer.
            for it in items {
                let messages = template.render_labels(&it.input, labels);
                let t = Instant::now();
                let out = remote.label(&messages, labels).await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                sink(match out.map_err(Failure::from) {
                    Err(Failure::Target(reason)) => return Err(stop(reason)),
                    Ok((label, a)) => {
                        let m = label_metrics(it, &label, None);
                        let mut r = result(it, json!(label), m, ms);
                        r.prompt_tokens = a.prompt_tokens;
                        r.completion_tokens = a.completion_tokens;
                        r.served = a.served;
                        r
                    }
                    Err(Failure::Item(e)) => {
                        let mut r = result(it, Value::Null, Map::new(), ms);
                        r.error = Some(e);
                        r
                    }
                });
            }
        }
        _ => {
            // A template equal to the default is the default.
            let custom = Some(template) != default.as_ref();
            for it in items {
                let t = Instant::now();
                let out = match runner {
                    Runner::Local(engine) => local_item(engine, target, task, template, custom, it)
                        .await
                        .map_err(Failure::Item),
                    Runner::Remote(remote) => remote_item(remote, task, template, it).await,
                };
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                sink(match out {
                    Err(Failure::Target(reason)) => return Err(stop(reason)),
                    Ok(a) => {
                        let m = item_metrics(task, &a.prediction, it);
                        let mut r = result(it, a.prediction, m, ms);
                        r.prompt_tokens = a.prompt_tokens;
                        r.completion_tokens = a.completion_tokens;
                        r.ttft_ms = a
                            .ttft_ms
                            .or_else(|| a.decode_ms.map(|d| (ms - d).clamp(0.0, ms)));
                        r.served = a.served;
                        r
                    }
                    Err(Failure::Item(e)) => {
                        let mut m = Map::new();
                        if matches!(task, Task::Extract { .. }) {
                            m.insert("schema_valid".into(), json!(0));
                        }
                        let mut r = result(it, Value::Null, m, ms);
                        r.error = Some(e);
                        r
                    }
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_counts_compare_leaves() {
        let (tp, np, ne) = field_counts(
            &json!({"a": 1, "b": {"c": "x"}, "d": [1, 2]}),
            &json!({"a": 1, "b": {"c": "y"}, "d": [1, 2], "e": null}),
        );
        assert_eq!((tp, np, ne), (3, 4, 5));
    }
}
