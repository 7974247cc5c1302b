//! `POST /v1/classify` on the real SmolLM2: shapes, options, bad input, concurrency.

mod common;

use common::{Server, MODEL};

/// Quality checks use the 0.5B model (SmolLM2-135M leans to the first label).
const QUALITY_MODEL: &str = "qwen2.5-coder:0.5b";
use serde_json::{json, Value};

fn probs_ok(item: &Value, labels: &[&str]) {
    let p = item["probabilities"].as_object().expect("probabilities");
    assert_eq!(
        p.keys().map(String::as_str).collect::<Vec<_>>(),
        labels,
        "in request order"
    );
    let sum: f64 = p.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-3, "{item}");
    let best = p
        .iter()
        .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
        .unwrap();
    if let Some(l) = item["label"].as_str() {
        assert_eq!(l, best.0, "{item}");
    }
    let conf = item["confidence"].as_f64().unwrap();
    assert!((conf - best.1.as_f64().unwrap()).abs() < 1e-4, "{item}");
}

#[test]
fn classify_scores_labels_and_batches_inputs() {
    let s = Server::start(&[]);
    const MODEL: &str = QUALITY_MODEL;
    let labels = ["positive", "negative"];
    let texts = [
        "I love this phone, it is wonderful and works perfectly!",
        "This is terrible. It broke after one day and support ignored me. Awful.",
        "Great service, friendly staff, I am very happy.",
    ];
    let mut single = Vec::new();
    for t in texts {
        let (st, v) = s.post(
            "/v1/classify",
            &json!({"model": MODEL, "input": t, "labels": labels, "scoring": "exact"}),
        );
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        probs_ok(&v["data"][0], &labels);
        assert_eq!(v["data"][0]["exact"], true);
        single.push(v["data"][0].clone());
    }
    // The obvious cases.
    let got: Vec<&str> = single
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["positive", "negative", "positive"]);
    // Batched: same labels, probabilities within float noise of the single runs.
    let (st, v) = s.post(
        "/v1/classify",
        &json!({"model": MODEL, "input": texts, "labels": labels, "scoring": "exact"}),
    );
    assert_eq!(st, 200, "{v}");
    for (i, d) in v["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["label"], single[i]["label"]);
        for l in labels {
            let a = d["probabilities"][l].as_f64().unwrap();
            let b = single[i]["probabilities"][l].as_f64().unwrap();
            assert!((a - b).abs() < 0.05, "{l}: batched {a} vs single {b}");
        }
    }
    assert!(v["usage"]["cached_tokens"].as_u64().unwrap() > 0, "{v}");
    // Greedy (the default) picks the same labels here.
    let (st, g) = s.post(
        "/v1/classify",
        &json!({"model": MODEL, "input": texts, "labels": labels}),
    );
    assert_eq!(st, 200, "{g}");
    for (i, d) in g["data"].as_array().unwrap().iter().enumerate() {
        probs_ok(d, &labels);
        assert_eq!(d["label"], single[i]["label"], "{d}");
    }
}

#[test]
fn classify_options_and_bad_input() {
    let s = Server::start(&[]);
    let labels = json!([
        {"label": "billing", "description": "invoices, charges, refunds"},
        {"label": "technical", "description": "bugs, errors, outages"},
        {"label": "sales", "description": "prices, plans, demos"}
    ]);
    let names = ["billing", "technical", "sales"];
    // Out of scope: an impossible confidence floor gives no label.
    let (st, v) = s.post(
        "/v1/classify",
        &json!({"model": MODEL, "input": "I was charged twice this month", "labels": labels,
                "min_confidence": 0.999, "examples": [{"input": "The app crashes", "label": "technical"}]}),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v["data"][0]["label"].is_null(), "{v}");
    probs_ok(&v["data"][0], &names);
    // Multi-label: every label above the threshold, best first.
    let (st, v) = s.post(
        "/v1/classify",
        &json!({"model": MODEL, "input": "Your invoice page shows an error", "labels": labels,
                "multi_label": true, "threshold": 0.0, "scoring": "exact"}),
    );
    assert_eq!(st, 200, "{v}");
    let got = v["data"][0]["labels"].as_array().unwrap();
    assert_eq!(got.len(), 3, "{v}");
    assert_eq!(got[0], v["data"][0]["label"]);
    for (body, param) in [
        (
            json!({"model": MODEL, "input": "x", "labels": ["a"]}),
            "labels",
        ),
        (
            json!({"model": MODEL, "input": "x", "labels": ["a", "a"]}),
            "labels",
        ),
        (
            json!({"model": MODEL, "input": "x", "labels": (0..300).map(|i| i.to_string()).collect::<Vec<_>>()}),
            "labels",
        ),
        (
            json!({"model": MODEL, "input": "", "labels": ["a", "b"]}),
            "input",
        ),
        (
            json!({"model": MODEL, "input": [], "labels": ["a", "b"]}),
            "input",
        ),
        (
            json!({"model": MODEL, "input": "x", "labels": ["a", "b"], "scoring": "psychic"}),
            "scoring",
        ),
        (
            json!({"model": MODEL, "input": "x", "labels": ["a", "b"], "threshold": 3}),
            "threshold",
        ),
        (
            json!({"model": MODEL, "input": "x", "labels": ["a", "b"], "examples": [{"input": "y", "label": "c"}]}),
            "examples",
        ),
    ] {
        let (st, v) = s.post("/v1/classify", &body);
        assert_eq!(st, 400, "{body} → {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let (st, _) = s.post(
        "/v1/classify",
        &json!({"model": "nope:1b", "input": "x", "labels": ["a", "b"]}),
    );
    assert_eq!(st, 404);
}

#[test]
fn concurrent_requests_with_different_labels() {
    let s = Server::start(&[]);
    let url = s.url("/v1/classify");
    let sets: Vec<Vec<String>> = vec![
        vec!["cat".into(), "dog".into()],
        vec!["red".into(), "green".into(), "blue".into()],
        vec!["cat".into(), "dog".into()],
        vec!["urgent".into(), "not urgent".into()],
    ];
    let handles: Vec<_> = sets
        .into_iter()
        .map(|labels| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({"model": MODEL, "input": ["The sky is clear today", "Server down, customers cannot pay!"], "labels": labels});
                let resp = ureq_post(&url, &body);
                (labels, resp)
            })
        })
        .collect();
    for h in handles {
        let (labels, v) = h.join().unwrap();
        let data = v["data"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(data.len(), 2);
        let names: Vec<&str> = labels.iter().map(String::as_str).collect();
        for d in data {
            probs_ok(d, &names);
        }
    }
}

fn ureq_post(url: &str, body: &Value) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-s", "-H", "content-type: application/json", "-d"])
        .arg(body.to_string())
        .arg(url)
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}
