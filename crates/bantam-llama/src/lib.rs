//! The only FFI in Bantam: a small, safe wrapper over llama.cpp.
//!
//! Everything `unsafe` in the workspace lives in this crate. It exposes RAII handles
//! ([`Model`], [`Context`], [`Batch`]) shaped for Bantam's engine rather than a
//! general-purpose binding:
//!
//! * [`Model`] is `Send + Sync` and shared through `Arc`: tokenising, detokenising and
//!   metadata are read-only on the C side and are safe to call from any thread.
//! * [`Context`] owns an `Arc<Model>` so it can never outlive its weights; it is `Send`
//!   but not `Sync` — one engine thread drives it.
//! * [`Runtime`] proves that llama.cpp's global state was initialised and that the CPU
//!   kernels were chosen for *this* machine at run time (see [`runtime`]).
//!
//! llama.cpp is built by `llama-cpp-sys-2` as shared libraries with every x86-64 CPU
//! variant of ggml (`GGML_CPU_ALL_VARIANTS`); [`runtime`] loads the best variant the
//! CPU supports, so one binary runs on any x86-64 machine and still uses AVX-512 where
//! it exists.

mod adapter;
mod batch;
mod context;
mod model;
mod quantize;
mod runtime;

pub use adapter::LoraAdapter;
pub use batch::{Batch, BatchError};
pub use context::{Context, ContextError, ContextParams, DecodeError, FlashAttention, Pooling};
pub use model::{LoadError, Model, ModelParams, Token};
pub use quantize::{quantize, QuantType, QuantizeError};
pub use runtime::{runtime, Runtime, RuntimeInfo};
