//! The training loop: masked cross-entropy, gradient accumulation up to a
//! token budget, global-norm clipping, AdamW with a linear schedule (as
//! Hugging Face's `Trainer` defaults), seeded shuffling, validation loss each
//! epoch, and checkpoints that a later run resumes exactly.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::lora::{Lora, SplitMix, Target};
use crate::model::BaseModel;
use crate::LoraError;

/// One tokenized example: the loss covers the tokens whose `mask` is true.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub mask: Vec<bool>,
}

impl Example {
    /// Tokens that are learned (their mask is set and a token precedes them).
    pub fn target_count(&self) -> usize {
        self.mask.iter().skip(1).filter(|m| **m).count()
    }
}

/// Hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub lr: f64,
    pub epochs: usize,
    /// Examples are accumulated into one optimizer step until they hold this many tokens.
    pub batch_tokens: usize,
    pub seed: u64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub warmup_steps: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            rank: 8,
            alpha: 16.0,
            targets: vec!["q".into(), "k".into(), "v".into(), "o".into()],
            lr: 1e-3,
            epochs: 2,
            batch_tokens: 1024,
            seed: 0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            warmup_steps: 0,
        }
    }
}

impl TrainOptions {
    pub fn parsed_targets(&self) -> Result<Vec<Target>, LoraError> {
        crate::lora::parse_targets(&self.targets.join(","))
    }
}

/// Loss after each epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLoss {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub tokens_per_sec: f64,
}

/// What a step reports to the observer.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub epoch: usize,
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
    pub lr: f64,
    pub tokens: usize,
    pub tokens_per_sec: f64,
}

/// Progress hooks; `should_stop` is polled between steps (Ctrl-C).
pub trait Observer {
    fn on_step(&mut self, _r: &StepReport) {}
    fn on_epoch(&mut self, _e: &EpochLoss) {}
    fn should_stop(&self) -> bool {
        false
    }
    /// Called every [`CHECKPOINT_EVERY`] steps and after each epoch with a
    /// consistent state: where a checkpoint is written (a run killed outright
    /// resumes from the last one).
    fn checkpoint(
        &mut self,
        _lora: &Lora,
        _adam: &Adam,
        _state: &TrainState,
    ) -> Result<(), LoraError> {
        Ok(())
    }
}

/// Optimizer steps between checkpoints.
pub const CHECKPOINT_EVERY: usize = 20;

/// Where training stands: everything a resume needs besides the adapters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: usize,
    /// The epoch in progress (0-based) and how many of its batches are done.
    pub epoch: usize,
    pub batch_in_epoch: usize,
    pub curve: Vec<EpochLoss>,
    /// Running sums for the epoch in progress.
    pub epoch_loss_sum: f64,
    pub epoch_targets: usize,
    pub epoch_tokens: usize,
    pub epoch_secs: f64,
}

/// AdamW moments, keyed like [`Lora::named_vars`].
pub struct Adam {
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
}

impl Adam {
    pub fn new(lora: &Lora) -> Result<Self, LoraError> {
        let mut m = HashMap::new();
        let mut v = HashMap::new();
        for (n, var) in lora.named_vars() {
            m.insert(n.clone(), var.as_tensor().zeros_like()?);
            v.insert(n, var.as_tensor().zeros_like()?);
        }
        Ok(Adam { m, v })
    }
}

/// How training ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished,
    /// Stopped on request between steps; the state is consistent for a checkpoint.
    Interrupted,
}

