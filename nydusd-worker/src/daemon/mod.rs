//! The daemon: a Vfs of RAFS instances at sub-paths (pseudo mounts), their
//! mount table, and the controls the admin API calls.
//!
//! Inode numbers are fuse-backend-rs's Vfs scheme, the same as upstream:
//! `(mount index << 56) | reader ino`, the index allocated round-robin from
//! 1, so they depend only on the sequence of mounts.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::api::{Vfs, VfsOptions};
use fuse_backend_rs::transport::FuseDevWriter;
use nydus_protocol::config::DaemonConfig;
use serde_json::{json, Value};

use crate::api::{ApiError, DaemonControl};
use crate::instance::{self, ConfigSource, OpenRequest};
use crate::metrics::Metrics;

/// What wakes the main loop.
#[derive(Debug)]
pub enum Event {
    /// SIGINT/SIGTERM: unmount and exit 0.
    Signal(i32),
    /// A FUSE thread stopped: the filesystem was unmounted (or failed).
    FuseStopped(Option<String>),
    /// `PUT /api/v1/daemon/exit`: stop serving, leave the mount, exit.
    Exit,
}

/// Upstream's daemon states (reference §8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Init,
    Ready,
    Running,
    Stopped,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Ready => "READY",
            State::Running => "RUNNING",
            State::Stopped => "STOPPED",
        }
    }
}

/// One pseudo mount.
pub struct MountRecord {
    pub source: PathBuf,
    pub config: DaemonConfig,
    pub prefetch_files: Option<Vec<String>>,
    pub index: u8,
    pub mounted_at: SystemTime,
    /// Set on umount to stop this instance's prefetch.
    pub cancel_prefetch: Arc<AtomicBool>,
}

pub struct Daemon {
    vfs: Arc<Vfs>,
    server: Arc<Server<Arc<Vfs>>>,
    mounts: Mutex<BTreeMap<String, MountRecord>>,
    metrics: Metrics,
    start_time: i64,
    id: Option<String>,
    supervisor: Option<PathBuf>,
    state: Mutex<State>,
    /// A dup of the /dev/fuse fd, for invalidation notices once serving.
    notifier: Mutex<Option<File>>,
    events: Sender<Event>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere mid-update; with panic=abort
    // in release that cannot happen, and in tests the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `/a//b/./c/` → `/a/b/c`; refuses relative paths and `..`.
pub fn normalize_vfs_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("mountpoint {path:?} must be an absolute path"));
    }
    let mut out = String::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("mountpoint {path:?} must not contain \"..\"")),
            p => {
                out.push('/');
                out.push_str(p);
            }
        }
    }
    Ok(if out.is_empty() { "/".into() } else { out })
}

/// Whether one of the two paths is inside the other (or they are equal).
fn nested(a: &str, b: &str) -> bool {
    let inside = |x: &str, y: &str| y == "/" || x == y || x.starts_with(&format!("{y}/"));
    inside(a, b) || inside(b, a)
}

impl Daemon {
    pub fn new(
        start_time: i64,
        id: Option<String>,
        supervisor: Option<PathBuf>,
        events: Sender<Event>,
    ) -> Self {
        let opts = VfsOptions {
            // Our open/opendir reply KEEP_CACHE/CACHE_DIR, so let them run.
            no_open: false,
            no_opendir: false,
            // Read-only: nothing to write back.
            no_writeback: true,
            ..VfsOptions::default()
        };
        let mut vfs = Vfs::new(opts);
        // An unmounted path disappears (ENOENT) instead of lingering as an
        // empty pseudo directory, as upstream leaves it.
        vfs.set_remove_pseudo_root();
        let vfs = Arc::new(vfs);
        Daemon {
            server: Arc::new(Server::new(vfs.clone())),
            vfs,
            mounts: Mutex::new(BTreeMap::new()),
            metrics: Metrics::new(),
            start_time,
            id,
            supervisor,
            state: Mutex::new(State::Init),
            notifier: Mutex::new(None),
            events,
        }
    }

    pub fn server(&self) -> Arc<Server<Arc<Vfs>>> {
        self.server.clone()
    }

    pub fn set_state(&self, state: State) {
        *lock(&self.state) = state;
    }

    pub fn set_notifier(&self, fuse_fd: File) {
        *lock(&self.notifier) = Some(fuse_fd);
    }

