//! OpenAI-compatibility details a peer test suite and new users hit, end to end
//! against the real models: `n` choices, token-id embeddings and over-long
//! embedding inputs, tool-call history with string arguments, and JSON Schema
//! keywords the grammar cannot enforce.

mod common;

use common::{read_sse, Server, MODEL};
use serde_json::{json, Value};

const TOOL_MODEL: &str = "qwen2.5-coder:0.5b";
const EMBED_MODEL: &str = "all-minilm:l6-v2";

fn needs(model: &str) {
    let store = bantam_store::Store::open(common::model_home()).unwrap();
    if store.get(model).is_err() {
        panic!("this test needs {model}: run `bash scripts/test.sh`, which installs it");
    }
}

fn content(v: &Value, i: usize) -> String {
    v["choices"][i]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn n_choices_are_seeded_seed_plus_index() {
    // One slot and no prefix cache: every choice is computed exactly as a request of
    // its own would be (batch composition and cached prefixes change the logits in
    // their last bits, which a sampled token at temperature 1 can notice).
    let s = Server::start(&["--parallel", "1", "--prefix-cache", "false"]);
    let body = |n: u32, seed: u64| {
        json!({"model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}],
               "temperature": 1.0, "seed": seed, "max_tokens": 12, "n": n})
    };
    let (st, v) = s.post("/v1/chat/completions", &body(3, 40));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 3, "{v}");
    for i in 0..3 {
        assert_eq!(v["choices"][i]["index"], i);
        // Choice i is the answer a single request with seed 40 + i gets.
        let (_, one) = s.post("/v1/chat/completions", &body(1, 40 + i as u64));
        assert_eq!(content(&v, i), content(&one, 0), "choice {i}");
    }
    // The prompt counts once.
    let (_, one) = s.post("/v1/chat/completions", &body(1, 40));
    assert_eq!(v["usage"]["prompt_tokens"], one["usage"]["prompt_tokens"]);

    // Streamed: every choice opens, gets its text and finishes; usage once at the end.
    let mut b = body(2, 7);
    b["stream"] = json!(true);
    b["stream_options"] = json!({"include_usage": true});
    let chunks = s.stream("/v1/chat/completions", &b);
    let mut text = [String::new(), String::new()];
    let mut finished = [false, false];
    for c in chunks.iter().filter(|c| c.is_object()) {
        for ch in c["choices"].as_array().unwrap() {
            let i = ch["index"].as_u64().unwrap() as usize;
            if let Some(t) = ch["delta"]["content"].as_str() {
                text[i].push_str(t);
            }
            if ch["finish_reason"].is_string() {
                finished[i] = true;
            }
        }
    }
    assert_eq!(finished, [true, true], "{chunks:?}");
    let usage: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
    assert_eq!(usage.len(), 1);
    let (_, c0) = s.post("/v1/chat/completions", &body(1, 7));
    let (_, c1) = s.post("/v1/chat/completions", &body(1, 8));
    assert_eq!(text, [content(&c0, 0), content(&c1, 0)]);

    // Completions: prompt p's choices are p * n .. p * n + n.
    let (st, v) = s.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": ["Once upon", "The sky"], "n": 2, "max_tokens": 4,
                "temperature": 0.9, "seed": 3}),
    );
    assert_eq!(st, 200, "{v}");
    let idx: Vec<u64> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [0, 1, 2, 3]);
    let (_, p1) = s.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "The sky", "max_tokens": 4, "temperature": 0.9, "seed": 4}),
    );
    assert_eq!(v["choices"][3]["text"], p1["choices"][0]["text"]);
    let (st, v) = s.post("/v1/chat/completions", &body(17, 1));
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("n")), "{v}");
}

