//! Bantam's tool-call format.
//!
//! A call is written the way Qwen2.5 and Hermes-style models are trained to write it:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Oslo"}}
//! </tool_call>
//! ```
//!
//! Models whose chat template knows tools are given the tools through the template;
//! others get [`system_prompt`]. With `tool_choice` `required` (or a named function)
//! the whole output is constrained to calls; with `auto` the model writes freely and
//! the constraint starts when it opens `<tool_call>`.

use serde_json::{json, Value};

use crate::compile::with_layout;
use crate::ToolSpec;

/// Opens a call.
pub const OPEN: &str = "<tool_call>";
/// Closes a call.
pub const CLOSE: &str = "</tool_call>";

/// The JSON Schema of one call (`{"name": ..., "arguments": ...}`) over `tools`.
pub fn call_schema(tools: &[ToolSpec]) -> Value {
    let one = |t: &ToolSpec| {
        json!({
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": false
        })
    };
    if tools.len() == 1 {
        one(&tools[0])
    } else {
        json!({"anyOf": tools.iter().map(one).collect::<Vec<_>>()})
    }
}

/// Most calls in one answer: small models, once in a call, tend to repeat it.
pub const MAX_CALLS: usize = 8;

/// Start of a call written without the tags (small Qwen models do this).
pub const BARE: &str = "{\"name\"";

/// The Lark grammar for tagged calls (the whole output).
pub fn grammar(tools: &[ToolSpec], parallel: bool) -> String {
    let schema = with_layout(&call_schema(tools));
    let more = if parallel {
        format!(" (\"\\n\" call){{0,{}}}", MAX_CALLS - 1)
    } else {
        String::new()
    };
    format!("start: call{more}\ncall: \"{OPEN}\\n\" body \"\\n{CLOSE}\"\nbody: %json {schema}\n")
}

/// The Lark grammar for one call written without tags.
pub fn bare_grammar(tools: &[ToolSpec]) -> String {
    let schema = with_layout(&call_schema(tools));
    format!("start: %json {schema}\n")
}

/// Tool instructions for models whose chat template has no tool support.
pub fn system_prompt(tools: &[ToolSpec]) -> String {
    let mut s = String::from(
        "You can call functions. To call a function, answer with exactly:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <arguments-json-object>}\n</tool_call>\n\nAvailable functions:\n",
    );
    for t in tools {
        let f = json!({"name": t.name, "description": t.description, "parameters": t.parameters});
        s.push_str(&f.to_string());
        s.push('\n');
    }
    s
}

/// One parsed call.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    /// Function name.
    pub name: String,
    /// Arguments as the model wrote them (a JSON object).
    pub arguments: String,
}

/// An output split into text and calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// Text before the first call (trimmed; `None` when empty).
    pub content: Option<String>,
    /// The calls in order.
    pub calls: Vec<ParsedCall>,
}

/// Split a finished output into content and calls.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let trimmed = text.trim();
    if trimmed.starts_with(BARE) && !text.contains(OPEN) {
        let wrapped = format!("{OPEN}{trimmed}{CLOSE}");
        return parse(&wrapped);
    }
    let Some(first) = text.find(OPEN) else {
        return Ok(Parsed {
            content: Some(text.to_string()).filter(|t| !t.trim().is_empty()),
            calls: Vec::new(),
        });
    };
    let content = Some(text[..first].trim().to_string()).filter(|t| !t.is_empty());
    let mut calls = Vec::new();
    let mut rest = &text[first..];
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find(CLOSE)
            .ok_or_else(|| "a tool call is not closed".to_string())?;
        let body = after[..end].trim();
        let v: Value = serde_json::from_str(body)
            .map_err(|e| format!("a tool call is not valid JSON ({e})"))?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a tool call has no name")?
            .to_string();
        let args = v.get("arguments").ok_or("a tool call has no arguments")?;
        if !args.is_object() {
            return Err(format!("the arguments of {name} are not a JSON object"));
        }
        calls.push(ParsedCall {
            name,
            arguments: raw_arguments(body).unwrap_or_else(|| args.to_string()),
        });
        rest = &after[end + CLOSE.len()..];
    }
    Ok(Parsed { content, calls })
}

