//! The task endpoints on a local model (`bantam-tasks` over the pooled engine).

use bantam_api::{BackendError, Reply, Request};
use bantam_engine::ModelPool;

use crate::error;
use crate::stream::to_value;

/// Run a classify, extract or summarize request on the store model `model`.
pub(crate) async fn task(
    pool: &ModelPool,
    backend: &str,
    model: &str,
    req: &Request,
) -> Result<Reply, BackendError> {
    let engine = pool
        .get(model)
        .await
        .map_err(|e| error::engine(backend, e))?;
    let t = |e| error::task(backend, e);
    let v = match req {
        Request::Classify(r) => to_value(&bantam_tasks::classify(&engine, r).await.map_err(t)?),
        Request::Extract(r) => to_value(&bantam_tasks::extract(&engine, r).await.map_err(t)?),
        Request::Summarize(r) => to_value(&bantam_tasks::summarize(&engine, r).await.map_err(t)?),
        other => {
            return Err(BackendError::internal(
                backend,
                format!("{} is not a task endpoint", other.endpoint()),
            ))
        }
    };
    Ok(Reply::Full(v))
}
