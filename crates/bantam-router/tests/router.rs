//! The router against scripted local backends and a real HTTP upstream on loopback:
//! decisions, fallback order, retries, circuit breaker, usage stripping, the ledger.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bantam_api::{Backend, BackendError, Call, Embed, Endpoint, LocalFactory, Reply, Request};
use bantam_router::learned::{self, RouterModel, TrainOptions};
use bantam_router::{Ledger, Router, RouterError, RoutingConfig, UsageQuery};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{json, Value};

/// What a scripted backend does on its next call.
#[derive(Clone)]
enum Step {
    Answer,
    /// Answer with every token at this log-probability.
    Confident(f64),
    Fail(u16, &'static str),
    StreamFailFirst,
}

/// A local backend that follows a script (then answers) and counts its calls.
struct Scripted {
    name: String,
    script: Mutex<VecDeque<Step>>,
    calls: Arc<Mutex<Vec<String>>>,
}

#[allow(clippy::result_large_err)]
fn answer(model: &str, stream: bool) -> Result<Reply, BackendError> {
    if stream {
        let chunks = vec![
            Ok(json!({"object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]})),
            Ok(json!({"object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})),
            Ok(
                json!({"object": "chat.completion.chunk", "model": model, "choices": [],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}),
            ),
        ];
        Ok(Reply::Stream(Box::pin(futures::stream::iter(chunks))))
    } else {
        Ok(Reply::Full(json!({
            "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500}
        })))
    }
}

impl Backend for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    fn call(&self, call: Call) -> BoxFuture<'_, Result<Reply, BackendError>> {
        self.calls.lock().unwrap().push(self.name.clone());
        let step = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Answer);
        let model = call.request.model().to_string();
        let stream = call.request.stream();
        Box::pin(async move {
            match step {
                Step::Answer => answer(&model, stream),
                Step::Confident(lp) => {
                    assert!(!stream, "a cascade asks without streaming");
                    assert!(matches!(&call.request, Request::Chat(r) if r.logprobs()));
                    Ok(Reply::Full(json!({
                        "id": "c1", "object": "chat.completion", "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "maybe"},
                            "logprobs": {"content": [{"token": "may", "logprob": lp}, {"token": "be", "logprob": lp}]},
                            "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0}
                    })))
                }
                Step::Fail(status, code) => Err(BackendError::from_http(
                    &self.name,
                    status,
                    json!({"error": {"message": "scripted", "type": "x", "code": code}}),
                )),
                Step::StreamFailFirst => {
                    let s = futures::stream::iter(vec![Err(BackendError::broken(
                        &self.name, "scripted",
                    ))]);
                    Ok(Reply::Stream(Box::pin(s)))
                }
            }
        })
    }
}

#[derive(Default, Clone)]
struct Factory {
    scripts: Arc<Mutex<HashMap<String, Vec<Step>>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

/// Bag of words hashed into 256 dimensions (FNV-1a), L2-normalised: enough for a classifier
/// to learn "mentions law" here.
struct Hashing;

fn bucket(w: &str) -> usize {
    (w.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    }) % 256) as usize
}

impl Embed for Hashing {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 256];
                for w in t.split_whitespace() {
                    v[bucket(&w.to_lowercase())] += 1.0;
                }
                let n = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-6);
                v.iter().map(|a| a / n).collect()
            })
            .collect())
    }
}

impl LocalFactory for Factory {
    fn featuriser(&self, model: &str) -> Result<Arc<dyn Embed>, String> {
        assert_eq!(model, "hashing-8");
        Ok(Arc::new(Hashing))
    }

    fn local(&self, name: &str, _model: &str) -> Arc<dyn Backend> {
        let script = self
            .scripts
            .lock()
            .unwrap()
            .remove(name)
            .unwrap_or_default();
        Arc::new(Scripted {
            name: name.to_string(),
            script: Mutex::new(script.into()),
            calls: self.calls.clone(),
        })
    }
}

