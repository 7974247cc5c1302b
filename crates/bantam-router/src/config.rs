//! The routing sections of Bantam's TOML configuration: `[[backends]]`, `[[routes]]`
//! and `[usage]`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Price of a backend. Token prices are per million tokens; `per_second` prices
/// compute time, a way to price local hardware (the machine's hourly cost divided by
/// 3600): a local model charges the engine time attributed to the request (its share
/// of each batched decode step, reported as `usage.compute_ms`), so concurrent
/// requests together pay for the machine's busy time once; a backend that reports no
/// compute time (an upstream) is charged its wall-clock seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Price {
    /// USD per 1M prompt tokens.
    pub input_per_1m: f64,
    /// USD per 1M completion tokens.
    pub output_per_1m: f64,
    /// USD per second of compute time (see above).
    pub per_second: f64,
}

impl Price {
    /// Cost of one request.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64, seconds: f64) -> f64 {
        prompt_tokens as f64 * self.input_per_1m / 1e6
            + completion_tokens as f64 * self.output_per_1m / 1e6
            + seconds.max(0.0) * self.per_second
    }

    /// Ordering key for "the largest backend": the dearer per token.
    pub(crate) fn weight(&self) -> (f64, f64, f64) {
        (self.output_per_1m, self.input_per_1m, self.per_second)
    }
}

/// Circuit-breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit (0 disables the breaker).
    pub failures: u32,
    /// Seconds the circuit stays open before one trial request is let through.
    pub cooldown_secs: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 3,
            cooldown_secs: 30.0,
        }
    }
}

/// What a backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A model from the local store, run by Bantam's engine.
    Local,
    /// An OpenAI-compatible HTTP API (another Bantam, vLLM, llama-server, a cloud API).
    Openai,
}

/// One `[[backends]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Name clients and routes use.
    pub name: String,
    /// `local` or `openai`.
    #[serde(rename = "type")]
    pub kind: BackendKind,
    /// Local: the store name (or a `.gguf` path). Upstream: the model name sent to it.
    pub model: String,
    /// Upstream base URL, e.g. `http://10.0.0.5:8000/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of an environment variable holding the base URL (used when `base_url` is
    /// not set).
    #[serde(default)]
    pub base_url_env: Option<String>,
    /// Name of an environment variable holding the API key (sent as a bearer token).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Seconds to wait for the upstream's response headers, and at most between two
    /// streamed chunks.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Seconds to wait for a TCP connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// Extra attempts on a retryable failure (connection error, timeout, 429, 5xx)
    /// before falling back to the next backend. Default: 1 for upstreams, 0 locally.
    #[serde(default)]
    pub retries: Option<u32>,
    /// First back-off in milliseconds; doubles with each retry.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Price.
    #[serde(default)]
    pub price: Price,
    /// Circuit breaker (upstreams only).
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// How an upstream answers Bantam's task endpoints (`/v1/classify`, `/v1/extract`,
    /// `/v1/summarize`): `chat` (default: translated into chat completions, for any
    /// OpenAI-compatible API) or `native` (sent as they are, to another Bantam).
    #[serde(default)]
    pub tasks: TaskApi,
}

/// How an upstream answers task endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskApi {
    /// Translate into chat completions.
    #[default]
    Chat,
    /// Forward to the upstream's own task endpoint.
    Native,
}

fn default_timeout() -> f64 {
    120.0
}
fn default_connect_timeout() -> f64 {
    5.0
}
fn default_backoff() -> u64 {
    200
}

impl BackendConfig {
    /// A local backend named after its model (what a plain `"model": "smollm2:135m"`
    /// request uses when the configuration does not declare it).
    pub fn local(model: &str, price: Price) -> Self {
        Self {
            name: model.to_string(),
            kind: BackendKind::Local,
            model: model.to_string(),
            base_url: None,
            base_url_env: None,
            api_key_env: None,
            timeout_secs: default_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            retries: None,
            backoff_ms: default_backoff(),
            price,
            breaker: BreakerConfig::default(),
            tasks: TaskApi::Chat,
        }
    }

