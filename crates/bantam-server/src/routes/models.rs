//! `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`.

use axum::extract::{Path, State};
use axum::Json;
use bantam_store::Manifest;
use bantam_types::health::{Health, LoadedModel};
use bantam_types::openai::{ModelCard, ModelList};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

fn card(m: &Manifest, loaded: &[String]) -> ModelCard {
    let created =
        time::OffsetDateTime::parse(&m.created, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp().max(0) as u64)
            .unwrap_or(0);
    let loaded = loaded.contains(&m.name);
    ModelCard {
        id: m.name.clone(),
        object: "model".into(),
        created,
        owned_by: "bantam".into(),
        meta: Some(json!({
            "architecture": m.architecture,
            "parameters": m.parameters,
            "quantization": m.quantization,
            "context_length": m.context_length,
            "size": m.size,
            "digest": m.digest,
            "loaded": loaded,
        })),
    }
}

fn route_card(e: bantam_router::CatalogEntry) -> ModelCard {
    ModelCard {
        id: e.id,
        object: "model".into(),
        created: 0,
        owned_by: e.owned_by.into(),
        meta: Some(e.meta),
    }
}

fn loaded_names(st: &AppState) -> Vec<String> {
    st.pool.loaded().into_iter().map(|i| i.name).collect()
}

pub(crate) async fn list(State(st): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let models = st.store.list()?;
    let loaded = loaded_names(&st);
    let mut data: Vec<ModelCard> = st.router.catalog().into_iter().map(route_card).collect();
    data.extend(
        models
            .iter()
            .filter(|m| !st.router.is_declared(&m.name))
            .map(|m| card(m, &loaded)),
    );
    Ok(Json(ModelList {
        object: "list".into(),
        data,
    }))
}

pub(crate) async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    if let Some(e) = st.router.catalog().into_iter().find(|e| e.id == id) {
        return Ok(Json(route_card(e)));
    }
    let m = st.store.get(&id)?;
    Ok(Json(card(&m, &loaded_names(&st))))
}

pub(crate) async fn health(State(st): State<AppState>) -> Json<Health> {
    let loaded = st.pool.loaded();
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: st.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
        inflight: st.pool.inflight() as u64,
        models_loaded: loaded
            .iter()
            .map(|i| LoadedModel {
                name: i.name.clone(),
                ctx_size: i.ctx_size,
                parallel: i.parallel,
                threads: i.threads,
                load_secs: i.load_secs,
            })
            .collect(),
        cpu_backend: bantam_engine::runtime_info().cpu_variant,
    })
}

/// `GET /openapi.json`, naming the models this server serves as examples.
pub(crate) async fn openapi(State(st): State<AppState>) -> Json<serde_json::Value> {
    let mut names: Vec<String> = st.router.catalog().into_iter().map(|e| e.id).collect();
    if let Ok(models) = st.store.list() {
        names.extend(models.into_iter().map(|m| m.name));
    }
    names.sort();
    names.dedup();
    Json(crate::openapi::document(&names))
}