fn config(extra: &str) -> RoutingConfig {
    let text = format!(
        r#"
        [[backends]]
        name = "small"
        type = "local"
        model = "small-model"

        [[backends]]
        name = "medium"
        type = "local"
        model = "medium-model"
        retries = 2
        backoff_ms = 1
        breaker = {{ failures = 2, cooldown_secs = 3600 }}
        price = {{ input_per_1m = 1.0, output_per_1m = 2.0 }}

        [[routes]]
        name = "auto"
        backends = ["small", "medium"]
        [[routes.rules]]
        backend = "medium"
        keywords = ["hard"]
        {extra}
        "#
    );
    toml::from_str(&text).unwrap()
}

fn chat(text: &str, stream: bool) -> Value {
    json!({"model": "auto", "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

/// A body as the HTTP edge would parse and validate it.
fn req(endpoint: Endpoint, body: &Value) -> Request {
    Request::parse(endpoint, body.to_string().as_bytes()).unwrap()
}

fn router(f: &Factory, ledger: Option<Ledger>) -> Router {
    Router::new(&config(""), Arc::new(f.clone()), ledger, &|_| None).unwrap()
}

#[tokio::test]
async fn decisions_costs_and_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let f = Factory::default();
    let r = router(&f, Some(Ledger::open(&dir.path().join("u.db")).unwrap()));
    let easy = r
        .handle(
            req(Endpoint::Chat, &chat("easy one", false)),
            HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        (easy.backend.as_str(), easy.reason.as_str()),
        ("small", "default")
    );
    assert_eq!(easy.cost_usd, Some(0.0));
    let hard = r
        .handle(
            req(Endpoint::Chat, &chat("a HARD one", false)),
            HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        (hard.backend.as_str(), hard.reason.as_str()),
        ("medium", "rule:keyword")
    );
    // 1000 × $1/1M + 500 × $2/1M
    assert!((hard.cost_usd.unwrap() - 0.002).abs() < 1e-12);
    let Reply::Full(body) = &hard.reply else {
        panic!()
    };
    assert_eq!(body["model"], "medium-model", "the backend's model is sent");
    // A plain model name is a local backend of its own.
    let direct = r
        .handle(
            req(
                Endpoint::Chat,
                &json!({"model": "other", "messages": [{"role": "user", "content": "hi"}]}),
            ),
            HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!((direct.backend.as_str(), direct.route), ("other", None));
    let rep = r.ledger().unwrap().usage(&UsageQuery::default()).unwrap();
    assert_eq!(rep.totals.requests, 3);
    // Savings: the easy request would have cost $0.002 on medium.
    assert!((rep.totals.savings_usd - 0.002).abs() < 1e-12, "{rep:?}");
    assert!((rep.totals.local_share - 1.0).abs() < 1e-12);
}

#[tokio::test]
async fn fallback_retries_and_breaker() {
    let f = Factory::default();
    f.scripts.lock().unwrap().insert(
        "medium".into(),
        vec![
            Step::Fail(503, "busy"),
            Step::Fail(503, "busy"),
            Step::Fail(503, "busy"),
        ],
    );
    let r = router(&f, None);
    let got = r
        .handle(req(Endpoint::Chat, &chat("hard", false)), HashMap::new())
        .await
        .unwrap();
    assert_eq!(got.backend, "small");
    assert!(
        got.reason
            .starts_with("rule:keyword; fallback after medium: HTTP 503"),
        "{}",
        got.reason
    );
    // 1 try + 2 retries on medium (the breaker opened after 2, so the third is skipped).
    let calls = f.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        ["medium", "medium", "small"],
        "breaker stops the retries"
    );
    // The circuit is open now: medium is skipped without a call.
    f.calls.lock().unwrap().clear();
    let got = r
        .handle(req(Endpoint::Chat, &chat("hard", false)), HashMap::new())
        .await
        .unwrap();
    assert_eq!(got.backend, "small");
    assert!(got.reason.contains("medium circuit open"), "{}", got.reason);
    assert_eq!(f.calls.lock().unwrap().clone(), ["small"]);
}

#[tokio::test]
async fn client_errors_do_not_fall_back_but_context_overflow_does() {
    let f = Factory::default();
    f.scripts.lock().unwrap().insert(
        "small".into(),
        vec![
            Step::Fail(400, "bad_param"),
            Step::Fail(400, "context_length_exceeded"),
        ],
    );
    let r = router(&f, None);
    let e = r
        .handle(req(Endpoint::Chat, &chat("x", false)), HashMap::new())
        .await
        .unwrap_err();
    let RouterError::Backend {
        error: BackendError::Invalid { code, .. },
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(code.as_deref(), Some("bad_param"));
    let got = r
        .handle(req(Endpoint::Chat, &chat("x", false)), HashMap::new())
        .await
        .unwrap();
    assert_eq!(got.backend, "medium", "a longer context may fit elsewhere");
}

#[tokio::test]
async fn streams_fall_back_before_the_first_chunk_and_hide_usage_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let f = Factory::default();
    f.scripts
        .lock()
        .unwrap()
        .insert("small".into(), vec![Step::StreamFailFirst]);
    let r = router(&f, Some(Ledger::open(&dir.path().join("u.db")).unwrap()));
    let got = r
        .handle(req(Endpoint::Chat, &chat("x", true)), HashMap::new())
        .await
        .unwrap();
    assert_eq!(got.backend, "medium");
    let Reply::Stream(s) = got.reply else {
        panic!()
    };
    let chunks: Vec<Value> = s.map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks.len(), 2, "usage chunk removed: {chunks:?}");
    // Asked for usage: it stays, with the cost.
    let mut body = chat("x", true);
    body["stream_options"] = json!({"include_usage": true});
    let got = r
        .handle(req(Endpoint::Chat, &body), HashMap::new())
        .await
        .unwrap();
    let Reply::Stream(s) = got.reply else {
        panic!()
    };
    let chunks: Vec<Value> = s.map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[2]["usage"]["cost_usd"], 0.0);
    let rep = r.ledger().unwrap().usage(&UsageQuery::default()).unwrap();
    assert_eq!(rep.totals.requests, 2);
    assert_eq!(
        rep.totals.prompt_tokens, 2000,
        "stream usage recorded: {rep:?}"
    );
}

