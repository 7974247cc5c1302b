//! `bantam eval` end to end on the real SmolLM2: CSV and JSONL datasets, summaries
//! consistent with the per-item results, a stopped run that continues, prompt
//! templates, and the hardware check; in `remote`, the same model as a local and as
//! a remote target (a real `bantam serve`, its routes) and time to first token.

#[path = "../common/mod.rs"]
mod common;
mod remote;

use common::{bantam, MODEL};
use serde_json::Value;

pub(crate) fn summary(out: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// Predictions by item index for one target.
pub(crate) fn predictions(it: &[Value], target: &str) -> Vec<Value> {
    let mut v: Vec<(u64, Value)> = it
        .iter()
        .filter(|r| r["target"] == target)
        .map(|r| (r["index"].as_u64().unwrap(), r["prediction"].clone()))
        .collect();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, p)| p).collect()
}

pub(crate) fn items(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `bantam eval DATASET ARGS --out OUT`, which must succeed; its items.
pub(crate) fn eval_ok(ds: &std::path::Path, args: &[&str], out: &std::path::Path) -> Vec<Value> {
    let o = bantam()
        .arg("eval")
        .arg(ds)
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    items(&out.join("items.jsonl"))
}

/// Every answered item has a time to first token within its latency; some are
/// answered for each target.
pub(crate) fn assert_timed(it: &[Value], targets: &[&str]) {
    for t in targets {
        let ok: Vec<&Value> = it
            .iter()
            .filter(|x| x["target"] == *t && x.get("error").is_none())
            .collect();
        assert!(!ok.is_empty(), "{t}: no item answered: {it:?}");
        for x in ok {
            let ttft = x["ttft_ms"].as_f64().unwrap_or(-1.0);
            let lat = x["latency_ms"].as_f64().unwrap();
            assert!(ttft > 0.0 && ttft <= lat, "{x}");
        }
    }
}

/// Tickets for classification (text, label).
pub(crate) const TICKETS: [(&str, &str); 6] = [
    ("My card has not arrived", "card_arrival"),
    ("\"Where is my new card, it's late\"", "card_arrival"),
    ("I was charged twice", "duplicate_charge"),
    ("Double payment on my statement", "duplicate_charge"),
    ("How do I change my PIN?", "change_pin"),
    ("\"I forgot my PIN, how to reset it\"", "change_pin"),
];

#[test]
fn eval_classify_csv_resumes_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("tickets.csv");
    let mut text = String::from("text,category\n");
    for (t, c) in TICKETS {
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

#[test]
fn eval_targets_and_templates_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("qa.jsonl");
    std::fs::write(&ds, "{\"input\": \"q\", \"expected\": \"a\"}\n").unwrap();
    let run = |args: &[&str]| {
        let o = bantam()
            .arg("eval")
            .arg(&ds)
            .args(["--task", "qa"])
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(run(&["--target", "http://127.0.0.1:9/v1"]).contains("after `#`"));
    let err = run(&[
        "--target",
        "http://127.0.0.1:9/v1#m",
        "--api-key-env",
        "BANTAM_TEST_NO_SUCH_KEY",
    ]);
    assert!(err.contains("BANTAM_TEST_NO_SUCH_KEY"), "{err}");
    let tpl = dir.path().join("bad.txt");
    std::fs::write(&tpl, "[user]\n{question}\n").unwrap();
    let err = run(&[
        "--target",
        MODEL,
        "--prompt-template",
        tpl.to_str().unwrap(),
    ]);
    assert!(
        err.contains("line 2") && err.contains("{question}"),
        "{err}"
    );
    // The defaults are printed as templates that can be edited and given back.
    let o = bantam()
        .args(["eval", "--show-template", "summarize"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("[system]\nSummarize") && text.contains("[user]\n{input}"),
        "{text}"
    );
    let o = bantam()
        .args(["eval", "--show-template", "classify"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Labels:\n{labels}\n[user]\n{input}"),
        "{text}"
    );
    // Classification templates are checked the same way.
    let classify = |tpl: &str| {
        let f = dir.path().join("cls.txt");
        std::fs::write(&f, tpl).unwrap();
        let o = bantam()
            .arg("eval")
            .arg(&ds)
            .args(["--task", "classify", "--target", MODEL, "--prompt-template"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = classify("[system]\nPick one:\n{label}\n[user]\n{input}\n");
    assert!(
        err.contains("line 3") && err.contains("{label}") && err.contains("{labels}"),
        "{err}"
    );
    let err = classify("[system]\nPick one:\n{labels\n[user]\n{input}\n");
    assert!(err.contains("line 3"), "{err}");
    let err = classify("[user]\n{labels}\n{input}\n[assistant]\nLabel:\n");
    assert!(err.contains("must end with a [user] message"), "{err}");
}

#[test]
fn eval_hardware_check_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hw");
    let o = bantam()
        .args([
            "eval",
            "--hardware",
            "--hardware-reps",
            "1",
            "--threads",
            "1",
        ])
        .args([
            "--target",
            MODEL,
            "--target",
            "http://127.0.0.1:9/v1#elsewhere",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("remote target, skipped"));
    let s = summary(&out);
    let hw = &s["hardware"][MODEL];
    for k in [
        "prefill_tok_s",
        "decode_tok_s",
        "ttft_p50_ms",
        "ttft_p95_ms",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "e2e_tokens_per_s",
        "peak_rss_mb",
        "prompt_tokens_mean",
    ] {
        assert!(hw[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {hw}");
    }
    assert_eq!(hw["requests"], 8);
    assert_eq!(hw["gen_tokens"], 64);
    assert!(hw["ttft_p50_ms"].as_f64() <= hw["latency_p50_ms"].as_f64());
    assert!(s["hardware"]
        .get("http://127.0.0.1:9/v1#elsewhere")
        .is_none());
    assert!(s.get("targets").is_none());
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| target | prefill_tok_s |") && md.contains(&format!("| {MODEL} |")));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("id=\"hardware\"") && html.contains("<svg"));
    // An evaluation's directory is not overwritten by a hardware check alone.
    let ds = dir.path().join("qa.jsonl");
    std::fs::write(&ds, "{\"input\": \"What is 2+2?\", \"expected\": \"4\"}\n").unwrap();
    let o = bantam()
        .arg("eval")
        .arg(&ds)
        .args(["--task", "qa", "--target", MODEL, "--threads", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The evaluation keeps the earlier hardware check of its target.
    let s = summary(&out);
    assert!(s["targets"][MODEL]["f1"].is_number() && s["hardware"][MODEL].is_object());
    let o = bantam()
        .args(["eval", "--hardware", "--target", MODEL, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds the results of an evaluation"));
}
