//! Task endpoints: `POST /v1/classify`, `/v1/extract`, `/v1/summarize`.

use axum::extract::State;
use axum::Json;
use bantam_tasks::TaskError;
use bantam_types::tasks::{
    ClassifyRequest, ClassifyResponse, ExtractRequest, ExtractResponse, SummarizeRequest,
    SummarizeResponse,
};

use super::ApiJson;
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

fn need_model(model: &str) -> Result<(), ApiError> {
    if model.is_empty() {
        return Err(ApiError::invalid(Some("model"), "model is required"));
    }
    Ok(())
}

pub(crate) async fn extract(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ExtractRequest>,
) -> Result<Json<ExtractResponse>, ApiError> {
    need_model(&req.model)?;
    let engine = st.pool.get(&req.model).await?;
    Ok(Json(bantam_tasks::extract(&engine, &req).await?))
}

pub(crate) async fn summarize(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SummarizeRequest>,
) -> Result<Json<SummarizeResponse>, ApiError> {
    need_model(&req.model)?;
    let engine = st.pool.get(&req.model).await?;
    Ok(Json(bantam_tasks::summarize(&engine, &req).await?))
}

pub(crate) async fn classify(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ClassifyRequest>,
) -> Result<Json<ClassifyResponse>, ApiError> {
    need_model(&req.model)?;
    bantam_tasks::classify::validate(&req)?;
    let engine = st.pool.get(&req.model).await?;
    let texts = req.input.clone().into_vec();
    let resp = bantam_tasks::classify(&engine, &req, &texts).await?;
    Ok(Json(resp))
}
