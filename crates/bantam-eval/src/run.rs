//! Running a task over a dataset with one target, and summarising the results.

use std::time::Instant;

use bantam_engine::template::TemplateMessage;
use bantam_engine::Engine;
use bantam_tasks::generate::complete;
use bantam_types::tasks::{ClassifyRequest, ExtractRequest, SummarizeRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::dataset::Item;
use crate::{bleu, classification, qa, rouge};

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
    /// Tokens generated.
    pub completion_tokens: u32,
    /// What went wrong, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn references(v: &Value) -> Vec<String> {
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

fn ratio(a: f64, b: f64) -> f64 {
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

/// Run `task` over `items` with `engine`, handing each result to `sink` as soon as
/// it exists (so a killed run keeps what it did).
pub async fn run(
    engine: &Engine,
    target: &str,
    task: &Task,
    items: &[Item],
    mut sink: impl FnMut(ItemResult),
) {
    let result = |it: &Item,
                  prediction: Value,
                  metrics: Map<String, Value>,
                  ms: f64,
                  toks: u32,
                  error: Option<String>| ItemResult {
        target: target.to_string(),
        index: it.index,
        input: it.input.clone(),
        expected: it.expected.clone(),
        prediction,
        metrics,
        latency_ms: ms,
        completion_tokens: toks,
        error,
    };
    match task {
        Task::Classify { labels } => {
            for batch in items.chunks(16) {
                let req = ClassifyRequest::new(target, labels.clone());
                let texts: Vec<String> = batch.iter().map(|i| i.input.clone()).collect();
                let t = Instant::now();
                let out = bantam_tasks::classify(engine, &req, &texts).await;
                let ms = t.elapsed().as_secs_f64() * 1000.0 / batch.len() as f64;
                match out {
                    Ok(resp) => {
                        for (it, d) in batch.iter().zip(resp.data) {
                            let label = d.label.clone().unwrap_or_default();
                            let ok = it.expected.as_str() == Some(label.as_str());
                            let mut m = Map::new();
                            m.insert("correct".into(), json!(ok as u8));
                            m.insert("confidence".into(), json!(d.confidence));
                            sink(result(it, json!(label), m, ms, 0, None));
                        }
                    }
                    Err(e) => {
                        for it in batch {
                            sink(result(
                                it,
                                Value::Null,
                                Map::new(),
                                ms,
                                0,
                                Some(e.to_string()),
                            ));
                        }
                    }
                }
            }
        }
        _ => {
            for it in items {
                let t = Instant::now();
                let out: Result<(Value, u32), String> = match task {
                    Task::Extract { schema } => {
                        let req = ExtractRequest {
                            model: target.to_string(),
                            input: it.input.clone(),
                            schema: schema.clone(),
                            instructions: None,
                            spans: false,
                            max_tokens: None,
                        };
                        bantam_tasks::extract(engine, &req)
                            .await
                            .map(|r| (r.data, r.usage.completion_tokens))
                            .map_err(|e| e.to_string())
                    }
                    Task::Summarize => {
                        let req = SummarizeRequest {
                            model: target.to_string(),
                            input: it.input.clone(),
                            style: None,
                            length: None,
                            instructions: None,
                            max_tokens: None,
                        };
                        bantam_tasks::summarize(engine, &req)
                            .await
                            .map(|r| (json!(r.summary), r.usage.completion_tokens))
                            .map_err(|e| e.to_string())
                    }
                    _ => {
                        let (system, max) = if matches!(task, Task::Qa) {
                            ("Answer with a short phrase only.", 48)
                        } else {
                            ("You are a helpful assistant.", 256)
                        };
                        let msgs = [
                            TemplateMessage::new("system", system),
                            TemplateMessage::new("user", &it.input),
                        ];
                        match engine.render_chat(&msgs, &[]) {
                            Ok(prompt) => complete(engine, prompt, max, None, 1.0)
                                .await
                                .map(|(text, u)| (json!(text.trim()), u.completion_tokens))
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                };
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match out {
                    Ok((pred, toks)) => {
                        let m = match task {
                            Task::Extract { .. } => {
                                let (tp, np, ne) = field_counts(&pred, &it.expected);
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
                        };
                        sink(result(it, pred, m, ms, toks, None));
                    }
                    Err(e) => {
                        let mut m = Map::new();
                        if matches!(task, Task::Extract { .. }) {
                            m.insert("schema_valid".into(), json!(0));
                        }
                        sink(result(it, Value::Null, m, ms, 0, Some(e)));
                    }
                }
            }
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((q / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn mean(rs: &[&ItemResult], key: &str) -> f64 {
    let v: Vec<f64> = rs
        .iter()
        .filter_map(|r| r.metrics.get(key).and_then(Value::as_f64))
        .collect();
    ratio(v.iter().sum(), v.len() as f64)
}

/// Every metric of one target over its results.
pub fn summarize(task: &Task, results: &[&ItemResult]) -> Map<String, Value> {
    let mut s = Map::new();
    let n = results.len();
    s.insert("items".into(), json!(n));
    s.insert(
        "errors".into(),
        json!(results.iter().filter(|r| r.error.is_some()).count()),
    );
    let mut lat: Vec<f64> = results.iter().map(|r| r.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let total_s: f64 = lat.iter().sum::<f64>() / 1000.0;
    s.insert("latency_p50_ms".into(), json!(percentile(&lat, 50.0)));
    s.insert("latency_p95_ms".into(), json!(percentile(&lat, 95.0)));
    s.insert("latency_p99_ms".into(), json!(percentile(&lat, 99.0)));
    s.insert("items_per_s".into(), json!(ratio(n as f64, total_s)));
    let toks: u32 = results.iter().map(|r| r.completion_tokens).sum();
    if toks > 0 {
        s.insert("tokens_per_s".into(), json!(ratio(toks as f64, total_s)));
    }
    match task {
        Task::Classify { .. } => {
            let truth: Vec<String> = results
                .iter()
                .map(|r| {
                    r.expected
                        .as_str()
                        .map_or_else(|| r.expected.to_string(), str::to_string)
                })
                .collect();
            let pred: Vec<String> = results
                .iter()
                .map(|r| r.prediction.as_str().unwrap_or("").to_string())
                .collect();
            let rep = classification::report(&truth, &pred);
            s.insert("accuracy".into(), json!(rep.accuracy));
            s.insert("macro_f1".into(), json!(rep.macro_f1));
            s.insert("micro_f1".into(), json!(rep.micro_f1));
            s.insert("classes".into(), json!(rep.classes));
            s.insert("labels".into(), json!(rep.labels));
            s.insert("confusion".into(), json!(rep.confusion));
        }
        Task::Extract { .. } => {
            let sum = |k: &str| -> f64 {
                results
                    .iter()
                    .filter_map(|r| r.metrics.get(k).and_then(Value::as_f64))
                    .sum()
            };
            let (tp, np, ne) = (sum("field_tp"), sum("field_pred"), sum("field_expected"));
            let p = ratio(tp, np);
            let r = ratio(tp, ne);
            s.insert("field_precision".into(), json!(p));
            s.insert("field_recall".into(), json!(r));
            s.insert("field_f1".into(), json!(ratio(2.0 * p * r, p + r)));
            s.insert(
                "schema_valid_rate".into(),
                json!(mean(results, "schema_valid")),
            );
        }
        Task::Qa => {
            s.insert("exact_match".into(), json!(mean(results, "exact_match")));
            s.insert("f1".into(), json!(mean(results, "f1")));
        }
        Task::Summarize | Task::Chat => {
            for k in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
                s.insert(k.into(), json!(mean(results, k)));
            }
            let hyps: Vec<String> = results
                .iter()
                .map(|r| r.prediction.as_str().unwrap_or("").to_string())
                .collect();
            let refs: Vec<Vec<String>> = results.iter().map(|r| references(&r.expected)).collect();
            // sacrebleu needs the same number of references per segment.
            let k = refs.iter().map(Vec::len).min().unwrap_or(0);
            if k > 0 {
                let refs: Vec<Vec<String>> = refs.into_iter().map(|r| r[..k].to_vec()).collect();
                s.insert("bleu".into(), json!(bleu::corpus_bleu(&hyps, &refs).score));
            }
        }
    }
    s
}

/// Adds `cost_per_1k_usd` to a summary: what 1000 items cost on a machine priced at
/// `usd_per_hour`, at the summary's sequential throughput (`items_per_s`). Nothing is
/// added without a positive, finite throughput and price.
pub fn add_cost(summary: &mut Map<String, Value>, usd_per_hour: f64) {
    let rate = summary.get("items_per_s").and_then(Value::as_f64);
    if let Some(rate) = rate.filter(|r| r.is_finite() && *r > 0.0) {
        if usd_per_hour.is_finite() && usd_per_hour > 0.0 {
            let usd = 1000.0 / rate / 3600.0 * usd_per_hour;
            summary.insert(crate::report::COST.into(), json!(usd));
        }
    }
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

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[5.0], 95.0), 5.0);
    }

    #[test]
    fn cost_from_throughput_and_price() {
        let mut s = Map::new();
        s.insert("items_per_s".into(), json!(2.0));
        add_cost(&mut s, 0.72);
        // 1000 items at 2/s take 500 s; 0.72 $/h is 0.0002 $/s.
        assert!((s["cost_per_1k_usd"].as_f64().unwrap() - 0.1).abs() < 1e-12);
        for (rate, price) in [
            (0.0, 1.0),
            (2.0, 0.0),
            (f64::NAN, 1.0),
            (2.0, f64::INFINITY),
        ] {
            let mut s = Map::new();
            s.insert("items_per_s".into(), json!(rate));
            add_cost(&mut s, price);
            assert!(!s.contains_key("cost_per_1k_usd"), "{rate} {price}");
        }
    }
}
