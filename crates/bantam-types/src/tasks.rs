//! Task endpoints (`/v1/classify`): request and response bodies.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::limits::{MAX_LABELS, MAX_MODEL_NAME, MAX_SUMMARY_LENGTH, MAX_SUMMARY_TOKENS};

/// One text or several.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TextInput {
    /// One text.
    One(String),
    /// Several texts (one result each, in order).
    Many(Vec<String>),
}

impl TextInput {
    /// The texts as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            TextInput::One(s) => vec![s],
            TextInput::Many(v) => v,
        }
    }
}

/// A label, optionally with a description the model is shown.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum LabelSpec {
    /// Just the label.
    Name(String),
    /// Label and description.
    Described {
        /// The label.
        label: String,
        /// What it means.
        #[serde(default)]
        description: Option<String>,
    },
}

impl LabelSpec {
    /// The label.
    pub fn name(&self) -> &str {
        match self {
            LabelSpec::Name(n) => n,
            LabelSpec::Described { label, .. } => label,
        }
    }
    /// Its description, if any.
    pub fn description(&self) -> Option<&str> {
        match self {
            LabelSpec::Name(_) => None,
            LabelSpec::Described { description, .. } => description.as_deref(),
        }
    }
}

/// A solved example shown to the model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ClassifyExample {
    /// Example text.
    pub input: String,
    /// Its label.
    pub label: String,
}

/// `POST /v1/classify`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ClassifyRequest {
    /// Model name.
    #[schemars(length(min = 1, max = MAX_MODEL_NAME))]
    pub model: String,
    /// Text(s) to classify.
    pub input: TextInput,
    /// Candidate labels (2–256), as strings or `{"label", "description"}`. A
    /// classifier model (`bantam tune classify`) knows its labels: without `labels`
    /// it answers with all of them, with `labels` it restricts to those.
    #[serde(default)]
    #[schemars(length(max = MAX_LABELS))]
    pub labels: Vec<LabelSpec>,
    /// Task instructions shown before the labels (a default is used otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Few-shot examples.
    #[serde(default)]
    pub examples: Vec<ClassifyExample>,
    /// Several labels may apply: every label with probability ≥ `threshold`.
    #[serde(default)]
    pub multi_label: bool,
    /// Multi-label cut-off (default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub threshold: Option<f64>,
    /// Out of scope: when the best label's probability is below this, `label` is
    /// null (default 0: always a label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub min_confidence: Option<f64>,
    /// How labels are scored: `greedy` (default, fastest: follow the most likely
    /// branch of the label tree, probabilities renormalised over the labels'
    /// continuations at each branch point, as constrained generation would choose;
    /// labels off the path share their branch's probability) or `exact` (every
    /// label's full log-likelihood, normalised over the labels; costs one token of
    /// compute per node of the label tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["greedy", "exact", null]))]
    pub scoring: Option<String>,
    /// A prompt template instead of the instructions, label list and examples
    /// (`[system]`/`[user]`/`[assistant]` lines, `{input}`, `{labels}`; see
    /// [`crate::prompt`]). The labels are scored as the answer to its last message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

impl ClassifyRequest {
    /// A request with these labels and every option at its default.
    pub fn new(model: &str, labels: Vec<String>) -> Self {
        Self {
            model: model.to_string(),
            input: TextInput::Many(Vec::new()),
            labels: labels.into_iter().map(LabelSpec::Name).collect(),
            instructions: None,
            examples: Vec::new(),
            multi_label: false,
            threshold: None,
            min_confidence: None,
            scoring: None,
            prompt: None,
        }
    }
}

/// The result for one input.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Classification {
    /// `classification`.
    pub object: String,
    /// Position of the input.
    pub index: u32,
    /// The best label, or null when out of scope (below `min_confidence`).
    pub label: Option<String>,
    /// Multi-label: every label at or above the threshold, best first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Probability of the best label.
    pub confidence: f32,
    /// Every label's probability (normalised over the labels), in request order.
    pub probabilities: Map<String, Value>,
    /// Whether every label was scored exactly (see `exact` in the request).
    pub exact: bool,
}

