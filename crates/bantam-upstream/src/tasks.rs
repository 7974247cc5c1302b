//! Bantam's task endpoints (`/v1/classify`, `/v1/extract`, `/v1/summarize`) on an
//! OpenAI-compatible upstream that has no such endpoints: each task becomes chat
//! completions asking the same question the local tasks ask (the prompts live in
//! `bantam-types`), and the answers are put back into the task's response shape.
//!
//! - classify: one call per input, the answer constrained to a label with
//!   `response_format` `choice` (Bantam's extension) or, on servers that reject it, a
//!   `json_schema` with an enum (an array of them for `multi_label`). The answer is
//!   generated, not scored: `probabilities` holds the chosen label(s) only, and
//!   `confidence` is the probability the upstream gave the label's tokens (from
//!   `logprobs`), or 1 when it reports none.
//! - extract: `json_schema`; the answer is validated against the schema here (an
//!   invalid one is a backend failure, so the route falls back), and `spans` found
//!   in the input here.
//! - summarize: one plain chat call in the requested style (`chunks` 1, `levels` 0:
//!   a larger model is expected to take the whole text).
//!
//! A backend configured with `tasks = "native"` (another Bantam) gets the task
//! request itself instead.

// `BackendError` carries the upstream's error body; it is the error of every call.
#![allow(clippy::result_large_err)]

use std::sync::atomic::{AtomicBool, Ordering};

use bantam_api::{BackendError, ClassifyTask, ExtractTask, Reply, Request, SummarizeTask};
use bantam_types::generate::TemplateMessage;
use bantam_types::tasks::TaskUsage;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};

use crate::upstream::Headers;

/// Chat calls made at once for a classification with several inputs.
const CONCURRENCY: usize = 4;

/// What the task translation needs from an upstream: one non-streamed chat call,
/// and memory of whether it accepts `response_format` `choice`.
pub(crate) trait ChatCall: Sync {
    /// Backend name (for errors).
    fn name(&self) -> &str;
    /// One chat completion (complete JSON body) and the answer's headers.
    fn chat(
        &self,
        body: Value,
    ) -> futures::future::BoxFuture<'_, Result<(Value, Headers), BackendError>>;
    /// `true` until the upstream rejects `response_format` `choice`.
    fn choice_flag(&self) -> &AtomicBool;
}

fn bad_request(name: &str, message: String) -> BackendError {
    BackendError::invalid(name, None, message)
}

fn broken(name: &str, reason: String) -> BackendError {
    BackendError::broken(name, reason)
}

/// Answer a task request through chat completions; with the headers of the last
/// chat answer (another Bantam's `x-bantam-*`: for one input, where it came from).
pub(crate) async fn via_chat(
    up: &dyn ChatCall,
    req: &Request,
) -> Result<(Reply, Headers), BackendError> {
    let last = std::sync::Mutex::new(Headers::new());
    let tracked = Tracked { up, last: &last };
    let up: &dyn ChatCall = &tracked;
    let v = match req {
        Request::Classify(t) => classify(up, t).await?,
        Request::Extract(t) => extract(up, t).await?,
        Request::Summarize(t) => summarize(up, t).await?,
        other => {
            return Err(bad_request(
                up.name(),
                format!("{} is not a task endpoint", other.endpoint()),
            ))
        }
    };
    let headers = std::mem::take(&mut *last.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((Reply::Full(v), headers))
}

/// Keeps the headers of the latest chat answer.
struct Tracked<'a> {
    up: &'a dyn ChatCall,
    last: &'a std::sync::Mutex<Headers>,
}

impl ChatCall for Tracked<'_> {
    fn name(&self) -> &str {
        self.up.name()
    }

    fn chat(
        &self,
        body: Value,
    ) -> futures::future::BoxFuture<'_, Result<(Value, Headers), BackendError>> {
        Box::pin(async move {
            let (v, h) = self.up.chat(body).await?;
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = h.clone();
            Ok((v, h))
        })
    }

    fn choice_flag(&self) -> &AtomicBool {
        self.up.choice_flag()
    }
}

/// A deterministic chat body.
fn chat_body(model: &str, messages: &[TemplateMessage], max_tokens: u32) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    json!({
        "model": model,
        "messages": messages,
        "temperature": 0,
        "seed": 0,
        "max_tokens": max_tokens,
    })
}

/// The first choice's message content.
fn content<'a>(up: &dyn ChatCall, v: &'a Value) -> Result<&'a str, BackendError> {
    v.pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            broken(
                up.name(),
                format!(
                    "no message content in the answer (finish_reason {})",
                    v.pointer("/choices/0/finish_reason")
                        .unwrap_or(&Value::Null)
                ),
            )
        })
}

