//! Structured output for Bantam.
//!
//! * [`Constrainer`] — built once per model from its vocabulary; turns an
//!   [`OutputConstraint`] into a [`Guide`] for one request.
//! * [`Guide`] — the per-request state the engine drives: which tokens are allowed
//!   next (an llguidance mask), what was generated, and the final check.
//! * [`Validator`] — the check every constrained output passes before it is returned
//!   (JSON Schema validation with formats, regex full match, choice membership, tool
//!   arguments against each tool's schema). Enforcement while sampling and validation
//!   afterwards are independent: a gap in one is caught by the other.
//! * [`tools`] — Bantam's tool-call format: the grammar, the system prompt for models
//!   whose chat template has no tool support, parsing, and streaming deltas.
//!
//! JSON Schema keywords llguidance cannot enforce while sampling (`uniqueItems`,
//! `contains`, …) are left to the validator, which checks the whole schema on the
//! finished output (an output that fails is generated again or is an error). Only
//! what nothing can check — a `format` the validator does not know — is rejected
//! when the constraint is compiled ([`StructuredError::Unsupported`] names it), so a
//! client learns before any token is generated.

mod compile;
mod guide;
mod refs;
pub mod tools;
mod validate;

pub use bantam_types::generate::{OutputConstraint, ToolSpec};
pub use compile::{check_schema, Compiled};
pub use guide::{Constrainer, Guide, TokenMask};
pub use validate::Validator;

/// Why a constraint could not be compiled or an output did not satisfy it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StructuredError {
    /// The schema uses keywords Bantam can neither enforce nor check.
    #[error("the JSON Schema uses keywords that cannot be checked: {}; remove them or describe the constraint in the prompt", .0.join(", "))]
    Unsupported(Vec<String>),
    /// The schema, regex or grammar is malformed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// `JSON Schema`, `regex`, `grammar`, `tools`.
        what: &'static str,
        /// Details.
        reason: String,
    },
    /// The output does not satisfy the constraint.
    #[error("the model's output does not satisfy the requested format: {0}")]
    Violated(String),
    /// Generation ended before the constrained output was complete.
    #[error(
        "generation stopped ({0}) before the structured output was complete; raise max_tokens"
    )]
    Incomplete(String),
    /// The constraint engine failed.
    #[error("constraint engine error: {0}")]
    Engine(String),
}
