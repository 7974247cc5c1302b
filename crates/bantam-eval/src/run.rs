//! Running a task over a dataset with one target, and summarising the results.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bantam_api::{
    Backend, BackendError, Call, ClassifyTask, Endpoint, Reply, Request, SummarizeTask,
};
use bantam_structured::Validator;
use bantam_types::generate::TemplateMessage;
use bantam_types::tasks::{
    ClassifyRequest, ClassifyResponse, SummarizeRequest, SummarizeResponse, TextInput,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::dataset::Item;
use crate::prompt::{self, PromptTemplate};
use crate::remote::Served;
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

/// A target: its name in the results, the model name its requests carry, and the
/// backend that answers them — `bantam-local`'s for a local model, `bantam-upstream`'s
/// for an API. Both are driven the same way.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The target as given (`smollm2:135m`, `http://host/v1#auto`).
    pub name: &'a str,
    /// The model or route name sent as `model`.
    pub model: &'a str,
    /// What answers.
    pub backend: &'a dyn Backend,
    /// A model of this machine (classification is sent in batches; no retries).
    pub local: bool,
}

/// What one item's generation produced.
struct Answer {
    prediction: Value,
    prompt_tokens: u32,
    completion_tokens: u32,
    /// Time to the first content chunk (streamed answers).
    ttft_ms: Option<f64>,
    /// The engine's decode time of a non-streamed answer (a local summary): its
    /// first token came that long before the end.
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
/// Classification inputs per request to a local model (they share a scoring pass).
const LOCAL_BATCH: usize = 16;
/// Attempts of a remote call on transient failures (connection errors, timeouts,
/// 429, 5xx).
const ATTEMPTS: u32 = 3;

/// Token limit and repetition penalty of the free-text tasks.
fn generation(task: &Task) -> (u32, f32) {
    match task {
        Task::Qa => (QA_MAX_TOKENS, 1.0),
        Task::Summarize => (TEXT_MAX_TOKENS, SUMMARY_PENALTY),
        _ => (TEXT_MAX_TOKENS, 1.0),
    }
}

/// Why an item has no answer.
enum Failure {
    /// About this item (a rejected request, an answer that is not JSON or not
    /// schema-valid): an error result.
    Item(String),
    /// The model could not finish or validate a structured output: the item's
    /// error, unless a retry with a higher repetition penalty gets it.
    Structured(String),
    /// About the target (unreachable, timed out, overloaded or failing after
    /// retries): the run stops so that a rerun retries the item.
    Target(String),
}

impl From<BackendError> for Failure {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::StructuredIncomplete { .. } | BackendError::StructuredInvalid { .. } => {
                Failure::Structured(e.to_string())
            }
            e if e.retryable() => Failure::Target(e.to_string()),
            e => Failure::Item(e.to_string()),
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

/// Calls with what one target accepts (remembered over the run).
struct Caller<'a> {
    t: Target<'a>,
    /// The target accepts `repetition_penalty` (Bantam's and vLLM's extension)
    /// until it rejects it once.
    repetition_penalty: AtomicBool,
}

/// A streamed or complete answer with the call's headers and timing.
struct Called {
    reply: Reply,
    headers: Vec<(String, String)>,
    started: Instant,
}

impl Caller<'_> {
    /// One call; a remote target's transient failures are retried with back-off.
    async fn call(&self, req: Request) -> Result<Called, BackendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            match self
                .t
                .backend
                .call_with_headers(Call::new(req.clone()))
                .await
            {
                Ok((reply, headers)) => {
                    return Ok(Called {
                        reply,
                        headers,
                        started,
                    })
                }
                Err(e) if !self.t.local && e.retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A chat answer, streamed (so its first token is timed); `schema` asks for JSON
    /// valid against it. A penalty the target rejects is dropped for the rest of the
    /// run.
    async fn chat(
        &self,
        messages: &[TemplateMessage],
        max_tokens: u32,
        penalty: f32,
        schema: Option<&Value>,
    ) -> Result<Answer, Failure> {
        let use_penalty = penalty != 1.0 && self.repetition_penalty.load(Ordering::Relaxed);
        let req = |p| chat_request(self.t.model, messages, max_tokens, p, schema);
        let called = match self.call(req(use_penalty.then_some(penalty))?).await {
            Err(e) if use_penalty && e.rejects_field("repetition_penalty") => {
                self.repetition_penalty.store(false, Ordering::Relaxed);
                self.call(req(None)?).await?
            }
            other => other?,
        };
        let mut text = String::new();
        let mut ttft = None;
        let mut usage = Value::Null;
        match called.reply {
            Reply::Full(v) => {
                text = v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                usage = v["usage"].clone();
            }
            Reply::Stream(mut chunks) => {
                while let Some(c) = chunks.next().await {
                    let c = c?;
                    if let Some(d) = c
                        .pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                    {
                        if !d.is_empty() && ttft.is_none() {
                            ttft = Some(called.started.elapsed().as_secs_f64() * 1e3);
                        }
                        text.push_str(d);
                    }
                    if let Some(u) = c.get("usage").filter(|u| u.is_object()) {
                        usage = u.clone();
                    }
                }
            }
        }
        let n = |k: &str| usage[k].as_u64().map_or(0, |x| x as u32);
        Ok(Answer {
            prediction: json!(text),
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
            ttft_ms: ttft,
            decode_ms: None,
            served: Served::from_headers(&called.headers, Some(&usage)),
        })
    }

    /// A complete (task) answer.
    async fn full(&self, req: Request) -> Result<(Value, Option<Served>), Failure> {
        let called = self.call(req).await?;
        match called.reply {
            Reply::Full(v) => {
                let served = Served::from_headers(&called.headers, None);
                Ok((v, served))
            }
            Reply::Stream(_) => Err(Failure::Item("the target streamed a task answer".into())),
        }
    }
}

/// A deterministic chat request (temperature 0, seed 0), streamed with its usage.
fn chat_request(
    model: &str,
    messages: &[TemplateMessage],
    max_tokens: u32,
    penalty: Option<f32>,
    schema: Option<&Value>,
) -> Result<Request, Failure> {
    let mut body = json!({
        "model": model,
        "messages": messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
        "temperature": 0,
        "seed": 0,
        "max_tokens": max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(p) = penalty {
        body["repetition_penalty"] = json!(p);
    }
    if let Some(s) = schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "extraction", "schema": s},
        });
    }
    Request::parse(Endpoint::Chat, body.to_string().as_bytes())
        .map_err(|e| Failure::Item(e.to_string()))
}

