//! HTTP routes, one module per domain, plus the body extractor whose rejections are
//! OpenAI-shaped errors.

pub(crate) mod models;
pub(crate) mod routed;
pub(crate) mod usage;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};

use crate::error::ApiError;

/// The body's bytes; a body that cannot be read (too large, broken connection) is
/// an OpenAI-shaped error. Any content type is accepted (like the OpenAI API; curl
/// users often omit it).
pub(crate) struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                ApiError::new(
                    e.status(),
                    "invalid_request_error",
                    None,
                    None,
                    format!("could not read the request body: {}", e.body_text()),
                )
            })
    }
}
