//! Classification by label log-likelihood.
//!
//! The prompt is a chat: a system message with the instructions and the label list,
//! few-shot examples as user/assistant turns, then the text. Each label's score is the
//! log-likelihood of the assistant answering exactly that label and ending its turn;
//! probabilities are those scores normalised over the labels (softmax).

use std::sync::Arc;

use bantam_api::request::Scoring;
use bantam_api::ClassifyTask;
use bantam_engine::{Engine, ScoreMode};
use bantam_types::tasks::{Classification, ClassifyResponse, TaskUsage};

use crate::TaskError;

/// Classify a validated request's texts: their prompts (the request's template or
/// instructions, labels and examples) are rendered with the model's chat template and
/// the labels scored as the answer.
pub async fn classify(engine: &Engine, req: &ClassifyTask) -> Result<ClassifyResponse, TaskError> {
    if req.labels.is_empty() {
        return Err(TaskError::invalid(
            "labels",
            "labels are required: this is a generative model, which scores the labels you give (only a classifier model from `bantam tune classify` knows its own labels)",
        ));
    }
    let texts = req.texts();
    let render = |text: &str| -> Result<Vec<i32>, TaskError> {
        let prompt = engine.render_chat(&req.messages(text), &[])?;
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
    if let Some(l) = req
        .labels
        .iter()
        .zip(&candidates)
        .find(|(_, t)| t.is_empty())
    {
        return Err(TaskError::invalid(
            "labels",
            format!(
                "label {:?} is no text this model can write (it has no tokens); use a visible name",
                l.0.name()
            ),
        ));
    }
    let out = engine
        .score(
            prompts,
            shared,
            Arc::new(candidates),
            engine.end_of_turn(),
            match req.scoring() {
                Scoring::Greedy => ScoreMode::Greedy,
                Scoring::Exact => ScoreMode::Exact,
            },
        )
        .await?;
    let threshold = req.threshold.unwrap_or(0.2) as f32;
    let min_conf = req.min_confidence.unwrap_or(0.0) as f32;
    let data = out
        .scores
        .iter()
        .enumerate()
        .map(|(i, scores)| {
            Classification::from_probabilities(
                i,
                req.label_names(),
                &softmax(scores),
                req.multi_label,
                threshold,
                min_conf,
                out.exact[i].iter().all(|&e| e),
            )
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

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[-1.0, -3.0, -2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > p[2] && p[2] > p[1]);
    }
}
