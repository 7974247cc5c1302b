//! Reports of an evaluation: the markdown table the CLI prints and writes to
//! `summary.md`, and [`html`], one self-contained HTML file — inline CSS and inline
//! SVG charts drawn here, no script and no external resource, so it opens anywhere
//! without network — with the run's header, the same table, and charts: quality
//! against latency (with cost per 1k requests when known), the task's quality
//! metrics and latency percentiles per target, and for classification F1 per class
//! and a confusion-matrix heat map per target.
//!
//! Both work on the per-target summaries of [`crate::run::summarize`] (a JSON object
//! per target, as in `summary.json`); a metric that is missing is shown as "–" and
//! left out of the charts.

mod charts;
mod classes;
mod hardware;
mod heatmap;
pub mod svg;

use std::fmt::Write;

use serde_json::{Map, Value};

use crate::run::Task;
use charts::{Point, Series};
use svg::{colour, escape};

pub use hardware::{hardware_markdown, HARDWARE_COLUMNS};

/// What the report's header says about the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    /// Page title.
    pub title: String,
    /// The dataset (a path).
    pub dataset: String,
    /// When the report was made (e.g. [`utc_now`]).
    pub created: String,
    /// The machine the targets ran on (e.g. [`machine`]).
    pub machine: String,
    /// Further header lines (name, value), in order.
    pub details: Vec<(String, String)>,
}

impl Meta {
    /// A header for `dataset`, made now on this machine.
    pub fn new(title: impl Into<String>, dataset: impl Into<String>) -> Meta {
        Meta {
            title: title.into(),
            dataset: dataset.into(),
            created: utc_now(),
            machine: machine(),
            details: Vec::new(),
        }
    }
}

/// The current time as `2025-01-31 14:05 UTC`.
pub fn utc_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_else(|_| t.to_string())
}

/// This machine in one line: CPU model, logical CPUs, memory, operating system.
pub fn machine() -> String {
    let mut parts = Vec::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(m) = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
    {
        parts.push(m.1.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    if let Ok(n) = std::thread::available_parallelism() {
        parts.push(format!("{n} logical CPUs"));
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(kb) = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
    {
        parts.push(format!("{:.1} GiB RAM", kb / 1024.0 / 1024.0));
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parts.push(
        format!("{} {}", std::env::consts::OS, release.trim())
            .trim()
            .to_string(),
    );
    parts.join(" · ")
}

/// The task's quality metrics, as columns.
pub fn quality_columns(task: &Task) -> &'static [&'static str] {
    match task {
        Task::Classify { .. } => &["accuracy", "macro_f1", "micro_f1"],
        Task::Extract { .. } => &[
            "field_precision",
            "field_recall",
            "field_f1",
            "schema_valid_rate",
        ],
        Task::Qa => &["exact_match", "f1"],
        Task::Summarize | Task::Chat => &["rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"],
    }
}

/// Speed and memory columns.
pub const SPEED_COLUMNS: [&str; 6] = [
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "items_per_s",
    "tokens_per_s",
    "peak_rss_mb",
];

/// The metric on the scatter's y axis.
pub fn main_metric(task: &Task) -> &'static str {
    match task {
        Task::Classify { .. } => "accuracy",
        Task::Extract { .. } => "field_f1",
        Task::Qa => "f1",
        Task::Summarize => "rougeLsum",
        Task::Chat => "rougeL",
    }
}

/// Time-to-first-token columns (generative tasks).
pub const TTFT_COLUMNS: [&str; 2] = ["ttft_p50_ms", "ttft_p95_ms"];

/// The summary key counting a remote Bantam's answering backends.
pub const BACKENDS: &str = "backends";

/// The table's columns: counts, quality, speed (time to first token when any target
/// has it), the cost when any target has one, and the answering backends of remote
/// Bantam routes.
pub fn columns(task: &Task, targets: &Map<String, Value>) -> Vec<&'static str> {
    let has = |k: &str| targets.values().any(|s| s.get(k).is_some());
    let mut cols: Vec<&str> = ["items", "errors"]
        .iter()
        .chain(quality_columns(task))
        .copied()
        .collect();
    if has(TTFT_COLUMNS[0]) {
        cols.extend(TTFT_COLUMNS);
    }
    cols.extend(SPEED_COLUMNS);
    for k in [COST, BACKENDS] {
        if has(k) {
            cols.push(k);
        }
    }
    cols
}

/// The summary key of the cost per 1000 items.
pub const COST: &str = "cost_per_1k_usd";

/// A metric as the tables show it: times, memory and rates with one decimal, scores
/// with four, "–" when missing.
pub fn cell(col: &str, v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(0.0);
            if col.ends_with("_ms") || col.ends_with("_mb") || col.ends_with("_s") {
                format!("{x:.1}")
            } else {
                format!("{x:.4}")
            }
        }
        Some(Value::String(s)) => s.clone(),
        // Counts by name, most first: "small 30, large 10".
        Some(Value::Object(o)) => {
            let mut kv: Vec<(&String, u64)> = o
                .iter()
                .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
                .collect();
            kv.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            kv.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
        Some(v) => v.to_string(),
        None => "–".into(),
    }
}

