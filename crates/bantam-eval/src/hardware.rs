//! The target-hardware check of `bantam eval --hardware`: a fixed set of chat
//! prompts served one at a time by a local engine, timed from the request to its
//! first token and to its end.
//!
//! Prefill and decode throughput (llama-bench's pp/tg) come from `bantam bench`'s
//! measurement; this module adds what a user of the model waits for: time to first
//! token and request latency over realistic prompts, each generating the same
//! number of tokens (end of generation is ignored) so targets compare fairly.

use std::time::Instant;

use bantam_engine::template::TemplateMessage;
use bantam_engine::{Engine, EngineError};
use bantam_types::generate::{GenerateEvent, GenerateRequest, SamplingParams};
use serde_json::{json, Map, Value};

use crate::run::percentile;

/// The fixed prompts: short questions, a support message, and longer texts to
/// summarise (from a few dozen to a few hundred prompt tokens with a chat template).
pub const PROMPTS: [&str; 8] = [
    "What is the capital of Australia?",
    "Translate to French: The meeting has been moved to Thursday afternoon.",
    "My card payment was declined at the supermarket although my balance is fine. What should I do?",
    "Write a haiku about autumn rain on a city street.",
    "Classify the sentiment of this review as positive, negative or neutral: The battery lasts two days, but the screen scratches far too easily and support never answered my emails.",
    "Summarize: The city council met on Tuesday to discuss the new bicycle lanes on Main Street. After two hours of debate, members voted 7 to 2 to fund a pilot project of 1.2 million dollars. Construction will start in March and finish before the summer. Shop owners had asked for more parking, so the plan keeps twenty spaces near the market. The council will review accident numbers and shop revenue after one year before deciding whether to extend the lanes to the river.",
    "Extract the sender, the date and the amount from this e-mail as JSON. Hello team, this is Maria Lopez from accounts payable. On 14 March 2024 we received invoice 5521 from Northwind Traders for 2,340.50 EUR. The due date is 30 days after receipt. Please confirm the purchase order number so that we can schedule the payment before the end of the month. Best regards, Maria",
    "Summarize the following notes in three bullet points. Release planning, week 12. The mobile team finished the offline mode and it passed QA on Android; iOS still crashes when the cache is larger than two gigabytes, and a fix is expected on Wednesday. The web team moved the billing page to the new design system; conversion in the A/B test went up by four percent, so the old page will be removed next sprint. Infrastructure migrated the staging database to the managed service without downtime; production follows on Saturday night with a two-hour maintenance window announced to customers on Monday. Support reports fewer tickets about password resets since the new e-mail flow went live, but more questions about invoices in the new layout; product will add a help link to the invoice page. The release itself is planned for Friday the 22nd if the iOS fix lands in time, otherwise it moves one week.",
];

/// One request's timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestTiming {
    /// Prompt tokens (after the chat template).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// From submitting the request to its first event.
    pub ttft_ms: f64,
    /// From submitting the request to its end.
    pub latency_ms: f64,
}

/// Serve every prompt of `prompts` `passes` times, one request at a time, greedy,
/// each generating exactly `gen_tokens` tokens. A first, untimed request warms the
/// engine up.
pub async fn serve_prompts(
    engine: &Engine,
    prompts: &[&str],
    gen_tokens: u32,
    passes: usize,
) -> Result<Vec<RequestTiming>, EngineError> {
    let render = |p: &str| engine.render_chat(&[TemplateMessage::new("user", p)], &[]);
    let request = |prompt, max| GenerateRequest {
        prompt,
        max_tokens: Some(max),
        sampling: SamplingParams::greedy(),
        stop: Vec::new(),
        logprobs: None,
        ignore_eos: true,
        constraint: None,
    };
    let mut warm = engine.generate(request(render("Hello")?, 4))?;
    while let Some(ev) = warm.next().await {
        ev?;
    }
    let mut out = Vec::with_capacity(prompts.len() * passes);
    for _ in 0..passes {
        for p in prompts {
            let prompt = render(p)?;
            let start = Instant::now();
            let mut events = engine.generate(request(prompt, gen_tokens))?;
            let mut first = None;
            let mut done = None;
            while let Some(ev) = events.next().await {
                let ev = ev?;
                first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1000.0);
                if let GenerateEvent::Done { usage, .. } = ev {
                    done = Some(usage);
                }
            }
            let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
            let usage = done.ok_or(EngineError::Stopped)?;
            out.push(RequestTiming {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                ttft_ms: first.unwrap_or(latency_ms),
                latency_ms,
            });
        }
    }
    Ok(out)
}

