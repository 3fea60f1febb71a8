//! Admin HTTP API bodies (reference §6.3) and metrics shapes (§10), with
//! upstream's exact JSON field names: nydus-snapshotter and Kata parse them.
//!
//! Every struct deserializes leniently (missing fields take defaults) so a
//! client can read replies from upstream nydusd as well as from ours.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Upstream answers every error with this `code`.
pub const ERROR_CODE: &str = "UNDEFINED";

/// Body of every error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    /// Must never contain secrets.
    pub message: String,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>) -> Self {
        ErrorBody {
            code: ERROR_CODE.to_string(),
            message: message.into(),
        }
    }
}

/// `version` of `GET /api/v1/daemon`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildInfo {
    pub package_ver: String,
    pub git_commit: String,
    pub build_time: String,
    pub profile: String,
    pub rustc: String,
}

/// Daemon state as the API spells it (reference §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DaemonState {
    Init,
    Ready,
    Running,
    Stopped,
    #[default]
    #[serde(other)]
    Unknown,
}

/// `GET /api/v1/daemon` (and `/api/v2/daemon`, where `backend_collection`
/// is `null`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonInfo {
    pub version: BuildInfo,
    pub id: Option<String>,
    pub supervisor: Option<String>,
    pub state: DaemonState,
    /// Keyed by VFS mountpoint (`/`, `/<snapshotID>`).
    pub backend_collection: Option<BTreeMap<String, MountedInstance>>,
}

/// One entry of `backend_collection`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MountedInstance {
    /// `"Rafs"` or `"PassthroughFs"`.
    pub backend_type: String,
    pub mountpoint: String,
    /// e.g. `2026-07-01 10:00:00.123456789 +00:00:00`.
    pub mounted_time: String,
    /// The config in v2 form with secrets redacted
    /// (`DaemonConfig::to_redacted_json`); `null` for passthrough.
    pub config: Option<Value>,
}

/// `POST`/`PUT /api/v1/mount?mountpoint=` body.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountCmd {
    /// Bootstrap path, or the host directory for passthrough.
    pub source: String,
    /// `rafs`, or `passthrough`/`passthroughfs`/`passthrough_fs`.
    #[serde(default)]
    pub fs_type: String,
    /// The whole config file (v1 JSON, v2 JSON or v2 TOML) as one string.
    pub config: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_files: Option<Vec<String>>,
}

/// `config` may hold credentials, so it is never printed.
impl fmt::Debug for MountCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MountCmd")
            .field("source", &self.source)
            .field("fs_type", &self.fs_type)
            .field("config", &crate::config::REDACTED)
            .field("prefetch_files", &self.prefetch_files)
            .finish()
    }
}

/// `PUT /api/v1/daemon` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonConf {
    /// trace, debug, info, warn, error or off.
    pub log_level: String,
}

/// `GET /api/v1/daemon/events`: the ring of recent backend failures.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Events {
    pub max_errors: u64,
    pub total_errors: u64,
    pub max_size: u64,
    pub total_size: u64,
    /// `"<HTTP-date> - <error text>"`, oldest first.
    pub errors: Vec<String>,
}

/// One entry of `GET /api/v1/metrics/inflight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InflightOp {
    /// FUSE node id.
    pub inode: u64,
    /// FUSE opcode.
    pub opcode: u32,
    /// FUSE request id.
    pub unique: u64,
    /// Start of the request, unix seconds.
    pub timestamp_secs: u64,
}

/// Number of request-size buckets: <1K, 1K~, 4K~, 16K~, 64K~, 128K~, 512K~, 1M~.
pub const SIZE_BUCKETS: usize = 8;
/// Number of latency buckets.
pub const LATENCY_BUCKETS: usize = 8;
/// Operations counted, in this index order (reference §10.1).
pub const FOPS: [&str; 15] = [
    "getattr",
    "readlink",
    "open",
    "release",
    "read",
    "statfs",
    "getxattr",
    "listxattr",
    "opendir",
    "lookup",
    "readdir",
    "readdirplus",
    "access",
    "forget",
    "batch_forget",
];

