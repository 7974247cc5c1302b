//! HTTP routes, one module per domain, plus the body extractor whose rejections are
//! OpenAI-shaped errors.

pub(crate) mod models;
pub(crate) mod routed;
pub(crate) mod usage;

use axum::body::Bytes;
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::state::AppState;

/// The body's bytes; a body that cannot be read (too large, broken connection) or
/// does not arrive within `body_timeout_secs` is an OpenAI-shaped error. Any content
/// type is accepted (like the OpenAI API; curl users often omit it).
pub(crate) struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let secs = state.config.body_timeout_secs.max(1);
        match tokio::time::timeout(
            Duration::from_secs(secs),
            Bytes::from_request(req, state),
        )
        .await
        {
            Ok(Ok(b)) => Ok(RawBody(b)),
            Ok(Err(e)) => Err(ApiError::new(
                e.status(),
                "invalid_request_error",
                None,
                None,
                format!("could not read the request body: {}", e.body_text()),
            )),
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                None,
                Some("body_timeout"),
                format!(
                    "the request body did not arrive within {secs} s of its headers; send it faster (the server's --body-timeout-secs)"
                ),
            )),
        }
    }
}
