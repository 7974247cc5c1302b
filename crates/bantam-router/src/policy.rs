//! What a route knows about a request ([`Features`]) and the `rules` policy.

use std::collections::HashMap;

use bantam_api::Request;
use regex::Regex;

use crate::config::{RouteConfig, RuleConfig};

/// The request properties policies look at, computed once per request.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Endpoint (`chat`, `completions`, `embeddings`, `classify`, `extract`,
    /// `summarize`).
    pub endpoint: &'static str,
    /// Characters of the whole prompt (every message; for tasks the inputs with the
    /// instructions, labels, examples and schema).
    pub prompt_chars: usize,
    /// Text of the user's messages (chat), the prompts (completions) or the inputs
    /// (embeddings, tasks), joined by newlines; keywords and regexes look here, not
    /// at system prompts.
    pub user_text: String,
    /// `tools` present and non-empty.
    pub tools: bool,
    /// `response_format` asks for JSON (schema or JSON mode) or a grammar.
    pub schema: bool,
    /// Request headers, names lower-cased.
    pub headers: HashMap<String, String>,
}

impl Features {
    /// Features of a request.
    pub fn of(req: &Request, headers: HashMap<String, String>) -> Self {
        Features {
            endpoint: req.endpoint().as_str(),
            prompt_chars: req.prompt_chars(),
            user_text: req.user_text(),
            tools: req.has_tools(),
            schema: req.wants_structure(),
            headers,
        }
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    cfg: RuleConfig,
    keywords: Vec<String>,
    regex: Option<Regex>,
    header_regex: Option<Regex>,
    reason: String,
}

impl Rule {
    fn new(cfg: &RuleConfig) -> Self {
        let mut what = Vec::new();
        if let Some(e) = &cfg.endpoint {
            what.push(format!("endpoint={e}"));
        }
        if let Some(n) = cfg.min_prompt_chars {
            what.push(format!("prompt>={n}"));
        }
        if let Some(n) = cfg.max_prompt_chars {
            what.push(format!("prompt<={n}"));
        }
        if let Some(t) = cfg.tools {
            what.push(if t { "tools" } else { "no-tools" }.into());
        }
        if let Some(s) = cfg.schema {
            what.push(if s { "schema" } else { "no-schema" }.into());
        }
        if !cfg.keywords.is_empty() {
            what.push("keyword".into());
        }
        if cfg.regex.is_some() {
            what.push("regex".into());
        }
        if let Some(h) = &cfg.header {
            what.push(format!("header:{}", h.name.to_ascii_lowercase()));
        }
        let reason = cfg.reason.clone().unwrap_or_else(|| what.join("+"));
        Self {
            keywords: cfg.keywords.iter().map(|k| k.to_lowercase()).collect(),
            // Checked by `RoutingConfig::check`.
            regex: cfg.regex.as_deref().and_then(|r| Regex::new(r).ok()),
            header_regex: cfg
                .header
                .as_ref()
                .and_then(|h| h.regex.as_deref())
                .and_then(|r| Regex::new(r).ok()),
            cfg: cfg.clone(),
            reason,
        }
    }

    /// Whether every condition holds.
    fn matches(&self, f: &Features, lower_user: &mut Option<String>) -> bool {
        let c = &self.cfg;
        if c.endpoint.as_deref().is_some_and(|e| e != f.endpoint) {
            return false;
        }
        if c.min_prompt_chars.is_some_and(|n| f.prompt_chars < n)
            || c.max_prompt_chars.is_some_and(|n| f.prompt_chars > n)
        {
            return false;
        }
        if c.tools.is_some_and(|t| t != f.tools) || c.schema.is_some_and(|s| s != f.schema) {
            return false;
        }
        if !self.keywords.is_empty() {
            let text = lower_user.get_or_insert_with(|| f.user_text.to_lowercase());
            if !self.keywords.iter().any(|k| text.contains(k.as_str())) {
                return false;
            }
        }
        if let Some(re) = &self.regex {
            if !re.is_match(&f.user_text) {
                return false;
            }
        }
        if let Some(h) = &c.header {
            let Some(v) = f.headers.get(&h.name.to_ascii_lowercase()) else {
                return false;
            };
            if h.value.as_ref().is_some_and(|want| want != v) {
                return false;
            }
            if let Some(re) = &self.header_regex {
                if !re.is_match(v) {
                    return false;
                }
            }
        }
        true
    }
}

/// A route's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Backend to try first.
    pub backend: String,
    /// Why (`default`, `rule:<reason>`).
    pub reason: String,
}

/// The `rules` policy of one route.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    rules: Vec<Rule>,
    default: String,
}

impl Rules {
    pub(crate) fn new(r: &RouteConfig) -> Self {
        Self {
            rules: r.rules.iter().map(Rule::new).collect(),
            default: r.default.clone().unwrap_or_else(|| r.backends[0].clone()),
        }
    }

    /// The first matching rule's decision.
    pub(crate) fn first_match(&self, f: &Features) -> Option<Decision> {
        let mut lower = None;
        self.rules
            .iter()
            .find(|r| r.matches(f, &mut lower))
            .map(|rule| Decision {
                backend: rule.cfg.backend.clone(),
                reason: format!("rule:{}", rule.reason),
            })
    }

    /// The default backend.
    pub(crate) fn fallback(&self) -> Decision {
        Decision {
            backend: self.default.clone(),
            reason: "default".into(),
        }
    }

