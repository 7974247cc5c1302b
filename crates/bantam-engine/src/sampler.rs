//! Per-request token selection from a row of logits.
//!
//! The chain follows llama.cpp's default order: logit bias → penalties → top-k →
//! top-p → min-p → temperature → draw. Temperature 0 is greedy (argmax after bias and
//! penalties). Each request owns its RNG seeded from the request, so a seeded request
//! samples the same tokens whatever else runs in the batch.

use bantam_types::generate::SamplingParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A candidate token and its (possibly adjusted) logit.
#[derive(Debug, Clone, Copy)]
struct Cand {
    id: i32,
    logit: f32,
}

/// Samples tokens for one request.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Tokens seen so far (prompt tail + generated), for the repetition penalty.
    history: Vec<i32>,
    /// Generated tokens only, for OpenAI frequency/presence penalties.
    generated_counts: std::collections::HashMap<i32, u32>,
    scratch: Vec<Cand>,
}

impl Sampler {
    /// A sampler for `params`; `prompt` seeds the repetition-penalty window.
    pub fn new(params: SamplingParams, prompt: &[i32]) -> Self {
        let keep = params.penalty_last_n as usize;
        let history = prompt[prompt.len().saturating_sub(keep)..].to_vec();
        Self {
            rng: StdRng::seed_from_u64(params.seed),
            params,
            history,
            generated_counts: Default::default(),
            scratch: Vec::new(),
        }
    }

    /// Record a token that was emitted (updates penalties).
    pub fn accept(&mut self, token: i32) {
        *self.generated_counts.entry(token).or_insert(0) += 1;
        self.history.push(token);
        let keep = self.params.penalty_last_n as usize;
        if self.history.len() > keep.max(1) * 2 {
            let cut = self.history.len() - keep;
            self.history.drain(..cut);
        }
    }

    fn penalties_active(&self) -> bool {
        self.params.repetition_penalty != 1.0
            || self.params.frequency_penalty != 0.0
            || self.params.presence_penalty != 0.0
    }

    /// Adjusted logit of one token (bias and penalties).
    fn adjust(&self, id: i32, logit: f32) -> f32 {
        let mut l = logit;
        if self.params.repetition_penalty != 1.0 {
            let keep = self.params.penalty_last_n as usize;
            let window = &self.history[self.history.len().saturating_sub(keep)..];
            if window.contains(&id) {
                l = if l > 0.0 {
                    l / self.params.repetition_penalty
                } else {
                    l * self.params.repetition_penalty
                };
            }
        }
        if let Some(&c) = self.generated_counts.get(&id) {
            l -= c as f32 * self.params.frequency_penalty + self.params.presence_penalty;
        }
        l
    }

    /// Logits whose value differs from the model's: biased tokens and the tokens the
    /// penalties touch, with their adjusted values.
    fn adjustments(&self, logits: &[f32]) -> Vec<(i32, f32)> {
        let mut touched: Vec<(i32, f32)> = Vec::new();
        for &(id, bias) in &self.params.logit_bias {
            if (id as usize) < logits.len() {
                touched.push((id, logits[id as usize] + bias));
            }
        }
        if self.penalties_active() {
            let mut ids: Vec<i32> = self.history.clone();
            ids.extend(self.generated_counts.keys().copied());
            ids.sort_unstable();
            ids.dedup();
            for id in ids
                .into_iter()
                .filter(|&id| id >= 0 && (id as usize) < logits.len())
            {
                match touched.iter_mut().find(|t| t.0 == id) {
                    Some(t) => t.1 = self.adjust(id, t.1),
                    None => touched.push((id, self.adjust(id, logits[id as usize]))),
                }
            }
        }
        touched
    }

