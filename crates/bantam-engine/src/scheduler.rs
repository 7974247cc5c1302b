//! The continuous-batching scheduler that runs on each engine's thread.
//!
//! * A fixed number of **slots**, one llama.cpp sequence each. A slot is idle or runs
//!   one request; an idle slot keeps the KV cache of the tokens it last processed.
//! * Every **step** builds one batch: one token for each generating request, then
//!   prompt chunks for requests still in prefill, up to `batch_size` tokens in all.
//!   A request admitted between steps joins the next batch; nobody waits for a
//!   running request to finish.
//! * **Prefix reuse**: a new request goes to the idle slot whose cache shares the
//!   longest prefix with its prompt; if another slot (even a busy one) shares a longer
//!   prefix, its cells are copied. Only the rest of the prompt is computed. The KV
//!   cache is fixed at `parallel × ctx_size` cells, which bounds the memory.
//! * **Cancellation**: a request whose receiver is gone (client disconnected) is
//!   dropped at the next step and its slot is free at once.
//!
//! The queue is bounded by the [`crate::Engine`] before a job reaches this thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bantam_llama::{Batch, Context, DecodeError, Model};
use bantam_structured::Guide;
use bantam_types::generate::{
    FinishReason, GenerateEvent, GenerateRequest, LogprobEntry, Timings, TokenLogprob, Usage,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::detok::Utf8Stream;
use crate::sampler::{logprobs, Sampler};
use crate::score::{ScoreJob, Scorer};
use crate::stop::StopMatcher;
use crate::EngineError;

/// Messages from [`crate::Engine`] to its thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// Run a request.
    Generate(Box<Job>),
    /// Score candidates (classification).
    Score(ScoreJob),
    /// Stop the thread; running requests get [`EngineError::Stopped`].
    Shutdown,
}

/// Sender half of a request's event stream.
pub(crate) type EventTx = UnboundedSender<Result<GenerateEvent, EngineError>>;

/// A tokenised request waiting for a slot.
#[derive(Debug)]
pub(crate) struct Job {
    pub tokens: Vec<i32>,
    pub req: GenerateRequest,
    /// Structured-output state, compiled before the job was queued.
    pub guide: Option<Box<Guide>>,
    pub tx: EventTx,
    pub enqueued: Instant,
}

/// Scheduler settings derived from the engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct SchedConfig {
    /// Parameters for the scoring context, created on first use.
    pub score_params: bantam_llama::ContextParams,
    pub ctx_per_seq: usize,
    pub batch_size: usize,
    pub prefix_cache: bool,
    pub kv_unified: bool,
}

struct Active {
    job: Job,
    sampler: Sampler,
    utf8: Utf8Stream,
    stop: StopMatcher,
    /// Prompt tokens already in the KV cache.
    prompt_done: usize,
    generated: u32,
    /// Sampled token not yet fed to the model.
    next_token: Option<i32>,
    cached_tokens: usize,
    admitted: Instant,
    first_token: Option<Instant>,
    /// Engine time attributed to this request so far.
    compute: Duration,
    pending_logprobs: Vec<LogprobEntry>,
    /// Index of this slot's output row in the current batch.
    out_index: Option<i32>,
    /// Logits row with the constraint's mask applied.
    masked: Vec<f32>,
}

struct Slot {
    seq: i32,
    /// Tokens whose KV is in the cache for this sequence, at positions `0..len`.
    cached: Vec<i32>,
    last_used: Instant,
    active: Option<Box<Active>>,
    /// Tokens fed in the current step (appended to `cached` when the step succeeds).
    fed: Vec<i32>,
}

pub(crate) struct Scheduler {
    ctx: Context,
    model: Arc<Model>,
    slots: Vec<Slot>,
    waiting: VecDeque<Job>,
    batch: Batch,
    cfg: SchedConfig,
    inflight: Arc<AtomicUsize>,
    scorer: Option<Scorer>,
}

fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Scheduler {
    pub(crate) fn new(
        ctx: Context,
        parallel: usize,
        cfg: SchedConfig,
        inflight: Arc<AtomicUsize>,
    ) -> Self {
        let model = ctx.model().clone();
        let now = Instant::now();
        let slots = (0..parallel)
            .map(|i| Slot {
                seq: i as i32,
                cached: Vec::new(),
                last_used: now,
                active: None,
                fed: Vec::new(),
            })
            .collect();
        Self {
            batch: Batch::new(cfg.batch_size.max(parallel), 1),
            ctx,
            model,
            slots,
            waiting: VecDeque::new(),
            cfg,
            inflight,
            scorer: None,
        }
    }

    fn busy(&self) -> bool {
        !self.waiting.is_empty()
            || self.slots.iter().any(|s| s.active.is_some())
            || self.scorer.as_ref().is_some_and(Scorer::busy)
    }

    /// The thread's main loop. Returns when told to shut down or when the engine
    /// handle is dropped and no work is left.
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        let mut open = true;
        loop {
            // Block only when there is nothing to compute.
            if !self.busy() {
                if !open {
                    return;
                }
                match rx.recv() {
                    Ok(cmd) => {
                        if !self.handle(cmd) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(cmd) => {
                        if !self.handle(cmd) {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.drop_cancelled();
            self.admit();
            self.step();
            if let Some(sc) = self.scorer.as_mut() {
                sc.work();
            }
        }
    }

    /// Returns false on shutdown.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Generate(job) => {
                self.waiting.push_back(*job);
                true
            }
            Command::Score(job) => {
                if self.scorer.is_none() {
                    match Scorer::new(self.model.clone(), &self.cfg.score_params) {
                        Ok(sc) => self.scorer = Some(sc),
                        Err(e) => {
                            let _ = job.tx.send(Err(e));
                            return true;
                        }
                    }
                }
                if let Some(sc) = self.scorer.as_mut() {
                    sc.push(job);
                }
                true
            }
            Command::Shutdown => {
                if let Some(sc) = self.scorer.as_mut() {
                    sc.stop();
                }
                for job in self.waiting.drain(..) {
                    let _ = job.tx.send(Err(EngineError::Stopped));
                    self.inflight.fetch_sub(1, Ordering::SeqCst);
                }
                for slot in &mut self.slots {
                    if let Some(a) = slot.active.take() {
                        let _ = a.job.tx.send(Err(EngineError::Stopped));
                        self.inflight.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                false
            }
        }
    }

    /// Free the slots of requests whose client went away.
    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|j| !j.tx.is_closed());
        let gone = before - self.waiting.len();
        if gone > 0 {
            self.inflight.fetch_sub(gone, Ordering::SeqCst);
        }
        for i in 0..self.slots.len() {
            if self.slots[i]
                .active
                .as_ref()
                .is_some_and(|a| a.job.tx.is_closed())
            {
                tracing::debug!(
                    seq = self.slots[i].seq,
                    "request cancelled by client; slot freed"
                );
                self.release(i);
            }
        }
    }

    /// Move waiting jobs into free slots, reusing cached prefixes.
    fn admit(&mut self) {
        while !self.waiting.is_empty() {
            let Some(job) = self.waiting.front() else {
                break;
            };
            let prompt = &job.tokens;
            // The idle slot sharing the longest prefix (oldest first on ties).
            let target = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
                .max_by(|(_, a), (_, b)| {
                    let la = if self.cfg.prefix_cache {
                        common_prefix(&a.cached, prompt)
                    } else {
                        0
                    };
                    let lb = if self.cfg.prefix_cache {
                        common_prefix(&b.cached, prompt)
                    } else {
                        0
                    };
                    la.cmp(&lb).then(b.last_used.cmp(&a.last_used))
                })
                .map(|(i, _)| i);
            let Some(target) = target else { break };
            let job = self.waiting.pop_front().expect("front exists");
            self.start(target, job);
        }
    }

    fn start(&mut self, target: usize, job: Job) {
        let prompt_len = job.tokens.len();
        let max_reuse = prompt_len.saturating_sub(1);
        let mut reuse = 0;
        if self.cfg.prefix_cache {
            let own = common_prefix(&self.slots[target].cached, &job.tokens).min(max_reuse);
            // Best other slot to copy from.
            let other = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != target)
                .map(|(i, s)| (i, common_prefix(&s.cached, &job.tokens).min(max_reuse)))
                .max_by_key(|&(_, l)| l);
            // Copying a whole per-sequence buffer is not free: only worth it for a real gain.
            let min_gain = if self.cfg.kv_unified { 1 } else { 64 };
            match other {
                Some((src, l)) if l >= own + min_gain => {
                    let (dst_seq, src_seq) = (self.slots[target].seq, self.slots[src].seq);
                    self.ctx.seq_rm(dst_seq, -1, -1);
                    if self.cfg.kv_unified {
                        self.ctx.seq_cp(src_seq, dst_seq, 0, l as i32);
                    } else {
                        self.ctx.seq_cp(src_seq, dst_seq, -1, -1);
                        self.ctx.seq_rm(dst_seq, l as i32, -1);
                    }
                    let prefix = self.slots[src].cached[..l].to_vec();
                    self.slots[target].cached = prefix;
                    reuse = l;
                }
                _ => reuse = own,
            }
        }
        let slot = &mut self.slots[target];
        if !self.ctx.seq_rm(slot.seq, reuse as i32, -1) {
            // This cache cannot drop a tail (recurrent models): start from scratch.
            self.ctx.seq_rm(slot.seq, -1, -1);
            reuse = 0;
        }
        slot.cached.truncate(reuse);
        let sampler = Sampler::new(job.req.sampling.clone(), &job.tokens);
        let stop = StopMatcher::new(job.req.stop.clone());
        tracing::debug!(seq = slot.seq, prompt_len, reuse, "request admitted");
        slot.active = Some(Box::new(Active {
            sampler,
            stop,
            utf8: Utf8Stream::default(),
            prompt_done: reuse,
            generated: 0,
            next_token: None,
            cached_tokens: reuse,
            admitted: Instant::now(),
            first_token: None,
            compute: Duration::ZERO,
            pending_logprobs: Vec::new(),
            out_index: None,
            masked: Vec::new(),
            job,
        }));
    }

    /// One decode over every running request.
    fn step(&mut self) {
        self.batch.clear();
        // Generating requests first: one token each.
        for slot in &mut self.slots {
            slot.fed.clear();
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            a.out_index = None;
            if let Some(tok) = a.next_token {
                let idx = self
                    .batch
                    .add(tok, slot.cached.len() as i32, &[slot.seq], true)
                    .expect("batch holds one token per slot");
                a.out_index = Some(idx);
                slot.fed.push(tok);
            }
        }
        // Then prompt chunks, oldest admission first.
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i]
                    .active
                    .as_ref()
                    .is_some_and(|a| a.next_token.is_none() && a.prompt_done < a.job.tokens.len())
            })
            .collect();
        order.sort_by_key(|&i| self.slots[i].active.as_ref().map(|a| a.admitted));
        for i in order {
            let room = self.batch.capacity() - self.batch.len();
            if room == 0 {
                break;
            }
            let slot = &mut self.slots[i];
            let a = slot.active.as_mut().expect("filtered active");
            let end = (a.prompt_done + room).min(a.job.tokens.len());
            for p in a.prompt_done..end {
                let last = p + 1 == a.job.tokens.len();
                let tok = a.job.tokens[p];
                let idx = self
                    .batch
                    .add(tok, p as i32, &[slot.seq], last)
                    .expect("room was checked");
                if last {
                    a.out_index = Some(idx);
                }
                slot.fed.push(tok);
            }
            a.prompt_done = end;
        }
        if self.batch.is_empty() {
            return;
        }

        let t0 = Instant::now();
        let decoded = self.decode_with_eviction();
        // Each request's share of the step: its tokens in the batch.
        let step = t0.elapsed();
        let fed_total: usize = self.slots.iter().map(|s| s.fed.len()).sum();
        if fed_total > 0 {
            for slot in &mut self.slots {
                if let Some(a) = slot.active.as_mut() {
                    a.compute += step.mul_f64(slot.fed.len() as f64 / fed_total as f64);
                }
            }
        }
        if let Err(e) = decoded {
            tracing::error!(error = %e, "decode failed; failing the requests in this batch");
            for i in 0..self.slots.len() {
                if self.slots[i].fed.is_empty() {
                    continue;
                }
                self.finish_err(i, EngineError::Decode(e.to_string()));
                let seq = self.slots[i].seq;
                self.ctx.seq_rm(seq, -1, -1);
                self.slots[i].cached.clear();
            }
            return;
        }

        for i in 0..self.slots.len() {
            let fed = std::mem::take(&mut self.slots[i].fed);
            self.slots[i].cached.extend_from_slice(&fed);
            let idx = self.slots[i].active.as_ref().and_then(|a| a.out_index);
            if let Some(idx) = idx {
                let t = Instant::now();
                self.after_logits(i, idx);
                // Sampling (and the constraint's mask) is this request's alone; the
                // slot may have finished meanwhile, its time then goes unrecorded.
                if let Some(a) = self.slots[i].active.as_mut() {
                    a.compute += t.elapsed();
                }
            }
        }
    }

    fn decode_with_eviction(&mut self) -> Result<(), DecodeError> {
        match self.ctx.decode(&self.batch) {
            Err(DecodeError::NoKvSlot) => {
                // Free the caches of idle slots, oldest first, and retry.
                let mut idle: Vec<usize> = (0..self.slots.len())
                    .filter(|&i| self.slots[i].active.is_none() && !self.slots[i].cached.is_empty())
                    .collect();
                idle.sort_by_key(|&i| self.slots[i].last_used);
                for i in idle {
                    self.ctx.seq_rm(self.slots[i].seq, -1, -1);
                    self.slots[i].cached.clear();
                    match self.ctx.decode(&self.batch) {
                        Err(DecodeError::NoKvSlot) => continue,
                        other => return other,
                    }
                }
                Err(DecodeError::NoKvSlot)
            }
            other => other,
        }
    }

    /// Sample from the output row `idx` of slot `i` and deliver the result.
    fn after_logits(&mut self, i: usize, idx: i32) {
        let Some(logits) = self.ctx.logits(idx) else {
            self.finish_err(i, EngineError::Decode("no logits for the request".into()));
            return;
        };
        let model = &self.model;
        let slot = &mut self.slots[i];
        let a = slot
            .active
            .as_mut()
            .expect("slot with an output row is active");
        let token = match a.job.guide.as_mut().filter(|g| g.is_active()) {
            None => a.sampler.sample(logits),
            Some(g) => match g.mask() {
                Ok(mask) => {
                    a.masked.clear();
                    a.masked.extend_from_slice(logits);
                    mask.apply(&mut a.masked);
                    a.sampler.sample(&a.masked)
                }
                Err(e) => {
                    self.finish_err(i, e.into());
                    return;
                }
            },
        };
        let lp = a.job.req.logprobs.map(|n| {
            let (chosen, top) = logprobs(logits, token, n as usize);
            let entry = |id: i32, logprob: f32| {
                let bytes = model.token_bytes(id, false);
                TokenLogprob {
                    id,
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    bytes,
                    logprob,
                }
            };
            LogprobEntry {
                token: entry(token, chosen),
                top: top.into_iter().map(|(id, l)| entry(id, l)).collect(),
            }
        });
        if a.first_token.is_none() {
            a.first_token = Some(Instant::now());
        }

        if model.is_eog(token) && !a.job.req.ignore_eos {
            self.finish(i, FinishReason::Stop, true);
            return;
        }
        a.sampler.accept(token);
        let bytes = model.token_bytes(token, false);
        if let Some(g) = a.job.guide.as_mut() {
            if let Err(e) = g.accept(token as u32, &bytes) {
                self.finish_err(i, e.into());
                return;
            }
        }
        a.generated += 1;
        if let Some(lp) = lp {
            a.pending_logprobs.push(lp);
        }
        let text = a.utf8.push(&bytes);
        let scan = a.stop.push(&text);
        if !scan.emit.is_empty() {
            let ev = GenerateEvent::Delta {
                text: scan.emit,
                logprobs: std::mem::take(&mut a.pending_logprobs),
            };
            if a.job.tx.send(Ok(ev)).is_err() {
                self.cancel(i);
                return;
            }
        }
        if scan.stopped {
            a.pending_logprobs.clear();
            self.finish(i, FinishReason::Stop, false);
            return;
        }
        if a.job.guide.as_ref().is_some_and(|g| g.is_complete()) {
            // The grammar admits nothing more: the structured output is complete.
            self.finish(i, FinishReason::Stop, true);
            return;
        }
        let at_max = a.job.req.max_tokens.is_some_and(|m| a.generated >= m);
        // The sampled token still needs a cell: stop when the sequence is full.
        let ctx_full = slot.cached.len() + 1 >= self.cfg.ctx_per_seq;
        if at_max || ctx_full {
            self.finish(i, FinishReason::Length, true);
            return;
        }
        a.next_token = Some(token);
    }

    /// Make slot `i` idle (its request is over or gone) and apply the cache policy.
    /// Returns the request it was running.
    fn release(&mut self, i: usize) -> Option<Box<Active>> {
        let slot = &mut self.slots[i];
        let a = slot.active.take()?;
        slot.last_used = Instant::now();
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        if !self.cfg.prefix_cache {
            self.ctx.seq_rm(slot.seq, -1, -1);
            slot.cached.clear();
        } else if self.cfg.kv_unified {
            self.trim_idle_caches();
        }
        Some(a)
    }

    /// In a unified KV cache every token attends over the whole used range, idle
    /// slots' cells included: keep the idle caches within one sequence's worth of
    /// tokens, dropping the least recently used first.
    fn trim_idle_caches(&mut self) {
        let budget = self.cfg.ctx_per_seq;
        loop {
            let idle = || {
                self.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.active.is_none() && !s.cached.is_empty())
            };
            let total: usize = idle().map(|(_, s)| s.cached.len()).sum();
            if total <= budget {
                return;
            }
            let Some(victim) = idle().min_by_key(|(_, s)| s.last_used).map(|(i, _)| i) else {
                return;
            };
            self.ctx.seq_rm(self.slots[victim].seq, -1, -1);
            self.slots[victim].cached.clear();
        }
    }

    fn cancel(&mut self, i: usize) {
        self.release(i);
    }

    fn finish_err(&mut self, i: usize, err: EngineError) {
        if let Some(a) = self.release(i) {
            let _ = a.job.tx.send(Err(err));
        }
    }

    /// End a request. `flush` releases text held back for possible stop strings or
    /// incomplete characters (not after a stop string matched: that text is cut).
    fn finish(&mut self, i: usize, reason: FinishReason, flush: bool) {
        let Some(mut a) = self.release(i) else {
            return;
        };
        let mut tail = String::new();
        if flush {
            let scan = a.stop.push(&a.utf8.finish());
            tail = scan.emit;
            if !scan.stopped {
                tail.push_str(&a.stop.finish());
            }
        }
        if !tail.is_empty() || !a.pending_logprobs.is_empty() {
            let _ = a.job.tx.send(Ok(GenerateEvent::Delta {
                text: tail,
                logprobs: std::mem::take(&mut a.pending_logprobs),
            }));
        }
        if let Some(g) = a.job.guide.as_mut() {
            let why = match (reason, flush) {
                (FinishReason::Length, _) => Some("max_tokens or the context limit reached"),
                (FinishReason::Stop, false) => Some("a stop string matched"),
                (FinishReason::Stop, true) => None,
            };
            if let Err(e) = g.finish(why) {
                tracing::debug!(error = %e, "structured output rejected");
                let _ = a.job.tx.send(Err(e.into()));
                return;
            }
        }
        let now = Instant::now();
        let first = a.first_token.unwrap_or(now);
        let timings = Timings {
            queue_ms: ms(a.admitted - a.job.enqueued),
            prefill_ms: ms(first - a.admitted),
            decode_ms: ms(now - first),
        };
        let usage = Usage {
            prompt_tokens: a.job.tokens.len() as u32,
            completion_tokens: a.generated,
            cached_tokens: a.cached_tokens as u32,
            compute_us: a.compute.as_micros() as u64,
        };
        let _ = a.job.tx.send(Ok(GenerateEvent::Done {
            finish_reason: reason,
            usage,
            timings,
        }));
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn common_prefix_len() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
    }
}
