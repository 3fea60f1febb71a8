//! One RAFS instance: a bootstrap opened with its config, ready to mount.
//!
//! Maps the user's `DaemonConfig` onto the storage layer's `StorageConfig`,
//! opens the bootstrap (mmap for `mode: direct`, read into memory for
//! `cached`), and builds the `RafsFs`. Every error names the file or key.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nydus_protocol::config::{parse_daemon_config, BackendConfig, CacheKind, DaemonConfig};
use nydus_protocol::rafs::ChunkRef;
use serde_json::Value;

use crate::fs::{FileData, FopSink, FsOptions, RafsFs};
use crate::metrics::{FsMetricsOptions, MetricsSource};
use crate::prefetch::access_log::Readahead;
use crate::storage::{BlobDevice, CacheMode, LocalFs, StorageConfig};

/// Where an instance's config comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// A config file's text; `origin` names it in messages.
    /// `image_pull_auth` (the `IMAGE_PULL_AUTH` environment variable, for
    /// the `--config` file only) replaces the registry auth.
    Text {
        text: String,
        origin: String,
        image_pull_auth: Option<String>,
    },
    /// `--localfs-dir DIR`.
    LocalfsDir(PathBuf),
}

/// The parsed config plus what to log about it.
pub fn load_config(source: &ConfigSource) -> Result<DaemonConfig, String> {
    match source {
        ConfigSource::LocalfsDir(dir) => Ok(nydus_protocol::config::localfs_dir_config(dir)),
        ConfigSource::Text {
            text,
            origin,
            image_pull_auth,
        } => {
            let mut parsed = parse_daemon_config(text, origin).map_err(|e| e.to_string())?;
            for w in &parsed.warnings {
                log::warn!("{w}");
            }
            if let Some(auth) = image_pull_auth {
                if nydus_protocol::config::apply_image_pull_auth(&mut parsed.config, auth)
                    .map_err(|e| e.to_string())?
                {
                    log::info!("registry auth taken from IMAGE_PULL_AUTH");
                }
            }
            Ok(parsed.config)
        }
    }
}

/// Receives a one-line description of each failed chunk read.
pub type FailureHook = Arc<dyn Fn(&str) + Send + Sync>;

/// An opened image, not yet mounted.
pub struct Opened {
    pub fs: RafsFs,
    pub device: Arc<DeviceData>,
}

/// Everything needed to open an instance.
pub struct OpenRequest<'a> {
    pub bootstrap: &'a Path,
    pub config: &'a DaemonConfig,
    pub start_time: i64,
    pub stats: Arc<dyn FopSink>,
    /// Told about every failed chunk read (the daemon's events ring).
    pub on_failure: Option<FailureHook>,
    /// Other pseudo mounts may share the FUSE connection (not at `/`).
    pub shared_connection: bool,
    /// A new mount rather than a successor worker re-opening its
    /// predecessor's: only a new mount records its start-up reads.
    pub fresh_start: bool,
    /// Replies land in a VM guest's memory, which the guest can change
    /// while we use it (virtio-fs).
    pub guest_memory: bool,
}

/// Opens `req.bootstrap` with `req.config`. The error is one line naming the
/// bootstrap or the config key at fault.
pub fn open(req: OpenRequest<'_>) -> Result<Opened, String> {
    let config = req.config;
    let bootstrap = req.bootstrap;
    let reader = crate::bootstrap::open(bootstrap, config.rafs.mode)?;
    let stem = bootstrap.file_stem().and_then(|s| s.to_str());
    let storage = storage_config(config, req.guest_memory)?;
    let blob_error = |e: io::Error| format!("bootstrap {}: {e}", bootstrap.display());
    let mut device = BlobDevice::new(reader.blobs(), stem, storage).map_err(blob_error)?;
    // A successor worker takes over a mount that serves, whatever was
    // deleted since: only a new mount refuses a missing blob.
    if req.fresh_start {
        for id in device.blob_ids() {
            device.backend().check_blob(&id).map_err(blob_error)?;
        }
    }
    if let Some(hook) = req.on_failure {
        device = device.with_failure_hook(hook);
    }
    let chunk_size = reader.super_info().chunk_size;
    let readahead = readahead(bootstrap, config, &device);
    if let (Some(ra), false) = (&readahead, req.fresh_start) {
        ra.stop_recording();
    }
    let device = Arc::new(DeviceData {
        device,
        chunk_size,
        readahead,
    });
    let mut opts = FsOptions::for_daemon(req.start_time, config.rafs.enable_xattr);
    opts.xattr_enosys = !req.shared_connection;
    opts.handle_tag = image_tag(bootstrap);
    if let Some(secs) = config.rafs.attr_timeout {
        opts.ttl = std::time::Duration::from_secs(secs.into());
    }
    if let Some(secs) = config.rafs.entry_timeout {
        opts.entry_ttl = std::time::Duration::from_secs(secs.into());
    }
    let fs = RafsFs::new(reader, device.clone(), opts, req.stats)
        .map_err(|e| format!("bootstrap {}: {e}", bootstrap.display()))?;
    Ok(Opened { fs, device })
}

