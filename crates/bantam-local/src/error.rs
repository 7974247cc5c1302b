//! Engine and task errors as typed backend errors (the one place that decides what
//! each engine failure means; the server maps the kinds to HTTP).

use bantam_api::BackendError;
use bantam_engine::EngineError;
use bantam_structured::StructuredError;
use bantam_tasks::TaskError;

/// An engine error of backend `backend`.
pub fn engine(backend: &str, e: EngineError) -> BackendError {
    engine_about(backend, e, "response_format")
}

/// An engine error, naming `schema_param` (`response_format`, `schema`) when the
/// request's constraint is at fault.
pub fn engine_about(backend: &str, e: EngineError, schema_param: &str) -> BackendError {
    let b = backend.to_string();
    let message = e.to_string();
    let invalid = |param: &str, code: Option<&str>| BackendError::Invalid {
        backend: b.clone(),
        param: Some(param.to_string()),
        code: code.map(str::to_string),
        message: message.clone(),
    };
    match e {
        EngineError::ContextOverflow { .. } => BackendError::ContextOverflow {
            backend: b,
            message,
        },
        EngineError::EmptyPrompt | EngineError::BadToken(_) => invalid("prompt", None),
        EngineError::Template(_) => invalid("messages", Some("template_error")),
        EngineError::QueueFull { .. } => BackendError::Overloaded {
            backend: b,
            message,
            retry_after_secs: Some(1),
        },
        EngineError::ModelNotFound(_) => BackendError::NotFound {
            backend: b,
            message,
        },
        EngineError::NotGenerative(_) => invalid("model", Some("not_a_generative_model")),
        EngineError::BadModelFile(_) => invalid("model", Some("model_unusable")),
        EngineError::Stopped => BackendError::Unavailable {
            backend: b,
            reason: message,
        },
        EngineError::Constraint(c) => match c {
            StructuredError::Unsupported(_) => invalid(schema_param, Some("unsupported_schema")),
            StructuredError::Invalid { .. } => invalid(schema_param, Some("invalid_schema")),
            StructuredError::Incomplete(_) => BackendError::StructuredIncomplete {
                backend: b,
                message,
            },
            StructuredError::Violated(_) | StructuredError::Engine(_) => {
                BackendError::StructuredInvalid {
                    backend: b,
                    message,
                }
            }
        },
        // Load, Decode and whatever comes next: a failure on this side.
        _ => BackendError::Internal {
            backend: b,
            message,
        },
    }
}

/// A task error of backend `backend`.
pub fn task(backend: &str, e: TaskError) -> BackendError {
    match e {
        TaskError::Invalid { param, message } => {
            BackendError::invalid(backend, Some(param), message)
        }
        TaskError::Engine(e) => engine_about(backend, e, "schema"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let e = engine(
            "m",
            EngineError::ContextOverflow {
                prompt_tokens: 9,
                ctx_size: 4,
            },
        );
        assert!(matches!(e, BackendError::ContextOverflow { .. }) && e.falls_back());
        let e = engine(
            "m",
            EngineError::Constraint(StructuredError::Unsupported(vec!["x".into()])),
        );
        assert!(
            matches!(&e, BackendError::Invalid { param: Some(p), .. } if p == "response_format")
        );
        assert!(!e.falls_back());
        let e = task(
            "m",
            TaskError::Engine(EngineError::Constraint(StructuredError::Incomplete(
                "length".into(),
            ))),
        );
        assert!(matches!(e, BackendError::StructuredIncomplete { .. }));
        let e = engine(
            "m",
            EngineError::QueueFull {
                model: "m".into(),
                waiting: 3,
            },
        );
        assert_eq!(e.status(), 429);
    }
}
