use serde_json::json;

use super::classes::{matrix, top_confusions};
use super::*;
use crate::run::{summarize, ItemResult};

/// A deterministic number in [0, 1) from `a`, `b`.
fn unit(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn classify_task(labels: &[String]) -> Task {
    Task::Classify {
        labels: labels.to_vec(),
    }
}

/// Summaries of classification runs: `n` items over `labels`, per target a hit rate
/// and a latency.
fn classify_summaries(
    labels: &[String],
    n: usize,
    targets: &[(&str, f64, f64)],
) -> Map<String, Value> {
    let task = classify_task(labels);
    let mut out = Map::new();
    for (t, (name, acc, ms)) in targets.iter().enumerate() {
        let results: Vec<ItemResult> = (0..n)
            .map(|i| {
                let truth = &labels[i % labels.len()];
                let pred = if unit(i as u64, t as u64) < *acc {
                    truth.clone()
                } else {
                    labels[(i * 7 + t + 1) % labels.len()].clone()
                };
                ItemResult {
                    target: name.to_string(),
                    index: i,
                    input: format!("text {i}"),
                    expected: json!(truth),
                    prediction: json!(pred),
                    metrics: Map::new(),
                    latency_ms: ms * (0.5 + unit(i as u64, 99)),
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    ttft_ms: None,
                    served: None,
                    error: None,
                }
            })
            .collect();
        let refs: Vec<&ItemResult> = results.iter().collect();
        out.insert(name.to_string(), Value::Object(summarize(&task, &refs)));
    }
    out
}

fn meta() -> Meta {
    Meta {
        title: "bantam eval: tickets".into(),
        dataset: "data/tickets.csv".into(),
        created: "2025-01-31 14:05 UTC".into(),
        machine: "Test CPU · 2 logical CPUs".into(),
        details: vec![("limit".into(), "100, spread".into())],
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class_{i:02}")).collect()
}

/// Parses `html` as XML (the report is written to be well-formed) and checks that
/// nothing in it would load a resource: no script, stylesheet link, image or
/// frame, no `src`/`href` attribute, no `url(` or `@import` in styles, and that
/// every SVG coordinate is a finite number.
fn check_document(html: &str) -> roxmltree::Document<'_> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(html, opts)
        .unwrap_or_else(|e| panic!("not well-formed: {e}\n{html}"));
    for n in doc.descendants().filter(|n| n.is_element()) {
        let tag = n.tag_name().name();
        assert!(
            !["script", "link", "img", "iframe", "object", "embed", "image", "use"].contains(&tag),
            "<{tag}> in the report"
        );
        for a in n.attributes() {
            let name = a.name();
            assert!(
                name != "src" && name != "href" && !name.starts_with("on"),
                "{tag} has {name}"
            );
            assert!(!a.value().contains("url("), "{tag} {name}={}", a.value());
            if [
                "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "width", "height",
            ]
            .contains(&name)
            {
                let v: f64 = a
                    .value()
                    .parse()
                    .unwrap_or_else(|_| panic!("{tag} {name}={:?}", a.value()));
                assert!(v.is_finite(), "{tag} {name}={v}");
            }
        }
        if tag == "style" {
            let css = n.text().unwrap_or_default();
            assert!(!css.contains("url(") && !css.contains("@import"), "{css}");
        }
    }
    assert!(!html.contains("NaN"));
    doc
}

fn count(doc: &roxmltree::Document, tag: &str) -> usize {
    doc.descendants().filter(|n| n.has_tag_name(tag)).count()
}

#[test]
fn classification_report_has_table_and_all_charts() {
    let labels = names(10);
    let targets = classify_summaries(
        &labels,
        200,
        &[
            ("smollm2:135m", 0.3, 160.0),
            ("gemma3:270m", 0.5, 100.0),
            ("qwen2.5-coder:0.5b", 0.8, 190.0),
        ],
    );
    let html = html(&meta(), &targets, &classify_task(&labels));
    let doc = check_document(&html);
    // Scatter, two bar charts, per-class bars, one heat map per target.
    assert_eq!(count(&doc, "svg"), 7);
    assert_eq!(
        count(&doc, "table"),
        4,
        "summary and three confusion tables"
    );
    for name in targets.keys() {
        assert!(html.contains(&format!("{name}</td>")), "{name}");
    }
    // The table shows the summary's values, formatted as the terminal table.
    let acc = targets["qwen2.5-coder:0.5b"]["accuracy"].as_f64().unwrap();
    assert!(
        html.contains(&format!("<strong>{acc:.4}</strong>")),
        "best accuracy in bold"
    );
    let p50 = targets["gemma3:270m"]["latency_p50_ms"].as_f64().unwrap();
    assert!(
        html.contains(&format!("<strong>{p50:.1}</strong>")),
        "lowest latency in bold"
    );
    assert!(html.contains("<dd>data/tickets.csv</dd>") && html.contains("<dd>100, spread</dd>"));
    assert!(html.contains("<dd>200</dd>"), "items in the header");
    assert!(html.contains("All 10 classes"));
    // A label and a hover text per target, and the caption.
    assert_eq!(html.matches("local, no price").count(), 3 * 2 + 1);
    assert!(
        html.contains(">class_03</text>"),
        "axis labels with 10 classes"
    );
    assert!(!html.contains("cost_<wbr/>per") && !html.contains("1k items"));
}

#[test]
fn user_strings_are_escaped_everywhere() {
    let labels = vec![
        "<script>alert(1)</script>".to_string(),
        "a & b \"quoted\" 'single'".to_string(),
        "ctrl\u{1}char".to_string(),
    ];
    let targets = classify_summaries(
        &labels,
        30,
        &[("<b>evil</b>", 0.5, 10.0), ("ok", 0.9, 20.0)],
    );
    let mut m = meta();
    m.title = "</title><script>x()</script>".into();
    m.dataset = "d&<>.jsonl".into();
    let html = html(&m, &targets, &classify_task(&labels));
    let doc = check_document(&html);
    assert!(!html.contains("<script") && !html.contains("<b>evil"));
    assert!(html.contains("&lt;b&gt;evil&lt;/b&gt;"));
    assert!(html.contains("d&amp;&lt;&gt;.jsonl"));
    assert!(html.contains("a &amp; b &quot;quoted&quot; &#39;single&#39;"));
    assert!(html.contains("ctrl\u{fffd}char"));
    // The parsed text is the original again.
    let title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
    assert_eq!(title.text(), Some("</title><script>x()</script>"));
}

#[test]
fn degenerate_runs_render_without_nan() {
    // One target, one class, zero latency, every item an error (empty prediction).
    let labels = vec!["only".to_string()];
    let task = classify_task(&labels);
    let r = ItemResult {
        target: "t".into(),
        index: 0,
        input: "x".into(),
        expected: json!("only"),
        prediction: Value::Null,
        metrics: Map::new(),
        latency_ms: 0.0,
        prompt_tokens: 0,
        completion_tokens: 0,
        ttft_ms: None,
        served: None,
        error: Some("boom".into()),
    };
    let mut targets = Map::new();
    targets.insert("t".into(), Value::Object(summarize(&task, &[&r])));
    let html = html(&meta(), &targets, &task);
    let doc = check_document(&html);
    assert_eq!(count(&doc, "svg"), 5);
    assert!(html.contains("(none)"), "the empty prediction is named");
    // Nothing at all.
    let empty = super::html(&meta(), &Map::new(), &task);
    let doc = check_document(&empty);
    assert_eq!(count(&doc, "svg"), 0);
    assert!(empty.contains("No targets were evaluated."));
    // Summaries without the classification details (an older summary.json).
    let mut bare = Map::new();
    bare.insert("a".into(), json!({"items": 3, "accuracy": 1.0}));
    let html = super::html(&meta(), &bare, &task);
    let doc = check_document(&html);
    assert_eq!(count(&doc, "svg"), 3, "scatter and bars only");
    assert!(html.contains("<td>–</td>"));
}

#[test]
fn many_classes_stay_legible() {
    let labels = names(77);
    let targets = classify_summaries(&labels, 308, &[("a", 0.4, 50.0), ("b", 0.6, 80.0)]);
    let html = html(&meta(), &targets, &classify_task(&labels));
    let doc = check_document(&html);
    assert!(html.contains("The 20 best and the 20 worst of 77 classes"));
    assert!(html.contains("… 37 classes left out …"));
    assert!(html.contains("axis labels are left out"));
    // 40 class rows, each with its label as hover text.
    let class_svg = doc
        .descendants()
        .find(|n| n.has_tag_name("svg") && n.attribute("aria-label") == Some("F1 per class"))
        .unwrap();
    let rows = class_svg
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("text-anchor") == Some("end"))
        .count();
    assert_eq!(rows, 40);
    assert!(html.len() < 600_000, "{} bytes", html.len());
}

