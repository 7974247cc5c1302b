//! The HTML report in a real browser: reports for realistic summaries (three
//! targets over ten classes, two over a summarization set) are opened in headless
//! Chromium, which must log no console message and make no network request, take a
//! screenshot that shows the charts' colours and text, and produce a DOM with the
//! table and every chart.
//!
//! Console messages come from Chromium's own log (`--enable-logging=stderr`: each
//! message of the page is a `…:CONSOLE…]` line), network requests from its NetLog
//! (`--log-net-log`: requests made for a `file://` page). A deliberately broken page
//! shows both detectors fire. Chromium is installed by scripts/setup.sh; without it
//! this test fails unless `BANTAM_SKIP_BROWSER=1`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bantam_eval::report::{self, Meta};
use bantam_eval::rouge;
use bantam_eval::run::{summarize, ItemResult, Task};
use serde_json::{json, Map, Value};

/// One browser at a time: the machine may have two cores.
static BROWSER: Mutex<()> = Mutex::new(());

/// The browser to use, or `None` when the test is to be skipped.
fn browser() -> Option<PathBuf> {
    if std::env::var("BANTAM_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("BANTAM_SKIP_BROWSER=1: not rendering the report in a browser");
        return None;
    }
    if let Some(p) = std::env::var_os("BANTAM_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    panic!(
        "headless Chromium is needed to check the HTML report: run scripts/setup.sh \
         (it installs the `chromium` package; CI does), point BANTAM_CHROMIUM at a \
         Chromium or Chrome binary, or set BANTAM_SKIP_BROWSER=1 to skip this test"
    );
}

/// Runs `cmd` to its end or kills it after `limit`; returns (stdout, stderr).
fn run(mut cmd: Command, limit: Duration) -> (String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the browser");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let (o, e) = (t_out.join().unwrap(), t_err.join().unwrap());
            assert!(status.success(), "browser failed ({status}):\n{e}");
            return (o, e);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "browser still running after {limit:?}:\n{}",
                t_err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the browser made of a page.
struct Rendered {
    screenshot: Vec<u8>,
    /// The page's console messages.
    console: Vec<String>,
    /// Network requests the page made.
    requests: Vec<String>,
    /// The DOM after loading, serialised.
    dom: String,
}

fn browser_command(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Chromium's NetLog: the URLs of requests made on behalf of a `file://` page (the
/// browser's own background requests have another isolation key).
fn page_requests(netlog: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(netlog).expect("the browser wrote no NetLog");
    let log: Value = serde_json::from_str(&text).expect("NetLog is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("NetLog constants name URL_REQUEST_START_JOB");
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .expect("NetLog events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| {
            let p = &e["params"];
            let key = p["network_isolation_key"].as_str().unwrap_or("");
            let site = p["site_for_cookies"].as_str().unwrap_or("");
            key.starts_with("file://") || site.contains("site=file://")
        })
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

fn render(browser: &Path, page: &Path) -> Rendered {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = page.parent().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let shot = dir.join("screenshot.png");
    let netlog = dir.join("netlog.json");
    let _ = std::fs::remove_file(&shot);
    let limit = Duration::from_secs(120);
    let mut c = browser_command(browser, &dir.join("profile"));
    c.arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(&url);
    let (_, log) = run(c, limit);
    let console: Vec<String> = log
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    let mut c = browser_command(browser, &dir.join("profile"));
    c.arg("--dump-dom").arg(&url);
    let (dom, _) = run(c, limit);
    Rendered {
        screenshot: std::fs::read(&shot)
            .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display())),
        console,
        requests: page_requests(&netlog),
        dom,
    }
}

/// Decodes a screenshot: (width, height, RGB pixels).
fn pixels(png_bytes: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let px = buf[..info.buffer_size()]
        .chunks_exact(step)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, px)
}

/// Pixels within 6 of `rgb` in every channel.
fn near(px: &[[u8; 3]], rgb: [u8; 3]) -> usize {
    px.iter()
        .filter(|p| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= 6))
        .count()
}

