//! Per-model constraint compiler and per-request guide.

use std::sync::Arc;

use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use crate::compile::{compile, grammar_error, what};
use crate::validate::Validator;
use crate::{OutputConstraint, StructuredError};

/// Builds [`Guide`]s for one model's vocabulary. Building it walks the vocabulary
/// once (tens to hundreds of milliseconds); keep it with the model.
pub struct Constrainer {
    factory: Arc<ParserFactory>,
    env: TokEnv,
}

impl std::fmt::Debug for Constrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constrainer")
            .field("vocab", &self.env.tok_trie().vocab_size())
            .finish()
    }
}

impl Constrainer {
    /// `words[i]` is token `i`'s bytes; special tokens that render as nothing in plain
    /// text are given as `0xFF` + their special text (llguidance's convention), so a
    /// grammar can never produce them by accident. `eog` are the end-of-generation
    /// tokens, the first being the primary one; they are allowed where the grammar
    /// may end.
    pub fn new(words: &[Vec<u8>], eog: &[u32]) -> Result<Self, StructuredError> {
        let eos = *eog.first().ok_or_else(|| {
            StructuredError::Engine("the model has no end-of-generation token".into())
        })?;
        let info = TokRxInfo::new(words.len() as u32, eos);
        let trie = TokTrie::from(&info, words).with_eos_tokens(eog);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        Self::from_env(env)
    }

    /// From a ready token environment (tests use llguidance's single-byte one).
    pub fn from_env(env: TokEnv) -> Result<Self, StructuredError> {
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| StructuredError::Engine(e.to_string()))?;
        factory.set_stderr_log_level(0);
        factory.set_buffer_log_level(0);
        Ok(Self {
            factory: Arc::new(factory),
            env,
        })
    }

    /// Compile a constraint for one request. Errors are the client's: a malformed
    /// schema, regex or grammar, or keywords that cannot be enforced.
    pub fn start(&self, c: &OutputConstraint) -> Result<Guide, StructuredError> {
        let compiled = compile(c)?;
        let make = |g| {
            let m = Matcher::new(self.factory.create_parser(g));
            match m.get_error() {
                Some(e) => Err(grammar_error(what(c), &e)),
                None => Ok(m),
            }
        };
        let mut matcher = compiled.grammar.map(make).transpose()?;
        // The first mask, now: a grammar that admits no output, or one too large to
        // follow, is the client's to fix before any token is generated.
        if let Some(m) = matcher.as_mut() {
            m.compute_mask_or_eos()
                .map_err(|e| parser_error(what(c), &e.to_string()))?;
        }
        let mut triggers = Vec::new();
        for (text, at_start, g) in compiled.triggers {
            triggers.push(Trigger {
                text,
                at_start,
                matcher: make(g)?,
            });
        }
        Ok(Guide {
            matcher,
            triggers,
            validator: compiled.validator,
            text: Vec::new(),
            env: self.env.clone(),
        })
    }
}

/// A parser failure as the client should read it: a grammar that admits nothing or
/// is too large to follow is theirs to change (`Invalid`, a 400); anything else is
/// the constraint engine's (one line, no internal state).
pub(crate) fn parser_error(what: &'static str, msg: &str) -> StructuredError {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let first: String = first.chars().take(200).collect();
    if msg.contains("NoExtensionBias") || msg.contains("no valid token") {
        return StructuredError::Invalid {
            what,
            reason: "it admits no output: no token can start or continue it (an unproductive or self-referencing rule?)".into(),
        };
    }
    if let Some(i) = msg.find("Current row has") {
        let detail: String = msg[i..].split(';').take(2).collect::<Vec<_>>().join(";");
        return StructuredError::Invalid {
            what,
            reason: format!(
                "it is too large to follow while generating ({}); use fewer alternatives or optional properties",
                detail.trim()
            ),
        };
    }
    StructuredError::Engine(first.trim_start_matches("Parser Error: ").to_string())
}

/// A grammar waiting for its trigger text.
struct Trigger {
    text: String,
    /// Only at the start of the output (after whitespace).
    at_start: bool,
    matcher: Matcher,
}

/// Allowed next tokens.
pub struct TokenMask(SimpleVob);

impl TokenMask {
    /// Set the logits of disallowed tokens to −∞.
    pub fn apply(&self, logits: &mut [f32]) {
        for (i, l) in logits.iter_mut().enumerate() {
            if !self.0.is_allowed(i as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// Is `token` allowed?
    pub fn allows(&self, token: u32) -> bool {
        self.0.is_allowed(token)
    }

    /// How many tokens are allowed.
    pub fn count(&self) -> usize {
        self.0.num_set()
    }
}

/// The constraint state of one request.
pub struct Guide {
    /// The enforcing matcher (`None` while waiting for a trigger, or when the model
    /// answered in free text).
    matcher: Option<Matcher>,
    triggers: Vec<Trigger>,
    validator: Validator,
    text: Vec<u8>,
    env: TokEnv,
}

impl std::fmt::Debug for Guide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guide")
            .field("validator", &self.validator)
            .field("active", &self.matcher.is_some())
            .field("triggers", &self.triggers.len())
            .finish()
    }
}

impl Guide {
    /// Is the constraint enforcing now (false while waiting for a trigger)?
    pub fn is_active(&self) -> bool {
        self.matcher.is_some()
    }

