//! Conversations as token ids, the way a served model sees them, with the
//! assistant's tokens marked: the input to fine-tuning (`bantam tune lora`).

use std::path::Path;

use bantam_llama::{Model, ModelParams};

use crate::engine::resolve_template;
use crate::template::{ChatTemplate, TemplateMessage};
use crate::EngineError;

/// A model's tokenizer and chat template, without its weights.
pub struct ChatTokenizer {
    model: Model,
    template: Option<ChatTemplate>,
}

impl ChatTokenizer {
    /// Loads the vocabulary of the GGUF at `path` (no weights) and its chat
    /// template (`stored_template` wins, as when serving).
    pub fn load(path: &Path, stored_template: Option<&str>) -> Result<Self, EngineError> {
        let model = Model::load(
            bantam_llama::runtime(),
            path,
            &ModelParams {
                vocab_only: true,
                ..ModelParams::default()
            },
        )
        .map_err(|e| EngineError::Load {
            model: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let template = resolve_template(&model, stored_template)?;
        Ok(ChatTokenizer { model, template })
    }

    /// Tokens of a rendered prompt, as the engine tokenizes it (special tokens
    /// parsed, BOS added when the model adds one).
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut toks = self.model.tokenize(text, false, true);
        if add_bos && self.model.adds_bos() {
            if let Some(bos) = self.model.bos() {
                if toks.first() != Some(&bos) {
                    toks.insert(0, bos);
                }
            }
        }
        toks.into_iter().map(|t| t as u32).collect()
    }

    /// Text without a chat template (completion-style data), ending with EOS:
    /// returns the tokens of `prompt + answer` and a mask over the answer's.
    pub fn tokenize_plain(&self, prompt: &str, answer: &str) -> (Vec<u32>, Vec<bool>) {
        let p = self.tokenize(prompt, true);
        let mut all = self.tokenize(&format!("{prompt}{answer}"), true);
        if let Some(eos) = self.model.eos() {
            all.push(eos as u32);
        }
        let shared = p.iter().zip(&all).take_while(|(a, b)| a == b).count();
        let mask = (0..all.len()).map(|i| i >= shared).collect();
        (all, mask)
    }

    /// A conversation rendered with the chat template; the mask marks every
    /// assistant turn's tokens (its text and the end-of-turn marker).
    ///
    /// Each assistant turn's span is found by rendering the conversation up to
    /// that turn with the generation prompt (where the turn starts) and with the
    /// turn included (where it ends); a template whose renders are not prefixes
    /// of each other is refused rather than guessed at.
    pub fn tokenize_chat(
        &self,
        messages: &[TemplateMessage],
    ) -> Result<(Vec<u32>, Vec<bool>), EngineError> {
        let t = self.template.as_ref().ok_or_else(|| {
            EngineError::Template(
                "the model has no chat template: give `prompt`/`completion` data instead of `messages`"
                    .into(),
            )
        })?;
        let full = self.tokenize(&t.render(messages, false, None)?, true);
        let mut mask = vec![false; full.len()];
        for (k, m) in messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let start = self.tokenize(&t.render(&messages[..k], true, None)?, true);
            let end = self.tokenize(&t.render(&messages[..=k], false, None)?, true);
            if !full.starts_with(&end) || !end.starts_with(&start) {
                return Err(EngineError::Template(
                    "the chat template does not render a conversation's turns as prefixes of it, \
                     so the assistant's tokens cannot be found"
                        .into(),
                ));
            }
            for m in &mut mask[start.len()..end.len()] {
                *m = true;
            }
        }
        Ok((full, mask))
    }
}
