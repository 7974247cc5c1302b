//! `bantam tune classify` end to end on a small labelled set (10 CLINC150 intents,
//! 30 examples each; `tests/fixtures/README.md`): the classifier model is trained,
//! installed in the store, shown, and served by `/v1/classify` and `bantam
//! classify`; bad data gets a clear error.

mod common;

use common::{fixture, run, Installed, Server};
use serde_json::{json, Value};

fn rows(name: &str) -> Vec<Value> {
    std::fs::read_to_string(fixture(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_classifier_model_is_trained_installed_and_served() {
    let name = format!("test-tune-{}:v1", std::process::id());
    let _guard = Installed(name.clone());
    let data = fixture("clinc10_train.jsonl");
    let (ok, out, err) = run(&[
        "tune",
        "classify",
        data.to_str().unwrap(),
        "--out",
        &name,
        "--features",
        "auto",
    ]);
    assert!(ok, "{out}\n{err}");
    // Both MiniLM featurisers tried, one kept, the model installed.
    assert!(
        out.contains("static:all-minilm:l6-v2") && out.contains("all-minilm:l6-v2"),
        "{out}"
    );
    assert!(
        out.contains("kept") && out.contains(&format!("installed {name}")),
        "{out}"
    );
    assert!(
        out.contains("10 labels, 250 training and 50 validation examples"),
        "{out}"
    );
    let (ok, show, _) = run(&["show", &name]);
    assert!(ok && show.contains("bantam-classifier"), "{show}");

    let s = Server::start(&[]);
    let test = rows("clinc10_test.jsonl");
    let inputs: Vec<&str> = test.iter().map(|r| r["input"].as_str().unwrap()).collect();
    let (st, v) = s.post("/v1/classify", &json!({"model": name, "input": inputs}));
    assert_eq!(st, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), test.len());
    let right = data
        .iter()
        .zip(&test)
        .filter(|(d, r)| d["label"] == r["expected"])
        .count();
    // 10 intents with 26 training examples each: far above chance (10 %).
    assert!(right >= 85, "{right}/100 right");
    let p: f64 = data[0]["probabilities"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-3 && data[0]["probabilities"].as_object().unwrap().len() == 10);

    // Restricted to two labels: probabilities over those two only.
    let (st, v) = s.post(
        "/v1/classify",
        &json!({"model": name, "input": "why was my card declined at the store", "labels": ["card_declined", "weather"]}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["label"], "card_declined");
    assert_eq!(v["data"][0]["probabilities"].as_object().unwrap().len(), 2);
    // A label the classifier does not know, and a generative endpoint: 400s that say why.
    let (st, v) = s.post(
        "/v1/classify",
        &json!({"model": name, "input": "x", "labels": ["card_declined", "refund"]}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"refund\" is not one"),
        "{v}"
    );
    let (st, v) = s.post(
        "/v1/chat/completions",
        &json!({"model": name, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "not_a_generative_model");
    // A generative model still needs labels.
    let (st, v) = s.post(
        "/v1/classify",
        &json!({"model": common::MODEL, "input": "x"}),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "labels");

    // Calibrated confidence: out-of-scope queries get less of it than in-scope ones.
    let oos: Vec<Value> = rows("clinc_oos.jsonl");
    let oos: Vec<&str> = oos.iter().map(|r| r["input"].as_str().unwrap()).collect();
    let (_, o) = s.post("/v1/classify", &json!({"model": name, "input": oos}));
    let mean = |v: &Value| {
        let d = v["data"].as_array().unwrap();
        d.iter()
            .map(|x| x["confidence"].as_f64().unwrap())
            .sum::<f64>()
            / d.len() as f64
    };
    let (_, inscope) = s.post("/v1/classify", &json!({"model": name, "input": inputs}));
    assert!(
        mean(&o) < mean(&inscope),
        "{} vs {}",
        mean(&o),
        mean(&inscope)
    );
    drop(s);

    // The CLI, without labels.
    let (ok, out, err) = run(&[
        "classify",
        &name,
        "my card got declined when i tried to pay",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("card_declined"), "{out}");
}

#[test]
fn data_that_cannot_train_a_classifier_is_refused_and_nothing_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.jsonl");
    std::fs::write(
        &one,
        "{\"input\": \"a\", \"expected\": \"x\"}\n{\"input\": \"b\", \"expected\": \"x\"}\n",
    )
    .unwrap();
    let name = format!("test-tune-bad-{}:v1", std::process::id());
    let (ok, _, err) = run(&[
        "tune",
        "classify",
        one.to_str().unwrap(),
        "--out",
        &name,
        "--features",
        "hashed-ngrams",
    ]);
    assert!(!ok && err.contains("at least two"), "{err}");
    let missing = dir.path().join("missing.jsonl");
    std::fs::write(&missing, "{\"text\": \"a\"}\n").unwrap();
    let (ok, _, err) = run(&[
        "tune",
        "classify",
        missing.to_str().unwrap(),
        "--out",
        &name,
    ]);
    assert!(!ok && err.contains("input"), "{err}");
    let (ok, _, _) = run(&["show", &name]);
    assert!(!ok, "a failed tune left a model behind");
}
