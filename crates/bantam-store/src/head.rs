//! Classifier heads (`bantam tune classify`) as GGUF files, so that the store
//! treats them like any model: checksummed blobs, manifests with lineage,
//! `list`/`show`/`rm`/`export`/`import`.
//!
//! `general.architecture` is [`ARCHITECTURE`]; the metadata key `bantam.classifier`
//! holds a JSON object (labels, the featuriser and its model's digest, the
//! calibrated temperature, the training report); the tensors are `cls.weight`
//! (`classes × dim`, F32, class-major: ggml dims `[dim, classes]`) and `cls.bias`
//! (`classes`, F32). `p = softmax((W·x + b) / T)` on the featuriser's vector `x`.
//!
//! An MLP head (format 2) adds one hidden ReLU layer, `cls.hidden.weight`
//! (`width × dim`, ggml dims `[dim, width]`) and `cls.hidden.bias` (`width`):
//! `p = softmax((W·relu(H·x + c) + b) / T)`, with `cls.weight` then `classes ×
//! width`. A Bantam that reads only format 1 refuses it with a clear message.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::gguf::GgufInfo;
use crate::gguf_write::{GgufWriteError, GgufWriter, Tensor, Value, GGML_TYPE_F32};

/// `general.architecture` of a classifier head.
pub const ARCHITECTURE: &str = "bantam-classifier";

const META_KEY: &str = "bantam.classifier";

/// What a head says about itself (the `bantam.classifier` metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadMeta {
    /// Format version (1).
    pub format: u32,
    /// The labels, in class order.
    pub labels: Vec<String>,
    /// The featuriser the weights belong to (`static:all-minilm:l6-v2`,
    /// `all-minilm:l6-v2`, `hashed-ngrams`).
    pub features: String,
    /// Digest of the featuriser's store model (`sha256:…`; empty for built-in
    /// features): a different model under the same name is refused.
    pub features_digest: String,
    /// Calibrated softmax temperature.
    pub temperature: f32,
    /// How training went (free-form: validation accuracy, epochs, …).
    #[serde(default)]
    pub training: serde_json::Value,
}

/// The hidden ReLU layer of an MLP head.
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenLayer {
    /// Number of units.
    pub width: usize,
    /// Weights, unit-major (`width × dim`).
    pub weights: Vec<f32>,
    /// One bias per unit.
    pub bias: Vec<f32>,
}

/// A classifier head: metadata and weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierHead {
    /// Metadata.
    pub meta: HeadMeta,
    /// Feature dimension.
    pub dim: usize,
    /// The hidden layer of an MLP head (`None`: a linear head).
    pub hidden: Option<HiddenLayer>,
    /// Output weights, class-major (`labels.len() ×` the hidden width, or `dim`
    /// for a linear head).
    pub weights: Vec<f32>,
    /// One bias per class.
    pub bias: Vec<f32>,
}

