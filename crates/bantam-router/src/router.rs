//! The router: turns a model name into an ordered list of backends (a route's
//! decision first, then its fallbacks), calls them with retries, back-off and
//! circuit breakers, and writes every request to the ledger.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bantam_api::{
    Backend, BackendError, Call, ChunkStream, Embed, Endpoint, LocalFactory, Reply, Request,
};
use bantam_upstream::Upstream;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::accounting::{cost_of, unix_ms, Ctx};
use crate::breaker::{Admit, Breaker};
use crate::cascade;
use crate::config::{
    BackendConfig, BackendKind, BreakerConfig, PolicyKind, Price, RouteConfig, RoutingConfig,
};
use crate::error::{ConfigError, RouterError};
use crate::learned::RouterModel;
use crate::ledger::Ledger;
use crate::policy::{Decision, Features, Rules};

struct Slot {
    backend: Arc<dyn Backend>,
    cfg: BackendConfig,
    breaker: Breaker,
}

impl Slot {
    fn cfg(&self) -> &BackendConfig {
        &self.cfg
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
    /// The featuriser takes microseconds (hashed n-grams, static embeddings): run it
    /// right here.
    inline: bool,
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
                BackendKind::Local => local.local(&b.name, &b.model),
                BackendKind::Openai => {
                    Arc::new(Upstream::new(b.upstream(env)?).map_err(ConfigError)?)
                }
            };
            slots.insert(
                b.name.clone(),
                Arc::new(Slot {
                    backend,
                    cfg: b.clone(),
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
                            let install = model
                                .embedding_model
                                .strip_prefix(crate::learned::STATIC_PREFIX)
                                .unwrap_or(&model.embedding_model);
                            let e = local.featuriser(&model.embedding_model).map_err(|e| {
                                ConfigError(format!(
                                    "route {:?}: featuriser {:?}: {e}; install it with \
                                     `bantam pull {install}`",
                                    r.name, model.embedding_model
                                ))
                            })?;
                            embedders.insert(model.embedding_model.clone(), e.clone());
                            e
                        }
                    };
                    let inline = embedder.inline();
                    Some(Learned {
                        threshold: l.threshold.unwrap_or(model.threshold),
                        model,
                        embedder,
                        inline,
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

    /// A plain model name as a local backend of its own. Made per request and not
    /// kept: it has no state worth keeping (its breaker never opens), and keeping one
    /// per name would let clients grow the server's memory with made-up names.
    fn adhoc(&self, model: &str) -> Arc<Slot> {
        Arc::new(Slot {
            backend: self.local.local(model, model),
            cfg: BackendConfig::local(model, self.local_price),
            breaker: Breaker::new(BreakerConfig {
                failures: 0,
                cooldown_secs: 0.0,
            }),
        })
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
        // On a multi-threaded runtime, embed on this worker (its tasks move to the
        // others meanwhile): measured faster at the tail than handing the few
        // milliseconds to the blocking pool.
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let v = if l.inline {
            Ok(emb.embed(&[text.as_str()]))
        } else if multi {
            Ok(tokio::task::block_in_place(|| emb.embed(&[text.as_str()])))
        } else {
            tokio::task::spawn_blocking(move || emb.embed(&[text.as_str()])).await
        };
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
            let d = match (&r.cfg.cascade, r.rules.first_match(f)) {
                (_, Some(d)) => d,
                (Some(c), None) => Decision {
                    backend: c.local.clone(),
                    reason: CASCADE.into(),
                },
                (None, None) => Self::decide_route(r, f).await,
            };
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
    pub async fn decide(&self, req: &Request, headers: HashMap<String, String>) -> Decision {
        let f = Features::of(req, headers);
        self.plan(req.model(), &f).await.2
    }

    /// Route one validated request.
    pub async fn handle(
        &self,
        mut req: Request,
        headers: HashMap<String, String>,
    ) -> Result<Routed, RouterError> {
        let started = Instant::now();
        let endpoint = req.endpoint();
        let model = req.model().to_string();
        let stream = req.stream();
        let client_usage = req.include_usage();
        // Always ask for the usage chunk: the ledger needs it.
        req.force_usage();
        let features = Features::of(&req, headers);
        let (route, mut order, decision) = self.plan(&model, &features).await;
        let ctx = Ctx {
            ledger: self.ledger.clone(),
            ts_ms: unix_ms(),
            started,
            endpoint,
            route: route.map(|r| r.cfg.name.clone()),
            largest: route.map(|r| r.largest),
            stream,
            client_usage,
            prompt_chars: features.prompt_chars,
        };
        let fallback_enabled = route.is_none_or(|r| r.cfg.fallback);
        let mut reason = decision.reason.clone();
        let mut failures: Vec<String> = Vec::new();
        let mut attempts = 0u32;
        let mut last: Option<BackendError> = None;
        // A cascade's local answer, kept in case escalating fails: (body, backend, start).
        let mut kept: Option<(Value, Arc<Slot>, Instant)> = None;
        let mut extra_cost = 0.0;

        if let (Some(c), true) = (
            route.and_then(|r| r.cfg.cascade.as_ref()),
            decision.reason == CASCADE,
        ) {
            let local = self.slots[&c.local].clone();
            order.retain(|s| s.cfg().name != c.local);
            let admit = local.breaker.admit(Instant::now());
            if admit == Admit::No {
                failures.push(format!("{} circuit open", c.local));
                reason = "cascade:local circuit open".into();
            } else {
                attempts += 1;
                let (mut lr, asked) = req.for_cascade();
                lr.set_model(&local.cfg().model);
                let t0 = Instant::now();
                let res = local.backend.call(Call::new(lr)).await;
                match res {
                    Ok(Reply::Full(mut v)) => {
                        local.breaker.success();
                        let verdict = cascade::judge(c, endpoint, &v);
                        if !asked {
                            cascade::strip_logprobs(&mut v);
                        }
                        match verdict {
                            Ok(why) => {
                                let reply = as_requested(endpoint, v, stream);
                                let why = format!("cascade:{why}");
                                return Ok(ctx
                                    .answer(local.cfg(), &why, reply, t0, attempts, 0.0)
                                    .await);
                            }
                            Err(why) => {
                                let secs = t0.elapsed().as_secs_f64();
                                extra_cost =
                                    cost_of(&v, &local.cfg().price, features.prompt_chars, secs);
                                reason = format!("cascade:escalated {why}");
                                kept = Some((v, local.clone(), t0));
                            }
                        }
                    }
                    Ok(Reply::Stream(_)) => {
                        reason = "cascade:local answered a stream".into();
                    }
                    Err(e) => {
                        if e.is_backend_fault() {
                            local.breaker.failure(Instant::now());
                        } else if admit == Admit::Trial {
                            local.breaker.release_trial();
                        }
                        if !e.falls_back() {
                            let tried = vec![format!("{}: {}", c.local, e.short())];
                            ctx.failed(local.cfg(), &reason, e.status(), attempts).await;
                            return Err(RouterError::Backend { error: e, tried });
                        }
                        reason = format!("cascade:escalated local failed ({})", e.short());
                    }
                }
            }
        }

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
                let mut r = req.clone();
                r.set_model(&cfg.model);
                let call_start = Instant::now();
                let result = match slot.backend.call(Call::new(r)).await {
                    Ok(Reply::Stream(s)) => peek(s, &cfg.name).await.map(Reply::Stream),
                    other => other,
                };
                match result {
                    Ok(reply) => {
                        slot.breaker.success();
                        if !failures.is_empty() {
                            reason = format!("{reason}; fallback after {}", failures.join(", "));
                        }
                        return Ok(ctx
                            .answer(cfg, &reason, reply, call_start, attempts, extra_cost)
                            .await);
                    }
                    Err(e) => {
                        if e.is_backend_fault() {
                            slot.breaker.failure(Instant::now());
                        } else if admit == Admit::Trial {
                            slot.breaker.release_trial();
                        }
                        if e.is_backend_fault() {
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
        if let Some((v, slot, t0)) = kept {
            // Escalation failed: the local answer is better than none.
            let why = format!(
                "{reason}; escalation failed: {}; kept the local answer",
                failures.join(", ")
            );
            let reply = as_requested(endpoint, v, stream);
            return Ok(ctx.answer(slot.cfg(), &why, reply, t0, attempts, 0.0).await);
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
        let status = err.status();
        let backend = match &err {
            RouterError::Backend { error, .. } => error.backend().to_string(),
            RouterError::NoBackend { .. } => order
                .first()
                .map(|s| s.cfg().name.clone())
                .unwrap_or_else(|| model.clone()),
        };
        let cfg = match self.slots.get(&backend) {
            Some(s) => s.cfg().clone(),
            None => BackendConfig::local(&backend, self.local_price),
        };
        let why = format!("{reason}; failed: {}", failures.join(", "));
        ctx.failed(&cfg, &why, status, attempts).await;
        Err(err)
    }
}

/// The reason a cascade route's decision carries when no rule matched.
const CASCADE: &str = "cascade";

/// A complete answer, streamed if the client asked for a stream.
fn as_requested(endpoint: Endpoint, v: Value, stream: bool) -> Reply {
    if stream {
        let chunks: Vec<Result<Value, BackendError>> = cascade::to_chunks(endpoint, &v)
            .into_iter()
            .map(Ok)
            .collect();
        Reply::Stream(Box::pin(futures::stream::iter(chunks)))
    } else {
        Reply::Full(v)
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
        None => Err(BackendError::broken(
            name,
            "the stream ended before its first chunk",
        )),
    }
}
