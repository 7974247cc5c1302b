//! The API contract, fuzzed (issue 15): schemathesis (PyPI, installed by
//! `scripts/setup.sh` into `~/.cache/bantam/schemathesis`) reads the real server's
//! `GET /openapi.json`, generates valid and invalid requests for every operation and
//! checks each answer: no 5xx, a status and content type the document lists, a body
//! that matches the document's schema, and invalid requests refused with a 4xx.
//!
//! Two runs: the document as served (random model names, so mostly the validation
//! and not-found paths), and the same document with each request's `model` pinned to
//! the test models, so that generated requests reach SmolLM2 and MiniLM and the
//! model's answers are checked against the schemas too. The server runs under a 6 GB
//! address-space cap and a 256-token context, which bounds what a generated
//! `max_tokens` can cost.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Server, MODEL};
use serde_json::{json, Value};

const EMBED_MODEL: &str = "all-minilm:l6-v2";

/// The `st` command: `BANTAM_SCHEMATHESIS`, else the one `scripts/setup.sh` installs.
fn schemathesis() -> PathBuf {
    let st = std::env::var_os("BANTAM_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/bantam/schemathesis/bin/st")
        });
    assert!(
        st.exists(),
        "schemathesis is not installed at {}: run `bash scripts/setup.sh` (or set BANTAM_SCHEMATHESIS to an `st` binary)",
        st.display()
    );
    st
}

/// Each request's `model` limited to the model that endpoint is tested with.
fn pinned(mut doc: Value) -> Value {
    let schemas = doc["components"]["schemas"].as_object_mut().unwrap();
    let mut n = 0;
    for (name, schema) in schemas.iter_mut() {
        if let Some(model) = schema.pointer_mut("/properties/model") {
            if model.get("examples").is_some() {
                let m = if name == "EmbeddingsRequest" {
                    EMBED_MODEL
                } else {
                    MODEL
                };
                model["enum"] = json!([m]);
                n += 1;
            }
        }
    }
    assert_eq!(n, 6, "every model endpoint's request names served models");
    doc
}

fn fuzz(st: &PathBuf, doc: &Value, base: &str, examples: u32, dir: &std::path::Path) {
    let file = dir.join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let out = Command::new(st)
        .current_dir(dir)
        .args(["run", file.to_str().unwrap(), "--url", base])
        .args(["--max-examples", &examples.to_string(), "--seed", "1"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection",
        ])
        .args(["--workers", "1", "--request-timeout", "180", "--no-color"])
        .args(["--report", "har", "--report-har-path", "run.har"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    assert!(
        text.contains("generated") && text.contains("passed"),
        "schemathesis ran no tests:\n{text}"
    );
    no_internals_in_errors(&dir.join("run.har"));
}

/// No error body the fuzzer provoked shows the server's internals: file paths (the
/// store, blobs, sources), panics or backtraces.
fn no_internals_in_errors(har: &std::path::Path) {
    let har: Value = serde_json::from_slice(&std::fs::read(har).expect("HAR report")).unwrap();
    let home = common::model_home();
    let home = home.to_string_lossy();
    let entries = har["log"]["entries"].as_array().unwrap();
    let mut errors = 0;
    for e in entries {
        let status = e["response"]["status"].as_u64().unwrap_or(0);
        if status < 400 {
            continue;
        }
        errors += 1;
        let body = e["response"]["content"]["text"].as_str().unwrap_or("");
        for leak in [
            &*home,
            "/blobs/",
            "sha256-",
            ".rs:",
            "panicked",
            "backtrace",
            "RUST_BACKTRACE",
        ] {
            assert!(
                !body.contains(leak),
                "{} {} answered {status} with {leak:?} in its body: {body}",
                e["request"]["method"],
                e["request"]["url"]
            );
        }
    }
    assert!(errors > 0, "the fuzzer provoked no errors at all");
}

#[test]
fn the_server_keeps_its_openapi_contract_under_fuzzing() {
    let st = schemathesis();
    let capped = Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let args = ["--ctx-size", "256", "--preload", MODEL];
    let mut s = if capped {
        Server::start_wrapped(&["prlimit", "--as=6000000000", "--"], &args)
    } else {
        Server::start(&args)
    };
    let (status, doc) = s.get("/openapi.json");
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    let deep = dir.path().join("pinned");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::create_dir_all(&deep).unwrap();
    fuzz(&st, &doc, &s.base, 15, &served);
    fuzz(&st, &pinned(doc), &s.base, 30, &deep);
    // Still the same process, still answering.
    assert!(s.child.try_wait().unwrap().is_none(), "the server exited");
    assert_eq!(s.get("/health").0, 200);
}
