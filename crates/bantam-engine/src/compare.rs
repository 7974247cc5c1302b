//! How far one generative model's next-token distributions are from another's on
//! the same text: what a quantization costs (`bantam quantize`), measured as
//! llama.cpp's `llama-perplexity --kl-divergence` does — mean KL(source ‖ other)
//! over every position, the share of positions where both put the same token on
//! top, and each model's perplexity on the text.

use std::path::Path;
use std::sync::Arc;

use bantam_llama::{Batch, Context, ContextParams, FlashAttention, Model, ModelParams, Pooling};

use crate::config::physical_cores;
use crate::EngineError;

/// Longest text compared, in tokens (longer ones are cut).
pub const MAX_TOKENS: usize = 512;

/// The comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Divergence {
    /// Positions compared.
    pub tokens: usize,
    /// Mean KL(source ‖ other) in nats.
    pub kl_mean: f64,
    /// Share of positions whose most likely token is the same.
    pub same_top: f64,
    /// Perplexity of the source on the texts.
    pub ppl_source: f64,
    /// Perplexity of the other model.
    pub ppl_other: f64,
}

/// One model, ready to score texts.
struct Probe {
    model: Arc<Model>,
    ctx: Context,
    batch: Batch,
}

impl Probe {
    fn load(path: &Path, threads: u32) -> Result<Self, EngineError> {
        let err = |reason: String| EngineError::Load {
            model: path.display().to_string(),
            reason,
        };
        let model = Arc::new(
            Model::load(bantam_llama::runtime(), path, &ModelParams::default())
                .map_err(|e| err(e.to_string()))?,
        );
        let threads = if threads > 0 {
            threads
        } else {
            physical_cores()
        } as i32;
        let n = MAX_TOKENS as u32;
        let ctx = Context::new(
            model.clone(),
            &ContextParams {
                n_ctx: n,
                n_batch: n,
                n_ubatch: n,
                n_seq_max: 1,
                n_threads: threads,
                n_threads_batch: threads,
                flash_attention: FlashAttention::Off,
                kv_unified: false,
                embeddings: false,
                pooling: Pooling::None,
                adapter: None,
                turn: None,
            },
        )
        .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            model,
            ctx,
            batch: Batch::new(MAX_TOKENS, 1),
        })
    }

    /// Log-probabilities of every next token after each position of `tokens`.
    fn log_probs(&mut self, tokens: &[i32]) -> Result<Vec<Vec<f32>>, EngineError> {
        self.ctx.clear_memory();
        self.batch.clear();
        for (i, &t) in tokens.iter().enumerate() {
            self.batch
                .add(t, i as i32, &[0], true)
                .map_err(|e| EngineError::Load {
                    model: "comparison".into(),
                    reason: e.to_string(),
                })?;
        }
        self.ctx
            .decode(&self.batch)
            .map_err(|e| EngineError::Load {
                model: "comparison".into(),
                reason: e.to_string(),
            })?;
        (0..tokens.len())
            .map(|i| {
                let z = self.ctx.logits(i as i32).ok_or_else(|| EngineError::Load {
                    model: "comparison".into(),
                    reason: "no logits".into(),
                })?;
                let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = z.iter().map(|v| (v - m).exp()).sum::<f32>().ln() + m;
                Ok(z.iter().map(|v| v - lse).collect())
            })
            .collect()
    }
}

/// Compare `other` with `source` on `texts` (tokenised by the source; both must
/// share a vocabulary).
pub fn compare_models(
    source: &Path,
    other: &Path,
    texts: &[&str],
    threads: u32,
) -> Result<Divergence, EngineError> {
    let mut a = Probe::load(source, threads)?;
    let mut b = Probe::load(other, threads)?;
    if a.model.n_vocab() != b.model.n_vocab() {
        return Err(EngineError::Load {
            model: other.display().to_string(),
            reason: "its vocabulary differs from the source's".into(),
        });
    }
    let (mut n, mut kl, mut same, mut nll_a, mut nll_b) = (0usize, 0f64, 0usize, 0f64, 0f64);
    for text in texts {
        let mut toks = a.model.tokenize(text, true, false);
        toks.truncate(MAX_TOKENS);
        if toks.len() < 2 {
            continue;
        }
        let pa = a.log_probs(&toks)?;
        let pb = b.log_probs(&toks)?;
        for i in 0..toks.len() - 1 {
            let (x, y) = (&pa[i], &pb[i]);
            kl += x
                .iter()
                .zip(y)
                .map(|(p, q)| f64::from(p.exp()) * f64::from(p - q))
                .sum::<f64>();
            let top = |v: &[f32]| {
                v.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |acc, (k, &s)| if s > acc.1 { (k, s) } else { acc },
                    )
                    .0
            };
            same += usize::from(top(x) == top(y));
            let next = toks[i + 1] as usize;
            nll_a -= f64::from(x[next]);
            nll_b -= f64::from(y[next]);
            n += 1;
        }
    }
    let d = n.max(1) as f64;
    Ok(Divergence {
        tokens: n,
        kl_mean: kl / d,
        same_top: same as f64 / d,
        ppl_source: (nll_a / d).exp(),
        ppl_other: (nll_b / d).exp(),
    })
}
