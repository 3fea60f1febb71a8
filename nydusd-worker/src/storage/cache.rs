//! One blob's files in the blob cache (reference §5.2): the data file
//! (`<id>.blob.data`, chunks uncompressed at their uncompressed offsets, or
//! `<id>.blob.raw`, chunks as stored at their compressed offsets) and its
//! readiness map (`<id>.blob.data.chunk_map` in both cases).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use nydus_protocol::rafs::{BlobInfo, ChunkInfo};

use super::chunk_map::ChunkMap;

pub(crate) struct BlobCacheFile {
    file: File,
    map: ChunkMap,
    compressed: bool,
    /// File name of the data file, for metrics.
    name: String,
    /// Uncompressed chunks must end within this (0: not recorded).
    limit: u64,
    /// Chunks this process wrote or checked (one bit each): with
    /// `digest_validate`, a chunk left by an earlier process is checked on
    /// its first hit, since a crash may have kept its bit but not its data.
    verified: Vec<AtomicU8>,
}

impl BlobCacheFile {
    /// Opens (creating if needed) the cache files of blob `id` in
    /// `work_dir`. Chunks an earlier process stored are reused.
    pub(crate) fn open(
        work_dir: &Path,
        id: &str,
        blob: &BlobInfo,
        compressed: bool,
    ) -> io::Result<Self> {
        if id.is_empty() || id.contains(['/', '\0']) || id.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("blob id {id:?} cannot name a cache file"),
            ));
        }
        let name = format!("{id}.{}", if compressed { "blob.raw" } else { "blob.data" });
        let path = work_dir.join(&name);
        let map_path = work_dir.join(format!("{id}.blob.data.chunk_map"));
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ctx(&path, "open", e))?;
        // A map without its data file describes data that is gone: starting
        // from it would serve holes as file bytes.
        let map = if !existed && map_path.exists() {
            log::warn!(
                "blob cache {}: data file was missing; resetting its chunk map",
                path.display()
            );
            ChunkMap::reset(&map_path, blob.chunk_count)?
        } else {
            ChunkMap::open(&map_path, blob.chunk_count)?
        };
        let want = if compressed {
            blob.compressed_size
        } else {
            blob.uncompressed_size
        };
        let have = file.metadata().map_err(|e| ctx(&path, "stat", e))?.len();
        if have < want {
            // Sparse: the blocks appear as chunks are written.
            file.set_len(want).map_err(|e| ctx(&path, "extend", e))?;
        } else if want != 0 && have > want.next_multiple_of(4096) {
            log::warn!(
                "blob cache {}: {have} bytes, larger than the blob's {want}",
                path.display()
            );
        }
        let limit = if compressed {
            0
        } else {
            want.next_multiple_of(4096)
        };
        if map.ready_count() > 0 {
            log::info!(
                "blob cache {}: reusing {} of {} chunks",
                path.display(),
                map.ready_count(),
                map.count()
            );
        }
        let verified = (0..blob.chunk_count.div_ceil(8))
            .map(|_| AtomicU8::new(0))
            .collect();
        Ok(BlobCacheFile {
            file,
            map,
            compressed,
            name,
            limit,
            verified,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn compressed(&self) -> bool {
        self.compressed
    }

    pub(crate) fn is_ready(&self, index: u32) -> bool {
        self.map.is_ready(index)
    }

    pub(crate) fn all_ready(&self) -> bool {
        self.map.all_ready()
    }

    pub(crate) fn is_verified(&self, index: u32) -> bool {
        self.verified
            .get((index / 8) as usize)
            .is_some_and(|b| b.load(Ordering::Relaxed) & (1 << (index % 8)) != 0)
    }

    pub(crate) fn set_verified(&self, index: u32) {
        if let Some(b) = self.verified.get((index / 8) as usize) {
            b.fetch_or(1 << (index % 8), Ordering::Relaxed);
        }
    }

    /// Forgets chunk `index` (its cached bytes failed to decode).
    pub(crate) fn clear(&self, index: u32) {
        self.map.clear_ready(index);
    }

    /// Where the chunk lives in the data file and how long it is.
    fn extent(&self, info: &ChunkInfo) -> io::Result<(u64, u64)> {
        let (off, len) = if self.compressed {
            (info.compressed_offset, u64::from(info.compressed_size))
        } else {
            (info.uncompressed_offset, u64::from(info.uncompressed_size))
        };
        match off.checked_add(len) {
            Some(end) if self.limit == 0 || end <= self.limit => Ok((off, len)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "chunk {} at {off:#x}+{len:#x} lies outside the cache file ({:#x} bytes)",
                    info.chunk_index, self.limit
                ),
            )),
        }
    }

    /// Uncompressed mode: bytes `[within, within + dst.len())` of the chunk.
    pub(crate) fn read_plain(
        &self,
        info: &ChunkInfo,
        within: u64,
        dst: &mut [u8],
    ) -> io::Result<()> {
        let (off, _) = self.extent(info)?;
        let at = off
            .checked_add(within)
            .ok_or_else(|| io::Error::other("offset overflow"))?;
        self.file.read_exact_at(dst, at)
    }

    /// Compressed mode: the chunk's stored bytes.
    pub(crate) fn read_stored(&self, info: &ChunkInfo) -> io::Result<Vec<u8>> {
        let (off, len) = self.extent(info)?;
        let mut v = vec![0u8; len as usize];
        self.file.read_exact_at(&mut v, off)?;
        Ok(v)
    }

    /// Writes a verified chunk, then marks it ready (never the other way
    /// round, so a crash can only lose a chunk, not expose a hole).
    /// Returns whether this call made it ready.
    pub(crate) fn store(&self, info: &ChunkInfo, data: &[u8], stored: &[u8]) -> io::Result<bool> {
        let (off, _) = self.extent(info)?;
        let bytes = if self.compressed { stored } else { data };
        self.file.write_all_at(bytes, off)?;
        self.set_verified(info.chunk_index);
        Ok(self.map.set_ready(info.chunk_index))
    }
}

fn ctx(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("blob cache {}: {what}: {e}", path.display()),
    )
}

/// The data file names of a work dir, for tests.
#[cfg(test)]
pub(crate) fn data_path(work_dir: &Path, id: &str) -> std::path::PathBuf {
    work_dir.join(format!("{id}.blob.data"))
}
