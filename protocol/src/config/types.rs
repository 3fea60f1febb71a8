//! The parsed daemon config: one model for v1 and v2 files.
//!
//! Defaults are upstream's (nydusd-reference §3); where v1 and v2 differ the
//! v1 reader sets the v1 value explicitly.

use std::path::PathBuf;

use super::secret::Secret;

/// Largest `amplify_io` / `batch_size` / `merging_size` upstream accepts.
pub const MAX_BATCH_SIZE: u64 = 0x1000_0000;
/// Default `amplify_io` and prefetch `merging_size`: 1 MiB.
pub const DEFAULT_BATCH_SIZE: u32 = 0x10_0000;

/// Which file format the text was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    V1Json,
    V2Json,
    V2Toml,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DaemonConfig {
    /// v1 `device.id`, v2 `id`: key of the blobcache metrics.
    pub id: Option<String>,
    pub backend: BackendConfig,
    pub cache: CacheConfig,
    pub rafs: RafsConfig,
    /// v2 `overlay`: writable upper layer (with `--writable`).
    pub overlay: Option<OverlayConfig>,
    /// v2 `external_backends`, kept as given.
    pub external_backends: Vec<ExternalBackendConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BackendConfig {
    Localfs(LocalfsConfig),
    Registry(RegistryConfig),
    Oss(OssConfig),
    S3(S3Config),
    HttpProxy(HttpProxyConfig),
    Localdisk(LocaldiskConfig),
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig::Localfs(LocalfsConfig::default())
    }
}

impl BackendConfig {
    /// The type name as written in configs and shown in metrics.
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendConfig::Localfs(_) => "localfs",
            BackendConfig::Registry(_) => "registry",
            BackendConfig::Oss(_) => "oss",
            BackendConfig::S3(_) => "s3",
            BackendConfig::HttpProxy(_) => "http-proxy",
            BackendConfig::Localdisk(_) => "localdisk",
        }
    }

    /// The common network settings, for the backends that use the network.
    pub fn http(&self) -> Option<&HttpConfig> {
        match self {
            BackendConfig::Registry(c) => Some(&c.http),
            BackendConfig::Oss(c) => Some(&c.http),
            BackendConfig::S3(c) => Some(&c.http),
            BackendConfig::HttpProxy(c) => Some(&c.http),
            BackendConfig::Localfs(_) | BackendConfig::Localdisk(_) => None,
        }
    }

    /// The readahead window in seconds when `readahead` is on.
    pub fn readahead(&self) -> Option<u32> {
        let (on, secs) = match self {
            BackendConfig::Localfs(c) => (c.readahead, c.readahead_sec),
            BackendConfig::Localdisk(_) => (false, 0),
            other => other
                .http()
                .map_or((false, 0), |h| (h.readahead, h.readahead_sec)),
        };
        on.then_some(secs)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LocalfsConfig {
    pub dir: Option<PathBuf>,
    pub blob_file: Option<PathBuf>,
    pub alt_dirs: Vec<PathBuf>,
    /// Record start-up reads and prefetch them first next time (the seed's
    /// localfs readahead, which upstream removed in 2022; any backend here).
    pub readahead: bool,
    /// How long after mount reads are recorded, seconds (default 10).
    pub readahead_sec: u32,
}

impl Default for LocalfsConfig {
    fn default() -> Self {
        LocalfsConfig {
            dir: None,
            blob_file: None,
            alt_dirs: Vec::new(),
            readahead: false,
            readahead_sec: 10,
        }
    }
}

/// Keys shared by the network backends (registry, oss, s3, http-proxy).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Whole-request timeout in seconds, 0 = none.
    pub timeout: u32,
    /// Connect timeout (and proxy ping timeout) in seconds, 0 = none.
    pub connect_timeout: u32,
    /// Parsed for compatibility; upstream ignores it since v2.4.3.
    pub retry_limit: u8,
    pub skip_verify: bool,
    pub ca_cert_files: Vec<PathBuf>,
    pub proxy: ProxyConfig,
    /// Removed upstream in July 2025; parsed, never used.
    pub mirrors: Vec<MirrorConfig>,
    /// As `LocalfsConfig::readahead` (this nydusd honours it everywhere).
    pub readahead: bool,
    pub readahead_sec: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout: 5,
            connect_timeout: 5,
            retry_limit: 0,
            skip_verify: false,
            ca_cert_files: Vec::new(),
            proxy: ProxyConfig::default(),
            mirrors: Vec::new(),
            readahead: false,
            readahead_sec: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// Forward proxy URL; empty = no proxy. May carry `user:pass@`.
    pub url: Secret,
    /// Health-check URL; empty = always healthy.
    pub ping_url: String,
    pub fallback: bool,
    /// Seconds between health pings.
    pub check_interval: u64,
    pub use_http: bool,
    /// Seconds of backend idleness after which pings pause.
    pub check_pause_elapsed: u64,
    pub dragonfly_scheduler_endpoint: String,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            url: Secret::default(),
            ping_url: String::new(),
            fallback: true,
            check_interval: 5,
            use_http: false,
            check_pause_elapsed: 300,
            dragonfly_scheduler_endpoint: String::new(),
        }
    }
}

