//! The chunk lists of recently read big files.
//!
//! A sequential read of a big file asks for the same list on every request,
//! and building it costs time proportional to the file size; this keeps
//! recent lists so a read costs a lookup. A small file's list is cheaper to
//! build than to keep: a `tar` of a tree of 45k small files once held 11 MB
//! of them, half the daemon's memory. Bounded by the number of chunk
//! references held; when full it starts over (cheap, and rare next to the
//! reads it saves).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nydus_protocol::rafs::{ChunkRef, Reader, Result};

/// At most this many chunk references (about 100 bytes each) are kept:
/// 1.6 MB, the lists of 16 GiB of files at the usual 1 MiB chunk size.
const MAX_REFS: usize = 16 * 1024;

/// Lists shorter than this are built again on each read instead.
const MIN_CACHED_REFS: usize = 16;

#[derive(Default)]
pub struct ChunkCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    lists: HashMap<u64, Arc<Vec<ChunkRef>>>,
    refs: usize,
}

impl ChunkCache {
    /// The chunks of regular file `ino`, from the cache or the reader.
    pub fn get(&self, reader: &dyn Reader, ino: u64) -> Result<Arc<Vec<ChunkRef>>> {
        if let Some(list) = self.lock().lists.get(&ino) {
            return Ok(list.clone());
        }
        // Built without the lock: other files' reads go on meanwhile. Two
        // threads may build the same list; either copy is right.
        let list = Arc::new(reader.chunks(ino)?);
        if (MIN_CACHED_REFS..=MAX_REFS).contains(&list.len()) {
            let mut inner = self.lock();
            if inner.refs + list.len() > MAX_REFS {
                inner.lists.clear();
                inner.refs = 0;
            }
            if inner.lists.insert(ino, list.clone()).is_none() {
                inner.refs += list.len();
            }
        }
        Ok(list)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Poisoned only if a thread panicked while holding it; the map of
        // immutable lists is still valid.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nydus_protocol::rafs::codec::{Compressor, Digester};
    use nydus_protocol::rafs::{BlobInfo, DirEntry, FsVersion, Inode, RafsError, SuperInfo};

    use super::*;

    /// File `ino` has `ino` chunks; counts the lists it builds.
    struct Lists {
        sb: SuperInfo,
        built: AtomicUsize,
    }

    impl Reader for Lists {
        fn super_info(&self) -> &SuperInfo {
            &self.sb
        }
        fn blobs(&self) -> &[BlobInfo] {
            &[]
        }
        fn inode(&self, ino: u64) -> Result<Inode> {
            Err(RafsError::NotFound(format!("inode {ino}")))
        }
        fn lookup(&self, _parent: u64, _name: &[u8]) -> Result<Option<u64>> {
            Ok(None)
        }
        fn readdir(
            &self,
            _ino: u64,
            _offset: u64,
            _sink: &mut dyn FnMut(DirEntry<'_>, u64) -> bool,
        ) -> Result<()> {
            Ok(())
        }
        fn readlink(&self, _ino: u64) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn xattrs(&self, _ino: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            Ok(Vec::new())
        }
        fn chunks(&self, ino: u64) -> Result<Vec<ChunkRef>> {
            self.built.fetch_add(1, Ordering::SeqCst);
            Ok((0..ino as u32)
                .map(|i| ChunkRef {
                    blob_index: 0,
                    chunk_index: i,
                    file_offset: u64::from(i) << 20,
                    info: None,
                })
                .collect())
        }
        fn prefetch_inodes(&self) -> Result<Vec<u64>> {
            Ok(Vec::new())
        }
    }

    fn builds(cache: &ChunkCache, reader: &Lists, ino: u64, reads: usize) -> usize {
        let before = reader.built.load(Ordering::SeqCst);
        for _ in 0..reads {
            assert_eq!(cache.get(reader, ino).unwrap().len(), ino as usize);
        }
        reader.built.load(Ordering::SeqCst) - before
    }

    #[test]
    fn keeps_big_files_lists_only() {
        let cache = ChunkCache::default();
        let reader = Lists {
            sb: SuperInfo {
                version: FsVersion::V6,
                flags: 0,
                block_size: 4096,
                chunk_size: 1 << 20,
                compressor: Compressor::None,
                digester: Digester::Blake3,
                inode_count: 0,
                root_ino: 1,
                explicit_uidgid: false,
                has_xattr: false,
            },
            built: AtomicUsize::new(0),
        };
        assert_eq!(builds(&cache, &reader, 1, 3), 3, "a one-chunk file");
        assert_eq!(builds(&cache, &reader, MIN_CACHED_REFS as u64, 3), 1);
        let too_big = MAX_REFS as u64 + 1;
        assert_eq!(builds(&cache, &reader, too_big, 2), 2);
        // Filling past the bound starts over.
        let half = (MAX_REFS / 2 + 1) as u64;
        assert_eq!(builds(&cache, &reader, half, 2), 1);
        assert_eq!(builds(&cache, &reader, half + 1, 2), 1);
        assert_eq!(
            builds(&cache, &reader, half, 1),
            1,
            "dropped at the start-over"
        );
    }
}
