//! `POST /v1/embeddings`, validated.

use bantam_types::openai::{EmbeddingInput, EmbeddingsRequest};

use super::Invalid;

/// Most inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = bantam_types::limits::MAX_EMBED_INPUTS;

/// One input to embed.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    /// Text, tokenised by the model.
    Text(String),
    /// Token ids of the model's vocabulary, as given.
    Tokens(Vec<i32>),
}

/// An embeddings request that passed validation.
#[derive(Debug, Clone)]
pub struct EmbedRequest {
    wire: EmbeddingsRequest,
    inputs: Vec<EmbedInput>,
    base64: bool,
}

impl EmbedRequest {
    /// Validate an embeddings request.
    pub fn new(wire: EmbeddingsRequest) -> Result<Self, Invalid> {
        super::check_model(&wire.model)?;
        let tokens = |t: &Vec<i64>, i: usize| -> Result<EmbedInput, Invalid> {
            if t.is_empty() {
                return Err(Invalid::param(
                    "input",
                    format!("input {i} is an empty token list"),
                ));
            }
            t.iter()
                .map(|&id| {
                    i32::try_from(id).ok().filter(|id| *id >= 0).ok_or_else(|| {
                        Invalid::param("input", format!("input {i}: {id} is not a token id"))
                    })
                })
                .collect::<Result<Vec<i32>, _>>()
                .map(EmbedInput::Tokens)
        };
        let inputs: Vec<EmbedInput> = match &wire.input {
            EmbeddingInput::Text(s) => vec![EmbedInput::Text(s.clone())],
            EmbeddingInput::Texts(v) => v.iter().cloned().map(EmbedInput::Text).collect(),
            EmbeddingInput::Tokens(t) => vec![tokens(t, 0)?],
            EmbeddingInput::TokenLists(ls) => ls
                .iter()
                .enumerate()
                .map(|(i, t)| tokens(t, i))
                .collect::<Result<_, _>>()?,
        };
        if inputs.is_empty() {
            return Err(Invalid::param("input", "input must not be empty"));
        }
        if inputs.len() > MAX_INPUTS {
            return Err(Invalid::param(
                "input",
                format!(
                    "at most {MAX_INPUTS} inputs per request, got {}",
                    inputs.len()
                ),
            ));
        }
        if let Some(i) = inputs
            .iter()
            .position(|x| matches!(x, EmbedInput::Text(s) if s.trim().is_empty()))
        {
            return Err(Invalid::param(
                "input",
                format!("input {i} is empty; every input needs some text"),
            ));
        }
        let base64 = match wire.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(o) => {
                return Err(Invalid::param(
                    "encoding_format",
                    format!("encoding_format must be \"float\" or \"base64\", got {o:?}"),
                ))
            }
        };
        if wire.dimensions == Some(0) {
            return Err(Invalid::param(
                "dimensions",
                "dimensions must be at least 1",
            ));
        }
        Ok(Self {
            wire,
            inputs,
            base64,
        })
    }

    /// The request as the client sent it (model possibly replaced).
    pub fn wire(&self) -> &EmbeddingsRequest {
        &self.wire
    }

    /// Model name.
    pub fn model(&self) -> &str {
        &self.wire.model
    }

    pub(crate) fn set_model(&mut self, model: &str) {
        self.wire.model = model.to_string();
    }

    /// The inputs, in order.
    pub fn inputs(&self) -> &[EmbedInput] {
        &self.inputs
    }

    /// The text inputs (for routing rules).
    pub fn texts(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .filter_map(|i| match i {
                EmbedInput::Text(t) => Some(t.as_str()),
                EmbedInput::Tokens(_) => None,
            })
            .collect()
    }

    /// Vectors as base64 of little-endian f32 (else lists of floats).
    pub fn base64(&self) -> bool {
        self.base64
    }

    /// Dimensions asked for, if any (the backend checks them against its model).
    pub fn dimensions(&self) -> Option<usize> {
        self.wire.dimensions
    }

    /// Cut inputs longer than the model's window (else they are rejected).
    pub fn truncate(&self) -> bool {
        self.wire.truncate.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(input: serde_json::Value) -> Result<EmbedRequest, Invalid> {
        let wire = serde_json::from_value(json!({"model": "m", "input": input}))
            .map_err(|e| Invalid::new(None, e.to_string()))?;
        EmbedRequest::new(wire)
    }

    #[test]
    fn inputs_of_every_openai_shape() {
        assert_eq!(
            req(json!("a")).unwrap().inputs(),
            [EmbedInput::Text("a".into())]
        );
        assert_eq!(req(json!(["a", "b"])).unwrap().inputs().len(), 2);
        assert_eq!(
            req(json!([1, 2, 3])).unwrap().inputs(),
            [EmbedInput::Tokens(vec![1, 2, 3])]
        );
        assert_eq!(req(json!([[1], [2, 3]])).unwrap().inputs().len(), 2);
        for bad in [
            json!([]),
            json!(["a", " "]),
            json!([[1], []]),
            json!([-1]),
            json!({"a": 1}),
            json!([5000000000i64]),
        ] {
            let e = req(bad.clone());
            assert!(e.is_err(), "{bad} accepted");
        }
    }
}
