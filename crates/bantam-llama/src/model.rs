//! [`Model`]: loaded GGUF weights and vocabulary.

use std::ffi::{c_char, CString};
use std::path::Path;
use std::ptr::NonNull;

use crate::runtime::{cstr_to_string, Runtime};

/// A token id in the model's vocabulary.
pub type Token = i32;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct ModelParams {
    /// Map the file instead of reading it (fast cold start, pages shared between processes).
    pub use_mmap: bool,
    /// Layers to offload to a GPU when one is present (`-1` = all).
    pub n_gpu_layers: i32,
    /// Load only the vocabulary and metadata (for inspection; no inference).
    pub vocab_only: bool,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            use_mmap: true,
            n_gpu_layers: -1,
            vocab_only: false,
        }
    }
}

/// Errors from loading a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The path is not valid UTF-8 or holds a NUL byte.
    #[error("the model's path cannot be passed to llama.cpp (not UTF-8, or a NUL byte)")]
    BadPath(std::path::PathBuf),
    /// llama.cpp refused the file (corrupt, truncated or unsupported architecture).
    #[error("llama.cpp could not load the file (not a GGUF file, truncated, or an unsupported architecture)")]
    Rejected(std::path::PathBuf),
}

/// Loaded model weights. Shared between threads through `Arc`.
#[derive(Debug)]
pub struct Model {
    ptr: NonNull<llama_cpp_sys_2::llama_model>,
    vocab: NonNull<llama_cpp_sys_2::llama_vocab>,
}

// SAFETY: after loading, a llama_model and its vocab are only read. llama.cpp's
// tokenizer, detokenizer and metadata getters are `const` and keep no shared mutable
// state, and llama-server calls them from several threads at once.
unsafe impl Send for Model {}
// SAFETY: see `Send` above.
unsafe impl Sync for Model {}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from llama_model_load_from_file and is freed exactly once;
        // every Context holds an Arc<Model>, so none outlives it.
        unsafe { llama_cpp_sys_2::llama_model_free(self.ptr.as_ptr()) }
    }
}

