//! The same model as a local target and as a remote one (a real `bantam serve`): the
//! same answers, the server's routes and charges per item, time to first token.

use serde_json::{json, Value};

use crate::common::{bantam, Server, MODEL};
use crate::{assert_timed, eval_ok, items, predictions, summary, TICKETS};

#[test]
fn eval_local_and_remote_targets_side_by_side() {
    // One thread each: the test machine may have two cores shared by others. The
    // server also has a route `auto`: questions about capitals go to the backend
    // `alt` (the same model under another name, priced), the rest to `small`.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[backends]]\nname = \"small\"\ntype = \"local\"\nmodel = \"{MODEL}\"\n\
             [[backends]]\nname = \"alt\"\ntype = \"local\"\nmodel = \"{MODEL}\"\n\
             price = {{ input_per_1m = 1000.0, output_per_1m = 2000.0 }}\n\
             [[routes]]\nname = \"auto\"\nbackends = [\"small\", \"alt\"]\n\
             [[routes.rules]]\nbackend = \"alt\"\nreason = \"geo\"\nkeywords = [\"capital\"]\n\
             [usage]\nenabled = false\n"
        ),
    )
    .unwrap();
    let server = Server::start(&["--threads", "1", "--config", cfg.to_str().unwrap()]);
    let remote = format!("{}/v1#{MODEL}", server.base);

    // QA with a custom prompt template: the same messages, greedy on both sides.
    let ds = dir.path().join("qa.jsonl");
    std::fs::write(
        &ds,
        "{\"input\": \"What is the capital of France?\", \"expected\": [\"Paris\"]}\n\
         {\"input\": \"How many days are in a week?\", \"expected\": [\"7\", \"seven\"]}\n\
         {\"input\": \"What color is the sky on a clear day?\", \"expected\": [\"blue\"]}\n",
    )
    .unwrap();
    let tpl = dir.path().join("qa.txt");
    std::fs::write(
        &tpl,
        "[system]\nYou answer quiz questions with one or two words.\n[user]\nQuestion: {input}\nAnswer:\n",
    )
    .unwrap();
    let out = dir.path().join("qa");
    let o = bantam()
        .arg("eval")
        .arg(&ds)
        .args(["--task", "qa", "--target", MODEL, "--target", &remote])
        .args(["--threads", "1", "--price-in", "0.15", "--price-out", "0.6"])
        .arg("--prompt-template")
        .arg(&tpl)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains(&format!("| {remote} | 3 | 0 |")), "{table}");
    let it = items(&out.join("items.jsonl"));
    assert_eq!(it.len(), 6);
    let (local, far) = (predictions(&it, MODEL), predictions(&it, &remote));
    assert_eq!(local.len(), 3);
    // The same model, prompt and greedy decoding: the same answers, word for word.
    assert_eq!(local, far);
    assert!(local.iter().all(|p| !p.as_str().unwrap().is_empty()));
    let s = summary(&out);
    let (l, r) = (&s["targets"][MODEL], &s["targets"][remote.as_str()]);
    assert_eq!(l["kind"], "local");
    assert_eq!(
        (r["kind"].as_str(), r["model"].as_str()),
        (Some("remote"), Some(MODEL))
    );
    assert_eq!(r["base_url"], format!("{}/v1", server.base));
    assert_eq!(l["f1"], r["f1"]);
    assert!(
        r["latency_p50_ms"].as_f64().unwrap() > 0.0 && r["items_per_s"].as_f64().unwrap() > 0.0
    );
    // Memory is measured for local targets only; token prices cost remote ones.
    assert!(l["peak_rss_mb"].as_f64().unwrap() > 0.0);
    assert!(r.get("peak_rss_mb").is_none(), "{r}");
    assert!(l.get("cost_per_1k_usd").is_none(), "{l}");
    let rem: Vec<&Value> = it
        .iter()
        .filter(|x| x["target"] == remote.as_str())
        .collect();
    let usd: f64 = rem
        .iter()
        .map(|x| {
            let p = x["prompt_tokens"].as_f64().unwrap();
            let c = x["completion_tokens"].as_f64().unwrap();
            assert!(p > 0.0 && c > 0.0, "{x}");
            (p * 0.15 + c * 0.6) / 1e6
        })
        .sum();
    let cost = r["cost_per_1k_usd"].as_f64().unwrap();
    assert!((cost - usd / 3.0 * 1000.0).abs() < 1e-12, "{cost}");
    // The server counted the same prompt as the local engine: the template was used
    // on both sides.
    for (a, b) in it.iter().filter(|x| x["target"] == MODEL).zip(&rem) {
        assert_eq!(a["prompt_tokens"], b["prompt_tokens"]);
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("remote price per 1M tokens") && html.contains("qa.txt"));
    // Time to the first token of every generated answer: the local engine's, and
    // the remote one's streamed first chunk; within the item's latency.
    for x in &it {
        let (ttft, lat) = (
            x["ttft_ms"].as_f64().unwrap(),
            x["latency_ms"].as_f64().unwrap(),
        );
        assert!(ttft > 0.0 && ttft <= lat, "{x}");
    }
    for t in [l, r] {
        assert!(t["ttft_p95_ms"].as_f64().unwrap() >= t["ttft_p50_ms"].as_f64().unwrap());
    }
    // The remote Bantam said which backend answered (a plain model: itself).
    for x in &rem {
        assert_eq!(x["served"]["backend"], MODEL, "{x}");
        assert_eq!(x["served"]["route_reason"], "direct", "{x}");
    }
    assert_eq!(r["backends"], json!({MODEL: 3}));
    assert!(it
        .iter()
        .filter(|x| x["target"] == MODEL)
        .all(|x| x.get("served").is_none()));

    // Through the route: each item records the backend the route chose.
    let routed = format!("{}/v1#auto", server.base);
    let out = dir.path().join("routed");
    let o = bantam()
        .arg("eval")
        .arg(&ds)
        .args(["--task", "qa", "--target", &routed, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let it = items(&out.join("items.jsonl"));
    for x in &it {
        let geo = x["input"].as_str().unwrap().contains("capital");
        let (b, why) = if geo {
            ("alt", "rule:geo")
        } else {
            ("small", "default")
        };
        assert_eq!(
            (
                x["served"]["backend"].as_str(),
                x["served"]["route_reason"].as_str()
            ),
            (Some(b), Some(why)),
            "{x}"
        );
        // What the server charged (streamed: its usage chunk's cost_usd).
        let (p, c) = (
            x["prompt_tokens"].as_f64().unwrap(),
            x["completion_tokens"].as_f64().unwrap(),
        );
        let usd = if geo {
            (p * 1000.0 + c * 2000.0) / 1e6
        } else {
            0.0
        };
        let charged = x["served"]["cost_usd"].as_f64().unwrap();
        assert!((charged - usd).abs() < 1e-9 && (usd > 0.0) == geo, "{x}");
    }
    let s = summary(&out);
    assert_eq!(
        s["targets"][routed.as_str()]["backends"],
        json!({"alt": 1, "small": 2})
    );
    assert!(std::fs::read_to_string(out.join("summary.md"))
        .unwrap()
        .contains("| small 2, alt 1 |"));

    // Classification: the local target scores each label's tokens; the remote one
    // decodes greedily under a `choice` constraint. The constraint admits every
    // tokenisation of a label (say "d" + "up" + …, where the scorer follows only the
    // canonical one), so a label can win there with a non-canonical first token;
    // the two mostly agree but need not on every item. Every remote answer must be
    // one of the labels, and most must agree.
    let csv = dir.path().join("tickets.csv");
    let mut text = String::from("text,category\n");
    for (t, c) in TICKETS {
        text.push_str(&format!("{t},{c}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.path().join("cls");
    let o = bantam()
        .arg("eval")
        .arg(&csv)
        .args([
            "--task",
            "classify",
            "--input-field",
            "text",
            "--expected-field",
            "category",
        ])
        .args([
            "--target",
            MODEL,
            "--target",
            &remote,
            "--threads",
            "1",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let it = items(&out.join("items.jsonl"));
    let (local, far) = (predictions(&it, MODEL), predictions(&it, &remote));
    assert_eq!((local.len(), far.len()), (6, 6));
    let labels = ["card_arrival", "duplicate_charge", "change_pin"];
    assert!(
        far.iter().all(|p| labels.contains(&p.as_str().unwrap())),
        "{far:?}"
    );
    let agree = local.iter().zip(&far).filter(|(a, b)| a == b).count();
    assert!(agree >= 4, "local {local:?} remote {far:?}");
    // A label is one call, not streamed: its cost is the x-bantam-cost-usd header.
    for x in it.iter().filter(|x| x["target"] == remote.as_str()) {
        let served = (
            x["served"]["backend"].as_str(),
            x["served"]["cost_usd"].as_f64(),
        );
        assert_eq!(served, (Some(MODEL), Some(0.0)), "{x}");
    }
    let s = summary(&out);
    assert!(s["targets"][remote.as_str()]["accuracy"].is_number());
    assert!(s["targets"][remote.as_str()]["confusion"].is_array());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("remote, no price") && html.contains("local, no price"));
    // Labels are scored or chosen, not generated: no time to first token.
    assert!(it.iter().all(|x| x.get("ttft_ms").is_none()), "{it:?}");
    let default_conf: Vec<Value> = it
        .iter()
        .filter(|x| x["target"] == MODEL)
        .map(|x| x["metrics"]["confidence"].clone())
        .collect();

    // A classification template: local scoring and the remote constraint both
    // follow it; the server counts the prompt it makes.
    let tpl = dir.path().join("cls.txt");
    std::fs::write(
        &tpl,
        "[system]\nYou route bank support tickets. Reply with one category name.\nCategories:\n{labels}\n[user]\nTicket: {input}\n",
    )
    .unwrap();
    let out = dir.path().join("cls-tpl");
    let o = bantam()
        .arg("eval")
        .arg(&csv)
        .args([
            "--task",
            "classify",
            "--input-field",
            "text",
            "--expected-field",
            "category",
        ])
        .args([
            "--target",
            MODEL,
            "--target",
            &remote,
            "--threads",
            "1",
            "--prompt-template",
        ])
        .arg(&tpl)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let it2 = items(&out.join("items.jsonl"));
    let conf: Vec<Value> = it2
        .iter()
        .filter(|x| x["target"] == MODEL)
        .map(|x| x["metrics"]["confidence"].clone())
        .collect();
    assert_eq!(conf.len(), 6);
    assert_ne!(conf, default_conf, "the template changed nothing");
    let far2 = predictions(&it2, &remote);
    assert!(
        far2.iter().all(|p| labels.contains(&p.as_str().unwrap())),
        "{far2:?}"
    );
    let prompt_tokens = |items: &[Value]| -> Vec<u64> {
        items
            .iter()
            .filter(|x| x["target"] == remote.as_str())
            .map(|x| x["prompt_tokens"].as_u64().unwrap())
            .collect()
    };
    assert_ne!(prompt_tokens(&it), prompt_tokens(&it2));

    // A server that is gone stops the run with a clear message and records nothing
    // for the target, so a rerun continues.
    drop(server);
    let out = dir.path().join("gone");
    let o = bantam()
        .arg("eval")
        .arg(&ds)
        .args(["--task", "qa", "--target", &remote, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("connect") && err.contains("run the same command again"),
        "{err}"
    );
    assert!(items(&out.join("items.jsonl")).is_empty());
}

#[test]
fn eval_generated_answers_are_timed_locally_and_remotely() {
    // Extraction and summarisation: the local engine's first token, and the remote
    // answers streamed (structured output included) and timed at their first chunk.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--threads", "1"]);
    let remote = format!("{}/v1#{MODEL}", server.base);
    let targets = ["--target", MODEL, "--target", &remote, "--threads", "1"];
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": "string"}}, "required": ["name", "city"], "additionalProperties": false}"#,
    )
    .unwrap();
    let ds = dir.path().join("people.jsonl");
    std::fs::write(
        &ds,
        "{\"input\": \"Maria Lopez lives in Madrid.\", \"expected\": {\"name\": \"Maria Lopez\", \"city\": \"Madrid\"}}\n\
         {\"input\": \"John Smith moved to Boston last year.\", \"expected\": {\"name\": \"John Smith\", \"city\": \"Boston\"}}\n",
    )
    .unwrap();
    let mut args = vec!["--task", "extract", "--schema", schema.to_str().unwrap()];
    args.extend(targets);
    let it = eval_ok(&ds, &args, &dir.path().join("ex"));
    assert_eq!(it.len(), 4);
    assert_timed(&it, &[MODEL, &remote]);
    let s = summary(&dir.path().join("ex"));
    for t in [MODEL, remote.as_str()] {
        let x = &s["targets"][t];
        assert!(
            x["ttft_p95_ms"].as_f64() >= x["ttft_p50_ms"].as_f64(),
            "{x}"
        );
        assert!(x["ttft_p50_ms"].as_f64().unwrap() > 0.0, "{x}");
    }
    let md = std::fs::read_to_string(dir.path().join("ex/summary.md")).unwrap();
    assert!(md.contains("ttft_p50_ms"), "{md}");

    let ds = dir.path().join("news.jsonl");
    std::fs::write(
        &ds,
        "{\"input\": \"The city council met on Tuesday and voted 7 to 2 to fund new bicycle lanes on Main Street. Construction starts in March.\", \"expected\": \"The council voted to fund bicycle lanes; work starts in March.\"}\n",
    )
    .unwrap();
    let mut args = vec!["--task", "summarize"];
    args.extend(targets);
    let it = eval_ok(&ds, &args, &dir.path().join("sum"));
    assert_eq!(it.len(), 2);
    assert_timed(&it, &[MODEL, &remote]);
    let html = std::fs::read_to_string(dir.path().join("sum/report.html")).unwrap();
    assert!(
        html.contains("<th>ttft_<wbr/>p50_<wbr/>ms</th>"),
        "no TTFT column in the report"
    );
}
