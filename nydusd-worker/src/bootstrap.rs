//! Opening a bootstrap and paging it in.
//!
//! `mode: direct` maps the file. A first lookup touches a handful of its
//! pages, but a fault on a mapping normally reads around it a whole
//! readahead window (8 MiB on these machines' disks: the whole bootstrap of
//! a big image), and the first `stat` waits for that read. So the map starts
//! random (a fault reads only its page). The rest is read in large requests
//! once start-up has had its turn: the chunk table by the thread that
//! indexes it, then the whole file, when that thread is done or at the
//! first directory listing (a walk is likely to follow), whichever comes
//! first. Measured with `scripts/bench.sh mount`: start to first stat with
//! caches dropped 1-3 ms shorter; cold stat walk and tree read unchanged.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Once};

use memmap2::{Advice, Mmap};
use nydus_protocol::config::RafsMode;
use nydus_protocol::rafs::{
    Backing, BlobInfo, ChunkRef, DirEntry, Inode, Reader, Result as RafsResult, SuperInfo,
};

/// Reads and validates the bootstrap; `direct` maps it, `cached` copies it.
/// Starts the background indexing and paging-in.
pub fn open(path: &Path, mode: RafsMode) -> Result<Arc<dyn Reader>, String> {
    let what = |e: &dyn std::fmt::Display| format!("bootstrap {}: {e}", path.display());
    let file = File::open(path).map_err(|e| what(&e))?;
    let meta = file.metadata().map_err(|e| what(&e))?;
    if !meta.is_file() {
        return Err(what(&"not a regular file"));
    }
    let (backing, map): (Backing, _) = match mode {
        RafsMode::Direct => {
            // SAFETY: the map is read-only and private. Bootstraps are
            // immutable by contract; if someone truncates the file under us
            // the kernel raises SIGBUS, which is the same failure upstream
            // nydusd has in direct mode.
            let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(|e| what(&e))?);
            hint(&map, Advice::Random, None);
            (map.clone(), Some(map))
        }
        RafsMode::Cached => (Arc::new(std::fs::read(path).map_err(|e| what(&e))?), None),
    };
    let opened = nydus_protocol::rafs::open(backing, path.file_name().and_then(|n| n.to_str()))
        .map_err(|e| what(&e))?;
    let (reader, paged): (Arc<dyn Reader>, _) = match map {
        // Without a table to index (v5) there is no quiet moment to wait
        // for: fault the map in as usual.
        Some(map) if opened.reader.index_source().is_none() => {
            hint(&map, Advice::Normal, None);
            (opened.reader, None)
        }
        Some(map) => {
            let paged = Arc::new(Paged {
                inner: opened.reader,
                map,
                paged_in: Once::new(),
            });
            (paged.clone(), Some(paged))
        }
        None => (opened.reader, None),
    };
    index_in_background(reader.clone(), paged);
    Ok(reader)
}

/// Indexes the image's chunks while the mount comes up, so the first file
/// read does not pay for it (about 7 ms for 40k chunks read from disk), then
/// pages in the rest of a mapped bootstrap. A bad table is left for that
/// read to report.
fn index_in_background(reader: Arc<dyn Reader>, paged: Option<Arc<Paged>>) {
    let fallback = paged.clone();
    let spawned = std::thread::Builder::new()
        .name("chunk-index".into())
        .spawn(move || {
            if let Err(e) = reader.index_chunks() {
                log::debug!("indexing the chunk table: {e}");
            }
            if let Some(paged) = &paged {
                paged.page_in();
            }
        });
    if let Err(e) = spawned {
        log::debug!("chunk table indexed on first read: no thread: {e}");
        if let Some(paged) = fallback {
            paged.page_in();
        }
    }
}

/// The reader of a mapped bootstrap whose pages are read as touched until
/// `page_in`.
struct Paged {
    inner: Arc<dyn Reader>,
    map: Arc<Mmap>,
    paged_in: Once,
}

impl Reader for Paged {
    fn super_info(&self) -> &SuperInfo {
        self.inner.super_info()
    }

    fn blobs(&self) -> &[BlobInfo] {
        self.inner.blobs()
    }

    fn inode(&self, ino: u64) -> RafsResult<Inode> {
        self.inner.inode(ino)
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> RafsResult<Option<u64>> {
        self.inner.lookup(parent, name)
    }

    fn readdir(
        &self,
        ino: u64,
        offset: u64,
        sink: &mut dyn FnMut(DirEntry<'_>, u64) -> bool,
    ) -> RafsResult<()> {
        self.page_in();
        self.inner.readdir(ino, offset, sink)
    }

    fn readlink(&self, ino: u64) -> RafsResult<Vec<u8>> {
        self.inner.readlink(ino)
    }

    fn xattrs(&self, ino: u64) -> RafsResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.xattrs(ino)
    }

    fn chunks(&self, ino: u64) -> RafsResult<Vec<ChunkRef>> {
        self.inner.chunks(ino)
    }

    fn prefetch_inodes(&self) -> RafsResult<Vec<u64>> {
        self.inner.prefetch_inodes()
    }

    fn index_chunks(&self) -> RafsResult<()> {
        // Indexing reads the whole table: one large read beats a fault per
        // page of it.
        hint(&self.map, Advice::WillNeed, self.inner.index_source());
        self.inner.index_chunks()
    }

    fn index_source(&self) -> Option<std::ops::Range<u64>> {
        self.inner.index_source()
    }
}

impl Paged {
    /// From now on faults read around as usual, and the whole file is
    /// read ahead.
    fn page_in(&self) {
        self.paged_in.call_once(|| {
            hint(&self.map, Advice::Normal, None);
            hint(&self.map, Advice::WillNeed, None);
        });
    }
}

/// `madvise` over `range` of the map (all of it if `None`). Only a hint: a
/// refusal changes speed, not results.
fn hint(map: &Mmap, advice: Advice, range: Option<std::ops::Range<u64>>) {
    let len = map.len() as u64;
    let range = range.unwrap_or(0..len);
    let (start, end) = (range.start.min(len), range.end.min(len));
    if start >= end {
        return;
    }
    if let Err(e) = map.advise_range(advice, start as usize, (end - start) as usize) {
        log::debug!("bootstrap madvise {advice:?}: {e}");
    }
}