/// Why a head could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// I/O.
    #[error("classifier head: {0}")]
    Io(#[from] std::io::Error),
    /// Not a head, or a damaged one.
    #[error("not a usable classifier head: {0}")]
    Malformed(String),
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl ClassifierHead {
    /// The format version this head is written as: 1 linear, 2 with a hidden layer.
    pub fn format(&self) -> u32 {
        if self.hidden.is_some() {
            2
        } else {
            1
        }
    }

    /// What the output layer reads: the hidden width, or the feature dimension.
    fn out_inputs(&self) -> usize {
        self.hidden.as_ref().map_or(self.dim, |h| h.width)
    }

    /// Check the shapes and values.
    pub fn check(&self) -> Result<(), HeadError> {
        let k = self.meta.labels.len();
        let bad = |m: String| Err(HeadError::Malformed(m));
        if k < 2 || self.dim == 0 {
            return bad(format!("{k} labels, dimension {}", self.dim));
        }
        if let Some(h) = &self.hidden {
            if h.width == 0 || h.weights.len() != h.width * self.dim || h.bias.len() != h.width {
                return bad(format!(
                    "a hidden layer of {} units with {} weights and {} biases for dimension {}",
                    h.width,
                    h.weights.len(),
                    h.bias.len(),
                    self.dim
                ));
            }
            if h.weights.iter().chain(&h.bias).any(|v| !v.is_finite()) {
                return bad("hidden weights that are not finite numbers".into());
            }
        }
        let inputs = self.out_inputs();
        if self.weights.len() != k * inputs || self.bias.len() != k {
            return bad(format!(
                "{} weights and {} biases for {k} labels of {inputs} inputs",
                self.weights.len(),
                self.bias.len(),
            ));
        }
        if !(self.meta.temperature.is_finite() && self.meta.temperature > 0.0) {
            return bad(format!("temperature {}", self.meta.temperature));
        }
        if self
            .weights
            .iter()
            .chain(&self.bias)
            .any(|v| !v.is_finite())
        {
            return bad("weights that are not finite numbers".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.meta.labels.iter().find(|l| !seen.insert(*l)) {
            return bad(format!("label {dup:?} appears twice"));
        }
        Ok(())
    }

    /// Write as GGUF to `w`.
    pub fn write_to(&self, name: &str, w: &mut dyn std::io::Write) -> Result<(), HeadError> {
        self.check()?;
        let mut meta = self.meta.clone();
        meta.format = self.format();
        let meta = serde_json::to_string(&meta).map_err(|e| HeadError::Malformed(e.to_string()))?;
        let weights = f32_bytes(&self.weights);
        let bias = f32_bytes(&self.bias);
        let hidden = self
            .hidden
            .as_ref()
            .map(|h| (h.width as u64, f32_bytes(&h.weights), f32_bytes(&h.bias)));
        let k = self.meta.labels.len() as u64;
        let mut g = GgufWriter::new();
        g.kv("general.architecture", Value::Str(ARCHITECTURE.into()))
            .kv("general.type", Value::Str("classifier".into()))
            .kv("general.name", Value::Str(name.into()))
            .kv(META_KEY, Value::Str(meta))
            .tensor(Tensor {
                name: "cls.weight".into(),
                dims: vec![self.out_inputs() as u64, k],
                ggml_type: GGML_TYPE_F32,
                data: &weights,
            })
            .tensor(Tensor {
                name: "cls.bias".into(),
                dims: vec![k],
                ggml_type: GGML_TYPE_F32,
                data: &bias,
            });
        if let Some((width, hw, hb)) = &hidden {
            g.tensor(Tensor {
                name: "cls.hidden.weight".into(),
                dims: vec![self.dim as u64, *width],
                ggml_type: GGML_TYPE_F32,
                data: hw,
            })
            .tensor(Tensor {
                name: "cls.hidden.bias".into(),
                dims: vec![*width],
                ggml_type: GGML_TYPE_F32,
                data: hb,
            });
        }
        g.write_to(w).map_err(|e| match e {
            GgufWriteError::Io(io) => HeadError::Io(io),
            other => HeadError::Malformed(other.to_string()),
        })?;
        Ok(())
    }

    /// Read a head from a GGUF file.
    pub fn read(path: &Path) -> Result<Self, HeadError> {
        let info = GgufInfo::read(path).map_err(|e| HeadError::Malformed(e.to_string()))?;
        if info.architecture() != Some(ARCHITECTURE) {
            return Err(HeadError::Malformed(format!(
                "architecture {:?}",
                info.architecture().unwrap_or("none")
            )));
        }
        let meta: HeadMeta = info
            .get_str(META_KEY)
            .ok_or_else(|| HeadError::Malformed(format!("no {META_KEY} metadata")))
            .and_then(|s| {
                serde_json::from_str(s).map_err(|e| HeadError::Malformed(e.to_string()))
            })?;
        if !(1..=2).contains(&meta.format) {
            return Err(HeadError::Malformed(format!(
                "format {} (this Bantam reads 1 and 2; train it again or update Bantam)",
                meta.format
            )));
        }
        let mut f = std::fs::File::open(path)?;
        let mut tensor = |name: &str| -> Result<(Vec<u64>, Vec<f32>), HeadError> {
            let t = info
                .tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| HeadError::Malformed(format!("no tensor {name}")))?;
            if t.ggml_type != GGML_TYPE_F32 {
                return Err(HeadError::Malformed(format!("{name} is not F32")));
            }
            let len = t.byte_len().unwrap_or(0);
            if len > 1 << 30 {
                return Err(HeadError::Malformed(format!("{name} is {len} bytes")));
            }
            f.seek(SeekFrom::Start(info.data_offset + t.offset))?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf)?;
            let v = buf
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok((t.dims.clone(), v))
        };
        let (wdims, weights) = tensor("cls.weight")?;
        let (_, bias) = tensor("cls.bias")?;
        let (dim, hidden) = if meta.format == 2 {
            let (hdims, hw) = tensor("cls.hidden.weight")?;
            let (_, hb) = tensor("cls.hidden.bias")?;
            let layer = HiddenLayer {
                width: hdims.get(1).copied().unwrap_or(0) as usize,
                weights: hw,
                bias: hb,
            };
            (hdims.first().copied().unwrap_or(0) as usize, Some(layer))
        } else {
            (wdims.first().copied().unwrap_or(0) as usize, None)
        };
        let head = ClassifierHead {
            dim,
            hidden,
            meta,
            weights,
            bias,
        };
        head.check()?;
        Ok(head)
    }

    /// Calibrated probabilities of the labels for the feature vector `x`.
    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        let t = self.meta.temperature;
        let dot = |w: &[f32], v: &[f32]| w.iter().zip(v).map(|(a, c)| a * c).sum::<f32>();
        let hidden: Option<Vec<f32>> = self.hidden.as_ref().map(|h| {
            h.bias
                .iter()
                .zip(h.weights.chunks_exact(self.dim))
                .map(|(b, w)| (b + dot(w, x)).max(0.0))
                .collect()
        });
        let x = hidden.as_deref().unwrap_or(x);
        let mut z: Vec<f32> = self
            .bias
            .iter()
            .zip(self.weights.chunks_exact(self.out_inputs()))
            .map(|(b, w)| (b + dot(w, x)) / t)
            .collect();
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0;
        for v in z.iter_mut() {
            *v = (*v - m).exp();
            s += *v;
        }
        z.iter_mut().for_each(|v| *v /= s);
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> ClassifierHead {
        ClassifierHead {
            meta: HeadMeta {
                format: 1,
                labels: vec!["a".into(), "b".into(), "c".into()],
                features: "hashed-ngrams".into(),
                features_digest: String::new(),
                temperature: 2.0,
                training: serde_json::json!({"val_accuracy": 0.9}),
            },
            dim: 2,
            hidden: None,
            weights: vec![1.0, 0.0, 0.0, 1.0, -1.0, -1.0],
            bias: vec![0.0, 0.0, 0.5],
        }
    }

    #[test]
    fn round_trips_through_gguf_and_scores() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.gguf");
        let h = head();
        let mut f = std::fs::File::create(&p).unwrap();
        h.write_to("h", &mut f).unwrap();
        drop(f);
        let back = ClassifierHead::read(&p).unwrap();
        assert_eq!(back, h);
        let info = GgufInfo::read(&p).unwrap();
        assert_eq!(info.architecture(), Some(ARCHITECTURE));
        let p = back.probabilities(&[4.0, 0.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // Logits (4, 0, -3.5) at T = 2.
        let e = [2f32.exp(), 1.0, (-1.75f32).exp()];
        assert!((p[0] - e[0] / e.iter().sum::<f32>()).abs() < 1e-5);
    }

    #[test]
    fn an_mlp_head_round_trips_and_applies_its_hidden_layer() {
        let mut h = head();
        // Two units: relu(x0 - x1) and relu(x1 - x0); outputs read the units.
        h.hidden = Some(HiddenLayer {
            width: 2,
            weights: vec![1.0, -1.0, -1.0, 1.0],
            bias: vec![0.0, 0.0],
        });
        h.weights = vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mlp.gguf");
        let mut f = std::fs::File::create(&p).unwrap();
        h.write_to("mlp", &mut f).unwrap();
        drop(f);
        let back = ClassifierHead::read(&p).unwrap();
        assert_eq!(back.format(), 2);
        assert_eq!(back.meta.format, 2);
        assert_eq!(back.hidden, h.hidden);
        assert_eq!(back.weights, h.weights);
        // x = (3, 1): units (2, 0) → logits (2, 0, 0.5) / T=2.
        let p = back.probabilities(&[3.0, 1.0]);
        let e = [1f32.exp(), 1.0, 0.25f32.exp()];
        let s: f32 = e.iter().sum();
        for (got, want) in p.iter().zip(e) {
            assert!((got - want / s).abs() < 1e-5, "{p:?}");
        }
        // A hidden layer of the wrong shape is refused.
        let mut bad = h.clone();
        bad.hidden.as_mut().unwrap().bias.pop();
        assert!(bad.check().is_err());
        let mut bad = h;
        bad.weights.pop();
        assert!(bad.check().is_err());
    }

    #[test]
    fn damaged_heads_are_refused() {
        let mut h = head();
        h.bias.pop();
        assert!(h.check().is_err());
        let mut h = head();
        h.meta.labels[2] = "a".into();
        assert!(h.check().is_err());
        let mut h = head();
        h.meta.temperature = 0.0;
        assert!(h.check().is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gguf");
        std::fs::write(&p, crate::gguf::tiny_gguf("llama", &[])).unwrap();
        assert!(ClassifierHead::read(&p).is_err());
    }
}
