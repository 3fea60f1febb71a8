//! Counters of one filesystem instance (one pseudo mount), in the JSON shapes
//! of upstream's `GET /api/v1/metrics`, `/metrics/files` and `/metrics/pattern`.
//!
//! The hot path (`op`, `read`) only touches atomics unless a per-file option
//! (`iostats_files`, `access_pattern`, `latest_read_files`) is on; those take
//! a mutex per call, which upstream also pays.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nydus_protocol::api as wire;
use serde_json::{json, Value};

use super::{block_size_bucket, load_all, BUCKETS};

/// Number of counted filesystem operations.
pub const FOP_COUNT: usize = 15;

/// Filesystem operations, in upstream's index order for `fop_hits`,
/// `fop_errors` and `fop_cumulative_latency_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fop {
    Getattr = 0,
    Readlink = 1,
    Open = 2,
    Release = 3,
    Read = 4,
    Statfs = 5,
    Getxattr = 6,
    Listxattr = 7,
    Opendir = 8,
    Lookup = 9,
    Readdir = 10,
    Readdirplus = 11,
    Access = 12,
    Forget = 13,
    BatchForget = 14,
}

/// Which optional (per-file) counter sets an instance keeps; from the RAFS
/// config keys `iostats_files`, `access_pattern`, `latest_read_files`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsMetricsOptions {
    pub files_account: bool,
    pub access_pattern: bool,
    pub latest_read_files: bool,
}

#[derive(Default)]
struct FileStats {
    total_fops: u64,
    data_read: u64,
    block_count_read: [u64; BUCKETS],
    fop_hits: [u64; FOP_COUNT],
    fop_errors: [u64; FOP_COUNT],
}

struct AccessPattern {
    nr_read: u64,
    first_access: Duration,
}

/// The counters of one instance, keyed in the registry by its VFS mountpoint.
pub struct FsMetrics {
    id: String,
    opts: FsMetricsOptions,
    nr_opens: AtomicU64,
    data_read: AtomicU64,
    block_count_read: [AtomicU64; BUCKETS],
    fop_hits: [AtomicU64; FOP_COUNT],
    fop_errors: [AtomicU64; FOP_COUNT],
    fop_latency_us: [AtomicU64; FOP_COUNT],
    read_latency_dist: [AtomicU64; BUCKETS],
    files: Mutex<BTreeMap<u64, FileStats>>,
    pattern: Mutex<BTreeMap<u64, AccessPattern>>,
    latest: Mutex<BTreeSet<u64>>,
}

/// A poisoned lock only means another thread panicked mid-update of plain
/// counters; the data is still usable, and metrics must never take the
/// daemon down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read latency buckets: ≤200µs, ≤1ms, ≤20ms, ≤50ms, ≤500ms, ≤1s, ≤2s, >2s.
fn read_latency_bucket(d: Duration) -> usize {
    const LIMITS_US: [u128; BUCKETS - 1] =
        [200, 1_000, 20_000, 50_000, 500_000, 1_000_000, 2_000_000];
    let us = d.as_micros();
    LIMITS_US
        .iter()
        .position(|&l| us <= l)
        .unwrap_or(BUCKETS - 1)
}

impl FsMetrics {
    pub fn new(id: &str, opts: FsMetricsOptions) -> Self {
        FsMetrics {
            id: id.to_string(),
            opts,
            nr_opens: AtomicU64::new(0),
            data_read: AtomicU64::new(0),
            block_count_read: Default::default(),
            fop_hits: Default::default(),
            fop_errors: Default::default(),
            fop_latency_us: Default::default(),
            read_latency_dist: Default::default(),
            files: Mutex::new(BTreeMap::new()),
            pattern: Mutex::new(BTreeMap::new()),
            latest: Mutex::new(BTreeSet::new()),
        }
    }

