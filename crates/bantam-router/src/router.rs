//! The router: turns a model name into an ordered list of backends (a route's
//! decision first, then its fallbacks), calls them with retries, back-off and
//! circuit breakers, and writes every request to the ledger.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::backend::{
    answer_chars, Backend, Call, ChunkStream, Endpoint, LocalFactory, Reply, Tokens,
};
use crate::breaker::{Admit, Breaker};
use crate::config::{
    BackendConfig, BackendKind, BreakerConfig, PolicyKind, Price, RouteConfig, RoutingConfig,
};
use crate::error::{BackendError, ConfigError, RouterError};
use crate::learned::{Embed, RouterModel};
use crate::ledger::{Ledger, Record};
use crate::policy::{Decision, Features, Rules};
use crate::upstream::Upstream;

struct Slot {
    backend: Arc<dyn Backend>,
    breaker: Breaker,
}

impl Slot {
    fn cfg(&self) -> &BackendConfig {
        self.backend.config()
    }
}

struct Route {
    cfg: RouteConfig,
    rules: Rules,
    largest: Price,
    learned: Option<Learned>,
}

/// A `learned` route's classifier.
struct Learned {
    model: RouterModel,
    threshold: f32,
    embedder: Arc<dyn Embed>,
    local: String,
    escalate: String,
}

/// A routed answer and what happened on the way.
#[derive(Debug)]
pub struct Routed {
    /// The answer; a stream is wrapped so its usage is recorded when it ends.
    pub reply: Reply,
    /// Backend that answered.
    pub backend: String,
    /// Route, if the model name was one.
    pub route: Option<String>,
    /// Why this backend (`direct`, `default`, `rule:…`, with fallbacks appended).
    pub reason: String,
    /// Cost in USD (known now for complete answers; streams report it in the ledger
    /// and, when asked for usage, in the usage chunk).
    pub cost_usd: Option<f64>,
}

/// One entry of `/v1/models` contributed by the routing configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    /// Name clients send.
    pub id: String,
    /// `bantam-route`, `bantam` (local backend) or `upstream`.
    pub owned_by: &'static str,
    /// Details.
    pub meta: Value,
}

