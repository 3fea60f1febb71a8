//! The miss path of `BlobDevice`: resolving chunk references, merging
//! misses into backend requests, decoding and verifying chunks, storing
//! them in the cache.

use std::io;
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, MutexGuard};

use nydus_protocol::rafs::blob::CiTable;
use nydus_protocol::rafs::{ChunkInfo, ChunkRef, RafsError};

use super::device::{Blob, BlobDevice, Got};
use super::eio;
use super::inflight::{Claim, Owned};
use super::metrics::StorageMetrics;
use super::verify::with_scratch;

/// Largest chunk the format allows (rafs-format §1.2).
const MAX_CHUNK: u32 = 16 << 20;

/// Failure kinds, so each (blob, chunk, kind) is logged once.
const LOG_BACKEND: u8 = 0;
const LOG_DATA: u8 = 1;
pub(super) const LOG_CACHE_READ: u8 = 2;
const LOG_RESOLVE: u8 = 3;
const LOG_CACHE_WRITE: u8 = 4;

impl BlobDevice {
    /// The full, sanity-checked descriptor of `r` (v6 refs without one are
    /// completed from the blob's ci table).
    pub(super) fn resolve(&self, r: &ChunkRef) -> io::Result<ChunkInfo> {
        let info = match r.info {
            Some(info) => info,
            None => {
                let blob = self.blob(r.blob_index, r.chunk_index)?;
                // A bad ci table is one failure of the blob, not one per chunk.
                let row = match self.ci_table(blob) {
                    Ok(t) => t.row(r.chunk_index).map_err(|e| (r.chunk_index, e)),
                    Err(e) => Err((u32::MAX, e)),
                };
                match row {
                    Ok(info) => info,
                    Err((chunk, e)) => {
                        self.metrics.chunk_errors.fetch_add(1, Relaxed);
                        let key = (r.blob_index, chunk, LOG_RESOLVE);
                        self.log_once(key, || format!("blob {}: {e}", blob.id));
                        return Err(eio());
                    }
                }
            }
        };
        let blob = self.blob(info.blob_index, info.chunk_index)?;
        let why = if info.blob_index != r.blob_index || info.chunk_index != r.chunk_index {
            Some("descriptor names another chunk than its reference")
        } else if blob.cache.is_some() && info.chunk_index >= blob.info.chunk_count {
            Some("chunk index beyond the blob's chunk count")
        } else if !(1..=MAX_CHUNK).contains(&info.uncompressed_size)
            || !(1..=MAX_CHUNK).contains(&info.compressed_size)
        {
            Some("chunk size out of range")
        } else if info
            .compressed_offset
            .checked_add(u64::from(info.compressed_size))
            .is_none()
        {
            Some("compressed offset out of range")
        } else {
            None
        };
        if let Some(why) = why {
            self.metrics.chunk_errors.fetch_add(1, Relaxed);
            let key = (info.blob_index, info.chunk_index, LOG_RESOLVE);
            self.log_once(key, || {
                format!(
                    "blob {} chunk {} at offset {:#x}: {why}",
                    blob.id, info.chunk_index, info.compressed_offset
                )
            });
            return Err(eio());
        }
        Ok(info)
    }

    fn blob(&self, index: u32, chunk: u32) -> io::Result<&Blob> {
        self.blobs.get(index as usize).ok_or_else(|| {
            self.metrics.chunk_errors.fetch_add(1, Relaxed);
            self.log_once((index, chunk, LOG_RESOLVE), || {
                format!("chunk {chunk} refers to blob index {index}, not in the blob table")
            });
            eio()
        })
    }

    fn ci_table(&self, blob: &Blob) -> Result<Arc<CiTable>, RafsError> {
        if let Some(t) = lock(&blob.ci).as_ref() {
            return Ok(t.clone());
        }
        // Loaded without the lock (it is a backend read); racing loaders
        // both load and the first to finish wins.
        let table = Arc::new(CiTable::load(
            &blob.info,
            &blob.id,
            &super::verify::Source(self),
        )?);
        Ok(lock(&blob.ci).get_or_insert(table).clone())
    }

