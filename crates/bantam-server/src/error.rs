//! Errors as HTTP responses.
//!
//! Policy: every error a client can cause is a 4xx with an OpenAI-shaped body
//! (`{"error": {"message", "type", "param", "code"}}`) whose message says what to
//! change. Server-side failures are 5xx with the cause logged; the process keeps
//! serving either way. What each backend error kind is on the wire is decided in one
//! place, `bantam_api::BackendError::{status, body}`; validation errors are 400s
//! naming the parameter; this module renders them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bantam_api::{BackendError, Invalid};
use bantam_router::RouterError;
use bantam_store::StoreError;
use bantam_types::openai::{ErrorBody, ErrorResponse};

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: ErrorBody,
    /// The backend that failed (`x-bantam-backend`), for a routed request.
    pub backend: Option<String>,
    /// Seconds to wait before trying again (`Retry-After`, with 429 and 503).
    pub retry_after: Option<u64>,
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
            backend: None,
            retry_after: None,
        }
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
        let mut resp = (self.status, Json(self.to_body())).into_response();
        if let Some(v) = self
            .backend
            .as_deref()
            .and_then(|b| axum::http::HeaderValue::from_str(b).ok())
        {
            resp.headers_mut().insert("x-bantam-backend", v);
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(secs));
        }
        resp
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        // The same rendering as a backend's invalid-request error.
        BackendError::from_invalid("bantam", e).into()
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        let retry_after = match &e {
            BackendError::Overloaded {
                retry_after_secs, ..
            } => Some(retry_after_secs.unwrap_or(1)),
            BackendError::Unavailable { .. } => Some(1),
            _ => None,
        };
        Self {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY),
            body: e.body(),
            backend: None,
            retry_after,
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
                let backend = error.backend().to_string();
                let mut api = ApiError::from(error);
                api.backend = Some(backend);
                if tried.len() > 1 {
                    api.body
                        .message
                        .push_str(&format!(" (tried: {})", tried.join("; ")));
                }
                api
            }
            RouterError::NoBackend { .. } => {
                let mut api = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    Some("model"),
                    Some("no_backend_available"),
                    format!("{e}; the circuits close again after their cool-down"),
                );
                api.retry_after = Some(1);
                api
            }
        }
    }
}