/// Calls a small model wrote without Bantam's tags (with `tool_choice` `auto`, where
/// nothing forces the format): a fenced code block (```` ```json … ``` ````) or a bare
/// JSON object anywhere in the text, holding `{"name": …, "arguments": {…}}` (or
/// `"parameters"`), or a list of them. A candidate counts only when every call in it
/// names one of the request's tools and its arguments validate against that tool's
/// schema (`validator`, from [`crate::Validator::tools`]); the text around the
/// recognised candidates is the content. `None` when nothing qualifies.
pub fn recognise(text: &str, validator: &crate::Validator) -> Option<Parsed> {
    let mut calls = Vec::new();
    let mut content = String::new();
    let mut rest = text;
    while let Some((start, end, found)) = next_candidate(rest, validator) {
        content.push_str(&rest[..start]);
        calls.extend(found);
        rest = &rest[end..];
    }
    if calls.is_empty() {
        return None;
    }
    content.push_str(rest);
    let content = content.trim();
    Some(Parsed {
        content: (!content.is_empty()).then(|| content.to_string()),
        calls,
    })
}

/// The first candidate in `text` that is a list of valid calls: (start, end, calls).
fn next_candidate(
    text: &str,
    validator: &crate::Validator,
) -> Option<(usize, usize, Vec<ParsedCall>)> {
    let mut from = 0;
    while from < text.len() {
        let fence = text[from..].find("```").map(|i| i + from);
        let brace = text[from..].find(['{', '[']).map(|i| i + from);
        let start = match (fence, brace) {
            (Some(f), Some(b)) => f.min(b),
            (Some(f), None) => f,
            (None, Some(b)) => b,
            (None, None) => return None,
        };
        let (inner, end) = if Some(start) == fence {
            // ```lang\n … ``` (an unclosed fence runs to the end)
            let body = &text[start + 3..];
            let nl = body.find('\n').map_or(body.len(), |n| n + 1);
            let lang = body[..nl].trim();
            if !(lang.is_empty() || lang.eq_ignore_ascii_case("json")) {
                from = start + 3;
                continue;
            }
            let close = body[nl..].find("```").map(|c| nl + c);
            match close {
                Some(c) => (&body[nl..c], start + 3 + c + 3),
                None => (&body[nl..], text.len()),
            }
        } else {
            match json_end(&text[start..]) {
                Some(n) => (&text[start..start + n], start + n),
                None => {
                    from = start + 1;
                    continue;
                }
            }
        };
        if let Some(found) = calls_in(inner.trim(), validator) {
            return Some((start, end, found));
        }
        from = if Some(start) == fence {
            start + 3
        } else {
            start + 1
        };
    }
    None
}