    /// Gets the given distinct chunks: ready in the cache, fetched by this
    /// thread, or fetched by another thread we waited for. `None` marks a
    /// chunk that failed (logged and counted where it failed). Chunks from
    /// `optional_from` on are read-ahead: fetched if nobody else is, never
    /// waited for.
    ///
    /// A chunk `dest.ranges[i]` names is decoded straight into that range
    /// of `dest.out` (`Got::Filled`) when this thread fetches it: a read
    /// that wants the whole chunk then costs no extra buffer and copy.
    pub(super) fn obtain(
        &self,
        infos: &[ChunkInfo],
        optional_from: usize,
        prefetch: bool,
        dest: &mut Dest<'_>,
    ) -> Vec<Option<Got>> {
        let mut results: Vec<Option<Got>> = vec![None; infos.len()];
        let mut owned = Owned::new(&self.inflight);
        let mut mine = Vec::new();
        let mut waits = Vec::new();
        for (i, info) in infos.iter().enumerate() {
            let cache = self.blobs[info.blob_index as usize].cache.as_ref();
            let key = (info.blob_index, info.chunk_index);
            match self
                .inflight
                .claim(key, || cache.is_some_and(|c| c.is_ready(info.chunk_index)))
            {
                Claim::Ready => results[i] = Some(Got::Cached),
                Claim::Waiter(_) if i >= optional_from => {}
                Claim::Waiter(slot) => waits.push((i, slot)),
                Claim::Owner(slot) => {
                    owned.add(key, slot);
                    mine.push(i);
                }
            }
        }
        mine.sort_by_key(|&i| (infos[i].blob_index, infos[i].compressed_offset));
        for group in self.merge(&mine, infos, self.amplify_io) {
            self.fetch_group(&group, infos, &mut owned, &mut results, prefetch, dest);
        }
        for (i, slot) in waits {
            results[i] = slot.wait().ok().map(Got::Data);
        }
        results
    }

    /// Read-ahead after a miss: the file's following chunks that continue
    /// the last missing one in the same blob join its request, while the
    /// misses of that blob stay within `amplify_io` (blobcache only: the
    /// extra chunks are only worth fetching if they are kept; remote
    /// backends only: a local read has no round trip to save).
    pub(super) fn read_ahead(
        &self,
        rest: &[ChunkRef],
        keys: &mut Vec<(u32, u32)>,
        uniq: &mut Vec<ChunkInfo>,
    ) {
        let Some(last) = uniq.last().copied() else {
            return;
        };
        if self.backend.is_local() {
            return;
        }
        let Some(cache) = self.blobs[last.blob_index as usize].cache.as_ref() else {
            return;
        };
        let mut used: u64 = uniq
            .iter()
            .filter(|c| c.blob_index == last.blob_index)
            .map(|c| u64::from(c.compressed_size))
            .sum();
        let mut end = last.compressed_offset + u64::from(last.compressed_size);
        for r in rest {
            let Ok(c) = self.resolve(r) else { break };
            let key = (c.blob_index, c.chunk_index);
            used += u64::from(c.compressed_size);
            if c.blob_index != last.blob_index
                || c.compressed_offset != end
                || used > self.amplify_io
                || cache.is_ready(c.chunk_index)
                || keys.contains(&key)
            {
                break;
            }
            end += u64::from(c.compressed_size);
            keys.push(key);
            uniq.push(c);
        }
    }