/// The hardware section's figures for one target from its requests: time to first
/// token and latency percentiles (nearest rank), mean prompt length, and the
/// end-to-end generation rate (tokens over the requests' total time).
pub fn summarize(timings: &[RequestTiming]) -> Map<String, Value> {
    let mut s = Map::new();
    let sorted = |f: fn(&RequestTiming) -> f64| {
        let mut v: Vec<f64> = timings.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let ttft = sorted(|t| t.ttft_ms);
    let lat = sorted(|t| t.latency_ms);
    s.insert("requests".into(), json!(timings.len()));
    if timings.is_empty() {
        return s;
    }
    let n = timings.len() as f64;
    s.insert(
        "prompt_tokens_mean".into(),
        json!(
            timings
                .iter()
                .map(|t| f64::from(t.prompt_tokens))
                .sum::<f64>()
                / n
        ),
    );
    s.insert(
        "gen_tokens".into(),
        json!(timings
            .iter()
            .map(|t| t.completion_tokens)
            .max()
            .unwrap_or(0)),
    );
    s.insert("ttft_p50_ms".into(), json!(percentile(&ttft, 50.0)));
    s.insert("ttft_p95_ms".into(), json!(percentile(&ttft, 95.0)));
    s.insert("latency_p50_ms".into(), json!(percentile(&lat, 50.0)));
    s.insert("latency_p95_ms".into(), json!(percentile(&lat, 95.0)));
    s.insert("latency_p99_ms".into(), json!(percentile(&lat, 99.0)));
    let total_s: f64 = lat.iter().sum::<f64>() / 1000.0;
    let toks: u32 = timings.iter().map(|t| t.completion_tokens).sum();
    if total_s > 0.0 {
        s.insert("e2e_tokens_per_s".into(), json!(f64::from(toks) / total_s));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_timings() {
        let t: Vec<RequestTiming> = (1..=20)
            .map(|i| RequestTiming {
                prompt_tokens: 10 * i,
                completion_tokens: 8,
                ttft_ms: f64::from(i),
                latency_ms: 100.0 * f64::from(i),
            })
            .collect();
        let s = summarize(&t);
        assert_eq!(s["requests"], json!(20));
        assert_eq!(s["ttft_p50_ms"], json!(10.0));
        assert_eq!(s["ttft_p95_ms"], json!(19.0));
        assert_eq!(s["latency_p99_ms"], json!(2000.0));
        assert_eq!(s["prompt_tokens_mean"], json!(105.0));
        assert_eq!(s["gen_tokens"], json!(8));
        // 160 tokens over 21 s.
        let rate = s["e2e_tokens_per_s"].as_f64().unwrap();
        assert!((rate - 160.0 / 21.0).abs() < 1e-12);
        assert_eq!(summarize(&[]).len(), 1);
    }

    #[test]
    fn prompts_are_distinct_and_vary_in_length() {
        let mut p = PROMPTS.to_vec();
        p.sort_unstable();
        p.dedup();
        assert_eq!(p.len(), PROMPTS.len());
        let lens: Vec<usize> = PROMPTS.iter().map(|s| s.len()).collect();
        assert!(lens.iter().max().unwrap() > &(10 * lens.iter().min().unwrap()));
    }
}