    /// Tokens allowed next. Only meaningful while [`Self::is_active`].
    pub fn mask(&mut self) -> Result<TokenMask, StructuredError> {
        let m = self
            .matcher
            .as_mut()
            .ok_or_else(|| StructuredError::Engine("no active constraint".into()))?;
        m.compute_mask_or_eos()
            .map(TokenMask)
            .map_err(|e| parser_error("grammar", &e.to_string()))
    }

    /// Record a generated token and its bytes.
    pub fn accept(&mut self, token: u32, bytes: &[u8]) -> Result<(), StructuredError> {
        self.text.extend_from_slice(bytes);
        if let Some(m) = self.matcher.as_mut() {
            return m
                .consume_token(token)
                .map_err(|e| parser_error("grammar", &e.to_string()));
        }
        if self.triggers.is_empty() {
            return Ok(());
        }
        let lead = self.text.len() - self.text.trim_ascii_start().len();
        let body = &self.text[lead..];
        let mut fired = None;
        self.triggers.retain(|t| {
            let tb = t.text.as_bytes();
            if t.at_start {
                if body.starts_with(tb) {
                    fired.get_or_insert(lead);
                    return true;
                }
                // Still possible while the output is a prefix of the trigger.
                return tb.starts_with(body);
            }
            if let Some(pos) = self.text.windows(tb.len()).position(|w| w == tb) {
                fired.get_or_insert(pos);
            }
            true
        });
        let Some(pos) = fired else {
            return Ok(());
        };
        // The trigger's grammar covers the output from the trigger on.
        let idx = self
            .triggers
            .iter()
            .position(|t| {
                let tb = t.text.as_bytes();
                self.text[pos..].starts_with(tb)
            })
            .unwrap_or(0);
        let mut m = self.triggers.swap_remove(idx).matcher;
        self.triggers.clear();
        let toks = self.env.tokenize_bytes(&self.text[pos..]);
        m.consume_tokens(&toks)
            .map_err(|e| parser_error("grammar", &e.to_string()))?;
        self.matcher = Some(m);
        Ok(())
    }

