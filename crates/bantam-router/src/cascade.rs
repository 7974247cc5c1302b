//! The `cascade` policy's pieces: ask the local backend (non-streamed, with
//! log-probabilities), judge the answer's confidence, and turn a kept answer back
//! into the shape the client asked for (a stream of chunks when it streamed).

use serde_json::{json, Value};

use crate::config::CascadeConfig;
use bantam_api::Endpoint;

/// Confidence of an answer: mean and minimum token log-probability, token count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    /// Mean log-probability of the answer's tokens.
    pub mean: f32,
    /// The least likely token's log-probability.
    pub min: f32,
    /// Tokens.
    pub tokens: usize,
}

/// Token log-probabilities of the first choice.
pub(crate) fn confidence(endpoint: Endpoint, v: &Value) -> Option<Confidence> {
    let lps: Vec<f32> = match endpoint {
        Endpoint::Chat => v
            .pointer("/choices/0/logprobs/content")?
            .as_array()?
            .iter()
            .filter_map(|t| t.get("logprob").and_then(Value::as_f64))
            .map(|x| x as f32)
            .collect(),
        Endpoint::Completions => v
            .pointer("/choices/0/logprobs/token_logprobs")?
            .as_array()?
            .iter()
            .filter_map(Value::as_f64)
            .map(|x| x as f32)
            .collect(),
        // Each input's label probability counts as one "token".
        Endpoint::Classify => v
            .get("data")?
            .as_array()?
            .iter()
            .filter_map(|c| c.get("confidence").and_then(Value::as_f64))
            .map(|p| (p.max(1e-30) as f32).ln())
            .collect(),
        Endpoint::Embeddings | Endpoint::Extract | Endpoint::Summarize => return None,
    };
    if lps.is_empty() {
        return None;
    }
    Some(Confidence {
        mean: lps.iter().sum::<f32>() / lps.len() as f32,
        min: lps.iter().copied().fold(f32::INFINITY, f32::min),
        tokens: lps.len(),
    })
}

/// Keep the answer (`Ok(why)`) or escalate (`Err(why)`). Extractions and summaries
/// have no confidence to check: a local one that finished (schema-valid, for an
/// extraction) is kept; one that failed escalates before this is asked.
pub(crate) fn judge(c: &CascadeConfig, endpoint: Endpoint, v: &Value) -> Result<String, String> {
    match endpoint {
        Endpoint::Embeddings | Endpoint::Extract | Endpoint::Summarize => Ok("kept".into()),
        _ => verdict(c, confidence(endpoint, v)),
    }
}

/// Keep the answer (`Ok(why)`) or escalate (`Err(why)`) by its confidence.
pub(crate) fn verdict(c: &CascadeConfig, conf: Option<Confidence>) -> Result<String, String> {
    let Some(k) = conf else {
        return if c.min_mean_logprob.is_some() || c.min_token_logprob.is_some() {
            Err("no token log-probabilities".into())
        } else {
            Ok("kept".into())
        };
    };
    if let Some(t) = c.min_mean_logprob {
        if k.mean < t {
            return Err(format!("mean_logprob {:.2}<{t:.2}", k.mean));
        }
    }
    if let Some(t) = c.min_token_logprob {
        if k.min < t {
            return Err(format!("min_logprob {:.2}<{t:.2}", k.min));
        }
    }
    Ok(format!("kept mean_logprob {:.2}", k.mean))
}

/// Remove log-probabilities the client did not ask for.
pub(crate) fn strip_logprobs(v: &mut Value) {
    if let Some(cs) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for c in cs {
            c["logprobs"] = Value::Null;
        }
    }
}