    /// Opens `source` with `config` and mounts it at VFS path `path`.
    /// Errors are one line naming the bootstrap, config key or path.
    pub fn mount(
        &self,
        path: &str,
        source: PathBuf,
        config: &ConfigSource,
        prefetch_files: Option<Vec<String>>,
    ) -> Result<(), String> {
        let path = normalize_vfs_path(path)?;
        if let Some(files) = &prefetch_files {
            if let Some(bad) = files.iter().find(|f| !f.starts_with('/')) {
                return Err(format!("prefetch file {bad:?} is not an absolute path"));
            }
        }
        let parsed = instance::load_config(config)?;
        // The table lock is held across the open so two requests for the
        // same path cannot both succeed; mounts are rare.
        let mut mounts = lock(&self.mounts);
        if mounts.contains_key(&path) {
            return Err(format!("mountpoint {path} already exists"));
        }
        if let Some(other) = mounts.keys().find(|m| nested(m, &path)) {
            return Err(format!(
                "mountpoint {path} would nest with the mount at {other}; nested mounts are not supported"
            ));
        }
        let fs_metrics = self
            .metrics
            .add_fs(&path, instance::metrics_options(&parsed));
        let opened = instance::open(OpenRequest {
            bootstrap: &source,
            config: &parsed,
            start_time: self.start_time,
            stats: fs_metrics,
        });
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                self.metrics.remove(&path);
                return Err(e);
            }
        };
        let device = opened.device.clone();
        let reader = opened.fs.reader().clone();
        let index = match self.vfs.mount(Box::new(opened.fs), &path) {
            Ok(i) => i,
            Err(e) => {
                self.metrics.remove(&path);
                return Err(format!("mountpoint {path}: {e}"));
            }
        };
        let cache_id = parsed.id.clone().unwrap_or_default();
        self.metrics.add_storage(&path, &cache_id, device.clone());
        log::info!(
            "mounted {} at {path} (index {index}, mode {})",
            source.display(),
            parsed.rafs.mode.as_str()
        );
        let cancel = Arc::new(AtomicBool::new(false));
        instance::start_prefetch(
            &path,
            reader,
            device,
            &parsed,
            prefetch_files.clone(),
            cancel.clone(),
        );
        mounts.insert(
            path.clone(),
            MountRecord {
                source,
                config: parsed,
                prefetch_files,
                index,
                mounted_at: SystemTime::now(),
                cancel_prefetch: cancel,
            },
        );
        drop(mounts);
        // The kernel may have cached the empty pseudo directory or a
        // negative entry here.
        self.invalidate_path(&path);
        Ok(())
    }

    /// Removes the instance at `path`, and its pseudo directory with it.
    pub fn umount(&self, path: &str) -> Result<(), String> {
        let path = normalize_vfs_path(path)?;
        let mut mounts = lock(&self.mounts);
        if !mounts.contains_key(&path) {
            return Err(format!("mountpoint {path} doesn't exist"));
        }
        self.vfs
            .umount(&path)
            .map_err(|e| format!("mountpoint {path}: {e}"))?;
        if let Some(rec) = mounts.remove(&path) {
            rec.cancel_prefetch.store(true, Ordering::Relaxed);
        }
        drop(mounts);
        self.metrics.remove(&path);
        log::info!("unmounted {path}");
        // Drop the kernel's dentries (and with them the inodes) of the old
        // image, so a later image at the same index is never confused with it.
        self.invalidate_path(&path);
        Ok(())
    }

    /// Replaces the instance at `path` with `source` + `config`; the old one
    /// keeps serving if the new one cannot be opened.
    pub fn remount(
        &self,
        path: &str,
        source: PathBuf,
        config: &ConfigSource,
    ) -> Result<(), String> {
        let norm = normalize_vfs_path(path)?;
        let prefetch = match lock(&self.mounts).get(&norm) {
            Some(rec) => rec.prefetch_files.clone(),
            None => return Err(format!("mountpoint {norm} doesn't exist")),
        };
        // Validate before touching the running instance.
        let parsed = instance::load_config(config)?;
        instance::open(OpenRequest {
            bootstrap: &source,
            config: &parsed,
            start_time: self.start_time,
            stats: Arc::new(crate::fs::stats::NoStats),
        })?;
        self.umount(&norm)?;
        self.mount(&norm, source, config, prefetch)
    }

    /// Sends FUSE_NOTIFY_INVAL_ENTRY for the last component of `path`
    /// (for `/`, for every top-level name). Failures only mean the kernel
    /// had nothing cached.
    fn invalidate_path(&self, path: &str) {
        let notifier = lock(&self.notifier);
        let Some(file) = notifier.as_ref() else {
            return;
        };
        let pseudo = self.vfs.get_root_pseudofs();
        let Some((parent_path, name)) = path.rsplit_once('/') else {
            return;
        };
        if name.is_empty() {
            return;
        }
        let parent = if parent_path.is_empty() {
            "/"
        } else {
            parent_path
        };
        let Ok(Some(parent_ino)) = pseudo.path_walk(parent) else {
            return;
        };
        let Ok(cname) = CString::new(name) else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        match FuseDevWriter::<()>::new(file.as_raw_fd(), &mut buf) {
            Ok(w) => {
                if let Err(e) = self.server.notify_inval_entry(w, parent_ino, &cname) {
                    log::debug!("invalidate {path}: {e}");
                }
            }
            Err(e) => log::debug!("invalidate {path}: {e}"),
        }
    }

    fn mounts_json(&self) -> Value {
        let mounts = lock(&self.mounts);
        let mut out = serde_json::Map::new();
        for (path, rec) in mounts.iter() {
            let mounted = rec
                .mounted_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            out.insert(
                path.clone(),
                json!({
                    "backend_type": "Rafs",
                    "mountpoint": path,
                    "source": rec.source,
                    "index": rec.index,
                    "mounted_time": format_mounted_time(mounted),
                    "config": rec.config.to_redacted_json(),
                }),
            );
        }
        Value::Object(out)
    }
}

