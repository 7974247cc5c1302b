//! [`Context`]: a KV cache plus compute buffers bound to one [`Model`].

use std::ptr::NonNull;
use std::sync::Arc;

use crate::adapter::LoraAdapter;
use crate::batch::Batch;
use crate::model::Model;

/// Flash-attention policy for a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashAttention {
    /// Let llama.cpp decide.
    Auto,
    /// Always on.
    On,
    /// Always off (measured faster on CPU for the small models; see BENCHMARKS.md).
    #[default]
    Off,
}

/// How a context pools token vectors into one vector per sequence (llama.cpp's
/// `llama_pooling_type`). Only meaningful with `embeddings` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Whatever the model's GGUF declares (`<arch>.pooling_type`).
    #[default]
    ModelDefault,
    /// No pooling: one vector per token.
    None,
    /// Mean of the sequence's token vectors.
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
    /// The last token's vector.
    Last,
}

impl Pooling {
    fn raw(self) -> llama_cpp_sys_2::llama_pooling_type {
        match self {
            Pooling::ModelDefault => llama_cpp_sys_2::LLAMA_POOLING_TYPE_UNSPECIFIED,
            Pooling::None => llama_cpp_sys_2::LLAMA_POOLING_TYPE_NONE,
            Pooling::Mean => llama_cpp_sys_2::LLAMA_POOLING_TYPE_MEAN,
            Pooling::Cls => llama_cpp_sys_2::LLAMA_POOLING_TYPE_CLS,
            Pooling::Last => llama_cpp_sys_2::LLAMA_POOLING_TYPE_LAST,
        }
    }
}

/// Shape of a context.
#[derive(Debug, Clone)]
pub struct ContextParams {
    /// Total KV cache cells (shared by all sequences when `kv_unified`).
    pub n_ctx: u32,
    /// Largest batch submitted to one `decode`.
    pub n_batch: u32,
    /// Physical micro-batch size.
    pub n_ubatch: u32,
    /// Number of distinct sequences (parallel slots).
    pub n_seq_max: u32,
    /// Threads for single-token decoding.
    pub n_threads: i32,
    /// Threads for prompt processing.
    pub n_threads_batch: i32,
    /// Flash attention policy.
    pub flash_attention: FlashAttention,
    /// One KV buffer shared by all sequences (allows cheap prefix sharing).
    pub kv_unified: bool,
    /// Produce embeddings instead of (or as well as) logits.
    pub embeddings: bool,
    /// Pooling of embeddings per sequence.
    pub pooling: Pooling,
    /// A LoRA adapter applied to everything this context computes.
    pub adapter: Option<Arc<LoraAdapter>>,
    /// Contexts that share this lock compute in turn: one `decode` at a time.
    /// llama.cpp's worker threads spin while they wait for each other, so two
    /// contexts decoding at once on the same cores are many times slower than
    /// the two one after the other (BENCHMARKS.md: a base and its adapters).
    pub turn: Option<Arc<std::sync::Mutex<()>>>,
}

impl Default for ContextParams {
    fn default() -> Self {
        Self {
            n_ctx: 4096,
            n_batch: 512,
            n_ubatch: 512,
            n_seq_max: 1,
            n_threads: 1,
            n_threads_batch: 1,
            flash_attention: FlashAttention::Off,
            kv_unified: true,
            embeddings: false,
            pooling: Pooling::ModelDefault,
            adapter: None,
            turn: None,
        }
    }
}

/// Errors creating a context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// llama.cpp could not allocate the context (usually out of memory).
    #[error("llama.cpp could not create a context with n_ctx={n_ctx}, n_seq_max={n_seq_max} (out of memory?)")]
    Create {
        /// Requested KV cells.
        n_ctx: u32,
        /// Requested sequences.
        n_seq_max: u32,
    },
    /// The LoRA adapter could not be applied.
    #[error("applying the LoRA adapter: {0}")]
    Adapter(String),
}

/// Errors from `decode`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// No room in the KV cache for the batch; free cells and retry.
    #[error("no free KV cache slot for the batch")]
    NoKvSlot,
    /// Decoding was aborted.
    #[error("decode aborted")]
    Aborted,
    /// The batch was rejected as invalid.
    #[error("invalid batch")]
    InvalidBatch,
    /// A model without a KV cache (an encoder such as BERT) must see every token of
    /// a batch in one micro-batch; llama.cpp would abort the process otherwise.
    #[error("{tokens} tokens in one batch, but this encoder context computes at most {n_ubatch} at once")]
    TooManyTokens {
        /// Tokens in the batch.
        tokens: usize,
        /// The context's micro-batch size.
        n_ubatch: u32,
    },
    /// Any other failure code from llama.cpp.
    #[error("llama_decode failed with code {0}")]
    Failed(i32),
}

