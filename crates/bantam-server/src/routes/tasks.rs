//! Task endpoints: `POST /v1/classify`, `/v1/extract`, `/v1/summarize`.
//!
//! Like chat, they go through the router: a plain model name runs the task on that
//! local model; a route may send it to an upstream (which answers it through chat
//! completions, or natively when it is another Bantam). The request is checked here
//! first, so a bad one gets the same 400 whichever backend would have answered.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bantam_engine::ModelPool;
use bantam_router::{Endpoint, Reply};
use bantam_tasks::TaskError;
use bantam_types::tasks::{ClassifyRequest, ExtractRequest, SummarizeRequest};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::routed::{respond, route};
use super::{parse_json, RawBody};
use crate::error::ApiError;
use crate::state::AppState;

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Invalid { param, message } => ApiError::invalid(Some(param), message),
            TaskError::Engine(e) => e.into(),
        }
    }
}

fn typed<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body)
        .map_err(|e| ApiError::invalid(None, format!("invalid request: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(format!("encoding the answer: {e}")))
}

/// Run a task on a local model (the local backend's half of a task call).
pub(crate) async fn local_task(
    pool: &ModelPool,
    endpoint: Endpoint,
    body: Value,
) -> Result<Reply, ApiError> {
    let v = match endpoint {
        Endpoint::Classify => {
            let req: ClassifyRequest = typed(body)?;
            let engine = pool.get(&req.model).await?;
            let texts = req.input.clone().into_vec();
            to_json(&bantam_tasks::classify(&engine, &req, &texts).await?)?
        }
        Endpoint::Extract => {
            let req: ExtractRequest = typed(body)?;
            let engine = pool.get(&req.model).await?;
            to_json(&bantam_tasks::extract(&engine, &req).await?)?
        }
        Endpoint::Summarize => {
            let req: SummarizeRequest = typed(body)?;
            let engine = pool.get(&req.model).await?;
            to_json(&bantam_tasks::summarize(&engine, &req).await?)?
        }
        Endpoint::Chat | Endpoint::Completions => {
            return Err(ApiError::internal(format!(
                "{} is not a task endpoint",
                endpoint.as_str()
            )))
        }
    };
    Ok(Reply::Full(v))
}

pub(crate) async fn classify(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let req: ClassifyRequest = parse_json(&bytes)?;
    bantam_tasks::classify::validate(&req)?;
    bantam_tasks::classify::validate_texts(&req.input.clone().into_vec())?;
    let routed = route(&st, Endpoint::Classify, &headers, parse_json(&bytes)?).await?;
    Ok(respond(routed, |_| {}))
}

pub(crate) async fn extract(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let req: ExtractRequest = parse_json(&bytes)?;
    bantam_tasks::extract::validate(&req)?;
    let routed = route(&st, Endpoint::Extract, &headers, parse_json(&bytes)?).await?;
    Ok(respond(routed, |v| {
        // An upstream answering through chat reports no spans; find them here.
        if req.spans && v.get("spans").is_none_or(Value::is_null) {
            let spans = bantam_tasks::extract::spans(&req.input, &v["data"]);
            v["spans"] = Value::Object(spans);
        }
    }))
}

pub(crate) async fn summarize(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let req: SummarizeRequest = parse_json(&bytes)?;
    bantam_tasks::summarize::validate(&req)?;
    let routed = route(&st, Endpoint::Summarize, &headers, parse_json(&bytes)?).await?;
    Ok(respond(routed, |_| {}))
}