#[test]
fn other_tasks_draw_their_metrics_and_cost() {
    let mut targets = Map::new();
    targets.insert(
        "local".into(),
        json!({"items": 5, "errors": 0, "rouge1": 0.41, "rouge2": 0.18, "rougeL": 0.3,
               "rougeLsum": 0.35, "bleu": 12.5, "latency_p50_ms": 900.0, "latency_p95_ms": 1500.0,
               "latency_p99_ms": 1600.0, "items_per_s": 1.1, "tokens_per_s": 40.0}),
    );
    targets.insert(
        "priced".into(),
        json!({"items": 5, "errors": 1, "rouge1": 0.5, "rouge2": 0.2, "rougeL": 0.33,
               "rougeLsum": 0.4, "latency_p50_ms": 400.0, "items_per_s": 2.5,
               "cost_per_1k_usd": 0.0123}),
    );
    let html = html(&meta(), &targets, &Task::Summarize);
    let doc = check_document(&html);
    assert_eq!(count(&doc, "svg"), 3);
    for m in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
        assert!(html.contains(&format!("— {m}: ")), "{m} bar");
    }
    assert!(html.contains("<th>cost_<wbr/>per_<wbr/>1k_<wbr/>usd</th>"));
    assert!(html.contains("$0.0123 / 1k items"));
    assert!(html.contains("local, no price"));
    assert!(!html.contains("F1 per class"));
    let md = markdown(&Task::Summarize, &targets);
    assert!(md.starts_with("| target | items | errors | rouge1 | rouge2 | rougeL | rougeLsum | bleu | latency_p50_ms |"));
    assert!(md.contains("| priced | 5 | 1 | 0.5000 | 0.2000 | 0.3300 | 0.4000 | – | 400.0 |"));
    assert!(md.trim_end().ends_with("| 0.0123 |"), "{md}");

    let qa: Map<String, Value> = [("m".to_string(), json!({"exact_match": 0.25, "f1": 0.5}))]
        .into_iter()
        .collect();
    let html = super::html(&meta(), &qa, &Task::Qa);
    check_document(&html);
    assert!(html.contains("m — exact_match: 0.250") && html.contains("m — f1: 0.500"));
    let ex: Map<String, Value> = [(
        "m".to_string(),
        json!({"field_precision": 0.8, "field_recall": 0.6, "field_f1": 0.686, "schema_valid_rate": 1.0}),
    )]
    .into_iter()
    .collect();
    let html = super::html(&meta(), &ex, &Task::Extract { schema: json!({}) });
    check_document(&html);
    for m in [
        "field_precision",
        "field_recall",
        "field_f1",
        "schema_valid_rate",
    ] {
        assert!(html.contains(&format!("m — {m}: ")), "{m}");
    }
}