fn out_dir(case: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("report_render")
        .join(case);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A number in [0, 1) from `a`, `b` (a fixed hash, so fixtures are the same on
/// every run).
fn unit(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

const CLASSES: [&str; 10] = [
    "card_arrival",
    "card_linking",
    "exchange_rate",
    "cash_withdrawal_charge",
    "lost_or_stolen_card",
    "pending_transfer",
    "refund_not_showing_up",
    "top_up_failed",
    "verify_my_identity",
    "wrong_amount_of_cash_received",
];

/// Three targets over 200 items of ten classes: per target a hit rate, a latency,
/// and classes it tends to mistake for others.
fn classification() -> (Task, Map<String, Value>) {
    let labels: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();
    let task = Task::Classify {
        labels: labels.clone(),
    };
    let mut targets = Map::new();
    for (t, (name, acc, ms, rss)) in [
        ("smollm2:135m", 0.35, 160.0, 390.0),
        ("gemma3:270m", 0.55, 105.0, 780.0),
        ("qwen2.5-coder:0.5b", 0.8, 190.0, 880.0),
    ]
    .into_iter()
    .enumerate()
    {
        let results: Vec<ItemResult> = (0..200)
            .map(|i| {
                let c = i % labels.len();
                // Harder classes are hit less often.
                let p_hit = acc * (1.1 - 0.1 * c as f64);
                let pred = if unit(i as u64, t as u64) < p_hit {
                    c
                } else {
                    (c + 1 + (unit(i as u64, 7 + t as u64) * 3.0) as usize) % labels.len()
                };
                ItemResult {
                    target: name.into(),
                    index: i,
                    input: format!("ticket {i}"),
                    expected: json!(labels[c]),
                    prediction: json!(labels[pred]),
                    metrics: Map::new(),
                    latency_ms: ms * (0.6 + 1.2 * unit(i as u64, 50 + t as u64)),
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    ttft_ms: None,
                    served: None,
                    error: None,
                }
            })
            .collect();
        let refs: Vec<&ItemResult> = results.iter().collect();
        let mut s = summarize(&task, &refs);
        s.insert("peak_rss_mb".into(), json!(rss));
        targets.insert(name.into(), Value::Object(s));
    }
    (task, targets)
}

/// Two targets summarising the same five texts, metrics computed as `bantam eval`
/// does.
fn summarization() -> (Task, Map<String, Value>) {
    let refs = [
        "The central bank raised interest rates by half a point to curb inflation.",
        "Heavy rain flooded the old town and closed the main bridge for two days.",
        "The company reported record profits as cloud revenue grew by forty percent.",
        "Scientists found water ice in craters near the moon's south pole.",
        "The city will add three new tram lines and extend night service next year.",
    ];
    let outputs = [
        [
            "Interest rates were raised by the central bank to fight inflation.",
            "Rain flooded the old town; the bridge is closed.",
            "Record profits, cloud revenue up forty percent.",
            "Water ice was found near the moon's south pole.",
            "New tram lines are planned.",
        ],
        [
            "The bank changed rates.",
            "There was weather in the town.",
            "The company made money.",
            "Scientists studied the moon.",
            "The city has trams.",
        ],
    ];
    let mut targets = Map::new();
    for ((name, ms), outs) in [("qwen2.5-coder:1.5b", 2400.0), ("smollm2:135m", 700.0)]
        .into_iter()
        .zip(outputs)
    {
        let results: Vec<ItemResult> = refs
            .iter()
            .zip(outs)
            .enumerate()
            .map(|(i, (r, o))| {
                let sc = rouge::score_multi(&[r.to_string()], o);
                let mut m = Map::new();
                m.insert("rouge1".into(), json!(sc.rouge1.fmeasure));
                m.insert("rouge2".into(), json!(sc.rouge2.fmeasure));
                m.insert("rougeL".into(), json!(sc.rouge_l.fmeasure));
                m.insert("rougeLsum".into(), json!(sc.rouge_lsum.fmeasure));
                ItemResult {
                    target: name.into(),
                    index: i,
                    input: format!("article {i}"),
                    expected: json!(r),
                    prediction: json!(o),
                    metrics: m,
                    latency_ms: ms * (1.0 + 0.1 * i as f64),
                    prompt_tokens: 0,
                    completion_tokens: 20 + i as u32,
                    ttft_ms: Some(ms * 0.2 + i as f64),
                    served: None,
                    error: None,
                }
            })
            .collect();
        let rs: Vec<&ItemResult> = results.iter().collect();
        targets.insert(name.into(), Value::Object(summarize(&Task::Summarize, &rs)));
    }
    (Task::Summarize, targets)
}

fn meta(dataset: &str) -> Meta {
    Meta {
        title: format!("bantam eval: {dataset}"),
        dataset: dataset.into(),
        created: "2025-01-31 14:05 UTC".into(),
        machine: "fixture machine · 2 logical CPUs".into(),
        details: Vec::new(),
    }
}

/// Hardware-check figures of two local models.
fn hardware() -> Map<String, Value> {
    let mut hw = Map::new();
    for (name, speed) in [("smollm2:135m", 1.0), ("qwen2.5-coder:0.5b", 0.3)] {
        hw.insert(
            name.into(),
            json!({
                "requests": 24, "prompt_tokens_mean": 88.6, "gen_tokens": 64,
                "prefill_tok_s": 480.0 * speed, "decode_tok_s": 85.0 * speed,
                "e2e_tokens_per_s": 60.0 * speed,
                "ttft_p50_ms": 180.0 / speed, "ttft_p95_ms": 420.0 / speed,
                "latency_p50_ms": 950.0 / speed, "latency_p95_ms": 1300.0 / speed,
                "latency_p99_ms": 1400.0 / speed, "peak_rss_mb": 230.0 / speed,
                "bench_prompt_tokens": 512, "bench_gen_tokens": 128, "bench_reps": 3,
            }),
        );
    }
    hw
}

/// Renders `html` and checks what every report must satisfy; returns the result.
fn check_report(browser: &Path, case: &str, html: &str, charts: usize) -> Rendered {
    let dir = out_dir(case);
    let page = dir.join("report.html");
    std::fs::write(&page, html).unwrap();
    let r = render(browser, &page);
    assert!(
        r.console.is_empty(),
        "console messages:\n{}",
        r.console.join("\n")
    );
    assert!(r.requests.is_empty(), "network requests: {:?}", r.requests);
    // The browser parsed every chart and element the source has.
    assert_eq!(
        r.dom.matches("<svg").count(),
        charts,
        "svg elements in the DOM"
    );
    assert!(r.dom.contains("<table"));
    for tag in ["<rect", "<text", "<circle", "<td", "<figure"] {
        assert_eq!(
            r.dom.matches(tag).count(),
            html.matches(tag).count(),
            "{tag} elements in the DOM and the source"
        );
    }
    assert!(r.dom.contains("</footer>"));
    let (w, h, px) = pixels(&r.screenshot);
    assert_eq!((w, h), (1280, 2000));
    assert!(
        r.screenshot.len() > 40_000,
        "screenshot of {} bytes",
        r.screenshot.len()
    );
    let background = near(&px, [0xf6, 0xf7, 0xf9]) + near(&px, [0xff, 0xff, 0xff]);
    assert!(
        background < px.len() * 97 / 100,
        "the screenshot is nearly blank ({background} of {} pixels background)",
        px.len()
    );
    // Text was drawn (glyphs are dark), and the first two targets' colours are there
    // (table swatches, points and bars).
    let dark = px.iter().filter(|p| p.iter().all(|&c| c < 90)).count();
    assert!(
        dark > 5_000,
        "{dark} dark pixels: no text rendered? (fonts-dejavu-core)"
    );
    for rgb in [[0x00, 0x72, 0xb2], [0xe6, 0x9f, 0x00]] {
        assert!(
            near(&px, rgb) > 500,
            "colour {rgb:?} hardly in the screenshot"
        );
    }
    eprintln!("{case}: {}", page.display());
    r
}

#[test]
fn reports_render_in_headless_chromium() {
    let Some(browser) = browser() else {
        return;
    };
    let started = Instant::now();
    let (task, targets) = classification();
    let html = report::html(&meta("banking-tickets.csv"), &targets, &task);
    // Scatter, two bar charts, F1 per class, one heat map per target.
    let r = check_report(&browser, "classification", &html, 7);
    for name in targets.keys() {
        assert!(
            r.dom.contains(&format!("{name}</td>")),
            "{name} in the table"
        );
    }
    assert!(r.dom.contains("wrong_amount_of_cash_received"));
    let (task, targets) = summarization();
    let html = report::html(&meta("news.jsonl"), &targets, &task);
    let r = check_report(&browser, "summarization", &html, 3);
    assert!(r.dom.contains("rougeLsum"));
    // The hardware check alone: its table, throughput and latency bars.
    let html = report::html_report(&meta(""), None, Some(&hardware()));
    let r = check_report(&browser, "hardware", &html, 2);
    assert!(r.dom.contains("Hardware check") && r.dom.contains("decode_<wbr>tok_<wbr>s"));
    eprintln!(
        "rendered and checked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The detectors fire on a page with a script error and external resources.
#[test]
fn broken_pages_are_detected() {
    let Some(browser) = browser() else {
        return;
    };
    let dir = out_dir("broken");
    let page = dir.join("report.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"/><title>broken</title>\
         <link rel=\"stylesheet\" href=\"http://127.0.0.1:9/style.css\"/></head><body>\
         <p>text</p><script>undefined_function();</script></body></html>",
    )
    .unwrap();
    let r = render(&browser, &page);
    assert!(
        r.console
            .iter()
            .any(|l| l.contains("Uncaught ReferenceError")),
        "{:?}",
        r.console
    );
    assert_eq!(r.requests, vec!["http://127.0.0.1:9/style.css".to_string()]);
    assert!(r.dom.contains("<p>text</p>"));
}
