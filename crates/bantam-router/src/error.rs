//! Errors of the routing layer.

use serde_json::Value;

/// A configuration problem; the message names the entry to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("routing configuration: {0}")]
pub struct ConfigError(pub String);

/// A backend failed to answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The backend answered with an HTTP error and an (OpenAI-shaped) body.
    #[error("{backend}: HTTP {status}: {message}")]
    Status {
        /// Backend name.
        backend: String,
        /// HTTP status.
        status: u16,
        /// The `error.code` of the body, if any.
        code: Option<String>,
        /// The `error.message` of the body (or the body's text).
        message: String,
        /// The body as received (passed to the client when this is the final answer).
        body: Value,
    },
    /// No answer: connection refused or reset, DNS, TLS, or a timeout.
    #[error("{backend}: {reason}")]
    Unreachable {
        /// Backend name.
        backend: String,
        /// What happened.
        reason: String,
        /// It was a timeout.
        timeout: bool,
    },
    /// A stream that had started broke off.
    #[error("{backend}: the stream broke off: {reason}")]
    Broken {
        /// Backend name.
        backend: String,
        /// What happened.
        reason: String,
    },
}

impl BackendError {
    /// An HTTP error from a status and a JSON body (OpenAI's `{"error": {...}}` or
    /// anything else).
    pub fn status(backend: &str, status: u16, body: Value) -> Self {
        let err = body.get("error");
        let message = err
            .and_then(|e| e.get("message").or(Some(e)))
            .and_then(|m| m.as_str().map(str::to_string))
            .unwrap_or_else(|| truncate(&body.to_string(), 300));
        let code = err
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_str())
            .map(str::to_string);
        Self::Status {
            backend: backend.to_string(),
            status,
            code,
            message,
            body,
        }
    }

    /// Another backend may succeed where this one failed: unreachable, overloaded,
    /// failing, misconfigured (401/403/404) or a prompt too long for its context.
    /// Errors caused by the request itself (other 4xx) are returned to the client.
    pub fn falls_back(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Broken { .. } => true,
            Self::Status { status, code, .. } => {
                matches!(status, 401 | 403 | 404 | 408 | 429 | 500..=599)
                    || matches!(
                        code.as_deref(),
                        // A longer context, or a model that finishes its JSON.
                        Some("context_length_exceeded" | "structured_output_incomplete")
                    )
            }
        }
    }

    /// Trying the same backend again may help (transient failures).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Broken { .. } => false,
            Self::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
        }
    }

    /// The failure says something about the backend's health (for the breaker).
    pub fn is_backend_fault(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Broken { .. } => true,
            // A structured output that failed validation is about this request.
            Self::Status { status, code, .. } => {
                matches!(status, 401 | 403 | 408 | 500..=599)
                    && !code
                        .as_deref()
                        .is_some_and(|c| c.starts_with("structured_output"))
            }
        }
    }

    /// One line for logs and the route-reason header.
    pub fn short(&self) -> String {
        match self {
            Self::Status { status, code, .. } => match code {
                Some(c) => format!("HTTP {status} {c}"),
                None => format!("HTTP {status}"),
            },
            Self::Unreachable { timeout: true, .. } => "timeout".into(),
            Self::Unreachable { reason, .. } => truncate(reason, 60),
            Self::Broken { .. } => "stream broke off".into(),
        }
    }
}

/// Why a routed request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouterError {
    /// The last backend's error (every backend tried failed, or the error was the
    /// request's fault and no other backend was tried).
    #[error("{error}")]
    Backend {
        /// The final error.
        error: BackendError,
        /// Every failure, in order, for the message.
        tried: Vec<String>,
    },
    /// Every backend of the route had its circuit open.
    #[error("no backend available for {model:?}: {detail}")]
    NoBackend {
        /// The requested model.
        model: String,
        /// Which backends were skipped and why.
        detail: String,
    },
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
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

    #[test]
    fn classification() {
        let ctx = BackendError::status(
            "a",
            400,
            json!({"error": {"message": "too long", "code": "context_length_exceeded"}}),
        );
        assert!(ctx.falls_back() && !ctx.retryable() && !ctx.is_backend_fault());
        let bad = BackendError::status("a", 400, json!({"error": {"message": "bad temperature"}}));
        assert!(!bad.falls_back());
        assert_eq!(bad.short(), "HTTP 400");
        let busy = BackendError::status("a", 429, json!({"error": {"message": "busy"}}));
        assert!(busy.falls_back() && busy.retryable() && !busy.is_backend_fault());
        let down = BackendError::Unreachable {
            backend: "a".into(),
            reason: "connection refused".into(),
            timeout: false,
        };
        assert!(down.falls_back() && down.retryable() && down.is_backend_fault());
        let text = BackendError::status("a", 502, json!("<html>bad gateway</html>"));
        assert!(text.to_string().contains("bad gateway"), "{text}");
    }
}