#[test]
fn markdown_keeps_the_terminal_columns() {
    let labels = names(3);
    let targets = classify_summaries(&labels, 12, &[("smollm2:135m", 1.0, 10.0)]);
    let md = markdown(&classify_task(&labels), &targets);
    let mut lines = md.lines();
    assert_eq!(
        lines.next(),
        Some("| target | items | errors | accuracy | macro_f1 | micro_f1 | latency_p50_ms | latency_p95_ms | latency_p99_ms | items_per_s | tokens_per_s | peak_rss_mb |")
    );
    assert_eq!(
        lines.next(),
        Some("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    );
    assert!(lines
        .next()
        .unwrap()
        .starts_with("| smollm2:135m | 12 | 0 | 1.0000 | 1.0000 | 1.0000 |"));
}

#[test]
fn ttft_and_route_backends_get_columns_when_present() {
    let r = |i: usize, ttft: Option<f64>, backend: &str| ItemResult {
        target: "http://h/v1#auto".into(),
        index: i,
        input: "q".into(),
        expected: json!("a"),
        prediction: json!("a"),
        metrics: Map::new(),
        latency_ms: 100.0,
        prompt_tokens: 5,
        completion_tokens: 3,
        ttft_ms: ttft,
        served: Some(crate::remote::Served {
            backend: Some(backend.into()),
            route_reason: Some("default".into()),
            cost_usd: None,
        }),
        error: None,
    };
    let rs = [
        r(0, Some(20.0), "small"),
        r(1, Some(40.0), "large"),
        r(2, None, "small"),
    ];
    let refs: Vec<&ItemResult> = rs.iter().collect();
    let s = summarize(&Task::Qa, &refs);
    assert_eq!(s["ttft_p50_ms"], json!(20.0));
    assert_eq!(s["ttft_p95_ms"], json!(40.0));
    assert_eq!(s[BACKENDS], json!({"small": 2, "large": 1}));
    let mut targets = Map::new();
    targets.insert("http://h/v1#auto".into(), Value::Object(s));
    let cols = columns(&Task::Qa, &targets);
    assert!(
        cols.contains(&"ttft_p95_ms") && cols.contains(&BACKENDS),
        "{cols:?}"
    );
    let md = markdown(&Task::Qa, &targets);
    assert!(md.contains("| small 2, large 1 |"), "{md}");
    // Classification has neither.
    let labels = names(3);
    let c = classify_summaries(&labels, 12, &[("m", 1.0, 10.0)]);
    let cols = columns(&classify_task(&labels), &c);
    assert!(!cols.contains(&"ttft_p50_ms") && !cols.contains(&BACKENDS));
}

#[test]
fn confusions_are_ranked() {
    let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let m = vec![vec![5, 3, 0], vec![1, 4, 0], vec![0, 3, 2]];
    assert_eq!(
        top_confusions(&labels, &m, 2),
        vec![("a", "b", 3), ("c", "b", 3)]
    );
    assert!(top_confusions(&labels, &[vec![1, 0, 0], vec![0, 1, 0], vec![0, 0, 1]], 5).is_empty());
    // A malformed matrix is not drawn.
    assert!(matrix(&json!({"labels": ["a", "b"], "confusion": [[1, 0]]})).is_none());
    assert!(matrix(&json!({"labels": ["a"], "confusion": [[1]]})).is_some());
}

#[test]
fn machine_and_time_are_filled() {
    let m = Meta::new("t", "d");
    assert!(
        m.created.ends_with(" UTC") && m.created.len() == 20,
        "{}",
        m.created
    );
    assert!(!m.machine.is_empty());
}

#[test]
fn remote_targets_are_labelled_as_such() {
    let labels = names(3);
    let mut targets = classify_summaries(
        &labels,
        30,
        &[("local", 0.6, 40.0), ("http://h/v1#m", 0.8, 300.0)],
    );
    targets["http://h/v1#m"]["kind"] = json!("remote");
    let html = html(&meta(), &targets, &classify_task(&labels));
    check_document(&html);
    assert_eq!(html.matches("remote, no price").count(), 2 + 1);
    assert_eq!(html.matches("local, no price").count(), 2 + 1);
}

#[test]
fn hardware_section_alone_and_with_an_evaluation() {
    let figures = |k: f64| {
        let mut s = Map::new();
        for (i, c) in HARDWARE_COLUMNS.iter().enumerate() {
            s.insert((*c).into(), json!(k * (i + 1) as f64 + 0.25));
        }
        for (c, v) in [
            ("requests", json!(24)),
            ("prompt_tokens_mean", json!(96.4)),
            ("gen_tokens", json!(64)),
            ("bench_prompt_tokens", json!(512)),
            ("bench_gen_tokens", json!(128)),
            ("bench_reps", json!(3)),
        ] {
            s.insert(c.into(), v);
        }
        Value::Object(s)
    };
    let mut hw = Map::new();
    hw.insert("smollm2:135m".into(), figures(10.0));
    hw.insert("qwen2.5-coder:0.5b".into(), figures(3.0));
    let md = hardware_markdown(&hw);
    assert!(
        md.starts_with("| target | prefill_tok_s | decode_tok_s |"),
        "{md}"
    );
    assert!(md.contains("| smollm2:135m | 10.2 | 20.2 |"), "{md}");
    let mut m = meta();
    m.dataset.clear();
    let alone = html_report(&m, None, Some(&hw));
    let doc = check_document(&alone);
    assert_eq!(count(&doc, "svg"), 2, "throughput and latency charts");
    assert!(alone.contains("id=\"hardware\"") && !alone.contains("id=\"summary\""));
    assert!(alone.contains("a 512-token prompt, 128 generated tokens, medians of 3 runs"));
    assert!(alone.contains("over 24 requests") && alone.contains("mean 96 prompt"));
    assert!(!alone.contains("<dt>task</dt>") && !alone.contains("<dt>dataset</dt>"));
    // (Map order depends on serde_json's features.)
    let hw_names: Vec<&str> = hw.keys().map(String::as_str).collect();
    assert!(alone.contains(&format!(
        "<dt>hardware check</dt><dd>{}</dd>",
        hw_names.join(", ")
    )));
    // With an evaluation: both sections, the same colour for the same target.
    let labels = names(3);
    let targets = classify_summaries(
        &labels,
        30,
        &[("smollm2:135m", 0.6, 40.0), ("x", 0.7, 60.0)],
    );
    let both = html_report(
        &meta(),
        Some((&classify_task(&labels), &targets)),
        Some(&hw),
    );
    check_document(&both);
    assert!(both.contains("id=\"summary\"") && both.contains("id=\"hardware\""));
    let swatch = |c: &str, name: &str| format!("background:{c}\"></span>{name}</td>");
    assert_eq!(both.matches(&swatch(colour(0), "smollm2:135m")).count(), 2);
    assert!(!both.contains(&swatch(colour(0), "qwen2.5-coder:0.5b")));
    assert!(!both.contains(&swatch(colour(1), "qwen2.5-coder:0.5b")));
}
