//! The HTTP layer in-process (`app()` + `tower::ServiceExt::oneshot`, no socket, no
//! model): every error a client can meet comes back with its status and an
//! OpenAI-shaped body naming what to change. What needs a model is tested end to end
//! in `bantam-cli`'s tests.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bantam_server::{app, AppState, ServerConfig};
use bantam_store::Store;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
}

fn fixture(cfg: ServerConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let state = AppState::with_env(store, cfg, &|_| None).unwrap();
    Fixture { _dir: dir, state }
}

fn plain() -> Fixture {
    fixture(ServerConfig::default())
}

async fn send(
    f: &Fixture,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(f.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v, headers)
}

async fn post(f: &Fixture, path: &str, body: Value) -> (StatusCode, Value) {
    let (s, v, _) = send(f, "POST", path, &body.to_string()).await;
    (s, v)
}

/// A 4xx with `{"error": {"message", "type", "param", "code"}}` naming `param`.
fn assert_error(got: &(StatusCode, Value), status: u16, kind: &str, param: Option<&str>) {
    let (s, v) = got;
    assert_eq!(s.as_u16(), status, "{v}");
    let e = &v["error"];
    assert_eq!(e["type"], kind, "{v}");
    assert_eq!(e["param"].as_str(), param, "{v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e.as_object().unwrap().contains_key("code"), "{v}");
}

fn chat(extra: Value) -> Value {
    let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

#[tokio::test]
async fn malformed_and_empty_bodies() {
    let f = plain();
    let (s, v, _) = send(&f, "POST", "/v1/chat/completions", "{\"model\": ").await;
    assert_error(&(s, v.clone()), 400, "invalid_request_error", None);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{v}"
    );
    let (s, v, _) = send(&f, "POST", "/v1/chat/completions", "").await;
    assert_error(&(s, v.clone()), 400, "invalid_request_error", None);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("empty"),
        "{v}"
    );
    // A field of the wrong type names the field.
    let (s, v, _) = send(
        &f,
        "POST",
        "/v1/chat/completions",
        r#"{"model": "m", "messages": "hi"}"#,
    )
    .await;
    assert_error(&(s, v), 400, "invalid_request_error", Some("messages"));
    let (s, v, _) = send(
        &f,
        "POST",
        "/v1/chat/completions",
        r#"{"model": "m", "messages": [{"role": "user", "content": 5}]}"#,
    )
    .await;
    assert_error(
        &(s, v),
        400,
        "invalid_request_error",
        Some("messages[0].content"),
    );
    // Trailing garbage after the object.
    let (s, v, _) = send(
        &f,
        "POST",
        "/v1/chat/completions",
        &format!("{} x", chat(json!({}))),
    )
    .await;
    assert_error(&(s, v), 400, "invalid_request_error", None);
}