    #[cfg(test)]
    pub(crate) fn decide(&self, f: &Features) -> Decision {
        self.first_match(f).unwrap_or_else(|| self.fallback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HeaderMatch;
    use bantam_api::Endpoint;
    use serde_json::{json, Value};

    fn req(endpoint: Endpoint, body: &Value) -> Request {
        Request::parse(endpoint, body.to_string().as_bytes()).unwrap()
    }

    fn route(rules: Vec<RuleConfig>) -> Rules {
        Rules::new(&RouteConfig {
            name: "auto".into(),
            backends: vec!["small".into(), "large".into()],
            default: None,
            policy: Default::default(),
            rules,
            learned: None,
            cascade: None,
            fallback: true,
        })
    }

    fn chat(user: &str) -> Value {
        json!({"model": "auto", "messages": [
            {"role": "system", "content": "You are helpful. contract"},
            {"role": "user", "content": [{"type": "text", "text": user}]}
        ]})
    }

    #[test]
    fn features_of_chat_and_completions() {
        let f = Features::of(&req(Endpoint::Chat, &chat("Hello")), HashMap::new());
        assert_eq!(f.user_text, "Hello");
        assert_eq!(f.prompt_chars, "You are helpful. contract".len() + 5);
        assert!(!f.tools && !f.schema);
        let mut b = chat("x");
        b["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
        b["tool_choice"] = json!("none");
        b["response_format"] = json!({"type": "json_object"});
        let f = Features::of(&req(Endpoint::Chat, &b), HashMap::new());
        assert!(
            !f.tools && f.schema,
            "tools the model may not call do not count"
        );
        b["tool_choice"] = json!("auto");
        b.as_object_mut().unwrap().remove("response_format");
        let f = Features::of(&req(Endpoint::Chat, &b), HashMap::new());
        assert!(f.tools && !f.schema);
        let f = Features::of(
            &req(
                Endpoint::Completions,
                &json!({"model": "m", "prompt": ["ab", "cd"]}),
            ),
            HashMap::new(),
        );
        assert_eq!(f.endpoint, "completions");
        assert_eq!(f.user_text, "ab\ncd");
    }

    #[test]
    fn features_of_task_requests() {
        let b = json!({"model": "m", "input": ["refund please", "hi"], "labels": ["a", "b"],
                       "instructions": "Sort."});
        let f = Features::of(&req(Endpoint::Classify, &b), HashMap::new());
        assert_eq!(
            (f.endpoint, f.user_text.as_str()),
            ("classify", "refund please\nhi")
        );
        // The texts, the instructions and the labels.
        assert_eq!(f.prompt_chars, "refund please".len() + 2 + 5 + 2);
        assert!(!f.schema);
        let b = json!({"model": "m", "input": "order 7", "schema": {"type": "object"}});
        let f = Features::of(&req(Endpoint::Extract, &b), HashMap::new());
        assert!(f.schema && f.user_text == "order 7");
        assert_eq!(Endpoint::parse("summarize"), Some(Endpoint::Summarize));
        assert_eq!(Endpoint::parse("embed"), None);
    }

    #[test]
    fn first_matching_rule_wins_and_default_otherwise() {
        let r = route(vec![
            RuleConfig {
                backend: "large".into(),
                keywords: vec!["Contract".into()],
                ..Default::default()
            },
            RuleConfig {
                backend: "large".into(),
                reason: Some("long".into()),
                min_prompt_chars: Some(100),
                ..Default::default()
            },
            RuleConfig {
                backend: "small".into(),
                tools: Some(true),
                ..Default::default()
            },
        ]);
        let d = |body: Value| r.decide(&Features::of(&req(Endpoint::Chat, &body), HashMap::new()));
        // The system prompt's "contract" does not count: only user messages.
        assert_eq!(d(chat("hi")).reason, "default");
        assert_eq!(d(chat("hi")).backend, "small");
        let k = d(chat("Review this CONTRACT please"));
        assert_eq!(
            (k.backend.as_str(), k.reason.as_str()),
            ("large", "rule:keyword")
        );
        let long = d(chat(&"x".repeat(200)));
        assert_eq!(long.reason, "rule:long");
    }

    #[test]
    fn regex_header_endpoint_and_schema_conditions() {
        let r = route(vec![RuleConfig {
            backend: "large".into(),
            endpoint: Some("chat".into()),
            schema: Some(true),
            regex: Some(r"(?i)\bwhy\b".into()),
            header: Some(HeaderMatch {
                name: "X-Tier".into(),
                value: None,
                regex: Some("^(gold|platinum)$".into()),
            }),
            ..Default::default()
        }]);
        let mut b = chat("Why is the sky blue?");
        b["response_format"] = json!({"type": "json_schema", "json_schema": {"schema": {}}});
        let h = |v: &str| HashMap::from([("x-tier".to_string(), v.to_string())]);
        let d = |b: &Value, h| r.decide(&Features::of(&req(Endpoint::Chat, b), h)).backend;
        assert_eq!(d(&b, h("gold")), "large");
        assert_eq!(d(&b, h("bronze")), "small", "header regex");
        assert_eq!(d(&b, HashMap::new()), "small", "header absent");
        let mut plain = b.clone();
        plain.as_object_mut().unwrap().remove("response_format");
        assert_eq!(d(&plain, h("gold")), "small", "schema");
        assert_eq!(d(&chat("what is it"), h("gold")), "small", "regex");
        let f = Features::of(
            &req(
                Endpoint::Completions,
                &json!({"model": "m", "prompt": "why"}),
            ),
            h("gold"),
        );
        assert_eq!(r.decide(&f).backend, "small", "endpoint");
    }
}
