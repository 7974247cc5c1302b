//! Bantam's task layer: one call per common back-office task, over an
//! [`bantam_engine::Engine`]. The HTTP routes and the CLI are thin adapters over it.
//!
//! * [`classify`] — pick labels by their log-likelihood as the model's answer, scored
//!   in batched forward passes over a token tree that reuse the shared prompt prefix
//!   (see [`bantam_engine::score`]); no text is generated.

pub mod classify;

pub use classify::{classify, ClassifyError};
