//! Bantam's metrics against the reference implementations, computed by them in this
//! test (sacrebleu for BLEU, scikit-learn for classification): equal to ±1e-6.

use bantam_eval::{bleu, classification, rouge, stem};
use serde_json::{json, Value};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

struct BleuCase {
    hyps: Vec<String>,
    /// Reference streams, sacrebleu's layout: `streams[k][i]` for hypothesis `i`.
    streams: Vec<Vec<String>>,
}

fn bleu_cases() -> Vec<BleuCase> {
    vec![
        BleuCase {
            hyps: s(&[
                "The cat sat on the mat.",
                "It costs 3.50 dollars, or about 3 euros.",
                "Order #4521 arrived broken; please refund it!",
                "He said \"hello\" & left at 10-11 pm",
                "Completely unrelated words here",
            ]),
            streams: vec![
                s(&[
                    "The cat is sitting on the mat.",
                    "It costs $3.50, which is about 3 euros.",
                    "Order 4521 arrived damaged; please refund it.",
                    "He said &quot;hello&quot; and left at 10-11 pm.",
                    "The quick brown fox jumps over the lazy dog.",
                ]),
                s(&[
                    "A cat sat on the mat.",
                    "The price is 3.50 dollars (roughly 3 euros).",
                    "Your order #4521 arrived broken, please refund it!",
                    "He said hello and left between 10 and 11 pm.",
                    "Nothing in common at all.",
                ]),
            ],
        },
        // Short hypotheses: brevity penalty, and n-gram orders with no match.
        BleuCase {
            hyps: s(&["the refund", "login fails on Android 14"]),
            streams: vec![s(&[
                "the refund was issued to the customer yesterday",
                "login fails on android 14 since the update",
            ])],
        },
    ]
}

fn class_cases() -> Vec<(Vec<String>, Vec<String>)> {
    vec![
        (
            s(&[
                "card_arrival",
                "card_arrival",
                "top_up",
                "refund",
                "refund",
                "top_up",
                "pin",
                "card_arrival",
            ]),
            s(&[
                "card_arrival",
                "top_up",
                "top_up",
                "refund",
                "card_arrival",
                "exchange_rate",
                "pin",
                "card_arrival",
            ]),
        ),
        (s(&["a", "b", "a", "b"]), s(&["a", "b", "a", "b"])),
    ]
}

fn rouge_cases() -> Vec<(Vec<String>, String)> {
    vec![
        (
            s(&["The quarterly review found that ticket volume rose 18% after the March release.\nEngineering traced the login failures to an expired certificate."]),
            "Ticket volumes rose by 18 percent following the March releases.\nLogin failures were traced to expired certificates by engineering.\nStaffing stays flat.".into(),
        ),
        (
            s(&[
                "The customers were complaining about delayed deliveries and damaged packaging.",
                "Customers complained: deliveries delayed, packages damaged!",
            ]),
            "Customer complaints concern delayed delivery and damaged packages.".into(),
        ),
        (s(&["Running runners ran quickly; generalizations are happily relational."]), "The runner is running generally and happily, relationally.".into()),
        (s(&["nothing"]), "".into()),
    ]
}

