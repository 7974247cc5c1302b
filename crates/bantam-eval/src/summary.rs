//! Summaries of a target's results: latency percentiles, throughput, the task's
//! quality metrics, and cost per 1k items.

use serde_json::{json, Map, Value};

use crate::run::{ratio, references, ItemResult, Task};
use crate::{bleu, classification};

/// The `q`th percentile of sorted values (nearest rank; 0 when empty).
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((q / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn mean(rs: &[&ItemResult], key: &str) -> f64 {
    let v: Vec<f64> = rs
        .iter()
        .filter_map(|r| r.metrics.get(key).and_then(Value::as_f64))
        .collect();
    ratio(v.iter().sum(), v.len() as f64)
}

/// Every metric of one target over its results.
pub fn summarize(task: &Task, results: &[&ItemResult]) -> Map<String, Value> {
    let mut s = Map::new();
    let n = results.len();
    s.insert("items".into(), json!(n));
    s.insert(
        "errors".into(),
        json!(results.iter().filter(|r| r.error.is_some()).count()),
    );
    let mut lat: Vec<f64> = results.iter().map(|r| r.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let total_s: f64 = lat.iter().sum::<f64>() / 1000.0;
    s.insert("latency_p50_ms".into(), json!(percentile(&lat, 50.0)));
    s.insert("latency_p95_ms".into(), json!(percentile(&lat, 95.0)));
    s.insert("latency_p99_ms".into(), json!(percentile(&lat, 99.0)));
    s.insert("items_per_s".into(), json!(ratio(n as f64, total_s)));
    let mut ttft: Vec<f64> = results.iter().filter_map(|r| r.ttft_ms).collect();
    if !ttft.is_empty() {
        ttft.sort_by(f64::total_cmp);
        s.insert("ttft_p50_ms".into(), json!(percentile(&ttft, 50.0)));
        s.insert("ttft_p95_ms".into(), json!(percentile(&ttft, 95.0)));
    }
    // Which backend of a remote Bantam route answered, how often.
    let mut backends = Map::new();
    for r in results {
        if let Some(b) = r.served.as_ref().and_then(|x| x.backend.as_ref()) {
            let n = backends.get(b).and_then(Value::as_u64).unwrap_or(0);
            backends.insert(b.clone(), json!(n + 1));
        }
    }
    if !backends.is_empty() {
        s.insert(crate::report::BACKENDS.into(), Value::Object(backends));
    }
    let toks: u32 = results.iter().map(|r| r.completion_tokens).sum();
    if toks > 0 {
        s.insert("tokens_per_s".into(), json!(ratio(toks as f64, total_s)));
    }
    match task {
        Task::Classify { .. } => {
            let truth: Vec<String> = results
                .iter()
                .map(|r| {
                    r.expected
                        .as_str()
                        .map_or_else(|| r.expected.to_string(), str::to_string)
                })
                .collect();
            let pred: Vec<String> = results
                .iter()
                .map(|r| r.prediction.as_str().unwrap_or("").to_string())
                .collect();
            let rep = classification::report(&truth, &pred);
            s.insert("accuracy".into(), json!(rep.accuracy));
            s.insert("macro_f1".into(), json!(rep.macro_f1));
            s.insert("micro_f1".into(), json!(rep.micro_f1));
            s.insert("classes".into(), json!(rep.classes));
            s.insert("labels".into(), json!(rep.labels));
            s.insert("confusion".into(), json!(rep.confusion));
        }
        Task::Extract { .. } => {
            let sum = |k: &str| -> f64 {
                results
                    .iter()
                    .filter_map(|r| r.metrics.get(k).and_then(Value::as_f64))
                    .sum()
            };
            let (tp, np, ne) = (sum("field_tp"), sum("field_pred"), sum("field_expected"));
            let p = ratio(tp, np);
            let r = ratio(tp, ne);
            s.insert("field_precision".into(), json!(p));
            s.insert("field_recall".into(), json!(r));
            s.insert("field_f1".into(), json!(ratio(2.0 * p * r, p + r)));
            s.insert(
                "schema_valid_rate".into(),
                json!(mean(results, "schema_valid")),
            );
        }
        Task::Qa => {
            s.insert("exact_match".into(), json!(mean(results, "exact_match")));
            s.insert("f1".into(), json!(mean(results, "f1")));
        }
        Task::Summarize | Task::Chat => {
            for k in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
                s.insert(k.into(), json!(mean(results, k)));
            }
            let hyps: Vec<String> = results
                .iter()
                .map(|r| r.prediction.as_str().unwrap_or("").to_string())
                .collect();
            let refs: Vec<Vec<String>> = results.iter().map(|r| references(&r.expected)).collect();
            // sacrebleu needs the same number of references per segment.
            let k = refs.iter().map(Vec::len).min().unwrap_or(0);
            if k > 0 {
                let refs: Vec<Vec<String>> = refs.into_iter().map(|r| r[..k].to_vec()).collect();
                s.insert("bleu".into(), json!(bleu::corpus_bleu(&hyps, &refs).score));
            }
        }
    }
    s
}

/// Adds `cost_per_1k_usd` to a summary: what 1000 items cost on a machine priced at
/// `usd_per_hour`, at the summary's sequential throughput (`items_per_s`). Nothing is
/// added without a positive, finite throughput and price.
pub fn add_cost(summary: &mut Map<String, Value>, usd_per_hour: f64) {
    let rate = summary.get("items_per_s").and_then(Value::as_f64);
    if let Some(rate) = rate.filter(|r| r.is_finite() && *r > 0.0) {
        if usd_per_hour.is_finite() && usd_per_hour > 0.0 {
            let usd = 1000.0 / rate / 3600.0 * usd_per_hour;
            summary.insert(crate::report::COST.into(), json!(usd));
        }
    }
}

/// Adds `cost_per_1k_usd` from token prices in USD per million prompt and completion
/// tokens (an API's price list): the mean cost of the items that were answered,
/// times 1000. Nothing is added without an answered item or with a negative or
/// non-finite price; a target whose server reports no usage costs 0.
pub fn add_token_cost(
    summary: &mut Map<String, Value>,
    results: &[&ItemResult],
    usd_per_1m_in: f64,
    usd_per_1m_out: f64,
) {
    let ok = |p: f64| p.is_finite() && p >= 0.0;
    if !(ok(usd_per_1m_in) && ok(usd_per_1m_out)) {
        return;
    }
    let answered: Vec<&&ItemResult> = results.iter().filter(|r| r.error.is_none()).collect();
    if answered.is_empty() {
        return;
    }
    let usd: f64 = answered
        .iter()
        .map(|r| {
            (f64::from(r.prompt_tokens) * usd_per_1m_in
                + f64::from(r.completion_tokens) * usd_per_1m_out)
                / 1e6
        })
        .sum();
    summary.insert(
        crate::report::COST.into(),
        json!(usd / answered.len() as f64 * 1000.0),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[5.0], 95.0), 5.0);
    }

    #[test]
    fn cost_from_token_prices() {
        let r = |p: u32, c: u32, error: Option<&str>| ItemResult {
            target: "t".into(),
            index: 0,
            input: String::new(),
            expected: Value::Null,
            prediction: Value::Null,
            metrics: Map::new(),
            latency_ms: 1.0,
            prompt_tokens: p,
            completion_tokens: c,
            ttft_ms: None,
            served: None,
            error: error.map(str::to_string),
        };
        let rs = [
            r(100, 10, None),
            r(300, 30, None),
            r(5000, 0, Some("timeout")),
        ];
        let refs: Vec<&ItemResult> = rs.iter().collect();
        let mut s = Map::new();
        add_token_cost(&mut s, &refs, 0.15, 0.60);
        // Mean of the two answered items: 200 prompt and 20 completion tokens, i.e.
        // 200 × 0.15e-6 + 20 × 0.6e-6 = 4.2e-5 USD; 1000 items cost 0.042.
        assert!((s["cost_per_1k_usd"].as_f64().unwrap() - 0.042).abs() < 1e-12);
        for (a, b) in [(-1.0, 0.0), (0.0, f64::NAN)] {
            let mut s = Map::new();
            add_token_cost(&mut s, &refs, a, b);
            assert!(s.is_empty());
        }
        let mut s = Map::new();
        add_token_cost(&mut s, &refs[2..], 1.0, 1.0);
        assert!(s.is_empty());
    }

    #[test]
    fn cost_from_throughput_and_price() {
        let mut s = Map::new();
        s.insert("items_per_s".into(), json!(2.0));
        add_cost(&mut s, 0.72);
        // 1000 items at 2/s take 500 s; 0.72 $/h is 0.0002 $/s.
        assert!((s["cost_per_1k_usd"].as_f64().unwrap() - 0.1).abs() < 1e-12);
        for (rate, price) in [
            (0.0, 1.0),
            (2.0, 0.0),
            (f64::NAN, 1.0),
            (2.0, f64::INFINITY),
        ] {
            let mut s = Map::new();
            s.insert("items_per_s".into(), json!(rate));
            add_cost(&mut s, price);
            assert!(!s.contains_key("cost_per_1k_usd"), "{rate} {price}");
        }
    }
}