/// Routes, backends and the ledger.
pub struct Router {
    slots: HashMap<String, Arc<Slot>>,
    order: Vec<String>,
    routes: HashMap<String, Route>,
    route_order: Vec<String>,
    local: Arc<dyn LocalFactory>,
    adhoc: Mutex<HashMap<String, Arc<Slot>>>,
    ledger: Option<Arc<Ledger>>,
    local_price: Price,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("backends", &self.order)
            .field("routes", &self.route_order)
            .finish()
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Header-safe (visible ASCII), bounded.
fn header_safe(s: &str) -> String {
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

impl Router {
    /// Build from configuration. Upstream URLs and keys are read through `env` now.
    pub fn new(
        cfg: &RoutingConfig,
        local: Arc<dyn LocalFactory>,
        ledger: Option<Ledger>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        cfg.check()?;
        let mut slots = HashMap::new();
        for b in &cfg.backends {
            let backend: Arc<dyn Backend> = match b.kind {
                BackendKind::Local => local.local(b.clone()),
                BackendKind::Openai => Arc::new(Upstream::new(b.clone(), env)?),
            };
            slots.insert(
                b.name.clone(),
                Arc::new(Slot {
                    backend,
                    breaker: Breaker::new(b.breaker),
                }),
            );
        }
        let mut routes = HashMap::new();
        let mut embedders: HashMap<String, Arc<dyn Embed>> = HashMap::new();
        for r in &cfg.routes {
            let learned = match &r.learned {
                Some(l) if r.policy == PolicyKind::Learned => {
                    let model = RouterModel::load(&l.model)?;
                    let embedder = match embedders.get(&model.embedding_model) {
                        Some(e) => e.clone(),
                        None => {
                            let e = local.embedder(&model.embedding_model).map_err(|e| {
                                ConfigError(format!(
                                    "route {:?}: embedding model {:?}: {e}; install it with \
                                     `bantam pull {}`",
                                    r.name, model.embedding_model, model.embedding_model
                                ))
                            })?;
                            embedders.insert(model.embedding_model.clone(), e.clone());
                            e
                        }
                    };
                    Some(Learned {
                        threshold: l.threshold.unwrap_or(model.threshold),
                        model,
                        embedder,
                        local: l.local.clone(),
                        escalate: l.escalate.clone(),
                    })
                }
                _ => None,
            };
            let largest = r
                .backends
                .iter()
                .map(|n| slots[n].cfg().price)
                .max_by(|a, b| {
                    a.weight()
                        .partial_cmp(&b.weight())
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .unwrap_or_default();
            routes.insert(
                r.name.clone(),
                Route {
                    rules: Rules::new(r),
                    cfg: r.clone(),
                    largest,
                    learned,
                },
            );
        }
        Ok(Self {
            slots,
            order: cfg.backends.iter().map(|b| b.name.clone()).collect(),
            routes,
            route_order: cfg.routes.iter().map(|r| r.name.clone()).collect(),
            local,
            adhoc: Mutex::default(),
            ledger: ledger.map(Arc::new),
            local_price: cfg.usage.local_price,
        })
    }

    /// The ledger, if usage is recorded.
    pub fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.ledger.as_ref()
    }

    /// Whether `name` is a route or a declared backend (not a plain store model).
    pub fn is_declared(&self, name: &str) -> bool {
        self.routes.contains_key(name) || self.slots.contains_key(name)
    }

    /// Routes and declared backends for `/v1/models`.
    pub fn catalog(&self) -> Vec<CatalogEntry> {
        let now = Instant::now();
        let mut out = Vec::new();
        for name in &self.route_order {
            let r = &self.routes[name];
            out.push(CatalogEntry {
                id: name.clone(),
                owned_by: "bantam-route",
                meta: json!({
                    "route": true,
                    "policy": r.cfg.policy,
                    "backends": r.cfg.backends,
                    "fallback": r.cfg.fallback,
                }),
            });
        }
        for name in &self.order {
            let s = &self.slots[name];
            let c = s.cfg();
            out.push(CatalogEntry {
                id: name.clone(),
                owned_by: match c.kind {
                    BackendKind::Local => "bantam",
                    BackendKind::Openai => "upstream",
                },
                meta: json!({
                    "backend": c.kind,
                    "model": c.model,
                    "price": c.price,
                    "circuit": s.breaker.state(now),
                }),
            });
        }
        out
    }

    fn adhoc(&self, model: &str) -> Arc<Slot> {
        let mut m = self.adhoc.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(model.to_string())
            .or_insert_with(|| {
                Arc::new(Slot {
                    backend: self
                        .local
                        .local(BackendConfig::local(model, self.local_price)),
                    breaker: Breaker::new(BreakerConfig {
                        failures: 0,
                        cooldown_secs: 0.0,
                    }),
                })
            })
            .clone()
    }

    /// A route's decision: the first matching rule; else, for a learned route, the
    /// classifier; else the default.
    async fn decide_route(r: &Route, f: &Features) -> Decision {
        if let Some(d) = r.rules.first_match(f) {
            return d;
        }
        let Some(l) = &r.learned else {
            return r.rules.fallback();
        };
        let text = f.user_text.clone();
        let emb = l.embedder.clone();
        let v = tokio::task::spawn_blocking(move || emb.embed(&[text.as_str()])).await;
        match v {
            Ok(Ok(mut v)) if !v.is_empty() => {
                let p = l.model.score(&v.swap_remove(0));
                let (backend, cmp) = if p >= l.threshold {
                    (&l.escalate, ">=")
                } else {
                    (&l.local, "<")
                };
                Decision {
                    backend: backend.clone(),
                    reason: format!("learned:{p:.3}{cmp}{:.3}", l.threshold),
                }
            }
            other => {
                let why = match other {
                    Ok(Err(e)) => e,
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => "no embedding".into(),
                };
                tracing::warn!(route = %r.cfg.name, error = %why, "embedding failed; using the default backend");
                let mut d = r.rules.fallback();
                d.reason = "default (embedding failed)".into();
                d
            }
        }
    }

    /// Which backends to try, in order, and why the first.
    async fn plan(&self, model: &str, f: &Features) -> (Option<&Route>, Vec<Arc<Slot>>, Decision) {
        if let Some(r) = self.routes.get(model) {
            let d = Self::decide_route(r, f).await;
            let mut order = vec![self.slots[&d.backend].clone()];
            if r.cfg.fallback {
                for b in &r.cfg.backends {
                    if *b != d.backend {
                        order.push(self.slots[b].clone());
                    }
                }
            }
            return (Some(r), order, d);
        }
        let slot = match self.slots.get(model) {
            Some(s) => s.clone(),
            None => self.adhoc(model),
        };
        let d = Decision {
            backend: model.to_string(),
            reason: "direct".into(),
        };
        (None, vec![slot], d)
    }

    /// Decide only (no call): the backend a request would go to first, and why. Used
    /// to measure the policy's overhead.
    pub async fn decide(
        &self,
        endpoint: Endpoint,
        body: &Value,
        headers: HashMap<String, String>,
    ) -> Decision {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("");
        let f = Features::of(endpoint, body, headers);
        self.plan(model, &f).await.2
    }

    /// Route one request.
    pub async fn handle(
        &self,
        endpoint: Endpoint,
        mut body: Value,
        headers: HashMap<String, String>,
    ) -> Result<Routed, RouterError> {
        let started = Instant::now();
        let ts_ms = unix_ms();
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let client_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if stream {
            // Always ask for the usage chunk: the ledger needs it.
            body["stream_options"] = json!({"include_usage": true});
        }
        let features = Features::of(endpoint, &body, headers);
        let (route, order, decision) = self.plan(&model, &features).await;
        let fallback_enabled = route.is_none_or(|r| r.cfg.fallback);
        let mut failures: Vec<String> = Vec::new();
        let mut attempts = 0u32;
        let mut last: Option<BackendError> = None;
        'backends: for slot in &order {
            let cfg = slot.cfg();
            let retries = cfg.retries();
            let mut attempt = 0;
            loop {
                let admit = slot.breaker.admit(Instant::now());
                if admit == Admit::No {
                    failures.push(format!("{} circuit open", cfg.name));
                    break;
                }
                attempts += 1;
                let mut b = body.clone();
                b["model"] = Value::String(cfg.model.clone());
                let call_start = Instant::now();
                let result = match slot
                    .backend
                    .call(Call {
                        endpoint,
                        body: b,
                        stream,
                    })
                    .await
                {
                    Ok(Reply::Stream(s)) => peek(s, &cfg.name).await.map(Reply::Stream),
                    other => other,
                };
                match result {
                    Ok(reply) => {
                        slot.breaker.success();
                        let mut reason = decision.reason.clone();
                        if !failures.is_empty() {
                            reason = format!("{reason}; fallback after {}", failures.join(", "));
                        }
                        let acct = Accounting {
                            ledger: self.ledger.clone(),
                            record: Record {
                                ts_ms,
                                endpoint: endpoint.as_str().into(),
                                route: route.map(|r| r.cfg.name.clone()),
                                backend: cfg.name.clone(),
                                local: cfg.kind == BackendKind::Local,
                                reason: header_safe(&reason),
                                status: 200,
                                stream,
                                prompt_tokens: 0,
                                completion_tokens: 0,
                                estimated: false,
                                cost_usd: 0.0,
                                counterfactual_usd: 0.0,
                                latency_ms: 0.0,
                                attempts,
                            },
                            price: cfg.price,
                            largest: route.map(|r| r.largest),
                            prompt_chars: features.prompt_chars,
                            started,
                            call_start,
                        };
                        return Ok(match reply {
                            Reply::Full(v) => {
                                let cost = acct.finish_full(&v).await;
                                Routed {
                                    reply: Reply::Full(v),
                                    backend: cfg.name.clone(),
                                    route: route.map(|r| r.cfg.name.clone()),
                                    reason: header_safe(&reason),
                                    cost_usd: Some(cost),
                                }
                            }
                            Reply::Stream(s) => Routed {
                                reply: Reply::Stream(acct.wrap(s, client_usage)),
                                backend: cfg.name.clone(),
                                route: route.map(|r| r.cfg.name.clone()),
                                reason: header_safe(&reason),
                                cost_usd: None,
                            },
                        });
                    }
                    Err(e) => {
                        if e.is_backend_fault() {
                            slot.breaker.failure(Instant::now());
                        } else if admit == Admit::Trial {
                            slot.breaker.release_trial();
                        }
                        if e.falls_back() {
                            tracing::warn!(backend = %cfg.name, attempt, error = %e, "backend call failed");
                        } else {
                            tracing::debug!(backend = %cfg.name, error = %e, "request rejected by the backend");
                        }
                        failures.push(format!("{}: {}", cfg.name, e.short()));
                        if !e.falls_back() {
                            last = Some(e);
                            break 'backends;
                        }
                        let again = e.retryable() && attempt < retries;
                        last = Some(e);
                        if !again {
                            break;
                        }
                        let wait = cfg.backoff_ms.saturating_mul(1 << attempt.min(10));
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        attempt += 1;
                    }
                }
            }
            if !fallback_enabled {
                break;
            }
        }
        let err = match last {
            Some(error) => RouterError::Backend {
                error,
                tried: failures.clone(),
            },
            None => RouterError::NoBackend {
                model: model.clone(),
                detail: failures.join(", "),
            },
        };
        let (status, backend) = match &err {
            RouterError::Backend { error, .. } => (
                match error {
                    BackendError::Status { status, .. } => *status,
                    BackendError::Unreachable { timeout: true, .. } => 504,
                    _ => 502,
                },
                match error {
                    BackendError::Status { backend, .. }
                    | BackendError::Unreachable { backend, .. }
                    | BackendError::Broken { backend, .. } => backend.clone(),
                },
            ),
            RouterError::NoBackend { .. } => (503, order[0].cfg().name.clone()),
        };
        let local = self
            .slots
            .get(&backend)
            .map(|s| s.cfg().kind == BackendKind::Local)
            .unwrap_or(route.is_none());
        let rec = Record {
            ts_ms,
            endpoint: endpoint.as_str().into(),
            route: route.map(|r| r.cfg.name.clone()),
            backend,
            local,
            reason: header_safe(&format!(
                "{}; failed: {}",
                decision.reason,
                failures.join(", ")
            )),
            status,
            stream,
            prompt_tokens: 0,
            completion_tokens: 0,
            estimated: false,
            cost_usd: 0.0,
            counterfactual_usd: 0.0,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            attempts,
        };
        record(self.ledger.clone(), rec).await;
        Err(err)
    }
}

/// Wait for a stream's first chunk, so that a backend whose stream fails at once
/// still falls back.
async fn peek(mut s: ChunkStream, name: &str) -> Result<ChunkStream, BackendError> {
    match s.next().await {
        Some(Ok(first)) => Ok(Box::pin(
            futures::stream::once(async { Ok(first) }).chain(s),
        )),
        Some(Err(e)) => Err(e),
        None => Err(BackendError::Broken {
            backend: name.to_string(),
            reason: "the stream ended before its first chunk".into(),
        }),
    }
}

async fn record(ledger: Option<Arc<Ledger>>, rec: Record) {
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
}

impl Accounting {
    fn settle(&mut self, usage: Option<Tokens>, answer_chars: usize) {
        let t = usage.unwrap_or(Tokens {
            prompt: self.prompt_chars.div_ceil(4) as u64,
            completion: answer_chars.div_ceil(4) as u64,
            estimated: true,
        });
        let secs = self.call_start.elapsed().as_secs_f64();
        let r = &mut self.record;
        r.prompt_tokens = t.prompt;
        r.completion_tokens = t.completion;
        r.estimated = t.estimated;
        r.cost_usd = self.price.cost(t.prompt, t.completion, secs);
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
