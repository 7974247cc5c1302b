//! End-to-end tests of `bantam serve` with the real SmolLM2-135M over HTTP.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{chat_body, chunks_text, Server, MODEL};
use serde_json::{json, Value};

#[test]
fn health_and_models() {
    let s = Server::start(&[]);
    let (st, h) = s.get("/health");
    assert_eq!(st, 200);
    assert_eq!(h["status"], "ok");
    let (st, m) = s.get("/v1/models");
    assert_eq!(st, 200);
    assert_eq!(m["object"], "list");
    let ids: Vec<&str> = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&MODEL), "{ids:?}");
    let (st, one) = s.get(&format!("/v1/models/{MODEL}"));
    assert_eq!(st, 200);
    assert_eq!(one["id"], MODEL);
    assert_eq!(s.get("/v1/models/nope:1").0, 404);
}

#[test]
fn chat_is_deterministic_and_reports_usage() {
    let s = Server::start(&[]);
    let body = chat_body("Name three colors.", 24);
    let t0 = std::time::Instant::now();
    let (st, a) = s.post("/v1/chat/completions", &body);
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(st, 200, "{a}");
    // Bantam's extension: the engine time spent on this answer.
    let compute = a["usage"]["compute_ms"].as_f64().unwrap();
    assert!(
        compute > 0.0 && compute < wall_ms,
        "{compute} ms of {wall_ms} ms"
    );
    let (_, b) = s.post("/v1/chat/completions", &body);
    let text = a["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.trim().is_empty());
    assert_eq!(
        text,
        b["choices"][0]["message"]["content"].as_str().unwrap(),
        "greedy output must repeat"
    );
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(a["choices"][0]["message"]["role"], "assistant");
    let u = &a["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 5);
    let completion = u["completion_tokens"].as_u64().unwrap();
    assert!((1..=24).contains(&completion));
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + completion
    );
    // The second identical request reuses the cached prompt prefix.
    assert!(
        b["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{b}"
    );
    let fr = a["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(fr == "stop" || fr == "length");
    if completion == 24 {
        assert_eq!(fr, "length");
    }
}

#[test]
fn max_tokens_stops_with_length() {
    let s = Server::start(&[]);
    let (st, v) = s.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[test]
fn stop_sequences_cut_output_before_the_match() {
    let s = Server::start(&[]);
    let body = json!({"model": MODEL, "prompt": "The days of the week are Monday, Tuesday,", "max_tokens": 30, "temperature": 0});
    let (_, full) = s.post("/v1/completions", &body);
    let full = full["choices"][0]["text"].as_str().unwrap().to_string();
    // Stop at a word that occurs after the start of the greedy output.
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(
        words.len() >= 3,
        "greedy output too short to test stops: {full:?}"
    );
    let stop = words[2].trim_matches(|c: char| !c.is_alphanumeric());
    assert!(!stop.is_empty(), "{full:?}");
    let cut = full.find(stop).unwrap();
    let mut with_stop = body.clone();
    with_stop["stop"] = json!([stop, "NEVER-APPEARS"]);
    let (st, v) = s.post("/v1/completions", &with_stop);
    assert_eq!(st, 200);
    assert_eq!(
        v["choices"][0]["text"].as_str().unwrap(),
        &full[..cut],
        "stop {stop:?} in {full:?}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // Streaming gives the same text and never leaks part of the stop string.
    with_stop["stream"] = json!(true);
    let chunks = s.stream("/v1/completions", &with_stop);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0).and_then(|ch| ch["text"].as_str()))
        .collect();
    assert_eq!(text, &full[..cut]);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let s = Server::start(&[]);
    let body = |seed: u64| json!({"model": MODEL, "messages": [{"role": "user", "content": "Tell me a short story about a fox."}], "temperature": 1.0, "top_p": 1.0, "seed": seed, "max_tokens": 40});
    let text = |v: Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = text(s.post("/v1/chat/completions", &body(1234)).1);
    let b = text(s.post("/v1/chat/completions", &body(1234)).1);
    assert_eq!(a, b, "same seed, same text");
    let others: Vec<String> = (1..=3)
        .map(|k| text(s.post("/v1/chat/completions", &body(1234 + k)).1))
        .collect();
    assert!(
        others.iter().any(|o| *o != a),
        "different seeds should sample differently"
    );
}

#[test]
fn streaming_chat_matches_non_streaming() {
    let s = Server::start(&[]);
    let mut body = chat_body("Write one sentence about rivers.", 32);
    let (_, plain) = s.post("/v1/chat/completions", &body);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = s.stream("/v1/chat/completions", &body);
    assert_eq!(chunks.last().unwrap(), "[DONE]");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        chunks_text(&chunks),
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|c| {
            c["choices"]
                .get(0)
                .is_some_and(|ch| !ch["finish_reason"].is_null())
        })
        .collect();
    assert_eq!(finish.len(), 1);
    let usage = &chunks[chunks.len() - 2]["usage"];
    assert_eq!(
        usage["completion_tokens"],
        plain["usage"]["completion_tokens"]
    );
}

#[test]
fn eight_concurrent_greedy_streams_equal_their_solo_outputs() {
    let s = Server::start(&["--parallel", "8"]);
    let prompts: Vec<String> = [
        "Describe the moon.",
        "List four fruits.",
        "What is a computer?",
        "Give me a tip for sleeping well.",
        "Why do birds sing?",
        "Explain rain to a child.",
        "What is the color of grass?",
        "Say something about music.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every stream runs its full 40 tokens, so they certainly overlap in time.
    let body = |p: &str| {
        let mut b = chat_body(p, 40);
        b["stream"] = json!(true);
        b["ignore_eos"] = json!(true);
        b
    };
    let solo: Vec<String> = prompts
        .iter()
        .map(|p| chunks_text(&s.stream("/v1/chat/completions", &body(p))))
        .collect();
    let start = Instant::now();
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let url = s.url("/v1/chat/completions");
            let b = body(p);
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let r = http.post(url).json(&b).send().unwrap();
                let mut first: Option<Duration> = None;
                let mut text = String::new();
                let mut last = Duration::ZERO;
                let mut reader = std::io::BufReader::new(r);
                let mut line = String::new();
                while std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0 {
                    if let Some(d) = line.trim_end().strip_prefix("data: ") {
                        if d == "[DONE]" {
                            break;
                        }
                        let v: Value = serde_json::from_str(d).unwrap();
                        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                            if !c.is_empty() {
                                first.get_or_insert(start.elapsed());
                                last = start.elapsed();
                            }
                            text.push_str(c);
                        }
                    }
                    line.clear();
                }
                (text, first.unwrap_or_default(), last)
            })
        })
        .collect();
    let results: Vec<(String, Duration, Duration)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, (text, _, _)) in results.iter().enumerate() {
        assert_eq!(text, &solo[i], "stream {i} differs from its solo output");
    }
    // They ran together: every stream produced its first token before any finished.
    let latest_first = results.iter().map(|r| r.1).max().unwrap();
    let earliest_last = results.iter().map(|r| r.2).min().unwrap();
    assert!(latest_first <= earliest_last, "streams did not overlap: first tokens up to {latest_first:?}, first finish at {earliest_last:?}");
}

