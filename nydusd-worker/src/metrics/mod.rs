//! Daemon-wide metrics registry: filesystem counters per instance (VFS
//! mountpoint), the storage layer's backend/blob-cache metrics registered as
//! [`MetricsSource`]s, and the backend-failure event ring.
//!
//! The API server only reads from here; the filesystem and storage layers
//! write. Lookups follow upstream: with an `id`, that counter set or 404;
//! without, succeed only if exactly one set exists.

mod events;
mod fs;
mod inflight;
pub mod prometheus;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;

pub use events::EventLog;
pub use fs::{Fop, FsMetrics, FsMetricsOptions};
// InflightSlot is what FUSE threads hold, usually without naming it.
#[allow(unused_imports)]
pub use inflight::{InflightSlot, InflightTable};

/// Number of buckets of every size or latency histogram.
pub const BUCKETS: usize = 8;

/// Block-size bucket of a read of `bytes`: <1K, 1K~, 4K~, 16K~, 64K~, 128K~,
/// 512K~, 1M~ (shared by filesystem and backend metrics).
pub fn block_size_bucket(bytes: u64) -> usize {
    const LIMITS: [u64; BUCKETS - 1] = [
        1 << 10,
        4 << 10,
        16 << 10,
        64 << 10,
        128 << 10,
        512 << 10,
        1 << 20,
    ];
    LIMITS
        .iter()
        .position(|&l| bytes < l)
        .unwrap_or(BUCKETS - 1)
}

pub(crate) fn load_all<const N: usize>(a: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| a[i].load(Ordering::Relaxed))
}

/// What the storage layer exposes: the JSON bodies of
/// `GET /api/v1/metrics/backend` and `/metrics/blobcache` (reference §10.3,
/// §10.4), already free of secrets.
pub trait MetricsSource: Send + Sync {
    fn backend_json(&self) -> Value;
    fn blobcache_json(&self) -> Value;
}

/// Why a lookup failed; the API answers 404 for both, as upstream does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("no metrics registered with id {0:?}")]
    NoSuchId(String),
    #[error("{0} metrics sets are registered; pass ?id=<mountpoint> to pick one")]
    NeedId(usize),
}

struct StorageEntry {
    mountpoint: String,
    cache_id: String,
    source: Arc<dyn MetricsSource>,
}

#[derive(Default)]
pub struct Metrics {
    fs: RwLock<BTreeMap<String, Arc<FsMetrics>>>,
    storage: RwLock<Vec<StorageEntry>>,
    events: EventLog,
    inflight: Arc<InflightTable>,
}

