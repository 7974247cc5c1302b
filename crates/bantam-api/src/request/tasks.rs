//! The task endpoints (`/v1/classify`, `/v1/extract`, `/v1/summarize`), validated,
//! with the one function that turns each into chat messages (its default prompt or
//! the request's template): the local tasks, a route's upstream and `bantam eval`
//! all ask the same question.

use std::ops::Deref;

use bantam_types::generate::TemplateMessage;
use bantam_types::prompt::{PromptTask, PromptTemplate};
use bantam_types::tasks::{ClassifyRequest, ExtractRequest, SummarizeRequest};

use super::Invalid;

/// Most texts per classification request.
pub const MAX_INPUTS: usize = bantam_types::limits::MAX_TASK_INPUTS;
/// Most labels per request (llama.cpp's sequence limit).
pub const MAX_LABELS: usize = bantam_types::limits::MAX_LABELS;

/// How labels are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// Follow the likeliest branch of the label tree (default, fastest).
    Greedy,
    /// Every label's full log-likelihood.
    Exact,
}

fn model_required(model: &str) -> Result<(), Invalid> {
    super::check_model(model)
}

fn template(text: Option<&str>, task: PromptTask) -> Result<Option<PromptTemplate>, Invalid> {
    text.map(|t| {
        PromptTemplate::parse(t, task).map_err(|e| Invalid::param("prompt", e.to_string()))
    })
    .transpose()
}

/// A classification request that passed validation.
#[derive(Debug, Clone)]
pub struct ClassifyTask {
    req: ClassifyRequest,
    texts: Vec<String>,
    names: Vec<String>,
    scoring: Scoring,
    template: Option<PromptTemplate>,
}

