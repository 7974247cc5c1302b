//! Why a backend did not answer, typed by what happened — and, in one place, what
//! each kind is on the wire: [`BackendError::status`] and [`BackendError::body`]
//! give the HTTP status and the OpenAI-shaped error body the server answers with,
//! and [`BackendError::from_http`] reads an upstream's error answer back into a kind.
//! The router decides fallback, retries and its circuit breakers on the kind
//! ([`BackendError::falls_back`], [`BackendError::retryable`],
//! [`BackendError::is_backend_fault`]), never on status numbers or code strings.

use bantam_types::openai::ErrorBody;
use serde_json::Value;

use crate::request::Invalid;

/// A backend failed to answer (or, inside a stream, stopped answering).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The request cannot be served as sent (a parameter out of range, a token id
    /// outside the vocabulary, a schema that cannot be compiled, an input the model
    /// cannot take): the client's to fix; another backend is not tried.
    #[error("{backend}: {message}")]
    Invalid {
        /// Backend name.
        backend: String,
        /// The parameter to change.
        param: Option<String>,
        /// A stable machine-readable code, if any.
        code: Option<String>,
        /// What to change.
        message: String,
    },
    /// The model does not exist there (not installed; an upstream's 404).
    #[error("{backend}: {message}")]
    NotFound {
        /// Backend name.
        backend: String,
        /// Which model, and how to get it.
        message: String,
    },
    /// The prompt does not fit this backend's context (a larger one may take it).
    #[error("{backend}: {message}")]
    ContextOverflow {
        /// Backend name.
        backend: String,
        /// Sizes.
        message: String,
    },
    /// Too busy: too many requests already wait (a 429).
    #[error("{backend}: {message}")]
    Overloaded {
        /// Backend name.
        backend: String,
        /// What is full.
        message: String,
        /// Seconds to wait before trying again, if the backend said.
        retry_after_secs: Option<u64>,
    },
    /// Generation ended before the structured output was complete (a model that
    /// finishes its JSON may succeed).
    #[error("{backend}: {message}")]
    StructuredIncomplete {
        /// Backend name.
        backend: String,
        /// Why it stopped.
        message: String,
    },
    /// The finished output does not satisfy the requested format (never returned as
    /// a success).
    #[error("{backend}: {message}")]
    StructuredInvalid {
        /// Backend name.
        backend: String,
        /// What failed.
        message: String,
    },
    /// The backend cannot answer now: connection refused or reset, its engine
    /// stopped, its model failed to load, an upstream's 502/503.
    #[error("{backend}: {reason}")]
    Unavailable {
        /// Backend name.
        backend: String,
        /// What happened.
        reason: String,
    },
    /// No answer within the backend's time limit.
    #[error("{backend}: {reason}")]
    Timeout {
        /// Backend name.
        backend: String,
        /// What took too long.
        reason: String,
    },
    /// An upstream refused Bantam's credentials (401/403): misconfigured.
    #[error("{backend}: HTTP {status}: {message}")]
    Unauthorized {
        /// Backend name.
        backend: String,
        /// 401 or 403.
        status: u16,
        /// The upstream's message.
        message: String,
    },
    /// A stream that had started broke off, or an answer could not be read.
    #[error("{backend}: the stream broke off: {reason}")]
    Broken {
        /// Backend name.
        backend: String,
        /// What happened.
        reason: String,
    },
    /// Any other HTTP error of an upstream, with its body as received (passed to the
    /// client when it is the final answer).
    #[error("{backend}: HTTP {status}: {message}")]
    Upstream {
        /// Backend name.
        backend: String,
        /// HTTP status.
        status: u16,
        /// The body's `error.message` (or its text).
        message: String,
        /// The body as received.
        body: Value,
    },
    /// Something failed inside the backend (a failing library, a worker that died).
    #[error("{backend}: {message}")]
    Internal {
        /// Backend name.
        backend: String,
        /// What failed.
        message: String,
    },
}

impl BackendError {
    /// An invalid request about `param` (the request's fault).
    pub fn invalid(backend: &str, param: Option<&str>, message: impl Into<String>) -> Self {
        Self::Invalid {
            backend: backend.to_string(),
            param: param.map(str::to_string),
            code: None,
            message: message.into(),
        }
    }

    /// A validation error, as this backend's answer.
    pub fn from_invalid(backend: &str, e: Invalid) -> Self {
        Self::Invalid {
            backend: backend.to_string(),
            param: e.param,
            code: e.code,
            message: e.message,
        }
    }

