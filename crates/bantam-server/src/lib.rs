//! Bantam's OpenAI-compatible HTTP API.
//!
//! A thin axum adapter: each handler parses and validates the body once into a
//! `bantam_api::Request`, hands it to the router (`bantam-router`), and writes the
//! answer as JSON or server-sent events with the `x-bantam-*` headers. Errors are
//! rendered in [`error`]. [`app`] builds the router without binding a socket, so
//! tests drive it with `oneshot`; [`serve`] binds and shuts down gracefully.

pub mod conn;
mod drain;
pub mod error;
pub mod openapi;
mod routes;
pub mod settings;
pub mod state;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

pub use error::ApiError;
pub use settings::{ServeSettings, SettingsError};
pub use state::{ledger_path, AppState, ServerConfig};

/// The router with every route.
pub fn app(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    // Every route is an operation of the OpenAPI document, so the two cannot drift.
    openapi::OPERATIONS
        .iter()
        .fold(Router::new(), |r, op| r.route(op.route, handler(op.id)))
        .method_not_allowed_fallback(|req: axum::extract::Request| async move {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                None,
                Some("method_not_allowed"),
                format!(
                    "{} is not allowed on {}; the model endpoints take POST with a JSON body, /v1/models, /v1/usage, /health and /openapi.json take GET",
                    req.method(),
                    req.uri().path()
                ),
            )
        })
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "invalid_request_error",
                None,
                Some("unknown_url"),
                "unknown endpoint; Bantam serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/classify, /v1/extract, /v1/summarize, /v1/models, /v1/usage and /health, described by GET /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        // A panic in a handler is a 500 for that request (logged), never the end of
        // the process.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send + 'static>| {
                ApiError::internal("internal error (logged on the server)").into_response()
            },
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), drain::track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The handler of an [`openapi::Operation`].
fn handler(operation_id: &str) -> MethodRouter<AppState> {
    match operation_id {
        "createChatCompletion" => post(routes::routed::chat_completions),
        "createCompletion" => post(routes::routed::completions),
        "createEmbedding" => post(routes::routed::embeddings),
        "classify" => post(routes::routed::classify),
        "extract" => post(routes::routed::extract),
        "summarize" => post(routes::routed::summarize),
        "listModels" => get(routes::models::list),
        "retrieveModel" => get(routes::models::get),
        "usage" => get(routes::usage::usage),
        "health" => get(routes::models::health),
        "openapi" => get(routes::models::openapi),
        other => unreachable!("operation {other} has no handler"),
    }
}

/// Bind, serve until `shutdown` resolves, then let running requests finish (up to the
/// configured grace period) and unload the models.
pub async fn serve(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cfg = state.config.clone();
    let addr: SocketAddr = format!("{}:{}", cfg.host, cfg.port).parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad listen address {}:{}: {e}", cfg.host, cfg.port),
        )
    })?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, state, shutdown).await
}

/// [`serve`] on a listener bound already (tests bind port 0 and read its address).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cfg = state.config.clone();
    let local = listener.local_addr()?;
    // Descriptors for every connection allowed, with room for models and files.
    let fds = conn::raise_fd_limit().unwrap_or(1024);
    let room = usize::try_from(fds.saturating_sub(256))
        .unwrap_or(usize::MAX)
        .max(16);
    let max_conns = cfg.max_connections.min(room);
    if max_conns < cfg.max_connections {
        tracing::warn!(
            max_connections = cfg.max_connections,
            open_files = fds,
            allowed = max_conns,
            "the open-files limit allows fewer connections than configured"
        );
    }
    let listener = conn::Bounded::new(
        listener,
        max_conns,
        Duration::from_secs(cfg.idle_timeout_secs.max(1)),
    );
    for name in &cfg.preload {
        match state.pool.preload(name).await {
            Ok(info) => tracing::info!(model = %info.name, secs = info.load_secs, "preloaded"),
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
    // Unload idle models in the background.
    let pool = state.pool.clone();
    let reaper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let p = pool.clone();
            let _ = tokio::task::spawn_blocking(move || p.reap_idle()).await;
        }
    });
    // Printed on stdout so scripts and tests can wait for it.
    println!("bantam listening on http://{local}");
    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
    // On the signal: refuse new requests (503) and let running ones finish (see
    // `drain`); only then close the now idle connections.
    let drain = state.drain.clone();
    let drained = async move {
        shutdown.await;
        tracing::info!(
            inflight = drain.inflight(),
            "shutting down: finishing running requests, refusing new ones"
        );
        drain.start();
        if !drain.wait_idle(grace).await {
            tracing::warn!(
                inflight = drain.inflight(),
                "grace period over; closing remaining connections"
            );
        }
    };
    let server = axum::serve(
        listener,
        app(state.clone()).into_make_service_with_connect_info::<conn::ConnMeta>(),
    )
    .with_graceful_shutdown(drained);
    if let Err(e) = server.await {
        tracing::error!(error = %e, "server error");
    }
    reaper.abort();
    let pool = state.pool.clone();
    let _ = tokio::task::spawn_blocking(move || pool.unload_all()).await;
    Ok(())
}
