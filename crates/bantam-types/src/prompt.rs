//! Prompt templates of every task (classify, extract, summarize, qa, chat): the task
//! endpoints' default prompts and the custom ones a request (`"prompt"`) or
//! `bantam eval --prompt-template` gives, so that the local tasks, a route's upstream
//! and `bantam eval` all ask the same question.
//!
//! A template is a chat written as plain text. A line that is exactly `[system]`,
//! `[user]` or `[assistant]` starts a message with that role (so few-shot turns are
//! written as `[user]`/`[assistant]` pairs); a text without such a line is one user
//! message. In the text, `{input}` is the item's input; for extraction `{schema}` is
//! the JSON Schema (compact JSON), for classification `{labels}` the label list (one
//! `- label` line each); `{{` and `}}` are literal braces. Any other `{name}` is an
//! error, so a typo does not reach the model. A classification template decides
//! what comes before the answer; the labels are then scored (local models) or chosen
//! under a constraint (upstreams) as the answer.

use std::fmt::Write;

use serde_json::Value;

use crate::generate::TemplateMessage;
use crate::tasks::{CLASSIFY_INSTRUCTIONS, EXTRACT_INSTRUCTIONS, SUMMARIZE_INSTRUCTIONS};

/// Which task a template is for (what its placeholders may be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptTask {
    /// `{labels}` allowed; must end with a user message.
    Classify,
    /// `{schema}` allowed.
    Extract,
    /// Summaries.
    Summarize,
    /// Short answers.
    Qa,
    /// Free answers.
    Chat,
}

