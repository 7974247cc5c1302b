//! Where extracted values appear in the input text: JSON Pointer → character span.

use serde_json::{Map, Value};

use crate::tasks::Span;

/// Character offsets of `needle` in `hay` (exact, then case-insensitive).
pub fn locate(hay: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    let len = needle.chars().count();
    if let Some(byte) = hay.find(needle) {
        let start = hay[..byte].chars().count();
        return Some((start, start + len));
    }
    let fold = |c: char| c.to_lowercase().next().unwrap_or(c);
    let h: Vec<char> = hay.chars().map(fold).collect();
    let n: Vec<char> = needle.chars().map(fold).collect();
    h.windows(n.len())
        .position(|w| w == n.as_slice())
        .map(|start| (start, start + len))
}

/// Where each string or number of `data` appears in `input`: JSON Pointer → span,
/// or null when the value does not appear verbatim.
pub fn spans(input: &str, data: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    find_spans(input, data, String::new(), &mut m);
    m
}

/// JSON Pointer → span for every string leaf (null when not found verbatim).
fn find_spans(input: &str, v: &Value, path: String, out: &mut Map<String, Value>) {
    match v {
        Value::String(s) => {
            let span = locate(input, s).map(|(start, end)| Span {
                start,
                end,
                text: input.chars().skip(start).take(end - start).collect(),
            });
            out.insert(path, serde_json::to_value(span).unwrap_or(Value::Null));
        }
        Value::Number(n) => {
            // Numbers often appear verbatim too ("order 4521").
            if let Some((start, end)) = locate(input, &n.to_string()) {
                let span = Span {
                    start,
                    end,
                    text: n.to_string(),
                };
                out.insert(path, serde_json::to_value(span).unwrap_or(Value::Null));
            } else {
                out.insert(path, Value::Null);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                find_spans(input, x, format!("{path}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let key = k.replace('~', "~0").replace('/', "~1");
                find_spans(input, x, format!("{path}/{key}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spans_are_char_offsets_with_pointers() {
        let input = "Order 4521 from Müller GmbH, contact anna@example.com";
        let mut m = Map::new();
        find_spans(
            input,
            &json!({"order": 4521, "company": "müller gmbh", "who": {"mail": "anna@example.com"}, "x": "absent"}),
            String::new(),
            &mut m,
        );
        assert_eq!(m["/order"]["start"], 6);
        assert_eq!(m["/who/mail"]["text"], "anna@example.com");
        // Case-insensitive, in characters (ü is two bytes).
        assert_eq!(m["/company"]["start"], 16);
        assert_eq!(m["/company"]["text"], "Müller GmbH");
        assert!(m["/x"].is_null());
        assert_eq!(locate("Hello World", "world"), Some((6, 11)));
    }
}