    /// A failure inside the backend.
    pub fn internal(backend: &str, message: impl Into<String>) -> Self {
        Self::Internal {
            backend: backend.to_string(),
            message: message.into(),
        }
    }

    /// A broken stream or unreadable answer.
    pub fn broken(backend: &str, reason: impl Into<String>) -> Self {
        Self::Broken {
            backend: backend.to_string(),
            reason: reason.into(),
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> &str {
        match self {
            Self::Invalid { backend, .. }
            | Self::NotFound { backend, .. }
            | Self::ContextOverflow { backend, .. }
            | Self::Overloaded { backend, .. }
            | Self::StructuredIncomplete { backend, .. }
            | Self::StructuredInvalid { backend, .. }
            | Self::Unavailable { backend, .. }
            | Self::Timeout { backend, .. }
            | Self::Unauthorized { backend, .. }
            | Self::Broken { backend, .. }
            | Self::Upstream { backend, .. }
            | Self::Internal { backend, .. } => backend,
        }
    }

    /// The message without the backend's name.
    pub fn message(&self) -> &str {
        match self {
            Self::Invalid { message, .. }
            | Self::NotFound { message, .. }
            | Self::ContextOverflow { message, .. }
            | Self::Overloaded { message, .. }
            | Self::StructuredIncomplete { message, .. }
            | Self::StructuredInvalid { message, .. }
            | Self::Unauthorized { message, .. }
            | Self::Upstream { message, .. }
            | Self::Internal { message, .. } => message,
            Self::Unavailable { reason, .. }
            | Self::Timeout { reason, .. }
            | Self::Broken { reason, .. } => reason,
        }
    }

    /// Another backend may succeed where this one failed: unreachable, overloaded,
    /// failing, misconfigured, without the model, a prompt too long for its context,
    /// a structured output it could not finish or get right. An invalid request (and
    /// an upstream's other 4xx) is the client's and comes back as it is.
    pub fn falls_back(&self) -> bool {
        match self {
            Self::Invalid { .. } => false,
            Self::Upstream { status, .. } => matches!(status, 408 | 500..=599),
            _ => true,
        }
    }

    /// Trying the same backend again may help (transient failures).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Overloaded { .. } | Self::Unavailable { .. } | Self::Timeout { .. } => true,
            Self::Upstream { status, .. } => matches!(status, 408 | 500..=599),
            _ => false,
        }
    }

    /// The failure says something about the backend's health (for its circuit
    /// breaker); a busy backend, a missing model, a long prompt or a structured
    /// output that failed are about this request.
    pub fn is_backend_fault(&self) -> bool {
        match self {
            Self::Unavailable { .. }
            | Self::Timeout { .. }
            | Self::Unauthorized { .. }
            | Self::Broken { .. }
            | Self::Internal { .. } => true,
            Self::Upstream { status, .. } => matches!(status, 408 | 500..=599),
            _ => false,
        }
    }

    /// The backend rejected the request field `field` (an extension it does not
    /// know, such as `response_format` of type `choice` or `repetition_penalty`).
    pub fn rejects_field(&self, field: &str) -> bool {
        match self {
            Self::Invalid { param, message, .. } => {
                param.as_deref().unwrap_or("").starts_with(field) || message.contains(field)
            }
            Self::Upstream {
                status: 400 | 422,
                message,
                body,
                ..
            } => {
                let param = body["error"]["param"].as_str().unwrap_or("");
                param.starts_with(field) || message.contains(field)
            }
            _ => false,
        }
    }

