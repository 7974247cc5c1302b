//! The bad-input corpus that once crashed, stalled or misanswered the server
//! (issue 15), as a regression test: the server runs under a 6 GB address-space
//! cap (`prlimit`, where available) so that a runaway case fails the test instead
//! of the machine; every case must get a client error (or an answer), never a 5xx,
//! and the server must still answer `/health` after each.

mod common;

use common::{Server, MODEL};
use serde_json::{json, Value};

fn chat_rf(rf: Value, max_tokens: u32) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
           "max_tokens": max_tokens, "temperature": 0, "response_format": rf})
}

fn schema(s: Value) -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "s", "schema": s}})
}

fn grammar(g: String) -> Value {
    json!({"type": "grammar", "grammar": g})
}

#[test]
fn hostile_constraints_get_client_errors_and_the_server_keeps_serving() {
    // `prlimit --as` caps the server's address space: a case that allocates without
    // bound is killed, failing this test, instead of swapping the machine.
    let capped = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let s = if capped {
        Server::start_wrapped(&["prlimit", "--as=6000000000", "--"], &[])
    } else {
        Server::start(&[])
    };
    let chain = format!(
        "start: r0\n{}r700: \"a\"\n",
        (0..700)
            .map(|i| format!("r{i}: r{}\n", i + 1))
            .collect::<String>()
    );
    let props: serde_json::Map<String, Value> = (0..7500)
        .map(|i| (format!("p{i}"), json!({"type": "integer"})))
        .collect();
    let names: Vec<String> = props.keys().cloned().collect();
    let optional: serde_json::Map<String, Value> = (0..600)
        .map(|i| (format!("p{i}"), json!({"type": "integer"})))
        .collect();
    let wide = format!(
        "start: {}\n",
        (0..50_001)
            .map(|i| format!("\"w{i}\""))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let tool = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]);
    // (name, path, body, acceptable statuses)
    let cases: Vec<(&str, &str, Value, &[u16])> = vec![
        (
            "a chain of 700 Lark rules",
            "/v1/chat/completions",
            chat_rf(grammar(chain), 8),
            &[200, 422],
        ),
        (
            "7500 required properties",
            "/v1/chat/completions",
            chat_rf(
                schema(json!({"type": "object", "properties": props, "required": names})),
                8,
            ),
            &[200, 422],
        ),
        (
            "a self-reference through anyOf",
            "/v1/chat/completions",
            chat_rf(
                schema(
                    json!({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"}),
                ),
                8,
            ),
            &[400],
        ),
        (
            "\"a\"{1000000}",
            "/v1/chat/completions",
            chat_rf(grammar("start: \"a\"{1000000}\n".into()), 8),
            &[200, 422],
        ),
        (
            "$ref to the root",
            "/v1/chat/completions",
            chat_rf(schema(json!({"$ref": "#"})), 8),
            &[400],
        ),
        (
            "mutual $defs",
            "/v1/chat/completions",
            chat_rf(
                schema(
                    json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
                ),
                8,
            ),
            &[400],
        ),
        (
            "allOf self-reference",
            "/v1/chat/completions",
            chat_rf(schema(json!({"allOf": [{"$ref": "#"}]})), 8),
            &[400],
        ),
        (
            "start: start",
            "/v1/chat/completions",
            chat_rf(grammar("start: start\n".into()), 8),
            &[400],
        ),
        (
            "x: y; y: x",
            "/v1/chat/completions",
            chat_rf(grammar("start: x\nx: y\ny: x\n".into()), 8),
            &[400],
        ),
        (
            "an alternation of 50001",
            "/v1/chat/completions",
            chat_rf(grammar(wide), 8),
            &[400],
        ),
        (
            "600 optional properties",
            "/v1/chat/completions",
            chat_rf(
                schema(json!({"type": "object", "properties": optional})),
                40,
            ),
            &[200, 400, 422],
        ),
        (
            "a label with no tokens",
            "/v1/classify",
            json!({"model": MODEL, "input": "x", "labels": ["\u{4}", "b"]}),
            &[400],
        ),
        (
            "auto tools with a forced byte token",
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0,
                   "tools": tool, "tool_choice": "auto", "logit_bias": {"156": 100}}),
            &[200],
        ),
        (
            "temperature just above 2",
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 2.0000001}),
            &[400],
        ),
        (
            "a tool whose parameters have 7500 properties",
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": props.clone(), "required": names.clone()}}}],
                   "tool_choice": "required"}),
            &[200, 400, 422],
        ),
        (
            "extraction with 7500 properties",
            "/v1/extract",
            json!({"model": MODEL, "input": "x", "max_tokens": 8,
                   "schema": {"type": "object", "properties": props.clone(), "required": names.clone()}}),
            &[200, 400, 422],
        ),
        (
            "100000 messages",
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": vec![json!({"role": "user", "content": "hi"}); 100_000]}),
            &[400],
        ),
        (
            "a 2 MB completion prompt",
            "/v1/completions",
            json!({"model": MODEL, "prompt": "word ".repeat(400_000), "max_tokens": 4}),
            &[400],
        ),
        (
            "a 1 MB model name",
            "/v1/chat/completions",
            json!({"model": "m".repeat(1 << 20), "messages": [{"role": "user", "content": "hi"}]}),
            &[400],
        ),
        (
            "classification with an embedding model",
            "/v1/classify",
            json!({"model": "all-minilm:l6-v2", "input": "x", "labels": ["a", "b"]}),
            &[400],
        ),
        (
            "chat with an embedding model",
            "/v1/chat/completions",
            json!({"model": "all-minilm:l6-v2", "messages": [{"role": "user", "content": "hi"}]}),
            &[400],
        ),
        (
            "a summary longer than the context",
            "/v1/summarize",
            json!({"model": MODEL, "input": "A short text.", "max_tokens": 4096}),
            &[400],
        ),
        (
            "a file path as the model",
            "/v1/chat/completions",
            json!({"model": "/etc/hostname.gguf", "messages": [{"role": "user", "content": "hi"}]}),
            &[404],
        ),
    ];
    for (name, path, body, ok) in cases {
        let (st, v) = s.post(path, &body);
        assert!(ok.contains(&st), "{name}: {st} {v}");
        if st >= 400 {
            let m = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !m.is_empty() && !m.contains("<state>") && m.len() < 1000,
                "{name}: {m}"
            );
        }
        let (h, _) = s.get("/health");
        assert_eq!(h, 200, "the server is down after {name}");
    }
}