// Poisoning only means a panic elsewhere mid-update; the maps stay usable.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Picks the one element matching `id`, or the only element when `id` is None.
fn pick<T: Clone>(items: Vec<T>, all: usize, id: Option<&str>) -> Result<T, MetricsError> {
    match (id, items.len()) {
        (_, 1) => Ok(items[0].clone()),
        (Some(id), _) => Err(MetricsError::NoSuchId(id.to_string())),
        (None, _) => Err(MetricsError::NeedId(all)),
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates and registers the counters of the instance mounted at
    /// `mountpoint` (replacing any earlier set there, e.g. on remount).
    pub fn add_fs(&self, mountpoint: &str, opts: FsMetricsOptions) -> Arc<FsMetrics> {
        let m = Arc::new(FsMetrics::new(mountpoint, opts));
        write(&self.fs).insert(mountpoint.to_string(), m.clone());
        m
    }

    /// Registers the storage metrics used by the instance at `mountpoint`;
    /// `cache_id` is the config `id` (v1 `device.id`) that blobcache metrics
    /// are also looked up by. Replaces an earlier source for `mountpoint`.
    pub fn add_storage(&self, mountpoint: &str, cache_id: &str, source: Arc<dyn MetricsSource>) {
        let mut storage = write(&self.storage);
        storage.retain(|e| e.mountpoint != mountpoint);
        storage.push(StorageEntry {
            mountpoint: mountpoint.to_string(),
            cache_id: cache_id.to_string(),
            source,
        });
    }

    /// Drops every counter set of the instance at `mountpoint` (on umount).
    pub fn remove(&self, mountpoint: &str) {
        write(&self.fs).remove(mountpoint);
        write(&self.storage).retain(|e| e.mountpoint != mountpoint);
    }

    /// FUSE requests in flight: each FUSE thread takes a slot
    /// (`metrics.inflight().slot()`) and passes it to `handle_message` as
    /// its `MetricsHook`.
    pub fn inflight(&self) -> &Arc<InflightTable> {
        &self.inflight
    }

    /// Backend failures, for `GET /api/v1/daemon/events`.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    pub fn fs(&self, id: Option<&str>) -> Result<Arc<FsMetrics>, MetricsError> {
        let fs = read(&self.fs);
        let hits: Vec<_> = match id {
            Some(id) => fs.get(id).cloned().into_iter().collect(),
            None => fs.values().cloned().collect(),
        };
        pick(hits, fs.len(), id)
    }

    /// Every metric set as (section, mountpoint, JSON), for `GET /metrics`.
    pub fn all_sections(&self) -> Vec<(&'static str, String, Value)> {
        let mut out = Vec::new();
        for (mountpoint, fs) in read(&self.fs).iter() {
            out.push(("fs", mountpoint.clone(), fs.to_json()));
        }
        for e in read(&self.storage).iter() {
            out.push(("backend", e.mountpoint.clone(), e.source.backend_json()));
            out.push(("blobcache", e.mountpoint.clone(), e.source.blobcache_json()));
        }
        out
    }

    /// `GET /api/v1/metrics[?id=]` body.
    pub fn fs_json(&self, id: Option<&str>) -> Result<Value, MetricsError> {
        Ok(self.fs(id)?.to_json())
    }

    /// `GET /api/v1/metrics/files[?id=][&latest=true]` body.
    pub fn files_json(&self, id: Option<&str>, latest: bool) -> Result<Value, MetricsError> {
        let fs = self.fs(id)?;
        Ok(if latest {
            fs.take_latest_json()
        } else {
            fs.files_json()
        })
    }

    /// `GET /api/v1/metrics/pattern[?id=]` body.
    pub fn pattern_json(&self, id: Option<&str>) -> Result<Value, MetricsError> {
        Ok(self.fs(id)?.pattern_json())
    }

    /// Backend metrics are keyed by mountpoint; the cache id is accepted too.
    pub fn backend_json(&self, id: Option<&str>) -> Result<Value, MetricsError> {
        Ok(self.storage(id, false)?.backend_json())
    }

    /// Blob cache metrics are keyed by cache (config) id; as the snapshotter
    /// passes the mountpoint for everything, that is accepted too.
    pub fn blobcache_json(&self, id: Option<&str>) -> Result<Value, MetricsError> {
        Ok(self.storage(id, true)?.blobcache_json())
    }

    fn storage(
        &self,
        id: Option<&str>,
        by_cache: bool,
    ) -> Result<Arc<dyn MetricsSource>, MetricsError> {
        let storage = read(&self.storage);
        let Some(id) = id else {
            let all: Vec<_> = storage.iter().map(|e| e.source.clone()).collect();
            return pick(all, storage.len(), None);
        };
        // The preferred key first, then the other one.
        let key = |e: &StorageEntry, preferred: bool| {
            if by_cache == preferred {
                e.cache_id.clone()
            } else {
                e.mountpoint.clone()
            }
        };
        [true, false]
            .into_iter()
            .find_map(|p| storage.iter().find(|e| key(e, p) == id))
            .map(|e| e.source.clone())
            .ok_or_else(|| MetricsError::NoSuchId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fake(&'static str);
    impl MetricsSource for Fake {
        fn backend_json(&self) -> Value {
            json!({"backend_type": self.0})
        }
        fn blobcache_json(&self) -> Value {
            json!({"store_path": self.0})
        }
    }

    #[test]
    fn metrics_buckets() {
        assert_eq!(block_size_bucket(0), 0);
        assert_eq!(block_size_bucket(1023), 0);
        assert_eq!(block_size_bucket(1024), 1);
        assert_eq!(block_size_bucket(4096), 2);
        assert_eq!(block_size_bucket(128 << 10), 5);
        assert_eq!(block_size_bucket((1 << 20) - 1), 6);
        assert_eq!(block_size_bucket(1 << 20), 7);
    }

    #[test]
    fn metrics_registry_lookup() {
        let m = Metrics::new();
        assert_eq!(m.fs_json(None), Err(MetricsError::NeedId(0)));
        m.add_fs("/", FsMetricsOptions::default());
        assert_eq!(m.fs_json(None).map(|v| v["id"].clone()), Ok(json!("/")));
        m.add_fs("/a", FsMetricsOptions::default());
        assert_eq!(m.fs_json(None), Err(MetricsError::NeedId(2)));
        assert_eq!(
            m.fs_json(Some("/a")).map(|v| v["id"].clone()),
            Ok(json!("/a"))
        );
        assert_eq!(
            m.fs_json(Some("/b")),
            Err(MetricsError::NoSuchId("/b".into()))
        );

        m.add_storage("/", "cache-root", Arc::new(Fake("one")));
        assert_eq!(m.backend_json(None), Ok(json!({"backend_type": "one"})));
        m.add_storage("/a", "/a-cache", Arc::new(Fake("two")));
        assert!(m.backend_json(None).is_err());
        assert_eq!(
            m.backend_json(Some("/a")),
            Ok(json!({"backend_type": "two"}))
        );
        assert_eq!(
            m.blobcache_json(Some("cache-root")),
            Ok(json!({"store_path": "one"}))
        );
        assert_eq!(
            m.blobcache_json(Some("/")),
            Ok(json!({"store_path": "one"}))
        );
        m.remove("/a");
        assert_eq!(m.blobcache_json(None), Ok(json!({"store_path": "one"})));
        assert_eq!(m.fs_json(None).map(|v| v["id"].clone()), Ok(json!("/")));
    }
}