    /// One line for logs and the route-reason header.
    pub fn short(&self) -> String {
        match self {
            Self::Invalid { code, .. } => match code {
                Some(c) => format!("invalid request ({c})"),
                None => "invalid request".into(),
            },
            Self::NotFound { .. } => "model not found".into(),
            Self::ContextOverflow { .. } => "context length exceeded".into(),
            Self::Overloaded { .. } => "overloaded".into(),
            Self::StructuredIncomplete { .. } => "structured output incomplete".into(),
            Self::StructuredInvalid { .. } => "structured output invalid".into(),
            Self::Unavailable { reason, .. } => truncate(reason, 60),
            Self::Timeout { .. } => "timeout".into(),
            Self::Unauthorized { status, .. } => format!("HTTP {status}"),
            Self::Broken { .. } => "stream broke off".into(),
            Self::Upstream { status, .. } => format!("HTTP {status}"),
            Self::Internal { .. } => "internal error".into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } | Self::ContextOverflow { .. } => 400,
            Self::NotFound { .. } => 404,
            Self::Overloaded { .. } => 429,
            Self::StructuredIncomplete { .. } => 422,
            Self::StructuredInvalid { .. } | Self::Internal { .. } => 500,
            Self::Unavailable { .. } => 503,
            Self::Timeout { .. } => 504,
            Self::Unauthorized { .. } | Self::Broken { .. } => 502,
            Self::Upstream { status, .. } => *status,
        }
    }

    /// The OpenAI-shaped error body (`{"error": …}`'s inside).
    pub fn body(&self) -> ErrorBody {
        let b = |kind: &str, param: Option<&str>, code: Option<&str>, message: String| ErrorBody {
            message,
            kind: kind.to_string(),
            param: param.map(str::to_string),
            code: code.map(str::to_string),
        };
        let m = self.message().to_string();
        match self {
            Self::Invalid { param, code, .. } => {
                b("invalid_request_error", param.as_deref(), code.as_deref(), m)
            }
            Self::NotFound { .. } => b(
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
                m,
            ),
            Self::ContextOverflow { .. } => b(
                "invalid_request_error",
                Some("messages"),
                Some("context_length_exceeded"),
                m,
            ),
            Self::Overloaded { .. } => b("rate_limit_error", None, Some("overloaded"), m),
            Self::StructuredIncomplete { .. } => b(
                "invalid_request_error",
                Some("max_tokens"),
                Some("structured_output_incomplete"),
                m,
            ),
            Self::StructuredInvalid { .. } => {
                b("server_error", None, Some("structured_output_invalid"), m)
            }
            Self::Unavailable { backend, reason } => b(
                "server_error",
                None,
                Some("backend_unavailable"),
                format!("backend {backend} cannot answer: {reason}"),
            ),
            Self::Timeout { backend, reason } => b(
                "server_error",
                None,
                Some("backend_timeout"),
                format!("backend {backend} did not answer in time: {reason}"),
            ),
            Self::Unauthorized {
                backend, status, ..
            } => b(
                "upstream_error",
                None,
                Some("upstream_unauthorized"),
                format!("backend {backend} refused Bantam's credentials (HTTP {status}): {m}; check its api_key_env"),
            ),
            Self::Broken { backend, reason } => b(
                "upstream_error",
                None,
                Some("upstream_stream_broken"),
                format!("backend {backend}: {reason}"),
            ),
            Self::Upstream { body, .. } => match body
                .get("error")
                .cloned()
                .and_then(|e| serde_json::from_value::<ErrorBody>(e).ok())
            {
                Some(mut e) => {
                    if e.kind.is_empty() {
                        e.kind = "upstream_error".into();
                    }
                    e
                }
                None => b("upstream_error", None, Some("upstream_error"), m),
            },
            Self::Internal { .. } => b("server_error", None, None, m),
        }
    }

    /// An upstream's HTTP error answer (status and body, OpenAI's `{"error": …}` or
    /// anything else) as a kind: the inverse of [`BackendError::status`] and
    /// [`BackendError::body`] for another Bantam, and the usual meaning of the status
    /// for other servers.
    pub fn from_http(backend: &str, status: u16, body: Value) -> Self {
        let err = body.get("error");
        let message = err
            .and_then(|e| e.get("message").or(Some(e)))
            .and_then(|m| m.as_str().map(str::to_string))
            .unwrap_or_else(|| truncate(&body.to_string(), 300));
        let field = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let code = field("code");
        let backend = backend.to_string();
        match (status, code.as_deref()) {
            (_, Some("context_length_exceeded")) => Self::ContextOverflow { backend, message },
            (_, Some("structured_output_incomplete")) => {
                Self::StructuredIncomplete { backend, message }
            }
            (_, Some("structured_output_invalid")) => Self::StructuredInvalid { backend, message },
            (_, Some("model_not_found")) | (404, _) => Self::NotFound { backend, message },
            (429, _) => Self::Overloaded {
                backend,
                message,
                retry_after_secs: None,
            },
            (401 | 403, _) => Self::Unauthorized {
                backend,
                status,
                message,
            },
            (400 | 413 | 415 | 422, _) if err.is_some() => Self::Invalid {
                backend,
                param: field("param"),
                code,
                message,
            },
            (502 | 503, _) => Self::Unavailable {
                backend,
                reason: format!("HTTP {status}: {message}"),
            },
            (504, _) => Self::Timeout {
                backend,
                reason: format!("HTTP 504: {message}"),
            },
            _ => Self::Upstream {
                backend,
                status,
                message,
                body,
            },
        }
    }
}

