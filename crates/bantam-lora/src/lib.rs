//! LoRA fine-tuning on the CPU.
//!
//! The base model is read from its GGUF file and dequantized to f32
//! ([`model::BaseModel`]); low-rank adapters ([`lora::Lora`]) sit on the
//! chosen linear layers and are the only trainable tensors. candle's autograd
//! provides the gradients; [`train::train`] runs AdamW with a masked
//! cross-entropy loss; the result is written as a llama.cpp GGUF adapter
//! (`general.type = adapter`), which `bantam-llama` applies when serving.
//!
//! Why candle and not llama.cpp's `llama_opt_*`: see BENCHMARKS.md
//! ("LoRA training engine"). In short, llama.cpp's optimizer trains only F32
//! model tensors, has no trainable adapters, no adapter save and no loss mask;
//! adding them means patching the vendored C++; here the whole trainer is a
//! few hundred lines of Rust that we own and test against PyTorch + PEFT.
//!
//! This crate has no FFI and no `unsafe`.

pub mod lora;
pub mod merge;
pub mod model;
pub mod train;

use std::path::PathBuf;

pub use lora::{parse_targets, Lora, Target};
pub use model::{BaseModel, ModelConfig, RopeStyle, SUPPORTED_ARCHS};
pub use train::{Example, Observer, Outcome, TrainOptions, TrainState};

/// Errors training or writing adapters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoraError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("the base model: {0}")]
    Model(String),
    #[error("LoRA training supports the architectures {SUPPORTED_ARCHS:?}; this model is `{0}`")]
    UnsupportedArch(String),
    #[error("{0}")]
    Options(String),
    #[error("training data: {0}")]
    Data(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("tensor computation: {0}")]
    Tensor(#[from] candle_core::Error),
}

#[cfg(test)]
mod tests;
