//! Model names and manifests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// `name:tag`, validated. A name without a tag means `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName {
    /// Name (`smollm2`).
    pub name: String,
    /// Tag (`135m`).
    pub tag: String,
}

impl ModelName {
    /// Parse and validate. Path separators and `..` are rejected so a name can never
    /// escape the manifests directory.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let (name, tag) = match s.split_once(':') {
            Some((n, t)) => (n, t),
            None => (s, "latest"),
        };
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 128
                && p != "."
                && p != ".."
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
        if !ok(name) || !ok(tag) {
            return Err(StoreError::BadName(s.to_string()));
        }
        Ok(Self {
            name: name.to_ascii_lowercase(),
            tag: tag.to_ascii_lowercase(),
        })
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// Where a model came from and what it was made of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The upstream model this file derives from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// Quantization applied (from the GGUF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// LoRA adapter merged or attached, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Hash of the training data of an adapter or fine-tune, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_data_hash: Option<String>,
    /// Digest of the model this one was derived from in this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_digest: Option<String>,
}

/// What a model name points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub schema: u32,
    /// `name:tag`.
    pub name: String,
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// File format (`gguf`).
    pub format: String,
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// Parameter count (sum of tensor elements).
    pub parameters: u64,
    /// Quantization (`Q4_1`, `Q4_K_M`, …).
    pub quantization: Option<String>,
    /// Training context length.
    pub context_length: Option<u64>,
    /// Licence (`general.license` or the catalog's).
    pub license: Option<String>,
    /// Where it came from.
    pub source: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// Lineage.
    #[serde(default)]
    pub lineage: Lineage,
    /// Whether the GGUF carries its own chat template.
    #[serde(default)]
    pub has_chat_template: bool,
    /// A chat template stored with the model (wins over the GGUF's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Per-model engine options (`flash_attention`, `ctx_size`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, serde_json::Value>,
    /// Digests this name pointed at before (newest last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<String>,
    /// `adapter` for a LoRA adapter (`general.type = adapter` in the GGUF),
    /// which is served on top of its base (`lineage.base_model`); absent for
    /// ordinary models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// How a tuned model was trained (`bantam tune lora`): hyperparameters,
    /// data set, the loss curve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    /// Results of `bantam eval` runs on this model (newest last, one per dataset,
    /// task and prompt), kept for models this store made (tuned, quantized,
    /// merged): what the tuning bought, next to how it was trained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evals: Vec<serde_json::Value>,
}

impl Manifest {
    /// Is this a LoRA adapter (served on top of its base model)?
    pub fn is_adapter(&self) -> bool {
        self.kind.as_deref() == Some("adapter")
    }

    /// Was this model made by this store (`tune`, `quantize`, `merge`) rather
    /// than pulled or imported as it is?
    pub fn is_derived(&self) -> bool {
        self.lineage.training_data_hash.is_some() || self.lineage.parent_digest.is_some()
    }

    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }

    /// First 12 hex digits, as `bantam list` shows.
    pub fn short_id(&self) -> &str {
        let h = self.hex();
        &h[..h.len().min(12)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            ModelName::parse("SmolLM2:135M").unwrap().to_string(),
            "smollm2:135m"
        );
        assert_eq!(ModelName::parse("x").unwrap().tag, "latest");
        for bad in ["", "a/b", "../x", "a:..", "a:b:c", ".hidden", "a b"] {
            assert!(ModelName::parse(bad).is_err(), "{bad}");
        }
    }
}
