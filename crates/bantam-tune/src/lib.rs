//! `bantam tune`: specialise on the user's own examples.
//!
//! * [`classify`] — a classifier head: frozen features (the static MiniLM table, the
//!   MiniLM encoder or hashed n-grams) and multinomial logistic regression
//!   (`bantam-learn`, the learner the router uses too), calibrated on a validation
//!   split, installed in the store as a model that `/v1/classify` serves by name.
//! * [`lora`] — a LoRA adapter trained on chat, input/output or labelled data over a
//!   store model (`bantam-lora`), installed as a model of kind `adapter`.
//! * [`quantize`] — llama.cpp's quantizer on a store model, with a report of the
//!   size, speed and output drift it costs.

pub mod classify;
pub mod lora;
pub mod merge;
pub mod quantize;

pub use classify::{
    install, load_examples, tune_classifier, Candidate, Example, HeadKind, TuneError, TuneOptions,
    Tuned,
};