/// Readahead of this image when the backend config asks for it and there
/// is a blob cache to prefetch into (reasons otherwise are logged).
fn readahead(bootstrap: &Path, config: &DaemonConfig, device: &BlobDevice) -> Option<Readahead> {
    let secs = config.backend.readahead()?;
    let work_dir = match (&config.cache.kind, &config.cache.work_dir) {
        (CacheKind::Blobcache, Some(dir)) => dir,
        _ => {
            log::warn!(
                "config backend readahead: needs cache type blobcache; with {} there is nothing to prefetch into, so start-up reads are not recorded",
                config.cache.kind.as_str()
            );
            return None;
        }
    };
    Some(Readahead::new(bootstrap, work_dir, device.blob_ids(), secs))
}

/// The image's identity for `FsOptions::handle_tag`: its path, size and
/// mtime, which a successor worker restoring the same mount table sees too.
fn image_tag(bootstrap: &Path) -> u64 {
    let mut id = bootstrap.as_os_str().as_encoded_bytes().to_vec();
    if let Ok(meta) = std::fs::metadata(bootstrap) {
        id.extend_from_slice(&meta.len().to_le_bytes());
        if let Ok(mtime) = meta.modified() {
            let secs = mtime
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            id.extend_from_slice(&secs.to_le_bytes());
        }
    }
    crate::fs::handle_tag(&id)
}

/// DaemonConfig → what the blob device needs.
fn storage_config(config: &DaemonConfig, guest_memory: bool) -> Result<StorageConfig, String> {
    let backend: Arc<dyn crate::storage::Backend> = match &config.backend {
        BackendConfig::Localfs(l) => Arc::new(
            LocalFs::new(l.dir.clone(), l.blob_file.clone(), l.alt_dirs.clone())
                .map_err(|e| format!("config backend.localfs: {e}"))?,
        ),
        c @ (BackendConfig::Registry(_) | BackendConfig::Oss(_) | BackendConfig::S3(_)) => {
            crate::storage::http::backend_from_config(c)
                .map_err(|e| format!("config backend.{}: {e}", c.type_name()))?
        }
        other => {
            return Err(format!(
                "config backend.type {:?} is not supported by this nydusd yet; use localfs, registry, oss or s3",
                other.type_name()
            ))
        }
    };
    let cache =
        match config.cache.kind {
            CacheKind::Blobcache => CacheMode::Blobcache {
                work_dir: config.cache.work_dir.clone().ok_or(
                    "config cache: blobcache needs `work_dir` (device.cache.config.work_dir)",
                )?,
                compressed: config.cache.compressed,
            },
            CacheKind::Dummycache | CacheKind::None => CacheMode::Dummycache,
            CacheKind::Fscache => return Err(
                "config cache.type \"fscache\" only works with `nydusd singleton`; use blobcache"
                    .into(),
            ),
        };
    Ok(StorageConfig {
        backend,
        cache,
        digest_validate: config.rafs.digest_validate || config.cache.validate,
        amplify_io: config.rafs.amplify_io.into(),
        shared_reply_memory: guest_memory,
    })
}

/// The per-file metric sets the RAFS config asks for.
pub fn metrics_options(config: &DaemonConfig) -> FsMetricsOptions {
    FsMetricsOptions {
        files_account: config.rafs.iostats_files,
        access_pattern: config.rafs.access_pattern,
        latest_read_files: config.rafs.latest_read_files,
    }
}

/// The blob device as the filesystem and the metrics API see it.
pub struct DeviceData {
    device: BlobDevice,
    chunk_size: u32,
    /// Records start-up reads when `readahead` is on.
    readahead: Option<Readahead>,
}

impl DeviceData {
    pub fn device(&self) -> &BlobDevice {
        &self.device
    }

    pub fn readahead(&self) -> Option<&Readahead> {
        self.readahead.as_ref()
    }

    /// The backend, for run-time settings (`PUT /api/v1/config`).
    pub fn backend(&self) -> &dyn crate::storage::Backend {
        self.device.backend()
    }
}

impl FileData for DeviceData {
    fn read(
        &self,
        chunks: &[ChunkRef],
        file_size: u64,
        offset: u64,
        room: &mut [u8],
        want: usize,
    ) -> io::Result<usize> {
        if let Some(ra) = &self.readahead {
            let end = file_size.min(offset.saturating_add(want as u64));
            ra.recorder.touch(chunks, self.chunk_size, offset, end);
        }
        self.device
            .read_in(chunks, self.chunk_size, file_size, offset, room, want)
    }
}

impl MetricsSource for DeviceData {
    fn backend_json(&self) -> Value {
        serde_json::to_value(self.device.backend_metrics()).unwrap_or(Value::Null)
    }

    fn blobcache_json(&self) -> Value {
        serde_json::to_value(self.device.blobcache_metrics()).unwrap_or(Value::Null)
    }
}