impl PromptTask {
    /// The task's name.
    pub fn name(self) -> &'static str {
        match self {
            PromptTask::Classify => "classify",
            PromptTask::Extract => "extract",
            PromptTask::Summarize => "summarize",
            PromptTask::Qa => "qa",
            PromptTask::Chat => "chat",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Input,
    Schema,
    Labels,
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

/// The default template of a task: the prompts the task endpoints use when no
/// `prompt` is given (instructions, then the labels or the schema; summaries in the
/// default style).
pub fn default_text(task: PromptTask) -> String {
    let (system, user) = match task {
        PromptTask::Classify => (
            format!("{CLASSIFY_INSTRUCTIONS}\n\nLabels:\n{{labels}}"),
            "{input}",
        ),
        PromptTask::Extract => (
            format!("{EXTRACT_INSTRUCTIONS}\n\nJSON Schema:\n{{schema}}"),
            "{input}",
        ),
        PromptTask::Summarize => (
            format!("{SUMMARIZE_INSTRUCTIONS} Answer with one short paragraph."),
            "{input}",
        ),
        PromptTask::Qa => ("Answer with a short phrase only.".to_string(), "{input}"),
        PromptTask::Chat => ("You are a helpful assistant.".to_string(), "{input}"),
    };
    format!("[system]\n{system}\n[user]\n{user}\n")
}

/// The default template of a task, parsed.
pub fn default_for(task: PromptTask) -> PromptTemplate {
    // The defaults are constants checked by the tests.
    PromptTemplate::parse(&default_text(task), task).expect("default templates parse")
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
                    "labels" => Piece::Labels,
                    other => {
                        return Err(PromptError::Syntax {
                            line,
                            reason: format!(
                                "unknown placeholder {{{other}}}; use {{input}}, (extract) {{schema}} or (classify) {{labels}}, and {{{{ }}}} for literal braces"
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
    pub fn parse(text: &str, task: PromptTask) -> Result<PromptTemplate, PromptError> {
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
        if uses(&Piece::Schema) && task != PromptTask::Extract {
            return Err(PromptError::Invalid(format!(
                "{{schema}} is only defined for extract, not for {}",
                task.name()
            )));
        }
        if uses(&Piece::Labels) && task != PromptTask::Classify {
            return Err(PromptError::Invalid(format!(
                "{{labels}} is only defined for classify, not for {}",
                task.name()
            )));
        }
        // The answer is the model's next turn: a classification prompt that ends
        // with an assistant message would score the labels as its continuation.
        if task == PromptTask::Classify && messages.last().is_some_and(|(r, _)| r == "assistant") {
            return Err(PromptError::Invalid(
                "a classification template must end with a [user] message (the labels are \
                 scored as the assistant's answer to it)"
                    .into(),
            ));
        }
        Ok(PromptTemplate { messages })
    }

    /// Does the template show the JSON Schema (`{schema}`)?
    pub fn uses_schema(&self) -> bool {
        self.messages
            .iter()
            .any(|(_, ps)| ps.contains(&Piece::Schema))
    }

    /// The messages for one item.
    pub fn render(&self, input: &str, schema: Option<&Value>) -> Vec<TemplateMessage> {
        self.render_all(input, schema, &[])
    }

    /// The messages for one item to classify into `labels`.
    pub fn render_labels(&self, input: &str, labels: &[String]) -> Vec<TemplateMessage> {
        self.render_all(input, None, labels)
    }

    fn render_all(
        &self,
        input: &str,
        schema: Option<&Value>,
        labels: &[String],
    ) -> Vec<TemplateMessage> {
        let schema = schema.map(|s| serde_json::to_string(s).unwrap_or_default());
        let list: String = labels.iter().map(|l| format!("- {l}\n")).collect();
        self.messages
            .iter()
            .map(|(role, pieces)| {
                let mut content = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => content.push_str(t),
                        Piece::Input => content.push_str(input),
                        Piece::Schema => content.push_str(schema.as_deref().unwrap_or("")),
                        Piece::Labels => content.push_str(&list),
                    }
                }
                TemplateMessage::new(role, &content)
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
                    Piece::Labels => s.push_str("{labels}"),
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

    fn extract() -> PromptTask {
        PromptTask::Extract
    }

    #[test]
    fn defaults_parse_and_render_the_task_prompts() {
        let classify = PromptTask::Classify;
        for task in [
            extract(),
            PromptTask::Summarize,
            PromptTask::Qa,
            PromptTask::Chat,
            classify,
        ] {
            let text = default_text(task);
            let t = PromptTemplate::parse(&text, task).unwrap();
            assert_eq!(default_for(task), t);
            // Writing a template back gives the same template.
            assert_eq!(PromptTemplate::parse(&t.to_text(), task).unwrap(), t);
        }
        // Classification: exactly bantam-tasks' prompt, so results do not change.
        let labels: Vec<String> = vec!["billing".into(), "card lost".into()];
        let m = default_for(classify).render_labels("I lost my card", &labels);
        let req = crate::tasks::ClassifyRequest::new("m", labels.clone());
        assert_eq!(m[0].content, req.system_prompt());
        assert_eq!(m[1].content, "I lost my card");
        assert_eq!(m.len(), 2);
        let qa = default_for(PromptTask::Qa).render("Capital of France?", None);
        assert_eq!(
            qa,
            vec![
                TemplateMessage::new("system", "Answer with a short phrase only."),
                TemplateMessage::new("user", "Capital of France?")
            ]
        );
        // Extraction: bantam-tasks' instructions and the schema as compact JSON.
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let m = default_for(extract()).render("x", Some(&schema));
        assert_eq!(
            m[0].content,
            format!(
                "{}\n\nJSON Schema:\n{}",
                EXTRACT_INSTRUCTIONS,
                serde_json::to_string(&schema).unwrap()
            )
        );
        assert_eq!(m[1].content, "x");
    }

    #[test]
    fn roles_placeholders_and_braces() {
        let t = PromptTemplate::parse(
            "[system]\nReply in JSON like {{\"answer\": ...}}.\n\n[user]\nQ: 2+2?\n[assistant]\n4\n[user]\nQ: {input}\n",
            PromptTask::Qa,
        )
        .unwrap();
        let m = t.render("3+3? {input} stays", None);
        let roles: Vec<&str> = m.iter().map(|x| x.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(m[0].content, "Reply in JSON like {\"answer\": ...}.");
        // The input is inserted verbatim, not expanded again.
        assert_eq!(m[3].content, "Q: 3+3? {input} stays");
        // No role line: one user message, inner blank lines kept.
        let t = PromptTemplate::parse("Summarise:\n\n{input}\n", PromptTask::Summarize).unwrap();
        assert_eq!(
            t.render("abc", None),
            vec![TemplateMessage::new("user", "Summarise:\n\nabc")]
        );
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let err = |text: &str, task: PromptTask| PromptTemplate::parse(text, task).unwrap_err();
        assert_eq!(
            err("[system]\nok\n[user]\n\n{inptu}\n", PromptTask::Chat),
            PromptError::Syntax {
                line: 5,
                reason: "unknown placeholder {inptu}; use {input}, (extract) {schema} or (classify) {labels}, and {{ }} for literal braces".into()
            }
        );
        assert!(matches!(
            err("[user]\n{input\n", PromptTask::Chat),
            PromptError::Syntax { line: 2, .. }
        ));
        assert!(matches!(
            err("[user]\n{input} }\n", PromptTask::Chat),
            PromptError::Syntax { line: 2, .. }
        ));
        assert!(matches!(
            err("hello\n[user]\n{input}\n", PromptTask::Chat),
            PromptError::Syntax { line: 1, .. }
        ));
        assert!(matches!(
            err("[system]\n\n[user]\n{input}\n", PromptTask::Chat),
            PromptError::Syntax { .. }
        ));
        assert!(err("[system]\n{input}\n[user]\nhi\n", PromptTask::Chat)
            .to_string()
            .contains("no user message contains {input}"));
        assert!(err("[user]\n{input} {schema}\n", PromptTask::Qa)
            .to_string()
            .contains("only defined for extract"));
        let classify = PromptTask::Classify;
        assert!(err("[user]\n{input} {labels}\n", PromptTask::Qa)
            .to_string()
            .contains("only defined for classify"));
        assert!(err("[user]\n{input}\n[assistant]\nLabel:\n", classify)
            .to_string()
            .contains("must end with a [user] message"));
        let t = PromptTemplate::parse("Pick one of:\n{labels}Text: {input}\n", classify).unwrap();
        assert_eq!(
            t.render_labels("hi", &["x".into(), "y".into()])[0].content,
            "Pick one of:\n- x\n- y\nText: hi"
        );
        // {schema} is fine for extraction.
        let t = PromptTemplate::parse("[user]\n{schema}\n{input}\n", extract()).unwrap();
        assert_eq!(
            t.render("in", Some(&json!({"type": "object"})))[0].content,
            "{\"type\":\"object\"}\nin"
        );
    }
}
