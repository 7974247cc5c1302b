//! Structured output and tool calls on the real models: the official `openai`
//! package drives the server, and every output is validated by the test itself.

mod common;

use common::{python, Server};
use serde_json::json;

const MODEL: &str = "smollm2:135m";
/// A model trained for tool calls (its chat template renders tools).
const TOOL_MODEL: &str = "qwen2.5-coder:0.5b";

#[test]
fn openai_client_structured_output_and_tool_calls() {
    let s = Server::start(&["--parallel", "2"]);
    let (ok, log) = python(
        "test_structured.py",
        &[],
        &[
            ("BANTAM_BASE_URL", format!("{}/v1", s.base)),
            ("BANTAM_MODEL", MODEL.into()),
            ("BANTAM_TOOL_MODEL", TOOL_MODEL.into()),
        ],
    );
    assert!(ok && log.contains("OK"), "{log}");
}

/// 40 varied schemas (tests/fixtures/schemas.json) on the catalog models in CI:
/// no invalid output is ever returned. SmolLM2-135M, decoding greedily, loops inside
/// a few unbounded strings (an email, a pattern); the server refuses those with 422
/// rather than returning them — 3 or 4 of 40 as measured (which ones depends on the
/// batch and cache state), at most 5 allowed here.
#[test]
fn schema_corpus_outputs_are_all_valid() {
    let s = Server::start(&["--parallel", "2"]);
    for (model, max_incomplete) in [(MODEL, "5"), (TOOL_MODEL, "0")] {
        let (ok, log) = python(
            "test_schemas.py",
            &[
                "--max-incomplete",
                max_incomplete,
                &format!("{}/v1", s.base),
                model,
            ],
            &[],
        );
        assert!(ok, "{log}");
        assert!(log.contains("0 failed"), "{log}");
    }
}

#[test]
fn truncated_structured_output_is_an_error_never_a_success() {
    let s = Server::start(&[]);
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "A person, as JSON."}],
        "max_tokens": 4,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"]}}}
    });
    let (status, v) = s.post("/v1/chat/completions", &body);
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "structured_output_incomplete", "{v}");
    // Streaming: the text so far was sent, then an error instead of a finish.
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let chunks = s.stream("/v1/chat/completions", &sb);
    assert!(
        chunks
            .iter()
            .any(|c| c["error"]["code"] == "structured_output_incomplete"),
        "{chunks:?}"
    );
    assert!(!chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    // Malformed constraints, and what nothing can check, are rejected before
    // generation (keywords the grammar cannot enforce, such as `contains`, are
    // validated on the output instead: `compat.rs`).
    for (rf, needle) in [
        (json!({"type": "regex", "regex": "(unclosed"}), "regex"),
        (json!({"type": "grammar", "grammar": "start: ("}), "grammar"),
        (
            json!({"type": "json_schema", "json_schema": {"schema": {"type": "string", "format": "zipcode"}}}),
            "zipcode",
        ),
    ] {
        let mut b = body.clone();
        b["response_format"] = rf.clone();
        let (status, v) = s.post("/v1/chat/completions", &b);
        assert_eq!(status, 400, "{rf} → {v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{rf} → {msg}");
    }
    // The server is still fine.
    assert!(!s.chat_text("Hi", 3).is_empty());
}

#[test]
fn lark_grammar_extension() {
    let s = Server::start(&[]);
    let grammar = "start: \"Order \" NUM \" is \" STATUS\nNUM: /[0-9]{3,5}/\nSTATUS: \"shipped\" | \"pending\" | \"lost\"\n";
    let (status, v) = s.post(
        "/v1/chat/completions",
        &json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": "Where is order 1234?"}],
            "temperature": 0,
            "max_tokens": 20,
            "response_format": {"type": "grammar", "grammar": grammar}
        }),
    );
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let re = regex_lite(text);
    assert!(re, "{text}");
}

/// `Order <3-5 digits> is shipped|pending|lost`, without a regex dependency.
fn regex_lite(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("Order ") else {
        return false;
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = &rest[digits.len()..];
    (3..=5).contains(&digits.len())
        && ["shipped", "pending", "lost"]
            .iter()
            .any(|s| tail == format!(" is {s}"))
}