#[test]
fn classification_has_a_queue_bound_with_retry_after() {
    let s = Server::start(&["--max-queue", "1"]);
    let texts: Vec<String> = (0..40)
        .map(|i| format!("message number {i} about a refund"))
        .collect();
    let body = json!({"model": MODEL, "input": texts, "labels": ["billing", "shipping", "other"]});
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (s.url("/v1/classify"), body.clone());
            std::thread::spawn(move || {
                let r = reqwest::blocking::Client::new()
                    .post(url)
                    .json(&body)
                    .send()
                    .unwrap();
                let retry = r.headers().get("retry-after").is_some();
                (r.status().as_u16(), retry)
            })
        })
        .collect();
    let got: Vec<(u16, bool)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(
        got.iter().all(|(st, _)| *st == 200 || *st == 429),
        "{got:?}"
    );
    assert!(got.iter().any(|(st, _)| *st == 200), "{got:?}");
    assert!(
        got.iter().any(|(st, _)| *st == 429),
        "one waits, the rest are told to retry: {got:?}"
    );
    assert!(
        got.iter()
            .filter(|(st, _)| *st == 429)
            .all(|(_, retry)| *retry),
        "{got:?}"
    );
}

#[test]
fn summaries_have_a_configurable_input_bound() {
    let s = Server::start(&["--max-summarize-chars", "1000"]);
    let (st, v) = s.post(
        "/v1/summarize",
        &json!({"model": MODEL, "input": "A sentence about nothing. ".repeat(80)}),
    );
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("input")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1000"),
        "{v}"
    );
}