/// One item of a generative task.
async fn item(
    c: &Caller<'_>,
    task: &Task,
    template: &PromptTemplate,
    custom: bool,
    it: &Item,
) -> Result<Answer, Failure> {
    match task {
        Task::Extract { schema } => {
            let messages = template.render(&it.input, Some(schema));
            // An object cut short (small models loop inside strings) or failing
            // validation is tried twice more with a growing repetition penalty, as
            // the extraction endpoint does.
            let mut penalty = 1.0;
            let mut a = loop {
                match c
                    .chat(&messages, EXTRACT_MAX_TOKENS, penalty, Some(schema))
                    .await
                {
                    Err(Failure::Structured(_)) if penalty < 1.3 => penalty += 0.15,
                    other => break other?,
                }
            };
            let text = a.prediction.as_str().unwrap_or_default().trim().to_string();
            // Not every server enforces the schema: check it here, as the engine does.
            Validator::schema(schema)
                .and_then(|val| val.check(&text))
                .map_err(|e| {
                    Failure::Item(format!("the answer does not satisfy the schema: {e}"))
                })?;
            a.prediction = serde_json::from_str(&text)
                .map_err(|e| Failure::Item(format!("the answer is not JSON ({e})")))?;
            Ok(a)
        }
        // The default prompt on a local model goes through the summarize task, which
        // summarises inputs longer than the context hierarchically.
        Task::Summarize if !custom && c.t.local => {
            let req = SummarizeTask::new(SummarizeRequest {
                model: c.t.model.to_string(),
                input: it.input.clone(),
                style: None,
                length: None,
                instructions: None,
                max_tokens: Some(TEXT_MAX_TOKENS),
                prompt: None,
            })
            .map_err(|e| Failure::Item(e.to_string()))?;
            let (v, served) = c.full(Request::Summarize(req)).await?;
            let r: SummarizeResponse = serde_json::from_value(v)
                .map_err(|e| Failure::Item(format!("not a summary: {e}")))?;
            Ok(Answer {
                prediction: json!(r.summary),
                prompt_tokens: r.usage.prompt_tokens + r.usage.cached_tokens,
                completion_tokens: r.usage.completion_tokens,
                ttft_ms: None,
                decode_ms: r.timings.map(|t| t.decode_ms),
                served,
            })
        }
        _ => {
            let (max, penalty) = generation(task);
            let messages = template.render(&it.input, None);
            let mut a = c.chat(&messages, max, penalty, None).await?;
            a.prediction = json!(a.prediction.as_str().unwrap_or_default().trim());
            Ok(a)
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
/// An error that is the item's (a rejected request, an answer that fails its
/// schema) becomes an error result; a target that stays unreachable, times out or
/// keeps answering 408/429/5xx after its retries stops the run with [`RunError`]
/// before that item, so a rerun continues there.
pub async fn run(
    target: Target<'_>,
    task: &Task,
    template: Option<&PromptTemplate>,
    items: &[Item],
    mut sink: impl FnMut(ItemResult),
) -> Result<(), RunError> {
    let name = target.name;
    let stop = |reason: String| RunError {
        target: name.to_string(),
        reason,
    };
    let result = |it: &Item, prediction: Value, metrics: Map<String, Value>, ms: f64| ItemResult {
        target: name.to_string(),
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
    let caller = Caller {
        t: target,
        repetition_penalty: AtomicBool::new(true),
    };
    let default = prompt::default_for(task);
    let template = template.unwrap_or(&default);
    // A template equal to the default is the default.
    let custom = *template != default;
    if let Task::Classify { labels } = task {
        // The labels are scored (local) or chosen under a constraint (upstreams) as
        // the answer to the same prompt: the classify endpoint's, with the template.
        let batch = if target.local { LOCAL_BATCH } else { 1 };
        for chunk in items.chunks(batch) {
            let req = ClassifyTask::new(ClassifyRequest {
                input: TextInput::Many(chunk.iter().map(|i| i.input.clone()).collect()),
                prompt: custom.then(|| template.to_text()),
                ..ClassifyRequest::new(target.model, labels.clone())
            });
            let t = Instant::now();
            let out = match req {
                Ok(r) => caller.full(Request::Classify(r)).await,
                Err(e) => Err(Failure::Item(e.to_string())),
            };
            let ms = t.elapsed().as_secs_f64() * 1000.0 / chunk.len() as f64;
            let out = out.and_then(|(v, served)| {
                let r: ClassifyResponse = serde_json::from_value(v)
                    .map_err(|e| Failure::Item(format!("not a classification: {e}")))?;
                Ok((r, served))
            });
            match out {
                Err(Failure::Target(reason)) => return Err(stop(reason)),
                Err(Failure::Item(e) | Failure::Structured(e)) => {
                    for it in chunk {
                        let mut r = result(it, Value::Null, Map::new(), ms);
                        r.error = Some(e.clone());
                        sink(r);
                    }
                }
                Ok((resp, served)) => {
                    for (it, d) in chunk.iter().zip(resp.data) {
                        let label = d.label.clone().unwrap_or_default();
                        let mut m = Map::new();
                        m.insert(
                            "correct".into(),
                            json!((it.expected.as_str() == Some(&label)) as u8),
                        );
                        m.insert("confidence".into(), json!(d.confidence));
                        let mut r = result(it, json!(label), m, ms);
                        if !target.local {
                            let u = &resp.usage;
                            r.prompt_tokens = u.prompt_tokens + u.cached_tokens + u.label_tokens;
                            r.completion_tokens = u.completion_tokens;
                            r.served = served.clone();
                        }
                        sink(r);
                    }
                }
            }
        }
        return Ok(());
    }
    for it in items {
        let t = Instant::now();
        let out = item(&caller, task, template, custom, it).await;
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
            Err(Failure::Item(e) | Failure::Structured(e)) => {
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
