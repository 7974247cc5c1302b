//! The check every constrained output passes before it is returned.

use std::sync::Arc;

use serde_json::Value;

use crate::tools;
use crate::{StructuredError, ToolSpec};

/// What a finished output must satisfy.
#[derive(Clone)]
pub enum Validator {
    /// Valid against a JSON Schema (formats checked).
    Schema(Arc<jsonschema::Validator>),
    /// Any JSON object.
    AnyObject,
    /// Matches a regular expression as a whole.
    Regex(regex::Regex),
    /// Equals one of these strings.
    Choice(Vec<String>),
    /// A grammar: llguidance's accepting state is the check.
    Grammar,
    /// Tool calls whose arguments are valid against each tool's schema.
    Tools(Vec<(String, Arc<jsonschema::Validator>)>),
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Validator::Schema(_) => "Schema",
            Validator::AnyObject => "AnyObject",
            Validator::Regex(_) => "Regex",
            Validator::Choice(_) => "Choice",
            Validator::Grammar => "Grammar",
            Validator::Tools(_) => "Tools",
        };
        f.write_str(kind)
    }
}

fn build(
    schema: &Value,
    what: &'static str,
) -> Result<Arc<jsonschema::Validator>, StructuredError> {
    // Checked first: validating against such a schema never ends (it allocates until
    // the process is killed), and no output could ever satisfy it.
    if let Some(cycle) = crate::refs::cycle(schema) {
        return Err(StructuredError::Invalid {
            what,
            reason: format!(
                "the schema refers to itself without descending into the value ({cycle}), so it can never be checked; put the self-reference under properties or items"
            ),
        });
    }
    jsonschema::options()
        .should_validate_formats(true)
        // A format nobody can check is the client's to change (a 400 naming it).
        .should_ignore_unknown_formats(false)
        .build(schema)
        .map(Arc::new)
        .map_err(|e| {
            let reason = e.to_string();
            match reason.strip_prefix("Unknown format: ") {
                Some(rest) => StructuredError::Unsupported(vec![format!(
                    "format \"{}\"",
                    rest.split(|c: char| c == '\'' || c.is_whitespace())
                        .find(|s| !s.is_empty())
                        .unwrap_or(rest)
                )]),
                None => StructuredError::Invalid { what, reason },
            }
        })
}

/// Describe the first few schema violations of `instance`.
fn violations(v: &jsonschema::Validator, instance: &Value) -> Option<String> {
    let errs: Vec<String> = v
        .iter_errors(instance)
        .take(3)
        .map(|e| {
            let path = e.instance_path.to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("at {path}: {e}")
            }
        })
        .collect();
    (!errs.is_empty()).then(|| errs.join("; "))
}

impl Validator {
    /// A validator for a JSON Schema.
    pub fn schema(schema: &Value) -> Result<Self, StructuredError> {
        build(schema, "JSON Schema").map(Validator::Schema)
    }

    /// A validator for a regular expression (whole-text match).
    pub fn regex(rx: &str) -> Result<Self, StructuredError> {
        regex::Regex::new(&format!("^(?:{rx})$"))
            .map(Validator::Regex)
            .map_err(|e| StructuredError::Invalid {
                what: "regex",
                reason: e.to_string(),
            })
    }

    /// A validator for tool calls.
    pub fn tools(specs: &[ToolSpec]) -> Result<Self, StructuredError> {
        let mut out = Vec::with_capacity(specs.len());
        for t in specs {
            out.push((t.name.clone(), build(&t.parameters, "tool parameters")?));
        }
        Ok(Validator::Tools(out))
    }

    /// Whether a call of `name` with `args` is one of these tools' and valid against
    /// its schema (false for validators that are not tool validators).
    pub fn accepts_call(&self, name: &str, args: &Value) -> bool {
        match self {
            Validator::Tools(tools) => tools
                .iter()
                .find(|(n, _)| n == name)
                .is_some_and(|(_, v)| args.is_object() && v.is_valid(args)),
            _ => false,
        }
    }

    /// Check a finished output.
    pub fn check(&self, text: &str) -> Result<(), StructuredError> {
        let bad = |m: String| Err(StructuredError::Violated(m));
        match self {
            Validator::Schema(v) => {
                let value: Value = match serde_json::from_str(text) {
                    Ok(v) => v,
                    Err(e) => return bad(format!("not valid JSON ({e})")),
                };
                match violations(v, &value) {
                    Some(m) => bad(m),
                    None => Ok(()),
                }
            }
            Validator::AnyObject => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(_)) => Ok(()),
                Ok(_) => bad("not a JSON object".into()),
                Err(e) => bad(format!("not valid JSON ({e})")),
            },
            Validator::Regex(rx) => {
                if rx.is_match(text) {
                    Ok(())
                } else {
                    bad(format!("{text:?} does not match the regex"))
                }
            }
            Validator::Choice(choices) => {
                if choices.iter().any(|c| c == text) {
                    Ok(())
                } else {
                    bad(format!("{text:?} is not one of the choices"))
                }
            }
            Validator::Grammar => Ok(()),
            Validator::Tools(tools) => {
                let parsed = tools::parse(text).map_err(StructuredError::Violated)?;
                for call in &parsed.calls {
                    let Some((_, v)) = tools.iter().find(|(n, _)| *n == call.name) else {
                        return bad(format!("call of unknown tool {:?}", call.name));
                    };
                    let args: Value = serde_json::from_str(&call.arguments).map_err(|e| {
                        StructuredError::Violated(format!(
                            "arguments of {} are not valid JSON ({e})",
                            call.name
                        ))
                    })?;
                    if let Some(m) = violations(v, &args) {
                        return bad(format!("arguments of {}: {m}", call.name));
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_validation_reports_path_and_checks_formats() {
        let v = Validator::schema(&json!({
            "type": "object",
            "properties": {"age": {"type": "integer", "minimum": 0}, "mail": {"type": "string", "format": "email"}},
            "required": ["age"]
        }))
        .unwrap();
        assert!(v.check(r#"{"age": 3}"#).is_ok());
        let e = v.check(r#"{"age": -1}"#).unwrap_err().to_string();
        assert!(e.contains("/age"), "{e}");
        assert!(v.check(r#"{"age": 1, "mail": "nope"}"#).is_err());
        assert!(v.check(r#"{"age": 1"#).is_err());
    }

    #[test]
    fn malformed_schema_is_invalid() {
        assert!(matches!(
            Validator::schema(&json!({"type": 12})),
            Err(StructuredError::Invalid { .. })
        ));
    }

    #[test]
    fn regex_choice_object() {
        let r = Validator::regex(r"\d{3}-\d{4}").unwrap();
        assert!(r.check("555-1234").is_ok());
        assert!(r.check("555-1234 ").is_err());
        let c = Validator::Choice(vec!["yes".into(), "no".into()]);
        assert!(c.check("no").is_ok());
        assert!(c.check("maybe").is_err());
        assert!(Validator::AnyObject.check("[1]").is_err());
        assert!(Validator::AnyObject.check("{}").is_ok());
    }

    #[test]
    fn tool_arguments_are_validated() {
        let v = Validator::tools(&[ToolSpec {
            name: "get_weather".into(),
            description: None,
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }])
        .unwrap();
        let ok = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
        assert!(v.check(ok).is_ok());
        let missing = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>";
        assert!(v.check(missing).is_err());
        let unknown = "<tool_call>\n{\"name\": \"x\", \"arguments\": {}}\n</tool_call>";
        assert!(v.check(unknown).is_err());
        assert!(v.check("just text").is_ok());
    }
}