    /// Splits sorted misses into backend requests: same blob, ascending and
    /// non-overlapping, gaps of at most 1/128 of the limit, and at most
    /// `limit` bytes (a single chunk may be larger).
    pub(super) fn merge(
        &self,
        sorted: &[usize],
        infos: &[ChunkInfo],
        limit: u64,
    ) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut span = (0u32, 0u64, 0u64); // blob, start, end of the open group
        for &i in sorted {
            let c = &infos[i];
            let end = c.compressed_offset + u64::from(c.compressed_size);
            let joins = !groups.is_empty()
                && c.blob_index == span.0
                && c.compressed_offset >= span.2
                && c.compressed_offset - span.2 <= limit / 128
                && end - span.1 <= limit;
            match groups.last_mut() {
                Some(g) if joins => {
                    g.push(i);
                    span.2 = end;
                }
                _ => {
                    groups.push(vec![i]);
                    span = (c.blob_index, c.compressed_offset, end);
                }
            }
        }
        groups
    }

    /// One backend request for `group`, then decode, verify, store and hand
    /// out each chunk in it.
    fn fetch_group(
        &self,
        group: &[usize],
        infos: &[ChunkInfo],
        owned: &mut Owned<'_>,
        results: &mut [Option<Got>],
        prefetch: bool,
        dest: &mut Dest<'_>,
    ) {
        let first = &infos[group[0]];
        let start = first.compressed_offset;
        let end = group
            .iter()
            .map(|&i| infos[i].compressed_offset + u64::from(infos[i].compressed_size))
            .max()
            .unwrap_or(start);
        let len = (end - start) as usize;
        let began = StorageMetrics::now_millis();
        let stored_raw = first.stored_raw() && first.compressed_size == first.uncompressed_size;
        match (group, dest.range(group[0])) {
            // A chunk stored as is is read straight into place, not through
            // the request buffer and a copy: into the range of the caller's
            // buffer that wants it whole, else into the buffer it is kept in.
            (&[i], Some(range)) if stored_raw => {
                let data = &mut dest.out[range];
                if self.read_raw(group, infos, owned, data) {
                    let data = &*data;
                    self.finish_chunk(i, infos, owned, results, Chunk::Filled(data), data);
                }
            }
            (&[i], None) if stored_raw => {
                let mut data = vec![0; len];
                if self.read_raw(group, infos, owned, &mut data) {
                    let data = Arc::new(data);
                    let chunk = Chunk::Own(data.clone());
                    self.finish_chunk(i, infos, owned, results, chunk, &data);
                }
            }
            _ => with_scratch(len, |buf| {
                if !self.backend_request(group, infos, owned, buf) {
                    return;
                }
                self.metrics
                    .buffered_backend_size
                    .fetch_add(len as u64, Relaxed);
                for &i in group {
                    let info = &infos[i];
                    let s = (info.compressed_offset - start) as usize;
                    let stored = &buf[s..s + info.compressed_size as usize];
                    let decoded = match dest.range(i) {
                        Some(range) => self
                            .decode_into(info, stored, &mut dest.out[range.clone()])
                            .map(|()| Chunk::Filled(&dest.out[range])),
                        None => self.decode(info, stored).map(|d| Chunk::Own(Arc::new(d))),
                    };
                    match decoded {
                        Ok(chunk) => self.finish_chunk(i, infos, owned, results, chunk, stored),
                        Err(why) => self.fail_chunk(info, &why, owned),
                    }
                }
                self.metrics
                    .buffered_backend_size
                    .fetch_sub(len as u64, Relaxed);
            }),
        }
        if prefetch {
            self.metrics.prefetch_request(began, len as u64);
        }
    }

    /// Reads a chunk stored as is (alone in `group`) into `buf` and checks
    /// it. On failure, the chunk is failed (logged once) and false returned.
    fn read_raw(
        &self,
        group: &[usize],
        infos: &[ChunkInfo],
        owned: &mut Owned<'_>,
        buf: &mut [u8],
    ) -> bool {
        if !self.backend_request(group, infos, owned, buf) {
            return false;
        }
        let info = &infos[group[0]];
        match self.check(info, buf) {
            Ok(()) => true,
            Err(why) => {
                self.fail_chunk(info, &why, owned);
                false
            }
        }
    }

    /// Reads `group`'s bytes into `buf`. On failure, logs once, fails the
    /// group's chunks and returns false.
    fn backend_request(
        &self,
        group: &[usize],
        infos: &[ChunkInfo],
        owned: &mut Owned<'_>,
        buf: &mut [u8],
    ) -> bool {
        let first = &infos[group[0]];
        let blob = &self.blobs[first.blob_index as usize];
        let start = first.compressed_offset;
        let Err(e) = self.backend_read_exact(&blob.id, start, buf) else {
            return true;
        };
        // Refused credentials fail every chunk alike: one line per blob
        // (the backend has said why once), not one per chunk read.
        let chunk = if e.kind() == io::ErrorKind::PermissionDenied {
            u32::MAX
        } else {
            first.chunk_index
        };
        self.log_once((first.blob_index, chunk, LOG_BACKEND), || {
            format!(
                "blob {} chunk {} at offset {start:#x}: backend read of {} bytes failed: {e}",
                blob.id,
                first.chunk_index,
                buf.len()
            )
        });
        for &i in group {
            owned.complete((infos[i].blob_index, infos[i].chunk_index), || Err(()));
        }
        false
    }

    /// Stores a decoded, verified chunk in the cache and hands it to the
    /// caller and to whoever waits for it. `stored` is its backend bytes.
    fn finish_chunk(
        &self,
        i: usize,
        infos: &[ChunkInfo],
        owned: &mut Owned<'_>,
        results: &mut [Option<Got>],
        chunk: Chunk<'_>,
        stored: &[u8],
    ) {
        let info = &infos[i];
        let key = (info.blob_index, info.chunk_index);
        let blob = &self.blobs[info.blob_index as usize];
        let data: &[u8] = match &chunk {
            Chunk::Filled(d) => d,
            Chunk::Own(d) => d,
        };
        if let Some(cache) = &blob.cache {
            match cache.store(info, data, stored) {
                Ok(true) => {
                    self.metrics.entries_count.fetch_add(1, Relaxed);
                }
                Ok(false) => {}
                Err(e) => {
                    self.metrics.cache_write_errors.fetch_add(1, Relaxed);
                    self.log_once((key.0, key.1, LOG_CACHE_WRITE), || {
                        format!(
                            "blob {} chunk {} at offset {:#x}: writing the cache file: {e}",
                            blob.id, info.chunk_index, info.uncompressed_offset
                        )
                    });
                }
            }
        }
        self.forget_failures(key.0, key.1);
        results[i] = Some(match chunk {
            Chunk::Filled(d) => {
                owned.complete(key, || Ok(Arc::new(d.to_vec())));
                Got::Filled
            }
            Chunk::Own(d) => {
                owned.complete(key, || Ok(d.clone()));
                Got::Data(d)
            }
        });
    }

    /// A chunk whose bytes failed to decode or verify: counted, logged
    /// once, and its waiters fail too.
    fn fail_chunk(&self, info: &ChunkInfo, why: &str, owned: &mut Owned<'_>) {
        let key = (info.blob_index, info.chunk_index);
        self.metrics.chunk_errors.fetch_add(1, Relaxed);
        self.log_once((key.0, key.1, LOG_DATA), || {
            format!(
                "blob {} chunk {} at offset {:#x}: {why}",
                self.blobs[key.0 as usize].id, info.chunk_index, info.compressed_offset
            )
        });
        owned.complete(key, || Err(()));
    }

    /// Logs a failure at error level the first time, at debug afterwards,
    /// and reports failures of a read (not of the cache files) to the
    /// failure hook every time.
    pub(super) fn log_once(&self, key: (u32, u32, u8), msg: impl FnOnce() -> String) {
        let msg = msg();
        if lock(&self.logged).insert(key) {
            log::error!("{msg}");
        } else {
            log::debug!("{msg}");
        }
        if let (Some(hook), LOG_BACKEND | LOG_DATA | LOG_RESOLVE) = (&self.on_failure, key.2) {
            hook(&msg);
        }
    }

    fn forget_failures(&self, blob: u32, chunk: u32) {
        let mut logged = lock(&self.logged);
        if !logged.is_empty() {
            for kind in [LOG_BACKEND, LOG_DATA, LOG_CACHE_READ] {
                logged.remove(&(blob, chunk, kind));
            }
        }
    }
}

/// A read's buffer and, by index into the chunks `obtain` is given, the
/// range of it that each chunk wanted whole fills.
pub(super) struct Dest<'a> {
    pub(super) out: &'a mut [u8],
    pub(super) ranges: &'a [Option<Range<usize>>],
}

impl Dest<'_> {
    /// For prefetch: no caller buffer.
    pub(super) fn none() -> Dest<'static> {
        Dest {
            out: &mut [],
            ranges: &[],
        }
    }

    fn range(&self, i: usize) -> Option<Range<usize>> {
        self.ranges.get(i).cloned().flatten()
    }
}

/// A decoded chunk: in the caller's buffer, or in one of its own.
enum Chunk<'a> {
    Filled(&'a [u8]),
    Own(Arc<Vec<u8>>),
}

fn lock<T>(m: &std::sync::Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here never leave the data half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
