//! What the filesystem reports to metrics: one call per operation.
//!
//! A trait rather than `FsMetrics` itself so tests can run the filesystem
//! without a metrics registry.

use std::time::Duration;

pub use crate::metrics::Fop;
use crate::metrics::FsMetrics;

pub trait FopSink: Send + Sync {
    /// One non-read operation on inode `ino` (the backend's number) finished.
    fn fop(&self, op: Fop, ino: u64, ok: bool);

    /// One read returned `bytes` bytes (or failed) after `elapsed`.
    fn read(&self, ino: u64, bytes: usize, elapsed: Duration, ok: bool);
}

impl FopSink for FsMetrics {
    fn fop(&self, op: Fop, ino: u64, ok: bool) {
        self.op(op, ino, ok);
    }

    fn read(&self, ino: u64, bytes: usize, elapsed: Duration, ok: bool) {
        FsMetrics::read(self, ino, bytes, elapsed, ok);
    }
}

/// Counts nothing (tests).
#[cfg(test)]
pub struct NoStats;

#[cfg(test)]
impl FopSink for NoStats {
    fn fop(&self, _op: Fop, _ino: u64, _ok: bool) {}

    fn read(&self, _ino: u64, _bytes: usize, _elapsed: Duration, _ok: bool) {}
}
