//! Storage counters, reported with upstream's key names (reference §10.3,
//! §10.4) so nydus-snapshotter and nydusctl parse them unchanged.
//!
//! Plain relaxed atomics: counters are independent and only need to be
//! eventually consistent for a metrics reader, and readers never block the
//! data path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nydus_protocol::api;
use serde::Serialize;

const BUCKETS: usize = 8;

/// Size buckets: <1K, 1K~, 4K~, 16K~, 64K~, 128K~, 512K~, 1M~.
fn size_bucket(bytes: u64) -> usize {
    const EDGES: [u64; 7] = [
        1 << 10,
        4 << 10,
        16 << 10,
        64 << 10,
        128 << 10,
        512 << 10,
        1 << 20,
    ];
    EDGES.iter().take_while(|&&e| bytes >= e).count()
}

/// Latency buckets: ≤1ms, ≤20ms, ≤50ms, ≤100ms, ≤500ms, ≤1s, ≤2s, >2s.
fn latency_bucket(millis: u64) -> usize {
    const EDGES: [u64; 7] = [1, 20, 50, 100, 500, 1000, 2000];
    EDGES.iter().take_while(|&&e| millis > e).count()
}

#[derive(Default)]
struct Dist([AtomicU64; BUCKETS]);

impl Dist {
    fn snapshot(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.0[i].load(Relaxed))
    }
}

/// Counters of one `BlobDevice` (its backend and its blob cache).
#[derive(Default)]
pub struct StorageMetrics {
    // Backend (§10.3).
    read_count: AtomicU64,
    read_errors: AtomicU64,
    read_amount_total: AtomicU64,
    latency_millis_total: AtomicU64,
    latency_millis_dist: Dist,
    block_size_dist: Dist,
    latency_sizes_dist: [Dist; BUCKETS],
    // Blob cache (§10.4).
    pub(crate) partial_hits: AtomicU64,
    pub(crate) whole_hits: AtomicU64,
    pub(crate) total: AtomicU64,
    pub(crate) entries_count: AtomicU64,
    pub(crate) prefetch_data_amount: AtomicU64,
    pub(crate) prefetch_requests_count: AtomicU64,
    pub(crate) prefetch_unmerged_chunks: AtomicU64,
    pub(crate) prefetch_cumulative_time_millis: AtomicU64,
    prefetch_begin_millis: AtomicU64,
    prefetch_end_millis: AtomicU64,
    pub(crate) buffered_backend_size: AtomicU64,
    /// Chunks whose data failed to decompress or verify (not upstream).
    pub(crate) chunk_errors: AtomicU64,
    /// Failed writes to the cache files (not upstream).
    pub(crate) cache_write_errors: AtomicU64,
}

/// `GET /api/v1/metrics/backend` body: upstream's shape (`protocol::api`)
/// plus the wire-level counters of a network backend (not upstream; absent
/// for local backends). Derefs to the upstream part for reading.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackendMetrics {
    #[serde(flatten)]
    pub upstream: api::BackendMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<super::http::HttpMetrics>,
}

/// `GET /api/v1/metrics/blobcache` body: upstream's shape plus our error
/// counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlobcacheMetrics {
    #[serde(flatten)]
    pub upstream: api::BlobcacheMetrics,
    /// Chunks whose data failed to decompress or verify.
    pub chunk_errors: u64,
    /// Failed writes to the cache files.
    pub cache_write_errors: u64,
}

impl std::ops::Deref for BackendMetrics {
    type Target = api::BackendMetrics;
    fn deref(&self) -> &Self::Target {
        &self.upstream
    }
}

