//! The hardware check's table and charts (`bantam eval --hardware`).

use std::fmt::Write;

use serde_json::{Map, Value};

use super::charts::{self, Series};
use super::svg::escape;
use super::{cell, metric};

/// The hardware check's columns.
pub const HARDWARE_COLUMNS: [&str; 9] = [
    "prefill_tok_s",
    "decode_tok_s",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "e2e_tokens_per_s",
    "peak_rss_mb",
];

/// The hardware check as a markdown table: one row per local target.
pub fn hardware_markdown(hw: &Map<String, Value>) -> String {
    let mut t = format!(
        "| target | {} |\n|---|{}\n",
        HARDWARE_COLUMNS.join(" | "),
        "---:|".repeat(HARDWARE_COLUMNS.len())
    );
    for (target, s) in hw {
        let cells: Vec<String> = HARDWARE_COLUMNS
            .iter()
            .map(|c| cell(c, s.get(*c)))
            .collect();
        let _ = writeln!(t, "| {target} | {} |", cells.join(" | "));
    }
    t
}

pub(super) fn hardware_section(h: &mut String, hw: &Map<String, Value>, series: &[Series]) {
    h.push_str(
        "<section id=\"hardware\"><h2>Hardware check</h2><div class=\"scroll\"><table><thead><tr><th>target</th>",
    );
    for c in HARDWARE_COLUMNS {
        let _ = write!(h, "<th>{}</th>", escape(c).replace('_', "_<wbr/>"));
    }
    h.push_str("</tr></thead><tbody>");
    for (se, (name, s)) in series.iter().zip(hw) {
        let _ = write!(
            h,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td>",
            se.colour,
            escape(name)
        );
        for c in HARDWARE_COLUMNS {
            let _ = write!(h, "<td>{}</td>", escape(&cell(c, s.get(c))));
        }
        h.push_str("</tr>");
    }
    let first = hw.values().next();
    let plan = |k: &str| {
        first
            .and_then(|s| s.get(k))
            .map_or("–".into(), |v| cell(k, Some(v)))
    };
    let _ = write!(
        h,
        "</tbody></table></div><p class=\"note\">Measured on this machine. Prefill and decode \
         are <code>bantam bench</code>'s figures (a {}-token prompt, {} generated tokens, \
         medians of {} runs, the model's stored flash-attention setting). Time to first \
         token and latency are over {} requests of a fixed prompt set (mean {} prompt \
         tokens after the chat template, {} generated tokens each), served one at a time \
         with the prefix cache off; e2e tokens/s is generated tokens over those requests' \
         total time. Peak memory is the process's resident high-water mark while the \
         model served them.</p>",
        plan("bench_prompt_tokens"),
        plan("bench_gen_tokens"),
        plan("bench_reps"),
        plan("requests"),
        first
            .and_then(|s| metric(s, "prompt_tokens_mean"))
            .map_or("–".into(), |v| format!("{v:.0}")),
        plan("gen_tokens"),
    );
    let values = |keys: &[&str]| -> Vec<Vec<Option<f64>>> {
        hw.values()
            .map(|s| keys.iter().map(|k| metric(s, k)).collect())
            .collect()
    };
    let speed = ["prefill_tok_s", "decode_tok_s", "e2e_tokens_per_s"];
    let lat = [
        "ttft_p50_ms",
        "ttft_p95_ms",
        "latency_p50_ms",
        "latency_p95_ms",
    ];
    let _ = write!(
        h,
        "<div class=\"row\"><figure>{}<figcaption>Tokens per second: prompt processing, \
         generation, and generation end to end (prefill included).</figcaption></figure>\
         <figure>{}<figcaption>Time to first token and request latency \
         (nearest-rank percentiles).</figcaption></figure></div></section>",
        charts::grouped_bars(
            &["prefill", "decode", "e2e"],
            series,
            &values(&speed),
            "tokens/s",
            |v| format!("{v:.0}")
        ),
        charts::grouped_bars(
            &["ttft p50", "ttft p95", "latency p50", "latency p95"],
            series,
            &values(&lat),
            "ms",
            |v| format!("{v:.0}")
        ),
    );
}
