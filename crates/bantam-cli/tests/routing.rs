//! Hybrid routing end to end: a real second `bantam serve` is the "large" upstream
//! (Qwen2.5-Coder 0.5B); the server under test routes between it and the local
//! SmolLM2, falls back when the upstream dies, and records every request durably.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{read_sse, Server};
use serde_json::{json, Value};

const LARGE: &str = "qwen2.5-coder:0.5b";

fn need_large() {
    let store = bantam_store::Store::open(common::model_home()).unwrap();
    if store.get(LARGE).is_err() {
        panic!("these tests need {LARGE}: run `bantam pull {LARGE}` (CI does)");
    }
}

/// A config with the route `auto`: prompts mentioning a contract go to `large`.
fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("routing.toml");
    let text = format!(
        r#"
[[backends]]
name = "small"
type = "local"
model = "smollm2:135m"

[[backends]]
name = "large"
type = "openai"
model = "{LARGE}"
base_url_env = "UPSTREAM_BASE_URL"
retries = 1
backoff_ms = 50
timeout_secs = 120
connect_timeout_secs = 2
price = {{ input_per_1m = 0.15, output_per_1m = 0.6 }}
breaker = {{ failures = 2, cooldown_secs = 600 }}

[[routes]]
name = "auto"
backends = ["small", "large"]
[[routes.rules]]
backend = "large"
reason = "hard-topic"
keywords = ["contract"]

[usage]
path = "{}"
"#,
        dir.join("usage.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn ask(text: &str, max_tokens: u32) -> Value {
    json!({"model": "auto", "temperature": 0, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": text}]})
}

/// POST; status, headers we care about, body.
fn post(s: &Server, body: &Value) -> (u16, [String; 3], Value) {
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .json(body)
        .send()
        .expect("request");
    let h = |k: &str| {
        r.headers()
            .get(k)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let hs = [
        h("x-bantam-backend"),
        h("x-bantam-route-reason"),
        h("x-bantam-cost-usd"),
    ];
    (r.status().as_u16(), hs, r.json().unwrap_or(Value::Null))
}

fn start_pair(dir: &std::path::Path) -> (Server, Server) {
    need_large();
    let upstream = Server::start(&["--parallel", "4", "--preload", LARGE]);
    let cfg = config(dir);
    let url = format!("{}/v1", upstream.base);
    let main = Server::start_env(
        &["--config", cfg.to_str().unwrap(), "--parallel", "4"],
        &[("UPSTREAM_BASE_URL", url.as_str())],
    );
    (upstream, main)
}

#[test]
fn routes_escalate_by_rule_pass_through_the_upstream_and_account_costs() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, main) = start_pair(dir.path());

    let (st, h, v) = post(&main, &ask("Say hello.", 8));
    assert_eq!(st, 200, "{v}");
    assert_eq!(h[0], "small");
    assert_eq!(h[1], "default");
    assert_eq!(h[2].parse::<f64>().unwrap(), 0.0);
    assert_eq!(v["model"], "smollm2:135m");

    let q = "What is a contract? Answer in one sentence.";
    let (st, h, v) = post(&main, &ask(q, 16));
    assert_eq!(st, 200, "{v}");
    assert_eq!(h[0], "large");
    assert_eq!(h[1], "rule:hard-topic");
    let u = &v["usage"];
    let want = u["prompt_tokens"].as_f64().unwrap() * 0.15e-6
        + u["completion_tokens"].as_f64().unwrap() * 0.6e-6;
    assert!(
        (h[2].parse::<f64>().unwrap() - want).abs() < 1e-9,
        "{h:?} {want}"
    );
    // The upstream's own answer, unchanged (greedy, so the same as asking it directly).
    let mut direct = ask(q, 16);
    direct["model"] = json!(LARGE);
    let (st2, d) = upstream.post("/v1/chat/completions", &direct);
    assert_eq!(st2, 200);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        d["choices"][0]["message"]["content"]
    );

    // Streaming through the route; the usage chunk stays hidden unless asked for.
    let mut sb = ask("Explain this contract term briefly.", 12);
    sb["stream"] = json!(true);
    let chunks = main.stream("/v1/chat/completions", &sb);
    assert_eq!(chunks.last().unwrap(), "[DONE]");
    assert!(chunks
        .iter()
        .all(|c| c.get("usage").is_none_or(Value::is_null)));
    assert!(!common::chunks_text(&chunks).is_empty());

    // Bad input is the client's error whichever backend would answer.
    let (st, _, v) = post(&main, &json!({"model": "auto", "messages": "nope"}));
    assert_eq!(st, 400, "{v}");
    let mut bad = ask("contract", 8);
    bad["temperature"] = json!(7);
    let (st, h, v) = post(&main, &bad);
    // Validated once, at the edge: no backend is tried (and none is in the ledger).
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "temperature", "{v}");
    assert!(h[0].is_empty(), "{h:?}");

    // The official client: models list, headers, streaming with usage and cost.
    let (ok, log) = common::python(
        "test_routing.py",
        &[],
        &[("BANTAM_BASE_URL", format!("{}/v1", main.base))],
    );
    assert!(ok && log.contains("OK"), "{log}");

    // The ledger: three answered here and the client's three (the malformed and the
    // out-of-range bodies never reached a backend).
    let (st, rep) = main.get("/v1/usage?group_by=backend");
    assert_eq!(st, 200, "{rep}");
    let rows = rep["data"].as_array().unwrap();
    let row = |b: &str| rows.iter().find(|r| r["backend"] == b).unwrap().clone();
    assert_eq!(row("small")["requests"], 2, "{rep}");
    assert_eq!(
        row("large")["requests"].as_u64().unwrap() - row("large")["errors"].as_u64().unwrap(),
        4,
        "{rep}"
    );
    assert_eq!(rep["totals"]["errors"], 0, "{rep}");
    let t = &rep["totals"];
    assert!(t["cost_usd"].as_f64().unwrap() > 0.0);
    // Requests kept local are priced as if they had gone to `large`: savings.
    assert!(t["savings_usd"].as_f64().unwrap() > 0.0, "{rep}");
    assert!(
        (t["local_share"].as_f64().unwrap() - 2.0 / 6.0).abs() < 1e-9,
        "{rep}"
    );
    let (st, v) = main.get("/v1/usage?group_by=week");
    assert_eq!(st, 400, "{v}");
}

