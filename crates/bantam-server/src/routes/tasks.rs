//! Task endpoints: `POST /v1/classify`.

use axum::extract::State;
use axum::Json;
use bantam_tasks::ClassifyError;
use bantam_types::tasks::{ClassifyRequest, ClassifyResponse};

use super::ApiJson;
use crate::error::ApiError;
use crate::state::AppState;

impl From<ClassifyError> for ApiError {
    fn from(e: ClassifyError) -> Self {
        match e {
            ClassifyError::Invalid { param, message } => ApiError::invalid(Some(param), message),
            ClassifyError::Engine(e) => e.into(),
        }
    }
}

pub(crate) async fn classify(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ClassifyRequest>,
) -> Result<Json<ClassifyResponse>, ApiError> {
    if req.model.is_empty() {
        return Err(ApiError::invalid(Some("model"), "model is required"));
    }
    bantam_tasks::classify::validate(&req)?;
    let engine = st.pool.get(&req.model).await?;
    let texts = req.input.clone().into_vec();
    let resp = bantam_tasks::classify(&engine, &req, &texts).await?;
    Ok(Json(resp))
}
