//! `BlobDevice`: file bytes from chunk references, through the blob cache.

use std::collections::{HashMap, HashSet};
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use nydus_protocol::rafs::blob::CiTable;
use nydus_protocol::rafs::{BlobInfo, ChunkInfo, ChunkRef};

use super::cache::BlobCacheFile;
use super::fetch::{Dest, LOG_CACHE_READ};
use super::inflight::{ChunkKey, Inflight};
use super::metrics::{BackendMetrics, BlobcacheMetrics, StorageMetrics};
use super::{eio, Backend, CacheMode, StorageConfig};

/// One blob of the image's blob table.
pub(super) struct Blob {
    pub(super) info: BlobInfo,
    /// Effective id: the backend object name and cache file stem.
    pub(super) id: String,
    /// None with dummycache, or for a blob without a chunk count.
    pub(super) cache: Option<BlobCacheFile>,
    /// The v6 ci table, loaded on first need.
    pub(super) ci: Mutex<Option<Arc<CiTable>>>,
}

/// Serves file bytes of one image: resolves chunk references, reads ready
/// chunks from the blob cache and fetches the rest from the backend
/// (merged, deduplicated across threads, verified, then cached).
///
/// Shared by all FUSE threads (`Send + Sync`). No lock is held across a
/// backend request.
pub struct BlobDevice {
    pub(super) blobs: Vec<Blob>,
    pub(super) backend: Arc<dyn Backend>,
    pub(super) work_dir: Option<PathBuf>,
    pub(super) digest_validate: bool,
    pub(super) amplify_io: u64,
    /// See `StorageConfig::shared_reply_memory`: no chunk is decoded or
    /// read in place into the caller's buffer.
    pub(super) shared_reply_memory: bool,
    pub(super) inflight: Inflight,
    pub(super) metrics: StorageMetrics,
    /// Failures already logged, so a chunk that keeps failing is logged once
    /// (until it succeeds again). Key: (blob, chunk, kind).
    pub(super) logged: Mutex<HashSet<(u32, u32, u8)>>,
    /// Told about every failed read (for the daemon's events ring).
    pub(super) on_failure: Option<FailureHook>,
    /// On-demand reads fetching from the backend right now; prefetch holds
    /// back its next request while this is not 0.
    demand: AtomicUsize,
}

/// Receives a one-line description (blob id, chunk, offset, cause) of each
/// failed chunk read. Must be cheap and must not block.
pub type FailureHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Merged backend requests are buffered whole; keep one request's buffer
/// reasonable whatever the config says.
const MAX_AMPLIFY_IO: u64 = 64 << 20;

/// Part of a read served by one chunk.
pub(super) struct Piece {
    pub(super) info: ChunkInfo,
    /// Offset of the first wanted byte inside the uncompressed chunk.
    pub(super) within: usize,
    /// Where those bytes go in the caller's buffer.
    pub(super) dst: Range<usize>,
}

impl Piece {
    /// Whether the read wants all of the chunk.
    pub(super) fn is_whole(&self) -> bool {
        self.within == 0 && self.dst.len() == self.info.uncompressed_size as usize
    }
}

/// How an `obtain`ed chunk can be read.
#[derive(Clone)]
pub(super) enum Got {
    /// Ready in the cache file (stored by another thread or process).
    Cached,
    /// Decoded into its range of the caller's buffer.
    Filled,
    /// The uncompressed, verified bytes.
    Data(Arc<Vec<u8>>),
}