/// A llama.cpp context. Driven by one thread at a time.
#[derive(Debug)]
pub struct Context {
    ptr: NonNull<llama_cpp_sys_2::llama_context>,
    model: Arc<Model>,
    n_vocab: usize,
    /// Kept alive while the context may use it (dropped after `llama_free`).
    _adapter: Option<Arc<LoraAdapter>>,
    turn: Option<Arc<std::sync::Mutex<()>>>,
}

// SAFETY: a llama_context is not tied to the thread that created it; all access goes
// through `&mut self` or `&self` on one owner at a time (the type is not `Sync`).
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: created by llama_init_from_model and freed once, before the model
        // (this struct holds an Arc to it).
        unsafe { llama_cpp_sys_2::llama_free(self.ptr.as_ptr()) }
    }
}

impl Context {
    /// Create a context for `model`.
    pub fn new(model: Arc<Model>, params: &ContextParams) -> Result<Self, ContextError> {
        // SAFETY: default params are plain data.
        let mut p = unsafe { llama_cpp_sys_2::llama_context_default_params() };
        p.n_ctx = params.n_ctx;
        p.n_batch = params.n_batch;
        p.n_ubatch = params.n_ubatch.min(params.n_batch);
        p.n_seq_max = params.n_seq_max;
        p.n_threads = params.n_threads;
        p.n_threads_batch = params.n_threads_batch;
        p.flash_attn_type = match params.flash_attention {
            FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        p.kv_unified = params.kv_unified;
        p.embeddings = params.embeddings;
        p.pooling_type = params.pooling.raw();
        p.no_perf = false;
        // SAFETY: the model pointer is valid for the lifetime of the returned context
        // because we keep an Arc to it.
        let raw = unsafe { llama_cpp_sys_2::llama_init_from_model(model.as_ptr(), p) };
        let ptr = NonNull::new(raw).ok_or(ContextError::Create {
            n_ctx: params.n_ctx,
            n_seq_max: params.n_seq_max,
        })?;
        let n_vocab = model.n_vocab();
        let ctx = Self {
            ptr,
            model,
            n_vocab,
            _adapter: params.adapter.clone(),
            turn: params.turn.clone(),
        };
        if let Some(a) = &params.adapter {
            if !Arc::ptr_eq(a.model(), &ctx.model) {
                return Err(ContextError::Adapter(
                    "the adapter was loaded for another model".into(),
                ));
            }
            let mut adapters = [a.as_ptr()];
            let mut scales = [a.scale];
            // SAFETY: the context and adapter pointers are valid; the arrays hold
            // one element each, as the count says; llama.cpp copies them.
            let rc = unsafe {
                llama_cpp_sys_2::llama_set_adapters_lora(
                    ctx.ptr.as_ptr(),
                    adapters.as_mut_ptr(),
                    1,
                    scales.as_mut_ptr(),
                )
            };
            if rc != 0 {
                return Err(ContextError::Adapter(format!(
                    "llama_set_adapters_lora returned {rc}"
                )));
            }
        }
        Ok(ctx)
    }

    /// The model this context runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Total KV cells.
    pub fn n_ctx(&self) -> u32 {
        // SAFETY: valid context.
        unsafe { llama_cpp_sys_2::llama_n_ctx(self.ptr.as_ptr()) }
    }

    /// Run the model over a batch. Logits are then available for every token added
    /// with `logits = true`, by its index in the batch.
    pub fn decode(&mut self, batch: &Batch) -> Result<(), DecodeError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Without a memory module llama_decode runs the encoder, which asserts (and
        // aborts) when the batch does not fit one micro-batch.
        if !self.has_memory() && batch.len() > self.n_ubatch() as usize {
            return Err(DecodeError::TooManyTokens {
                tokens: batch.len(),
                n_ubatch: self.n_ubatch(),
            });
        }
        // A poisoned lock only means another context panicked mid-turn; the
        // lock guards no data.
        let _turn = self
            .turn
            .as_ref()
            .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()));
        // SAFETY: the batch's arrays are valid for `n_tokens` entries (Batch checks
        // capacity on every add) and the context is valid.
        let rc = unsafe { llama_cpp_sys_2::llama_decode(self.ptr.as_ptr(), batch.raw()) };
        match rc {
            0 => Ok(()),
            1 => Err(DecodeError::NoKvSlot),
            2 => Err(DecodeError::Aborted),
            -1 => Err(DecodeError::InvalidBatch),
            n => Err(DecodeError::Failed(n)),
        }
    }

    /// Logits of the `i`-th token of the last decoded batch (which must have asked for
    /// logits). Returns `None` when that token had no output.
    pub fn logits(&self, i: i32) -> Option<&[f32]> {
        // SAFETY: llama_get_logits_ith returns null for invalid indices (it checks
        // bounds and output flags); otherwise the row holds n_vocab floats that stay
        // valid until the next decode, which needs `&mut self`.
        unsafe {
            let p = llama_cpp_sys_2::llama_get_logits_ith(self.ptr.as_ptr(), i);
            if p.is_null() {
                None
            } else {
                Some(std::slice::from_raw_parts(p, self.n_vocab))
            }
        }
    }

    /// Physical micro-batch size.
    pub fn n_ubatch(&self) -> u32 {
        // SAFETY: valid context.
        unsafe { llama_cpp_sys_2::llama_n_ubatch(self.ptr.as_ptr()) }
    }

    /// Largest number of distinct sequences (sequence ids are `0..n_seq_max`).
    pub fn n_seq_max(&self) -> u32 {
        // SAFETY: valid context.
        unsafe { llama_cpp_sys_2::llama_n_seq_max(self.ptr.as_ptr()) }
    }

    /// Whether the context keeps a KV cache (false for encoders such as BERT, whose
    /// every batch is computed on its own).
    pub fn has_memory(&self) -> bool {
        !self.memory().is_null()
    }

    /// Remove every sequence from the KV cache (no-op without one).
    pub fn clear_memory(&mut self) {
        // SAFETY: the handle is valid or null, and llama_memory_clear accepts null.
        unsafe { llama_cpp_sys_2::llama_memory_clear(self.memory(), true) }
    }

    /// Use causal (left-to-right) or full attention from the next decode on.
    pub fn set_causal_attn(&mut self, causal: bool) {
        // SAFETY: valid context; the flag is read at the next decode.
        unsafe { llama_cpp_sys_2::llama_set_causal_attn(self.ptr.as_ptr(), causal) }
    }

    /// The pooling this context applies (the model's default resolved).
    pub fn pooling(&self) -> Pooling {
        // SAFETY: valid context.
        match unsafe { llama_cpp_sys_2::llama_pooling_type(self.ptr.as_ptr()) } {
            llama_cpp_sys_2::LLAMA_POOLING_TYPE_MEAN => Pooling::Mean,
            llama_cpp_sys_2::LLAMA_POOLING_TYPE_CLS => Pooling::Cls,
            llama_cpp_sys_2::LLAMA_POOLING_TYPE_LAST => Pooling::Last,
            _ => Pooling::None,
        }
    }

    /// The pooled embedding of sequence `seq` from the last decoded batch (a context
    /// created with `embeddings` on and mean, CLS or last pooling). `None` if the
    /// sequence was not in that batch or the context does not pool.
    pub fn embeddings_seq(&self, seq: i32) -> Option<&[f32]> {
        if !matches!(self.pooling(), Pooling::Mean | Pooling::Cls | Pooling::Last) {
            return None;
        }
        let n = self.model.n_embd_out();
        // SAFETY: llama_get_embeddings_seq synchronises the context (which only one
        // thread drives: `Context` is not Sync) and returns null for a sequence without
        // a pooled vector; otherwise the vector holds n_embd_out floats (the pooled
        // output width for these pooling types) and stays valid until the next decode
        // or clear, both of which need `&mut self`.
        unsafe {
            let p = llama_cpp_sys_2::llama_get_embeddings_seq(self.ptr.as_ptr(), seq);
            if p.is_null() {
                None
            } else {
                Some(std::slice::from_raw_parts(p, n))
            }
        }
    }

    fn memory(&self) -> llama_cpp_sys_2::llama_memory_t {
        // SAFETY: valid context; the memory handle lives as long as the context.
        unsafe { llama_cpp_sys_2::llama_get_memory(self.ptr.as_ptr()) }
    }

    /// Remove positions `[p0, p1)` of `seq` from the KV cache (`p1 < 0` = to the end,
    /// `seq < 0` = every sequence). Returns false if the cache cannot do a partial removal.
    pub fn seq_rm(&mut self, seq: i32, p0: i32, p1: i32) -> bool {
        // SAFETY: valid memory handle.
        unsafe { llama_cpp_sys_2::llama_memory_seq_rm(self.memory(), seq, p0, p1) }
    }

    /// Make positions `[p0, p1)` of `src` also belong to `dst` (shares cells in a
    /// unified cache, copies otherwise).
    pub fn seq_cp(&mut self, src: i32, dst: i32, p0: i32, p1: i32) {
        // SAFETY: valid memory handle.
        unsafe { llama_cpp_sys_2::llama_memory_seq_cp(self.memory(), src, dst, p0, p1) }
    }

    /// Largest position stored for `seq`, or -1 if it is empty.
    pub fn seq_pos_max(&self, seq: i32) -> i32 {
        // SAFETY: valid memory handle.
        unsafe { llama_cpp_sys_2::llama_memory_seq_pos_max(self.memory(), seq) }
    }

    /// Vocabulary size (length of each logits row).
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }
}