#[test]
fn embeddings_take_token_ids_and_refuse_silent_truncation() {
    needs(EMBED_MODEL);
    let s = Server::start(&[]);
    let embed = |input: Value| {
        let (st, v) = s.post(
            "/v1/embeddings",
            &json!({"model": EMBED_MODEL, "input": input}),
        );
        assert_eq!(st, 200, "{v}");
        v
    };
    let vector = |v: &Value, i: usize| -> Vec<f64> {
        v["data"][i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let cos = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // "hello world" in the model's (BERT uncased) vocabulary; with and without the
    // [CLS]/[SEP] special tokens the model's tokeniser adds.
    let text = embed(json!("hello world"));
    let ids = embed(json!([7592, 2088]));
    let lists = embed(json!([[101, 7592, 2088, 102], [7592]]));
    assert!(cos(&vector(&text, 0), &vector(&ids, 0)) > 0.9999);
    assert!(cos(&vector(&text, 0), &vector(&lists, 0)) > 0.9999);
    assert_eq!(ids["usage"]["prompt_tokens"], 4);
    assert_eq!(lists["data"].as_array().unwrap().len(), 2);
    // Longer than the model's window: an error naming the limit, unless asked to cut.
    let long = "word ".repeat(700);
    let (st, v) = s.post(
        "/v1/embeddings",
        &json!({"model": EMBED_MODEL, "input": ["short", long]}),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "input");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("input 1") && m.contains("512") && m.contains("truncate"),
        "{m}"
    );
    let (st, v) = s.post(
        "/v1/embeddings",
        &json!({"model": EMBED_MODEL, "input": long, "truncate": true}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 512);
}

#[test]
fn tool_call_arguments_as_a_string_render_like_an_object() {
    needs(TOOL_MODEL);
    let s = Server::start(&[]);
    let prompt_tokens = |args: Value| {
        let body = json!({"model": TOOL_MODEL, "max_tokens": 1, "temperature": 0,
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 4}"}
        ]});
        let (st, v) = s.post("/v1/chat/completions", &body);
        assert_eq!(st, 200, "{v}");
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    };
    // OpenAI's clients send a JSON string; the template must see the object once,
    // not a JSON-encoded string (which costs extra escaping tokens).
    assert_eq!(
        prompt_tokens(json!("{\"city\": \"Oslo\"}")),
        prompt_tokens(json!({"city": "Oslo"}))
    );
}

#[test]
fn keywords_the_grammar_cannot_enforce_are_validated_instead_of_refused() {
    let s = Server::start(&[]);
    let schema = json!({"type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]},
                                "uniqueItems": true, "minItems": 1, "maxItems": 3}},
        "required": ["tags"], "additionalProperties": false});
    let (st, v) = s.post(
        "/v1/chat/completions",
        &json!({"model": MODEL, "temperature": 0, "max_tokens": 60,
            "messages": [{"role": "user", "content": "List the colours of a traffic light."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "t", "strict": true, "schema": schema}}}),
    );
    // Enforced where the grammar can, validated as a whole (duplicates are
    // generated again), never a 400 for a schema that can be checked.
    assert!(st == 200 || st == 500, "{st} {v}");
    if st == 200 {
        let out: Value = serde_json::from_str(&content(&v, 0)).unwrap();
        let tags: Vec<&str> = out["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let mut uniq = tags.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), tags.len(), "{tags:?}");
    } else {
        assert_eq!(v["error"]["code"], "structured_output_invalid", "{v}");
    }
    // A format nothing can check is a 400 naming it.
    let (st, v) = s.post(
        "/v1/chat/completions",
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "z",
                "schema": {"type": "object", "properties": {"z": {"type": "string", "format": "zipcode"}}}}}}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("zipcode"),
        "{v}"
    );
}

#[test]
fn streamed_errors_are_openai_shaped_events() {
    let s = Server::start(&[]);
    // A structured output that cannot finish within max_tokens ends the stream with
    // an error event (after the role chunk), then [DONE].
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .json(&json!({"model": MODEL, "stream": true, "max_tokens": 2, "temperature": 0,
            "messages": [{"role": "user", "content": "Describe a cat."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema":
                {"type": "object", "properties": {"description": {"type": "string", "minLength": 30}}, "required": ["description"]}}}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = read_sse(r);
    let last = &events[events.len() - 2];
    assert_eq!(
        last["error"]["code"], "structured_output_incomplete",
        "{events:?}"
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
}