fn add_usage(u: &mut TaskUsage, v: &Value) {
    let n = |k: &str| {
        v.pointer(&format!("/usage/{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32
    };
    let cached = v
        .pointer("/usage/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;
    let prompt = n("prompt_tokens");
    // Task usage counts computed and cached prompt tokens apart, as local tasks do.
    u.prompt_tokens += prompt.saturating_sub(cached);
    u.cached_tokens += cached;
    u.completion_tokens += n("completion_tokens");
    u.total_tokens += prompt + n("completion_tokens");
    // Another Bantam reports its engine time.
    if let Some(ms) = v.pointer("/usage/compute_ms").and_then(Value::as_f64) {
        u.compute_ms = Some(u.compute_ms.unwrap_or(0.0) + ms);
    }
}

/// Log-probability the answer gave the characters `span` (byte range of the
/// content): the sum over the tokens that overlap it. `None` without logprobs.
fn span_logprob(v: &Value, span: (usize, usize)) -> Option<f32> {
    let toks = v.pointer("/choices/0/logprobs/content")?.as_array()?;
    if toks.is_empty() {
        return None;
    }
    let mut at = 0usize;
    let mut sum = 0.0f32;
    let mut any = false;
    for t in toks {
        let text = t.get("token").and_then(Value::as_str).unwrap_or("");
        let (start, end) = (at, at + text.len());
        at = end;
        if end > span.0 && start < span.1 {
            sum += t.get("logprob").and_then(Value::as_f64)? as f32;
            any = true;
        }
    }
    any.then_some(sum)
}

/// One input's classification: the label(s) and the confidence, plus the usage.
struct Labelled {
    labels: Vec<String>,
    confidence: Option<f32>,
}

async fn classify(up: &dyn ChatCall, req: &ClassifyTask) -> Result<Value, BackendError> {
    let names = req.label_names();
    if names.is_empty() {
        return Err(BackendError::invalid(
            up.name(),
            Some("labels"),
            "labels are required: an upstream model scores the labels you give (only a local classifier model from `bantam tune classify` knows its own labels)",
        ));
    }
    let longest = names.iter().map(|n| n.len()).max().unwrap_or(0) as u32;
    let max_tokens = if req.multi_label {
        16 + (longest + 8) * names.len() as u32
    } else {
        16 + longest
    };
    let one = |text: &String| {
        let body = chat_body(&req.model, &req.messages(text), max_tokens);
        let multi = req.multi_label;
        async move { label_one(up, body, names, multi).await }
    };
    let results: Vec<(Labelled, Value)> = futures::stream::iter(req.texts().iter().map(one))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let min_conf = req.min_confidence.unwrap_or(0.0) as f32;
    let mut usage = TaskUsage::default();
    let mut data = Vec::with_capacity(results.len());
    for (i, (l, answer)) in results.into_iter().enumerate() {
        add_usage(&mut usage, &answer);
        let confidence = l.confidence.unwrap_or(1.0);
        let mut probabilities = Map::new();
        for name in &l.labels {
            probabilities.insert(name.clone(), json!(confidence));
        }
        let best = l.labels.first().cloned();
        data.push(json!({
            "object": "classification",
            "index": i,
            "label": best.filter(|_| confidence >= min_conf),
            "labels": req.multi_label.then_some(&l.labels),
            "confidence": confidence,
            "probabilities": probabilities,
            "exact": false,
        }));
        if !req.multi_label {
            if let Some(o) = data.last_mut().and_then(Value::as_object_mut) {
                o.remove("labels");
            }
        }
    }
    Ok(json!({
        "object": "list",
        "model": req.model,
        "data": data,
        "usage": usage,
    }))
}

/// Ask for one label (or a set of them) and read it back.
async fn label_one(
    up: &dyn ChatCall,
    mut body: Value,
    names: &[String],
    multi: bool,
) -> Result<(Labelled, Value), BackendError> {
    body["logprobs"] = json!(true);
    if !multi && up.choice_flag().load(Ordering::Relaxed) {
        let mut b = body.clone();
        b["response_format"] = json!({"type": "choice", "choices": names});
        match up.chat(b).await.map(|(v, _)| v) {
            Err(e) if e.rejects_field("response_format") => {
                up.choice_flag().store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
            Ok(v) => {
                let text = content(up, &v)?;
                let label = find_label(names, text).ok_or_else(|| {
                    broken(
                        up.name(),
                        format!("the answer {text:?} is not one of the labels"),
                    )
                })?;
                let lead = text.len() - text.trim_start().len();
                let span = (lead, lead + text.trim().len());
                let confidence = span_logprob(&v, span).map(f32::exp);
                return Ok((
                    Labelled {
                        labels: vec![label],
                        confidence,
                    },
                    v,
                ));
            }
        }
    }
    let (key, schema) = if multi {
        (
            "labels",
            json!({"type": "array", "items": {"type": "string", "enum": names}}),
        )
    } else {
        ("label", json!({"type": "string", "enum": names}))
    };
    body["response_format"] = json!({
        "type": "json_schema",
        "json_schema": {
            "name": "classification",
            "strict": true,
            "schema": {
                "type": "object",
                "properties": {key: schema},
                "required": [key],
                "additionalProperties": false,
            },
        },
    });
    let (v, _) = up.chat(body).await?;
    let text = content(up, &v)?;
    let parsed: Value = serde_json::from_str(text.trim())
        .map_err(|e| broken(up.name(), format!("the answer is not JSON ({e}): {text:?}")))?;
    let mut labels: Vec<String> = Vec::new();
    let raw: Vec<&str> = match &parsed[key] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for r in raw {
        let l = find_label(names, r).ok_or_else(|| {
            broken(
                up.name(),
                format!("the answer {r:?} is not one of the labels"),
            )
        })?;
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    if labels.is_empty() && !multi {
        return Err(broken(
            up.name(),
            format!("no {key:?} in the answer {text:?}"),
        ));
    }
    // The first label's characters inside the JSON text.
    let confidence = labels
        .first()
        .and_then(|l| {
            text.find(&format!("\"{l}\""))
                .map(|at| (at + 1, at + 1 + l.len()))
        })
        .and_then(|span| span_logprob(&v, span))
        .map(f32::exp);
    Ok((Labelled { labels, confidence }, v))
}

/// The label `answer` names: exactly, else ignoring surrounding space and case.
fn find_label(names: &[String], answer: &str) -> Option<String> {
    if let Some(n) = names.iter().find(|n| n.as_str() == answer) {
        return Some(n.clone());
    }
    let a = answer.trim();
    names
        .iter()
        .find(|n| n.trim() == a)
        .or_else(|| names.iter().find(|n| n.trim().eq_ignore_ascii_case(a)))
        .cloned()
}

async fn extract(up: &dyn ChatCall, req: &ExtractTask) -> Result<Value, BackendError> {
    let validator = bantam_structured::Validator::schema(&req.schema)
        .map_err(|e| bad_request(up.name(), format!("schema: {e}")))?;
    let mut body = chat_body(&req.model, &req.messages(), req.max_tokens());
    body["response_format"] = json!({
        "type": "json_schema",
        "json_schema": {"name": "extraction", "schema": req.schema},
    });
    let (v, _) = up.chat(body).await?;
    let text = content(up, &v)?.trim().to_string();
    validator.check(&text).map_err(|e| {
        broken(
            up.name(),
            format!("the answer is not valid against the schema: {e}"),
        )
    })?;
    let data: Value = serde_json::from_str(&text)
        .map_err(|e| broken(up.name(), format!("the answer is not JSON ({e})")))?;
    let mut usage = TaskUsage::default();
    add_usage(&mut usage, &v);
    let mut out = json!({
        "object": "extraction",
        "model": req.model,
        "data": data,
        "usage": usage,
    });
    if req.spans {
        // Where each value appears in the input, as a local extraction reports.
        out["spans"] = Value::Object(bantam_types::spans::spans(&req.input, &out["data"]));
    }
    Ok(out)
}

async fn summarize(up: &dyn ChatCall, req: &SummarizeTask) -> Result<Value, BackendError> {
    let body = chat_body(&req.model, &req.messages(&req.input), req.max_tokens());
    let (v, _) = up.chat(body).await?;
    let summary = content(up, &v)?.trim().to_string();
    let mut usage = TaskUsage::default();
    add_usage(&mut usage, &v);
    Ok(json!({
        "object": "summary",
        "model": req.model,
        "summary": summary,
        "chunks": 1,
        "levels": 0,
        "usage": usage,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use bantam_api::Endpoint;

    /// A scripted upstream: answers each chat body with the next closure result and
    /// records the bodies.
    type Answer = Box<dyn Fn(&Value) -> Result<Value, BackendError> + Send + Sync>;

    struct Script {
        bodies: Mutex<Vec<Value>>,
        answer: Answer,
        choice: AtomicBool,
    }

    impl ChatCall for Script {
        fn name(&self) -> &str {
            "large"
        }
        fn chat(
            &self,
            body: Value,
        ) -> futures::future::BoxFuture<'_, Result<(Value, Headers), BackendError>> {
            self.bodies.lock().unwrap().push(body.clone());
            let r = (self.answer)(&body).map(|v| {
                (
                    v,
                    vec![("x-bantam-backend".to_string(), "large".to_string())],
                )
            });
            Box::pin(async move { r })
        }
        fn choice_flag(&self) -> &AtomicBool {
            &self.choice
        }
    }

    fn script(f: impl Fn(&Value) -> Result<Value, BackendError> + Send + Sync + 'static) -> Script {
        Script {
            bodies: Mutex::default(),
            answer: Box::new(f),
            choice: AtomicBool::new(true),
        }
    }

    fn answer(content: &str, tokens: &[(&str, f64)]) -> Value {
        let lp: Vec<Value> = tokens
            .iter()
            .map(|(t, l)| json!({"token": t, "logprob": l}))
            .collect();
        json!({
            "choices": [{"message": {"role": "assistant", "content": content},
                         "logprobs": if lp.is_empty() { Value::Null } else { json!({"content": lp}) },
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 3, "total_tokens": 53},
        })
    }

    fn call(endpoint: Endpoint, body: Value) -> Request {
        Request::parse(endpoint, body.to_string().as_bytes()).expect("a valid task request")
    }

    fn full((r, headers): (Reply, Headers)) -> Value {
        assert_eq!(
            headers,
            vec![("x-bantam-backend".to_string(), "large".to_string())]
        );
        match r {
            Reply::Full(v) => v,
            Reply::Stream(_) => panic!("stream"),
        }
    }

    #[tokio::test]
    async fn classify_with_choice_reads_label_and_confidence() {
        let up = script(|b| {
            assert_eq!(b["response_format"]["type"], "choice");
            assert_eq!(b["model"], "big-model");
            let text = b["messages"][3]["content"].as_str().unwrap();
            Ok(if text.contains("refund") {
                answer("billing", &[("bill", -0.1), ("ing", -0.2)])
            } else {
                answer("tech", &[("tech", -1.0)])
            })
        });
        let body = json!({
            "model": "big-model", "input": ["I want a refund", "wifi is down"],
            "labels": ["billing", {"label": "tech", "description": "technical"}],
            "examples": [{"input": "card charged twice", "label": "billing"}],
        });
        let v = full(
            via_chat(&up, &call(Endpoint::Classify, body))
                .await
                .unwrap(),
        );
        assert_eq!(v["data"][0]["label"], "billing");
        assert_eq!(v["data"][1]["label"], "tech");
        let c0 = v["data"][0]["confidence"].as_f64().unwrap();
        assert!((c0 - (-0.3f64).exp()).abs() < 1e-6, "{c0}");
        assert_eq!(v["data"][0]["exact"], false);
        assert!(v["data"][0].get("labels").is_none());
        assert_eq!(v["usage"]["prompt_tokens"], 100);
        assert_eq!(v["usage"]["completion_tokens"], 6);
        let bodies = up.bodies.lock().unwrap();
        // System prompt (the labels with descriptions), the example, the text.
        let sys = bodies[0]["messages"][0]["content"].as_str().unwrap();
        assert!(sys.contains("- tech: technical"), "{sys}");
        assert_eq!(bodies[0]["messages"][1]["content"], "card charged twice");
        assert_eq!(bodies[0]["messages"][2]["role"], "assistant");
        assert_eq!(bodies[0]["temperature"], 0);
    }

    #[tokio::test]
    async fn classify_falls_back_to_a_json_schema_enum_once_choice_is_rejected() {
        let up = script(|b| {
            if b["response_format"]["type"] == "choice" {
                return Err(BackendError::from_http(
                    "large",
                    400,
                    json!({"error": {"message": "Invalid value: 'choice'.", "param": "response_format.type"}}),
                ));
            }
            let schema = &b["response_format"]["json_schema"]["schema"];
            assert_eq!(schema["properties"]["label"]["enum"], json!(["a", "b"]));
            Ok(answer(
                "{\"label\": \"b\"}",
                &[
                    ("{\"", -0.01),
                    ("label", -0.01),
                    ("\": \"", -0.01),
                    ("b", -0.5),
                    ("\"}", -0.01),
                ],
            ))
        });
        let req =
            json!({"model": "m", "input": ["x", "y"], "labels": ["a", "b"], "min_confidence": 0.7});
        let v = full(via_chat(&up, &call(Endpoint::Classify, req)).await.unwrap());
        // Only the label's own token counts; below min_confidence the label is null.
        let c = v["data"][0]["confidence"].as_f64().unwrap();
        assert!((c - (-0.5f64).exp()).abs() < 1e-6, "{c}");
        assert!(v["data"][0]["label"].is_null());
        assert_eq!(v["data"][0]["probabilities"]["b"], json!(c as f32));
        // `choice` was tried once, then never again.
        let kinds: Vec<Value> = up
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["response_format"]["type"].clone())
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| *k == "choice").count(),
            1,
            "{kinds:?}"
        );
        assert_eq!(kinds.len(), 3);
    }

    #[tokio::test]
    async fn multi_label_asks_for_an_array() {
        let up = script(|b| {
            let s = &b["response_format"]["json_schema"]["schema"];
            assert_eq!(s["properties"]["labels"]["type"], "array");
            Ok(answer("{\"labels\": [\"b\", \"a\", \"b\"]}", &[]))
        });
        let req =
            json!({"model": "m", "input": "x", "labels": ["a", "b", "c"], "multi_label": true});
        let v = full(via_chat(&up, &call(Endpoint::Classify, req)).await.unwrap());
        assert_eq!(v["data"][0]["labels"], json!(["b", "a"]));
        assert_eq!(v["data"][0]["label"], "b");
        // No logprobs reported: confidence 1, as documented.
        assert_eq!(v["data"][0]["confidence"], 1.0);
    }

    #[tokio::test]
    async fn an_answer_that_is_not_a_label_is_a_backend_failure() {
        let up = script(|_| Ok(answer("I think it is billing", &[])));
        let req = json!({"model": "m", "input": "x", "labels": ["billing", "tech"]});
        let e = via_chat(&up, &call(Endpoint::Classify, req))
            .await
            .unwrap_err();
        assert!(e.falls_back() && !e.retryable(), "{e}");
        assert_eq!(
            find_label(&["Billing".into()], " billing\n"),
            Some("Billing".into())
        );
    }

    #[tokio::test]
    async fn extract_validates_the_answer() {
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        let good = script(|b| {
            assert_eq!(b["response_format"]["type"], "json_schema");
            let sys = b["messages"][0]["content"].as_str().unwrap();
            assert!(sys.contains("JSON Schema:"), "{sys}");
            Ok(answer("{\"n\": 4521}", &[]))
        });
        let req = json!({"model": "m", "input": "order 4521", "schema": schema});
        let v = full(
            via_chat(&good, &call(Endpoint::Extract, req.clone()))
                .await
                .unwrap(),
        );
        assert_eq!(v["data"], json!({"n": 4521}));
        assert_eq!(v["object"], "extraction");
        assert_eq!(v["usage"]["completion_tokens"], 3);
        let bad = script(|_| Ok(answer("{\"n\": \"many\"}", &[])));
        let e = via_chat(&bad, &call(Endpoint::Extract, req))
            .await
            .unwrap_err();
        assert!(e.falls_back(), "{e}");
        assert!(e.to_string().contains("schema"), "{e}");
    }

    #[tokio::test]
    async fn summarize_asks_in_the_requested_style() {
        let up = script(|b| {
            let sys = b["messages"][0]["content"].as_str().unwrap();
            assert!(sys.contains("at most 2 bullet points"), "{sys}");
            assert_eq!(b["max_tokens"], 100);
            Ok(answer("- one\n- two\n", &[]))
        });
        let req = json!({"model": "m", "input": "long text", "style": "bullets", "length": 2, "max_tokens": 100});
        let v = full(
            via_chat(&up, &call(Endpoint::Summarize, req))
                .await
                .unwrap(),
        );
        assert_eq!(v["summary"], "- one\n- two");
        assert_eq!(
            (v["chunks"].clone(), v["levels"].clone()),
            (json!(1), json!(0))
        );
    }

    #[test]
    fn span_logprob_sums_overlapping_tokens() {
        let v = answer("ab cd", &[("ab", -1.0), (" c", -2.0), ("d", -4.0)]);
        assert_eq!(span_logprob(&v, (0, 2)), Some(-1.0));
        assert_eq!(span_logprob(&v, (3, 5)), Some(-6.0));
        assert_eq!(span_logprob(&answer("x", &[]), (0, 1)), None);
    }
}
