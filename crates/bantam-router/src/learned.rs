//! The learned policy: a logistic-regression classifier over sentence embeddings
//! that predicts whether a prompt needs the larger model, with its threshold
//! calibrated to a target escalation share (RouteLLM's "threshold calibration").
//!
//! Embeddings come through the [`Embed`] trait: all-MiniLM-L6-v2 in-process, or its
//! static distillation (`static:all-minilm:l6-v2`, one vector per token, microseconds
//! per prompt), both implemented in `bantam-local` next to the engine; or the built-in
//! hashed n-grams (`bantam_api::HashedNgrams`).

use std::path::Path;

use bantam_learn::logistic::sigmoid;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

pub use bantam_api::features::{Embed, STATIC_PREFIX};

/// One row of the calibration report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationPoint {
    /// Escalate when the score is at least this.
    pub threshold: f32,
    /// Share of the calibration prompts escalated.
    pub escalated: f64,
    /// Share routed as labelled.
    pub accuracy: f64,
    /// Of the prompts labelled `escalate`, the share escalated.
    pub escalate_recall: f64,
    /// Of the escalated prompts, the share labelled `escalate`.
    pub escalate_precision: f64,
}

/// Where the classifier came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainInfo {
    /// Training examples.
    pub examples: usize,
    /// Of those, labelled `escalate`.
    pub escalate_examples: usize,
    /// sha256 of the training file.
    pub data_sha256: String,
    /// Gradient steps.
    pub epochs: usize,
    /// L2 penalty.
    pub l2: f32,
    /// Calibration examples.
    pub calibration_examples: usize,
}

/// A trained router, as saved by `bantam router train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterModel {
    /// File format version (1).
    pub format: u32,
    /// The embedding model the weights belong to (a store name).
    pub embedding_model: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Weights, one per dimension.
    pub weights: Vec<f32>,
    /// Bias.
    pub bias: f32,
    /// Escalate when the score (probability) is at least this.
    pub threshold: f32,
    /// The escalation share the threshold was calibrated to, if one was asked for.
    pub target_escalation: Option<f64>,
    /// Share escalated vs quality at a range of thresholds (on the calibration set).
    pub calibration: Vec<CalibrationPoint>,
    /// Provenance.
    pub trained: TrainInfo,
}

impl RouterModel {
    /// Read and check a saved router.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "router model {}: {e}; train one with `bantam router train`",
                path.display()
            ))
        })?;
        let m: RouterModel = serde_json::from_str(&text)
            .map_err(|e| ConfigError(format!("router model {}: {e}", path.display())))?;
        if m.format != 1 || m.weights.len() != m.dim || m.dim == 0 {
            return Err(ConfigError(format!(
                "router model {}: format {} with {} weights for dimension {} is not one this \
                 Bantam reads; train it again",
                path.display(),
                m.format,
                m.weights.len(),
                m.dim
            )));
        }
        Ok(m)
    }

    /// Probability that the prompt needs the larger model.
    pub fn score(&self, embedding: &[f32]) -> f32 {
        let z: f32 = self
            .weights
            .iter()
            .zip(embedding)
            .map(|(w, x)| w * x)
            .sum::<f32>()
            + self.bias;
        sigmoid(z)
    }
}

/// Training settings (the shared learner's).
pub use bantam_learn::TrainOptions;

/// Fit the router's logistic regression (`bantam_learn::train_binary`: full-batch
/// Adam, L2, balanced classes). Returns weights and bias.
pub fn train(x: &[Vec<f32>], y: &[bool], opts: TrainOptions) -> (Vec<f32>, f32) {
    bantam_learn::train_binary(x, y, opts)
}

