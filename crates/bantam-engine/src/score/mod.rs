//! Log-likelihood scoring of candidate continuations (labels): classification without
//! generating text.
//!
//! Every item is a prompt; every candidate is a short token sequence followed by a
//! terminator (the end-of-turn token). A candidate's score is
//! `Σ log p(token | prompt, earlier tokens)` over its tokens and the terminator, so
//! `"card"` and `"card_arrival"` are told apart.
//!
//! The candidates form a token tree (a trie). Two modes:
//!
//! * [`ScoreMode::Exact`] computes every node (one token of compute per node —
//!   hundreds for 77 labels) and gives each candidate its full log-likelihood.
//! * [`ScoreMode::Greedy`] follows the most likely branch: at each node, the options
//!   (its children, and the terminator where a candidate ends) are renormalised
//!   among themselves, and the best one is computed next — one node per tree level,
//!   the choice constrained generation would make. A candidate's probability is the
//!   product of its branch probabilities; candidates off the explored path share
//!   their branch's probability equally (those scores are not exact).
//!
//! Batching and caching:
//! * The prompt prefix shared by the items (instructions, label list, examples) stays
//!   in the KV cache across requests, in every sequence.
//! * Items from every queued request with the same prefix are searched together: one
//!   forward pass computes the next nodes of all of them.
//! * The scorer has its own llama.cpp context with a unified KV cache and 256
//!   sequences. A branch of the tree is a sequence; a new branch copies its parent's
//!   cells into a fresh sequence (`seq_cp`, which only tags cells in a unified
//!   cache), so llama.cpp's attention mask lets every node see its own path only.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bantam_llama::{Batch, Context, ContextParams, Model};
use tokio::sync::oneshot;

use crate::EngineError;

mod tree;
use tree::{Item, Trie};

/// Sequences of the scoring context (llama.cpp's maximum).
pub(crate) const MAX_SEQ: usize = 256;
/// Tokens per forward pass.
const BATCH: usize = 512;
/// Nodes computed per item and pass.
const PER_PASS: usize = 2;

/// Scores for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOutput {
    /// `scores[item][candidate]`: log-likelihood of each candidate (its tokens and the
    /// terminator; renormalised per branch in greedy mode); an estimate where
    /// `exact[item][candidate]` is false.
    pub scores: Vec<Vec<f32>>,
    /// Which scores are exact.
    pub exact: Vec<Vec<bool>>,
    /// Prompt tokens computed (item texts, and the prefix where it was not cached).
    pub prompt_tokens: u32,
    /// Prompt tokens served from the cache.
    pub cached_tokens: u32,
    /// Candidate-tree tokens computed.
    pub candidate_tokens: u32,
    /// Engine time attributed to this request, in microseconds.
    pub compute_us: u64,
}

/// What to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreMode {
    /// Descend the tree along the most likely branch, with probabilities renormalised
    /// over the candidates' continuations at each branch point (what constrained
    /// generation of one of the candidates would pick): one node per tree level.
    Greedy,
    /// Every candidate exactly.
    Exact,
}

/// A scoring request as the engine thread receives it.
#[derive(Debug)]
pub(crate) struct ScoreJob {
    pub prompts: Vec<Vec<i32>>,
    /// Leading tokens shared by all prompts (kept in the cache).
    pub shared: usize,
    pub candidates: Arc<Vec<Vec<i32>>>,
    pub terminator: Option<i32>,
    pub mode: ScoreMode,
    pub tx: oneshot::Sender<Result<ScoreOutput, EngineError>>,
    pub enqueued: Instant,
}

/// One request in progress.
struct JobState {
    job: ScoreJob,
    trie: Arc<Trie>,
    next_item: usize,
    done_items: usize,
    scores: Vec<Vec<f32>>,
    exact: Vec<Vec<bool>>,
    prompt_tokens: u32,
    cached_tokens: u32,
    candidate_tokens: u32,
    /// Engine time attributed to the job (its items' share of each pass).
    compute: std::time::Duration,
    failed: Option<EngineError>,
}