/// A removed upstream feature, parsed so old configs type-check.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorConfig {
    pub host: String,
    pub ping_url: String,
    /// Header values may be credentials.
    pub headers: Vec<(String, Secret)>,
    pub health_check_interval: u64,
    pub failure_limit: u8,
    pub health_check_pause_elapsed: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegistryConfig {
    /// `http`, `https` or empty (= https).
    pub scheme: String,
    pub host: String,
    pub repo: String,
    /// base64 of `user:password`.
    pub auth: Option<Secret>,
    pub registry_token: Option<Secret>,
    pub blob_url_scheme: String,
    pub blob_redirected_host: String,
    pub http: HttpConfig,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct OssConfig {
    pub endpoint: String,
    pub bucket_name: String,
    pub scheme: String,
    pub object_prefix: String,
    pub access_key_id: Secret,
    pub access_key_secret: Secret,
    pub http: HttpConfig,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct S3Config {
    /// Empty means `s3.amazonaws.com`.
    pub endpoint: String,
    pub region: String,
    pub bucket_name: String,
    pub scheme: String,
    pub object_prefix: String,
    pub access_key_id: Secret,
    pub access_key_secret: Secret,
    pub http: HttpConfig,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpProxyConfig {
    /// `http://…`, `https://…` or the absolute path of a unix socket.
    pub addr: String,
    pub path: String,
    pub http: HttpConfig,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LocaldiskConfig {
    pub device_path: PathBuf,
    pub disable_gpt: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheKind {
    /// `blobcache` or `filecache`: local cache files under `work_dir`.
    Blobcache,
    /// Kernel cachefiles (singleton mode).
    Fscache,
    /// `dummycache`: every miss goes to the backend.
    Dummycache,
    /// `""` (or no cache section): same behaviour as dummycache.
    #[default]
    None,
}

impl CacheKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheKind::Blobcache => "blobcache",
            CacheKind::Fscache => "fscache",
            CacheKind::Dummycache => "dummycache",
            CacheKind::None => "",
        }
    }

    /// True when chunks are kept in local files.
    pub fn is_local(self) -> bool {
        matches!(self, CacheKind::Blobcache | CacheKind::Fscache)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CacheConfig {
    pub kind: CacheKind,
    /// Cache directory (blob/file cache and fscache); `None` for no cache.
    pub work_dir: Option<PathBuf>,
    pub compressed: bool,
    pub validate: bool,
    pub disable_indexed_map: bool,
    pub enable_encryption: bool,
    pub enable_convergent_encryption: bool,
    /// 64 hex digits; empty when not set.
    pub encryption_key: Secret,
    /// Blob-level prefetch worker pool (v2 `cache.prefetch`).
    pub prefetch: PrefetchConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RafsMode {
    #[default]
    Direct,
    Cached,
}

impl RafsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RafsMode::Direct => "direct",
            RafsMode::Cached => "cached",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RafsConfig {
    pub mode: RafsMode,
    /// v1 `digest_validate`, v2 `rafs.validate`.
    pub digest_validate: bool,
    pub enable_xattr: bool,
    pub iostats_files: bool,
    pub access_pattern: bool,
    pub latest_read_files: bool,
    /// v1 `amplify_io`, v2 `rafs.batch_size`, bytes.
    pub amplify_io: u32,
    /// v1 `fs_prefetch`, v2 `rafs.prefetch`.
    pub prefetch: PrefetchConfig,
    /// `attr_timeout` / `entry_timeout` in seconds: how long the kernel may
    /// cache attributes and names. `None` lets the daemon choose (the image
    /// never changes, so ours is effectively forever).
    pub attr_timeout: Option<u32>,
    pub entry_timeout: Option<u32>,
}

impl Default for RafsConfig {
    fn default() -> Self {
        RafsConfig {
            mode: RafsMode::Direct,
            digest_validate: false,
            enable_xattr: false,
            iostats_files: false,
            access_pattern: false,
            latest_read_files: false,
            amplify_io: DEFAULT_BATCH_SIZE,
            prefetch: PrefetchConfig::default(),
            attr_timeout: None,
            entry_timeout: None,
        }
    }
}

/// Prefetch settings; v1 names (v2 names in comments).
#[derive(Debug, Clone, PartialEq)]
pub struct PrefetchConfig {
    pub enable: bool,
    /// v2 `threads`; 1..=1024 when enabled.
    pub threads_count: u32,
    /// v2 `batch_size`, bytes.
    pub merging_size: u32,
    /// v2 `bandwidth_limit`, bytes/s, 0 = unlimited.
    pub bandwidth_rate: u32,
    /// Default `true` in v1, `false` in v2.
    pub prefetch_all: bool,
    pub stream_prefetch: bool,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        PrefetchConfig {
            enable: false,
            threads_count: 8,
            merging_size: DEFAULT_BATCH_SIZE,
            bandwidth_rate: 0,
            prefetch_all: false,
            stream_prefetch: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct OverlayConfig {
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
}

/// One v2 `external_backends` entry: `{type, patch, config}` string maps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExternalBackendConfig {
    pub kind: String,
    pub patch: Vec<(String, String)>,
    /// May hold credentials, so values are secrets.
    pub config: Vec<(String, Secret)>,
}
