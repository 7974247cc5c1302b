//! `bantam eval`: [`dataset`] loading, [`run`]ning a task over it per target with
//! per-item results, and metrics, each written to agree with the reference
//! implementation users compare against (checked in `tests/reference.rs`):
//!
//! * [`classification`] — accuracy, per-class precision/recall/F1, macro and micro F1,
//!   confusion matrix (scikit-learn's definitions, `zero_division=0`).
//! * [`qa`] — exact match and token F1 with SQuAD v1.1 answer normalisation.
//! * [`bleu`] — corpus BLEU with sacrebleu's defaults (13a tokenisation, exponential
//!   smoothing, closest reference length).
//! * [`rouge`] — ROUGE-1/2/L/Lsum as `rouge-score` with `use_stemmer=True`, with
//!   NLTK's Porter stemmer ported in [`stem`].
//!
//! [`prompt`] holds the generative tasks' prompt templates, [`remote`] the targets
//! that are OpenAI-compatible APIs (through `bantam-router`'s upstream backend), and
//! [`hardware`] the target-hardware check (time to first token and latency over a
//! fixed prompt set).
//!
//! [`report`] turns the per-target summaries into the markdown table and a
//! self-contained HTML report with inline SVG charts.

pub mod bleu;
pub mod classification;
pub mod dataset;
pub mod hardware;
pub mod prompt;
pub mod qa;
pub mod remote;
pub mod report;
pub mod rouge;
pub mod run;
pub mod stem;
pub mod summary;