impl Classification {
    /// The result for input `index` from each label's probability (`names[k]` has
    /// `probs[k]`): the best label, or none below `min_confidence`; with
    /// `multi_label`, every label at or above both `threshold` and `min_confidence`,
    /// best first.
    pub fn from_probabilities(
        index: usize,
        names: &[String],
        probs: &[f32],
        multi_label: bool,
        threshold: f32,
        min_confidence: f32,
        exact: bool,
    ) -> Self {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let best = order.first().copied().unwrap_or(0);
        let confidence = probs.get(best).copied().unwrap_or(0.0);
        let probabilities = names
            .iter()
            .zip(probs)
            .map(|(n, p)| (n.clone(), Value::from(f64::from(*p))))
            .collect();
        Classification {
            object: "classification".into(),
            index: index as u32,
            label: (confidence >= min_confidence)
                .then(|| names.get(best).cloned())
                .flatten(),
            labels: multi_label.then(|| {
                order
                    .iter()
                    .filter(|&&k| probs[k] >= threshold && probs[k] >= min_confidence)
                    .map(|&k| names[k].clone())
                    .collect()
            }),
            confidence,
            probabilities,
            exact,
        }
    }
}

/// Token counts of a task request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct TaskUsage {
    /// Prompt tokens computed.
    pub prompt_tokens: u32,
    /// Prompt tokens served from the cache.
    pub cached_tokens: u32,
    /// Label tokens scored (classification).
    #[serde(default)]
    pub label_tokens: u32,
    /// Tokens generated (extraction, summarisation).
    #[serde(default)]
    pub completion_tokens: u32,
    /// Sum of the above.
    pub total_tokens: u32,
    /// Engine time attributed to the request, in milliseconds (local models; what
    /// `per_second` prices charge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_ms: Option<f64>,
}

/// `POST /v1/classify` response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ClassifyResponse {
    /// `list`.
    pub object: String,
    /// Model name.
    pub model: String,
    /// One result per input.
    pub data: Vec<Classification>,
    /// Tokens.
    pub usage: TaskUsage,
}

/// `POST /v1/extract`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ExtractRequest {
    /// Model name.
    #[schemars(length(min = 1, max = MAX_MODEL_NAME))]
    pub model: String,
    /// The text to extract from.
    #[schemars(length(min = 1))]
    pub input: String,
    /// JSON Schema of the result (enforced while generating, validated after).
    pub schema: Value,
    /// Instructions (a default is used otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Report where each string or number value appears in the input.
    #[serde(default)]
    pub spans: bool,
    /// Most tokens to generate (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
    /// A prompt template instead of the instructions (`{input}`, `{schema}`; see
    /// [`crate::prompt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// Where a value appears in the input (character offsets, end exclusive).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Span {
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// The text there.
    pub text: String,
}

/// `POST /v1/extract` response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ExtractResponse {
    /// `extraction`.
    pub object: String,
    /// Model name.
    pub model: String,
    /// The extracted object, valid against the schema.
    pub data: Value,
    /// With `spans`: JSON Pointer of each string/number value → its span, or null
    /// when the value does not appear verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans: Option<Map<String, Value>>,
    /// Tokens.
    pub usage: TaskUsage,
    /// Timings of the generation (local models; Bantam's extension, as llama.cpp's
    /// server reports `timings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<crate::generate::Timings>,
}

/// `POST /v1/summarize`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct SummarizeRequest {
    /// Model name.
    #[schemars(length(min = 1, max = MAX_MODEL_NAME))]
    pub model: String,
    /// The text; longer than the context is fine (summarised in parts).
    #[schemars(length(min = 1))]
    pub input: String,
    /// `paragraph` (default), `bullets` or `sentences`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["paragraph", "bullets", "sentences", null]))]
    pub style: Option<String>,
    /// Bullets or sentences wanted (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_SUMMARY_LENGTH))]
    pub length: Option<u32>,
    /// Instructions (a default is used otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Most tokens of the summary (default 256, at most 2048; the model's context
    /// must hold them and some input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_SUMMARY_TOKENS))]
    pub max_tokens: Option<u32>,
    /// A prompt template for the summary instead of the instructions and style
    /// (`{input}`; see [`crate::prompt`]). Parts of a long input are still summarised
    /// with Bantam's own prompt first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// `POST /v1/summarize` response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct SummarizeResponse {
    /// `summary`.
    pub object: String,
    /// Model name.
    pub model: String,
    /// The summary.
    pub summary: String,
    /// Parts the input was cut into (1 when it fit).
    pub chunks: u32,
    /// Levels of summaries of summaries (0 when the input fit).
    pub levels: u32,
    /// Tokens over all the generations.
    pub usage: TaskUsage,
    /// Timings of the final summary's generation (local models; Bantam's
    /// extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<crate::generate::Timings>,
}