fn wait_for_idle(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.inflight() > 0 {
        assert!(
            Instant::now() < deadline,
            "the disconnected request still holds its slot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn client_disconnect_frees_the_slot() {
    let s = Server::start(&["--parallel", "1"]);
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Count to one million."}], "max_tokens": 3000, "ignore_eos": true, "temperature": 0, "stream": true});
    let mut r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = r.read(&mut buf).unwrap();
    assert!(n > 0);
    assert_eq!(s.inflight(), 1);
    drop(r);
    // 3000 tokens would take many seconds; the slot must be free long before.
    wait_for_idle(&s);
    // Same for a non-streaming request whose client gives up.
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let mut nb = body.clone();
    nb["stream"] = json!(false);
    assert!(
        quick
            .post(s.url("/v1/chat/completions"))
            .json(&nb)
            .send()
            .is_err(),
        "expected a client timeout"
    );
    wait_for_idle(&s);
    assert!(!s.chat_text("Hello!", 8).is_empty());
}

#[test]
fn bad_requests_get_4xx_while_others_keep_working() {
    let s = Server::start(&["--parallel", "2", "--ctx-size", "256"]);
    // A long request runs throughout.
    let url = s.url("/v1/chat/completions");
    let long = std::thread::spawn(move || {
        let b = json!({"model": MODEL, "messages": [{"role": "user", "content": "Write a long essay."}], "max_tokens": 150, "ignore_eos": true, "temperature": 0, "stream": true});
        let r = reqwest::blocking::Client::new()
            .post(url)
            .json(&b)
            .send()
            .unwrap();
        common::read_sse(r)
    });
    let long_prompt = "word ".repeat(400);
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/v1/chat/completions", "{not json".into(), 400, None),
        ("/v1/chat/completions", "".into(), 400, None),
        ("/v1/chat/completions", json!({"model": "nope:1b", "messages": [{"role": "user", "content": "x"}]}).to_string(), 404, Some("model")),
        ("/v1/chat/completions", json!({"model": MODEL}).to_string(), 400, None),
        ("/v1/chat/completions", json!({"model": MODEL, "messages": []}).to_string(), 400, Some("messages")),
        ("/v1/chat/completions", json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": 9}).to_string(), 400, Some("temperature")),
        ("/v1/chat/completions", json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 99}).to_string(), 400, Some("n")),
        ("/v1/chat/completions", json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}).to_string(), 400, Some("max_tokens")),
        ("/v1/chat/completions", json!({"model": MODEL, "messages": [{"role": "user", "content": long_prompt}]}).to_string(), 400, Some("messages")),
        ("/v1/completions", json!({"model": MODEL, "prompt": [999999999]}).to_string(), 400, Some("prompt")),
        ("/v1/completions", json!({"model": MODEL, "prompt": "x", "top_p": 0}).to_string(), 400, Some("top_p")),
        ("/v1/nothing", "{}".into(), 404, None),
    ];
    for (path, body, status, param) in cases {
        let (st, v) = s.post_raw(path, &body);
        assert_eq!(st, status, "{path} {body:.80} -> {v}");
        let err = &v["error"];
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(err["type"].is_string(), "{v}");
        if let Some(p) = param {
            assert_eq!(err["param"], p, "{v}");
        }
        // The server still answers normally in between.
        assert!(!s.chat_text("Hi", 4).is_empty());
    }
    assert_eq!(
        s.http
            .get(s.url("/v1/chat/completions"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        405
    );
    let chunks = long.join().unwrap();
    assert_eq!(chunks.last().unwrap(), "[DONE]");
    let finish = chunks.iter().rev().find_map(|c| {
        c["choices"]
            .get(0)
            .and_then(|ch| ch["finish_reason"].as_str())
    });
    assert_eq!(finish, Some("length"));
}

#[test]
fn full_queue_answers_429() {
    let s = Server::start(&["--parallel", "1", "--max-queue", "1"]);
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Go on forever."}], "max_tokens": 2000, "ignore_eos": true, "stream": true});
    let running = s
        .http
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(running.status(), 200);
    let queued = s
        .http
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(queued.status(), 200);
    let (st, v) = s.post("/v1/chat/completions", &chat_body("Hi", 4));
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    drop(running);
    drop(queued);
    wait_for_idle(&s);
    assert_eq!(s.post("/v1/chat/completions", &chat_body("Hi", 4)).0, 200);
}

#[test]
fn logprobs_are_consistent_with_greedy_choice() {
    let s = Server::start(&[]);
    let mut body = chat_body("Say hello.", 6);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let (st, v) = s.post("/v1/chat/completions", &body);
    assert_eq!(st, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content.len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    for t in content {
        let lp = t["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert!(
            (top[0]["logprob"].as_f64().unwrap() - lp).abs() < 1e-4,
            "{t}"
        );
        assert!(top
            .windows(2)
            .all(|w| w[0]["logprob"].as_f64() >= w[1]["logprob"].as_f64()));
    }
    let text: String = content
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(
        text,
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );
}

#[test]
fn shared_prefix_is_reused_across_different_requests() {
    let s = Server::start(&["--parallel", "2"]);
    let system = "You are a support assistant for ACME Corp. ".repeat(20);
    let body = |q: &str| {
        json!({"model": MODEL, "temperature": 0, "max_tokens": 4,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": q}]})
    };
    let (_, a) = s.post("/v1/chat/completions", &body("How do I reset my password?"));
    let (_, b) = s.post("/v1/chat/completions", &body("Where is my invoice?"));
    assert_eq!(a["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let cached = b["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached > 150,
        "system prompt should be reused, cached {cached}"
    );
    // Reuse must not change results: a fresh server gives the same answer.
    let fresh = Server::start(&["--prefix-cache", "false"]);
    let (_, c) = fresh.post("/v1/chat/completions", &body("Where is my invoice?"));
    assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        b["choices"][0]["message"]["content"],
        c["choices"][0]["message"]["content"]
    );
}

#[test]
fn sigterm_lets_running_requests_finish() {
    let mut s = Server::start(&[]);
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Write a poem."}], "max_tokens": 60, "ignore_eos": true, "temperature": 0, "stream": true});
    let mut r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap();
    let mut first = [0u8; 64];
    assert!(r.read(&mut first).unwrap() > 0);
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("\"finish_reason\":\"length\""),
        "request was cut off: {rest:.300}"
    );
    assert!(rest.trim_end().ends_with("data: [DONE]"));
    let status = s.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn curl_streams_server_sent_events() {
    let s = Server::start(&[]);
    let mut body = chat_body("What is water?", 16);
    let (_, plain) = s.post("/v1/chat/completions", &body);
    body["stream"] = json!(true);
    let out = std::process::Command::new("curl")
        .args([
            "-sN",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
            &s.url("/v1/chat/completions"),
        ])
        .output()
        .expect("curl is installed");
    assert!(out.status.success());
    let chunks = common::read_sse(&out.stdout[..]);
    assert_eq!(chunks.last().unwrap(), "[DONE]");
    assert_eq!(
        chunks_text(&chunks),
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
}

#[test]
fn openai_python_client_works_unchanged() {
    let s = Server::start(&["--parallel", "4"]);
    let (ok, log) = common::python(
        "test_openai.py",
        &[],
        &[
            ("BANTAM_BASE_URL", format!("{}/v1", s.base)),
            ("BANTAM_MODEL", MODEL.to_string()),
        ],
    );
    assert!(
        ok,
        "openai client tests failed (pip install openai?):\n{log}"
    );
    assert!(log.contains("OK"), "{log}");
}

#[test]
fn models_load_on_demand_and_unload_by_lru_and_keep_alive() {
    // The same weights under a second name: the GGUF path itself.
    let home = common::model_home();
    let out = common::bantam()
        .args(["show", MODEL, "--json"])
        .output()
        .unwrap();
    let digest = serde_json::from_slice::<Value>(&out.stdout).unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let path = home.join("blobs").join(format!("sha256-{digest}"));
    let tmp = tempfile::tempdir().unwrap();
    let other_path = tmp.path().join("copy.gguf");
    std::fs::copy(&path, &other_path).unwrap();
    // A file is a model only where the operator names it (here a declared backend).
    let cfg = tmp.path().join("bantam.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[backends]]\nname = \"copy\"\ntype = \"local\"\nmodel = {:?}\n",
            other_path.to_str().unwrap()
        ),
    )
    .unwrap();
    let s = Server::start(&[
        "--max-loaded",
        "1",
        "--keep-alive",
        "2",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let loaded = |s: &Server| -> Vec<String> {
        s.get("/health").1["models_loaded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        loaded(&s).is_empty(),
        "nothing is loaded before the first request"
    );
    assert!(!s.chat_text("Hi", 2).is_empty());
    assert_eq!(loaded(&s), vec![MODEL.to_string()]);
    let (st, v) = s.post(
        "/v1/completions",
        &json!({"model": "copy", "prompt": "Hello", "max_tokens": 2}),
    );
    assert_eq!(st, 200, "{v}");
    // A file the configuration does not name is not a model for a client.
    let undeclared = tmp.path().join("undeclared.gguf");
    std::fs::copy(&path, &undeclared).unwrap();
    let (st, v) = s.post(
        "/v1/completions",
        &json!({"model": undeclared.to_str().unwrap(), "prompt": "Hello", "max_tokens": 2}),
    );
    assert_eq!(st, 404, "{v}");
    assert_eq!(
        loaded(&s),
        vec![other_path.to_str().unwrap().to_string()],
        "max_loaded=1 unloads the least recently used"
    );
    // Keep-alive of 2 s: the reaper unloads the idle model.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !loaded(&s).is_empty() {
        assert!(Instant::now() < deadline, "idle model was not unloaded");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn prefix_is_copied_from_a_busy_slot_without_changing_results() {
    prefix_copy_case("false");
}

#[test]
fn prefix_is_shared_from_a_busy_slot_in_a_unified_cache() {
    prefix_copy_case("true");
}

fn prefix_copy_case(kv_unified: &str) {
    let system =
        "You answer questions about the ACME Widget 3000, a kitchen appliance. ".repeat(12);
    let question = |q: &str| {
        json!({"model": MODEL, "temperature": 0, "max_tokens": 12,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": q}]})
    };
    // Reference answer from a server that never reuses anything.
    let fresh = Server::start(&["--prefix-cache", "false"]);
    let (_, want) = fresh.post("/v1/chat/completions", &question("Is it dishwasher safe?"));
    drop(fresh);

    let s = Server::start(&["--parallel", "2", "--kv-unified", kv_unified]);
    // A long request holds slot 1 with the system prompt cached…
    let mut long = question("Describe it in detail.");
    long["max_tokens"] = json!(400);
    long["ignore_eos"] = json!(true);
    long["stream"] = json!(true);
    let running = s
        .http
        .post(s.url("/v1/chat/completions"))
        .json(&long)
        .send()
        .unwrap();
    // Wait for its first generated token: its whole prompt is in the KV cache then.
    let mut reader = std::io::BufReader::new(running);
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(n > 0, "stream ended early");
        if line.contains("\"content\":\"") && !line.contains("\"content\":\"\"") {
            break;
        }
    }
    // …so this one lands in the other slot and copies the prefix from the busy one.
    let (st, got) = s.post("/v1/chat/completions", &question("Is it dishwasher safe?"));
    assert_eq!(st, 200, "{got}");
    let cached = got["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached > 100,
        "prefix should come from the busy slot, cached {cached}"
    );
    assert_eq!(
        got["choices"][0]["message"]["content"],
        want["choices"][0]["message"]["content"]
    );
    drop(reader);
}
