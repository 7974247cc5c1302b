//! Prompt templates of the generative tasks (extract, summarize, qa, chat).
//!
//! A template is a chat written as plain text. A line that is exactly `[system]`,
//! `[user]` or `[assistant]` starts a message with that role (so few-shot turns are
//! written as `[user]`/`[assistant]` pairs); a file without such a line is one user
//! message. In the text, `{input}` is the item's input and, for extraction,
//! `{schema}` the JSON Schema (compact JSON); `{{` and `}}` are literal braces. Any
//! other `{name}` is an error, so a typo does not reach the model.
//!
//! The default templates reproduce the prompts of `bantam-tasks` (and of the eval
//! runner before templates existed), so local results do not change unless a
//! template is given. Classification has no template: it scores the labels after
//! `bantam-tasks`' own prompt.

use std::fmt::Write;

use serde_json::Value;

use crate::run::Task;

/// One message of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Input,
    Schema,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTemplate {
    messages: Vec<(String, Vec<Piece>)>,
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// A syntax error at a line (1-based).
    #[error("prompt template line {line}: {reason}")]
    Syntax {
        /// Line.
        line: usize,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// The template does not fit the task.
    #[error("prompt template: {0}")]
    Invalid(String),
}

const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// The default template of a task (`None` for classification).
pub fn default_text(task: &Task) -> Option<String> {
    let (system, user) = match task {
        Task::Classify { .. } => return None,
        Task::Extract { .. } => (
            format!(
                "{}\n\nJSON Schema:\n{{schema}}",
                bantam_tasks::extract::DEFAULT_INSTRUCTIONS
            ),
            "{input}",
        ),
        // bantam-tasks' summarize prompt for the default style (one paragraph).
        Task::Summarize => (
            "Summarize the user's text faithfully, keeping names, numbers and decisions. \
             Answer with one short paragraph."
                .to_string(),
            "{input}",
        ),
        Task::Qa => ("Answer with a short phrase only.".to_string(), "{input}"),
        Task::Chat => ("You are a helpful assistant.".to_string(), "{input}"),
    };
    Some(format!("[system]\n{system}\n[user]\n{user}\n"))
}

/// The default template of a task, parsed.
pub fn default_for(task: &Task) -> Option<PromptTemplate> {
    let text = default_text(task)?;
    // The defaults are constants checked by the tests.
    PromptTemplate::parse(&text, task).ok()
}

fn placeholders(text: &str, first_line: usize) -> Result<Vec<Piece>, PromptError> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = text.chars().peekable();
    let mut line = first_line;
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                line += 1;
                lit.push(c);
            }
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == '}' {
                        closed = true;
                        break;
                    }
                    if d == '\n' {
                        break;
                    }
                    name.push(d);
                }
                if !closed {
                    return Err(PromptError::Syntax {
                        line,
                        reason: "`{` without `}` on the same line; write `{{` for a literal brace"
                            .into(),
                    });
                }
                let piece = match name.trim() {
                    "input" => Piece::Input,
                    "schema" => Piece::Schema,
                    other => {
                        return Err(PromptError::Syntax {
                            line,
                            reason: format!(
                                "unknown placeholder {{{other}}}; use {{input}} or (extract) {{schema}}, and {{{{ }}}} for literal braces"
                            ),
                        })
                    }
                };
                if !lit.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut lit)));
                }
                out.push(piece);
            }
            '}' => {
                return Err(PromptError::Syntax {
                    line,
                    reason: "`}` without `{`; write `}}` for a literal brace".into(),
                })
            }
            _ => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Text(lit));
    }
    Ok(out)
}