impl ClassifyTask {
    /// Validate a classification request.
    pub fn new(req: ClassifyRequest) -> Result<Self, Invalid> {
        model_required(&req.model)?;
        let n = req.labels.len();
        if n != 0 && !(2..=MAX_LABELS).contains(&n) {
            return Err(Invalid::param(
                "labels",
                format!("give between 2 and {MAX_LABELS} labels (got {n}), or none for a classifier model's own labels"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for l in &req.labels {
            let name = l.name();
            if name.trim().is_empty() {
                return Err(Invalid::param("labels", "labels must not be empty"));
            }
            if !seen.insert(name) {
                return Err(Invalid::param(
                    "labels",
                    format!("label {name:?} appears twice"),
                ));
            }
        }
        for e in &req.examples {
            if !seen.contains(e.label.as_str()) {
                return Err(Invalid::param(
                    "examples",
                    format!("example label {:?} is not among the labels", e.label),
                ));
            }
        }
        let scoring = match req.scoring.as_deref() {
            None | Some("greedy") => Scoring::Greedy,
            Some("exact") => Scoring::Exact,
            Some(other) => {
                return Err(Invalid::param(
                    "scoring",
                    format!("unknown scoring {other:?}; use greedy or exact"),
                ))
            }
        };
        for (p, v) in [
            ("threshold", req.threshold),
            ("min_confidence", req.min_confidence),
        ] {
            if v.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
                return Err(Invalid::param(p, format!("{p} must be between 0 and 1")));
            }
        }
        let texts = req.input.clone().into_vec();
        if texts.is_empty() || texts.len() > MAX_INPUTS {
            return Err(Invalid::param(
                "input",
                format!("give between 1 and {MAX_INPUTS} texts"),
            ));
        }
        if texts.iter().any(|t| t.trim().is_empty()) {
            return Err(Invalid::param("input", "texts must not be empty"));
        }
        let template = template(req.prompt.as_deref(), PromptTask::Classify)?;
        let names = req.labels.iter().map(|l| l.name().to_string()).collect();
        Ok(Self {
            req,
            texts,
            names,
            scoring,
            template,
        })
    }

    /// The request as sent (model possibly replaced).
    pub fn wire(&self) -> &ClassifyRequest {
        &self.req
    }

    pub(crate) fn set_model(&mut self, model: &str) {
        self.req.model = model.to_string();
    }

    /// The texts to classify, in order.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// The label names, in order.
    pub fn label_names(&self) -> &[String] {
        &self.names
    }

    /// How labels are scored.
    pub fn scoring(&self) -> Scoring {
        self.scoring
    }

    /// The chat before the answer for `text`: the request's template, or the
    /// instructions with the label list, the examples as turns, then the text.
    pub fn messages(&self, text: &str) -> Vec<TemplateMessage> {
        if let Some(t) = &self.template {
            return t.render_labels(text, &self.names);
        }
        let mut m = vec![TemplateMessage::new("system", &self.req.system_prompt())];
        for e in &self.req.examples {
            m.push(TemplateMessage::new("user", &e.input));
            m.push(TemplateMessage::new("assistant", &e.label));
        }
        m.push(TemplateMessage::new("user", text));
        m
    }
}

impl Deref for ClassifyTask {
    type Target = ClassifyRequest;
    fn deref(&self) -> &ClassifyRequest {
        &self.req
    }
}

/// An extraction request that passed validation.
#[derive(Debug, Clone)]
pub struct ExtractTask {
    req: ExtractRequest,
    template: Option<PromptTemplate>,
}

impl ExtractTask {
    /// Validate an extraction request.
    pub fn new(req: ExtractRequest) -> Result<Self, Invalid> {
        model_required(&req.model)?;
        if req.input.trim().is_empty() {
            return Err(Invalid::param("input", "input must not be empty"));
        }
        bantam_structured::check_schema(&req.schema)
            .map_err(|e| Invalid::param("schema", e.to_string()))?;
        if req.max_tokens == Some(0) {
            return Err(Invalid::param(
                "max_tokens",
                "max_tokens must be at least 1",
            ));
        }
        let template = template(req.prompt.as_deref(), PromptTask::Extract)?;
        Ok(Self { req, template })
    }

    /// The request as sent (model possibly replaced).
    pub fn wire(&self) -> &ExtractRequest {
        &self.req
    }

    pub(crate) fn set_model(&mut self, model: &str) {
        self.req.model = model.to_string();
    }

    /// Most tokens of the object (default 1024).
    pub fn max_tokens(&self) -> u32 {
        self.req.max_tokens.unwrap_or(1024)
    }

    /// The chat before the answer: the request's template, or the instructions with
    /// the schema, then the text.
    pub fn messages(&self) -> Vec<TemplateMessage> {
        if let Some(t) = &self.template {
            return t.render(&self.req.input, Some(&self.req.schema));
        }
        vec![
            TemplateMessage::new("system", &self.req.system_prompt()),
            TemplateMessage::new("user", &self.req.input),
        ]
    }
}

impl Deref for ExtractTask {
    type Target = ExtractRequest;
    fn deref(&self) -> &ExtractRequest {
        &self.req
    }
}

/// A summarisation request that passed validation.
#[derive(Debug, Clone)]
pub struct SummarizeTask {
    req: SummarizeRequest,
    template: Option<PromptTemplate>,
}

impl SummarizeTask {
    /// Validate a summarisation request.
    pub fn new(req: SummarizeRequest) -> Result<Self, Invalid> {
        model_required(&req.model)?;
        if req.input.trim().is_empty() {
            return Err(Invalid::param("input", "input must not be empty"));
        }
        let style = req.style();
        if !matches!(style, "paragraph" | "bullets" | "sentences") {
            return Err(Invalid::param(
                "style",
                format!("unknown style {style:?}; use paragraph, bullets or sentences"),
            ));
        }
        if !(1..=bantam_types::limits::MAX_SUMMARY_LENGTH).contains(&req.length()) {
            return Err(Invalid::param("length", "length must be between 1 and 20"));
        }
        let most = bantam_types::limits::MAX_SUMMARY_TOKENS;
        if let Some(m) = req.max_tokens.filter(|m| !(1..=most).contains(m)) {
            return Err(Invalid::param(
                "max_tokens",
                format!("max_tokens must be between 1 and {most}, got {m}"),
            ));
        }
        let template = template(req.prompt.as_deref(), PromptTask::Summarize)?;
        Ok(Self { req, template })
    }

    /// The request as sent (model possibly replaced).
    pub fn wire(&self) -> &SummarizeRequest {
        &self.req
    }

    pub(crate) fn set_model(&mut self, model: &str) {
        self.req.model = model.to_string();
    }

    /// Most tokens of the summary (default 256, kept within 16–2048).
    pub fn max_tokens(&self) -> u32 {
        self.req.max_tokens.unwrap_or(256)
    }

    /// A custom template was given (it replaces the style's prompt).
    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// The chat before the summary of `text` (the whole input, or the joined
    /// summaries of its parts): the request's template, or the instructions in the
    /// requested style.
    pub fn messages(&self, text: &str) -> Vec<TemplateMessage> {
        if let Some(t) = &self.template {
            return t.render(text, None);
        }
        vec![
            TemplateMessage::new("system", &self.req.system_prompt()),
            TemplateMessage::new("user", text),
        ]
    }
}

impl Deref for SummarizeTask {
    type Target = SummarizeRequest;
    fn deref(&self) -> &SummarizeRequest {
        &self.req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classify(v: serde_json::Value) -> Result<ClassifyTask, Invalid> {
        ClassifyTask::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn classification_checks_name_the_field() {
        let ok = json!({"model": "m", "input": "x", "labels": ["a", "b"]});
        assert!(classify(ok).is_ok());
        for (bad, param) in [
            (
                json!({"model": "m", "input": "x", "labels": ["a"]}),
                "labels",
            ),
            (
                json!({"model": "m", "input": "x", "labels": ["a", "a"]}),
                "labels",
            ),
            (
                json!({"model": "m", "input": "x", "labels": ["a", " "]}),
                "labels",
            ),
            (
                json!({"model": "m", "input": [], "labels": ["a", "b"]}),
                "input",
            ),
            (
                json!({"model": "m", "input": ["x", ""], "labels": ["a", "b"]}),
                "input",
            ),
            (
                json!({"model": "m", "input": "x", "labels": ["a", "b"], "min_confidence": 2}),
                "min_confidence",
            ),
            (
                json!({"model": "m", "input": "x", "labels": ["a", "b"], "scoring": "fuzzy"}),
                "scoring",
            ),
            (
                json!({"model": "m", "input": "x", "labels": ["a", "b"], "examples": [{"input": "y", "label": "c"}]}),
                "examples",
            ),
            (
                json!({"model": "m", "input": "x", "labels": ["a", "b"], "prompt": "[user]\nno input here\n"}),
                "prompt",
            ),
            (
                json!({"model": "", "input": "x", "labels": ["a", "b"]}),
                "model",
            ),
        ] {
            assert_eq!(
                classify(bad.clone()).unwrap_err().param.as_deref(),
                Some(param),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_template_replaces_the_default_prompt() {
        let d = classify(json!({"model": "m", "input": "x", "labels": ["a", "b"],
            "examples": [{"input": "ex", "label": "b"}]}))
        .unwrap();
        let m = d.messages("hello");
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert!(m[0].content.contains("- a\n- b\n"));
        assert_eq!(m[3].content, "hello");
        let t = classify(json!({"model": "m", "input": "x", "labels": ["a", "b"],
            "prompt": "Pick one of:\n{labels}Text: {input}\n"}))
        .unwrap();
        assert_eq!(
            t.messages("hi")[0].content,
            "Pick one of:\n- a\n- b\nText: hi"
        );
        // Without examples, the default prompt is the default template's.
        let plain = classify(json!({"model": "m", "input": "x", "labels": ["a", "b"]})).unwrap();
        let names = ["a".to_string(), "b".to_string()];
        assert_eq!(
            plain.messages("hi"),
            bantam_types::prompt::default_for(PromptTask::Classify).render_labels("hi", &names)
        );
    }

    #[test]
    fn extraction_and_summaries() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let e = ExtractTask::new(
            serde_json::from_value(json!({"model": "m", "input": "x", "schema": schema})).unwrap(),
        )
        .unwrap();
        assert_eq!(
            e.messages(),
            bantam_types::prompt::default_for(PromptTask::Extract).render("x", Some(&schema))
        );
        assert!(ExtractTask::new(
            serde_json::from_value(json!({"model": "m", "input": "x", "schema": 5})).unwrap()
        )
        .is_err());
        let s = |v| SummarizeTask::new(serde_json::from_value(v).unwrap());
        assert_eq!(
            s(json!({"model": "m", "input": "x", "style": "poem"}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("style")
        );
        assert_eq!(
            s(json!({"model": "m", "input": "x", "length": 0}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("length")
        );
        let d = s(json!({"model": "m", "input": "long text"})).unwrap();
        assert_eq!(
            d.messages("long text"),
            bantam_types::prompt::default_for(PromptTask::Summarize).render("long text", None)
        );
    }
}