/// A complete answer as the chunks a stream of it would have had (content, finish,
/// usage), for a client that asked for a stream.
pub(crate) fn to_chunks(endpoint: Endpoint, v: &Value) -> Vec<Value> {
    let base = |choices: Value| {
        let mut c = json!({
            "id": v.get("id").cloned().unwrap_or(Value::Null),
            "object": match endpoint {
                Endpoint::Completions => "text_completion",
                _ => "chat.completion.chunk",
            },
            "created": v.get("created").cloned().unwrap_or(json!(0)),
            "model": v.get("model").cloned().unwrap_or(Value::Null),
            "choices": choices,
        });
        if let Some(fp) = v.get("system_fingerprint") {
            c["system_fingerprint"] = fp.clone();
        }
        c
    };
    let mut out = Vec::new();
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, ch) in choices.iter().enumerate() {
        let index = ch.get("index").cloned().unwrap_or(json!(i));
        let lp = ch.get("logprobs").cloned().unwrap_or(Value::Null);
        match endpoint {
            Endpoint::Chat => {
                let m = ch.get("message").cloned().unwrap_or(json!({}));
                let mut delta = json!({"role": "assistant", "content": m.get("content").cloned().unwrap_or(Value::Null)});
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    let calls: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(k, c)| {
                            let mut c = c.clone();
                            c["index"] = json!(k);
                            c
                        })
                        .collect();
                    delta["tool_calls"] = json!(calls);
                }
                out.push(base(json!([{"index": index, "delta": delta, "logprobs": lp, "finish_reason": null}])));
                out.push(base(json!([{"index": index, "delta": {}, "logprobs": null,
                    "finish_reason": ch.get("finish_reason").cloned().unwrap_or(json!("stop"))}])));
            }
            Endpoint::Completions => {
                out.push(base(
                    json!([{"index": index, "text": ch.get("text").cloned().unwrap_or(json!("")),
                    "logprobs": lp, "finish_reason": null}]),
                ));
                out.push(base(json!([{"index": index, "text": "", "logprobs": null,
                    "finish_reason": ch.get("finish_reason").cloned().unwrap_or(json!("stop"))}])));
            }
            // Embeddings and task answers are never streamed (and have no `choices`).
            Endpoint::Embeddings | Endpoint::Classify | Endpoint::Extract | Endpoint::Summarize => {
            }
        }
    }
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        let mut c = base(json!([]));
        c["usage"] = u.clone();
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mean: Option<f32>, min: Option<f32>) -> CascadeConfig {
        CascadeConfig {
            local: "a".into(),
            escalate: "b".into(),
            min_mean_logprob: mean,
            min_token_logprob: min,
        }
    }

    #[test]
    fn confidence_and_verdicts() {
        let chat = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
            "logprobs": {"content": [{"token": "o", "logprob": -0.1}, {"token": "k", "logprob": -2.9}]},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}});
        let k = confidence(Endpoint::Chat, &chat).unwrap();
        assert_eq!(k.tokens, 2);
        assert!((k.mean + 1.5).abs() < 1e-6 && (k.min + 2.9).abs() < 1e-6);
        assert!(verdict(&cfg(Some(-1.0), None), Some(k))
            .unwrap_err()
            .starts_with("mean_logprob -1.50<-1.00"));
        assert!(verdict(&cfg(Some(-2.0), None), Some(k)).is_ok());
        assert!(verdict(&cfg(Some(-2.0), Some(-2.5)), Some(k))
            .unwrap_err()
            .starts_with("min_logprob"));
        assert!(verdict(&cfg(Some(-2.0), None), None).is_err());
        assert!(verdict(&cfg(None, None), None).is_ok());
        let cmpl =
            json!({"choices": [{"text": "x", "logprobs": {"token_logprobs": [-0.5, -0.25]}}]});
        assert!((confidence(Endpoint::Completions, &cmpl).unwrap().mean + 0.375).abs() < 1e-6);
    }

    #[test]
    fn chunks_reassemble_the_answer() {
        let mut v = json!({"id": "x", "created": 1, "model": "m", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "hello"}, "logprobs": {"content": []},
            "finish_reason": "length"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
        strip_logprobs(&mut v);
        let c = to_chunks(Endpoint::Chat, &v);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["choices"][0]["delta"]["content"], "hello");
        assert_eq!(c[0]["choices"][0]["logprobs"], Value::Null);
        assert_eq!(c[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(c[2]["usage"]["completion_tokens"], 1);
        assert_eq!(c[2]["choices"], json!([]));
    }

    #[test]
    fn task_answers_are_judged_by_label_probability_or_kept() {
        let c = cfg(Some(-0.5), Some(-1.0));
        let classified = |p: &[f64]| json!({"object": "list", "data": p.iter().map(|x| json!({"confidence": x})).collect::<Vec<_>>()});
        assert!(judge(&c, Endpoint::Classify, &classified(&[0.9, 0.8])).is_ok());
        // ln 0.3 = -1.2 is below the per-item minimum.
        let e = judge(&c, Endpoint::Classify, &classified(&[0.99, 0.3])).unwrap_err();
        assert!(
            e.starts_with("mean_logprob") || e.starts_with("min_logprob"),
            "{e}"
        );
        let k = confidence(Endpoint::Classify, &classified(&[0.5])).unwrap();
        assert!((k.mean - 0.5f32.ln()).abs() < 1e-6 && k.tokens == 1);
        // Extractions and summaries have no confidence: a finished one is kept.
        for e in [Endpoint::Extract, Endpoint::Summarize] {
            assert_eq!(
                judge(&c, e, &json!({"object": "summary"})),
                Ok("kept".into())
            );
        }
    }
}
