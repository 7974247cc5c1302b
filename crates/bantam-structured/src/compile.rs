//! From an [`OutputConstraint`] to an llguidance grammar and a validator.

use llguidance::api::TopLevelGrammar;
use serde_json::{json, Value};

use crate::tools;
use crate::validate::Validator;
use crate::{OutputConstraint, StructuredError};

/// A constraint ready to run: the grammar to enforce from the first token (if any),
/// grammars that start when their trigger text appears, and the check to apply
/// afterwards.
#[derive(Debug)]
pub struct Compiled {
    /// What llguidance enforces from the first token.
    pub grammar: Option<TopLevelGrammar>,
    /// Optional tool calls: (trigger, only at the start of the output, grammar). The
    /// grammar covers the output from the trigger on, trigger included.
    pub triggers: Vec<(String, bool, TopLevelGrammar)>,
    /// What the finished output must pass.
    pub validator: Validator,
}

/// JSON layout Bantam asks of constrained JSON: `", "` and `": "` separators (the
/// layout models see most in training) and no free whitespace, which small models
/// otherwise fill with runs of newlines.
///
/// `lenient`: keywords llguidance cannot enforce while sampling (`uniqueItems`,
/// `contains`, `oneOf` beyond `anyOf`, …) are left to the [`Validator`], which checks
/// the whole schema on the finished output; an output that fails it is generated
/// again (the structured retries) or is an error, never a success.
pub(crate) fn with_layout(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut m = map.clone();
            m.insert(
                "x-guidance".into(),
                json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": ", "lenient": true}),
            );
            Value::Object(m)
        }
        other => other.clone(),
    }
}

/// Check that a JSON Schema is well formed (validator-wise). Keyword support is
/// checked when the grammar is built.
pub fn check_schema(schema: &Value) -> Result<(), StructuredError> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(StructuredError::Invalid {
            what: "JSON Schema",
            reason: "a schema must be a JSON object".into(),
        });
    }
    Validator::schema(schema).map(|_| ())
}

pub(crate) fn compile(c: &OutputConstraint) -> Result<Compiled, StructuredError> {
    Ok(match c {
        OutputConstraint::JsonSchema(schema) => {
            let validator = Validator::schema(schema)?;
            Compiled {
                grammar: Some(TopLevelGrammar::from_json_schema(with_layout(schema))),
                triggers: Vec::new(),
                validator,
            }
        }
        OutputConstraint::JsonObject => Compiled {
            grammar: Some(TopLevelGrammar::from_json_schema(with_layout(
                &json!({"type": "object"}),
            ))),
            triggers: Vec::new(),
            validator: Validator::AnyObject,
        },
        OutputConstraint::Regex(rx) => Compiled {
            grammar: Some(TopLevelGrammar::from_regex(rx)),
            triggers: Vec::new(),
            validator: Validator::regex(rx)?,
        },
        OutputConstraint::Choice(choices) => {
            if choices.is_empty() {
                return Err(StructuredError::Invalid {
                    what: "choice",
                    reason: "give at least one choice".into(),
                });
            }
            if choices.iter().any(String::is_empty) {
                return Err(StructuredError::Invalid {
                    what: "choice",
                    reason: "choices must not be empty strings".into(),
                });
            }
            let alternation = choices
                .iter()
                .map(|c| regex::escape(c))
                .collect::<Vec<_>>()
                .join("|");
            Compiled {
                grammar: Some(TopLevelGrammar::from_regex(&format!("(?:{alternation})"))),
                triggers: Vec::new(),
                validator: Validator::Choice(choices.clone()),
            }
        }
        OutputConstraint::Lark(g) => Compiled {
            grammar: Some(TopLevelGrammar::from_lark(g.clone())),
            triggers: Vec::new(),
            validator: Validator::Grammar,
        },
        OutputConstraint::ToolCalls {
            tools: specs,
            required,
            parallel,
        } => {
            let validator = Validator::tools(specs)?;
            let tagged = TopLevelGrammar::from_lark(tools::grammar(specs, *parallel));
            if *required {
                Compiled {
                    grammar: Some(tagged),
                    triggers: Vec::new(),
                    validator,
                }
            } else {
                Compiled {
                    grammar: None,
                    triggers: vec![
                        (tools::OPEN.to_string(), false, tagged),
                        (
                            tools::BARE.to_string(),
                            true,
                            TopLevelGrammar::from_lark(tools::bare_grammar(specs)),
                        ),
                    ],
                    validator,
                }
            }
        }
    })
}

/// Turn llguidance's compile error into a client-facing error.
pub(crate) fn grammar_error(what: &'static str, msg: &str) -> StructuredError {
    if let Some(start) = msg.find("Unimplemented keys: [") {
        let rest = &msg[start + "Unimplemented keys: [".len()..];
        let list = rest.split(']').next().unwrap_or("");
        let names: Vec<String> = list
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if !names.is_empty() {
            return StructuredError::Unsupported(names);
        }
    }
    if let Some(start) = msg.find("Unknown format: ") {
        let name = msg[start + "Unknown format: ".len()..]
            .split_whitespace()
            .next()
            .unwrap_or("");
        return StructuredError::Unsupported(vec![format!("format \"{name}\"")]);
    }
    StructuredError::Invalid {
        what,
        reason: msg.lines().next().unwrap_or(msg).to_string(),
    }
}

pub(crate) fn what(c: &OutputConstraint) -> &'static str {
    match c {
        OutputConstraint::JsonSchema(_) | OutputConstraint::JsonObject => "JSON Schema",
        OutputConstraint::Regex(_) | OutputConstraint::Choice(_) => "regex",
        OutputConstraint::Lark(_) => "grammar",
        OutputConstraint::ToolCalls { .. } => "tools",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimplemented_keys_become_unsupported() {
        let e = grammar_error(
            "JSON Schema",
            "Unimplemented keys: [\"contains\", \"uniqueItems\"]",
        );
        assert_eq!(
            e,
            StructuredError::Unsupported(vec!["contains".into(), "uniqueItems".into()])
        );
        assert!(e.to_string().contains("contains, uniqueItems"));
        let e = grammar_error("JSON Schema", "Unknown format: zipcode");
        assert_eq!(
            e,
            StructuredError::Unsupported(vec!["format \"zipcode\"".into()])
        );
    }

    #[test]
    fn layout_is_added_to_object_schemas_only() {
        let s = with_layout(&json!({"type": "object"}));
        assert_eq!(s["x-guidance"]["key_separator"], ": ");
        assert_eq!(with_layout(&json!(true)), json!(true));
    }
}
