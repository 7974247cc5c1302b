//! Extraction: text + JSON Schema → an object valid against the schema, with the
//! source span of each string field when it appears verbatim in the text.

use bantam_api::ExtractTask;
use bantam_engine::{Engine, EngineError};
use bantam_structured::StructuredError;
use bantam_types::generate::OutputConstraint;
use bantam_types::tasks::{ExtractResponse, TaskUsage};

pub use bantam_types::spans::{locate, spans};
use serde_json::Value;

use crate::generate::complete_timed;
use crate::TaskError;

/// Default instructions.
pub use bantam_types::tasks::EXTRACT_INSTRUCTIONS as DEFAULT_INSTRUCTIONS;

/// Run an extraction.
pub async fn extract(engine: &Engine, req: &ExtractTask) -> Result<ExtractResponse, TaskError> {
    let prompt = engine.render_chat(&req.messages(), &[])?;
    // An output cut short (a small model looping inside a string) or failing
    // validation is tried twice more with a growing repetition penalty, as the chat
    // endpoint does by default.
    let mut penalty = 1.0;
    let (text, usage, timings) = loop {
        let r = complete_timed(
            engine,
            prompt.clone(),
            req.max_tokens(),
            Some(OutputConstraint::JsonSchema(req.schema.clone())),
            penalty,
        )
        .await;
        match r {
            Err(EngineError::Constraint(
                StructuredError::Incomplete(_) | StructuredError::Violated(_),
            )) if penalty < 1.3 => {
                penalty += 0.15;
            }
            other => break other?,
        }
    };
    // The engine validated the text against the schema before returning it.
    let data: Value = serde_json::from_str(&text)
        .map_err(|e| TaskError::invalid("schema", format!("output is not JSON: {e}")))?;
    let spans = req.spans.then(|| spans(&req.input, &data));
    Ok(ExtractResponse {
        object: "extraction".into(),
        model: req.model.clone(),
        data,
        spans,
        usage: TaskUsage {
            prompt_tokens: usage.prompt_tokens - usage.cached_tokens,
            cached_tokens: usage.cached_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens + usage.completion_tokens,
            compute_ms: Some(usage.compute_us as f64 / 1e3),
            ..TaskUsage::default()
        },
        timings: Some(timings),
    })
}