#[test]
fn upstream_killed_mid_run_every_request_still_gets_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut upstream, main) = start_pair(dir.path());
    let main = Arc::new(main);
    let n = 10;
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..n)
        .map(|i| {
            let main = main.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let r = post(
                    &main,
                    &ask(&format!("Contract question {i}: what is a clause?"), 24),
                );
                done.fetch_add(1, Ordering::SeqCst);
                r
            })
        })
        .collect();
    // Kill the upstream once it has answered something, with the rest in flight.
    while done.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    upstream.child.kill().unwrap();
    upstream.child.wait().unwrap();
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let mut by = std::collections::HashMap::<String, usize>::new();
    for (st, h, v) in &results {
        assert_eq!(*st, 200, "every request gets an answer: {h:?} {v}");
        assert!(v["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty()));
        *by.entry(h[0].clone()).or_default() += 1;
        if h[0] == "small" {
            assert!(
                h[1].starts_with("rule:hard-topic; fallback after large"),
                "{h:?}"
            );
        }
    }
    assert!(by.get("small").copied().unwrap_or(0) > 0, "{by:?}");
    assert!(by.get("large").copied().unwrap_or(0) > 0, "{by:?}");

    // Streams too; by now the circuit is open and the upstream is not even tried.
    let mut sb = ask("One more contract question.", 8);
    sb["stream"] = json!(true);
    let r = main
        .http
        .post(main.url("/v1/chat/completions"))
        .json(&sb)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let reason = r.headers()["x-bantam-route-reason"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("large circuit open"), "{reason}");
    let chunks = read_sse(r);
    assert!(!common::chunks_text(&chunks).is_empty());

    // Durable: a restarted server reports the same ledger; so does `bantam usage`.
    let (_, before) = main.get("/v1/usage?group_by=backend,route");
    assert_eq!(before["totals"]["requests"], n as u64 + 1, "{before}");
    assert_eq!(before["totals"]["errors"], 0, "{before}");
    drop(Arc::into_inner(main).unwrap());
    let cfg = dir.path().join("routing.toml");
    let again = Server::start_env(
        &["--config", cfg.to_str().unwrap()],
        &[("UPSTREAM_BASE_URL", "http://127.0.0.1:9/v1")],
    );
    let (_, after) = again.get("/v1/usage?group_by=backend,route");
    assert_eq!(before, after);
    let out = common::bantam()
        .args([
            "usage",
            "--config",
            cfg.to_str().unwrap(),
            "--by",
            "backend",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("small") && text.contains("large") && text.contains("total"),
        "{text}"
    );
}

#[test]
fn learned_router_trained_by_the_cli_and_cascade_route_in_a_server() {
    need_large();
    let store = bantam_store::Store::open(common::model_home()).unwrap();
    if store.get("all-minilm:l6-v2").is_err() {
        panic!("this test needs all-minilm:l6-v2: run `bantam pull all-minilm:l6-v2` (CI does)");
    }
    let dir = tempfile::tempdir().unwrap();
    // Everyday banking questions stay local; legal questions escalate.
    let local = [
        "what is my account balance",
        "how do i reset my card pin",
        "when does my card arrive",
        "i want to top up my account",
        "how do i change my address",
        "my transfer has not arrived yet",
        "can i get a new debit card",
        "what are your opening hours",
        "how do i activate my card",
        "show me my last transactions",
    ];
    let escalate = [
        "is this non-compete clause enforceable in court",
        "can my landlord terminate the lease without notice",
        "what are my rights under the employment contract",
        "draft an indemnification clause for a supplier agreement",
        "does the gdpr apply to our subsidiary abroad",
        "how do i contest a breach of contract claim",
        "explain the liability limits in this agreement",
        "is a verbal contract legally binding",
        "what statute of limitations applies to fraud",
        "review the arbitration clause in my contract",
    ];
    let data = dir.path().join("train.jsonl");
    let mut lines = String::new();
    for p in local {
        lines.push_str(&json!({"prompt": p, "label": "local"}).to_string());
        lines.push('\n');
    }
    for p in escalate {
        lines.push_str(&json!({"prompt": p, "label": "escalate"}).to_string());
        lines.push('\n');
    }
    std::fs::write(&data, lines).unwrap();
    // Three routers on the same data: the default featuriser (all-MiniLM distilled
    // into static token vectors), the encoder itself, the built-in hashed n-grams.
    let train = |embedder: Option<&str>, out: &std::path::Path| -> (String, Value) {
        let mut c = common::bantam();
        c.args([
            "router",
            "train",
            data.to_str().unwrap(),
            "--escalate",
            "50%",
        ])
        .args(["--out", out.to_str().unwrap()]);
        if let Some(e) = embedder {
            c.args(["--embedder", e]);
        }
        let o = c.output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(text.contains("← chosen"), "{text}");
        let m: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
        assert_eq!(m["trained"]["examples"], 20);
        (text, m)
    };
    let router = dir.path().join("router.json");
    let (_, m) = train(None, &router);
    assert_eq!(
        (m["embedding_model"].as_str(), m["dim"].as_u64()),
        (Some("static:all-minilm:l6-v2"), Some(384))
    );
    let table = store.derived_path(&store.get("all-minilm:l6-v2").unwrap(), "static-v1");
    assert!(table.is_file(), "the distilled table is kept in the store");
    let encoder = dir.path().join("encoder.json");
    let (_, m) = train(Some("all-minilm:l6-v2"), &encoder);
    assert_eq!(
        (m["embedding_model"].as_str(), m["dim"].as_u64()),
        (Some("all-minilm:l6-v2"), Some(384))
    );
    let fast = dir.path().join("fast.json");
    let (_, m) = train(Some("hashed-ngrams"), &fast);
    assert_eq!(
        (m["embedding_model"].as_str(), m["dim"].as_u64()),
        (Some("hashed-ngrams"), Some(4096))
    );
    // A missing embedding model is a clear error that says what to do.
    let o = common::bantam()
        .args([
            "router",
            "train",
            data.to_str().unwrap(),
            "--embedder",
            "static:no-such:model",
        ])
        .args(["--out", dir.path().join("x.json").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("bantam pull no-such:model"),
        "{err}"
    );

    let cfg = dir.path().join("cfg.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[backends]]
name = "small"
type = "local"
model = "smollm2:135m"
[[backends]]
name = "large"
type = "local"
model = "{LARGE}"

[[routes]]
name = "smart"
policy = "learned"
backends = ["small", "large"]
learned = {{ model = "{}", local = "small", escalate = "large" }}

[[routes]]
name = "fast"
policy = "learned"
backends = ["small", "large"]
learned = {{ model = "{}", local = "small", escalate = "large" }}

[[routes]]
name = "encoder"
policy = "learned"
backends = ["small", "large"]
learned = {{ model = "{}", local = "small", escalate = "large" }}

[[routes]]
name = "careful"
policy = "cascade"
backends = ["small", "large"]
cascade = {{ local = "small", escalate = "large", min_mean_logprob = -0.7 }}

[usage]
path = "{}"
"#,
            router.display(),
            fast.display(),
            encoder.display(),
            dir.path().join("usage.db").display()
        ),
    )
    .unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap(), "--parallel", "2"]);
    let call = |model: &str, q: &str| {
        let mut b = ask(q, 12);
        b["model"] = json!(model);
        post(&s, &b)
    };
    let (st, h, v) = call(
        "smart",
        "can my employer enforce this non-compete contract clause",
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(h[0], "large", "{h:?}");
    assert!(h[1].starts_with("learned:"), "{h:?}");
    let (st, h, _) = call("smart", "how do i top up my card");
    assert_eq!(st, 200);
    assert_eq!(h[0], "small", "{h:?}");
    assert!(h[1].starts_with("learned:"), "{h:?}");
    for route in ["fast", "encoder"] {
        for (q, want) in [
            (
                "is the arbitration clause in this contract enforceable",
                "large",
            ),
            ("how do i top up my card", "small"),
        ] {
            let (st, h, _) = call(route, q);
            assert_eq!(st, 200);
            assert_eq!(h[0], want, "{route}: {q}: {h:?}");
            assert!(h[1].starts_with("learned:"), "{h:?}");
        }
    }

    // Cascade: the answer's confidence decides, and the reason says which way.
    for q in [
        "Say hello.",
        "Name the capital city of Burkina Faso and its population in 1950.",
    ] {
        let (st, h, v) = call("careful", q);
        assert_eq!(st, 200, "{v}");
        assert!(v["choices"][0]["logprobs"].is_null(), "not asked for: {v}");
        if h[1].starts_with("cascade:kept") {
            assert_eq!(h[0], "small", "{h:?}");
        } else {
            assert!(h[1].starts_with("cascade:escalated"), "{h:?}");
            assert_eq!(h[0], "large", "{h:?}");
        }
    }
}

/// POST to a task endpoint; status, the backend and reason headers, body.
fn post_task(s: &Server, path: &str, body: &Value) -> (u16, [String; 3], Value) {
    let r = s.http.post(s.url(path)).json(body).send().expect("request");
    let h = |k: &str| {
        r.headers()
            .get(k)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let hs = [
        h("x-bantam-backend"),
        h("x-bantam-route-reason"),
        h("x-bantam-cost-usd"),
    ];
    (r.status().as_u16(), hs, r.json().unwrap_or(Value::Null))
}

#[test]
fn task_endpoints_route_to_an_upstream_through_chat_or_natively() {
    need_large();
    let dir = tempfile::tempdir().unwrap();
    let upstream = Server::start(&["--parallel", "4", "--preload", LARGE]);
    let url = format!("{}/v1", upstream.base);
    let cfg = dir.path().join("tasks.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[backends]]
name = "small"
type = "local"
model = "smollm2:135m"
price = {{ per_second = 0.5 }}

[[backends]]
name = "large"
type = "openai"
model = "{LARGE}"
base_url_env = "UPSTREAM_BASE_URL"
price = {{ input_per_1m = 0.15, output_per_1m = 0.6 }}

[[backends]]
name = "large-native"
type = "openai"
model = "{LARGE}"
base_url_env = "UPSTREAM_BASE_URL"
tasks = "native"

[[routes]]
name = "tasks"
backends = ["small", "large", "large-native"]
[[routes.rules]]
backend = "large-native"
reason = "native"
keywords = ["refund"]
[[routes.rules]]
backend = "large"
endpoint = "extract"
[[routes.rules]]
backend = "large"
reason = "classify-upstream"
endpoint = "classify"
header = {{ name = "x-tier", value = "gold" }}

[[routes]]
name = "triage"
policy = "cascade"
backends = ["small", "large"]
cascade = {{ local = "small", escalate = "large", min_mean_logprob = -0.01 }}

[usage]
path = "{}"
"#,
            dir.path().join("usage.db").display()
        ),
    )
    .unwrap();
    let main = Server::start_env(
        &["--config", cfg.to_str().unwrap(), "--parallel", "2"],
        &[("UPSTREAM_BASE_URL", url.as_str())],
    );
    let labels = json!(["billing", "technical", "account"]);

    // Native: the upstream's own /v1/classify answers, exactly as asked directly.
    let c = json!({"model": "tasks", "input": "I want a refund for the double charge", "labels": labels});
    let (st, h, v) = post_task(&main, "/v1/classify", &c);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (h[0].as_str(), h[1].as_str()),
        ("large-native", "rule:native")
    );
    let mut direct = c.clone();
    direct["model"] = json!(LARGE);
    let (_, d) = upstream.post("/v1/classify", &direct);
    assert_eq!(v["data"], d["data"]);

    // Through chat completions: one label, generated under a `choice` constraint.
    let c = json!({"model": "tasks", "input": ["My wifi router keeps dropping", "Change my e-mail address"], "labels": labels});
    let r = main
        .http
        .post(main.url("/v1/classify"))
        .header("x-tier", "gold")
        .json(&c)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let cost: f64 = r.headers()["x-bantam-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(r.headers()["x-bantam-backend"], "large");
    let v: Value = r.json().unwrap();
    for d in v["data"].as_array().unwrap() {
        let l = d["label"].as_str().unwrap();
        assert!(labels.as_array().unwrap().contains(&json!(l)), "{v}");
        assert_eq!(d["exact"], false);
        let conf = d["confidence"].as_f64().unwrap();
        assert!(conf > 0.0 && conf <= 1.0, "{v}");
        assert_eq!(d["probabilities"].as_object().unwrap().len(), 1, "{v}");
    }
    let u = &v["usage"];
    let want = (u["prompt_tokens"].as_f64().unwrap() + u["cached_tokens"].as_f64().unwrap())
        * 0.15e-6
        + u["completion_tokens"].as_f64().unwrap() * 0.6e-6;
    assert!(
        want > 0.0 && (cost - want).abs() < 1e-9,
        "{cost} {want} {v}"
    );

    // Extraction by endpoint rule, through json_schema; spans are found here.
    let schema = json!({"type": "object", "properties": {"order": {"type": "integer"}, "city": {"type": "string"}},
                        "required": ["order", "city"], "additionalProperties": false});
    let e = json!({"model": "tasks", "input": "Order 4521 was shipped to Lisbon.", "schema": schema, "spans": true});
    let (st, h, v) = post_task(&main, "/v1/extract", &e);
    assert_eq!(st, 200, "{v}");
    assert_eq!(h[0], "large", "{h:?}");
    assert_eq!(v["data"]["order"], 4521, "{v}");
    assert_eq!(v["spans"]["/order"]["text"], "4521", "{v}");

    // Summaries stay local by default.
    let s = json!({"model": "tasks", "input": "The meeting moved to Friday. Ana will bring the budget. Bo is on leave.", "max_tokens": 40});
    let (st, h, v) = post_task(&main, "/v1/summarize", &s);
    assert_eq!(st, 200, "{v}");
    assert_eq!((h[0].as_str(), h[1].as_str()), ("small", "default"));
    assert!(!v["summary"].as_str().unwrap().is_empty());
    // Local compute is priced per second of engine time the answer reports.
    let per_second = |h: &[String; 3], v: &Value| {
        let ms = v["usage"]["compute_ms"].as_f64().unwrap();
        assert!(ms > 0.0, "{v}");
        let cost: f64 = h[2].parse().unwrap();
        assert!((cost - ms / 1e3 * 0.5).abs() < 1e-9, "{cost} for {ms} ms");
    };
    per_second(&h, &v);
    let chat = json!({"model": "tasks", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi."}]});
    let (st, h, v) = post_task(&main, "/v1/chat/completions", &chat);
    assert_eq!((st, h[0].as_str()), (200, "small"), "{v}");
    per_second(&h, &v);

    // Cascade on classification: the local model's label probability decides.
    let c = json!({"model": "triage", "input": "My card was charged twice", "labels": labels});
    let (st, h, v) = post_task(&main, "/v1/classify", &c);
    assert_eq!(st, 200, "{v}");
    if h[1].starts_with("cascade:kept") {
        assert_eq!(h[0], "small", "{h:?}");
        assert!(v["data"][0]["confidence"].as_f64().unwrap() > (-0.01f64).exp());
    } else {
        assert!(h[1].starts_with("cascade:escalated mean_logprob"), "{h:?}");
        assert_eq!(h[0], "large", "{h:?}");
    }

    // Bad requests are refused before any backend is asked.
    let bad = json!({"model": "tasks", "input": "x", "labels": ["only-one"]});
    let (st, h, v) = post_task(&main, "/v1/classify", &bad);
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "labels");
    assert!(h[0].is_empty());
    let (st, _, v) = post_task(
        &main,
        "/v1/summarize",
        &json!({"model": "tasks", "input": "x", "style": "haiku"}),
    );
    assert_eq!(st, 400, "{v}");

    // Every task request is in the ledger, by endpoint.
    let (st, rep) = main.get("/v1/usage?group_by=endpoint");
    assert_eq!(st, 200, "{rep}");
    let n = |e: &str| {
        rep["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["endpoint"] == e)
            .map_or(0, |r| r["requests"].as_u64().unwrap())
    };
    assert_eq!(
        (n("classify"), n("extract"), n("summarize")),
        (3, 1, 1),
        "{rep}"
    );
}