    /// Retries after the first attempt.
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(match self.kind {
            BackendKind::Local => 0,
            BackendKind::Openai => 1,
        })
    }

    /// How to reach this upstream: the base URL and the API key read through `env`
    /// now (a missing variable is an error that names it).
    pub fn upstream(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<bantam_upstream::UpstreamConfig, ConfigError> {
        let base_url = self.resolve_base_url(env)?;
        let api_key = match &self.api_key_env {
            Some(var) => Some(env(var).filter(|k| !k.is_empty()).ok_or_else(|| {
                ConfigError(format!(
                    "backend {:?}: environment variable {var} (its API key) is not set",
                    self.name
                ))
            })?),
            None => None,
        };
        Ok(bantam_upstream::UpstreamConfig {
            name: self.name.clone(),
            base_url,
            api_key,
            timeout_secs: self.timeout_secs,
            connect_timeout_secs: self.connect_timeout_secs,
            native_tasks: self.tasks == TaskApi::Native,
        })
    }

    /// The upstream base URL from `base_url` or the variable `base_url_env` names
    /// (read through `env`), without a trailing slash.
    pub fn resolve_base_url(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        let url = match (&self.base_url, &self.base_url_env) {
            (Some(u), _) => u.clone(),
            (None, Some(var)) => env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                ConfigError(format!(
                    "backend {:?}: environment variable {var} is not set; set it to the \
                     upstream's base URL, e.g. {var}=http://10.0.0.5:8000/v1",
                    self.name
                ))
            })?,
            (None, None) => {
                return Err(ConfigError(format!(
                    "backend {:?} (type openai) needs base_url or base_url_env",
                    self.name
                )))
            }
        };
        let url = url.trim().trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError(format!(
                "backend {:?}: base URL {url:?} must start with http:// or https://",
                self.name
            )));
        }
        Ok(url)
    }
}

/// A header condition: present, or equal to `value`, or matching `regex`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// Exact value.
    #[serde(default)]
    pub value: Option<String>,
    /// Regular expression the value must match.
    #[serde(default)]
    pub regex: Option<String>,
}

/// One rule of a `rules` route: every condition given must hold; the first rule that
/// matches picks `backend`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Backend to use when the rule matches.
    pub backend: String,
    /// Short reason reported in `x-bantam-route-reason` (default: the conditions).
    pub reason: Option<String>,
    /// `chat`, `completions`, `classify`, `extract` or `summarize`.
    pub endpoint: Option<String>,
    /// Prompt at least this many characters (all messages).
    pub min_prompt_chars: Option<usize>,
    /// Prompt at most this many characters.
    pub max_prompt_chars: Option<usize>,
    /// The request has (`true`) or lacks (`false`) tools.
    pub tools: Option<bool>,
    /// The request has (`true`) or lacks (`false`) a `response_format` schema/JSON mode.
    pub schema: Option<bool>,
    /// Any of these words or phrases in the user's messages (case-insensitive).
    pub keywords: Vec<String>,
    /// A regular expression matching somewhere in the user's messages.
    pub regex: Option<String>,
    /// A request header condition.
    pub header: Option<HeaderMatch>,
}

/// How a route picks a backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// The first matching rule, else `default`.
    #[default]
    Rules,
    /// The first matching rule, else a classifier over the prompt's embedding
    /// (`[routes.learned]`) picks `local` or `escalate`.
    Learned,
    /// The first matching rule, else answer with `local` and escalate when the
    /// answer fails a check (`[routes.cascade]`: token confidence; a structured
    /// output the local model could not finish or validate always escalates).
    Cascade,
}

/// `[routes.cascade]`: the checks of a `cascade` route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    /// Backend that answers first.
    pub local: String,
    /// Backend for answers that fail a check.
    pub escalate: String,
    /// Escalate when the mean log-probability of the answer's tokens is below this
    /// (e.g. -1.0; the answer's geometric-mean token probability below e^-1 ≈ 0.37).
    #[serde(default)]
    pub min_mean_logprob: Option<f32>,
    /// Escalate when any token's log-probability is below this.
    #[serde(default)]
    pub min_token_logprob: Option<f32>,
}

/// `[routes.learned]`: the classifier of a `learned` route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedConfig {
    /// The router file written by `bantam router train`.
    pub model: PathBuf,
    /// Backend for prompts scored below the threshold.
    pub local: String,
    /// Backend for prompts scored at or above it.
    pub escalate: String,
    /// Override the file's calibrated threshold (0..1).
    #[serde(default)]
    pub threshold: Option<f32>,
}

/// One `[[routes]]` entry: a virtual model name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The model name clients send.
    pub name: String,
    /// The backends this route may use, in fallback order.
    pub backends: Vec<String>,
    /// Backend used when no rule matches (default: the first of `backends`).
    #[serde(default)]
    pub default: Option<String>,
    /// Policy.
    #[serde(default)]
    pub policy: PolicyKind,
    /// Rules, tried in order (both policies).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The classifier of a `learned` route.
    #[serde(default)]
    pub learned: Option<LearnedConfig>,
    /// The checks of a `cascade` route.
    #[serde(default)]
    pub cascade: Option<CascadeConfig>,
    /// On a failure of the chosen backend, try the route's other backends in order.
    #[serde(default = "yes")]
    pub fallback: bool,
}