// ---- a real HTTP upstream on loopback -------------------------------------------

async fn upstream_server(fail_first: usize) -> (String, Arc<Mutex<usize>>) {
    use axum::response::IntoResponse;
    let hits = Arc::new(Mutex::new(0usize));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(b): axum::Json<Value>| {
            let h = h.clone();
            async move {
                let n = {
                    let mut g = h.lock().unwrap();
                    *g += 1;
                    *g
                };
                assert_eq!(headers["authorization"], "Bearer sk-test");
                if n <= fail_first {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
                }
                if b["stream"] == true {
                    assert_eq!(b["stream_options"]["include_usage"], true);
                    let body = format!(
                        "data: {}\n\ndata: {}\r\n\r\ndata: [DONE]\n\n",
                        json!({"choices": [{"index": 0, "delta": {"content": "remote"}}]}),
                        json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2}})
                    );
                    ([("content-type", "text/event-stream")], body).into_response()
                } else {
                    axum::Json(json!({"model": b["model"], "choices": [{"index": 0,
                        "message": {"role": "assistant", "content": "remote"}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 2}}))
                    .into_response()
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/v1"), hits)
}

fn upstream_config(url_env: &str) -> RoutingConfig {
    config(&format!(
        r#"
        [[backends]]
        name = "big"
        type = "openai"
        model = "big-model"
        base_url_env = "{url_env}"
        api_key_env = "KEY"
        retries = 1
        backoff_ms = 1
        timeout_secs = 5
        price = {{ input_per_1m = 10.0, output_per_1m = 30.0 }}
        [[routes]]
        name = "hybrid"
        backends = ["small", "big"]
        [[routes.rules]]
        backend = "big"
        keywords = ["hard"]
        "#
    ))
}

#[tokio::test]
async fn upstream_retry_stream_and_fallback_when_gone() {
    let (url, hits) = upstream_server(1).await;
    let env = |k: &str| match k {
        "UP" => Some(url.clone()),
        "KEY" => Some("sk-test".to_string()),
        _ => None,
    };
    let f = Factory::default();
    let r = Router::new(&upstream_config("UP"), Arc::new(f.clone()), None, &env).unwrap();
    let mut body = chat("hard question", false);
    body["model"] = json!("hybrid");
    // First upstream call fails with 500, the retry answers.
    let got = r
        .handle(req(Endpoint::Chat, &body.clone()), HashMap::new())
        .await
        .unwrap();
    assert_eq!(got.backend, "big");
    assert_eq!(*hits.lock().unwrap(), 2);
    let Reply::Full(v) = &got.reply else { panic!() };
    assert_eq!(v["model"], "big-model");
    // 10 × $10/1M + 2 × $30/1M
    assert!((got.cost_usd.unwrap() - 0.00016).abs() < 1e-12);
    body["stream"] = json!(true);
    let got = r
        .handle(req(Endpoint::Chat, &body.clone()), HashMap::new())
        .await
        .unwrap();
    let Reply::Stream(s) = got.reply else {
        panic!()
    };
    let chunks: Vec<Value> = s.map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks.len(), 1, "usage chunk hidden: {chunks:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "remote");

    // An upstream nobody listens on: falls back to the local backend.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let env = |k: &str| match k {
        "UP" => Some(dead.clone()),
        "KEY" => Some("sk-test".to_string()),
        _ => None,
    };
    let r = Router::new(&upstream_config("UP"), Arc::new(f.clone()), None, &env).unwrap();
    body["stream"] = json!(false);
    let got = r
        .handle(req(Endpoint::Chat, &body), HashMap::new())
        .await
        .unwrap();
    assert_eq!(got.backend, "small");
    assert!(got.reason.contains("fallback after big:"), "{}", got.reason);
}

