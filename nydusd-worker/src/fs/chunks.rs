//! The chunk lists of recently read big files.
//!
//! A sequential read of a big file asks for the same list on every request,
//! and building it costs time proportional to the file size; this keeps
//! recent lists so a read costs a lookup. A small file's list is cheaper to
//! build than to keep: after a `tar` of a tree of 38k small files the cache
//! held about 1.5 MB of them. Bounded by the number of chunk references
//! held; when full it starts over (cheap, and rare next to the reads it
//! saves).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nydus_protocol::rafs::{ChunkRef, Reader, Result};

/// At most this many chunk references (about 100 bytes each) are kept:
/// 1.6 MB, the lists of 16 GiB of files at the usual 1 MiB chunk size.
pub(super) const MAX_REFS: usize = 16 * 1024;

/// Lists shorter than this are built again on each read instead.
pub(super) const MIN_CACHED_REFS: usize = 16;

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