/// Batches of example indices for an epoch: a seeded shuffle, cut where the
/// token budget is reached.
pub fn epoch_batches(train: &[Example], seed: u64, epoch: usize, budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = SplitMix::new(seed ^ (epoch as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut batches = Vec::new();
    let mut cur = Vec::new();
    let mut toks = 0;
    for i in order {
        cur.push(i);
        toks += train[i].tokens.len();
        if toks >= budget.max(1) {
            batches.push(std::mem::take(&mut cur));
            toks = 0;
        }
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

/// Mean masked loss over examples (no gradients kept).
pub fn mean_loss(
    base: &BaseModel,
    lora: Option<&Lora>,
    data: &[Example],
) -> Result<f64, LoraError> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for ex in data {
        let (l, k) = base.loss_sum(&ex.tokens, &ex.mask, lora)?;
        sum += l.detach().to_scalar::<f32>()? as f64;
        n += k;
    }
    if n == 0 {
        return Err(LoraError::Data("no answer tokens to evaluate".into()));
    }
    Ok(sum / n as f64)
}

/// Loss and gradients of one batch, scaled as one mean over its answer tokens.
pub fn batch_gradients(
    base: &BaseModel,
    lora: &Lora,
    batch: &[&Example],
) -> Result<(f64, usize, HashMap<String, Tensor>), LoraError> {
    let total: usize = batch.iter().map(|e| e.target_count()).sum();
    if total == 0 {
        return Err(LoraError::Data("a batch has no answer tokens".into()));
    }
    let mut grads: HashMap<String, Tensor> = HashMap::new();
    let mut loss_sum = 0.0;
    let named = lora.named_vars();
    for ex in batch {
        let (l, _) = base.loss_sum(&ex.tokens, &ex.mask, Some(lora))?;
        loss_sum += l.to_scalar::<f32>()? as f64;
        let scaled = (l / total as f64)?;
        let store = scaled.backward()?;
        for (n, var) in &named {
            if let Some(g) = store.get(var.as_tensor()) {
                let g = g.detach();
                let e = grads.remove(n);
                grads.insert(
                    n.clone(),
                    match e {
                        Some(acc) => (acc + g)?,
                        None => g,
                    },
                );
            }
        }
    }
    Ok((loss_sum / total as f64, total, grads))
}

fn lr_at(opts: &TrainOptions, step: usize, total: usize) -> f64 {
    if step < opts.warmup_steps {
        return opts.lr * (step + 1) as f64 / opts.warmup_steps as f64;
    }
    let decay_steps = total.saturating_sub(opts.warmup_steps).max(1);
    let done = step - opts.warmup_steps;
    opts.lr * (decay_steps.saturating_sub(done)) as f64 / decay_steps as f64
}

/// One AdamW update (PyTorch's formulation) after global-norm clipping.
fn adamw_step(
    lora: &Lora,
    adam: &mut Adam,
    grads: &HashMap<String, Tensor>,
    opts: &TrainOptions,
    lr: f64,
    t: usize,
) -> Result<(), LoraError> {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut sq = 0.0f64;
    for g in grads.values() {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    let clip = if opts.max_grad_norm > 0.0 && norm > opts.max_grad_norm {
        opts.max_grad_norm / (norm + 1e-6)
    } else {
        1.0
    };
    let bc1 = 1.0 - b1.powi(t as i32);
    let bc2 = 1.0 - b2.powi(t as i32);
    for (n, var) in lora.named_vars() {
        let Some(g) = grads.get(&n) else { continue };
        let g = (g * clip)?;
        let m = adam
            .m
            .get_mut(&n)
            .ok_or_else(|| LoraError::Model(format!("no moment for {n}")))?;
        *m = ((&*m * b1)? + (&g * (1.0 - b1))?)?;
        let v = adam
            .v
            .get_mut(&n)
            .ok_or_else(|| LoraError::Model(format!("no moment for {n}")))?;
        *v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
        let p = var.as_tensor();
        let p = if opts.weight_decay > 0.0 {
            (p * (1.0 - lr * opts.weight_decay))?
        } else {
            p.clone()
        };
        let mhat = (&*m / bc1)?;
        let vhat = (&*v / bc2)?;
        let upd = mhat.broadcast_div(&(vhat.sqrt()? + eps)?)?;
        var.set(&(p - (upd * lr)?)?)?;
    }
    Ok(())
}

/// Trains `lora` from `state` to the end (or until the observer asks to stop).
#[allow(clippy::too_many_arguments)]
pub fn train(
    base: &BaseModel,
    lora: &Lora,
    adam: &mut Adam,
    state: &mut TrainState,
    train: &[Example],
    val: &[Example],
    opts: &TrainOptions,
    obs: &mut dyn Observer,
) -> Result<Outcome, LoraError> {
    if train.is_empty() {
        return Err(LoraError::Data("no training examples".into()));
    }
    let per_epoch: Vec<usize> = (0..opts.epochs)
        .map(|e| epoch_batches(train, opts.seed, e, opts.batch_tokens).len())
        .collect();
    let total_steps: usize = per_epoch.iter().sum();
    while state.epoch < opts.epochs {
        let batches = epoch_batches(train, opts.seed, state.epoch, opts.batch_tokens);
        while state.batch_in_epoch < batches.len() {
            if obs.should_stop() {
                return Ok(Outcome::Interrupted);
            }
            let t0 = Instant::now();
            let idx = &batches[state.batch_in_epoch];
            let batch: Vec<&Example> = idx.iter().map(|&i| &train[i]).collect();
            let tokens: usize = batch.iter().map(|e| e.tokens.len()).sum();
            let (loss, targets, grads) = batch_gradients(base, lora, &batch)?;
            let lr = lr_at(opts, state.step, total_steps);
            adamw_step(lora, adam, &grads, opts, lr, state.step + 1)?;
            let secs = t0.elapsed().as_secs_f64();
            state.step += 1;
            state.batch_in_epoch += 1;
            state.epoch_loss_sum += loss * targets as f64;
            state.epoch_targets += targets;
            state.epoch_tokens += tokens;
            state.epoch_secs += secs;
            obs.on_step(&StepReport {
                epoch: state.epoch,
                step: state.step,
                total_steps,
                loss,
                lr,
                tokens,
                tokens_per_sec: tokens as f64 / secs.max(1e-9),
            });
            if state.step.is_multiple_of(CHECKPOINT_EVERY) && state.batch_in_epoch < batches.len() {
                obs.checkpoint(lora, adam, state)?;
            }
        }
        let val_loss = if val.is_empty() {
            None
        } else {
            Some(mean_loss(base, Some(lora), val)?)
        };
        let e = EpochLoss {
            epoch: state.epoch + 1,
            train_loss: state.epoch_loss_sum / state.epoch_targets.max(1) as f64,
            val_loss,
            tokens_per_sec: state.epoch_tokens as f64 / state.epoch_secs.max(1e-9),
        };
        state.curve.push(e.clone());
        state.epoch += 1;
        state.batch_in_epoch = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_targets = 0;
        state.epoch_tokens = 0;
        state.epoch_secs = 0.0;
        // Saved before it is reported: an epoch shown is an epoch kept.
        obs.checkpoint(lora, adam, state)?;
        obs.on_epoch(&e);
    }
    Ok(Outcome::Finished)
}

/// Writes a checkpoint: the adapters and moments (safetensors) and the state
/// and options (JSON), each by temp file + rename.
pub fn save_checkpoint(
    dir: &Path,
    lora: &Lora,
    adam: &Adam,
    state: &TrainState,
    opts: &TrainOptions,
    fingerprint: &str,
) -> Result<(), LoraError> {
    std::fs::create_dir_all(dir).map_err(|e| LoraError::Io(dir.into(), e))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (n, var) in lora.named_vars() {
        tensors.insert(format!("p/{n}"), var.as_tensor().clone());
        tensors.insert(format!("m/{n}"), adam.m[&n].clone());
        tensors.insert(format!("v/{n}"), adam.v[&n].clone());
    }
    // The tensors go to a file named by the step, and state.json, renamed into
    // place last, names it: a process killed anywhere in between leaves the
    // previous checkpoint whole (state and tensors of the same step).
    let name = format!("tensors-{}.safetensors", state.step);
    let tmp = dir.join(format!("{name}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, dir.join(&name)).map_err(|e| LoraError::Io(dir.into(), e))?;
    let meta = serde_json::json!({
        "fingerprint": fingerprint,
        "options": opts,
        "state": state,
        "tensors": name,
    });
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&meta).expect("json"))
        .map_err(|e| LoraError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, dir.join("state.json")).map_err(|e| LoraError::Io(dir.into(), e))?;
    // Older tensor files are no longer named by the state.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.starts_with("tensors") && f != name {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Restores a checkpoint written by [`save_checkpoint`] into fresh adapters
/// of the same shape. The fingerprint (base, data, options) must match.
pub fn load_checkpoint(
    dir: &Path,
    lora: &Lora,
    fingerprint: &str,
) -> Result<(Adam, TrainState, TrainOptions), LoraError> {
    let raw = std::fs::read(dir.join("state.json"))
        .map_err(|e| LoraError::Io(dir.join("state.json"), e))?;
    let meta: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| LoraError::Checkpoint(format!("state.json: {e}")))?;
    if meta["fingerprint"].as_str() != Some(fingerprint) {
        return Err(LoraError::Checkpoint(
            "the checkpoint was made with another base model, data set or options; start without --resume".into(),
        ));
    }
    let state: TrainState = serde_json::from_value(meta["state"].clone())
        .map_err(|e| LoraError::Checkpoint(format!("state: {e}")))?;
    let opts: TrainOptions = serde_json::from_value(meta["options"].clone())
        .map_err(|e| LoraError::Checkpoint(format!("options: {e}")))?;
    let file = meta["tensors"].as_str().unwrap_or("tensors.safetensors");
    if file.contains(['/', '\\']) || file.starts_with('.') {
        return Err(LoraError::Checkpoint(format!("state.json names {file:?}")));
    }
    let tensors = candle_core::safetensors::load(dir.join(file), &Device::Cpu)?;
    let mut m = HashMap::new();
    let mut v = HashMap::new();
    let get = |k: &str| {
        tensors
            .get(k)
            .cloned()
            .ok_or_else(|| LoraError::Checkpoint(format!("the checkpoint lacks {k}")))
    };
    for (n, var) in lora.named_vars() {
        let p = get(&format!("p/{n}"))?;
        if p.dims() != var.as_tensor().dims() {
            return Err(LoraError::Checkpoint(format!("{n} has another shape")));
        }
        var.set(&p)?;
        m.insert(n.clone(), get(&format!("m/{n}"))?);
        v.insert(n.clone(), get(&format!("v/{n}"))?);
    }
    Ok((Adam { m, v }, state, opts))
}

/// Copies values into a var set (used by tests that need a nonzero `B`).
pub fn set_var(var: &Var, values: Vec<f32>) -> Result<(), LoraError> {
    let t = Tensor::from_vec(values, var.as_tensor().dims(), &Device::Cpu)?;
    var.set(&t)?;
    Ok(())
}