impl BlobDevice {
    /// `blobs` is the image's blob table (`Reader::blobs()`);
    /// `meta_file_stem` the stem of the bootstrap file name (for inlined-meta
    /// blob ids, rafs-format §1.5). With blobcache, `work_dir` is created if
    /// needed and existing cache files in it are reused.
    pub fn new(
        blobs: &[BlobInfo],
        meta_file_stem: Option<&str>,
        config: StorageConfig,
    ) -> io::Result<Self> {
        let work_dir = match &config.cache {
            CacheMode::Blobcache { work_dir, .. } => {
                std::fs::create_dir_all(work_dir).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("blob cache work_dir {}: {e}", work_dir.display()),
                    )
                })?;
                Some(work_dir.clone())
            }
            CacheMode::Dummycache => None,
        };
        let mut out = Vec::with_capacity(blobs.len());
        for info in blobs {
            let id = info.effective_id(meta_file_stem);
            let cache = match &config.cache {
                CacheMode::Blobcache {
                    work_dir,
                    compressed,
                } if info.chunk_count > 0 => {
                    Some(BlobCacheFile::open(work_dir, &id, info, *compressed)?)
                }
                CacheMode::Blobcache { .. } => {
                    log::info!("blob {id}: no chunk count recorded; reading it uncached");
                    None
                }
                CacheMode::Dummycache => None,
            };
            out.push(Blob {
                info: info.clone(),
                id,
                cache,
                ci: Mutex::new(None),
            });
        }
        Ok(BlobDevice {
            blobs: out,
            backend: config.backend,
            work_dir,
            digest_validate: config.digest_validate,
            amplify_io: config.amplify_io.min(MAX_AMPLIFY_IO),
            shared_reply_memory: config.shared_reply_memory,
            inflight: Inflight::default(),
            metrics: StorageMetrics::default(),
            logged: Mutex::new(HashSet::new()),
            on_failure: None,
            demand: AtomicUsize::new(0),
        })
    }

    /// Calls `hook` with a description of every failed chunk read (backend
    /// error, corrupt or unverifiable data, bad descriptor).
    pub fn with_failure_hook(mut self, hook: FailureHook) -> Self {
        self.on_failure = Some(hook);
        self
    }

    /// `read_in` of all of `buf`, with no room to spare.
    #[cfg(test)]
    pub fn read(
        &self,
        chunks: &[ChunkRef],
        chunk_size: u32,
        file_size: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let want = buf.len();
        self.read_in(chunks, chunk_size, file_size, offset, buf, want)
    }

    /// Fills the start of `room` with bytes `[offset, offset + want)` of a
    /// regular file, clipped to `file_size`; returns the number of bytes
    /// filled (0 at or past EOF). `chunks` are the file's chunk references
    /// in file order (`Reader::chunks`), `chunk_size` the image's chunk
    /// size. Bytes no chunk covers (holes) read as zeros. The rest of `room`
    /// is scratch: with room for a whole chunk, one wanted only in part is
    /// decoded there (`partial.rs`).
    ///
    /// Any failure (backend error, bad chunk data, corrupt descriptor) is
    /// `EIO`; it has been logged and counted, and the next read retries.
    pub fn read_in(
        &self,
        chunks: &[ChunkRef],
        chunk_size: u32,
        file_size: u64,
        offset: u64,
        room: &mut [u8],
        want: usize,
    ) -> io::Result<usize> {
        let want = want.min(room.len());
        if offset >= file_size || want == 0 {
            return Ok(0);
        }
        self.metrics.total.fetch_add(1, Relaxed);
        let end = file_size.min(offset.saturating_add(want as u64));
        let n = (end - offset) as usize;
        let span = u64::from(chunk_size.max(1));
        let first = chunks.partition_point(|c| c.file_offset.saturating_add(span) <= offset);
        let mut pieces = Vec::new();
        let mut next = first;
        // Bytes [0, contiguous) of `out` are covered by the pieces so far.
        let mut contiguous = 0;
        for r in chunks[first..].iter().take_while(|r| r.file_offset < end) {
            next += 1;
            let info = self.resolve(r)?;
            let chunk_end = r
                .file_offset
                .saturating_add(u64::from(info.uncompressed_size));
            let (from, to) = (offset.max(r.file_offset), end.min(chunk_end));
            if from >= to {
                continue;
            }
            let dst = (from - offset) as usize..(to - offset) as usize;
            if dst.start == contiguous {
                contiguous = dst.end;
            }
            pieces.push(Piece {
                info,
                within: (from - r.file_offset) as usize,
                dst,
            });
        }
        // Pieces that tile the whole range leave no hole: skip zeroing a
        // buffer they overwrite anyway (it holds an earlier reply's bytes,
        // so any gap must still be zeroed).
        if contiguous < n {
            room[..n].fill(0);
        } else if let Some(i) = self.part_to_decode_in_room(&pieces, room.len()) {
            let rest = &chunks[next..];
            if self.decode_part_in_room(&pieces[i], rest, i + 1 == pieces.len(), room)? {
                pieces.remove(i);
            }
        }
        let out = &mut room[..n];
        let mut pending = Vec::new();
        for piece in pieces {
            if !self.read_cached(&piece, out) {
                pending.push(piece);
            }
        }
        if pending.is_empty() {
            return Ok(n);
        }
        let mut keys: Vec<ChunkKey> = Vec::new();
        let mut uniq: Vec<ChunkInfo> = Vec::new();
        // Where in `out` a chunk wanted whole can be decoded in place.
        let mut whole: Vec<Option<Range<usize>>> = Vec::new();
        for p in &pending {
            let key = (p.info.blob_index, p.info.chunk_index);
            let covers = (!self.shared_reply_memory && p.is_whole()).then(|| p.dst.clone());
            match keys.iter().position(|k| *k == key) {
                None => {
                    keys.push(key);
                    uniq.push(p.info);
                    whole.push(covers);
                }
                Some(j) if whole[j].is_none() => whole[j] = covers,
                Some(_) => {}
            }
        }
        let needed = uniq.len();
        self.read_ahead(&chunks[next..], &mut keys, &mut uniq);
        let mut dest = Dest {
            out: &mut *out,
            ranges: &whole,
        };
        let obtained = self.obtain_on_demand(&uniq, needed, &mut dest);
        let got: HashMap<ChunkKey, (usize, Option<Got>)> = keys
            .into_iter()
            .zip(obtained.into_iter().enumerate())
            .collect();
        let mut failed = false;
        for p in &pending {
            let from = p.within..p.within + p.dst.len();
            match got.get(&(p.info.blob_index, p.info.chunk_index)) {
                Some((_, Some(Got::Data(d)))) => match d.get(from) {
                    Some(src) => out[p.dst.clone()].copy_from_slice(src),
                    None => failed = true,
                },
                Some((_, Some(Got::Cached))) => failed |= !self.read_cached(p, out),
                // Another piece of the same chunk was decoded in place.
                Some((j, Some(Got::Filled))) => match &whole[*j] {
                    Some(r) if from.end <= r.len() => {
                        if r.start + from.start != p.dst.start {
                            out.copy_within(r.start + from.start..r.start + from.end, p.dst.start);
                        }
                    }
                    _ => failed = true,
                },
                _ => failed = true,
            }
        }
        if failed {
            return Err(eio());
        }
        Ok(n)
    }

    /// Makes sure the given chunks are in the blob cache, fetching the
    /// missing ones (merged up to `amplify_io`). Unsupported with
    /// dummycache; `EIO` if any chunk failed (others are still cached).
    #[allow(dead_code)] // the daemon uses `prefetch_with`; storage tests this
    pub fn prefetch(&self, chunks: &[ChunkRef]) -> io::Result<()> {
        self.prefetch_with(chunks, self.amplify_io, &mut |_| true)
    }

    /// `prefetch` in backend requests of at most `limit` bytes (a chunk may
    /// be larger), calling `gate(bytes)` before each: it may block (rate
    /// limit, on-demand reads first) and returns false to stop (cancel).
    pub fn prefetch_with(
        &self,
        chunks: &[ChunkRef],
        limit: u64,
        gate: &mut dyn FnMut(u64) -> bool,
    ) -> io::Result<()> {
        if self.work_dir.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "prefetch needs a blob cache (dummycache has none)",
            ));
        }
        let mut seen = HashSet::new();
        let mut want = Vec::new();
        let mut failed = false;
        for r in chunks {
            let info = match self.resolve(r) {
                Ok(i) => i,
                Err(_) => {
                    failed = true;
                    continue;
                }
            };
            if !self.is_ready(&info) && seen.insert((info.blob_index, info.chunk_index)) {
                want.push(info);
            }
        }
        self.metrics
            .prefetch_unmerged_chunks
            .fetch_add(want.len() as u64, Relaxed);
        // Claim one merged request at a time, so a user read of a chunk late
        // in the list waits for one request, not for the whole prefetch.
        want.sort_by_key(|c| (c.blob_index, c.compressed_offset));
        let order: Vec<usize> = (0..want.len()).collect();
        for group in self.merge(&order, &want, limit.min(MAX_AMPLIFY_IO)) {
            // A user read may have fetched some of these meanwhile.
            let part: Vec<ChunkInfo> = group
                .iter()
                .map(|&i| want[i])
                .filter(|c| !self.is_ready(c))
                .collect();
            let (Some(first), Some(last)) = (part.first(), part.last()) else {
                continue;
            };
            let bytes =
                last.compressed_offset + u64::from(last.compressed_size) - first.compressed_offset;
            if !gate(bytes) {
                break;
            }
            failed |= self
                .obtain(&part, part.len(), true, &mut Dest::none())
                .iter()
                .any(Option::is_none);
        }
        if failed {
            return Err(eio());
        }
        Ok(())
    }

    /// The effective blob ids, by blob index.
    pub fn blob_ids(&self) -> Vec<String> {
        self.blobs.iter().map(|b| b.id.clone()).collect()
    }

    /// `obtain` for a read: counted in `demand` meanwhile, so prefetch
    /// holds back.
    pub(super) fn obtain_on_demand(
        &self,
        infos: &[ChunkInfo],
        needed: usize,
        dest: &mut Dest<'_>,
    ) -> Vec<Option<Got>> {
        self.demand.fetch_add(1, Relaxed);
        let got = self.obtain(infos, needed, false, dest);
        self.demand.fetch_sub(1, Relaxed);
        got
    }

    /// Whether some on-demand read is fetching from the backend now.
    pub fn demand_pending(&self) -> bool {
        self.demand.load(Relaxed) > 0
    }

    fn is_ready(&self, info: &ChunkInfo) -> bool {
        self.blobs[info.blob_index as usize]
            .cache
            .as_ref()
            .is_some_and(|c| c.is_ready(info.chunk_index))
    }

    /// The backend, for run-time settings (`PUT /api/v1/config`).
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// `GET /api/v1/metrics/backend`.
    pub fn backend_metrics(&self) -> BackendMetrics {
        let mut m = self.metrics.backend(self.backend.kind());
        m.http = self.backend.http_metrics();
        m
    }

    /// `GET /api/v1/metrics/blobcache`.
    pub fn blobcache_metrics(&self) -> BlobcacheMetrics {
        let caches = self.blobs.iter().filter_map(|b| b.cache.as_ref());
        let files = caches.clone().map(|c| c.name().to_string()).collect();
        let all_ready = self.work_dir.is_some() && caches.clone().all(|c| c.all_ready());
        let store = self
            .work_dir
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        self.metrics.blobcache(files, store, all_ready)
    }

    /// Serves `p` from the cache file if the chunk is ready there. A cached
    /// chunk that cannot be read or decoded is forgotten and refetched.
    fn read_cached(&self, p: &Piece, out: &mut [u8]) -> bool {
        let Some(cache) = self.blobs[p.info.blob_index as usize].cache.as_ref() else {
            return false;
        };
        if !cache.is_ready(p.info.chunk_index) {
            return false;
        }
        let dst = &mut out[p.dst.clone()];
        let whole =
            cache.compressed() || (self.digest_validate && !cache.is_verified(p.info.chunk_index));
        let res = if whole {
            self.cached_chunk(cache, &p.info).and_then(|data| {
                match data.get(p.within..p.within + dst.len()) {
                    Some(src) => {
                        dst.copy_from_slice(src);
                        Ok(())
                    }
                    None => Err(io::Error::other("piece outside the chunk")),
                }
            })
        } else {
            cache.read_plain(&p.info, p.within as u64, dst)
        };
        match res {
            Ok(()) => {
                self.metrics.partial_hits.fetch_add(1, Relaxed);
                true
            }
            Err(e) => {
                let key = (p.info.blob_index, p.info.chunk_index, LOG_CACHE_READ);
                self.log_once(key, || {
                    format!(
                        "blob {} chunk {} at offset {:#x}: cached copy unusable, refetching: {e}",
                        self.blobs[key.0 as usize].id, key.1, p.info.uncompressed_offset
                    )
                });
                cache.clear(p.info.chunk_index);
                false
            }
        }
    }

    /// The whole chunk from the cache file, checked as a fetched one is.
    fn cached_chunk(&self, cache: &BlobCacheFile, info: &ChunkInfo) -> io::Result<Vec<u8>> {
        if cache.compressed() {
            let stored = cache.read_stored(info)?;
            return self.decode(info, &stored).map_err(io::Error::other);
        }
        let mut data = vec![0u8; info.uncompressed_size as usize];
        cache.read_plain(info, 0, &mut data)?;
        self.check(info, &data).map_err(io::Error::other)?;
        cache.set_verified(info.chunk_index);
        self.metrics.whole_hits.fetch_add(1, Relaxed);
        Ok(data)
    }
}