/// The markdown table: one row per target, quality metrics of the task, then speed.
pub fn markdown(task: &Task, targets: &Map<String, Value>) -> String {
    let cols = columns(task, targets);
    let mut t = format!(
        "| target | {} |\n|---|{}\n",
        cols.join(" | "),
        "---:|".repeat(cols.len())
    );
    for (target, s) in targets {
        let cells: Vec<String> = cols.iter().map(|c| cell(c, s.get(*c))).collect();
        let _ = writeln!(t, "| {target} | {} |", cells.join(" | "));
    }
    t
}

fn metric(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64).filter(|v| v.is_finite())
}

/// Whether a higher value of `col` is better (`None`: neither).
fn higher_is_better(col: &str) -> Option<bool> {
    match col {
        "items" | BACKENDS => None,
        "errors" | "peak_rss_mb" | COST => Some(false),
        c if c.starts_with("latency_") || c.starts_with("ttft_") => Some(false),
        _ => Some(true),
    }
}

const STYLE: &str = "
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,'Segoe UI','DejaVu Sans',sans-serif;margin:0;background:#f6f7f9;color:#1a1a1a;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 10px}
h2{font-size:17px;margin:30px 0 10px;padding-bottom:4px;border-bottom:1px solid #d9dce1}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0;font-size:13px}
dl.meta dt{color:#555}
dl.meta dd{margin:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{padding:4px 9px;border-bottom:1px solid #e6e8eb;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #9aa0a8;font-weight:600}
td{font-variant-numeric:tabular-nums}
td strong{color:#0b5394}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:baseline}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:6px 0 14px;background:#fff;border:1px solid #e0e3e7;border-radius:6px;padding:12px 14px;width:fit-content;max-width:100%;box-sizing:border-box}
figure h3{font-size:14px;margin:0 0 6px}
figcaption{font-size:12.5px;color:#444;max-width:560px;margin-top:8px}
svg{max-width:100%;height:auto;display:block}
svg text{font-family:inherit}
table.small{font-size:12px;margin-top:6px}
table.small td,table.small th{text-align:left}
table.small td:last-child,table.small th:last-child{text-align:right}
p.note{font-size:12.5px;color:#444;max-width:900px}
footer{color:#777;font-size:12px;margin-top:36px}
";

/// The self-contained HTML report for `targets` (target name → its summary, as in
/// `summary.json`'s `targets`).
pub fn html(meta: &Meta, targets: &Map<String, Value>, task: &Task) -> String {
    html_report(meta, Some((task, targets)), None)
}

/// The HTML report of an evaluation (`eval`: the task and the per-target
/// summaries), a hardware check (`hardware`: target → its figures, as in
/// `summary.json`'s `hardware`), or both.
pub fn html_report(
    meta: &Meta,
    eval: Option<(&Task, &Map<String, Value>)>,
    hardware: Option<&Map<String, Value>>,
) -> String {
    // One colour per target across every section.
    let mut names: Vec<&String> = eval.map(|(_, t)| t.keys().collect()).unwrap_or_default();
    for n in hardware.into_iter().flat_map(|h| h.keys()) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let colour_of = |name: &str| colour(names.iter().position(|n| *n == name).unwrap_or(0));
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
         <title>{}</title><style>{STYLE}</style></head><body><main>",
        escape(&meta.title)
    );
    header(&mut h, meta, eval, hardware);
    if let Some((task, targets)) = eval {
        let series: Vec<Series> = targets
            .keys()
            .map(|name| Series {
                name,
                colour: colour_of(name),
            })
            .collect();
        if targets.is_empty() {
            h.push_str("<p class=\"note\">No targets were evaluated.</p>");
        } else {
            table(&mut h, task, targets, &series);
            overview(&mut h, task, targets, &series);
            if matches!(task, Task::Classify { .. }) {
                classes::per_class(&mut h, targets, &series);
                classes::confusion(&mut h, targets, &series);
            }
        }
    }
    if let Some(hw) = hardware {
        let series: Vec<Series> = hw
            .keys()
            .map(|name| Series {
                name,
                colour: colour_of(name),
            })
            .collect();
        hardware::hardware_section(&mut h, hw, &series);
    }
    let _ = writeln!(
        h,
        "<footer>Made by bantam {} (<code>bantam eval</code>). Every number is also in \
         summary.json{}.</footer></main></body></html>",
        env!("CARGO_PKG_VERSION"),
        if eval.is_some() {
            "; per-item results are in items.jsonl"
        } else {
            ""
        }
    );
    h
}

fn header(
    h: &mut String,
    meta: &Meta,
    eval: Option<(&Task, &Map<String, Value>)>,
    hardware: Option<&Map<String, Value>>,
) {
    let _ = write!(
        h,
        "<header><h1>{}</h1><dl class=\"meta\">",
        escape(&meta.title)
    );
    let mut rows: Vec<(String, String)> = vec![("dataset".into(), meta.dataset.clone())];
    if let Some((task, targets)) = eval {
        let items = targets
            .values()
            .filter_map(|s| s.get("items").and_then(Value::as_u64))
            .max()
            .unwrap_or(0);
        let names: Vec<&str> = targets.keys().map(String::as_str).collect();
        rows.push(("task".into(), task.name().into()));
        rows.push(("items".into(), items.to_string()));
        rows.push(("targets".into(), names.join(", ")));
    }
    if let Some(hw) = hardware {
        let names: Vec<&str> = hw.keys().map(String::as_str).collect();
        rows.push(("hardware check".into(), names.join(", ")));
    }
    rows.push(("created".into(), meta.created.clone()));
    rows.push(("machine".into(), meta.machine.clone()));
    rows.extend(meta.details.iter().cloned());
    for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
    }
    h.push_str("</dl></header>");
}

fn table(h: &mut String, task: &Task, targets: &Map<String, Value>, series: &[Series]) {
    let cols = columns(task, targets);
    h.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"scroll\"><table><thead><tr><th>target</th>");
    for c in &cols {
        // Long metric names may break after their underscores.
        let _ = write!(h, "<th>{}</th>", escape(c).replace('_', "_<wbr/>"));
    }
    h.push_str("</tr></thead><tbody>");
    // The best value of each column (when the targets differ).
    let best: Vec<Option<f64>> = cols
        .iter()
        .map(|c| {
            let dir = higher_is_better(c)?;
            let vals: Vec<f64> = targets.values().filter_map(|s| metric(s, c)).collect();
            let (lo, hi) = vals
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            (targets.len() > 1 && vals.len() > 1 && lo < hi).then_some(if dir { hi } else { lo })
        })
        .collect();
    for (se, (name, s)) in series.iter().zip(targets) {
        let _ = write!(
            h,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td>",
            se.colour,
            escape(name)
        );
        for (c, b) in cols.iter().zip(&best) {
            let text = escape(&cell(c, s.get(*c)));
            if b.is_some() && metric(s, c) == *b {
                let _ = write!(h, "<td><strong>{text}</strong></td>");
            } else {
                let _ = write!(h, "<td>{text}</td>");
            }
        }
        h.push_str("</tr>");
    }
    h.push_str(
        "</tbody></table></div><p class=\"note\">The best value of each column is in bold. \
         Latencies are per item (for local classification: the time of a batch of 16 divided \
         by its items; for a remote target: the HTTP request, network included); items/s is \
         sequential throughput; peak memory is the process's resident high-water mark while \
         a local target ran (– for remote targets: their memory is on another machine).</p></section>",
    );
}

fn cost_note(s: &Value) -> String {
    match metric(s, COST) {
        Some(c) => format!("${c:.4} / 1k items"),
        None if s.get("kind").and_then(Value::as_str) == Some("remote") => {
            "remote, no price".into()
        }
        None => "local, no price".into(),
    }
}

fn overview(h: &mut String, task: &Task, targets: &Map<String, Value>, series: &[Series]) {
    let main = main_metric(task);
    let points: Vec<Point> = series
        .iter()
        .zip(targets.values())
        .filter_map(|(se, s)| {
            let y = metric(s, main)?;
            let x = metric(s, "latency_p50_ms").unwrap_or(0.0);
            let hi = metric(s, "latency_p95_ms");
            Some(Point {
                series: *se,
                x,
                x_hi: hi,
                y,
                note: cost_note(s),
                title: format!(
                    "{}\n{main}: {y:.4}\nlatency p50 {x:.1} ms, p95 {:.1} ms\n{}",
                    se.name,
                    hi.unwrap_or(x),
                    cost_note(s)
                ),
            })
        })
        .collect();
    let _ = write!(
        h,
        "<section id=\"quality-latency\"><h2>Quality against latency</h2><figure>{}<figcaption>Each target at \
         its median latency per item (x) and {main} (y); the whisker reaches the 95th \
         percentile. Up and to the left is better. The second label line is the cost per \
         1000 items when a price was given (<code>--price-per-hour</code> for local targets, \
         <code>--price-in</code>/<code>--price-out</code> per million tokens for remote \
         ones), else “local, no price” or “remote, no price”.</figcaption></figure></section>",
        charts::scatter(&points, "latency p50 (ms per item)", main)
    );
    let (bars, caption): (&[&str], &str) = match task {
        Task::Classify { .. } => (
            &["accuracy", "macro_f1"],
            "Accuracy and macro F1 (unweighted mean of the per-class F1, scikit-learn's \
             definition; labels only ever predicted count too).",
        ),
        Task::Extract { .. } => (
            &[
                "field_precision",
                "field_recall",
                "field_f1",
                "schema_valid_rate",
            ],
            "Field-level precision, recall and F1 over all JSON leaves (pointer and value \
             must both match), and the share of outputs that were valid.",
        ),
        Task::Qa => (
            &["exact_match", "f1"],
            "SQuAD exact match and token F1 (answers normalised: lower case, no \
             punctuation or articles), best over the reference answers.",
        ),
        Task::Summarize | Task::Chat => (
            &["rouge1", "rouge2", "rougeL", "rougeLsum"],
            "ROUGE F-measures with stemming (as rouge-score), averaged over items. Corpus \
             BLEU (0–100) is in the table.",
        ),
    };
    let values: Vec<Vec<Option<f64>>> = targets
        .values()
        .map(|s| bars.iter().map(|k| metric(s, k)).collect())
        .collect();
    let lat = ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"];
    let lat_values: Vec<Vec<Option<f64>>> = targets
        .values()
        .map(|s| lat.iter().map(|k| metric(s, k)).collect())
        .collect();
    let _ = write!(
        h,
        "<section id=\"per-target\"><h2>Quality and latency per target</h2><div class=\"row\"><figure>{}\
         <figcaption>{caption}</figcaption></figure><figure>{}<figcaption>Latency \
         percentiles per item (nearest rank).</figcaption></figure></div></section>",
        charts::grouped_bars(bars, series, &values, "score", |v| format!("{v:.3}")),
        charts::grouped_bars(
            &["p50", "p95", "p99"],
            series,
            &lat_values,
            "ms per item",
            |v| format!("{v:.0}")
        ),
    );
}

#[cfg(test)]
mod tests;
