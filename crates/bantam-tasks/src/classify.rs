//! Classification by label log-likelihood.
//!
//! The prompt is a chat: a system message with the instructions and the label list,
//! few-shot examples as user/assistant turns, then the text. Each label's score is the
//! log-likelihood of the assistant answering exactly that label and ending its turn;
//! probabilities are those scores normalised over the labels (softmax).

use std::sync::Arc;

use bantam_engine::template::TemplateMessage;
use bantam_engine::{Engine, ScoreMode};
use bantam_types::tasks::{Classification, ClassifyRequest, ClassifyResponse, TaskUsage};
use serde_json::{Map, Value};

pub use crate::TaskError as ClassifyError;
use crate::TaskError;

/// Default instructions.
pub use bantam_types::tasks::CLASSIFY_INSTRUCTIONS as DEFAULT_INSTRUCTIONS;
/// Most inputs per request.
pub const MAX_INPUTS: usize = 4096;
/// Most labels per request (llama.cpp's sequence limit).
pub const MAX_LABELS: usize = 256;

fn invalid(param: &'static str, message: impl Into<String>) -> ClassifyError {
    TaskError::invalid(param, message)
}

/// Check a request before any work.
pub fn validate(req: &ClassifyRequest) -> Result<(), ClassifyError> {
    let n = req.labels.len();
    if !(2..=MAX_LABELS).contains(&n) {
        return Err(invalid(
            "labels",
            format!("give between 2 and {MAX_LABELS} labels (got {n})"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for l in &req.labels {
        let name = l.name();
        if name.trim().is_empty() {
            return Err(invalid("labels", "labels must not be empty"));
        }
        if !seen.insert(name) {
            return Err(invalid("labels", format!("label {name:?} appears twice")));
        }
    }
    for e in &req.examples {
        if !seen.contains(e.label.as_str()) {
            return Err(invalid(
                "examples",
                format!("example label {:?} is not among the labels", e.label),
            ));
        }
    }
    scoring_mode(req)?;
    for (p, v) in [
        ("threshold", req.threshold),
        ("min_confidence", req.min_confidence),
    ] {
        if v.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
            return Err(invalid(p, format!("{p} must be between 0 and 1")));
        }
    }
    Ok(())
}

/// Check the texts to classify: 1 to [`MAX_INPUTS`], none empty.
pub fn validate_texts(texts: &[String]) -> Result<(), ClassifyError> {
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(invalid(
            "input",
            format!("give between 1 and {MAX_INPUTS} texts"),
        ));
    }
    if texts.iter().any(|t| t.trim().is_empty()) {
        return Err(invalid("input", "texts must not be empty"));
    }
    Ok(())
}

/// The scoring mode a request asks for.
pub fn scoring_mode(req: &ClassifyRequest) -> Result<ScoreMode, ClassifyError> {
    match req.scoring.as_deref() {
        None | Some("greedy") => Ok(ScoreMode::Greedy),
        Some("exact") => Ok(ScoreMode::Exact),
        Some(other) => Err(invalid(
            "scoring",
            format!("unknown scoring {other:?}; use greedy or exact"),
        )),
    }
}

/// The system message of a classification prompt: the instructions and the label
/// list (with descriptions). Routes and `bantam eval` send the same text upstream.
pub fn system_prompt(req: &ClassifyRequest) -> String {
    req.system_prompt()
}

/// Classify `texts` (already taken out of the request).
pub async fn classify(
    engine: &Engine,
    req: &ClassifyRequest,
    texts: &[String],
) -> Result<ClassifyResponse, ClassifyError> {
    let mut head = vec![TemplateMessage::new("system", &system_prompt(req))];
    for e in &req.examples {
        head.push(TemplateMessage::new("user", &e.input));
        head.push(TemplateMessage::new("assistant", &e.label));
    }
    classify_with(engine, req, texts, |text| {
        let mut msgs = head.clone();
        msgs.push(TemplateMessage::new("user", text));
        msgs
    })
    .await
}

/// Classify `texts` with the chat `messages(text)` before the answer instead of the
/// request's instructions, label list and examples (`bantam eval --prompt-template`).
/// The labels are scored as the assistant's reply to the last message.
pub async fn classify_with(
    engine: &Engine,
    req: &ClassifyRequest,
    texts: &[String],
    messages: impl Fn(&str) -> Vec<TemplateMessage>,
) -> Result<ClassifyResponse, ClassifyError> {
    validate(req)?;
    validate_texts(texts)?;
    let render = |text: &str| -> Result<Vec<i32>, ClassifyError> {
        let prompt = engine.render_chat(&messages(text), &[])?;
        Ok(engine.tokenize(&prompt)?)
    };
    // The part every prompt shares (instructions, labels, examples): what two
    // different texts render to in common.
    let (a, b) = (render("a")?, render("b")?);
    let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut prompts = Vec::with_capacity(texts.len());
    for t in texts {
        prompts.push(render(t)?);
    }
    let model = engine.model();
    let candidates: Vec<Vec<i32>> = req
        .labels
        .iter()
        .map(|l| model.tokenize(l.name(), false, false))
        .collect();
    let out = engine
        .score(
            prompts,
            shared,
            Arc::new(candidates),
            engine.end_of_turn(),
            scoring_mode(req)?,
        )
        .await?;
    let threshold = req.threshold.unwrap_or(0.2);
    let min_conf = req.min_confidence.unwrap_or(0.0);
    let data = out
        .scores
        .iter()
        .enumerate()
        .map(|(i, scores)| {
            let probs = softmax(scores);
            let mut order: Vec<usize> = (0..probs.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            let best = order[0];
            let confidence = probs[best];
            let in_scope = confidence >= min_conf;
            let mut map = Map::new();
            for (l, p) in req.labels.iter().zip(&probs) {
                map.insert(l.name().to_string(), Value::from(*p as f64));
            }
            Classification {
                object: "classification".into(),
                index: i as u32,
                label: in_scope.then(|| req.labels[best].name().to_string()),
                labels: req.multi_label.then(|| {
                    order
                        .iter()
                        .filter(|&&k| probs[k] >= threshold && probs[k] >= min_conf)
                        .map(|&k| req.labels[k].name().to_string())
                        .collect()
                }),
                confidence,
                probabilities: map,
                exact: out.exact[i].iter().all(|&e| e),
            }
        })
        .collect();
    Ok(ClassifyResponse {
        object: "list".into(),
        model: req.model.clone(),
        data,
        usage: TaskUsage {
            prompt_tokens: out.prompt_tokens,
            cached_tokens: out.cached_tokens,
            label_tokens: out.candidate_tokens,
            completion_tokens: 0,
            total_tokens: out.prompt_tokens + out.cached_tokens + out.candidate_tokens,
            compute_ms: Some(out.compute_us as f64 / 1e3),
        },
    })
}

fn softmax(xs: &[f32]) -> Vec<f32> {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = xs.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(labels: &[&str]) -> ClassifyRequest {
        ClassifyRequest::new("m", labels.iter().map(|l| l.to_string()).collect())
    }

    #[test]
    fn validation() {
        assert!(validate(&req(&["a", "b"])).is_ok());
        assert!(validate(&req(&["a"])).is_err());
        assert!(validate(&req(&["a", "a"])).is_err());
        assert!(validate(&req(&["a", " "])).is_err());
        let mut r = req(&["a", "b"]);
        r.min_confidence = Some(2.0);
        assert!(validate(&r).is_err());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[-1.0, -3.0, -2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > p[2] && p[2] > p[1]);
    }
}
