//! Cost and ledger bookkeeping of one request: the price of its tokens (and
//! seconds), the counterfactual on the route's dearest backend, and the row written
//! to the ledger when the answer is complete (streams: when they end, fail or are
//! dropped because the client left).

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::config::{BackendConfig, BackendKind, Price};
use crate::ledger::{Ledger, Record};
use crate::router::Routed;
use bantam_api::{answer_chars, ChunkStream, Endpoint, Reply, Tokens};

/// What every outcome of one request shares.
pub(crate) struct Ctx {
    pub ledger: Option<Arc<Ledger>>,
    pub ts_ms: i64,
    pub started: Instant,
    pub endpoint: Endpoint,
    pub route: Option<String>,
    pub largest: Option<Price>,
    pub stream: bool,
    pub client_usage: bool,
    pub prompt_chars: usize,
}

impl Ctx {
    fn record(&self, cfg: &BackendConfig, reason: &str, status: u16, attempts: u32) -> Record {
        Record {
            ts_ms: self.ts_ms,
            endpoint: self.endpoint.as_str().into(),
            route: self.route.clone(),
            backend: cfg.name.clone(),
            local: cfg.kind == BackendKind::Local,
            reason: header_safe(reason),
            status,
            stream: self.stream,
            prompt_tokens: 0,
            completion_tokens: 0,
            estimated: false,
            cost_usd: 0.0,
            counterfactual_usd: 0.0,
            latency_ms: 0.0,
            attempts,
        }
    }

    /// A backend answered: account for it (complete answers now, streams when they
    /// end) and describe the outcome.
    pub async fn answer(
        &self,
        cfg: &BackendConfig,
        reason: &str,
        reply: Reply,
        call_start: Instant,
        attempts: u32,
        extra_cost: f64,
    ) -> Routed {
        let acct = Accounting {
            ledger: self.ledger.clone(),
            record: self.record(cfg, reason, 200, attempts),
            price: cfg.price,
            largest: self.largest,
            prompt_chars: self.prompt_chars,
            started: self.started,
            call_start,
            extra_cost,
        };
        let (reply, cost_usd) = match reply {
            Reply::Full(v) => {
                let cost = acct.finish_full(&v).await;
                (Reply::Full(v), Some(cost))
            }
            Reply::Stream(s) => (Reply::Stream(acct.wrap(s, self.client_usage)), None),
        };
        Routed {
            reply,
            backend: cfg.name.clone(),
            route: self.route.clone(),
            reason: header_safe(reason),
            cost_usd,
        }
    }

    /// The request failed: record it.
    pub async fn failed(&self, cfg: &BackendConfig, reason: &str, status: u16, attempts: u32) {
        let mut r = self.record(cfg, reason, status, attempts);
        r.latency_ms = self.started.elapsed().as_secs_f64() * 1e3;
        record(self.ledger.clone(), r).await;
    }
}

/// Cost of a complete answer's tokens at `price` (for a cascade's local attempt).
pub(crate) fn cost_of(body: &Value, price: &Price, prompt_chars: usize, secs: f64) -> f64 {
    let t = body
        .get("usage")
        .and_then(Tokens::from_usage)
        .unwrap_or(Tokens {
            prompt: prompt_chars.div_ceil(4) as u64,
            completion: answer_chars(body).div_ceil(4) as u64,
            estimated: true,
            compute_us: None,
        });
    let secs = t.compute_us.map_or(secs, |us| us as f64 / 1e6);
    price.cost(t.prompt, t.completion, secs)
}

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Header-safe (visible ASCII), bounded.
pub(crate) fn header_safe(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(240)
        .collect();
    t
}

pub(crate) async fn record(ledger: Option<Arc<Ledger>>, rec: Record) {
    let Some(l) = ledger else { return };
    let res = tokio::task::spawn_blocking(move || l.record(&rec)).await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "could not record usage"),
        Err(e) => tracing::error!(error = %e, "usage recorder panicked"),
    }
}