enum Row {
    Own,
    Node(usize),
}

pub(crate) struct Scorer {
    ctx: Context,
    batch: Batch,
    /// Tokens in the cache at positions `0..len`, in every sequence.
    cached: Vec<i32>,
    queue: VecDeque<ScoreJob>,
    jobs: Vec<(u64, JobState)>,
    next_job_id: u64,
    items: Vec<Item>,
    free_seqs: Vec<i32>,
    all_seqs: Vec<i32>,
    cells_used: usize,
}

/// KV cells an item's tree takes at most.
fn tree_cells(mode: ScoreMode, trie: &Trie) -> usize {
    match mode {
        ScoreMode::Exact => trie.len(),
        ScoreMode::Greedy => trie.paths.iter().map(Vec::len).max().unwrap_or(0),
    }
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
            n_ubatch: BATCH as u32,
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
            jobs: Vec::new(),
            next_job_id: 0,
            items: Vec::new(),
            free_seqs: (0..MAX_SEQ as i32).rev().collect(),
            all_seqs: (0..MAX_SEQ as i32).collect(),
            cells_used: 0,
        })
    }

    pub(crate) fn push(&mut self, job: ScoreJob) {
        self.queue.push_back(job);
    }

    pub(crate) fn busy(&self) -> bool {
        !self.jobs.is_empty() || !self.queue.is_empty()
    }

    /// Fail everything (engine shutting down).
    pub(crate) fn stop(&mut self) {
        for (_, js) in self.jobs.drain(..) {
            let _ = js.job.tx.send(Err(EngineError::Stopped));
        }
        for j in self.queue.drain(..) {
            let _ = j.tx.send(Err(EngineError::Stopped));
        }
        self.items.clear();
    }

    /// One forward pass worth of work.
    pub(crate) fn work(&mut self) {
        self.drop_cancelled();
        self.start_jobs();
        self.admit_items();
        let t0 = std::time::Instant::now();
        let passed = self.pass();
        // Each job's share of the pass: its items among those in flight (items of
        // one request are alike in size, so this is close to a share by tokens).
        let step = t0.elapsed();
        if !self.items.is_empty() {
            let n = self.items.len() as f64;
            for (id, js) in &mut self.jobs {
                let mine = self.items.iter().filter(|i| i.job == *id).count();
                js.compute += step.mul_f64(mine as f64 / n);
            }
        }
        if let Err(e) = passed {
            tracing::error!(error = %e, "scoring pass failed");
            let ids: Vec<u64> = self.items.iter().map(|i| i.job).collect();
            for id in ids {
                if let Some((_, js)) = self.jobs.iter_mut().find(|(j, _)| *j == id) {
                    js.failed.get_or_insert(e.clone());
                }
            }
            for it in &mut self.items {
                it.finished = true;
            }
        }
        self.retire();
    }

    fn drop_cancelled(&mut self) {
        self.queue.retain(|j| !j.tx.is_closed());
        for (_, js) in &mut self.jobs {
            if js.job.tx.is_closed() && js.failed.is_none() {
                js.failed = Some(EngineError::Stopped);
            }
        }
        let failed: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, js)| js.failed.is_some())
            .map(|(id, _)| *id)
            .collect();
        for it in &mut self.items {
            if failed.contains(&it.job) {
                it.finished = true;
            }
        }
    }

    /// Take queued jobs whose shared prefix is the cached one; switch the cache when
    /// nothing is running.
    fn start_jobs(&mut self) {
        while let Some(job) = self.queue.front() {
            if let Err(e) = self.check(job) {
                let job = self.queue.pop_front().expect("front exists");
                let _ = job.tx.send(Err(e));
                continue;
            }
            let same = self.cached.as_slice() == &job.prompts[0][..job.shared];
            if !same && !self.jobs.is_empty() {
                return;
            }
            let job = self.queue.pop_front().expect("front exists");
            let reused = if same {
                self.cached.len()
            } else {
                match self.load_prefix(&job) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = job.tx.send(Err(e));
                        continue;
                    }
                }
            };
            let n = job.prompts.len();
            let computed = job.shared - reused;
            let id = self.next_job_id;
            self.next_job_id += 1;
            self.jobs.push((
                id,
                JobState {
                    trie: Arc::new(Trie::new(&job.candidates)),
                    next_item: 0,
                    done_items: 0,
                    compute: std::time::Duration::ZERO,
                    scores: vec![Vec::new(); n],
                    exact: vec![Vec::new(); n],
                    prompt_tokens: computed as u32,
                    cached_tokens: (reused + job.shared * (n - 1)) as u32,
                    candidate_tokens: 0,
                    failed: None,
                    job,
                },
            ));
        }
    }

    fn check(&self, job: &ScoreJob) -> Result<(), EngineError> {
        let n_cand = job.candidates.len();
        if n_cand == 0 || n_cand > MAX_SEQ || job.candidates.iter().any(Vec::is_empty) {
            return Err(EngineError::Decode(format!(
                "between 1 and {MAX_SEQ} non-empty candidates are needed"
            )));
        }
        if job.prompts.is_empty() || job.prompts.iter().any(|p| p.len() <= job.shared) {
            return Err(EngineError::EmptyPrompt);
        }
        let n_ctx = self.ctx.n_ctx() as usize;
        let longest = job.prompts.iter().map(Vec::len).max().unwrap_or(0);
        let tree = if job.mode == ScoreMode::Exact {
            Trie::new(&job.candidates).len()
        } else {
            job.candidates.iter().map(Vec::len).max().unwrap_or(0) * 8
        };
        if longest + tree > n_ctx {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: longest + tree,
                ctx_size: n_ctx,
            });
        }
        Ok(())
    }

    /// Bring `job`'s shared prefix into every sequence. Returns the tokens reused.
    fn load_prefix(&mut self, job: &ScoreJob) -> Result<usize, EngineError> {
        let target = job.prompts[0][..job.shared].to_vec();
        let reuse = common_prefix(&self.cached, &target);
        if !self.ctx.seq_rm(-1, reuse as i32, -1) {
            self.ctx.seq_rm(-1, -1, -1);
            self.cached.clear();
        }
        self.cached.truncate(reuse);
        while self.cached.len() < target.len() {
            self.batch.clear();
            let start = self.cached.len();
            let end = (start + BATCH).min(target.len());
            for (p, &tok) in target.iter().enumerate().take(end).skip(start) {
                self.batch
                    .add(tok, p as i32, &self.all_seqs, false)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
            }
            if let Err(e) = self.ctx.decode(&self.batch) {
                self.ctx.seq_rm(-1, -1, -1);
                self.cached.clear();
                return Err(EngineError::Decode(e.to_string()));
            }
            self.cached.extend_from_slice(&target[start..end]);
        }
        self.cells_used = self.cached.len();
        Ok(reuse.min(target.len()))
    }

    /// Start items while sequences and cells allow.
    fn admit_items(&mut self) {
        let n_ctx = self.ctx.n_ctx() as usize;
        let p = self.cached.len();
        for (id, js) in &mut self.jobs {
            while js.next_item < js.job.prompts.len() && js.failed.is_none() {
                let reserve = match js.job.mode {
                    ScoreMode::Exact => js.job.candidates.len(),
                    ScoreMode::Greedy => 1,
                };
                let own = &js.job.prompts[js.next_item][p..];
                let cells = own.len() + tree_cells(js.job.mode, &js.trie);
                if self.free_seqs.len() < reserve.min(MAX_SEQ) || self.cells_used + cells > n_ctx {
                    return;
                }
                let root_seq = self.free_seqs.pop().expect("reserve checked");
                let spare_n = reserve.saturating_sub(1);
                let spare = self.free_seqs.split_off(self.free_seqs.len() - spare_n);
                let n = js.trie.len();
                self.cells_used += cells;
                self.items.push(Item {
                    job: *id,
                    index: js.next_item,
                    base: p + own.len(),
                    own: own.to_vec(),
                    fed: 0,
                    root_seq,
                    trie: js.trie.clone(),
                    score: vec![f32::NAN; n],
                    seq: vec![-1; n],
                    open: Vec::new(),
                    complete: vec![None; js.job.candidates.len()],
                    seqs: vec![(root_seq, None)],
                    spare,
                    computed: 0,
                    mode: js.job.mode,
                    terminator: js.job.terminator,
                    finished: false,
                });
                js.prompt_tokens += own.len() as u32;
                js.next_item += 1;
            }
        }
    }

    /// One forward pass over every running item.
    fn pass(&mut self) -> Result<(), EngineError> {
        self.batch.clear();
        let p = self.cached.len() as i32;
        let mut rows: Vec<(usize, Row, i32)> = Vec::new();
        for (k, it) in self.items.iter_mut().enumerate() {
            if it.finished {
                continue;
            }
            if it.fed < it.own.len() {
                let room = BATCH - self.batch.len();
                let end = (it.fed + room).min(it.own.len());
                for q in it.fed..end {
                    let last = q + 1 == it.own.len();
                    let row = self
                        .batch
                        .add(it.own[q], p + q as i32, &[it.root_seq], last)
                        .map_err(|e| EngineError::Decode(e.to_string()))?;
                    if last {
                        rows.push((k, Row::Own, row));
                    }
                }
                it.fed = end;
                continue;
            }
            // The item is done only when nothing is pending: nodes added in this pass
            // may still open better paths.
            let per_pass = if it.mode == ScoreMode::Greedy {
                1
            } else {
                PER_PASS
            };
            for added in 0..per_pass {
                if self.batch.len() >= BATCH {
                    break;
                }
                let n = match it.best() {
                    None => {
                        it.finished = added == 0;
                        break;
                    }
                    Some((_, Err(_))) if it.mode != ScoreMode::Exact => {
                        it.finished = added == 0;
                        break;
                    }
                    Some((_, Err(_))) => {
                        // Exact: expand the best open node, if any is left.
                        match it
                            .open
                            .iter()
                            .copied()
                            .max_by(|&a, &b| it.score[a].total_cmp(&it.score[b]))
                        {
                            Some(n) => n,
                            None => {
                                it.finished = added == 0;
                                break;
                            }
                        }
                    }
                    Some((_, Ok(n))) => n,
                };
                let parent = it.trie.parent[n];
                let parent_seq = match parent {
                    Some(q) => it.seq[q],
                    None => it.root_seq,
                };
                let parent_pos = it.base as i32 + it.trie.depth[n] as i32 - 1;
                // Continue the parent's sequence if the parent is its deepest node,
                // otherwise branch into a fresh one.
                let slot = it
                    .seqs
                    .iter()
                    .position(|&(s, tip)| s == parent_seq && tip == parent);
                let s = match slot {
                    Some(i) => {
                        it.seqs[i].1 = Some(n);
                        parent_seq
                    }
                    None => {
                        let Some(s) = it.spare.pop() else {
                            // Cannot happen: an item gets a sequence per leaf.
                            break;
                        };
                        self.ctx.seq_cp(parent_seq, s, p, parent_pos + 1);
                        it.seqs.push((s, Some(n)));
                        s
                    }
                };
                it.open.retain(|&o| o != n);
                it.seq[n] = s;
                it.computed += 1;
                let row = self
                    .batch
                    .add(it.trie.token[n], parent_pos + 1, &[s], true)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
                rows.push((k, Row::Node(n), row));
            }
        }
        if self.batch.is_empty() {
            // Nothing can run: finish the oldest waiting item with what it has, so
            // its sequences come free.
            if let Some(it) = self.items.iter_mut().find(|i| !i.finished) {
                tracing::debug!(
                    item = it.index,
                    open = it.open.len(),
                    free = self.free_seqs.len(),
                    "scoring stalled; finishing an item early"
                );
                it.finished = true;
            }
            return Ok(());
        }
        self.ctx
            .decode(&self.batch)
            .map_err(|e| EngineError::Decode(e.to_string()))?;
        for (k, what, row) in rows {
            let logits = self
                .ctx
                .logits(row)
                .ok_or_else(|| EngineError::Decode("missing logits while scoring".into()))?;
            let it = &mut self.items[k];
            let trie = it.trie.clone();
            let (base, kids, ends): (f32, &[usize], &[usize]) = match what {
                Row::Own => (0.0, &trie.roots, &[]),
                Row::Node(n) => (it.score[n], &trie.children[n], &trie.ends_here[n]),
            };
            let z = if it.mode == ScoreMode::Greedy {
                // Normalise over the options here: the children and, where candidates
                // end, the terminator.
                let mut opts: Vec<f32> = kids
                    .iter()
                    .map(|&c| logits[trie.token[c] as usize])
                    .collect();
                if let (false, Some(t)) = (ends.is_empty(), it.terminator) {
                    opts.push(logits[t as usize]);
                }
                log_sum_exp(&opts)
            } else {
                log_sum_exp(logits)
            };
            for &c in ends {
                let term = it.terminator.map_or(0.0, |t| logits[t as usize] - z);
                it.complete[c] = Some(base + term);
            }
            if it.mode == ScoreMode::Greedy {
                // One path only: the options here replace everything still open.
                it.open.clear();
            }
            for &c in kids {
                it.score[c] = base + logits[trie.token[c] as usize] - z;
                it.open.push(c);
            }
        }
        Ok(())
    }

    /// Hand finished items' results to their jobs, free their sequences, and answer
    /// finished jobs.
    fn retire(&mut self) {
        let p = self.cached.len() as i32;
        let mut k = 0;
        while k < self.items.len() {
            if !self.items[k].finished {
                k += 1;
                continue;
            }
            let it = self.items.swap_remove(k);
            tracing::debug!(
                item = it.index,
                complete = it.complete.iter().filter(|c| c.is_some()).count(),
                open = it.open.len(),
                computed = it.computed,
                fed = it.fed,
                own = it.own.len(),
                mode = ?it.mode,
                "item done"
            );
            for &(s, _) in &it.seqs {
                self.ctx.seq_rm(s, p, -1);
                self.free_seqs.push(s);
            }
            self.free_seqs.extend_from_slice(&it.spare);
            self.cells_used = self
                .cells_used
                .saturating_sub(it.own.len() + tree_cells(it.mode, &it.trie));
            if let Some((_, js)) = self.jobs.iter_mut().find(|(j, _)| *j == it.job) {
                let (scores, exact) = it.results();
                js.scores[it.index] = scores;
                js.exact[it.index] = exact;
                js.candidate_tokens += it.computed;
                js.done_items += 1;
            }
        }
        let mut j = 0;
        while j < self.jobs.len() {
            let (id, js) = &self.jobs[j];
            let running = self.items.iter().any(|i| i.job == *id);
            let complete =
                !running && (js.done_items == js.job.prompts.len() || js.failed.is_some());
            if !complete {
                j += 1;
                continue;
            }
            let (_, js) = self.jobs.swap_remove(j);
            let result = match js.failed {
                Some(e) => Err(e),
                None => {
                    tracing::debug!(
                        items = js.job.prompts.len(),
                        tree_tokens = js.candidate_tokens,
                        ms = js.job.enqueued.elapsed().as_millis() as u64,
                        "scored"
                    );
                    Ok(ScoreOutput {
                        scores: js.scores,
                        exact: js.exact,
                        prompt_tokens: js.prompt_tokens,
                        cached_tokens: js.cached_tokens,
                        candidate_tokens: js.candidate_tokens,
                        compute_us: js.compute.as_micros() as u64,
                    })
                }
            };
            let _ = js.job.tx.send(result);
        }
        if self.items.is_empty() {
            self.cells_used = self.cached.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_normalises() {
        let row = [1.0f32, 2.0, 3.0];
        let z = log_sum_exp(&row);
        let total: f32 = row.iter().map(|l| (l - z).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
}