/// Length of the JSON object or array at the start of `s` (strings understood).
fn json_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if in_str {
            match c {
                _ if esc => esc = false,
                '\\' => esc = true,
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// `s` as one call or a list of calls, every one valid; else `None`.
fn calls_in(s: &str, validator: &crate::Validator) -> Option<Vec<ParsedCall>> {
    let v: Value = serde_json::from_str(s).ok()?;
    let items = match v {
        Value::Array(a) if !a.is_empty() => a,
        o @ Value::Object(_) => vec![o],
        _ => return None,
    };
    items
        .into_iter()
        .map(|c| {
            let name = c.get("name")?.as_str()?.to_string();
            let args = c.get("arguments").or_else(|| c.get("parameters"))?;
            // Some models write the arguments as a JSON string.
            let args = match args {
                Value::String(t) => serde_json::from_str(t).ok()?,
                other => other.clone(),
            };
            validator.accepts_call(&name, &args).then(|| ParsedCall {
                name,
                arguments: args.to_string(),
            })
        })
        .collect()
}

/// The arguments object as written in `{"name": "...", "arguments": {...}}`.
fn raw_arguments(body: &str) -> Option<String> {
    let (_, start) = header_end(body)?;
    let inner = body[start..].trim_end();
    let inner = inner.strip_suffix('}')?.trim_end();
    Some(inner.to_string())
}

/// Where the call header `{"name": "NAME", "arguments": ` ends: (name, byte offset).
fn header_end(s: &str) -> Option<(String, usize)> {
    let mut p = Parser { s, i: 0 };
    p.ws();
    p.eat('{')?;
    p.ws();
    if p.string()? != "name" {
        return None;
    }
    p.ws();
    p.eat(':')?;
    p.ws();
    let name = p.string()?;
    p.ws();
    p.eat(',')?;
    p.ws();
    if p.string()? != "arguments" {
        return None;
    }
    p.ws();
    p.eat(':')?;
    p.ws();
    // Wait for the first character of the arguments (whitespace may still come).
    (p.i < s.len()).then_some((name, p.i))
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s[self.i..].starts_with([' ', '\n', '\t', '\r']) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: char) -> Option<()> {
        self.s[self.i..].starts_with(c).then(|| self.i += 1)
    }
    /// A complete JSON string literal, decoded.
    fn string(&mut self) -> Option<String> {
        let rest = &self.s[self.i..];
        if !rest.starts_with('"') {
            return None;
        }
        let mut escaped = false;
        for (k, ch) in rest.char_indices().skip(1) {
            match ch {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    let lit = &rest[..=k];
                    self.i += k + 1;
                    return serde_json::from_str(lit).ok();
                }
                _ => escaped = false,
            }
        }
        None
    }
}

