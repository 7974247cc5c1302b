//! Eval targets: a local model, or an OpenAI-compatible API (another Bantam and its
//! routes, vLLM, llama-server, a hosted API) called through `bantam-upstream`'s
//! [`Upstream`] backend — both driven through the same `Backend` trait.
//!
//! A target is written `NAME` (a model in the local store or a `.gguf` path) or
//! `URL#MODEL`: the base URL of the API (up to and including `/v1`) and, after `#`,
//! the model or route name sent as `model`.
//!
//! Every call is deterministic (temperature 0, seed 0) and the same for local and
//! remote targets (see [`crate::run`]). A Bantam server's `x-bantam-*` headers say
//! which backend of a route answered ([`Served`]).

use bantam_upstream::{Upstream, UpstreamConfig};
use serde_json::Value;

/// What a `--target` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// A model from the local store (or a `.gguf` path).
    Local(String),
    /// An OpenAI-compatible API.
    Remote {
        /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8090/v1`.
        base_url: String,
        /// The model or route name sent as `model`.
        model: String,
    },
}

/// A target that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Malformed `--target`.
    #[error("target {target:?}: {reason}")]
    Syntax {
        /// As given.
        target: String,
        /// What to write instead.
        reason: String,
    },
    /// The HTTP client could not be set up (e.g. the API key variable is not set).
    #[error("target {target:?}: {reason}")]
    Setup {
        /// As given.
        target: String,
        /// Why.
        reason: String,
    },
}

impl TargetSpec {
    /// Parse a `--target` value.
    pub fn parse(s: &str) -> Result<TargetSpec, TargetError> {
        let bad = |reason: &str| TargetError::Syntax {
            target: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty target"));
        }
        if !(t.starts_with("http://") || t.starts_with("https://")) {
            if t.contains("://") {
                return Err(bad("only http:// and https:// APIs can be targets"));
            }
            return Ok(TargetSpec::Local(t.to_string()));
        }
        let (url, model) = t.split_once('#').ok_or_else(|| {
            bad("name the model or route after `#`, e.g. http://127.0.0.1:8090/v1#auto or https://api.openai.com/v1#gpt-4o-mini")
        })?;
        let model = model.trim();
        if model.is_empty() {
            return Err(bad("the model name after `#` is empty"));
        }
        let url = url.trim_end_matches('/');
        let host = url.split_once("://").map_or("", |(_, rest)| rest);
        if host.is_empty() || host.starts_with('/') {
            return Err(bad("the URL has no host"));
        }
        if url.ends_with("/chat/completions") {
            return Err(bad(
                "give the API's base URL (ending in /v1), not the chat/completions endpoint",
            ));
        }
        Ok(TargetSpec::Remote {
            base_url: url.to_string(),
            model: model.to_string(),
        })
    }
}

/// The client of a remote target: `bantam-upstream`'s backend for `base_url`, with
/// the API key read from the variable `api_key_env` through `env` (an error if it
/// is not set; none is sent without it). `name` (the target as given) names it in
/// errors. Task requests (classification) are translated into chat completions,
/// as a route does for an upstream.
pub fn backend(
    name: &str,
    base_url: &str,
    api_key_env: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Upstream, TargetError> {
    let setup = |reason: String| TargetError::Setup {
        target: name.to_string(),
        reason,
    };
    let api_key = match api_key_env {
        Some(var) => Some(env(var).filter(|k| !k.is_empty()).ok_or_else(|| {
            setup(format!(
                "environment variable {var} (its API key) is not set"
            ))
        })?),
        None => None,
    };
    Upstream::new(UpstreamConfig {
        name: name.to_string(),
        base_url: base_url.to_string(),
        api_key,
        // A long generation on a slow server is not a failure.
        timeout_secs: 600.0,
        connect_timeout_secs: 10.0,
        native_tasks: false,
    })
    .map_err(setup)
}

/// How a Bantam server (a route) answered, from its response headers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    /// `x-bantam-backend`: the backend that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// `x-bantam-route-reason`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_reason: Option<String>,
    /// `x-bantam-cost-usd`: what the server charged (absent for streamed answers,
    /// whose cost is in the usage chunk: `usage.cost_usd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Served {
    /// From response headers (and a streamed answer's usage); `None` when the server
    /// is not a Bantam (no `x-bantam-backend`).
    pub fn from_headers(h: &[(String, String)], usage: Option<&Value>) -> Option<Served> {
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let backend = get("x-bantam-backend")?;
        let cost = get("x-bantam-cost-usd")
            .and_then(|c| c.parse::<f64>().ok())
            .or_else(|| {
                usage
                    .and_then(|u| u.get("cost_usd"))
                    .and_then(Value::as_f64)
            });
        Some(Served {
            backend: Some(backend),
            route_reason: get("x-bantam-route-reason"),
            cost_usd: cost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_syntax() {
        assert_eq!(
            TargetSpec::parse("smollm2:135m").unwrap(),
            TargetSpec::Local("smollm2:135m".into())
        );
        assert_eq!(
            TargetSpec::parse("/models/x.gguf").unwrap(),
            TargetSpec::Local("/models/x.gguf".into())
        );
        assert_eq!(
            TargetSpec::parse("http://127.0.0.1:8090/v1/#auto").unwrap(),
            TargetSpec::Remote {
                base_url: "http://127.0.0.1:8090/v1".into(),
                model: "auto".into()
            }
        );
        assert_eq!(
            TargetSpec::parse("https://api.openai.com/v1#gpt-4o-mini").unwrap(),
            TargetSpec::Remote {
                base_url: "https://api.openai.com/v1".into(),
                model: "gpt-4o-mini".into()
            }
        );
        for (bad, why) in [
            ("http://127.0.0.1:8090/v1", "after `#`"),
            ("http://127.0.0.1:8090/v1#", "empty"),
            ("http://#m", "no host"),
            ("http://h/v1/chat/completions#m", "base URL"),
            ("ftp://h/v1#m", "http:// and https://"),
            ("  ", "empty target"),
        ] {
            let e = TargetSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn api_key_variable_must_be_set() {
        let env = |k: &str| (k == "SET").then(|| "sk-x".to_string());
        let e = backend("t", "http://h/v1", Some("UNSET"), &env).unwrap_err();
        assert!(e.to_string().contains("UNSET"), "{e}");
        let r = backend("t", "http://h/v1", Some("SET"), &env).unwrap();
        assert_eq!(r.base_url(), "http://h/v1");
    }

    #[test]
    fn served_comes_from_a_bantams_headers() {
        let h = vec![
            ("x-bantam-backend".to_string(), "small".to_string()),
            ("x-bantam-cost-usd".to_string(), "0.5".to_string()),
        ];
        let s = Served::from_headers(&h, None).unwrap();
        assert_eq!(
            (s.backend.as_deref(), s.cost_usd),
            (Some("small"), Some(0.5))
        );
        assert!(Served::from_headers(&[], None).is_none());
    }
}