// --- Prompts ---------------------------------------------------------------
//
// The task prompts live here so that the local tasks (`bantam-tasks`), routes that
// send a task to an OpenAI-compatible upstream (`bantam-router`) and `bantam eval`
// all ask the same question.

/// Default classification instructions.
pub const CLASSIFY_INSTRUCTIONS: &str =
    "Classify the text into exactly one of the labels below. Answer with the label only.";

/// Default extraction instructions.
pub const EXTRACT_INSTRUCTIONS: &str = "Extract the information in the user's text as JSON that matches this JSON Schema. Use only facts stated in the text; where the schema allows null and the text says nothing, use null.";

/// Default summarisation instructions (the style's sentence is appended).
pub const SUMMARIZE_INSTRUCTIONS: &str =
    "Summarize the user's text faithfully, keeping names, numbers and decisions.";

impl ClassifyRequest {
    /// The system message: the instructions and the label list (with descriptions).
    pub fn system_prompt(&self) -> String {
        let mut s = self
            .instructions
            .clone()
            .unwrap_or_else(|| CLASSIFY_INSTRUCTIONS.to_string());
        s.push_str("\n\nLabels:\n");
        for l in &self.labels {
            match l.description() {
                Some(d) => s.push_str(&format!("- {}: {d}\n", l.name())),
                None => s.push_str(&format!("- {}\n", l.name())),
            }
        }
        s
    }
}

impl ExtractRequest {
    /// The system message: the instructions and the schema.
    pub fn system_prompt(&self) -> String {
        format!(
            "{}\n\nJSON Schema:\n{}",
            self.instructions.as_deref().unwrap_or(EXTRACT_INSTRUCTIONS),
            serde_json::to_string(&self.schema).unwrap_or_default()
        )
    }
}

impl SummarizeRequest {
    /// `style` or its default, `paragraph`.
    pub fn style(&self) -> &str {
        self.style.as_deref().unwrap_or("paragraph")
    }

    /// Bullets or sentences wanted (`length`, default 3).
    pub fn length(&self) -> u32 {
        self.length.unwrap_or(3)
    }

    /// The system message of the final summary, in the requested style.
    pub fn system_prompt(&self) -> String {
        let base = self
            .instructions
            .clone()
            .unwrap_or_else(|| SUMMARIZE_INSTRUCTIONS.into());
        let n = self.length();
        match self.style() {
            "bullets" => {
                format!("{base} Answer with at most {n} bullet points, each starting with \"- \".")
            }
            "sentences" => format!("{base} Answer in at most {n} sentences."),
            _ => format!("{base} Answer with one short paragraph."),
        }
    }
}

#[cfg(test)]
mod prompt_tests {
    use super::*;

    #[test]
    fn classify_prompt_lists_labels_with_descriptions() {
        let mut r = ClassifyRequest::new("m", vec!["a".into()]);
        r.labels.push(LabelSpec::Described {
            label: "b".into(),
            description: Some("bee".into()),
        });
        let s = r.system_prompt();
        assert!(s.starts_with(CLASSIFY_INSTRUCTIONS), "{s}");
        assert!(s.contains("- a\n- b: bee\n"), "{s}");
    }

    #[test]
    fn summarize_prompt_follows_the_style() {
        let mut r = SummarizeRequest {
            model: "m".into(),
            input: "x".into(),
            style: Some("bullets".into()),
            length: Some(2),
            instructions: None,
            max_tokens: None,
            prompt: None,
        };
        assert!(r
            .system_prompt()
            .ends_with("at most 2 bullet points, each starting with \"- \"."));
        r.style = None;
        assert!(r.system_prompt().ends_with("one short paragraph."));
    }
}