/// What a streamed output turns into, piece by piece.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Ordinary text.
    Content(String),
    /// A call began.
    CallStart {
        /// Position among this answer's calls.
        index: usize,
        /// Function name.
        name: String,
    },
    /// More of a call's arguments.
    Arguments {
        /// Which call.
        index: usize,
        /// Text to append.
        fragment: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Mode {
    #[default]
    Text,
    Header,
    Args,
    Between,
    /// Holding a fenced block or a bare object that may be a call without tags.
    Candidate,
}

/// Opens a fenced code block.
const FENCE: &str = "```";
/// Most text held back while deciding whether a block is a call.
const MAX_CANDIDATE: usize = 64 << 10;

/// Turns streamed text into content and tool-call deltas as OpenAI streams them.
#[derive(Debug, Default)]
pub struct ToolStream {
    mode: Mode,
    buf: String,
    calls: usize,
    /// Something has been emitted (a bare call with the grammar's trigger can only
    /// start before that).
    started: bool,
    /// The request's tools: calls written without tags (fenced or bare JSON) are
    /// recognised when they validate (see [`recognise`]).
    validator: Option<crate::Validator>,
}

/// Length of the longest suffix of `s` that is a proper prefix of `pat`.
fn partial_suffix(s: &str, pat: &str) -> usize {
    (1..pat.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && pat.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

impl ToolStream {
    /// A stream that also recognises calls written without tags, validated against
    /// the request's tools (`tool_choice` `auto`).
    pub fn with_tools(validator: crate::Validator) -> Self {
        Self {
            validator: Some(validator),
            ..Self::default()
        }
    }

    /// Calls started so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Where the next call-like start is in the buffer: (offset, is a tag).
    fn next_start(&self) -> Option<(usize, bool)> {
        let tag = self.buf.find(OPEN).map(|i| (i, true));
        if self.validator.is_none() || self.mode != Mode::Text {
            return tag;
        }
        let fence = self.buf.find(FENCE).map(|i| (i, false));
        let bare = self.buf.find(BARE).map(|i| (i, false));
        [tag, fence, bare]
            .into_iter()
            .flatten()
            .min_by_key(|(i, _)| *i)
    }

    /// How much of the buffer's end may be the start of a marker.
    fn held(&self) -> usize {
        let mut keep = partial_suffix(&self.buf, OPEN);
        if self.validator.is_some() && self.mode == Mode::Text {
            keep = keep
                .max(partial_suffix(&self.buf, FENCE))
                .max(partial_suffix(&self.buf, BARE));
        }
        keep
    }

    /// A held candidate, if complete: its length.
    fn candidate_end(&self) -> Option<usize> {
        if self.buf.starts_with(FENCE) {
            let body = &self.buf[FENCE.len()..];
            let nl = body.find('\n')? + 1;
            let close = body[nl..].find(FENCE)?;
            Some(FENCE.len() + nl + close + FENCE.len())
        } else {
            json_end(&self.buf)
        }
    }

    /// The calls in a candidate block, if it is one.
    fn calls_of(&mut self, block: &str, out: &mut Vec<StreamEvent>) -> bool {
        let Some(v) = &self.validator else {
            return false;
        };
        let Some(p) = recognise(block, v).filter(|p| p.content.is_none()) else {
            return false;
        };
        for c in p.calls {
            out.push(StreamEvent::CallStart {
                index: self.calls,
                name: c.name,
            });
            out.push(StreamEvent::Arguments {
                index: self.calls,
                fragment: c.arguments,
            });
            self.calls += 1;
        }
        true
    }

    /// Feed more text; returns what can be said about it now.
    pub fn push(&mut self, text: &str) -> Vec<StreamEvent> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            match self.mode {
                Mode::Text | Mode::Between => {
                    if !self.started && self.mode == Mode::Text {
                        let t = self.buf.trim_start();
                        if t.starts_with(BARE) {
                            self.buf = t.to_string();
                            self.started = true;
                            self.mode = Mode::Header;
                            continue;
                        }
                        if BARE.starts_with(t) {
                            return out;
                        }
                        self.started = true;
                    }
                    if let Some((pos, tag)) = self.next_start() {
                        let before: String = self.buf.drain(..pos).collect();
                        if self.mode == Mode::Text && !before.is_empty() {
                            out.push(StreamEvent::Content(before));
                        }
                        if tag {
                            self.buf.drain(..OPEN.len());
                            self.mode = Mode::Header;
                        } else {
                            self.mode = Mode::Candidate;
                        }
                        continue;
                    }
                    let keep = self.held();
                    let emit: String = self.buf.drain(..self.buf.len() - keep).collect();
                    if self.mode == Mode::Text && !emit.is_empty() {
                        out.push(StreamEvent::Content(emit));
                    }
                    return out;
                }
                Mode::Candidate => {
                    let Some(end) = self.candidate_end() else {
                        if self.buf.len() > MAX_CANDIDATE {
                            // Too long to hold: it is text.
                            out.push(StreamEvent::Content(std::mem::take(&mut self.buf)));
                            self.mode = Mode::Text;
                        }
                        return out;
                    };
                    let block: String = self.buf.drain(..end).collect();
                    if !self.calls_of(&block, &mut out) {
                        // Not a call: text after all, scanned from its second
                        // character on.
                        let mut chars = block.chars();
                        let first = chars.next().map(String::from).unwrap_or_default();
                        self.buf.insert_str(0, chars.as_str());
                        out.push(StreamEvent::Content(first));
                    }
                    self.mode = Mode::Text;
                    continue;
                }
                Mode::Header => match header_end(&self.buf) {
                    Some((name, end)) => {
                        self.buf.drain(..end);
                        out.push(StreamEvent::CallStart {
                            index: self.calls,
                            name,
                        });
                        self.calls += 1;
                        self.mode = Mode::Args;
                        continue;
                    }
                    None => return out,
                },
                Mode::Args => {
                    let index = self.calls - 1;
                    if let Some(close) = self.buf.find(CLOSE) {
                        let body: String = self.buf.drain(..close + CLOSE.len()).collect();
                        let body = body[..close].trim_end();
                        let args = body.strip_suffix('}').unwrap_or(body).trim_end();
                        if !args.is_empty() {
                            out.push(StreamEvent::Arguments {
                                index,
                                fragment: args.to_string(),
                            });
                        }
                        self.mode = Mode::Between;
                        continue;
                    }
                    // Hold back a possible `}` + whitespace + start of CLOSE.
                    let hold = match self.buf.rfind('}') {
                        Some(b) => {
                            let tail = self.buf[b + 1..].trim_start();
                            if tail.is_empty() || CLOSE.starts_with(tail) {
                                self.buf.len() - b
                            } else {
                                0
                            }
                        }
                        None => 0,
                    };
                    let emit: String = self.buf.drain(..self.buf.len() - hold).collect();
                    if !emit.is_empty() {
                        out.push(StreamEvent::Arguments {
                            index,
                            fragment: emit,
                        });
                    }
                    return out;
                }
            }
        }
    }

    /// The stream ended: release held-back text.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let rest = std::mem::take(&mut self.buf);
        match self.mode {
            Mode::Text if !rest.is_empty() => vec![StreamEvent::Content(rest)],
            Mode::Candidate => {
                // An unclosed fence at the end of the output.
                let mut out = Vec::new();
                if !self.calls_of(&rest, &mut out) && !rest.is_empty() {
                    out.push(StreamEvent::Content(rest));
                }
                out
            }
            // A bare call ends with the output: drop its closing brace.
            Mode::Args => {
                let t = rest.trim_end();
                let args = t.strip_suffix('}').unwrap_or(t).trim_end();
                if args.is_empty() {
                    Vec::new()
                } else {
                    vec![StreamEvent::Arguments {
                        index: self.calls - 1,
                        fragment: args.to_string(),
                    }]
                }
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: Some("d".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }
    }

    const TWO: &str = "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Rome\", \"x\": {\"y\": 1}}}\n</tool_call>";

    #[test]
    fn parse_splits_content_and_calls() {
        let p = parse(TWO).unwrap();
        assert_eq!(p.content.as_deref(), Some("Sure."));
        assert_eq!(p.calls.len(), 2);
        assert_eq!(p.calls[0].name, "get_weather");
        assert_eq!(p.calls[0].arguments, "{\"city\": \"Oslo\"}");
        assert_eq!(
            p.calls[1].arguments,
            "{\"city\": \"Rome\", \"x\": {\"y\": 1}}"
        );
        assert!(parse("<tool_call>\n{\"name\": \"a\"").is_err());
        assert_eq!(parse("hello").unwrap().content.as_deref(), Some("hello"));
    }

    #[test]
    fn stream_gives_same_result_at_any_split() {
        let whole = {
            let mut s = ToolStream::default();
            let mut ev = s.push(TWO);
            ev.extend(s.finish());
            ev
        };
        assert!(
            matches!(&whole[1], StreamEvent::CallStart { index: 0, name } if name == "get_weather")
        );
        // Feed one character at a time: the concatenation must be the same.
        let mut s = ToolStream::default();
        let mut ev = Vec::new();
        for ch in TWO.chars() {
            ev.extend(s.push(&ch.to_string()));
        }
        ev.extend(s.finish());
        let flatten = |ev: &[StreamEvent]| {
            let mut content = String::new();
            let mut calls: Vec<(String, String)> = Vec::new();
            for e in ev {
                match e {
                    StreamEvent::Content(t) => content.push_str(t),
                    StreamEvent::CallStart { name, .. } => {
                        calls.push((name.clone(), String::new()))
                    }
                    StreamEvent::Arguments { index, fragment } => {
                        calls[*index].1.push_str(fragment)
                    }
                }
            }
            (content, calls)
        };
        let (c1, k1) = flatten(&whole);
        let (c2, k2) = flatten(&ev);
        assert_eq!(c1, c2);
        assert_eq!(k1, k2);
        assert_eq!(c2, "Sure.\n");
        assert_eq!(k2[1].1, "{\"city\": \"Rome\", \"x\": {\"y\": 1}}");
        // Text that merely looks like the start of a call is released at the end.
        let mut s = ToolStream::default();
        let mut ev = s.push("a <tool");
        ev.extend(s.finish());
        assert_eq!(flatten(&ev).0, "a <tool");
    }

    #[test]
    fn grammar_shapes() {
        let g = grammar(&[spec("a"), spec("b")], false);
        assert!(
            g.starts_with("start: call\ncall: \"<tool_call>\\n\" body"),
            "{g}"
        );
        assert!(g.contains("anyOf"));
        let g = grammar(&[spec("a")], true);
        assert!(g.contains("{0,7}"), "{g}");
    }

    #[test]
    fn bare_call_parses_and_streams() {
        let text = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}";
        let p = parse(text).unwrap();
        assert_eq!(p.content, None);
        assert_eq!(p.calls[0].arguments, "{\"city\": \"Oslo\"}");
        let mut s = ToolStream::default();
        let mut ev = Vec::new();
        for ch in text.chars() {
            ev.extend(s.push(&ch.to_string()));
        }
        ev.extend(s.finish());
        let args: String = ev
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Arguments { fragment, .. } => Some(fragment.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(args, "{\"city\": \"Oslo\"}");
        assert!(!ev.iter().any(|e| matches!(e, StreamEvent::Content(_))));
    }

    fn validator() -> crate::Validator {
        crate::Validator::tools(&[spec("get_weather")]).unwrap()
    }

    #[test]
    fn calls_without_tags_are_recognised_only_when_valid() {
        let v = validator();
        let fenced = "Let me check.\n```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n```";
        let p = recognise(fenced, &v).unwrap();
        assert_eq!(p.content.as_deref(), Some("Let me check."));
        assert_eq!(p.calls[0].name, "get_weather");
        assert_eq!(p.calls[0].arguments, "{\"city\":\"Oslo\"}");
        // Bare, anywhere, with "parameters" and string arguments; a list of calls.
        let bare = "Sure: {\"name\": \"get_weather\", \"parameters\": \"{\\\"city\\\": \\\"Rome\\\"}\"} done";
        let p = recognise(bare, &v).unwrap();
        assert_eq!(
            (p.content.as_deref(), p.calls[0].arguments.as_str()),
            (Some("Sure:  done"), "{\"city\":\"Rome\"}")
        );
        let list = "```\n[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"A\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"B\"}}]\n```";
        assert_eq!(recognise(list, &v).unwrap().calls.len(), 2);
        // Unknown tools, invalid arguments, other languages and plain JSON are text.
        for text in [
            "```json\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}\n```",
            "```json\n{\"name\": \"get_weather\", \"arguments\": {\"town\": \"Oslo\"}}\n```",
            "```python\nprint({\"name\": 1})\n```",
            "The answer is {\"city\": \"Oslo\"}.",
            "no calls here",
        ] {
            assert!(recognise(text, &v).is_none(), "{text}");
        }
    }

    #[test]
    fn streams_recognise_fenced_calls_at_any_split() {
        let text = "Checking.\n```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n```\n";
        let not_a_call = "Code:\n```json\n{\"x\": 1}\n```\nbye";
        for (input, calls, content) in [(text, 1, "Checking.\n\n"), (not_a_call, 0, not_a_call)] {
            for step in [1, 3, 7, input.len()] {
                let mut s = ToolStream::with_tools(validator());
                let mut ev = Vec::new();
                let chars: Vec<char> = input.chars().collect();
                for piece in chars.chunks(step) {
                    ev.extend(s.push(&piece.iter().collect::<String>()));
                }
                ev.extend(s.finish());
                let got: String = ev
                    .iter()
                    .filter_map(|e| match e {
                        StreamEvent::Content(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                assert_eq!(got, content, "step {step}: {ev:?}");
                assert_eq!(s.calls(), calls, "step {step}");
                if calls == 1 {
                    assert!(ev.contains(&StreamEvent::Arguments {
                        index: 0,
                        fragment: "{\"city\":\"Oslo\"}".into()
                    }));
                }
            }
        }
    }
}