impl std::ops::Deref for BlobcacheMetrics {
    type Target = api::BlobcacheMetrics;
    fn deref(&self) -> &Self::Target {
        &self.upstream
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl StorageMetrics {
    /// Records one backend request of `bytes` that took `elapsed`.
    pub(crate) fn backend_read(&self, bytes: u64, elapsed: Duration, ok: bool) {
        let ms = elapsed.as_millis() as u64;
        let (s, l) = (size_bucket(bytes), latency_bucket(ms));
        self.read_count.fetch_add(1, Relaxed);
        if !ok {
            self.read_errors.fetch_add(1, Relaxed);
            return;
        }
        self.read_amount_total.fetch_add(bytes, Relaxed);
        self.latency_millis_total.fetch_add(ms, Relaxed);
        self.latency_millis_dist.0[s].fetch_add(ms, Relaxed);
        self.block_size_dist.0[s].fetch_add(1, Relaxed);
        self.latency_sizes_dist[s].0[l].fetch_add(1, Relaxed);
    }

    /// Records the start and end of one prefetch request.
    pub(crate) fn prefetch_request(&self, began: u64, bytes: u64) {
        let end = now_millis();
        let _ = self
            .prefetch_begin_millis
            .compare_exchange(0, began, Relaxed, Relaxed);
        self.prefetch_end_millis.fetch_max(end, Relaxed);
        self.prefetch_requests_count.fetch_add(1, Relaxed);
        self.prefetch_data_amount.fetch_add(bytes, Relaxed);
        self.prefetch_cumulative_time_millis
            .fetch_add(end.saturating_sub(began), Relaxed);
    }

    pub(crate) fn now_millis() -> u64 {
        now_millis()
    }

    pub fn backend(&self, backend_type: &str) -> BackendMetrics {
        let upstream = api::BackendMetrics {
            backend_type: backend_type.to_string(),
            read_count: self.read_count.load(Relaxed),
            read_errors: self.read_errors.load(Relaxed),
            read_amount_total: self.read_amount_total.load(Relaxed),
            read_cumulative_latency_millis_total: self.latency_millis_total.load(Relaxed),
            read_cumulative_latency_millis_dist: self.latency_millis_dist.snapshot(),
            read_count_block_size_dist: self.block_size_dist.snapshot(),
            read_latency_sizes_dist: std::array::from_fn(|i| self.latency_sizes_dist[i].snapshot()),
        };
        BackendMetrics {
            upstream,
            http: None,
        }
    }

    /// The blob-cache body; the caller supplies what only it knows.
    pub fn blobcache(
        &self,
        underlying_files: Vec<String>,
        store_path: String,
        data_all_ready: bool,
    ) -> BlobcacheMetrics {
        let (begin, end) = (
            self.prefetch_begin_millis.load(Relaxed),
            self.prefetch_end_millis.load(Relaxed),
        );
        let upstream = api::BlobcacheMetrics {
            underlying_files,
            store_path,
            partial_hits: self.partial_hits.load(Relaxed),
            whole_hits: self.whole_hits.load(Relaxed),
            total: self.total.load(Relaxed),
            entries_count: self.entries_count.load(Relaxed),
            prefetch_data_amount: self.prefetch_data_amount.load(Relaxed),
            prefetch_requests_count: self.prefetch_requests_count.load(Relaxed),
            prefetch_workers: 0,
            prefetch_unmerged_chunks: self.prefetch_unmerged_chunks.load(Relaxed),
            prefetch_cumulative_time_millis: self.prefetch_cumulative_time_millis.load(Relaxed),
            prefetch_begin_time_secs: begin / 1000,
            prefetch_begin_time_millis: begin % 1000,
            prefetch_end_time_secs: end / 1000,
            prefetch_end_time_millis: end % 1000,
            buffered_backend_size: self.buffered_backend_size.load(Relaxed),
            data_all_ready,
        };
        BlobcacheMetrics {
            upstream,
            chunk_errors: self.chunk_errors.load(Relaxed),
            cache_write_errors: self.cache_write_errors.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_upstream_edges() {
        assert_eq!(size_bucket(0), 0);
        assert_eq!(size_bucket(1023), 0);
        assert_eq!(size_bucket(1024), 1);
        assert_eq!(size_bucket(128 << 10), 5);
        assert_eq!(size_bucket(1 << 20), 7);
        assert_eq!(size_bucket(u64::MAX), 7);
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(2), 1);
        assert_eq!(latency_bucket(2000), 6);
        assert_eq!(latency_bucket(2001), 7);
    }

    #[test]
    fn snapshot_uses_upstream_keys() {
        let m = StorageMetrics::default();
        m.backend_read(4096, Duration::from_millis(3), true);
        m.backend_read(10, Duration::ZERO, false);
        let v = serde_json::to_value(m.backend("localfs")).unwrap();
        assert_eq!(v["backend_type"], "localfs");
        assert_eq!(v["read_count"], 2);
        assert_eq!(v["read_errors"], 1);
        assert_eq!(v["read_amount_total"], 4096);
        assert_eq!(v["read_count_block_size_dist"][2], 1);
        assert_eq!(v["read_latency_sizes_dist"][2][1], 1);
        let v = serde_json::to_value(m.blobcache(vec![], "/w".into(), false)).unwrap();
        for k in [
            "partial_hits",
            "whole_hits",
            "total",
            "entries_count",
            "store_path",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