/// `s` cut to `n` characters (with `...` when cut), for messages that quote what
/// another server sent.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push_str("...");
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all() -> Vec<BackendError> {
        let b = || "a".to_string();
        let m = || "why".to_string();
        vec![
            BackendError::Invalid {
                backend: b(),
                param: Some("temperature".into()),
                code: None,
                message: m(),
            },
            BackendError::NotFound {
                backend: b(),
                message: m(),
            },
            BackendError::ContextOverflow {
                backend: b(),
                message: m(),
            },
            BackendError::Overloaded {
                backend: b(),
                message: m(),
                retry_after_secs: None,
            },
            BackendError::StructuredIncomplete {
                backend: b(),
                message: m(),
            },
            BackendError::StructuredInvalid {
                backend: b(),
                message: m(),
            },
            BackendError::Unavailable {
                backend: b(),
                reason: m(),
            },
            BackendError::Timeout {
                backend: b(),
                reason: m(),
            },
        ]
    }

    #[test]
    fn another_bantam_reads_back_the_same_kind() {
        for e in all() {
            let wire = json!({"error": e.body()});
            let back = BackendError::from_http("a", e.status(), wire);
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{e:?} came back as {back:?}"
            );
            assert_eq!(back.falls_back(), e.falls_back(), "{e:?}");
        }
    }

    #[test]
    fn decisions_follow_the_kind() {
        let ctx = BackendError::from_http(
            "a",
            400,
            json!({"error": {"message": "too long", "code": "context_length_exceeded"}}),
        );
        assert!(ctx.falls_back() && !ctx.retryable() && !ctx.is_backend_fault());
        let bad = BackendError::from_http(
            "a",
            400,
            json!({"error": {"message": "bad temperature", "param": "temperature"}}),
        );
        assert!(!bad.falls_back());
        assert!(matches!(&bad, BackendError::Invalid { param: Some(p), .. } if p == "temperature"));
        let busy = BackendError::from_http("a", 429, json!({"error": {"message": "busy"}}));
        assert!(busy.falls_back() && busy.retryable() && !busy.is_backend_fault());
        let down = BackendError::Unavailable {
            backend: "a".into(),
            reason: "connection refused".into(),
        };
        assert!(down.falls_back() && down.retryable() && down.is_backend_fault());
        let html = BackendError::from_http("a", 500, json!("<html>oops</html>"));
        assert!(html.to_string().contains("oops"), "{html}");
        assert!(html.falls_back() && html.retryable() && html.is_backend_fault());
        let teapot = BackendError::from_http("a", 418, json!({"error": {"message": "no"}}));
        assert!(!teapot.falls_back());
        assert_eq!(teapot.status(), 418);
        assert_eq!(teapot.body().message, "no");
        let key = BackendError::from_http("a", 401, json!({"error": {"message": "bad key"}}));
        assert!(key.falls_back() && !key.retryable() && key.is_backend_fault());
        let incomplete = BackendError::from_http(
            "a",
            502,
            json!({"error": {"message": "cut", "code": "structured_output_incomplete"}}),
        );
        assert!(incomplete.falls_back() && !incomplete.is_backend_fault());
    }

    #[test]
    fn extension_rejections_are_recognised() {
        let bantam = BackendError::from_http(
            "t",
            400,
            json!({"error": {"message": "unknown response_format type \"choice\"", "param": "response_format"}}),
        );
        assert!(bantam.rejects_field("response_format"));
        let openai = BackendError::from_http(
            "t",
            400,
            json!({"error": {"message": "Invalid value: 'choice'.", "param": "response_format.type"}}),
        );
        assert!(openai.rejects_field("response_format"));
        let unknown = BackendError::from_http(
            "t",
            400,
            json!({"error": {"message": "Unrecognized request argument supplied: repetition_penalty", "param": null}}),
        );
        assert!(unknown.rejects_field("repetition_penalty"));
        assert!(!unknown.rejects_field("response_format"));
        let plain = BackendError::from_http("t", 400, json!("repetition_penalty is not allowed"));
        assert!(plain.rejects_field("repetition_penalty"));
        assert!(!BackendError::from_http(
            "t",
            500,
            json!({"error": {"message": "response_format broke"}})
        )
        .rejects_field("response_format"));
        assert!(
            !BackendError::from_http("t", 401, json!({"error": {"message": "bad key"}}))
                .rejects_field("response_format")
        );
    }
}