/// Upstream's `mounted_time` format, `YYYY-MM-DD HH:MM:SS.nnnnnnnnn +00:00:00`.
fn format_mounted_time(t: std::time::Duration) -> String {
    let secs = t.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::logging::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:09} +00:00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        t.subsec_nanos()
    )
}

fn api_error(msg: String) -> ApiError {
    if msg.contains("doesn't exist") {
        ApiError::not_found(msg)
    } else {
        ApiError::internal(msg)
    }
}

impl DaemonControl for Daemon {
    fn info(&self) -> Value {
        let v = crate::cli::version_info();
        json!({
            "version": v,
            "id": self.id,
            "supervisor": self.supervisor,
            "state": lock(&self.state).as_str(),
            "backend_collection": self.mounts_json(),
        })
    }

    fn mount(
        &self,
        mountpoint: &str,
        source: &str,
        fs_type: &str,
        config_text: &str,
        prefetch_files: Option<Vec<String>>,
    ) -> Result<(), ApiError> {
        if fs_type != "rafs" {
            return Err(ApiError::internal(format!(
                "fs_type {fs_type:?} is not supported: only \"rafs\""
            )));
        }
        let config = ConfigSource::Text {
            text: config_text.to_string(),
            origin: "mount request config".into(),
        };
        Daemon::mount(self, mountpoint, source.into(), &config, prefetch_files).map_err(api_error)
    }

    fn remount(&self, mountpoint: &str, source: &str, config_text: &str) -> Result<(), ApiError> {
        let config = ConfigSource::Text {
            text: config_text.to_string(),
            origin: "remount request config".into(),
        };
        Daemon::remount(self, mountpoint, source.into(), &config).map_err(api_error)
    }

    fn umount(&self, mountpoint: &str) -> Result<(), ApiError> {
        Daemon::umount(self, mountpoint).map_err(api_error)
    }

    fn exit(&self) {
        let _ = self.events.send(Event::Exit);
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(normalize_vfs_path("/").unwrap(), "/");
        assert_eq!(normalize_vfs_path("//a/./b/").unwrap(), "/a/b");
        assert!(normalize_vfs_path("a").is_err());
        assert!(normalize_vfs_path("/a/../b").is_err());
        assert!(nested("/a", "/a/b"));
        assert!(nested("/", "/x"));
        assert!(!nested("/a", "/ab"));
    }

    #[test]
    fn mounted_time_format() {
        let t = std::time::Duration::new(86_400 + 3661, 5);
        assert_eq!(
            format_mounted_time(t),
            "1970-01-02 01:01:01.000000005 +00:00:00"
        );
    }
}