    /// Nothing may follow: the output is complete.
    pub fn is_complete(&self) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.is_stopped() && !m.is_error())
    }

    /// The generated text so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text).into_owned()
    }

    /// Final check when generation ends. `why` names the reason when it was not the
    /// model's own end (`max_tokens`, a stop string, the context).
    pub fn finish(&mut self, why: Option<&str>) -> Result<(), StructuredError> {
        if let Some(m) = self.matcher.as_mut() {
            if let Some(e) = m.get_error() {
                return Err(parser_error("grammar", &e));
            }
            let done = m.is_stopped() || m.is_accepting().unwrap_or(false);
            if !done {
                return Err(StructuredError::Incomplete(
                    why.unwrap_or("end of generation").to_string(),
                ));
            }
        }
        let text = match &self.validator {
            // Tool calls are checked by their tags and JSON: stray bytes in free text
            // around them (a client's logit_bias can force any token) are not a
            // failure of the format.
            Validator::Tools(_) => String::from_utf8_lossy(&self.text).into_owned(),
            _ => String::from_utf8(self.text.clone())
                .map_err(|_| StructuredError::Violated("output is not valid UTF-8".into()))?,
        };
        self.validator.check(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn constrainer() -> Constrainer {
        Constrainer::from_env(Arc::new(ApproximateTokEnv::single_byte())).unwrap()
    }

    /// Greedy "model" that always prefers the first allowed byte from `wish`.
    fn drive(g: &mut Guide, wish: &[u8]) -> String {
        let mut i = 0;
        let eos = 256 + 5; // <|end|> in the single-byte env
        for _ in 0..200 {
            if g.is_complete() {
                break;
            }
            if !g.is_active() {
                let b = wish[i];
                i += 1;
                g.accept(b as u32, &[b]).unwrap();
                continue;
            }
            let m = g.mask().unwrap();
            let want = wish.get(i).copied();
            match want {
                Some(b) if m.allows(b as u32) => {
                    i += 1;
                    g.accept(b as u32, &[b]).unwrap();
                }
                _ => {
                    if m.allows(eos) {
                        break;
                    }
                    // Take the first allowed byte.
                    let b = (0..256u32).find(|&t| m.allows(t)).unwrap();
                    i += 1;
                    g.accept(b, &[b as u8]).unwrap();
                }
            }
        }
        g.text()
    }

    #[test]
    fn json_schema_is_enforced_and_validated() {
        let c = constrainer();
        let mut g = c
            .start(&OutputConstraint::JsonSchema(json!({
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
                "required": ["n"],
                "additionalProperties": false
            })))
            .unwrap();
        let out = drive(&mut g, br#"{"n": 12345, "extra": true}"#);
        assert_eq!(out, r#"{"n": 1}"#);
        g.finish(None).unwrap();
    }

    #[test]
    fn grammars_that_admit_nothing_or_are_too_large_are_the_clients() {
        let c = constrainer();
        for g in ["start: start\n", "start: x\nx: y\ny: x\n"] {
            let e = c.start(&OutputConstraint::Lark(g.into())).unwrap_err();
            assert!(
                matches!(&e, StructuredError::Invalid { reason, .. } if reason.contains("admits no output")),
                "{g:?}: {e:?}"
            );
        }
        let wide = format!(
            "start: {}\n",
            (0..50_001)
                .map(|i| format!("\"w{i}\""))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        // llguidance finds the row too large at the first step that expands it.
        let e = c
            .start(&OutputConstraint::Lark(wide))
            .and_then(|mut g| {
                for &b in b"w17" {
                    g.mask()?;
                    g.accept(b as u32, &[b])?;
                }
                g.finish(None)
            })
            .unwrap_err();
        assert!(
            matches!(&e, StructuredError::Invalid { reason, .. } if reason.contains("too large")),
            "{e:?}"
        );
        // No parser internals in any message.
        assert!(!e.to_string().contains("<state>"), "{e}");
    }

    #[test]
    fn keywords_the_grammar_cannot_enforce_are_validated() {
        let c = constrainer();
        let schema = json!({"type": "array", "items": {"type": "integer"}, "uniqueItems": true});
        let mut g = c
            .start(&OutputConstraint::JsonSchema(schema.clone()))
            .unwrap();
        let out = drive(&mut g, b"[1, 1]");
        assert_eq!(out, "[1, 1]");
        let e = g.finish(None).unwrap_err();
        assert!(
            matches!(e, StructuredError::Violated(ref m) if m.contains("unique")),
            "{e:?}"
        );
        let mut g = c.start(&OutputConstraint::JsonSchema(schema)).unwrap();
        assert_eq!(drive(&mut g, b"[1, 2]"), "[1, 2]");
        g.finish(None).unwrap();
        // A format nothing can check is refused before any work, named.
        let e = c
            .start(&OutputConstraint::JsonSchema(
                json!({"type": "string", "format": "zipcode"}),
            ))
            .unwrap_err();
        assert_eq!(
            e,
            StructuredError::Unsupported(vec!["format \"zipcode\"".into()])
        );
        let e = c
            .start(&OutputConstraint::Lark("start: (".into()))
            .unwrap_err();
        assert!(
            matches!(
                e,
                StructuredError::Invalid {
                    what: "grammar",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn truncated_output_is_incomplete() {
        let c = constrainer();
        let mut g = c.start(&OutputConstraint::JsonObject).unwrap();
        g.accept(b'{' as u32, b"{").unwrap();
        assert!(matches!(
            g.finish(Some("max_tokens")),
            Err(StructuredError::Incomplete(_))
        ));
    }

    #[test]
    fn choice_and_regex() {
        let c = constrainer();
        let mut g = c
            .start(&OutputConstraint::Choice(vec![
                "red".into(),
                "green".into(),
            ]))
            .unwrap();
        assert_eq!(drive(&mut g, b"gx"), "green");
        g.finish(None).unwrap();
        let mut g = c
            .start(&OutputConstraint::Regex(r"[0-9]{3}".into()))
            .unwrap();
        assert_eq!(drive(&mut g, b"12a"), "120");
        g.finish(None).unwrap();
    }

    #[test]
    fn optional_tool_call_starts_after_trigger() {
        let c = constrainer();
        let tools = vec![crate::ToolSpec {
            name: "f".into(),
            description: None,
            parameters: json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}),
        }];
        let mut g = c
            .start(&OutputConstraint::ToolCalls {
                tools,
                required: false,
                parallel: false,
            })
            .unwrap();
        assert!(!g.is_active());
        let out = drive(
            &mut g,
            b"ok <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 7}}\n</tool_call>",
        );
        assert!(
            out.ends_with("{\"name\": \"f\", \"arguments\": {\"a\": 7}}\n</tool_call>"),
            "{out}"
        );
        g.finish(None).unwrap();
        // A call written without tags at the start is enforced too.
        let mut g = c
            .start(&OutputConstraint::ToolCalls {
                tools: vec![crate::ToolSpec {
                    name: "f".into(),
                    description: None,
                    parameters: json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}),
                }],
                required: false,
                parallel: true,
            })
            .unwrap();
        let out = drive(
            &mut g,
            b"  {\"name\": \"f\", \"arguments\": {\"a\": \"x\"}}",
        );
        assert!(
            out.starts_with("  {\"name\": \"f\", \"arguments\": {\"a\": "),
            "{out}"
        );
        assert!(!out.contains('x'), "{out}");
        g.finish(None).unwrap();
    }
}
