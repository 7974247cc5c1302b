//! The one place where errors become HTTP responses.
//!
//! Policy: every error a client can cause is a 4xx with an OpenAI-shaped body
//! (`{"error": {"message", "type", "param", "code"}}`) whose message says what to
//! change. Server-side failures are 5xx with the cause logged; the process keeps
//! serving either way.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bantam_engine::EngineError;
use bantam_router::{BackendError, RouterError};
use bantam_store::StoreError;
use bantam_structured::StructuredError;
use bantam_types::openai::{ErrorBody, ErrorResponse};

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: ErrorBody,
}

impl ApiError {
    /// 400 `invalid_request_error` about `param`.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            param,
            None,
            message,
        )
    }

    /// 500 `server_error` (a failure on Bantam's side, such as a worker that died).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            None,
            message,
        )
    }

    /// Any status.
    pub fn new(
        status: StatusCode,
        kind: &str,
        param: Option<&str>,
        code: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            body: ErrorBody {
                message: message.into(),
                kind: kind.to_string(),
                param: param.map(str::to_string),
                code: code.map(str::to_string),
            },
        }
    }

    /// This error as a local backend's failure (the router decides whether another
    /// backend should try).
    pub fn for_backend(&self, backend: &str) -> BackendError {
        BackendError::status(
            backend,
            self.status.as_u16(),
            serde_json::to_value(self.to_body()).unwrap_or_default(),
        )
    }

    /// The JSON body.
    pub fn to_body(&self) -> ErrorResponse {
        ErrorResponse {
            error: self.body.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.body.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.body.message, "request rejected");
        }
        (self.status, Json(self.to_body())).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let msg = e.to_string();
        match e {
            EngineError::ContextOverflow { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("messages"),
                Some("context_length_exceeded"),
                msg,
            ),
            EngineError::EmptyPrompt => Self::invalid(Some("prompt"), msg),
            EngineError::BadToken(_) => Self::invalid(Some("prompt"), msg),
            EngineError::Template(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("messages"),
                Some("template_error"),
                msg,
            ),
            EngineError::QueueFull { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                None,
                Some("queue_full"),
                msg,
            ),
            EngineError::ModelNotFound(_) => Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
                msg,
            ),
            EngineError::Load { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                Some("model"),
                Some("model_load_failed"),
                msg,
            ),
            EngineError::Stopped => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                None,
                Some("engine_stopped"),
                msg,
            ),
            EngineError::Decode(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                Some("inference_failed"),
                msg,
            ),
            EngineError::Constraint(c) => match c {
                StructuredError::Unsupported(_) => Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("response_format"),
                    Some("unsupported_schema"),
                    msg,
                ),
                StructuredError::Invalid { .. } => Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("response_format"),
                    Some("invalid_schema"),
                    msg,
                ),
                StructuredError::Incomplete(_) => Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request_error",
                    Some("max_tokens"),
                    Some("structured_output_incomplete"),
                    msg,
                ),
                StructuredError::Violated(_) | StructuredError::Engine(_) => Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    None,
                    Some("structured_output_invalid"),
                    msg,
                ),
            },
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
                msg,
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::BadName(_) => Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
                e.to_string(),
            ),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
                e.to_string(),
            ),
        }
    }
}

impl From<RouterError> for ApiError {
    fn from(e: RouterError) -> Self {
        match e {
            RouterError::Backend { error, tried } => {
                let after = if tried.len() > 1 {
                    format!(" (tried: {})", tried.join("; "))
                } else {
                    String::new()
                };
                match error {
                    BackendError::Status {
                        status,
                        body,
                        message,
                        ..
                    } => {
                        let status =
                            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                        match serde_json::from_value::<ErrorResponse>(body) {
                            Ok(mut b) => {
                                b.error.message.push_str(&after);
                                if b.error.kind.is_empty() {
                                    b.error.kind = "upstream_error".into();
                                }
                                Self {
                                    status,
                                    body: b.error,
                                }
                            }
                            Err(_) => Self::new(
                                status,
                                "upstream_error",
                                None,
                                Some("upstream_error"),
                                format!("{message}{after}"),
                            ),
                        }
                    }
                    BackendError::Unreachable {
                        timeout,
                        reason,
                        backend,
                    } => Self::new(
                        if timeout {
                            StatusCode::GATEWAY_TIMEOUT
                        } else {
                            StatusCode::BAD_GATEWAY
                        },
                        "upstream_error",
                        None,
                        Some(if timeout {
                            "upstream_timeout"
                        } else {
                            "upstream_unavailable"
                        }),
                        format!("backend {backend} did not answer: {reason}{after}"),
                    ),
                    BackendError::Broken { backend, reason } => Self::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        None,
                        Some("upstream_stream_broken"),
                        format!("backend {backend}: {reason}{after}"),
                    ),
                }
            }
            RouterError::NoBackend { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("model"),
                Some("no_backend_available"),
                format!("{e}; the circuits close again after their cool-down"),
            ),
        }
    }
}
