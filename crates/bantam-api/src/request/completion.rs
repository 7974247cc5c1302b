//! `POST /v1/completions` (legacy text completions), validated.

use bantam_types::generate::{GenerateRequest, Prompt};
use bantam_types::openai::{CompletionRequest as Wire, PromptSpec, StreamOptions};

use super::sampling::{self, max_tokens};
use super::Invalid;

/// Most prompts in one request.
pub const MAX_PROMPTS: usize = bantam_types::limits::MAX_PROMPTS;

/// A text-completion request that passed validation.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    wire: Wire,
    prompts: Vec<Prompt>,
    gen: GenerateRequest,
    n: u32,
    stream: bool,
    include_usage: bool,
    echo: bool,
}

impl CompletionRequest {
    /// Validate a completion request.
    pub fn new(wire: Wire) -> Result<Self, Invalid> {
        super::check_model(&wire.model)?;
        let text = |t: &String| Prompt::Text {
            text: t.clone(),
            special: false,
            add_bos: true,
        };
        let tokens = |t: &Vec<i32>| -> Result<Prompt, Invalid> {
            if let Some(bad) = t.iter().find(|&&id| id < 0) {
                return Err(Invalid::param(
                    "prompt",
                    format!("token id {bad} is negative"),
                ));
            }
            Ok(Prompt::Tokens(t.clone()))
        };
        let prompts: Vec<Prompt> = match &wire.prompt {
            PromptSpec::Text(t) => vec![text(t)],
            PromptSpec::Texts(ts) => ts.iter().map(text).collect(),
            PromptSpec::Tokens(t) => vec![tokens(t)?],
            PromptSpec::TokenLists(ls) => ls.iter().map(tokens).collect::<Result<_, _>>()?,
        };
        if prompts.is_empty() {
            return Err(Invalid::param("prompt", "prompt must not be an empty list"));
        }
        if prompts.len() > MAX_PROMPTS {
            return Err(Invalid::param(
                "prompt",
                format!("at most {MAX_PROMPTS} prompts per request"),
            ));
        }
        if wire.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(Invalid::param(
                "suffix",
                "suffix (fill-in-the-middle) is not supported",
            ));
        }
        let n = sampling::choices(wire.sampling.n)?;
        if let Some(b) = wire.best_of {
            if b != n {
                return Err(Invalid::param(
                    "best_of",
                    format!("best_of must equal n ({n}); Bantam does not rank extra candidates"),
                ));
            }
        }
        if prompts.len() * n as usize > MAX_PROMPTS {
            return Err(Invalid::param(
                "n",
                format!("prompts × n must be at most {MAX_PROMPTS}"),
            ));
        }
        if wire
            .logprobs
            .is_some_and(|n| n > bantam_types::limits::MAX_TOP_LOGPROBS)
        {
            return Err(Invalid::param(
                "logprobs",
                "logprobs must be between 0 and 20",
            ));
        }
        let (sampling, stop) = sampling::sampling(&wire.sampling)?;
        let stream = wire.stream.unwrap_or(false);
        if wire.stream_options.is_some() && !stream {
            return Err(Invalid::param(
                "stream_options",
                "stream_options is only allowed when stream is true",
            ));
        }
        let gen = GenerateRequest {
            prompt: Prompt::Tokens(Vec::new()),
            // OpenAI's default for completions.
            max_tokens: Some(max_tokens("max_tokens", wire.max_tokens)?.unwrap_or(16)),
            sampling,
            stop,
            logprobs: wire.logprobs,
            ignore_eos: wire.sampling.ignore_eos.unwrap_or(false),
            constraint: None,
        };
        Ok(Self {
            include_usage: wire
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            echo: wire.echo.unwrap_or(false),
            wire,
            prompts,
            gen,
            n,
            stream,
        })
    }

    /// The request as the client sent it (model possibly replaced).
    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    /// Model name.
    pub fn model(&self) -> &str {
        &self.wire.model
    }

    pub(crate) fn set_model(&mut self, model: &str) {
        self.wire.model = model.to_string();
    }

    /// The prompts (one or more; each gets `n` choices).
    pub fn prompts(&self) -> &[Prompt] {
        &self.prompts
    }

    /// The prompts' texts (token prompts have none).
    pub fn prompt_texts(&self) -> Vec<&str> {
        self.prompts
            .iter()
            .filter_map(|p| match p {
                Prompt::Text { text, .. } => Some(text.as_str()),
                Prompt::Tokens(_) => None,
            })
            .collect()
    }

    /// Choices per prompt.
    pub fn n(&self) -> u32 {
        self.n
    }

    /// Streamed.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// The usage chunk ends the stream.
    pub fn include_usage(&self) -> bool {
        self.include_usage
    }

    /// Prepend the prompt to the output.
    pub fn echo(&self) -> bool {
        self.echo
    }

    /// Log-probabilities were asked for.
    pub fn logprobs(&self) -> bool {
        self.gen.logprobs.is_some()
    }

    /// The engine request for prompt `p`, choice `index` (seeded `seed + index`).
    pub fn generate(&self, p: usize, index: u32) -> GenerateRequest {
        let mut g = self.gen.clone();
        g.prompt = self.prompts[p].clone();
        g.sampling.seed = g.sampling.seed.wrapping_add(u64::from(index));
        g
    }

    pub(crate) fn force_usage(&mut self) {
        if self.stream {
            self.include_usage = true;
            let o = self
                .wire
                .stream_options
                .get_or_insert_with(StreamOptions::default);
            o.include_usage = true;
        }
    }

    pub(crate) fn for_cascade(&self) -> (Self, bool) {
        let mut r = self.clone();
        r.stream = false;
        r.include_usage = false;
        r.wire.stream = Some(false);
        r.wire.stream_options = None;
        let asked = r.gen.logprobs.is_some();
        if !asked {
            r.wire.logprobs = Some(0);
            r.gen.logprobs = Some(0);
        }
        (r, asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: serde_json::Value) -> Result<CompletionRequest, Invalid> {
        CompletionRequest::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn prompts_and_choices() {
        let r = req(json!({"model": "m", "prompt": ["a", "b"], "n": 2, "seed": 1})).unwrap();
        assert_eq!((r.prompts().len(), r.n()), (2, 2));
        assert_eq!(r.generate(1, 1).sampling.seed, 2);
        assert_eq!(r.generate(0, 0).max_tokens, Some(16));
        for (bad, param) in [
            (json!({"model": "m", "prompt": []}), "prompt"),
            (json!({"model": "m", "prompt": [-1]}), "prompt"),
            (
                json!({"model": "m", "prompt": "a", "suffix": "b"}),
                "suffix",
            ),
            (
                json!({"model": "m", "prompt": "a", "best_of": 3}),
                "best_of",
            ),
            (
                json!({"model": "m", "prompt": "a", "logprobs": 30}),
                "logprobs",
            ),
            (json!({"model": "m", "prompt": "a", "n": 17}), "n"),
        ] {
            assert_eq!(
                req(bad.clone()).unwrap_err().param.as_deref(),
                Some(param),
                "{bad}"
            );
        }
    }
}