    /// Pick the next token from `logits` (one row, `n_vocab` long).
    pub fn sample(&mut self, logits: &[f32]) -> i32 {
        let touched = self.adjustments(logits);
        if self.params.temperature <= 0.0 && touched.is_empty() {
            // Plain greedy: no copy of the row. First maximum wins, as below.
            let mut best = 0;
            for (i, &l) in logits.iter().enumerate() {
                if l > logits[best] {
                    best = i;
                }
            }
            return best as i32;
        }
        let cands = &mut self.scratch;
        cands.clear();
        cands.extend(logits.iter().enumerate().map(|(i, &l)| Cand {
            id: i as i32,
            logit: l,
        }));
        for &(id, v) in &touched {
            cands[id as usize].logit = v;
        }
        if self.params.temperature <= 0.0 {
            // First maximum wins, like llama.cpp's greedy sampler.
            let mut best = cands[0];
            for c in cands.iter() {
                if c.logit > best.logit {
                    best = *c;
                }
            }
            return best.id;
        }

        // Top-k by partial selection, then sort what is left.
        let k = self.params.top_k as usize;
        if k > 0 && k < cands.len() {
            cands.select_nth_unstable_by(k - 1, |a, b| b.logit.total_cmp(&a.logit));
            cands.truncate(k);
        }
        cands.sort_unstable_by(|a, b| b.logit.total_cmp(&a.logit));

        // Probabilities at temperature 1 for the top-p / min-p filters.
        let max = cands[0].logit;
        let mut probs: Vec<f32> = cands.iter().map(|c| (c.logit - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);

        let mut keep = cands.len();
        if self.params.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.params.top_p {
                    keep = keep.min(i + 1);
                    break;
                }
            }
        }
        if self.params.min_p > 0.0 {
            let floor = probs[0] * self.params.min_p;
            let n = probs.iter().take_while(|&&p| p >= floor).count().max(1);
            keep = keep.min(n);
        }
        cands.truncate(keep.max(1));

        // Temperature, then draw.
        let t = self.params.temperature;
        let weights: Vec<f32> = cands.iter().map(|c| ((c.logit - max) / t).exp()).collect();
        let total: f32 = weights.iter().sum();
        let mut r = self.rng.gen::<f32>() * total;
        for (c, w) in cands.iter().zip(&weights) {
            if r < *w {
                return c.id;
            }
            r -= w;
        }
        cands[cands.len() - 1].id
    }
}

/// Log-softmax value of `id` and the `n` most likely tokens, from raw logits.
pub fn logprobs(logits: &[f32], id: i32, n: usize) -> (f32, Vec<(i32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let chosen = logits
        .get(id as usize)
        .map_or(f32::NEG_INFINITY, |l| l - lse);
    let mut top: Vec<(i32, f32)> = Vec::new();
    if n > 0 {
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        let n = n.min(idx.len());
        idx.select_nth_unstable_by(n - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
        idx.truncate(n);
        idx.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        top = idx
            .into_iter()
            .map(|i| (i as i32, logits[i] - lse))
            .collect();
    }
    (chosen, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_picks_argmax() {
        let mut s = Sampler::new(params(0.0), &[]);
        assert_eq!(s.sample(&[0.1, 3.0, 2.0]), 1);
    }

    #[test]
    fn logit_bias_can_ban_and_force() {
        let mut p = params(0.0);
        p.logit_bias = vec![(1, -100.0)];
        let mut s = Sampler::new(p.clone(), &[]);
        assert_eq!(s.sample(&[0.1, 3.0, 2.0]), 2);
        p.logit_bias = vec![(0, 100.0)];
        let mut s = Sampler::new(p, &[]);
        assert_eq!(s.sample(&[0.1, 3.0, 2.0]), 0);
    }

    #[test]
    fn repetition_and_presence_penalties_demote_seen_tokens() {
        let mut p = params(0.0);
        p.repetition_penalty = 2.0;
        let mut s = Sampler::new(p, &[1]);
        assert_eq!(s.sample(&[0.0, 3.0, 2.0]), 2, "3/2 = 1.5 < 2");
        let mut p = params(0.0);
        p.presence_penalty = 2.0;
        let mut s = Sampler::new(p, &[]);
        s.accept(1);
        assert_eq!(s.sample(&[0.0, 3.0, 2.0]), 2);
    }

    #[test]
    fn same_seed_same_samples() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut p = params(1.0);
            p.seed = seed;
            let mut s = Sampler::new(p, &[]);
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut p = params(1.5);
        p.top_k = 1;
        let mut s = Sampler::new(p, &[]);
        for _ in 0..10 {
            assert_eq!(s.sample(&[0.1, 3.0, 2.9]), 1);
        }
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        let mut p = params(1.0);
        p.min_p = 0.5;
        let mut s = Sampler::new(p, &[]);
        // token 2 has p ≈ e^-5 relative: always cut.
        for _ in 0..50 {
            assert_ne!(s.sample(&[5.0, 4.9, 0.0]), 2);
        }
        let mut p = params(1.0);
        p.top_p = 0.5;
        let mut s = Sampler::new(p, &[]);
        for _ in 0..50 {
            assert_eq!(s.sample(&[5.0, 1.0, 0.0]), 0);
        }
    }

    #[test]
    fn logprobs_are_normalised() {
        let (lp, top) = logprobs(&[0.0, 0.0], 1, 2);
        assert!((lp - 0.5f32.ln()).abs() < 1e-6);
        assert_eq!(top.len(), 2);
        let total: f32 = top.iter().map(|t| t.1.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
