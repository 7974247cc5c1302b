//! Log-likelihood scoring of candidate continuations (labels) — classification
//! without generating text.
//!
//! Every item is a prompt; every candidate is a short token sequence followed by a
//! terminator (the end-of-turn token). A candidate's score is
//! `Σ log p(token | prompt, earlier tokens)` over its tokens and the terminator, so
//! `"card"` and `"card_arrival"` are told apart.
//!
//! One forward pass scores all candidates of several items at once:
//!
//! * The prompt prefix shared by the items (instructions, label list, few-shot
//!   examples) stays in the KV cache across requests and belongs to every sequence.
//! * Each item gets one sequence per candidate. Its own text is decoded once,
//!   belonging to all of its sequences; the candidates form a **token tree** (a trie:
//!   candidates sharing leading tokens share those cells), each node belonging to the
//!   sequences of the candidates through it. llama.cpp's attention mask follows the
//!   sequence sets, so each candidate sees the prompt and its own path only.
//!
//! The scorer has its own llama.cpp context (unified KV cache, up to 256 sequences),
//! driven by the engine thread between generation steps.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bantam_llama::{Batch, Context, ContextParams, Model};
use tokio::sync::oneshot;

use crate::EngineError;

/// Sequences of the scoring context (llama.cpp's maximum).
pub(crate) const MAX_SEQ: usize = 256;
/// Tokens per forward pass.
const BATCH: usize = 1024;

/// Scores for one request: `scores[item][candidate]` (natural-log likelihood).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOutput {
    /// Total log-likelihood of each candidate (its tokens and the terminator).
    pub scores: Vec<Vec<f32>>,
    /// Prompt tokens processed (item texts and the prefix where it was not cached).
    pub prompt_tokens: u32,
    /// Prompt tokens found in the cache.
    pub cached_tokens: u32,
    /// Tokens of the candidate trees.
    pub candidate_tokens: u32,
}

/// A scoring request as the engine thread receives it.
#[derive(Debug)]
pub(crate) struct ScoreJob {
    pub prompts: Vec<Vec<i32>>,
    pub candidates: Arc<Vec<Vec<i32>>>,
    pub terminator: Option<i32>,
    pub tx: oneshot::Sender<Result<ScoreOutput, EngineError>>,
    pub enqueued: Instant,
}

/// The candidate trie shared by all items of a job.
#[derive(Debug)]
struct Trie {
    /// (token, parent node or None for the root = the item's last prompt token,
    /// depth from 0, candidates through this node).
    nodes: Vec<(i32, Option<usize>, usize, Vec<usize>)>,
    /// Last node of each candidate.
    ends: Vec<usize>,
}

impl Trie {
    fn new(cands: &[Vec<i32>]) -> Self {
        let mut nodes: Vec<(i32, Option<usize>, usize, Vec<usize>)> = Vec::new();
        let mut ends = Vec::with_capacity(cands.len());
        for (c, toks) in cands.iter().enumerate() {
            let mut parent: Option<usize> = None;
            for (d, &t) in toks.iter().enumerate() {
                let found = nodes
                    .iter()
                    .position(|n| n.0 == t && n.1 == parent && n.2 == d);
                let idx = match found {
                    Some(i) => i,
                    None => {
                        nodes.push((t, parent, d, Vec::new()));
                        nodes.len() - 1
                    }
                };
                nodes[idx].3.push(c);
                parent = Some(idx);
            }
            ends.push(parent.expect("candidates are not empty"));
        }
        Self { nodes, ends }
    }
}

/// One job in progress.
struct Running {
    job: ScoreJob,
    trie: Trie,
    /// Shared prefix length (tokens) for this job.
    prefix: usize,
    next_item: usize,
    scores: Vec<Vec<f32>>,
    prompt_tokens: u32,
    cached_tokens: u32,
}

pub(crate) struct Scorer {
    ctx: Context,
    batch: Batch,
    /// Tokens in the cache at positions `0..len`, in every sequence.
    cached: Vec<i32>,
    queue: VecDeque<ScoreJob>,
    running: Option<Running>,
    all_seqs: Vec<i32>,
}

fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `log Σ exp(row)`: `row[t] - log_sum_exp(row)` is `log p(t)`.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&l| (l - max).exp()).sum();
    max + sum.ln()
}

impl Scorer {
    pub(crate) fn new(model: Arc<Model>, params: &ContextParams) -> Result<Self, EngineError> {
        let p = ContextParams {
            n_seq_max: MAX_SEQ as u32,
            n_batch: BATCH as u32,
            n_ubatch: 512.min(BATCH as u32),
            kv_unified: true,
            ..params.clone()
        };
        let ctx = Context::new(model.clone(), &p).map_err(|e| EngineError::Load {
            model: model.description(),
            reason: format!("scoring context: {e}"),
        })?;
        Ok(Self {
            ctx,
            batch: Batch::new(BATCH, MAX_SEQ),
            cached: Vec::new(),
            queue: VecDeque::new(),
            running: None,
            all_seqs: (0..MAX_SEQ as i32).collect(),
        })
    }