/// Every distinct word of the project's documentation: a few thousand real words.
fn words() -> Vec<String> {
    let mut text = String::new();
    for f in ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"] {
        text.push_str(
            &std::fs::read_to_string(format!("{}/../../{f}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
        );
    }
    let mut w: Vec<String> = text
        .to_lowercase()
        .split(|c: char| !c.is_ascii_lowercase())
        .filter(|t| t.len() > 2)
        .map(str::to_string)
        .collect();
    w.extend(s(&[
        "skies",
        "dying",
        "news",
        "innings",
        "proceed",
        "succeeded",
        "agreed",
        "feed",
        "bled",
        "sized",
        "hopping",
        "falling",
        "fizzed",
        "failing",
        "filing",
        "happy",
        "sky",
        "ties",
        "cries",
        "dies",
        "conditional",
        "rational",
        "valenci",
        "hesitanci",
        "digitizer",
        "conformabli",
        "radicalli",
        "differentli",
        "vileli",
        "analogousli",
        "vietnamization",
        "predication",
        "operator",
        "feudalism",
        "decisiveness",
        "hopefulness",
        "callousness",
        "formaliti",
        "sensitiviti",
        "sensibiliti",
        "triplicate",
        "formative",
        "formalize",
        "electriciti",
        "electrical",
        "hopeful",
        "goodness",
        "revival",
        "allowance",
        "inference",
        "airliner",
        "gyroscopic",
        "adjustable",
        "defensible",
        "irritant",
        "replacement",
        "adjustment",
        "dependent",
        "adoption",
        "homologou",
        "communism",
        "activate",
        "angulariti",
        "homologous",
        "effective",
        "bowdlerize",
        "probate",
        "rate",
        "cease",
        "controll",
        "roll",
        "generously",
        "fully",
        "logically",
        "archaeology",
        "yyyy",
        "sayying",
        "toy",
        "boy",
        "eye",
    ]));
    w.sort();
    w.dedup();
    w
}

fn reference(cases: &Value) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/metrics_reference.py"
    );
    let mut child = std::process::Command::new(
        std::env::var("BANTAM_PYTHON").unwrap_or_else(|_| "python3".into()),
    )
    .arg(script)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("python3 is installed");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reference script failed (pip install sacrebleu scikit-learn?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(a: f64, b: &Value, what: &str) {
    let b = b.as_f64().unwrap_or_else(|| panic!("{what}: {b}"));
    assert!((a - b).abs() <= 1e-6, "{what}: bantam {a} vs reference {b}");
}

#[test]
fn metrics_equal_reference_implementations() {
    let bcs = bleu_cases();
    let ccs = class_cases();
    let rcs = rouge_cases();
    let ws = words();
    let cases = json!({
        "bleu": bcs.iter().map(|c| json!({"hyps": c.hyps, "refs": c.streams})).collect::<Vec<_>>(),
        "classification": ccs.iter().map(|(t, p)| json!({"truth": t, "pred": p})).collect::<Vec<_>>(),
        "rouge": rcs.iter().map(|(t, p)| json!({"targets": t, "prediction": p})).collect::<Vec<_>>(),
        "stems": ws,
    });
    let r = reference(&cases);
    for (i, c) in bcs.iter().enumerate() {
        let per_segment: Vec<Vec<String>> = (0..c.hyps.len())
            .map(|h| c.streams.iter().map(|st| st[h].clone()).collect())
            .collect();
        let b = bleu::corpus_bleu(&c.hyps, &per_segment);
        let rb = &r["bleu"][i];
        close(b.score, &rb["score"], &format!("bleu[{i}].score"));
        close(b.bp, &rb["bp"], &format!("bleu[{i}].bp"));
        for n in 0..4 {
            close(
                b.precisions[n],
                &rb["precisions"][n],
                &format!("bleu[{i}].p{n}"),
            );
        }
        assert_eq!(b.sys_len as u64, rb["sys_len"].as_u64().unwrap());
        assert_eq!(b.ref_len as u64, rb["ref_len"].as_u64().unwrap());
        assert!(b.score > 0.0);
    }
    for (i, (t, p)) in ccs.iter().enumerate() {
        let m = classification::report(t, p);
        let rc = &r["classification"][i];
        assert_eq!(json!(m.labels), rc["labels"]);
        close(m.accuracy, &rc["accuracy"], "accuracy");
        close(m.macro_f1, &rc["macro_f1"], "macro_f1");
        close(m.micro_f1, &rc["micro_f1"], "micro_f1");
        for (k, cl) in m.classes.iter().enumerate() {
            close(
                cl.precision,
                &rc["precision"][k],
                &format!("precision {}", cl.label),
            );
            close(cl.recall, &rc["recall"][k], &format!("recall {}", cl.label));
            close(cl.f1, &rc["f1"][k], &format!("f1 {}", cl.label));
            assert_eq!(cl.support as u64, rc["support"][k].as_u64().unwrap());
        }
        assert_eq!(json!(m.confusion), rc["confusion"]);
    }
    let ref_stems = r["stems"].as_array().unwrap();
    let wrong: Vec<String> = ws
        .iter()
        .zip(ref_stems)
        .filter(|(w, rs)| stem::stem(w) != rs.as_str().unwrap())
        .map(|(w, rs)| format!("{w}: bantam {} vs nltk {rs}", stem::stem(w)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} stems differ: {wrong:?}",
        wrong.len(),
        ws.len()
    );
    assert!(ws.len() > 1000, "{}", ws.len());
    for (i, (t, p)) in rcs.iter().enumerate() {
        let got = rouge::score_multi(t, p);
        let rr = &r["rouge"][i];
        for (name, sc) in [
            ("rouge1", got.rouge1),
            ("rouge2", got.rouge2),
            ("rougeL", got.rouge_l),
            ("rougeLsum", got.rouge_lsum),
        ] {
            close(sc.precision, &rr[name][0], &format!("rouge[{i}].{name}.p"));
            close(sc.recall, &rr[name][1], &format!("rouge[{i}].{name}.r"));
            close(sc.fmeasure, &rr[name][2], &format!("rouge[{i}].{name}.f"));
        }
    }
}
