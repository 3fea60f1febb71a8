//! Blob storage: fetching chunk data from a backend, keeping it in the local
//! blob cache and handing file bytes to the file system.
//!
//! `BlobDevice` is the one entry point for the FUSE layer (`read`,
//! `prefetch`); `Backend` is what remote backends implement.

mod backend;
mod cache;
mod chunk_map;
mod device;
mod fetch;
pub mod http;
mod inflight;
mod metrics;
mod partial;
#[cfg(test)]
mod tests;
mod verify;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use backend::{Backend, LocalFs};
pub use device::BlobDevice;

/// What the daemon hands a `BlobDevice` (mapped from the user's config).
#[derive(Clone)]
pub struct StorageConfig {
    pub backend: Arc<dyn Backend>,
    pub cache: CacheMode,
    /// Check chunk digests after decompression (CRCs are always checked
    /// when the descriptor has one).
    pub digest_validate: bool,
    /// Largest merged backend request, in bytes (`amplify_io`/`batch_size`);
    /// 0 fetches chunk by chunk.
    pub amplify_io: u64,
    /// Read buffers are memory another party can write while we use it (a
    /// virtio-fs guest's): chunks are then decoded and verified in buffers
    /// of our own and copied out after, so the blob cache, which other
    /// daemons may share, only ever gets the bytes that were verified.
    pub shared_reply_memory: bool,
}

/// Where fetched chunks are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheMode {
    /// `<work_dir>/<id>.blob.data` (or `.blob.raw` when `compressed`) plus
    /// `<id>.blob.data.chunk_map`, reused across restarts.
    Blobcache { work_dir: PathBuf, compressed: bool },
    /// No local copy: every read goes to the backend.
    Dummycache,
}

/// The error a failed read returns to the kernel. The detail has already
/// been logged (once) and counted where the failure happened.
pub(crate) fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}
