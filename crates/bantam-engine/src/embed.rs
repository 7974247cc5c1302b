//! [`Embedder`]: sentence embeddings from an encoder model (all-MiniLM-L6-v2 and
//! other BERT-family GGUFs), computed in-process by llama.cpp.
//!
//! One llama.cpp context with embeddings on, the model's pooling (mean for
//! sentence-transformers models, as their pooling module says) and full
//! (non-causal) attention. A call tokenises every text (`[CLS] … [SEP]`), packs
//! short texts together into one batch — each text its own sequence; see
//! `PACK_TOKENS` for why only short ones — decodes it and reads one pooled vector
//! per sequence, then L2-normalises it (sentence-transformers' `Normalize` module),
//! so the dot product of two vectors is their cosine similarity.
//!
//! An encoder has no KV cache: every batch is computed in one pass, so a batch may
//! hold at most `n_ubatch` tokens and a single text must fit in it. Texts longer
//! than [`Embedder::max_tokens`] (the model's trained context, 512 for MiniLM, capped
//! at 2048) are truncated to their first tokens, keeping the final `[SEP]`, as
//! Hugging Face tokenizers truncate. Note that sentence-transformers itself cuts
//! all-MiniLM-L6-v2 inputs at 256 tokens (`max_seq_length`), so its vectors for
//! longer texts differ from these.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bantam_llama::{
    Batch, Context, ContextParams, FlashAttention, Model, ModelParams, Pooling, Token,
};

use crate::config::physical_cores;
use crate::EngineError;

/// Longest input accepted (in tokens, special tokens included), whatever the model's
/// trained context: the attention of one batch grows with the square of its tokens.
const MAX_TOKENS_CAP: u32 = 2048;
/// Tokens per batch at least (so that short texts share a pass).
const MIN_BATCH_TOKENS: u32 = 512;
/// Texts per batch at most.
const MAX_SEQS: u32 = 64;
/// Texts share a batch only while it holds at most this many tokens. Every token
/// of an encoder batch attends to every other (other sequences are masked out, but
/// still computed), so the attention cost grows with the square of the batch: on
/// the 2-core development machine (all-MiniLM-L6-v2, 2 threads) 4-token texts cost
/// 3.5 ms alone and 1.5 ms each packed 8 to a batch, while 22-token texts cost
/// 7.4 ms alone but 9.5 ms each two to a batch and 20 ms each 32 to a batch.
/// Flash attention made single texts slower (10–11 ms) and large batches no better
/// than one text per batch.
const PACK_TOKENS: usize = 32;

/// Vectors and the number of tokens they were computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One L2-normalised vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens over all inputs after truncation, special tokens included (what the
    /// OpenAI API reports as `usage.prompt_tokens`).
    pub prompt_tokens: usize,
}

struct State {
    ctx: Context,
    batch: Batch,
}

/// A loaded embedding model. `Send + Sync`: calls from several threads are
/// serialised by an internal lock (each call uses all the configured threads).
/// `embed` blocks while it computes; from async code call it inside
/// `tokio::task::spawn_blocking`.
pub struct Embedder {
    model: Arc<Model>,
    state: Mutex<State>,
    dim: usize,
    max_tokens: usize,
    batch_tokens: usize,
    max_seqs: usize,
    threads: u32,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("model", &self.model.description())
            .field("dim", &self.dim)
            .field("max_tokens", &self.max_tokens)
            .field("threads", &self.threads)
            .finish()
    }
}

impl Embedder {
    /// Load a GGUF embedding model. `threads` = 0 uses the number of physical cores.
    /// Fails for models that do not pool a vector per sequence (generative models
    /// without a pooling type).
    pub fn load(path: &Path, threads: u32) -> Result<Embedder, EngineError> {
        Self::load_with(path, threads, None)
    }

    /// Load any GGUF model — a generative decoder too — as a feature extractor: its
    /// last hidden states pooled by `pooling` (`Mean` or `Last`), with the model's
    /// own attention (causal for a decoder). For classifier features
    /// (`bantam tune classify --features mean:MODEL`), not for sentence embeddings.
    pub fn load_pooled(
        path: &Path,
        threads: u32,
        pooling: Pooling,
    ) -> Result<Embedder, EngineError> {
        Self::load_with(path, threads, Some(pooling))
    }