fn yes() -> bool {
    true
}

/// `[usage]`: the cost ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// Record every request (default true).
    pub enabled: bool,
    /// SQLite file (default `$BANTAM_HOME/usage.db`).
    pub path: Option<PathBuf>,
    /// Price of local models that are not declared as backends.
    pub local_price: Price,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            local_price: Price::default(),
        }
    }
}

/// Everything routing needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Declared backends.
    pub backends: Vec<BackendConfig>,
    /// Routes.
    pub routes: Vec<RouteConfig>,
    /// The ledger.
    pub usage: UsageConfig,
}

impl RoutingConfig {
    /// Check names and references; errors say which entry to fix.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        for b in &self.backends {
            if b.name.trim().is_empty() {
                return Err(ConfigError("a backend has an empty name".into()));
            }
            if !names.insert(b.name.as_str()) {
                return Err(ConfigError(format!(
                    "backend {:?} is declared twice",
                    b.name
                )));
            }
            if !(b.timeout_secs > 0.0 && b.connect_timeout_secs > 0.0) {
                return Err(ConfigError(format!(
                    "backend {:?}: timeouts must be positive",
                    b.name
                )));
            }
            let p = b.price;
            if [p.input_per_1m, p.output_per_1m, p.per_second]
                .iter()
                .any(|v| !v.is_finite() || *v < 0.0)
            {
                return Err(ConfigError(format!(
                    "backend {:?}: prices must be finite and not negative",
                    b.name
                )));
            }
            if b.kind == BackendKind::Local && (b.base_url.is_some() || b.base_url_env.is_some()) {
                return Err(ConfigError(format!(
                    "backend {:?} is local; base_url belongs to type = \"openai\" backends",
                    b.name
                )));
            }
        }
        for r in &self.routes {
            if names.contains(r.name.as_str()) {
                return Err(ConfigError(format!(
                    "route {:?} has the name of a backend; give it another",
                    r.name
                )));
            }
            if r.backends.is_empty() {
                return Err(ConfigError(format!("route {:?} lists no backends", r.name)));
            }
            let known = |n: &str, what: &str| {
                if r.backends.iter().any(|b| b == n) && names.contains(n) {
                    Ok(())
                } else {
                    Err(ConfigError(format!(
                        "route {:?}: {what} {n:?} is not one of its backends (declared in \
                         [[backends]] and listed in the route's `backends`)",
                        r.name
                    )))
                }
            };
            for b in &r.backends {
                if !names.contains(b.as_str()) {
                    return Err(ConfigError(format!(
                        "route {:?} uses backend {b:?}, which no [[backends]] entry declares",
                        r.name
                    )));
                }
            }
            if let Some(d) = &r.default {
                known(d, "default")?;
            }
            match (&r.policy, &r.learned) {
                (PolicyKind::Learned, Some(l)) => {
                    known(&l.local, "learned.local")?;
                    known(&l.escalate, "learned.escalate")?;
                    if l.threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
                        return Err(ConfigError(format!(
                            "route {:?}: learned.threshold must be between 0 and 1",
                            r.name
                        )));
                    }
                }
                (PolicyKind::Learned, None) => {
                    return Err(ConfigError(format!(
                        "route {:?} has policy = \"learned\" but no [routes.learned] section \
                         (model = \"router.json\", local = ..., escalate = ...)",
                        r.name
                    )))
                }
                (PolicyKind::Rules, Some(_)) => {
                    return Err(ConfigError(format!(
                        "route {:?} has a [routes.learned] section; set policy = \"learned\"",
                        r.name
                    )))
                }
                (PolicyKind::Rules | PolicyKind::Cascade, None) => {}
                (PolicyKind::Cascade, Some(_)) => {
                    return Err(ConfigError(format!(
                        "route {:?} has a [routes.learned] section; set policy = \"learned\"",
                        r.name
                    )))
                }
            }
            match (&r.policy, &r.cascade) {
                (PolicyKind::Cascade, Some(c)) => {
                    known(&c.local, "cascade.local")?;
                    known(&c.escalate, "cascade.escalate")?;
                    if c.local == c.escalate {
                        return Err(ConfigError(format!(
                            "route {:?}: cascade.local and cascade.escalate must differ",
                            r.name
                        )));
                    }
                }
                (PolicyKind::Cascade, None) => {
                    return Err(ConfigError(format!(
                        "route {:?} has policy = \"cascade\" but no [routes.cascade] section \
                         (local = ..., escalate = ..., min_mean_logprob = -1.0)",
                        r.name
                    )))
                }
                (_, Some(_)) => {
                    return Err(ConfigError(format!(
                        "route {:?} has a [routes.cascade] section; set policy = \"cascade\"",
                        r.name
                    )))
                }
                (_, None) => {}
            }
            for rule in &r.rules {
                known(&rule.backend, "rule backend")?;
                if let Some(re) = &rule.regex {
                    regex::Regex::new(re).map_err(|e| {
                        ConfigError(format!("route {:?}: bad rule regex {re:?}: {e}", r.name))
                    })?;
                }
                if let Some(h) = &rule.header {
                    if let Some(re) = &h.regex {
                        regex::Regex::new(re).map_err(|e| {
                            ConfigError(format!("route {:?}: bad header regex {re:?}: {e}", r.name))
                        })?;
                    }
                }
                if let Some(e) = &rule.endpoint {
                    if bantam_api::Endpoint::parse(e).is_none() {
                        return Err(ConfigError(format!(
                            "route {:?}: rule endpoint must be one of chat, completions, \
                             embeddings, classify, extract, summarize; got {e:?}",
                            r.name
                        )));
                    }
                }
            }
        }
        let mut route_names = BTreeSet::new();
        for r in &self.routes {
            if !route_names.insert(r.name.as_str()) {
                return Err(ConfigError(format!("route {:?} is declared twice", r.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> RoutingConfig {
        toml::from_str(s).unwrap()
    }

    const BASE: &str = r#"
        [[backends]]
        name = "small"
        type = "local"
        model = "smollm2:135m"

        [[backends]]
        name = "large"
        type = "openai"
        model = "big"
        base_url_env = "UPSTREAM_BASE_URL"
        price = { input_per_1m = 0.15, output_per_1m = 0.6 }

        [[routes]]
        name = "auto"
        backends = ["small", "large"]
        [[routes.rules]]
        backend = "large"
        keywords = ["contract"]
    "#;

    #[test]
    fn parses_and_checks() {
        let c = parse(BASE);
        c.check().unwrap();
        assert_eq!(c.backends[1].retries(), 1);
        assert_eq!(c.backends[0].retries(), 0);
        assert_eq!(c.routes[0].policy, PolicyKind::Rules);
        assert!(c.routes[0].fallback);
        let env = |k: &str| (k == "UPSTREAM_BASE_URL").then(|| "http://h:1/v1/".to_string());
        assert_eq!(
            c.backends[1].resolve_base_url(&env).unwrap(),
            "http://h:1/v1"
        );
        let none = |_: &str| None;
        let e = c.backends[1].resolve_base_url(&none).unwrap_err().0;
        assert!(e.contains("UPSTREAM_BASE_URL is not set"), "{e}");
    }

    #[test]
    fn price_math() {
        let p = Price {
            input_per_1m: 0.15,
            output_per_1m: 0.6,
            per_second: 0.001,
        };
        let c = p.cost(1_000_000, 500_000, 2.0);
        assert!((c - (0.15 + 0.3 + 0.002)).abs() < 1e-12);
    }

    #[test]
    fn bad_references_are_named() {
        for (patch, want) in [
            (r#"default = "nope""#, "default \"nope\""),
            (r#"backends = ["small", "ghost"]"#, "ghost"),
        ] {
            let text = BASE.replace(r#"backends = ["small", "large"]"#, patch);
            let text = if patch.starts_with("default") {
                BASE.replace(
                    r#"backends = ["small", "large"]"#,
                    &format!("backends = [\"small\", \"large\"]\n{patch}"),
                )
            } else {
                text
            };
            let e = parse(&text).check().unwrap_err().0;
            assert!(e.contains(want), "{e}");
        }
        let dup =
            format!("{BASE}\n[[backends]]\nname = \"small\"\ntype = \"local\"\nmodel = \"x\"\n");
        assert!(parse(&dup).check().unwrap_err().0.contains("twice"));
        let bad_re = BASE.replace(r#"keywords = ["contract"]"#, r#"regex = "(unclosed""#);
        assert!(parse(&bad_re)
            .check()
            .unwrap_err()
            .0
            .contains("bad rule regex"));
        let neg = BASE.replace("0.15", "-1.0");
        assert!(parse(&neg).check().unwrap_err().0.contains("not negative"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = BASE.replace("keywords", "keywordz");
        assert!(toml::from_str::<RoutingConfig>(&text).is_err());
    }
}
