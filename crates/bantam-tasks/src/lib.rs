//! Bantam's task layer: one call per common back-office task, over an
//! [`bantam_engine::Engine`]. The HTTP routes and the CLI are thin adapters over it.
//!
//! * [`classify`] — pick labels by their likelihood as the model's answer, scored
//!   over a token tree of the labels in batched forward passes that reuse the shared
//!   prompt prefix (see [`bantam_engine::score`]); no free text is generated.
//! * [`extract`] — text + JSON Schema → an object valid against the schema, with
//!   source spans.
//! * [`summarize`] — summaries in a style and length, hierarchical for inputs longer
//!   than the context.

pub mod classify;
pub mod extract;
pub mod generate;
pub mod summarize;

pub use classify::classify;
pub use extract::extract;
pub use summarize::summarize;

use bantam_engine::EngineError;

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The request is malformed; `param` names the field.
    #[error("{message}")]
    Invalid {
        /// Offending field.
        param: &'static str,
        /// What to change.
        message: String,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl TaskError {
    pub(crate) fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        TaskError::Invalid {
            param,
            message: message.into(),
        }
    }
}