/// Cost and ledger bookkeeping of one answered request.
struct Accounting {
    ledger: Option<Arc<Ledger>>,
    record: Record,
    price: Price,
    largest: Option<Price>,
    prompt_chars: usize,
    started: Instant,
    call_start: Instant,
    /// Cost of earlier calls for this request (a cascade's local attempt).
    extra_cost: f64,
}

impl Accounting {
    fn settle(&mut self, usage: Option<Tokens>, answer_chars: usize) {
        let t = usage.unwrap_or(Tokens {
            prompt: self.prompt_chars.div_ceil(4) as u64,
            completion: answer_chars.div_ceil(4) as u64,
            estimated: true,
            compute_us: None,
        });
        // Seconds: the engine time a Bantam backend reports, else the call's wall
        // time (an upstream priced per second).
        let secs = t.compute_us.map_or_else(
            || self.call_start.elapsed().as_secs_f64(),
            |us| us as f64 / 1e6,
        );
        let r = &mut self.record;
        r.prompt_tokens = t.prompt;
        r.completion_tokens = t.completion;
        r.estimated = t.estimated;
        r.cost_usd = self.price.cost(t.prompt, t.completion, secs) + self.extra_cost;
        r.counterfactual_usd = match self.largest {
            Some(p) => p.cost(t.prompt, t.completion, secs),
            None => r.cost_usd,
        };
        r.latency_ms = self.started.elapsed().as_secs_f64() * 1e3;
    }

    async fn finish_full(mut self, body: &Value) -> f64 {
        let usage = body.get("usage").and_then(Tokens::from_usage);
        self.settle(usage, answer_chars(body));
        let cost = self.record.cost_usd;
        record(self.ledger.clone(), self.record.clone()).await;
        cost
    }

    /// Pass the chunks through; note the usage chunk (dropped again when the client
    /// did not ask for it; given the cost when it did); record when the stream ends,
    /// fails or is dropped (client gone).
    fn wrap(self, inner: ChunkStream, client_usage: bool) -> ChunkStream {
        struct St {
            inner: ChunkStream,
            acct: Option<Accounting>,
            usage: Option<Tokens>,
            chars: usize,
            client_usage: bool,
        }
        impl Drop for St {
            fn drop(&mut self) {
                // Dropped before the end: the client went away.
                if let Some(mut a) = self.acct.take() {
                    a.settle(self.usage, self.chars);
                    a.record.status = 499;
                    if let Ok(h) = tokio::runtime::Handle::try_current() {
                        h.spawn(record(a.ledger.clone(), a.record.clone()));
                    }
                }
            }
        }
        let st = St {
            inner,
            acct: Some(self),
            usage: None,
            chars: 0,
            client_usage,
        };
        Box::pin(futures::stream::unfold(st, |mut st| async move {
            loop {
                let item = st.inner.next().await;
                match item {
                    Some(Ok(mut chunk)) => {
                        st.chars += answer_chars(&chunk);
                        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
                            st.usage = Tokens::from_usage(u);
                            let usage_only = chunk
                                .get("choices")
                                .and_then(Value::as_array)
                                .is_none_or(|c| c.is_empty());
                            if !st.client_usage {
                                if usage_only {
                                    continue;
                                }
                                chunk["usage"] = Value::Null;
                            } else if let Some(a) = st.acct.as_mut() {
                                a.settle(st.usage, st.chars);
                                chunk["usage"]["cost_usd"] = json!(a.record.cost_usd);
                            }
                        }
                        return Some((Ok(chunk), st));
                    }
                    Some(Err(e)) => {
                        if let Some(mut a) = st.acct.take() {
                            a.settle(st.usage, st.chars);
                            a.record.status = 502;
                            a.record.reason =
                                header_safe(&format!("{}; {}", a.record.reason, e.short()));
                            record(a.ledger.clone(), a.record.clone()).await;
                        }
                        return Some((Err(e), st));
                    }
                    None => {
                        if let Some(mut a) = st.acct.take() {
                            a.settle(st.usage, st.chars);
                            record(a.ledger.clone(), a.record.clone()).await;
                        }
                        return None;
                    }
                }
            }
        }))
    }
}
