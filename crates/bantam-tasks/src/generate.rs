//! Running one generation to completion.

use bantam_engine::{Engine, EngineError};
use bantam_types::generate::{
    GenerateEvent, GenerateRequest, OutputConstraint, Prompt, SamplingParams, Timings, Usage,
};

/// Generate greedily (deterministic) and collect the text. `repetition_penalty`
/// (1 = off) keeps small models from looping in free text.
pub async fn complete(
    engine: &Engine,
    prompt: Prompt,
    max_tokens: u32,
    constraint: Option<OutputConstraint>,
    repetition_penalty: f32,
) -> Result<(String, Usage), EngineError> {
    complete_timed(engine, prompt, max_tokens, constraint, repetition_penalty)
        .await
        .map(|(text, usage, _)| (text, usage))
}

/// [`complete`], with the engine's timings of the generation (queue, prefill,
/// decode).
pub async fn complete_timed(
    engine: &Engine,
    prompt: Prompt,
    max_tokens: u32,
    constraint: Option<OutputConstraint>,
    repetition_penalty: f32,
) -> Result<(String, Usage, Timings), EngineError> {
    let mut events = engine.generate(GenerateRequest {
        prompt,
        max_tokens: Some(max_tokens),
        sampling: SamplingParams {
            repetition_penalty,
            ..SamplingParams::greedy()
        },
        stop: Vec::new(),
        logprobs: None,
        ignore_eos: false,
        constraint,
    })?;
    let mut text = String::new();
    while let Some(ev) = events.next().await {
        match ev? {
            GenerateEvent::Delta { text: t, .. } => text.push_str(&t),
            GenerateEvent::Done { usage, timings, .. } => return Ok((text, usage, timings)),
        }
    }
    Err(EngineError::Stopped)
}
