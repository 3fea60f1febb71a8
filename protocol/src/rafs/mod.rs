//! RAFS v5/v6: a validating reader over a byte slice, and writers.
//!
//! Every function taking image bytes returns either a correct answer or a
//! `RafsError` naming the structure and byte offset: never a panic, a hang
//! or an out-of-bounds read.

pub mod blob;
pub mod bytes;
pub mod codec;
pub mod dump;
pub mod error;
pub mod file;
pub mod manifest;
mod open;
pub mod types;
pub mod v5;
pub mod v6;
pub mod walk;
pub mod writer;

use std::sync::Arc;

pub use error::{RafsError, Result};
pub use open::{detect, file_stem, open, open_file, Detected, OpenedImage};
pub use types::*;

/// The bytes of a bootstrap: a `Vec`, an mmap, anything sliceable.
pub type Backing = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Read access to one bootstrap, whatever its version.
///
/// Inode numbers are the reader's own (`SuperInfo::root_ino` is the root);
/// the FUSE layer maps them to kernel inode numbers.
pub trait Reader: Send + Sync {
    fn super_info(&self) -> &SuperInfo;

    fn blobs(&self) -> &[BlobInfo];

    fn inode(&self, ino: u64) -> Result<Inode>;

    /// Child `name` of directory `parent`, without a linear scan where the
    /// format allows (sorted names: binary search).
    fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<u64>>;

    /// Calls `sink(entry, next_offset)` for each entry of directory `ino`
    /// from position `offset` (0 = first entry; an entry's `next_offset` is
    /// the position after it), until `sink` returns false. Entries come in
    /// the format's order (sorted by name); "." and ".." are not included.
    fn readdir(
        &self,
        ino: u64,
        offset: u64,
        sink: &mut dyn FnMut(DirEntry<'_>, u64) -> bool,
    ) -> Result<()>;

    fn readlink(&self, ino: u64) -> Result<Vec<u8>>;

    /// All extended attributes of `ino`, as full names (with namespace
    /// prefix such as `user.`) and values.
    fn xattrs(&self, ino: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// The chunks of regular file `ino` in file order.
    fn chunks(&self, ino: u64) -> Result<Vec<ChunkRef>>;

    /// Inodes named by the bootstrap's prefetch table, in table order.
    fn prefetch_inodes(&self) -> Result<Vec<u64>>;

    /// Builds now what the first file read would otherwise build (v6: the
    /// chunk table's index), so a caller can take that off the read path.
    /// The error is the one that read would get.
    fn index_chunks(&self) -> Result<()> {
        Ok(())
    }

    /// The bytes of the bootstrap `index_chunks` reads (v6: the chunk
    /// table), so a caller that maps the file can have them read ahead in
    /// one go rather than page by page.
    fn index_source(&self) -> Option<std::ops::Range<u64>> {
        None
    }
}
