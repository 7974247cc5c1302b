//! `POST /v1/embeddings` (OpenAI-compatible): sentence embeddings from an encoder
//! model of the store (all-MiniLM-L6-v2), L2-normalised.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bantam_engine::Embedder;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiJson;
use crate::error::ApiError;
use crate::state::AppState;

/// Most inputs in one request.
const MAX_INPUTS: usize = 2048;

/// Loaded embedding models, by store name.
#[derive(Default)]
pub struct Embedders(Mutex<HashMap<String, Arc<Embedder>>>);

impl std::fmt::Debug for Embedders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedders")
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    model: String,
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

fn inputs(v: &Value) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::invalid(
            Some("input"),
            "input must be a string or an array of strings (token arrays are not accepted)",
        )
    };
    let out: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad()),
    };
    if out.is_empty() {
        return Err(ApiError::invalid(Some("input"), "input must not be empty"));
    }
    if out.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            Some("input"),
            format!("at most {MAX_INPUTS} inputs per request, got {}", out.len()),
        ));
    }
    if let Some(i) = out.iter().position(|s| s.trim().is_empty()) {
        return Err(ApiError::invalid(
            Some("input"),
            format!("input {i} is empty; every input needs some text"),
        ));
    }
    Ok(out)
}

/// Standard base64 of the vector's little-endian f32 bytes (what the OpenAI clients
/// decode for `encoding_format: "base64"`).
fn base64_f32(v: &[f32]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

async fn embedder(st: &AppState, name: &str) -> Result<Arc<Embedder>, ApiError> {
    if let Some(e) = st
        .embedders
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
    {
        return Ok(e.clone());
    }
    let m = st.store.get(name)?;
    let path = st.store.blob_path(&m);
    let threads = st.config.embed_threads;
    let name2 = name.to_string();
    let e = tokio::task::spawn_blocking(move || Embedder::load(&path, threads))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("model"),
                Some("not_an_embedding_model"),
                format!(
                    "{name2} cannot embed: {e}; use an embedding model such as all-minilm:l6-v2"
                ),
            )
        })?;
    let e = Arc::new(e);
    st.embedders
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_string(), e.clone());
    Ok(e)
}

pub(crate) async fn embeddings(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.model.is_empty() {
        return Err(ApiError::invalid(Some("model"), "model is required"));
    }
    let texts = inputs(&req.input)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(o) => {
            return Err(ApiError::invalid(
                Some("encoding_format"),
                format!("encoding_format must be \"float\" or \"base64\", got {o:?}"),
            ))
        }
    };
    let e = embedder(&st, &req.model).await?;
    if let Some(d) = req.dimensions {
        if d != e.dim() {
            return Err(ApiError::invalid(
                Some("dimensions"),
                format!(
                    "{} returns {} dimensions; it cannot shorten them to {d}",
                    req.model,
                    e.dim()
                ),
            ));
        }
    }
    let out = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        e.embed_with_usage(&refs)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "object": "embedding",
                "index": i,
                "embedding": if base64 { json!(base64_f32(v)) } else { json!(v) },
            })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        // 1.0f32 = 00 00 80 3f; 2.0 = 00 00 00 40.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(base64_f32(&[]), "");
    }

    #[test]
    fn inputs_are_checked() {
        assert_eq!(inputs(&json!("a")).unwrap(), ["a"]);
        assert_eq!(inputs(&json!(["a", "b"])).unwrap().len(), 2);
        assert!(inputs(&json!([1, 2])).is_err());
        assert!(inputs(&json!([])).is_err());
        assert!(inputs(&json!(["a", " "])).is_err());
        assert!(inputs(&json!({"a": 1})).is_err());
    }
}
