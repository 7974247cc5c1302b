//! `POST /v1/embeddings` with the real all-MiniLM-L6-v2, driven by the official
//! openai client and by plain HTTP for the errors.

mod common;

use common::Server;
use serde_json::json;

#[test]
fn embeddings_through_the_openai_client() {
    let store = bantam_store::Store::open(common::model_home()).unwrap();
    if store.get("all-minilm:l6-v2").is_err() {
        panic!("this test needs all-minilm:l6-v2: run `bantam pull all-minilm:l6-v2` (CI does)");
    }
    let s = Server::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/test_embeddings.py"
    );
    let out = std::process::Command::new(
        std::env::var("BANTAM_PYTHON").unwrap_or_else(|_| "python3".into()),
    )
    .arg(script)
    .env("BANTAM_BASE_URL", format!("{}/v1", s.base))
    .output()
    .expect("python3 is installed");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && log.contains("OK"), "{log}");

    for (body, param) in [
        (
            json!({"model": "all-minilm:l6-v2", "input": [1, 2]}),
            "input",
        ),
        (
            json!({"model": "all-minilm:l6-v2", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (
            json!({"model": "all-minilm:l6-v2", "input": "x", "dimensions": 10}),
            "dimensions",
        ),
        (json!({"model": "no-such-model", "input": "x"}), "model"),
    ] {
        let (st, v) = s.post("/v1/embeddings", &body);
        assert!((400..500).contains(&st), "{body} → {st} {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
}
