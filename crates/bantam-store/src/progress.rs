//! Progress reporting for long store operations (the CLI draws bars with indicatif).

/// Receives progress of pulls, imports and exports.
pub trait Progress: Send + Sync {
    /// A new phase begins (`downloading part 2/4`, `verifying`), with its size in
    /// bytes when known.
    fn phase(&self, label: &str, total: Option<u64>);
    /// Bytes done in the current phase (absolute).
    fn position(&self, done: u64);
    /// The current phase ended.
    fn done(&self);
    /// A message to show the user.
    fn note(&self, _msg: &str) {}
}

/// Ignores all progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _label: &str, _total: Option<u64>) {}
    fn position(&self, _done: u64) {}
    fn done(&self) {}
}
