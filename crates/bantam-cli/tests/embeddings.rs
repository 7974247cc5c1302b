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
    let (ok, log) = common::python(
        "test_embeddings.py",
        &[],
        &[("BANTAM_BASE_URL", format!("{}/v1", s.base))],
    );
    assert!(ok && log.contains("OK"), "{log}");

    for (body, param) in [
        (
            json!({"model": "all-minilm:l6-v2", "input": [-1, 2]}),
            "input",
        ),
        (
            json!({"model": "all-minilm:l6-v2", "input": [[7592], [999999]]}),
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
