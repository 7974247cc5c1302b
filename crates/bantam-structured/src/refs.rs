//! Self-references a JSON Schema cannot be checked with: a `$ref` (through `allOf`,
//! `anyOf`, `oneOf`, `not`, `if`/`then`/`else`, `dependentSchemas`) that comes back to
//! a schema applying to the *same* value, such as
//! `{"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"}`.
//! A validator following it never ends, and no value can satisfy it. Recursion that
//! descends into the value (`properties`, `items`, …: a tree of nodes) is fine.

use std::collections::HashSet;

use serde_json::Value;

/// Keywords whose subschemas apply to the same value as their parent.
const SAME_VALUE: [&str; 7] = ["allOf", "anyOf", "oneOf", "not", "if", "then", "else"];

/// Most schemas visited (a bound on the work for hostile inputs).
const MAX_VISITS: usize = 100_000;

/// The first cycle of same-value references, described by its pointers (`#` →
/// `#/$defs/a` → `#/$defs/a`), or `None`.
pub fn cycle(root: &Value) -> Option<String> {
    let mut path: Vec<String> = Vec::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut visits = 0;
    walk(
        root,
        root,
        "#".to_string(),
        &mut path,
        &mut done,
        &mut visits,
    )
}

/// Visit the schema at `ptr`; `path` holds the pointers reached from the current
/// value's schema through same-value edges only.
fn walk(
    root: &Value,
    s: &Value,
    ptr: String,
    path: &mut Vec<String>,
    done: &mut HashSet<String>,
    visits: &mut usize,
) -> Option<String> {
    *visits += 1;
    if *visits > MAX_VISITS {
        return None;
    }
    if let Some(i) = path.iter().position(|p| *p == ptr) {
        let mut c: Vec<&str> = path[i..].iter().map(String::as_str).collect();
        c.push(&ptr);
        return Some(c.join(" → "));
    }
    let Value::Object(o) = s else {
        return None;
    };
    path.push(ptr.clone());
    let mut found = None;
    // Same-value edges: references and applicators.
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        if let Some(target) = resolve(root, r) {
            found = walk(root, target, normal(r), path, done, visits);
        }
    }
    for k in SAME_VALUE {
        if found.is_some() {
            break;
        }
        match o.get(k) {
            Some(Value::Array(a)) => {
                for (i, sub) in a.iter().enumerate() {
                    found = walk(root, sub, format!("{ptr}/{k}/{i}"), path, done, visits);
                    if found.is_some() {
                        break;
                    }
                }
            }
            Some(sub @ Value::Object(_)) => {
                found = walk(root, sub, format!("{ptr}/{k}"), path, done, visits);
            }
            _ => {}
        }
    }
    if found.is_none() {
        if let Some(Value::Object(d)) = o.get("dependentSchemas") {
            for (name, sub) in d {
                found = walk(
                    root,
                    sub,
                    format!("{ptr}/dependentSchemas/{name}"),
                    path,
                    done,
                    visits,
                );
                if found.is_some() {
                    break;
                }
            }
        }
    }
    path.pop();
    if found.is_some() {
        return found;
    }
    // Subschemas of the value's parts start a new value: each once.
    if !done.insert(ptr.clone()) {
        return None;
    }
    for (k, v) in o {
        let child = |key: &str| format!("{ptr}/{k}/{}", escape(key));
        let subs: Vec<(String, &Value)> = match (k.as_str(), v) {
            ("properties" | "patternProperties" | "$defs" | "definitions", Value::Object(m)) => {
                m.iter().map(|(n, s)| (child(n), s)).collect()
            }
            ("items" | "prefixItems", Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("{ptr}/{k}/{i}"), s))
                .collect(),
            (
                "items"
                | "additionalProperties"
                | "additionalItems"
                | "contains"
                | "propertyNames"
                | "unevaluatedItems"
                | "unevaluatedProperties",
                Value::Object(_),
            ) => vec![(format!("{ptr}/{k}"), v)],
            _ => Vec::new(),
        };
        for (p, sub) in subs {
            let mut fresh = Vec::new();
            if let Some(c) = walk(root, sub, p, &mut fresh, done, visits) {
                return Some(c);
            }
        }
    }
    None
}

/// `#/a~1b/c` → the value there; only references within the document.
fn resolve<'a>(root: &'a Value, r: &str) -> Option<&'a Value> {
    let frag = r.strip_prefix('#')?;
    if frag.is_empty() {
        return Some(root);
    }
    root.pointer(frag)
}

/// A reference as the pointer `walk` uses for the same schema.
fn normal(r: &str) -> String {
    if r == "#" {
        "#".into()
    } else {
        r.to_string()
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_value_cycles_are_found() {
        for s in [
            json!({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"}),
            json!({"$ref": "#"}),
            json!({"allOf": [{"$ref": "#"}]}),
            json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/loop"}},
                   "$defs": {"loop": {"oneOf": [{"$ref": "#/$defs/loop"}]}}}),
        ] {
            assert!(cycle(&s).is_some(), "{s}");
        }
    }

    #[test]
    fn recursion_into_the_value_is_fine() {
        for s in [
            json!({"type": "object", "properties": {"name": {"type": "string"},
                   "children": {"type": "array", "items": {"$ref": "#"}}}}),
            json!({"$defs": {"node": {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}}},
                   "$ref": "#/$defs/node"}),
            json!({"type": "object", "additionalProperties": {"$ref": "#"}}),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
            json!(true),
        ] {
            assert_eq!(cycle(&s), None, "{s}");
        }
        let c = cycle(&json!({"$ref": "#"})).unwrap();
        assert_eq!(c, "# → #");
    }
}
