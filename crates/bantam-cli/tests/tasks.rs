//! `/v1/extract`, `/v1/summarize` and the task commands of the CLI, on the real models.

mod common;

use common::{bantam, Server, MODEL};
use serde_json::{json, Value};

const QUALITY_MODEL: &str = "qwen2.5-coder:0.5b";

const TICKET: &str = "Hi, this is Maria Lopez (maria.lopez@example.com). Order 4521 arrived broken: two lamps and a rug. Please refund 129.90 EUR.";

fn ticket_schema() -> Value {
    json!({"type": "object", "properties": {
        "customer": {"type": "string", "maxLength": 60},
        "email": {"type": "string", "format": "email"},
        "order_id": {"type": "integer", "minimum": 1},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "items": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 5}},
      "required": ["customer", "email", "order_id", "currency", "items"],
      "additionalProperties": false})
}

#[test]
fn extract_returns_valid_objects_with_spans() {
    let s = Server::start(&[]);
    let (st, v) = s.post(
        "/v1/extract",
        &json!({"model": QUALITY_MODEL, "input": TICKET, "schema": ticket_schema(), "spans": true}),
    );
    assert_eq!(st, 200, "{v}");
    let d = &v["data"];
    assert_eq!(d["customer"], "Maria Lopez", "{v}");
    assert_eq!(d["email"], "maria.lopez@example.com", "{v}");
    assert_eq!(d["order_id"], 4521, "{v}");
    assert_eq!(d["currency"], "EUR", "{v}");
    // Spans point at the text, in characters.
    let chars: Vec<char> = TICKET.chars().collect();
    for key in ["/customer", "/email", "/order_id"] {
        let sp = &v["spans"][key];
        let (a, b) = (
            sp["start"].as_u64().unwrap() as usize,
            sp["end"].as_u64().unwrap() as usize,
        );
        let text: String = chars[a..b].iter().collect();
        assert_eq!(text, sp["text"].as_str().unwrap(), "{key}: {v}");
    }
    for (body, param) in [
        (
            json!({"model": MODEL, "input": TICKET, "schema": {"type": 7}}),
            "schema",
        ),
        (
            json!({"model": MODEL, "input": "  ", "schema": ticket_schema()}),
            "input",
        ),
    ] {
        let (st, v) = s.post("/v1/extract", &body);
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    // A keyword the grammar cannot enforce is validated on the output; a format
    // nothing can check is refused, named.
    let (st, v) = s.post(
        "/v1/extract",
        &json!({"model": MODEL, "input": TICKET, "schema": {"type": "array", "items": {"type": "number"}, "uniqueItems": true}}),
    );
    assert_eq!(st, 200, "{v}");
    let items: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    let mut uniq = items.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), items.len(), "{v}");
    let (st, v) = s.post(
        "/v1/extract",
        &json!({"model": MODEL, "input": TICKET, "schema": {"type": "object", "properties": {"z": {"type": "string", "format": "zipcode"}}}}),
    );
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("schema")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("zipcode"),
        "{v}"
    );
}

#[test]
fn summarize_styles_and_long_inputs() {
    let s = Server::start(&["--ctx-size", "1024"]);
    let short = "The quarterly review found that ticket volume rose 18% after the March release. Most new tickets concerned login failures on Android 14, which engineering traced to an expired certificate and fixed on April 2. Support staffing stays flat; the team will add a self-service password reset in Q3.";
    let (st, v) = s.post(
        "/v1/summarize",
        &json!({"model": QUALITY_MODEL, "input": short, "style": "bullets", "length": 3}),
    );
    assert_eq!(st, 200, "{v}");
    let lines: Vec<&str> = v["summary"].as_str().unwrap().lines().collect();
    assert!((1..=3).contains(&lines.len()), "{v}");
    assert!(lines.iter().all(|l| l.starts_with("- ")), "{v}");
    assert_eq!(v["chunks"], 1);
    assert_eq!(v["levels"], 0);
    // Longer than the 1024-token context: summarised in parts, not truncated.
    let long = format!(
        "{}\n\n{}",
        include_str!("../../../ARCHITECTURE.md"),
        include_str!("../../../README.md")
    );
    let (st, v) = s.post(
        "/v1/summarize",
        &json!({"model": MODEL, "input": long, "max_tokens": 96}),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v["chunks"].as_u64().unwrap() > 1, "{v}");
    assert!(v["levels"].as_u64().unwrap() >= 1, "{v}");
    assert!(!v["summary"].as_str().unwrap().trim().is_empty(), "{v}");
    let (st, v) = s.post(
        "/v1/summarize",
        &json!({"model": MODEL, "input": short, "style": "haiku"}),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "style");
}

#[test]
fn cli_task_commands_over_jsonl_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tickets.jsonl");
    std::fs::write(
        &input,
        "{\"id\": 1, \"text\": \"The app crashes when I log in\"}\n{\"id\": 2, \"text\": \"I was charged twice for my plan\"}\nA plain line\n",
    )
    .unwrap();
    let out = dir.path().join("labelled.jsonl");
    let st = bantam()
        .args([
            "classify",
            QUALITY_MODEL,
            "--labels",
            "billing,technical,sales",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["id"], 1, "records keep their fields");
    assert_eq!(lines[0]["label"], "technical", "{:?}", lines[0]);
    assert_eq!(lines[1]["label"], "billing", "{:?}", lines[1]);
    assert_eq!(lines[2]["text"], "A plain line");
    // One text on the command line: a readable answer.
    let o = bantam()
        .args([
            "classify",
            QUALITY_MODEL,
            "--labels",
            "billing,technical",
            "My invoice is wrong",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let first = text.lines().next().unwrap_or("");
    assert!(
        (first.starts_with("billing") || first.starts_with("technical"))
            && first.contains("confidence"),
        "{text}"
    );
    // Extraction from stdin.
    let schema = dir.path().join("s.json");
    std::fs::write(&schema, ticket_schema().to_string()).unwrap();
    let mut child = bantam()
        .args(["extract", QUALITY_MODEL, "--schema"])
        .arg(&schema)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(TICKET.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["data"]["order_id"], 4521, "{v}");
    // Bad flags say what to do.
    let o = bantam()
        .args(["classify", MODEL, "--labels", "only-one", "text"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least two labels"));
}