    pub(crate) fn push(&mut self, job: ScoreJob) {
        self.queue.push_back(job);
    }

    pub(crate) fn busy(&self) -> bool {
        self.running.is_some() || !self.queue.is_empty()
    }

    /// Fail everything (engine shutting down).
    pub(crate) fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.job.tx.send(Err(EngineError::Stopped));
        }
        for j in self.queue.drain(..) {
            let _ = j.tx.send(Err(EngineError::Stopped));
        }
    }

    /// Do one forward pass worth of work.
    pub(crate) fn work(&mut self) {
        if self.running.is_none() {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            if job.tx.is_closed() {
                return;
            }
            match self.begin(job) {
                Ok(r) => self.running = Some(r),
                Err((job, e)) => {
                    let _ = job.tx.send(Err(e));
                    return;
                }
            }
        }
        let Some(mut r) = self.running.take() else {
            return;
        };
        if r.job.tx.is_closed() {
            self.clear_tail();
            return;
        }
        match self.items_pass(&mut r) {
            Ok(()) if r.next_item >= r.job.prompts.len() => {
                let out = ScoreOutput {
                    scores: std::mem::take(&mut r.scores),
                    prompt_tokens: r.prompt_tokens,
                    cached_tokens: r.cached_tokens,
                    candidate_tokens: (r.trie.nodes.len() * r.job.prompts.len()) as u32,
                };
                tracing::debug!(
                    items = r.job.prompts.len(),
                    ms = r.job.enqueued.elapsed().as_millis() as u64,
                    "scored"
                );
                let _ = r.job.tx.send(Ok(out));
            }
            Ok(()) => self.running = Some(r),
            Err(e) => {
                self.clear_tail();
                let _ = r.job.tx.send(Err(e));
            }
        }
    }

    /// Drop everything after the cached prefix.
    fn clear_tail(&mut self) {
        if !self.ctx.seq_rm(-1, self.cached.len() as i32, -1) {
            self.ctx.seq_rm(-1, -1, -1);
            self.cached.clear();
        }
    }

    /// Check the job and bring its shared prefix into the cache.
    fn begin(&mut self, job: ScoreJob) -> Result<Running, (ScoreJob, EngineError)> {
        let n_cand = job.candidates.len();
        if n_cand == 0 || n_cand > MAX_SEQ || job.candidates.iter().any(Vec::is_empty) {
            return Err((
                job,
                EngineError::Decode(format!(
                    "between 1 and {MAX_SEQ} non-empty candidates are needed"
                )),
            ));
        }
        if job.prompts.is_empty() || job.prompts.iter().any(Vec::is_empty) {
            return Err((job, EngineError::EmptyPrompt));
        }
        // Shared prefix of all prompts, leaving each item at least one token of its own
        // (its last token's logits score the first candidate tokens).
        let min_len = job.prompts.iter().map(Vec::len).min().unwrap_or(0);
        let mut prefix = min_len - 1;
        for p in &job.prompts[1..] {
            prefix = prefix.min(common_prefix(&job.prompts[0], p));
        }
        let trie = Trie::new(&job.candidates);
        let n_ctx = self.ctx.n_ctx() as usize;
        let widest = job
            .prompts
            .iter()
            .map(|p| p.len() - prefix + trie.nodes.len())
            .max()
            .unwrap_or(0);
        if prefix + widest > n_ctx || widest > BATCH {
            let e = EngineError::ContextOverflow {
                prompt_tokens: prefix + widest,
                ctx_size: n_ctx.min(prefix + BATCH),
            };
            return Err((job, e));
        }
        let reuse = common_prefix(&self.cached, &job.prompts[0][..prefix]);
        if !self.ctx.seq_rm(-1, reuse as i32, -1) {
            self.ctx.seq_rm(-1, -1, -1);
            self.cached.clear();
        }
        self.cached.truncate(reuse);
        let mut computed = 0;
        let target = job.prompts[0][..prefix].to_vec();
        while self.cached.len() < prefix {
            self.batch.clear();
            let start = self.cached.len();
            let end = (start + BATCH).min(prefix);
            for (p, &tok) in target.iter().enumerate().take(end).skip(start) {
                self.batch
                    .add(tok, p as i32, &self.all_seqs, false)
                    .expect("batch sized for BATCH tokens of 256 sequences");
            }
            let t0 = Instant::now();
            let res = self.ctx.decode(&self.batch);
            tracing::debug!(
                tokens = end - start,
                ms = t0.elapsed().as_millis() as u64,
                "scoring prefix"
            );
            if let Err(e) = res {
                self.ctx.seq_rm(-1, -1, -1);
                self.cached.clear();
                return Err((job, EngineError::Decode(e.to_string())));
            }
            self.cached.extend_from_slice(&target[start..end]);
            computed += end - start;
        }
        let n_items = job.prompts.len();
        Ok(Running {
            trie,
            prefix,
            next_item: 0,
            scores: Vec::with_capacity(n_items),
            prompt_tokens: computed as u32,
            cached_tokens: (reuse * n_items + (prefix - reuse) * (n_items - 1)) as u32,
            job,
        })
    }

    /// Score as many items as fit in one forward pass.
    fn items_pass(&mut self, r: &mut Running) -> Result<(), EngineError> {
        let n_cand = r.job.candidates.len();
        let n_nodes = r.trie.nodes.len();
        let room = self.ctx.n_ctx() as usize - r.prefix;
        self.batch.clear();
        // (item, row of its last prompt token, rows of its trie nodes)
        let mut placed: Vec<(usize, i32, Vec<i32>)> = Vec::new();
        let mut used_seqs = 0;
        let mut used_tokens = 0;
        while r.next_item < r.job.prompts.len() {
            let prompt = &r.job.prompts[r.next_item];
            let own = &prompt[r.prefix..];
            let need = own.len() + n_nodes;
            if used_seqs + n_cand > MAX_SEQ || used_tokens + need > BATCH.min(room) {
                break;
            }
            let seqs: Vec<i32> = (used_seqs..used_seqs + n_cand).map(|s| s as i32).collect();
            let mut last_row = -1;
            for (k, &tok) in own.iter().enumerate() {
                let last = k + 1 == own.len();
                let row = self
                    .batch
                    .add(tok, (r.prefix + k) as i32, &seqs, last)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
                if last {
                    last_row = row;
                }
            }
            let base = (r.prefix + own.len()) as i32;
            let mut rows = Vec::with_capacity(n_nodes);
            for (tok, _, depth, cands) in &r.trie.nodes {
                let node_seqs: Vec<i32> = cands.iter().map(|&c| seqs[c]).collect();
                let row = self
                    .batch
                    .add(*tok, base + *depth as i32, &node_seqs, true)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
                rows.push(row);
            }
            r.prompt_tokens += own.len() as u32;
            placed.push((r.next_item, last_row, rows));
            used_seqs += n_cand;
            used_tokens += need;
            r.next_item += 1;
        }
        if placed.is_empty() {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: r.prefix + r.job.prompts[r.next_item].len() - r.prefix + n_nodes,
                ctx_size: self.ctx.n_ctx() as usize,
            });
        }
        let t0 = Instant::now();
        let decoded = self.ctx.decode(&self.batch);
        let t_decode = t0.elapsed();
        let result = decoded
            .map_err(|e| EngineError::Decode(e.to_string()))
            .and_then(|()| {
                for (_, last_row, rows) in &placed {
                    let mut item = vec![0f32; n_cand];
                    // log-sum-exp of every row once; then each node's token is scored
                    // from its parent's row.
                    let lse = |row_idx: i32| -> Result<(&[f32], f32), EngineError> {
                        let row = self.ctx.logits(row_idx).ok_or_else(|| {
                            EngineError::Decode("missing logits while scoring".into())
                        })?;
                        Ok((row, log_sum_exp(row)))
                    };
                    let mut norms = Vec::with_capacity(rows.len() + 1);
                    norms.push(lse(*last_row)?);
                    for &row in rows {
                        norms.push(lse(row)?);
                    }
                    for (tok, parent, _, cands) in &r.trie.nodes {
                        let (row, z) = norms[parent.map_or(0, |p| p + 1)];
                        let lp = row[*tok as usize] - z;
                        for &c in cands {
                            item[c] += lp;
                        }
                    }
                    if let Some(term) = r.job.terminator {
                        for (c, &end) in r.trie.ends.iter().enumerate() {
                            let (row, z) = norms[end + 1];
                            item[c] += row[term as usize] - z;
                        }
                    }
                    r.scores.push(item);
                }
                Ok(())
            });
        // The items' cells go; the shared prefix stays.
        self.clear_tail();
        tracing::debug!(
            tokens = self.batch.len(),
            items = placed.len(),
            decode_ms = t_decode.as_millis() as u64,
            total_ms = t0.elapsed().as_millis() as u64,
            "scoring pass"
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_shares_prefixes() {
        let t = Trie::new(&[vec![1, 2, 3], vec![1, 2, 4], vec![5], vec![1, 2]]);
        // 1, 2, 3, 4, 5 → five nodes; "1 2" ends inside the others' path.
        assert_eq!(t.nodes.len(), 5);
        assert_eq!(t.ends, vec![2, 3, 4, 1]);
        assert_eq!(t.nodes[1].3, vec![0, 1, 3]);
    }

    #[test]
    fn logprob_is_normalised() {
        let row = [1.0f32, 2.0, 3.0];
        let z = log_sum_exp(&row);
        let total: f32 = row.iter().map(|l| (l - z).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
}