/// How prompts with these scores and labels would be routed at `threshold`.
pub fn evaluate(scores: &[f32], labels: &[bool], threshold: f32) -> CalibrationPoint {
    let n = scores.len().max(1) as f64;
    let (mut tp, mut fp, mut tn, mut fneg) = (0usize, 0usize, 0usize, 0usize);
    for (&s, &l) in scores.iter().zip(labels) {
        match (s >= threshold, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fneg += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    CalibrationPoint {
        threshold,
        escalated: (tp + fp) as f64 / n,
        accuracy: (tp + tn) as f64 / n,
        escalate_recall: ratio(tp, tp + fneg),
        escalate_precision: ratio(tp, tp + fp),
    }
}

/// The threshold that escalates `share` (0..1) of prompts with these scores.
pub fn threshold_for_share(scores: &[f32], share: f64) -> f32 {
    if scores.is_empty() {
        return 0.5;
    }
    let mut s = scores.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let k = ((share.clamp(0.0, 1.0) * s.len() as f64).round() as usize).min(s.len());
    if k == 0 {
        // Nothing escalated: just above the highest score.
        return f32::from_bits(s[0].to_bits() + 1).min(1.0 + f32::EPSILON);
    }
    s[k - 1]
}

/// The calibration report: the thresholds that escalate 5 %, 10 %, … 50 % (and the
/// chosen one), each evaluated on the calibration set.
pub fn calibration_table(scores: &[f32], labels: &[bool], extra: &[f32]) -> Vec<CalibrationPoint> {
    let mut ts: Vec<f32> = (1..=10)
        .map(|i| threshold_for_share(scores, i as f64 * 0.05))
        .chain(extra.iter().copied())
        .collect();
    ts.sort_by(|a, b| b.total_cmp(a));
    ts.dedup();
    ts.into_iter()
        .map(|t| evaluate(scores, labels, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian-ish clusters on the unit sphere, deterministic.
    fn data(n: usize) -> (Vec<Vec<f32>>, Vec<bool>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for i in 0..n {
            let pos = i % 5 == 0;
            let mut v: Vec<f32> = (0..16).map(|_| rnd() * 0.6).collect();
            v[0] += if pos { 1.0 } else { -1.0 };
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            x.push(v.iter().map(|a| a / norm).collect());
            y.push(pos);
        }
        (x, y)
    }

    #[test]
    fn learns_a_separable_rule_and_calibrates_the_share() {
        let (x, y) = data(500);
        let (w, b) = train(&x, &y, TrainOptions::default());
        let m = RouterModel {
            format: 1,
            embedding_model: "test".into(),
            dim: 16,
            weights: w,
            bias: b,
            threshold: 0.5,
            target_escalation: None,
            calibration: Vec::new(),
            trained: TrainInfo::default(),
        };
        let scores: Vec<f32> = x.iter().map(|v| m.score(v)).collect();
        let p = evaluate(&scores, &y, 0.5);
        assert!(p.accuracy > 0.95, "{p:?}");
        let t = threshold_for_share(&scores, 0.2);
        let at = evaluate(&scores, &y, t);
        assert!((at.escalated - 0.2).abs() < 0.01, "{at:?}");
        let table = calibration_table(&scores, &y, &[t]);
        assert!(table.len() >= 10);
        assert!(table.windows(2).all(|w| w[0].escalated <= w[1].escalated));
        assert!(threshold_for_share(&scores, 0.0) > scores.iter().cloned().fold(0.0, f32::max));
    }

    #[test]
    fn rejects_a_mismatched_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(
            &p,
            r#"{"format":1,"embedding_model":"e","dim":3,"weights":[1,2],"bias":0,"threshold":0.5,
               "target_escalation":null,"calibration":[],"trained":{"examples":0,"escalate_examples":0,
               "data_sha256":"","epochs":0,"l2":0,"calibration_examples":0}}"#,
        )
        .unwrap();
        let e = RouterModel::load(&p).unwrap_err();
        assert!(e.to_string().contains("train it again"), "{e}");
        let e = RouterModel::load(&dir.path().join("missing.json")).unwrap_err();
        assert!(e.to_string().contains("bantam router train"), "{e}");
    }
}