    /// Counts one call of a non-read operation on inode `ino` (every call is
    /// a hit; failures are also errors). Open/Release keep `nr_opens`.
    pub fn op(&self, fop: Fop, ino: u64, ok: bool) {
        let i = fop as usize;
        self.fop_hits[i].fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.fop_errors[i].fetch_add(1, Ordering::Relaxed);
        } else if fop == Fop::Open {
            self.nr_opens.fetch_add(1, Ordering::Relaxed);
        } else if fop == Fop::Release {
            // Saturating: a release for an open counted before a restart
            // must not wrap the counter.
            let _ = self
                .nr_opens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
        if self.opts.files_account {
            let mut files = lock(&self.files);
            let f = files.entry(ino).or_default();
            f.total_fops += 1;
            f.fop_hits[i] += 1;
            if !ok {
                f.fop_errors[i] += 1;
            }
        }
    }

    /// Counts one read of inode `ino` that returned `bytes` bytes (ignored
    /// when `ok` is false) and took `elapsed`.
    pub fn read(&self, ino: u64, bytes: usize, elapsed: Duration, ok: bool) {
        let i = Fop::Read as usize;
        self.fop_hits[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.fop_latency_us[i].fetch_add(us, Ordering::Relaxed);
        self.read_latency_dist[read_latency_bucket(elapsed)].fetch_add(1, Ordering::Relaxed);
        let bucket = block_size_bucket(bytes as u64);
        if ok {
            self.data_read.fetch_add(bytes as u64, Ordering::Relaxed);
            self.block_count_read[bucket].fetch_add(1, Ordering::Relaxed);
        } else {
            self.fop_errors[i].fetch_add(1, Ordering::Relaxed);
        }
        if self.opts.files_account {
            let mut files = lock(&self.files);
            let f = files.entry(ino).or_default();
            f.total_fops += 1;
            f.fop_hits[i] += 1;
            if ok {
                f.data_read += bytes as u64;
                f.block_count_read[bucket] += 1;
            } else {
                f.fop_errors[i] += 1;
            }
        }
        if self.opts.access_pattern {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            lock(&self.pattern)
                .entry(ino)
                .or_insert(AccessPattern {
                    nr_read: 0,
                    first_access: now,
                })
                .nr_read += 1;
        }
        if self.opts.latest_read_files {
            lock(&self.latest).insert(ino);
        }
    }

    /// `GET /api/v1/metrics` body.
    pub fn to_json(&self) -> Value {
        let m = wire::FsMetrics {
            files_account_enabled: self.opts.files_account,
            access_pattern_enabled: self.opts.access_pattern,
            record_latest_read_files_enabled: self.opts.latest_read_files,
            measure_latency: true,
            id: self.id.clone(),
            nr_opens: self.nr_opens.load(Ordering::Relaxed),
            data_read: self.data_read.load(Ordering::Relaxed),
            block_count_read: load_all(&self.block_count_read),
            fop_hits: load_all(&self.fop_hits),
            fop_errors: load_all(&self.fop_errors),
            fop_cumulative_latency_total: load_all(&self.fop_latency_us),
            read_latency_dist: load_all(&self.read_latency_dist),
        };
        serde_json::to_value(m).unwrap_or_default()
    }

    /// `GET /api/v1/metrics/files` body: per-inode counters (empty unless
    /// `iostats_files`).
    pub fn files_json(&self) -> Value {
        let files = lock(&self.files);
        let map: wire::FilesMetrics = files
            .iter()
            .map(|(ino, f)| {
                let v = wire::FileMetrics {
                    total_fops: f.total_fops,
                    data_read: f.data_read,
                    block_count_read: f.block_count_read,
                    fop_hits: f.fop_hits,
                    fop_errors: f.fop_errors,
                };
                (ino.to_string(), v)
            })
            .collect();
        serde_json::to_value(map).unwrap_or_default()
    }

    /// `GET /api/v1/metrics/files?latest=true` body: inodes read since the
    /// previous call as `[[start, end], [ino], ...]`; the set is cleared.
    pub fn take_latest_json(&self) -> Value {
        let set = std::mem::take(&mut *lock(&self.latest));
        let mut out: Vec<Value> = Vec::new();
        let mut run: Option<(u64, u64)> = None;
        let flush = |out: &mut Vec<Value>, (s, e): (u64, u64)| {
            out.push(if s == e { json!([s]) } else { json!([s, e]) });
        };
        for ino in set {
            run = match run {
                Some((s, e)) if e.checked_add(1) == Some(ino) => Some((s, ino)),
                Some(r) => {
                    flush(&mut out, r);
                    Some((ino, ino))
                }
                None => Some((ino, ino)),
            };
        }
        if let Some(r) = run {
            flush(&mut out, r);
        }
        Value::Array(out)
    }

    /// `GET /api/v1/metrics/pattern` body (empty unless `access_pattern`).
    pub fn pattern_json(&self) -> Value {
        let pattern = lock(&self.pattern);
        let v: Vec<wire::AccessPattern> = pattern
            .iter()
            .map(|(&ino, p)| wire::AccessPattern {
                ino,
                nr_read: p.nr_read,
                first_access_time_secs: p.first_access.as_secs(),
                first_access_time_nanos: p.first_access.subsec_nanos(),
            })
            .collect();
        serde_json::to_value(v).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_fs_shape_and_counts() {
        let m = FsMetrics::new("/", FsMetricsOptions::default());
        m.op(Fop::Open, 5, true);
        m.op(Fop::Open, 6, true);
        m.op(Fop::Release, 5, true);
        m.op(Fop::Lookup, 1, false);
        m.read(5, 4096, Duration::from_micros(100), true);
        m.read(5, 100, Duration::from_millis(3), true);
        m.read(5, 0, Duration::from_secs(3), false);
        let v = m.to_json();
        assert_eq!(v["id"], "/");
        assert_eq!(v["nr_opens"], 1);
        assert_eq!(v["data_read"], 4196);
        assert_eq!(v["block_count_read"], json!([1, 0, 1, 0, 0, 0, 0, 0]));
        assert_eq!(v["fop_hits"][4], 3);
        assert_eq!(v["fop_errors"][4], 1);
        assert_eq!(v["fop_errors"][9], 1);
        assert_eq!(v["fop_hits"].as_array().map(Vec::len), Some(FOP_COUNT));
        assert_eq!(v["read_latency_dist"], json!([1, 0, 1, 0, 0, 0, 0, 1]));
        assert_eq!(v["fop_cumulative_latency_total"][4], 3_003_100);
        assert_eq!(v["measure_latency"], true);
        assert_eq!(v["files_account_enabled"], false);
        // Per-file sets stay empty when disabled.
        assert_eq!(m.files_json(), json!({}));
        assert_eq!(m.pattern_json(), json!([]));
    }

    #[test]
    fn metrics_nr_opens_saturates() {
        let m = FsMetrics::new("/", FsMetricsOptions::default());
        m.op(Fop::Release, 1, true);
        assert_eq!(m.to_json()["nr_opens"], 0);
    }

    #[test]
    fn metrics_per_file_pattern_latest() {
        let opts = FsMetricsOptions {
            files_account: true,
            access_pattern: true,
            latest_read_files: true,
        };
        let m = FsMetrics::new("/sub", opts);
        for ino in [3, 4, 5, 9, 11, 12] {
            m.read(ino, 2048, Duration::ZERO, true);
        }
        m.op(Fop::Getattr, 3, true);
        let files = m.files_json();
        assert_eq!(files["3"]["total_fops"], 2);
        assert_eq!(files["3"]["data_read"], 2048);
        assert_eq!(files["3"]["block_count_read"][1], 1);
        assert_eq!(files["3"]["fop_hits"][0], 1);
        assert_eq!(m.take_latest_json(), json!([[3, 5], [9], [11, 12]]));
        assert_eq!(m.take_latest_json(), json!([]));
        let p = m.pattern_json();
        assert_eq!(p.as_array().map(Vec::len), Some(6));
        assert_eq!(p[0]["ino"], 3);
        assert_eq!(p[0]["nr_read"], 1);
        assert!(p[0]["first_access_time_secs"].as_u64().unwrap_or(0) > 0);
    }

    #[test]
    fn metrics_read_latency_buckets() {
        let b = |us| read_latency_bucket(Duration::from_micros(us));
        assert_eq!(b(0), 0);
        assert_eq!(b(200), 0);
        assert_eq!(b(201), 1);
        assert_eq!(b(20_000), 2);
        assert_eq!(b(50_000), 3);
        assert_eq!(b(500_000), 4);
        assert_eq!(b(1_000_000), 5);
        assert_eq!(b(2_000_000), 6);
        assert_eq!(b(2_000_001), 7);
    }
}
