//! [`StaticEmbedder`]: sentence embeddings distilled from an encoder into one vector
//! per vocabulary token (Model2Vec's idea), for decisions that must take
//! microseconds instead of an encoder pass.
//!
//! Distillation runs the encoder once over every vocabulary token on its own
//! (`[CLS] token [SEP]`, the model's pooling, L2-normalised) and keeps the vectors.
//! A text's embedding is then the mean of its tokens' vectors (special tokens left
//! out), L2-normalised: a tokenisation and a few hundred additions per token. It
//! knows what each word means to the encoder but not how the words of a sentence
//! act on each other, so it sits between the encoder and bag-of-n-gram features in
//! quality (`BENCHMARKS.md`: routing CLINC150).
//!
//! The table is deterministic for a model file and costs one pass over the vocabulary
//! (38–45 s for all-MiniLM-L6-v2's 30,522 tokens on 2 cores), so callers keep
//! it in a file: [`save`](StaticEmbedder::save) writes it atomically with a sha256 of
//! its contents, [`load`](StaticEmbedder::load) checks that and the model it belongs
//! to, and anything that does not match is an error (distil again) rather than wrong
//! vectors.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bantam_llama::{Model, ModelParams, Token};
use sha2::{Digest, Sha256};

use crate::embed::Embedder;
use crate::EngineError;

const MAGIC: &[u8; 8] = b"BNTMSTE2";
/// magic, dim, vocab, source length.
const HEADER: usize = 8 + 4 + 4 + 4;
/// Vocabulary tokens per encoder call while distilling (each is a short sequence of
/// its own; 64 of them share a batch).
const CHUNK: usize = 256;
/// Tokens per batch while distilling: single-token texts are cheap to pack.
const PACK: usize = 256;

/// Static token vectors of an embedding model. `Send + Sync`, no lock: embedding is
/// a pure function of the table.
pub struct StaticEmbedder {
    vocab: Arc<Model>,
    dim: usize,
    /// `n_vocab × dim`, row-major; control tokens' rows are zero, so they add
    /// nothing to a mean (which is normalised, not divided by a count).
    table: Vec<f32>,
    /// What the table was distilled from (written into the file; `load` checks it).
    source: String,
}

impl std::fmt::Debug for StaticEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticEmbedder")
            .field("dim", &self.dim)
            .field("vocab", &self.n_vocab())
            .finish()
    }
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> EngineError {
    EngineError::Load {
        model: path.display().to_string(),
        reason: format!("static embedding table: {why}"),
    }
}