#[tokio::test]
async fn every_chat_parameter_error_names_its_parameter() {
    let f = plain();
    for (extra, param) in [
        (json!({"model": ""}), "model"),
        (json!({"messages": []}), "messages"),
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"n": 0}), "n"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"logit_bias": {"abc": 1}}), "logit_bias"),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (
            json!({"stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (json!({"model": "m".repeat(300)}), "model"),
        (json!({"model": "a\u{0}b"}), "model"),
    ] {
        let got = post(&f, "/v1/chat/completions", chat(extra.clone())).await;
        assert_error(&got, 400, "invalid_request_error", Some(param));
    }
}

#[tokio::test]
async fn other_endpoints_validate_at_the_edge() {
    let f = plain();
    for (path, body, param) in [
        (
            "/v1/completions",
            json!({"model": "m", "prompt": []}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": "m", "prompt": "x", "suffix": "y"}),
            "suffix",
        ),
        (
            "/v1/embeddings",
            json!({"model": "m", "input": []}),
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"model": "m", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (
            "/v1/classify",
            json!({"model": "m", "input": "x", "labels": ["a"]}),
            "labels",
        ),
        (
            "/v1/classify",
            json!({"model": "m", "input": "x", "labels": ["a", "b"], "prompt": "no placeholder"}),
            "prompt",
        ),
        (
            "/v1/extract",
            json!({"model": "m", "input": "x", "schema": 5}),
            "schema",
        ),
        (
            "/v1/summarize",
            json!({"model": "m", "input": "x", "style": "haiku"}),
            "style",
        ),
    ] {
        let got = post(&f, path, body.clone()).await;
        assert_error(&got, 400, "invalid_request_error", Some(param));
    }
}

#[tokio::test]
async fn an_unknown_model_is_a_404_that_says_how_to_install_it() {
    let f = plain();
    let (s, v) = post(&f, "/v1/chat/completions", chat(json!({"model": "nope:1"}))).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["param"], "model");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bantam pull nope:1"),
        "{v}"
    );
    let (s, v) = post(
        &f,
        "/v1/embeddings",
        json!({"model": "nope:1", "input": "x"}),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
}

/// Whole bodies, as clients see them (snapshots: a change here is a change of the
/// API's error contract).
#[tokio::test]
async fn error_bodies_snapshot() {
    let f = plain();
    let (_, v, _) = send(&f, "GET", "/v1/nothing", "").await;
    assert_eq!(
        v,
        json!({"error": {"message": "unknown endpoint; Bantam serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/classify, /v1/extract, /v1/summarize, /v1/models, /v1/usage and /health, described by GET /openapi.json", "type": "invalid_request_error", "param": null, "code": "unknown_url"}})
    );
    let (_, v) = post(
        &f,
        "/v1/chat/completions",
        chat(json!({"temperature": 2.5})),
    )
    .await;
    assert_eq!(
        v,
        json!({"error": {"message": "temperature must be between 0 and 2, got 2.5", "type": "invalid_request_error", "param": "temperature", "code": null}})
    );
    let (_, v) = post(&f, "/v1/chat/completions", chat(json!({"model": "nope:1"}))).await;
    assert_eq!(
        v,
        json!({"error": {"message": "the model `nope:1` does not exist; GET /v1/models lists the available models, `bantam pull nope:1` installs it", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
    );
    let (_, v, _) = send(
        &f,
        "POST",
        "/v1/embeddings",
        r#"{"model": "m", "input": [[1, -2]]}"#,
    )
    .await;
    assert_eq!(
        v,
        json!({"error": {"message": "input 0: -2 is not a token id", "type": "invalid_request_error", "param": "input", "code": null}})
    );
}

#[tokio::test]
async fn unknown_paths_and_large_bodies() {
    let f = fixture(ServerConfig {
        max_body_bytes: 1000,
        ..ServerConfig::default()
    });
    let (s, v, _) = send(&f, "GET", "/v1/nothing", "").await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "unknown_url");
    let big = chat(json!({"messages": [{"role": "user", "content": "x".repeat(5000)}]}));
    let (s, v) = post(&f, "/v1/chat/completions", big).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_503_naming_the_backend() {
    // Port 9 (discard) on loopback: nothing listens there.
    let cfg = bantam_server::ServeSettings::from_toml(
        r#"
        [[backends]]
        name = "far"
        type = "openai"
        model = "big"
        base_url = "http://127.0.0.1:9/v1"
        retries = 0
        connect_timeout_secs = 2
        "#,
        std::path::Path::new("t.toml"),
    )
    .unwrap()
    .resolve();
    let f = fixture(cfg);
    let (s, v, h) = send(
        &f,
        "POST",
        "/v1/chat/completions",
        &chat(json!({"model": "far"})).to_string(),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "backend_unavailable");
    assert_eq!(v["error"]["type"], "server_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("backend far cannot answer: connect"),
        "{v}"
    );
    assert_eq!(h["x-bantam-backend"], "far");
    assert_eq!(h["retry-after"], "1");
    // The request is in the ledger as failed.
    let (s, v, _) = send(&f, "GET", "/v1/usage?group_by=backend", "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"][0]["errors"], 1, "{v}");
}

#[tokio::test]
async fn usage_parameters_and_draining() {
    let f = plain();
    let (s, v, _) = send(&f, "GET", "/v1/usage?sinse=2026-01-01", "").await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "sinse");
    let (s, v, _) = send(&f, "GET", "/v1/usage?until=2025-13-45", "").await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("YYYY-MM-DD"),
        "{v}"
    );
    f.state.drain.start();
    let (s, v, h) = send(
        &f,
        "POST",
        "/v1/chat/completions",
        &chat(json!({})).to_string(),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(h["retry-after"], "1");
    assert_eq!(v["error"]["type"], "server_error");
}

#[tokio::test]
async fn wrong_methods_paths_and_precision() {
    let f = plain();
    let (s, v, _) = send(&f, "GET", "/v1/chat/completions", "").await;
    assert_eq!(s, 405, "{v}");
    assert_eq!(v["error"]["code"], "method_not_allowed");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("POST"),
        "{v}"
    );
    // OpenAI's range is 0-2: a value just above is not rounded into it.
    let got = post(
        &f,
        "/v1/chat/completions",
        chat(json!({"temperature": 2.0000001})),
    )
    .await;
    assert_error(&got, 400, "invalid_request_error", Some("temperature"));
    // An HTTP client names models of the store, never files of the server.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    let (s, v) = post(
        &f,
        "/v1/chat/completions",
        chat(json!({"model": file.to_str().unwrap()})),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(
        !v["error"]["message"].as_str().unwrap().contains("GGUF"),
        "{v}"
    );
}

#[tokio::test]
async fn models_and_health_without_models() {
    let f = plain();
    let (s, v, _) = send(&f, "GET", "/v1/models", "").await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"object": "list", "data": []}));
    let (s, v, _) = send(&f, "GET", "/v1/models/nope:1", "").await;
    assert_eq!(s, 404, "{v}");
    let (s, v, _) = send(&f, "GET", "/health", "").await;
    assert_eq!(s, 200);
    assert_eq!(v["inflight"], 0);
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_what_is_served() {
    let f = plain();
    let (s, doc, _) = send(&f, "GET", "/openapi.json", "").await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 11, "{:?}", paths.keys());
    for (path, ops) in paths {
        let concrete = path.replace("{id}", "x");
        for (method, op) in ops.as_object().unwrap() {
            let m = method.to_uppercase();
            let body = if m == "POST" { "{}" } else { "" };
            let (s, v, _) = send(&f, &m, &concrete, body).await;
            assert!(
                s != 405 && v["error"]["code"] != "unknown_url",
                "{m} {path}: {s} {v}"
            );
            // Whatever the answer, it is one the document lists.
            assert!(
                op["responses"][s.as_str()].is_object(),
                "{m} {path} answered {s}, not in the document"
            );
        }
        // A method the document does not list is a 405.
        let (s, _, _) = send(&f, "DELETE", &concrete, "").await;
        assert_eq!(s, 405, "DELETE {path}");
    }
}