#[test]
fn missing_environment_is_a_clear_error() {
    let f = Factory::default();
    let e = Router::new(&upstream_config("NOPE"), Arc::new(f), None, &|_| None).unwrap_err();
    assert!(e.to_string().contains("NOPE is not set"), "{e}");
}

#[tokio::test]
async fn learned_route_scores_the_embedding_after_the_rules() {
    // Train on "law" prompts (escalate) vs small talk (local).
    let law = ["statute", "liability", "tort", "plaintiff"];
    let chat = ["weather", "hello", "lunch", "movie"];
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (i, w) in law.iter().chain(chat.iter()).enumerate() {
        for filler in ["please", "tell me about", "what is the", "quick question"] {
            texts.push(format!("{filler} {w}"));
            labels.push(i < law.len());
        }
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let x = Hashing.embed(&refs).unwrap();
    let (w, b) = learned::train(&x, &labels, TrainOptions::default());
    let mut m = RouterModel {
        format: 1,
        embedding_model: "hashing-8".into(),
        dim: 256,
        weights: w,
        bias: b,
        threshold: 0.5,
        target_escalation: None,
        calibration: Vec::new(),
        trained: Default::default(),
    };
    let scores: Vec<f32> = x.iter().map(|v| m.score(v)).collect();
    m.threshold = learned::threshold_for_share(&scores, 0.5);
    let ev = learned::evaluate(&scores, &labels, m.threshold);
    assert!(ev.accuracy > 0.9, "{ev:?} {scores:?}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.json");
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    let cfg = config(&format!(
        r#"
        [[routes]]
        name = "smart"
        policy = "learned"
        backends = ["small", "medium"]
        learned = {{ model = "{}", local = "small", escalate = "medium" }}
        [[routes.rules]]
        backend = "small"
        reason = "greeting"
        keywords = ["hello"]
        "#,
        path.display()
    ));
    let f = Factory::default();
    let r = Router::new(&cfg, Arc::new(f), None, &|_| None).unwrap();
    let ask = |t: &str| json!({"model": "smart", "messages": [{"role": "user", "content": t}]});
    let d = r
        .decide(
            &req(Endpoint::Chat, &ask("what is the tort")),
            HashMap::new(),
        )
        .await;
    assert_eq!(d.backend, "medium", "{d:?}");
    assert!(d.reason.starts_with("learned:"), "{d:?}");
    let d = r
        .decide(
            &req(Endpoint::Chat, &ask("quick question lunch")),
            HashMap::new(),
        )
        .await;
    assert_eq!(d.backend, "small", "{d:?}");
    let d = r
        .decide(&req(Endpoint::Chat, &ask("hello statute")), HashMap::new())
        .await;
    assert_eq!(
        (d.backend.as_str(), d.reason.as_str()),
        ("small", "rule:greeting")
    );
}

#[tokio::test]
async fn cascade_keeps_confident_answers_and_escalates_the_rest() {
    let cfg = config(
        r#"
        [[routes]]
        name = "careful"
        policy = "cascade"
        backends = ["small", "medium"]
        cascade = { local = "medium", escalate = "small", min_mean_logprob = -1.0 }
        "#,
    );
    // "medium" answers first here (priced: its cost shows up when it is escalated).
    let f = Factory::default();
    f.scripts.lock().unwrap().insert(
        "medium".into(),
        vec![
            Step::Confident(-0.2),
            Step::Confident(-3.0),
            Step::Confident(-0.1),
            Step::Confident(-5.0),
        ],
    );
    f.scripts
        .lock()
        .unwrap()
        .insert("small".into(), vec![Step::Answer, Step::Fail(503, "x")]);
    let r = Router::new(&cfg, Arc::new(f.clone()), None, &|_| None).unwrap();
    let ask = |stream: bool| json!({"model": "careful", "stream": stream, "messages": [{"role": "user", "content": "q"}]});

    let kept = r
        .handle(req(Endpoint::Chat, &ask(false)), HashMap::new())
        .await
        .unwrap();
    assert_eq!(kept.backend, "medium");
    assert!(kept.reason.starts_with("cascade:kept"), "{}", kept.reason);
    let Reply::Full(v) = &kept.reply else {
        panic!()
    };
    assert_eq!(
        v["choices"][0]["logprobs"],
        Value::Null,
        "not asked for, removed"
    );

    let esc = r
        .handle(req(Endpoint::Chat, &ask(false)), HashMap::new())
        .await
        .unwrap();
    assert_eq!(esc.backend, "small");
    assert!(
        esc.reason
            .starts_with("cascade:escalated mean_logprob -3.00<-1.00"),
        "{}",
        esc.reason
    );
    // The local attempt is paid for: 1M prompt tokens at $1/1M.
    assert!(
        (esc.cost_usd.unwrap() - 1.0).abs() < 1e-9,
        "{:?}",
        esc.cost_usd
    );

    // A stream that is kept arrives as chunks.
    let s = r
        .handle(req(Endpoint::Chat, &ask(true)), HashMap::new())
        .await
        .unwrap();
    let Reply::Stream(s) = s.reply else { panic!() };
    let chunks: Vec<Value> = s.map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "maybe");
    assert_eq!(chunks.len(), 2, "usage hidden: {chunks:?}");

    // Escalation fails: the local answer is returned rather than an error.
    let last = r
        .handle(req(Endpoint::Chat, &ask(false)), HashMap::new())
        .await
        .unwrap();
    assert_eq!(last.backend, "medium");
    assert!(last.reason.contains("escalation failed"), "{}", last.reason);
    let calls = f.calls.lock().unwrap().clone();
    // Local retries default to 0: one failed escalation call.
    assert_eq!(
        calls,
        ["medium", "medium", "small", "medium", "medium", "small"]
    );
}