impl StaticEmbedder {
    /// Distil `embedder`'s model: one encoder pass per vocabulary token.
    /// `progress(done, total)` is called after every chunk of tokens. `source`
    /// names the model file (e.g. its sha256); [`load`](Self::load) checks it.
    pub fn distill(
        embedder: &Embedder,
        source: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, EngineError> {
        let model = embedder.model().clone();
        let n = model.n_vocab();
        let dim = embedder.dim();
        // `[CLS] [SEP]` (or whatever the model adds around a text).
        let around = model.tokenize("", true, false);
        let (pre, post): (Vec<Token>, Vec<Token>) = match around.as_slice() {
            [] => (Vec::new(), Vec::new()),
            [a] if model.adds_bos() => (vec![*a], Vec::new()),
            [a] => (Vec::new(), vec![*a]),
            [a, rest @ ..] => (vec![*a], rest.to_vec()),
        };
        let mut table = vec![0f32; n * dim];
        let ids: Vec<Token> = (0..n as Token).filter(|&t| !model.is_control(t)).collect();
        let mut done = 0;
        for chunk in ids.chunks(CHUNK) {
            let seqs: Vec<Vec<Token>> = chunk
                .iter()
                .map(|&t| {
                    pre.iter()
                        .copied()
                        .chain([t])
                        .chain(post.iter().copied())
                        .collect()
                })
                .collect();
            let vectors = embedder.embed_tokens(&seqs, PACK)?;
            for (&t, v) in chunk.iter().zip(vectors) {
                table[t as usize * dim..(t as usize + 1) * dim].copy_from_slice(&v);
            }
            done += chunk.len();
            progress(done, ids.len());
        }
        Ok(Self {
            vocab: model,
            dim,
            table,
            source: source.to_string(),
        })
    }

    fn n_vocab(&self) -> usize {
        self.table.len() / self.dim.max(1)
    }

    /// Width of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The vector of one vocabulary token (zero for control tokens).
    pub fn token_vector(&self, token: Token) -> Option<&[f32]> {
        let t = usize::try_from(token)
            .ok()
            .filter(|&t| t < self.n_vocab())?;
        Some(&self.table[t * self.dim..(t + 1) * self.dim])
    }

    /// The L2-normalised mean of the text's token vectors; a zero vector for a text
    /// with no tokens.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        for row in self
            .vocab
            .tokenize(text, false, false)
            .into_iter()
            .filter_map(|t| self.token_vector(t))
        {
            v.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.source.len() + self.table.len() * 4 + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.n_vocab() as u32).to_le_bytes());
        out.extend_from_slice(&(self.source.len() as u32).to_le_bytes());
        out.extend_from_slice(self.source.as_bytes());
        for x in &self.table {
            out.extend_from_slice(&x.to_le_bytes());
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Write the table to `path` atomically (a temporary file beside it, synced, then
    /// renamed), ending in the sha256 of everything before it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()
        };
        if let Err(e) = write().and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// Read a table saved by [`save`](Self::save) for the model at `model_path`,
    /// checking its checksum, that it was distilled from `source` and that its shape
    /// fits the model's vocabulary and embedding width.
    pub fn load(path: &Path, model_path: &Path, source: &str) -> Result<Self, EngineError> {
        let bytes = std::fs::read(path).map_err(|e| corrupt(path, e))?;
        if bytes.len() < HEADER + 32 || &bytes[..8] != MAGIC {
            return Err(corrupt(path, "not a Bantam static embedding file"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(corrupt(path, "checksum mismatch (truncated or damaged)"));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]]);
        let (dim, n, slen) = (u32_at(8) as usize, u32_at(12) as usize, u32_at(16) as usize);
        let expect = HEADER + slen + n * dim * 4;
        if body.len() != expect {
            return Err(corrupt(
                path,
                format!("{} bytes where {expect} were expected", body.len()),
            ));
        }
        let got_source = std::str::from_utf8(&body[HEADER..HEADER + slen])
            .map_err(|_| corrupt(path, "source is not UTF-8"))?;
        if got_source != source {
            return Err(corrupt(
                path,
                format!("distilled from {got_source:?}, not {source:?}"),
            ));
        }
        let vocab = Arc::new(
            Model::load(
                bantam_llama::runtime(),
                model_path,
                &ModelParams {
                    vocab_only: true,
                    ..ModelParams::default()
                },
            )
            .map_err(|e| EngineError::Load {
                model: model_path.display().to_string(),
                reason: e.to_string(),
            })?,
        );
        if vocab.n_vocab() != n {
            return Err(corrupt(
                path,
                format!("made for {n} tokens; the model has {}", vocab.n_vocab()),
            ));
        }
        let table = body[HEADER + slen..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Self {
            vocab,
            dim,
            table,
            source: source.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_embedder_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<StaticEmbedder>();
    }

    #[test]
    fn load_rejects_what_is_not_a_table() {
        let dir = std::env::temp_dir().join(format!("bantam-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.bin");
        std::fs::write(
            &p,
            b"not a table at all, but long enough to have a header......",
        )
        .unwrap();
        let e = StaticEmbedder::load(&p, Path::new("/nonexistent.gguf"), "x").unwrap_err();
        assert!(
            e.to_string().contains("not a Bantam static embedding"),
            "{e}"
        );
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[0u8; 60]);
        std::fs::write(&p, &b).unwrap();
        let e = StaticEmbedder::load(&p, Path::new("/nonexistent.gguf"), "x").unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        let e = StaticEmbedder::load(&dir.join("missing"), Path::new("/x"), "x").unwrap_err();
        assert!(e.to_string().contains("static embedding table"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