/// `GET /api/v1/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FsMetrics {
    pub files_account_enabled: bool,
    pub access_pattern_enabled: bool,
    pub record_latest_read_files_enabled: bool,
    pub measure_latency: bool,
    /// The instance's VFS mountpoint.
    pub id: String,
    pub nr_opens: u64,
    pub data_read: u64,
    pub block_count_read: [u64; SIZE_BUCKETS],
    pub fop_hits: [u64; 15],
    pub fop_errors: [u64; 15],
    /// Microseconds per operation.
    pub fop_cumulative_latency_total: [u64; 15],
    /// Reads by latency: ≤200µs, ≤1ms, ≤20ms, ≤50ms, ≤500ms, ≤1s, ≤2s, >2s.
    pub read_latency_dist: [u64; LATENCY_BUCKETS],
}

/// One value of `GET /api/v1/metrics/files` (keyed by inode number).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FileMetrics {
    pub total_fops: u64,
    pub data_read: u64,
    pub block_count_read: [u64; SIZE_BUCKETS],
    pub fop_hits: [u64; 15],
    pub fop_errors: [u64; 15],
}

/// `GET /api/v1/metrics/files`: inode number (as a string key) → counters.
pub type FilesMetrics = BTreeMap<String, FileMetrics>;

/// `GET /api/v1/metrics/files?latest=true`: `[[start, end], [ino], …]`.
pub type LatestReadFiles = Vec<Vec<u64>>;

/// One entry of `GET /api/v1/metrics/pattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessPattern {
    pub ino: u64,
    pub nr_read: u64,
    pub first_access_time_secs: u64,
    pub first_access_time_nanos: u32,
}

/// `GET /api/v1/metrics/backend`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BackendMetrics {
    /// `registry`, `oss`, `localfs`, `localdisk`, `http-proxy`, …
    pub backend_type: String,
    /// Attempts, each retry counted.
    pub read_count: u64,
    pub read_errors: u64,
    pub read_amount_total: u64,
    pub read_cumulative_latency_millis_total: u64,
    /// Milliseconds, by request-size bucket.
    pub read_cumulative_latency_millis_dist: [u64; SIZE_BUCKETS],
    pub read_count_block_size_dist: [u64; SIZE_BUCKETS],
    /// `[size bucket][latency bucket]`; latency ≤1ms, ≤20ms, ≤50ms, ≤100ms,
    /// ≤500ms, ≤1s, ≤2s, >2s.
    pub read_latency_sizes_dist: [[u64; LATENCY_BUCKETS]; SIZE_BUCKETS],
}

/// `GET /api/v1/metrics/blobcache`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BlobcacheMetrics {
    /// Cache file names (`<id>.blob.data`).
    pub underlying_files: Vec<String>,
    /// The cache `work_dir`.
    pub store_path: String,
    pub partial_hits: u64,
    pub whole_hits: u64,
    pub total: u64,
    pub entries_count: u64,
    pub prefetch_data_amount: u64,
    pub prefetch_requests_count: u64,
    pub prefetch_workers: u64,
    pub prefetch_unmerged_chunks: u64,
    pub prefetch_cumulative_time_millis: u64,
    pub prefetch_begin_time_secs: u64,
    pub prefetch_begin_time_millis: u64,
    pub prefetch_end_time_secs: u64,
    pub prefetch_end_time_millis: u64,
    pub buffered_backend_size: u64,
    pub data_all_ready: bool,
}

/// `PUT /api/v2/blobs` body (singleton mode; reference §3.7).
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BlobCacheEntry {
    /// `bootstrap` or `datablob`.
    #[serde(rename = "type")]
    pub blob_type: String,
    #[serde(rename = "id")]
    pub blob_id: String,
    pub domain_id: String,
    /// A v2 config object (may hold credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_v2: Option<Value>,
    /// Legacy form `{id, backend_type, backend_config, cache_type, …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

/// The configs may hold credentials, so they are never printed.
impl fmt::Debug for BlobCacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<Value>| v.as_ref().map(|_| crate::config::REDACTED);
        f.debug_struct("BlobCacheEntry")
            .field("type", &self.blob_type)
            .field("id", &self.blob_id)
            .field("domain_id", &self.domain_id)
            .field("config_v2", &shown(&self.config_v2))
            .field("config", &shown(&self.config))
            .finish()
    }
}

/// `PUT /api/v1/config` body and `GET /api/v1/config` reply: `registry_auth`,
/// `dragonfly_scheduler_endpoint`, `proxy_url`.
pub type ConfigUpdate = BTreeMap<String, String>;

#[cfg(test)]
mod tests;
