//! Chat templates: the model's own Jinja template, rendered with minijinja.
//!
//! Source of the template, in order: one stored with the model (like Ollama's
//! Modelfile `TEMPLATE`), the GGUF's `tokenizer.chat_template`, then the standard
//! template of the model's family. A model with none of these is an error that says
//! how to add one — never a silent concatenation of messages.

use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

use crate::EngineError;

pub use bantam_types::generate::TemplateMessage;

/// Where a template came from (shown by `bantam show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSource {
    /// Stored with the model in Bantam's store.
    Stored,
    /// The GGUF's own `tokenizer.chat_template`.
    Gguf,
    /// Bantam's standard template for the model's family.
    Family,
}

/// A compiled chat template plus the special-token strings it needs.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    origin: TemplateSource,
    bos_token: String,
    eos_token: String,
}

/// Gemma's turn format (Gemma 1–3), for Gemma models that ship without a template.
const GEMMA_TEMPLATE: &str = r#"{{ bos_token }}
{%- if messages and messages[0].role == 'system' -%}
  {%- set prefix = messages[0].content ~ '\n\n' -%}
  {%- set rest = messages[1:] -%}
{%- else -%}
  {%- set prefix = '' -%}
  {%- set rest = messages -%}
{%- endif -%}
{%- for m in rest -%}
  {%- set role = 'model' if m.role == 'assistant' else m.role -%}
  {{ '<start_of_turn>' ~ role ~ '\n' ~ (prefix if loop.first else '') ~ (m.content | trim) ~ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"#;

/// ChatML (`<|im_start|>role … <|im_end|>`), used by Qwen and SmolLM families.
const CHATML_TEMPLATE: &str = r#"{%- for m in messages -%}
{{ '<|im_start|>' ~ m.role ~ '\n' ~ m.content ~ '<|im_end|>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"#;

/// Llama 3 header format.
const LLAMA3_TEMPLATE: &str = r#"{{ bos_token }}
{%- for m in messages -%}
{{ '<|start_header_id|>' ~ m.role ~ '<|end_header_id|>\n\n' ~ (m.content | trim) ~ '<|eot_id|>' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif -%}"#;

/// The standard template for a model family, chosen from the GGUF's architecture
/// and, where the architecture is ambiguous, its vocabulary.
pub fn family_template(arch: &str, has_token: impl Fn(&str) -> bool) -> Option<&'static str> {
    match arch {
        a if a.starts_with("gemma") => Some(GEMMA_TEMPLATE),
        a if a.starts_with("qwen") => Some(CHATML_TEMPLATE),
        _ if has_token("<|im_start|>") => Some(CHATML_TEMPLATE),
        _ if has_token("<|start_header_id|>") => Some(LLAMA3_TEMPLATE),
        _ => None,
    }
}

impl ChatTemplate {
    /// Build from template source; the source is compiled once here to report
    /// syntax errors early.
    pub fn new(
        source: String,
        origin: TemplateSource,
        bos_token: String,
        eos_token: String,
    ) -> Result<Self, EngineError> {
        let t = Self {
            source,
            origin,
            bos_token,
            eos_token,
        };
        let env = t.env();
        env.template_from_str(&t.source)
            .map_err(|e| EngineError::Template(describe(&e)))?;
        Ok(t)
    }

    /// Does the template render a `tools` list (so tools go through it rather than
    /// through Bantam's own system prompt)?
    pub fn supports_tools(&self) -> bool {
        self.source.contains("tools")
    }

    /// Where the template came from.
    pub fn origin(&self) -> TemplateSource {
        self.origin
    }

    fn env(&self) -> Environment<'static> {
        let mut env = Environment::new();
        // A template comes with a model file or an imported archive: bounded work
        // (a loop nested in a loop must not hold a thread forever) and depth.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(64);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_filter("tojson", tojson);
        env.add_function("strftime_now", |fmt: String| -> String {
            let now = time::OffsetDateTime::now_utc();
            strftime(&now, &fmt)
        });
        env
    }

    /// Render a conversation. `tools` is passed to templates that support tools.
    pub fn render(
        &self,
        messages: &[TemplateMessage],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String, EngineError> {
        let env = self.env();
        let tmpl = env
            .template_from_str(&self.source)
            .map_err(|e| EngineError::Template(describe(&e)))?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
            tools => tools.map(Value::from_serialize),
        };
        let out = tmpl
            .render(ctx)
            .map_err(|e| EngineError::Template(describe(&e)))?;
        if out.len() > MAX_RENDERED_BYTES {
            return Err(EngineError::Template(format!(
                "the rendered prompt is {} MB, more than any context holds; the chat template or the conversation is at fault",
                out.len() >> 20
            )));
        }
        Ok(out)
    }
}

/// Instructions a template may execute per render (minijinja's fuel): far more than
/// a real chat template needs for the longest conversation a request may carry.
const TEMPLATE_FUEL: u64 = 50_000_000;

/// Longest rendered prompt: 16 MiB is more text than any model's context holds.
const MAX_RENDERED_BYTES: usize = 16 << 20;

/// `tojson` as Hugging Face's template environment defines it: Python's
/// `json.dumps(x, ensure_ascii=False)` — `", "` and `": "` separators, no HTML
/// escaping — so tool definitions reach the model exactly as in training.
fn tojson(value: Value, kwargs: minijinja::value::Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = Vec::new();
    let res = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let mut ser = serde_json::Serializer::with_formatter(
                &mut out,
                serde_json::ser::PrettyFormatter::with_indent(&pad),
            );
            serde::Serialize::serialize(&json, &mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
            serde::Serialize::serialize(&json, &mut ser)
        }
    };
    res.map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(Value::from_safe_string(
        String::from_utf8(out).unwrap_or_default(),
    ))
}

/// Python's default JSON separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The subset of strftime that chat templates use (`%d %b %Y`, `%Y-%m-%d`, …).
fn strftime(t: &time::OffsetDateTime, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const FULL: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let m = u8::from(t.month()) as usize - 1;
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{:02}", t.day())),
            Some('m') => out.push_str(&format!("{:02}", m + 1)),
            Some('Y') => out.push_str(&t.year().to_string()),
            Some('b') => out.push_str(MONTHS[m]),
            Some('B') => out.push_str(FULL[m]),
            Some('H') => out.push_str(&format!("{:02}", t.hour())),
            Some('M') => out.push_str(&format!("{:02}", t.minute())),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs() -> Vec<TemplateMessage> {
        vec![
            TemplateMessage::new("system", "Be brief."),
            TemplateMessage::new("user", "Hi"),
            TemplateMessage::new("assistant", "Hello!"),
            TemplateMessage::new("user", "Bye"),
        ]
    }

    #[test]
    fn gemma_family_template_folds_system_into_first_user_turn() {
        let t = ChatTemplate::new(
            GEMMA_TEMPLATE.into(),
            TemplateSource::Family,
            "<bos>".into(),
            "<eos>".into(),
        )
        .unwrap();
        let out = t.render(&msgs(), true, None).unwrap();
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn chatml_family_template() {
        let t = ChatTemplate::new(
            CHATML_TEMPLATE.into(),
            TemplateSource::Family,
            "".into(),
            "".into(),
        )
        .unwrap();
        let out = t.render(&msgs()[1..2], true, None).unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = r#"{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ messages[0].content.strip().upper() }}"#;
        let t = ChatTemplate::new(src.into(), TemplateSource::Gguf, "".into(), "".into()).unwrap();
        assert_eq!(
            t.render(&[TemplateMessage::new("user", " hi ")], false, None)
                .unwrap(),
            "HI"
        );
        let err = t
            .render(&[TemplateMessage::new("system", "x")], false, None)
            .unwrap_err();
        assert!(err.to_string().contains("first must be user"), "{err}");
    }

    #[test]
    fn hostile_templates_end_in_errors_not_hangs() {
        let t = |src: &str| {
            ChatTemplate::new(src.into(), TemplateSource::Stored, "".into(), "".into()).unwrap()
        };
        let msgs = [TemplateMessage::new("user", "hi")];
        let started = std::time::Instant::now();
        let looping =
            t("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}");
        let e = looping.render(&msgs, true, None).unwrap_err();
        assert!(matches!(e, EngineError::Template(_)), "{e}");
        let huge = t("{% for i in range(3000000) %}{{ 'xxxxxxxx' }}{% endfor %}");
        assert!(huge.render(&msgs, true, None).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn syntax_errors_are_reported_at_load() {
        assert!(ChatTemplate::new(
            "{% for %}".into(),
            TemplateSource::Stored,
            "".into(),
            "".into()
        )
        .is_err());
    }

    #[test]
    fn family_lookup() {
        assert!(family_template("gemma3", |_| false)
            .unwrap()
            .contains("start_of_turn"));
        assert!(family_template("llama", |t| t == "<|im_start|>")
            .unwrap()
            .contains("im_start"));
        assert!(family_template("mamba", |_| false).is_none());
    }
}
