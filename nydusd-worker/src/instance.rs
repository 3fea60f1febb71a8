//! One RAFS instance: a bootstrap opened with its config, ready to mount.
//!
//! Maps the user's `DaemonConfig` onto the storage layer's `StorageConfig`,
//! opens the bootstrap (mmap for `mode: direct`, read into memory for
//! `cached`), and builds the `RafsFs`. Every error names the file or key.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nydus_protocol::config::{
    parse_daemon_config, BackendConfig, CacheKind, DaemonConfig, RafsMode,
};
use nydus_protocol::rafs::{Backing, ChunkRef, FileKind, Reader};
use serde_json::Value;

use crate::fs::{FileData, FopSink, FsOptions, RafsFs};
use crate::metrics::{FsMetricsOptions, MetricsSource};
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
    /// Opens reach us and return the image tag as the handle (else the
    /// kernel skips opens and every handle is 0).
    pub tagged_handles: bool,
}

/// Opens `req.bootstrap` with `req.config`. The error is one line naming the
/// bootstrap or the config key at fault.
pub fn open(req: OpenRequest<'_>) -> Result<Opened, String> {
    let config = req.config;
    let bootstrap = req.bootstrap;
    let reader = open_bootstrap(bootstrap, config.rafs.mode)?;
    let stem = bootstrap.file_stem().and_then(|s| s.to_str());
    let storage = storage_config(config)?;
    let mut device = BlobDevice::new(reader.blobs(), stem, storage)
        .map_err(|e| format!("bootstrap {}: {e}", bootstrap.display()))?;
    if let Some(hook) = req.on_failure {
        device = device.with_failure_hook(hook);
    }
    let chunk_size = reader.super_info().chunk_size;
    let device = Arc::new(DeviceData { device, chunk_size });
    let mut opts = FsOptions::for_daemon(req.start_time, config.rafs.enable_xattr);
    opts.xattr_enosys = !req.shared_connection;
    opts.handle_tag = if req.tagged_handles {
        image_tag(bootstrap)
    } else {
        0
    };
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

/// Reads and validates the bootstrap; `direct` maps it, `cached` copies it.
fn open_bootstrap(path: &Path, mode: RafsMode) -> Result<Arc<dyn Reader>, String> {
    let what = |e: &dyn std::fmt::Display| format!("bootstrap {}: {e}", path.display());
    let file = File::open(path).map_err(|e| what(&e))?;
    let meta = file.metadata().map_err(|e| what(&e))?;
    if !meta.is_file() {
        return Err(what(&"not a regular file"));
    }
    let backing: Backing = match mode {
        RafsMode::Direct => {
            // SAFETY: the map is read-only and private. Bootstraps are
            // immutable by contract; if someone truncates the file under us
            // the kernel raises SIGBUS, which is the same failure upstream
            // nydusd has in direct mode.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| what(&e))?;
            Arc::new(map)
        }
        RafsMode::Cached => {
            let bytes = std::fs::read(path).map_err(|e| what(&e))?;
            Arc::new(bytes)
        }
    };
    let opened = nydus_protocol::rafs::open(backing, path.file_name().and_then(|n| n.to_str()))
        .map_err(|e| what(&e))?;
    Ok(opened.reader)
}

/// DaemonConfig → what the blob device needs.
fn storage_config(config: &DaemonConfig) -> Result<StorageConfig, String> {
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
}

impl DeviceData {
    /// The backend, for run-time settings (`PUT /api/v1/config`).
    pub fn backend(&self) -> &dyn crate::storage::Backend {
        self.device.backend()
    }

    pub fn prefetch(&self, chunks: &[ChunkRef]) -> io::Result<()> {
        self.device.prefetch(chunks)
    }
}

impl FileData for DeviceData {
    fn read(
        &self,
        chunks: &[ChunkRef],
        file_size: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        self.device
            .read(chunks, self.chunk_size, file_size, offset, buf)
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

/// Starts background prefetch for a freshly mounted instance when the
/// config enables it (reference §5.6): the `--prefetch-files` list (exactly
/// `/` means everything) or else the image's prefetch table, then the whole
/// image with `prefetch_all`. Setting `cancel` (umount) stops it.
pub fn start_prefetch(
    path: &str,
    reader: Arc<dyn Reader>,
    device: Arc<DeviceData>,
    config: &DaemonConfig,
    files: Option<Vec<String>>,
    cancel: Arc<AtomicBool>,
) {
    let p = &config.rafs.prefetch;
    if !(p.enable || config.cache.prefetch.enable) || config.cache.kind != CacheKind::Blobcache {
        return;
    }
    let all = p.prefetch_all || config.cache.prefetch.prefetch_all;
    let threads = p
        .threads_count
        .max(config.cache.prefetch.threads_count)
        .clamp(1, 32);
    let path = path.to_string();
    // The walker hands batches of chunks to `threads` workers; the bounded
    // queue keeps the walk from running far ahead of the fetches.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<ChunkRef>>(threads as usize * 2);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for i in 0..threads {
        let (rx, device, failed) = (rx.clone(), device.clone(), failed.clone());
        let worker = move || loop {
            // Poisoning only follows a panic in another worker: stop too.
            let batch = match rx.lock().map(|r| r.recv()) {
                Ok(Ok(batch)) => batch,
                _ => return,
            };
            if device.prefetch(&batch).is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        };
        match std::thread::Builder::new()
            .name(format!("prefetch-{i}"))
            .spawn(worker)
        {
            Ok(h) => workers.push(h),
            Err(e) => log::warn!("prefetch worker not started: {e}"),
        }
    }
    if workers.is_empty() {
        return;
    }
    let walk = move || {
        let root = reader.super_info().root_ino;
        let mut roots = match &files {
            Some(list) if list.len() == 1 && list[0] == "/" => vec![root],
            Some(list) => list
                .iter()
                .filter_map(|f| resolve(&*reader, root, f))
                .collect(),
            None => reader.prefetch_inodes().unwrap_or_default(),
        };
        if all {
            roots.push(root);
        }
        let mut files_done = 0u64;
        let mut batch = Vec::new();
        let mut stack: Vec<u64> = roots.into_iter().rev().collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(ino) = stack.pop() {
            if cancel.load(Ordering::Relaxed) {
                log::info!("prefetch of {path} cancelled");
                return;
            }
            if !seen.insert(ino) {
                continue;
            }
            let Ok(inode) = reader.inode(ino) else {
                continue;
            };
            match inode.kind() {
                Some(FileKind::Directory) => {
                    let mut kids = Vec::new();
                    let _ = reader.readdir(ino, 0, &mut |e, _| {
                        kids.push(e.ino);
                        true
                    });
                    stack.extend(kids.into_iter().rev());
                }
                Some(FileKind::Regular) => {
                    files_done += 1;
                    match reader.chunks(ino) {
                        Ok(c) => batch.extend(c),
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Batches of neighbouring chunks let the device merge
                    // them into fewer backend requests.
                    if batch.len() >= PREFETCH_BATCH && tx.send(std::mem::take(&mut batch)).is_err()
                    {
                        return;
                    }
                }
                _ => {}
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        drop(tx);
        for w in workers {
            let _ = w.join();
        }
        let failed = failed.load(Ordering::Relaxed);
        log::info!("prefetch of {path} done: {files_done} files, {failed} failed batches");
    };
    if let Err(e) = std::thread::Builder::new()
        .name("prefetch".into())
        .spawn(walk)
    {
        log::warn!("prefetch not started: {e}");
    }
}

/// Chunks handed to a prefetch worker at a time.
const PREFETCH_BATCH: usize = 64;

/// The inode at absolute `path` in the image, if any.
fn resolve(reader: &dyn Reader, root: u64, path: &str) -> Option<u64> {
    let mut ino = root;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = reader.lookup(ino, part.as_bytes()).ok().flatten()?;
    }
    Some(ino)
}