    fn load_with(
        path: &Path,
        threads: u32,
        forced: Option<Pooling>,
    ) -> Result<Embedder, EngineError> {
        let load_err = |reason: String| EngineError::Load {
            model: path.display().to_string(),
            reason,
        };
        let rt = bantam_llama::runtime();
        let model = Arc::new(
            Model::load(rt, path, &ModelParams::default()).map_err(|e| load_err(e.to_string()))?,
        );
        let threads = if threads > 0 {
            threads
        } else {
            physical_cores()
        };
        let max_tokens = model.n_ctx_train().clamp(8, MAX_TOKENS_CAP);
        let batch_tokens = max_tokens.max(MIN_BATCH_TOKENS);
        let arch = model.meta("general.architecture").unwrap_or_default();
        // An embedding model says how its token vectors become one per sequence; a
        // generative model does not (and is refused rather than silently averaged).
        let pooling = match (forced, model.meta(&format!("{arch}.pooling_type")).as_deref()) {
            (Some(p @ (Pooling::Mean | Pooling::Last)), _) => p,
            (Some(_), _) => {
                return Err(load_err(
                    "features from a model's hidden states are pooled by mean or last token".into(),
                ))
            }
            (None, Some("1")) => Pooling::Mean,
            (None, Some("2")) => Pooling::Cls,
            (None, Some("3")) => Pooling::Last,
            _ => {
                return Err(load_err(format!(
                    "it declares no pooling of token vectors ({arch}.pooling_type): a generative model, not an embedding model"
                )))
            }
        };
        let params = ContextParams {
            n_ctx: batch_tokens,
            n_batch: batch_tokens,
            n_ubatch: batch_tokens,
            n_seq_max: MAX_SEQS,
            n_threads: threads as i32,
            n_threads_batch: threads as i32,
            flash_attention: FlashAttention::Off,
            // Models with a KV cache (decoders used as embedders) share its cells
            // between the sequences of a batch.
            kv_unified: true,
            embeddings: true,
            pooling,
            adapter: None,
            turn: None,
        };
        let mut ctx = Context::new(model.clone(), &params).map_err(|e| load_err(e.to_string()))?;
        if forced.is_none() {
            // Sentence encoders attend both ways; a decoder keeps its causal mask.
            ctx.set_causal_attn(false);
        }
        if !matches!(ctx.pooling(), Pooling::Mean | Pooling::Cls | Pooling::Last) {
            return Err(load_err(
                "the model does not pool a vector per sequence; it is not an embedding model"
                    .into(),
            ));
        }
        let dim = model.n_embd_out();
        if dim == 0 {
            return Err(load_err("the model reports no embedding width".into()));
        }
        let batch_tokens = ctx.n_ubatch().min(batch_tokens) as usize;
        let max_seqs = ctx.n_seq_max().min(MAX_SEQS) as usize;
        let max_tokens = (max_tokens as usize).min(batch_tokens);
        tracing::debug!(
            model = %model.description(),
            dim,
            max_tokens,
            batch_tokens,
            threads,
            "embedding model loaded"
        );
        Ok(Embedder {
            model,
            state: Mutex::new(State {
                ctx,
                batch: Batch::new(batch_tokens, 1),
            }),
            dim,
            max_tokens,
            batch_tokens,
            max_seqs,
            threads,
        })
    }

    /// Width of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Longest input in tokens (special tokens included); longer texts are truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Threads each call uses.
    pub fn threads(&self) -> u32 {
        self.threads
    }

    /// The tokens `text` is embedded from: `[CLS] … [SEP]` for BERT, truncated to
    /// [`max_tokens`](Self::max_tokens) with the final special token kept.
    pub fn tokenize(&self, text: &str) -> Vec<Token> {
        self.truncate(self.tokenize_all(text))
    }

    /// All of `text`'s tokens, special tokens included (may exceed
    /// [`max_tokens`](Self::max_tokens)).
    pub fn tokenize_all(&self, text: &str) -> Vec<Token> {
        self.model.tokenize(text, true, false)
    }

    /// Token ids of the model's vocabulary as an input: wrapped in the special tokens
    /// the model's tokeniser adds (`[CLS] … [SEP]`) unless they are already there.
    /// An id outside the vocabulary is [`EngineError::BadToken`].
    pub fn wrap_tokens(&self, ids: &[Token]) -> Result<Vec<Token>, EngineError> {
        let n = self.model.n_vocab();
        if let Some(&bad) = ids.iter().find(|&&t| t < 0 || t as usize >= n) {
            return Err(EngineError::BadToken(bad));
        }
        let specials = self.model.tokenize("", true, false);
        let mut out = Vec::with_capacity(ids.len() + 2);
        let (head, tail) = match specials.as_slice() {
            [h, t] => (Some(*h), Some(*t)),
            [h] => (Some(*h), None),
            _ => (None, None),
        };
        if let Some(h) = head.filter(|h| ids.first() != Some(h)) {
            out.push(h);
        }
        out.extend_from_slice(ids);
        if let Some(t) = tail.filter(|t| ids.last() != Some(t)) {
            out.push(t);
        }
        Ok(out)
    }

