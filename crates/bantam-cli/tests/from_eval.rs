//! `bantam router train --from-eval`: a real `bantam eval` run with a small and a
//! larger local target becomes routing labels (escalate where the larger one was
//! right and the small one wrong), and a router is trained on them.

mod common;

use common::{fixture, run};

#[test]
fn an_eval_run_trains_a_router_where_the_small_model_falls_short() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    let data = fixture("clinc10_test.jsonl");
    let (ok, stdout, err) = run(&[
        "eval",
        data.to_str().unwrap(),
        "--task",
        "classify",
        "--target",
        common::MODEL,
        "--target",
        "qwen2.5-coder:0.5b",
        "--limit",
        "30",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{err}");
    let router = dir.path().join("router.json");
    let (ok, stdout, err) = run(&[
        "router",
        "train",
        "--from-eval",
        out.to_str().unwrap(),
        "--local",
        common::MODEL,
        "--large",
        "qwen2.5-coder:0.5b",
        "--embedder",
        "hashed-ngrams",
        "--escalate",
        "30%",
        "--out",
        router.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{err}");
    assert!(err.contains("30 items, compared on correct"), "{err}");
    assert!(stdout.contains("trained on 30 prompts"), "{stdout}");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&router).unwrap()).unwrap();
    assert_eq!(model["trained"]["examples"], 30);
    // The labels are where the larger model was right and the small one was not.
    let items = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
    let mut right: std::collections::HashMap<(String, u64), f64> = Default::default();
    for l in items.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        right.insert(
            (
                v["target"].as_str().unwrap().to_string(),
                v["index"].as_u64().unwrap(),
            ),
            v["metrics"]["correct"].as_f64().unwrap_or(0.0),
        );
    }
    let escalate = (0..30)
        .filter(|&i| {
            right[&("qwen2.5-coder:0.5b".to_string(), i)] > right[&(common::MODEL.to_string(), i)]
        })
        .count();
    assert_eq!(model["trained"]["escalate_examples"], escalate);

    // Mistakes say what to do.
    let (ok, _, err) = run(&[
        "router",
        "train",
        "--from-eval",
        out.to_str().unwrap(),
        "--embedder",
        "hashed-ngrams",
    ]);
    assert!(
        !ok && err.contains("--local TARGET and --large TARGET"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "router",
        "train",
        "--from-eval",
        out.to_str().unwrap(),
        "--local",
        "nope",
        "--large",
        "qwen2.5-coder:0.5b",
        "--embedder",
        "hashed-ngrams",
    ]);
    assert!(
        !ok && err.contains("no results for target \"nope\""),
        "{err}"
    );
}