impl PromptTemplate {
    /// Parse a template for `task`.
    pub fn parse(text: &str, task: &Task) -> Result<PromptTemplate, PromptError> {
        if matches!(task, Task::Classify { .. }) {
            return Err(PromptError::Invalid(
                "classify has no prompt template: it scores each label after bantam-tasks' \
                 classification prompt (instructions and the label list)"
                    .into(),
            ));
        }
        // (role, first line of its text, text)
        let mut sections: Vec<(String, usize, String)> = Vec::new();
        let mut before = String::new();
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            let role = t
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .filter(|r| ROLES.contains(r));
            match (role, sections.last_mut()) {
                (Some(r), _) => sections.push((r.to_string(), n + 2, String::new())),
                (None, Some((_, _, body))) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {
                    before.push_str(line);
                    before.push('\n');
                }
            }
        }
        if sections.is_empty() {
            sections.push(("user".into(), 1, std::mem::take(&mut before)));
        } else if !before.trim().is_empty() {
            return Err(PromptError::Syntax {
                line: 1,
                reason: "text before the first [system]/[user]/[assistant] line; start the \
                         file with a role line, or leave role lines out altogether for one \
                         user message"
                    .into(),
            });
        }
        let mut messages = Vec::new();
        for (role, first, body) in sections {
            // Blank lines around a message's text are layout, not content.
            let lead = body.len() - body.trim_start_matches(['\n', '\r']).len();
            let skipped = body[..lead].matches('\n').count();
            let body = body.trim();
            if body.is_empty() {
                return Err(PromptError::Syntax {
                    line: first.saturating_sub(1).max(1),
                    reason: format!("the [{role}] message is empty"),
                });
            }
            let pieces = placeholders(body, first + skipped)?;
            messages.push((role, pieces));
        }
        let uses = |p: &Piece| messages.iter().any(|(_, ps)| ps.contains(p));
        if !messages
            .iter()
            .any(|(r, ps)| r == "user" && ps.contains(&Piece::Input))
        {
            return Err(PromptError::Invalid(
                "no user message contains {input}, so the model would never see the item".into(),
            ));
        }
        if uses(&Piece::Schema) && !matches!(task, Task::Extract { .. }) {
            return Err(PromptError::Invalid(format!(
                "{{schema}} is only defined for extract, not for {}",
                task.name()
            )));
        }
        Ok(PromptTemplate { messages })
    }

    /// The messages for one item.
    pub fn render(&self, input: &str, schema: Option<&Value>) -> Vec<Message> {
        let schema = schema.map(|s| serde_json::to_string(s).unwrap_or_default());
        self.messages
            .iter()
            .map(|(role, pieces)| {
                let mut content = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => content.push_str(t),
                        Piece::Input => content.push_str(input),
                        Piece::Schema => content.push_str(schema.as_deref().unwrap_or("")),
                    }
                }
                Message {
                    role: role.clone(),
                    content,
                }
            })
            .collect()
    }

    /// The template written back as text (placeholders included).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (role, pieces) in &self.messages {
            let _ = writeln!(s, "[{role}]");
            for p in pieces {
                match p {
                    Piece::Text(t) => s.push_str(&t.replace('{', "{{").replace('}', "}}")),
                    Piece::Input => s.push_str("{input}"),
                    Piece::Schema => s.push_str("{schema}"),
                }
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extract() -> Task {
        Task::Extract {
            schema: json!({"type": "object"}),
        }
    }

    #[test]
    fn defaults_parse_and_render_the_task_prompts() {
        for task in [extract(), Task::Summarize, Task::Qa, Task::Chat] {
            let text = default_text(&task).unwrap();
            let t = PromptTemplate::parse(&text, &task).unwrap();
            assert_eq!(default_for(&task).as_ref(), Some(&t));
            // Writing a template back gives the same template.
            assert_eq!(PromptTemplate::parse(&t.to_text(), &task).unwrap(), t);
        }
        assert!(default_text(&Task::Classify { labels: vec![] }).is_none());
        let qa = default_for(&Task::Qa)
            .unwrap()
            .render("Capital of France?", None);
        assert_eq!(
            qa,
            vec![
                Message {
                    role: "system".into(),
                    content: "Answer with a short phrase only.".into()
                },
                Message {
                    role: "user".into(),
                    content: "Capital of France?".into()
                }
            ]
        );
        // Extraction: bantam-tasks' instructions and the schema as compact JSON.
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let m = default_for(&extract()).unwrap().render("x", Some(&schema));
        assert_eq!(
            m[0].content,
            format!(
                "{}\n\nJSON Schema:\n{}",
                bantam_tasks::extract::DEFAULT_INSTRUCTIONS,
                serde_json::to_string(&schema).unwrap()
            )
        );
        assert_eq!(m[1].content, "x");
    }

    #[test]
    fn roles_placeholders_and_braces() {
        let t = PromptTemplate::parse(
            "[system]\nReply in JSON like {{\"answer\": ...}}.\n\n[user]\nQ: 2+2?\n[assistant]\n4\n[user]\nQ: {input}\n",
            &Task::Qa,
        )
        .unwrap();
        let m = t.render("3+3? {input} stays", None);
        let roles: Vec<&str> = m.iter().map(|x| x.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(m[0].content, "Reply in JSON like {\"answer\": ...}.");
        // The input is inserted verbatim, not expanded again.
        assert_eq!(m[3].content, "Q: 3+3? {input} stays");
        // No role line: one user message, inner blank lines kept.
        let t = PromptTemplate::parse("Summarise:\n\n{input}\n", &Task::Summarize).unwrap();
        assert_eq!(
            t.render("abc", None),
            vec![Message {
                role: "user".into(),
                content: "Summarise:\n\nabc".into()
            }]
        );
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let err = |text: &str, task: &Task| PromptTemplate::parse(text, task).unwrap_err();
        assert_eq!(
            err("[system]\nok\n[user]\n\n{inptu}\n", &Task::Chat),
            PromptError::Syntax {
                line: 5,
                reason: "unknown placeholder {inptu}; use {input} or (extract) {schema}, and {{ }} for literal braces".into()
            }
        );
        assert!(matches!(
            err("[user]\n{input\n", &Task::Chat),
            PromptError::Syntax { line: 2, .. }
        ));
        assert!(matches!(
            err("[user]\n{input} }\n", &Task::Chat),
            PromptError::Syntax { line: 2, .. }
        ));
        assert!(matches!(
            err("hello\n[user]\n{input}\n", &Task::Chat),
            PromptError::Syntax { line: 1, .. }
        ));
        assert!(matches!(
            err("[system]\n\n[user]\n{input}\n", &Task::Chat),
            PromptError::Syntax { .. }
        ));
        assert!(err("[system]\n{input}\n[user]\nhi\n", &Task::Chat)
            .to_string()
            .contains("no user message contains {input}"));
        assert!(err("[user]\n{input} {schema}\n", &Task::Qa)
            .to_string()
            .contains("only defined for extract"));
        assert!(err("{input}", &Task::Classify { labels: vec![] })
            .to_string()
            .contains("classify has no prompt template"));
        // {schema} is fine for extraction.
        let t = PromptTemplate::parse("[user]\n{schema}\n{input}\n", &extract()).unwrap();
        assert_eq!(
            t.render("in", Some(&json!({"type": "object"})))[0].content,
            "{\"type\":\"object\"}\nin"
        );
    }
}