impl Model {
    /// Load a GGUF file.
    pub fn load(_rt: &Runtime, path: &Path, params: &ModelParams) -> Result<Self, LoadError> {
        let c_path = path
            .to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| LoadError::BadPath(path.to_path_buf()))?;
        // SAFETY: default params are plain data.
        let mut p = unsafe { llama_cpp_sys_2::llama_model_default_params() };
        p.n_gpu_layers = params.n_gpu_layers;
        p.vocab_only = params.vocab_only;
        p.load_mode = if params.use_mmap {
            llama_cpp_sys_2::LLAMA_LOAD_MODE_MMAP
        } else {
            llama_cpp_sys_2::LLAMA_LOAD_MODE_NONE
        };
        // SAFETY: `c_path` is a valid C string; `p` is a fully initialised struct.
        let raw = unsafe { llama_cpp_sys_2::llama_model_load_from_file(c_path.as_ptr(), p) };
        let ptr = NonNull::new(raw).ok_or_else(|| LoadError::Rejected(path.to_path_buf()))?;
        // SAFETY: `ptr` is a valid model; the vocab lives as long as the model.
        let vocab = unsafe { llama_cpp_sys_2::llama_model_get_vocab(ptr.as_ptr()) };
        let vocab = NonNull::new(vocab.cast_mut()).ok_or_else(|| {
            // SAFETY: free the model we just loaded before reporting the error.
            unsafe { llama_cpp_sys_2::llama_model_free(ptr.as_ptr()) };
            LoadError::Rejected(path.to_path_buf())
        })?;
        Ok(Self { ptr, vocab })
    }

    pub(crate) fn as_ptr(&self) -> *mut llama_cpp_sys_2::llama_model {
        self.ptr.as_ptr()
    }

    fn vocab(&self) -> *const llama_cpp_sys_2::llama_vocab {
        self.vocab.as_ptr()
    }

    /// One metadata value as a string (`general.architecture`, …).
    pub fn meta(&self, key: &str) -> Option<String> {
        let key = CString::new(key).ok()?;
        read_c_string(|buf, len| {
            // SAFETY: `buf` has room for `len` bytes; the model is valid.
            unsafe {
                llama_cpp_sys_2::llama_model_meta_val_str(self.ptr.as_ptr(), key.as_ptr(), buf, len)
            }
        })
    }

    /// Every metadata key and value (long arrays are summarised by llama.cpp).
    pub fn meta_all(&self) -> Vec<(String, String)> {
        // SAFETY: the model is valid.
        let n = unsafe { llama_cpp_sys_2::llama_model_meta_count(self.ptr.as_ptr()) };
        (0..n)
            .filter_map(|i| {
                let k = read_c_string(|buf, len| {
                    // SAFETY: index below the count; `buf` has room for `len` bytes.
                    unsafe {
                        llama_cpp_sys_2::llama_model_meta_key_by_index(
                            self.ptr.as_ptr(),
                            i,
                            buf,
                            len,
                        )
                    }
                })?;
                let v = read_c_string(|buf, len| {
                    // SAFETY: as above.
                    unsafe {
                        llama_cpp_sys_2::llama_model_meta_val_str_by_index(
                            self.ptr.as_ptr(),
                            i,
                            buf,
                            len,
                        )
                    }
                })?;
                Some((k, v))
            })
            .collect()
    }

    /// The model's default chat template (`tokenizer.chat_template`), if it has one.
    pub fn chat_template(&self) -> Option<String> {
        // SAFETY: the model is valid; a null name asks for the default template. The
        // returned string is owned by the model.
        let p = unsafe {
            llama_cpp_sys_2::llama_model_chat_template(self.ptr.as_ptr(), std::ptr::null())
        };
        if p.is_null() {
            None
        } else {
            // SAFETY: non-null, NUL-terminated, owned by the model.
            Some(unsafe { cstr_to_string(p) })
        }
    }

    /// A short description such as `llama 135M Q4_1`.
    pub fn description(&self) -> String {
        read_c_string(|buf, len| {
            // SAFETY: `buf` has room for `len` bytes.
            unsafe { llama_cpp_sys_2::llama_model_desc(self.ptr.as_ptr(), buf, len) }
        })
        .unwrap_or_default()
    }

    /// Context length the model was trained with.
    pub fn n_ctx_train(&self) -> u32 {
        // SAFETY: the model is valid.
        unsafe { llama_cpp_sys_2::llama_model_n_ctx_train(self.ptr.as_ptr()) }.max(0) as u32
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        // SAFETY: the vocab is valid.
        unsafe { llama_cpp_sys_2::llama_vocab_n_tokens(self.vocab()) }.max(0) as usize
    }

    /// Embedding width.
    pub fn n_embd(&self) -> usize {
        // SAFETY: the model is valid.
        unsafe { llama_cpp_sys_2::llama_model_n_embd(self.ptr.as_ptr()) }.max(0) as usize
    }

    /// Width of the model's output vectors (pooled embeddings); equals
    /// [`n_embd`](Self::n_embd) for most models.
    pub fn n_embd_out(&self) -> usize {
        // SAFETY: the model is valid.
        unsafe { llama_cpp_sys_2::llama_model_n_embd_out(self.ptr.as_ptr()) }.max(0) as usize
    }

    /// Number of parameters.
    pub fn n_params(&self) -> u64 {
        // SAFETY: the model is valid.
        unsafe { llama_cpp_sys_2::llama_model_n_params(self.ptr.as_ptr()) }
    }

    /// Size of the weights in bytes.
    pub fn size_bytes(&self) -> u64 {
        // SAFETY: the model is valid.
        unsafe { llama_cpp_sys_2::llama_model_size(self.ptr.as_ptr()) }
    }

    /// Beginning-of-sequence token, if the vocabulary has one.
    pub fn bos(&self) -> Option<Token> {
        // SAFETY: the vocab is valid.
        let t = unsafe { llama_cpp_sys_2::llama_vocab_bos(self.vocab()) };
        (t >= 0).then_some(t)
    }

    /// End-of-sequence token, if any.
    pub fn eos(&self) -> Option<Token> {
        // SAFETY: the vocab is valid.
        let t = unsafe { llama_cpp_sys_2::llama_vocab_eos(self.vocab()) };
        (t >= 0).then_some(t)
    }

    /// Whether the tokenizer adds BOS when asked to add special tokens.
    pub fn adds_bos(&self) -> bool {
        // SAFETY: the vocab is valid.
        unsafe { llama_cpp_sys_2::llama_vocab_get_add_bos(self.vocab()) }
    }

    /// Whether `token` ends generation (EOS, EOT, `<|im_end|>`, …).
    pub fn is_eog(&self, token: Token) -> bool {
        // SAFETY: the vocab is valid; out-of-range ids are handled by llama.cpp.
        token >= 0
            && (token as usize) < self.n_vocab()
            && unsafe { llama_cpp_sys_2::llama_vocab_is_eog(self.vocab(), token) }
    }

    /// Whether `token` is a control token (rendered only when asked for special text).
    pub fn is_control(&self, token: Token) -> bool {
        // SAFETY: as above.
        token >= 0
            && (token as usize) < self.n_vocab()
            && unsafe { llama_cpp_sys_2::llama_vocab_is_control(self.vocab(), token) }
    }

    /// Tokenise `text`. `add_special` adds BOS/EOS as the model is configured to;
    /// `parse_special` turns special-token text (`<|im_start|>`) into those tokens.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<Token> {
        let len = i32::try_from(text.len()).unwrap_or(i32::MAX);
        let mut out: Vec<Token> = vec![0; text.len() + 2];
        loop {
            // SAFETY: `text` is valid for `len` bytes; `out` has room for its length.
            let n = unsafe {
                llama_cpp_sys_2::llama_tokenize(
                    self.vocab(),
                    text.as_ptr().cast::<c_char>(),
                    len,
                    out.as_mut_ptr(),
                    out.len() as i32,
                    add_special,
                    parse_special,
                )
            };
            if n >= 0 {
                out.truncate(n as usize);
                return out;
            }
            if n == i32::MIN {
                return Vec::new();
            }
            out.resize((-n) as usize, 0);
        }
    }

    /// The bytes of one token. `special` renders control tokens as their text.
    /// A token may be part of a UTF-8 character; join bytes before decoding.
    pub fn token_bytes(&self, token: Token, special: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 32];
        loop {
            // SAFETY: `buf` has room for its length; the vocab is valid.
            let n = unsafe {
                llama_cpp_sys_2::llama_token_to_piece(
                    self.vocab(),
                    token,
                    buf.as_mut_ptr().cast::<c_char>(),
                    buf.len() as i32,
                    0,
                    special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize((-n) as usize, 0);
        }
    }

    /// Convert tokens back to text (lossy on invalid UTF-8).
    pub fn detokenize(&self, tokens: &[Token], special: bool) -> String {
        let bytes: Vec<u8> = tokens
            .iter()
            .flat_map(|&t| self.token_bytes(t, special))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The raw vocabulary text of a token (as stored in the GGUF).
    pub fn token_text(&self, token: Token) -> String {
        if token < 0 || token as usize >= self.n_vocab() {
            return String::new();
        }
        // SAFETY: in-range token; the returned string is owned by the vocab.
        unsafe { cstr_to_string(llama_cpp_sys_2::llama_vocab_get_text(self.vocab(), token)) }
    }
}

/// Call a llama.cpp "write into buffer, return length" function, growing the buffer.
fn read_c_string(mut f: impl FnMut(*mut c_char, usize) -> i32) -> Option<String> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = f(buf.as_mut_ptr().cast::<c_char>(), buf.len());
        if n < 0 {
            return None;
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
        buf.resize(n + 1, 0);
    }
}