    /// `toks` cut to [`max_tokens`](Self::max_tokens), keeping a final special
    /// token.
    pub fn truncate(&self, mut toks: Vec<Token>) -> Vec<Token> {
        if toks.len() > self.max_tokens {
            let last = toks[toks.len() - 1];
            if self.model.is_control(last) {
                toks.truncate(self.max_tokens - 1);
                toks.push(last);
            } else {
                toks.truncate(self.max_tokens);
            }
        }
        toks
    }

    /// One L2-normalised vector per text, in order. See the module docs for
    /// truncation.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError> {
        Ok(self.embed_with_usage(texts)?.vectors)
    }

    /// [`embed`](Self::embed), also counting the tokens.
    pub fn embed_with_usage(&self, texts: &[&str]) -> Result<Embeddings, EngineError> {
        let tokenized: Vec<Vec<Token>> = texts.iter().map(|t| self.tokenize(t)).collect();
        self.embed_token_lists(&tokenized)
    }

    /// One vector per token list (special tokens included, each at most
    /// [`max_tokens`](Self::max_tokens) long), with the token count.
    pub fn embed_token_lists(&self, tokenized: &[Vec<Token>]) -> Result<Embeddings, EngineError> {
        if let Some(long) = tokenized.iter().find(|t| t.len() > self.max_tokens) {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: long.len(),
                ctx_size: self.max_tokens,
            });
        }
        Ok(Embeddings {
            vectors: self.embed_tokens(tokenized, PACK_TOKENS)?,
            prompt_tokens: tokenized.iter().map(Vec::len).sum(),
        })
    }

    /// The model the vectors come from (its vocabulary tokenises the texts).
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// One L2-normalised vector per token sequence (special tokens included, as
    /// [`tokenize`](Self::tokenize) makes them). Sequences share a batch while it
    /// holds at most `pack` tokens (see `PACK_TOKENS` for the cost of packing).
    pub(crate) fn embed_tokens(
        &self,
        tokenized: &[Vec<Token>],
        pack: usize,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        if tokenized.iter().any(Vec::is_empty) {
            return Err(EngineError::EmptyPrompt);
        }
        // A panic in another call cannot leave the context half-used: the memory is
        // cleared before every batch.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { ctx, batch } = &mut *guard;
        let mut vectors = Vec::with_capacity(tokenized.len());
        let mut next = 0;
        while next < tokenized.len() {
            ctx.clear_memory();
            batch.clear();
            let first = next;
            while next < tokenized.len()
                && next - first < self.max_seqs
                && batch.len() + tokenized[next].len() <= self.batch_tokens
                && (batch.is_empty() || batch.len() + tokenized[next].len() <= pack)
            {
                let seq = (next - first) as i32;
                for (pos, &tok) in tokenized[next].iter().enumerate() {
                    batch
                        .add(tok, pos as i32, &[seq], true)
                        .map_err(|e| EngineError::Decode(e.to_string()))?;
                }
                next += 1;
            }
            if next == first {
                return Err(EngineError::Decode(format!(
                    "{} tokens do not fit a batch of {}",
                    tokenized[next].len(),
                    self.batch_tokens
                )));
            }
            let result = ctx.decode(batch);
            if let Err(e) = result {
                ctx.clear_memory();
                return Err(EngineError::Decode(e.to_string()));
            }
            for seq in 0..(next - first) {
                let v = ctx.embeddings_seq(seq as i32).ok_or_else(|| {
                    EngineError::Decode(format!("llama.cpp returned no vector for sequence {seq}"))
                })?;
                vectors.push(normalized(v));
            }
        }
        ctx.clear_memory();
        Ok(vectors)
    }
}

/// `v / ‖v‖` (a zero vector stays zero).
fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        v.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
    } else {
        v.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedder_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Embedder>();
    }

    #[test]
    fn normalizes() {
        let v = normalized(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn load_reports_a_missing_file() {
        let e = Embedder::load(Path::new("/nonexistent/model.gguf"), 1).unwrap_err();
        assert!(matches!(e, EngineError::Load { .. }), "{e}");
    }
}
