//! Errors of the routing layer.

use bantam_api::BackendError;

/// A configuration problem; the message names the entry to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("routing configuration: {0}")]
pub struct ConfigError(pub String);

/// Why a routed request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouterError {
    /// The last backend's error (every backend tried failed, or the error was the
    /// request's fault and no other backend was tried).
    #[error("{error}")]
    Backend {
        /// The final error.
        error: BackendError,
        /// Every failure, in order, for the message.
        tried: Vec<String>,
    },
    /// Every backend of the route had its circuit open.
    #[error("no backend available for {model:?}: {detail}")]
    NoBackend {
        /// The requested model.
        model: String,
        /// Which backends were skipped and why.
        detail: String,
    },
}

impl RouterError {
    /// The HTTP status the request is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RouterError::Backend { error, .. } => error.status(),
            RouterError::NoBackend { .. } => 503,
        }
    }
}
