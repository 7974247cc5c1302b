//! `GET /v1/usage`: requests, tokens, cost and savings by backend, route and day.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use bantam_router::{Dim, LedgerError, UsageQuery, UsageReport};

use crate::error::ApiError;
use crate::state::AppState;

/// `?since=YYYY-MM-DD&until=YYYY-MM-DD&group_by=backend,route,day`.
pub(crate) async fn usage(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<UsageReport>, ApiError> {
    for k in q.keys() {
        if !matches!(k.as_str(), "since" | "until" | "group_by") {
            return Err(ApiError::invalid(
                Some(k),
                format!("unknown parameter {k:?}; use since, until and group_by"),
            ));
        }
    }
    let Some(ledger) = st.router.ledger().cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            Some("usage_disabled"),
            "usage recording is off in this server's configuration ([usage] enabled = false)",
        ));
    };
    let group_by = match q.get("group_by") {
        Some(g) => g
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Dim::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::invalid(Some("group_by"), e.to_string()))?,
        None => vec![Dim::Backend],
    };
    let query = UsageQuery {
        since: q.get("since").cloned(),
        until: q.get("until").cloned(),
        group_by,
    };
    let report = tokio::task::spawn_blocking(move || ledger.usage(&query))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match report {
        Ok(r) => Ok(Json(r)),
        Err(LedgerError::Query(m)) => Err(ApiError::invalid(None, m)),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            Some("usage_unavailable"),
            e.to_string(),
        )),
    }
}
