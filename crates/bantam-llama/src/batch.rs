//! [`Batch`]: tokens, positions and sequence ids submitted to one `decode`.

use crate::model::Token;

/// Errors adding to a batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The batch already holds its capacity of tokens.
    #[error("batch is full ({0} tokens)")]
    Full(usize),
    /// More sequence ids for one token than the batch was created for.
    #[error("too many sequence ids for one token (max {0})")]
    TooManySeqs(usize),
}

/// An owned `llama_batch`.
#[derive(Debug)]
pub struct Batch {
    raw: llama_cpp_sys_2::llama_batch,
    capacity: usize,
    n_seq_max: usize,
}

// SAFETY: the batch owns its heap arrays; nothing in it is tied to a thread.
unsafe impl Send for Batch {}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init and freed once.
        unsafe { llama_cpp_sys_2::llama_batch_free(self.raw) }
    }
}

impl Batch {
    /// A batch for up to `capacity` tokens, each in up to `n_seq_max` sequences.
    pub fn new(capacity: usize, n_seq_max: usize) -> Self {
        let capacity = capacity.max(1);
        let n_seq_max = n_seq_max.max(1);
        // SAFETY: allocates arrays of `capacity` entries; embd = 0 so `token` is used.
        let raw =
            unsafe { llama_cpp_sys_2::llama_batch_init(capacity as i32, 0, n_seq_max as i32) };
        let mut b = Self {
            raw,
            capacity,
            n_seq_max,
        };
        b.clear();
        b
    }

    /// Remove every token.
    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// Number of tokens in the batch.
    pub fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.n_tokens == 0
    }

    /// Capacity in tokens.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Append a token at position `pos` of the given sequences; `logits` asks for its
    /// output row. Returns the token's index in the batch.
    pub fn add(
        &mut self,
        token: Token,
        pos: i32,
        seqs: &[i32],
        logits: bool,
    ) -> Result<i32, BatchError> {
        let i = self.len();
        if i >= self.capacity {
            return Err(BatchError::Full(self.capacity));
        }
        if seqs.len() > self.n_seq_max || seqs.is_empty() {
            return Err(BatchError::TooManySeqs(self.n_seq_max));
        }
        // SAFETY: `i < capacity`, so every array write is in bounds; seq_id[i] points
        // to an array of n_seq_max entries and `seqs.len() <= n_seq_max`.
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = seqs.len() as i32;
            let dst = *self.raw.seq_id.add(i);
            for (k, s) in seqs.iter().enumerate() {
                *dst.add(k) = *s;
            }
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        Ok(i as i32)
    }

    pub(crate) fn raw(&self) -> llama_cpp_sys_2::llama_batch {
        self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_respects_capacity_and_seq_limits() {
        let mut b = Batch::new(2, 1);
        assert_eq!(b.add(1, 0, &[0], false), Ok(0));
        assert_eq!(b.add(2, 1, &[0, 1], true), Err(BatchError::TooManySeqs(1)));
        assert_eq!(b.add(2, 1, &[0], true), Ok(1));
        assert_eq!(b.add(3, 2, &[0], true), Err(BatchError::Full(2)));
        assert_eq!(b.len(), 2);
        b.clear();
        assert!(b.is_empty());
    }
}
