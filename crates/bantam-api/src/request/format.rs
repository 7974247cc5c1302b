//! `response_format`, `tools` and `tool_choice` → the engine's output constraint.
//!
//! OpenAI's `json_object` and `json_schema`, plus Bantam's extensions
//! `{"type":"regex","regex":...}`, `{"type":"choice","choices":[...]}` and
//! `{"type":"grammar","grammar":...}` (Lark, llguidance dialect).

use bantam_structured::check_schema;
use bantam_types::generate::{OutputConstraint, ToolSpec};
use serde_json::{json, Value};

use super::Invalid;

fn bad(param: &str, msg: impl Into<String>) -> Invalid {
    Invalid::param(param, msg)
}

fn schema_error(param: &str, e: bantam_structured::StructuredError) -> Invalid {
    bad(param, e.to_string())
}

/// Parse `response_format`.
pub fn response_format(rf: &Value) -> Result<Option<OutputConstraint>, Invalid> {
    const P: &str = "response_format";
    let kind = rf.get("type").and_then(Value::as_str).ok_or_else(|| {
        bad(
            P,
            "response_format.type is required: text, json_object, json_schema, regex, choice or grammar",
        )
    })?;
    let text_field = |field: &str| -> Result<String, Invalid> {
        rf.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                bad(
                    &format!("{P}.{field}"),
                    format!("response_format of type {kind} needs a non-empty string `{field}`"),
                )
            })
    };
    Ok(match kind {
        "text" => None,
        "json_object" => Some(OutputConstraint::JsonObject),
        "json_schema" => {
            let js = rf.get("json_schema").ok_or_else(|| {
                bad(
                    "response_format.json_schema",
                    "response_format of type json_schema needs a `json_schema` object with a `schema`",
                )
            })?;
            let schema = js.get("schema").cloned().unwrap_or(json!({}));
            check_schema(&schema).map_err(|e| schema_error("response_format.json_schema", e))?;
            Some(OutputConstraint::JsonSchema(schema))
        }
        "regex" => Some(OutputConstraint::Regex(text_field("regex")?)),
        "grammar" | "lark" => Some(OutputConstraint::Lark(text_field("grammar")?)),
        "choice" => {
            let choices: Vec<String> = rf
                .get("choices")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if choices.is_empty() || choices.iter().any(String::is_empty) {
                return Err(bad(
                    "response_format.choices",
                    "response_format of type choice needs `choices`: a list of non-empty strings",
                ));
            }
            Some(OutputConstraint::Choice(choices))
        }
        other => {
            return Err(bad(
                P,
                format!("unknown response_format type {other:?}; use text, json_object, json_schema, regex, choice or grammar"),
            ))
        }
    })
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parse `tools`.
pub fn tools(v: &Value) -> Result<Vec<ToolSpec>, Invalid> {
    let arr = v
        .as_array()
        .ok_or_else(|| bad("tools", "tools must be a list"))?;
    let mut out: Vec<ToolSpec> = Vec::with_capacity(arr.len());
    for (i, t) in arr.iter().enumerate() {
        let p = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad(&p, "only tools of type \"function\" are supported"));
        }
        let f = t
            .get("function")
            .ok_or_else(|| bad(&p, "a tool needs a `function` object"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| valid_name(n))
            .ok_or_else(|| {
                bad(
                    &format!("{p}.function.name"),
                    "function names are 1–64 characters of a-z, A-Z, 0-9, _ and -",
                )
            })?;
        if out.iter().any(|o| o.name == name) {
            return Err(bad(&p, format!("two tools are named {name:?}")));
        }
        let parameters = f
            .get("parameters")
            .cloned()
            .unwrap_or(json!({"type": "object", "properties": {}}));
        check_schema(&parameters)
            .map_err(|e| schema_error(&format!("{p}.function.parameters"), e))?;
        out.push(ToolSpec {
            name: name.to_string(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            parameters,
        });
    }
    Ok(out)
}

