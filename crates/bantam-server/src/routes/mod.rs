//! HTTP routes, one module per domain, plus the JSON extractor whose rejections are
//! OpenAI-shaped errors.

pub(crate) mod chat;
pub(crate) mod completions;
pub(crate) mod embeddings;
pub(crate) mod models;
pub(crate) mod routed;
pub(crate) mod tasks;
pub(crate) mod usage;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use bantam_types::generate::Usage;
use bantam_types::openai::{PromptTokensDetails, UsageBody};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON body extractor: accepts any content type (like the OpenAI API, curl users
/// often omit it) and turns parse errors into 400s that point at the problem.
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The body's bytes; a body that cannot be read (too large, broken connection) is
/// an OpenAI-shaped error.
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

/// Parse a request body; errors are 400s that point at the problem.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            None,
            "the request body is empty; send a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error(de)
}

fn serde_path_to_error<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, ApiError> {
    T::deserialize(&mut *de).map_err(|e| {
        let kind = if e.is_syntax() || e.is_eof() {
            "malformed JSON"
        } else {
            "invalid request"
        };
        ApiError::invalid(None, format!("{kind}: {e}"))
    })
}

pub(crate) fn usage_body(u: &Usage) -> UsageBody {
    UsageBody {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: u.cached_tokens,
        }),
        compute_ms: Some(u.compute_us as f64 / 1e3),
    }
}
