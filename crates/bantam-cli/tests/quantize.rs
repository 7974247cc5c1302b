//! `bantam quantize`: all-MiniLM-L6-v2 (F32) to Q8_0 through llama.cpp's quantizer,
//! installed with its lineage and a report; an already-quantized model is refused
//! unless asked for.

mod common;

use common::{run, Installed};

#[test]
fn an_encoder_is_quantized_installed_with_lineage_and_measured() {
    let name = format!("test-quant-{}:q8", std::process::id());
    let _guard = Installed(name.clone());
    let (ok, out, err) = run(&[
        "quantize",
        "all-minilm:l6-v2",
        "--to",
        "q8_0",
        "--out",
        &name,
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&format!("installed {name}")), "{out}");
    // The report: smaller, and the sentence vectors barely moved.
    let cos_line = out.lines().find(|l| l.contains("cosine")).expect(&out);
    let mean: f64 = cos_line
        .split("mean ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .expect(cos_line);
    assert!(mean > 0.999, "{cos_line}");
    let (ok, json, _) = run(&["show", &name, "--json"]);
    assert!(ok);
    let m: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(m["lineage"]["quantization"], "Q8_0");
    assert_eq!(m["lineage"]["base_model"], "all-minilm:l6-v2");
    assert!(m["lineage"]["parent_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(m["size"].as_u64().unwrap() < 40_000_000, "{m}");
    // The quantized encoder embeds through the API like the original.
    let s = common::Server::start(&[]);
    let (st, v) = s.post(
        "/v1/embeddings",
        &serde_json::json!({"model": name, "input": "hello"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 384);
}

#[test]
fn quantizing_again_or_to_nothing_is_refused() {
    let (ok, _, err) = run(&["quantize", common::MODEL, "--to", "q4_k_m", "--out", "x:y"]);
    assert!(
        !ok && err.contains("already quantized") && err.contains("--allow-requantize"),
        "{err}"
    );
    let (ok, _, err) = run(&["quantize", "all-minilm:l6-v2", "--to", "q4", "--out", "x:y"]);
    assert!(
        !ok && err.contains("unknown type") && err.contains("q4_k_m"),
        "{err}"
    );
    let (ok, _, err) = run(&["quantize", "no-such:model", "--to", "q8_0", "--out", "x:y"]);
    assert!(!ok && err.contains("no-such:model"), "{err}");
    let (ok, _, _) = run(&["show", "x:y"]);
    assert!(!ok, "a refused quantization left a model behind");
}

#[test]
fn a_generative_model_is_requantized_only_when_asked_and_its_drift_reported() {
    let name = format!("test-quant-gen-{}:q8", std::process::id());
    let _guard = Installed(name.clone());
    let (ok, out, err) = run(&[
        "quantize",
        common::MODEL,
        "--to",
        "q8_0",
        "--allow-requantize",
        "--out",
        &name,
    ]);
    assert!(ok, "{out}\n{err}");
    // Next-token distributions compared with the source's: a small KL divergence,
    // mostly the same top token, a perplexity close to the source's.
    let field = |label: &str| -> f64 {
        let line = out.lines().find(|l| l.starts_with(label)).expect(&out);
        let cell = line.split('|').nth(3).unwrap().trim();
        cell.split_whitespace().next().unwrap().parse().expect(line)
    };
    let kl = field("| mean KL divergence");
    let same = field("| same top token");
    assert!(kl > 0.0 && kl < 0.1, "{out}");
    assert!(same > 80.0, "{out}");
    assert!(out.contains("| perplexity ("), "{out}");
    // It generates.
    let (ok, text, err) = run(&[
        "run",
        &name,
        "Name a colour.",
        "--temperature",
        "0",
        "--max-tokens",
        "8",
    ]);
    assert!(ok && !text.trim().is_empty(), "{err}");
}
