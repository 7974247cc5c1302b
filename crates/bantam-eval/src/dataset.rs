//! Evaluation datasets: JSONL (`{"input": ..., "expected": ...}`) or CSV with a header
//! (the columns named by `input_field` and `expected_field`).

use std::path::Path;

use serde_json::Value;

/// One test item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Position in the file.
    pub index: usize,
    /// The text given to the model.
    pub input: String,
    /// What a correct answer is: a label, labels, an object, a reference text or
    /// several (a list).
    pub expected: Value,
}

/// Why a dataset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// I/O.
    #[error("reading {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A malformed line or row.
    #[error("{path}:{line}: {reason}")]
    Bad {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and what to do.
        reason: String,
    },
}

/// Read a dataset; `.csv` files as CSV, everything else as JSONL.
pub fn load(
    path: &Path,
    input_field: &str,
    expected_field: &str,
) -> Result<Vec<Item>, DatasetError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: p.clone(),
        source,
    })?;
    let bad = |line: usize, reason: String| DatasetError::Bad {
        path: p.clone(),
        line,
        reason,
    };
    let mut items = Vec::new();
    if path.extension().and_then(|e| e.to_str()) == Some("csv") {
        let rows = parse_csv(&text);
        let Some(header) = rows.first() else {
            return Ok(items);
        };
        let col = |name: &str| {
            header.iter().position(|h| h == name).ok_or_else(|| {
                bad(1, format!("no column {name:?} (columns: {}); choose with --input-field/--expected-field", header.join(", ")))
            })
        };
        let (ci, ce) = (col(input_field)?, col(expected_field)?);
        for (n, row) in rows.iter().enumerate().skip(1) {
            if row.iter().all(String::is_empty) {
                continue;
            }
            let get = |c: usize| row.get(c).cloned().unwrap_or_default();
            items.push(Item {
                index: items.len(),
                input: get(ci),
                expected: Value::String(get(ce)),
            });
            let _ = n;
        }
        return Ok(items);
    }
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| bad(n + 1, format!("not JSON: {e}")))?;
        let input = v
            .get(input_field)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(n + 1, format!("no string field {input_field:?}")))?
            .to_string();
        let expected = v
            .get(expected_field)
            .cloned()
            .ok_or_else(|| bad(n + 1, format!("no field {expected_field:?}")))?;
        items.push(Item {
            index: items.len(),
            input,
            expected,
        });
    }
    Ok(items)
}

/// RFC 4180 CSV: quoted fields with `""` escapes and embedded newlines.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_jsonl() {
        let rows = parse_csv("text,category\n\"Hi, \"\"you\"\"\",a\nplain,b\n");
        assert_eq!(rows[1], vec!["Hi, \"you\"".to_string(), "a".to_string()]);
        assert_eq!(rows.len(), 3);
        let dir = std::env::temp_dir().join(format!("bantam-ds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("d.jsonl");
        std::fs::write(&f, "{\"input\": \"q\", \"expected\": [\"a\", \"b\"]}\n\n{\"input\": \"r\", \"expected\": \"c\"}\n").unwrap();
        let items = load(&f, "input", "expected").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].index, 1);
        std::fs::write(&f, "{\"text\": 1}\n").unwrap();
        assert!(load(&f, "input", "expected")
            .unwrap_err()
            .to_string()
            .contains(":1:"));
    }
}
