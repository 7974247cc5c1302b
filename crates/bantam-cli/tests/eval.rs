//! `bantam eval` end to end on the real SmolLM2: CSV and JSONL datasets, summaries
//! consistent with the per-item results, and a stopped run that continues.

mod common;

use common::{bantam, MODEL};
use serde_json::Value;

fn items(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn eval_classify_csv_resumes_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("tickets.csv");
    let mut text = String::from("text,category\n");
    for (t, c) in [
        ("My card has not arrived", "card_arrival"),
        ("\"Where is my new card, it's late\"", "card_arrival"),
        ("I was charged twice", "duplicate_charge"),
        ("Double payment on my statement", "duplicate_charge"),
        ("How do I change my PIN?", "change_pin"),
        ("\"I forgot my PIN, how to reset it\"", "change_pin"),
    ] {
        text.push_str(&format!("{t},{c}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.path().join("out");
    let run = || {
        bantam()
            .args(["eval"])
            .arg(&csv)
            .args([
                "--task",
                "classify",
                "--input-field",
                "text",
                "--expected-field",
                "category",
                "--target",
                MODEL,
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| smollm2:135m | 6 | 0 |"), "{table}");
    let it = items(&out.join("items.jsonl"));
    assert_eq!(it.len(), 6);
    let correct: f64 = it
        .iter()
        .map(|r| r["metrics"]["correct"].as_f64().unwrap())
        .sum();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let s = &summary["targets"][MODEL];
    assert!(
        (s["accuracy"].as_f64().unwrap() - correct / 6.0).abs() < 1e-12,
        "{s}"
    );
    assert_eq!(s["labels"].as_array().unwrap().len(), 3);
    assert!(s["latency_p95_ms"].as_f64().unwrap() > 0.0);
    // The HTML report: the same table and the charts, self-contained.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Confusion matrices"));
    assert!(html.contains(&format!("{MODEL}</td>")));
    assert!(String::from_utf8_lossy(&o.stderr).contains("report.html"));
    // Stopped after two items, mid-line: the rest is computed, nothing twice.
    let lines: Vec<String> = std::fs::read_to_string(out.join("items.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    std::fs::write(
        out.join("items.jsonl"),
        format!("{}\n{}\n{{\"target\":\"smol", lines[0], lines[1]),
    )
    .unwrap();
    let o = run();
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("4 of 6 items left"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let it = items(&out.join("items.jsonl"));
    let mut idx: Vec<u64> = it.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    idx.sort_unstable();
    assert_eq!(idx, vec![0, 1, 2, 3, 4, 5]);
    // Everything done: nothing recomputed, the peak memory of the earlier run kept.
    let o = run();
    assert!(String::from_utf8_lossy(&o.stderr).contains("all 6 items already done"));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["targets"][MODEL]["peak_rss_mb"].as_f64().unwrap() > 0.0);
}

#[test]
fn eval_qa_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("qa.jsonl");
    std::fs::write(
        &ds,
        "{\"input\": \"What is the capital of France?\", \"expected\": [\"Paris\"]}\n{\"input\": \"How many days are in a week?\", \"expected\": [\"7\", \"seven\"]}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = bantam()
        .arg("eval")
        .arg(&ds)
        .args([
            "--task",
            "qa",
            "--target",
            MODEL,
            "--price-per-hour",
            "0.36",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let s = &summary["targets"][MODEL];
    for k in [
        "exact_match",
        "f1",
        "tokens_per_s",
        "latency_p50_ms",
        "peak_rss_mb",
    ] {
        assert!(s[k].is_number(), "{k}: {s}");
    }
    assert!(std::fs::read_to_string(out.join("summary.md"))
        .unwrap()
        .contains("exact_match"));
    // The machine's price gives the cost of 1000 items at the measured throughput.
    let cost = s["cost_per_1k_usd"].as_f64().unwrap();
    let expected = 1000.0 / s["items_per_s"].as_f64().unwrap() / 3600.0 * 0.36;
    assert!((cost - expected).abs() < 1e-12, "{cost} {expected}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains(&format!("${cost:.4} / 1k items")));
    // Bad task: a clear error.
    let o = bantam()
        .arg("eval")
        .arg(&ds)
        .args(["--task", "poetry", "--target", MODEL])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown task"));
}
