//! Progress reporting hooks for long operations; the CLI draws bars with them.

/// Receives progress of a long operation. Every method has a no-op default.
pub trait Progress: Sync {
    /// Total amount of work, when known (bytes or items).
    fn set_total(&self, _total: u64) {}
    /// `n` more bytes or items done.
    fn advance(&self, _n: u64) {}
    /// The operation is waiting for another process (e.g. a running gc).
    fn waiting(&self, _why: &str) {}
}

/// No progress reporting.
pub struct NoProgress;

impl Progress for NoProgress {}