/// What `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// No tool may be called (the model is not told about them).
    None,
    /// The model decides.
    Auto,
    /// At least one call.
    Required,
    /// This function.
    Named(String),
}

pub fn tool_choice(v: Option<&Value>) -> Result<ToolChoice, Invalid> {
    const P: &str = "tool_choice";
    Ok(match v {
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(
                    P,
                    format!("unknown tool_choice {other:?}; use none, auto, required or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"),
                ))
            }
        },
        Some(o) => match o.pointer("/function/name").and_then(Value::as_str) {
            Some(n) => ToolChoice::Named(n.to_string()),
            None => {
                return Err(bad(
                    P,
                    "a tool_choice object must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                ))
            }
        },
    })
}

/// The constraint for tools + choice (None when no tool may be called).
pub fn tool_constraint(
    specs: &[ToolSpec],
    choice: &ToolChoice,
    parallel: bool,
) -> Result<Option<OutputConstraint>, Invalid> {
    if specs.is_empty() {
        return match choice {
            ToolChoice::Required | ToolChoice::Named(_) => Err(bad(
                "tool_choice",
                "tool_choice requires tools; add the tools the model may call",
            )),
            _ => Ok(None),
        };
    }
    Ok(match choice {
        ToolChoice::None => None,
        ToolChoice::Auto => Some(OutputConstraint::ToolCalls {
            tools: specs.to_vec(),
            required: false,
            parallel,
        }),
        ToolChoice::Required => Some(OutputConstraint::ToolCalls {
            tools: specs.to_vec(),
            required: true,
            parallel,
        }),
        ToolChoice::Named(n) => {
            let Some(t) = specs.iter().find(|t| &t.name == n) else {
                return Err(bad(
                    "tool_choice",
                    format!("tool_choice names {n:?}, which is not among the tools"),
                ));
            };
            Some(OutputConstraint::ToolCalls {
                tools: vec![t.clone()],
                required: true,
                parallel: false,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_formats() {
        assert_eq!(response_format(&json!({"type": "text"})).unwrap(), None);
        assert_eq!(
            response_format(&json!({"type": "json_object"})).unwrap(),
            Some(OutputConstraint::JsonObject)
        );
        let s = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        assert_eq!(
            response_format(&json!({"type": "json_schema", "json_schema": {"name": "x", "schema": s, "strict": true}})).unwrap(),
            Some(OutputConstraint::JsonSchema(s))
        );
        for (bad_rf, param) in [
            (
                json!({"type": "json_schema"}),
                "response_format.json_schema",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"schema": {"type": 5}}}),
                "response_format.json_schema",
            ),
            (json!({"type": "xml"}), "response_format"),
            (json!({"type": "regex"}), "response_format.regex"),
            (
                json!({"type": "choice", "choices": []}),
                "response_format.choices",
            ),
        ] {
            let e = response_format(&bad_rf).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{bad_rf}");
        }
    }

    #[test]
    fn tools_and_choice() {
        let t = tools(&json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])).unwrap();
        assert_eq!(t[0].name, "get_weather");
        assert!(tools(&json!([{"type": "function", "function": {"name": "bad name"}}])).is_err());
        assert!(tools(&json!([{"type": "retrieval"}])).is_err());
        assert_eq!(tool_choice(None).unwrap(), ToolChoice::Auto);
        assert_eq!(
            tool_choice(Some(
                &json!({"type": "function", "function": {"name": "f"}})
            ))
            .unwrap(),
            ToolChoice::Named("f".into())
        );
        assert!(tool_choice(Some(&json!("sometimes"))).is_err());
        assert!(tool_constraint(&t, &ToolChoice::Named("nope".into()), true).is_err());
        assert!(tool_constraint(&[], &ToolChoice::Required, true).is_err());
        assert_eq!(tool_constraint(&t, &ToolChoice::None, true).unwrap(), None);
    }
}
