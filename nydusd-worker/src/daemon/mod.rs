//! The daemon: a Vfs of RAFS instances at sub-paths (pseudo mounts), their
//! mount table, and the controls the admin API calls.
//!
//! Inode numbers are fuse-backend-rs's Vfs scheme, the same as upstream:
//! `(mount index << 56) | reader ino`, the index allocated round-robin from
//! 1, so they depend only on the sequence of mounts.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::api::{Vfs, VfsOptions};
use nydus_protocol::config::DaemonConfig;
use nydus_protocol::rafs::Reader;

use crate::instance::{self, ConfigSource, OpenRequest};
use crate::metrics::Metrics;

mod control;
mod handoff;
mod inval;
mod view;

/// Where a Vfs node id keeps its mount index (the scheme above; the Vfs's
/// own constant is private).
const INDEX_SHIFT: u32 = 56;

/// The node id of image inode `ino` at mount `index`.
fn node_id(index: u8, ino: u64) -> u64 {
    (u64::from(index) << INDEX_SHIFT) | ino
}

/// The mount index of a node id; 0 is the Vfs's pseudo filesystem.
fn mount_index(nodeid: u64) -> u64 {
    nodeid >> INDEX_SHIFT
}

pub use view::VfsView;

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
    /// To walk the image when invalidating the kernel's caches of it.
    pub reader: Arc<dyn Reader>,
    /// Its storage: to close the readahead window at a stop, and for
    /// run-time backend settings (`PUT /api/v1/config`).
    pub device: Arc<instance::DeviceData>,
}

pub struct Daemon {
    vfs: Arc<Vfs>,
    view: Arc<VfsView>,
    server: Arc<Server<Arc<VfsView>>>,
    mounts: Mutex<BTreeMap<String, MountRecord>>,
    metrics: Arc<Metrics>,
    start_time: i64,
    id: Option<String>,
    supervisor: Option<PathBuf>,
    state: Mutex<State>,
    /// A dup of the /dev/fuse fd, for invalidation notices once serving.
    notifier: Mutex<Option<File>>,
    events: Sender<Event>,
    /// The highest Vfs index handed out on this FUSE connection (0: none).
    highest_index: AtomicU8,
    /// Replies are written into a VM guest's memory (virtio-fs).
    guest_memory: bool,
    /// Re-opening a predecessor's mounts: they are not fresh starts, so
    /// their reads must not replace the recorded start-up (readahead).
    restoring: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere mid-update (a FUSE or vring
    // thread); every critical section leaves the data usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `/a//b/./c/` → `/a/b/c`; refuses relative paths, `..` and NUL.
pub fn normalize_vfs_path(path: &str) -> Result<String, String> {
    if path.contains('\0') {
        return Err(format!("mountpoint {path:?} must not contain a NUL byte"));
    }
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
        zero_message_open: bool,
        guest_memory: bool,
    ) -> Self {
        let opts = VfsOptions {
            // Skipping OPEN/RELEASE saves two requests per file open (a warm
            // `tar` of a big tree is mostly those); the kernel then keeps
            // the page cache as KEEP_CACHE would. But file handles become 0,
            // so the image tag that guards a reused pseudo-mount index
            // (`FsOptions::handle_tag`) is only possible with real opens:
            // without them `attach` never reuses an index, which caps a
            // daemon at 255 mounts in its life. The caller skips opens only
            // where that cap cannot matter (see `run`).
            no_open: zero_message_open,
            // Skipping OPENDIR makes the kernel cache every directory's
            // entries, the pseudo directories' too. Over /dev/fuse every
            // mount, remount and umount drops those listings
            // (`invalidate_path`), so it is right even when the mount table
            // changes; a virtio-fs guest cannot be told, so there only when
            // the table is fixed. Directory handles carry no image tag, so
            // nothing is lost by skipping them.
            no_opendir: zero_message_open || !guest_memory,
            // Read-only: nothing to write back.
            no_writeback: true,
            ..VfsOptions::default()
        };
        let mut vfs = Vfs::new(opts);
        // An unmounted path disappears (ENOENT) instead of lingering as an
        // empty pseudo directory, as upstream leaves it.
        vfs.set_remove_pseudo_root();
        let vfs = Arc::new(vfs);
        let view = Arc::new(VfsView::new(vfs.clone()));
        Daemon {
            server: Arc::new(Server::new(view.clone())),
            view,
            vfs,
            mounts: Mutex::new(BTreeMap::new()),
            metrics: Arc::new(Metrics::new()),
            start_time,
            id,
            supervisor,
            state: Mutex::new(State::Init),
            notifier: Mutex::new(None),
            events,
            highest_index: AtomicU8::new(0),
            guest_memory,
            restoring: AtomicBool::new(false),
        }
    }

    /// The Vfs as served (a virtio-fs device builds its server on it).
    pub fn view(&self) -> &Arc<VfsView> {
        &self.view
    }

    pub fn server(&self) -> Arc<Server<Arc<VfsView>>> {
        self.server.clone()
    }

    /// Records a failed chunk read in the events ring
    /// (`GET /api/v1/daemon/events`). Weak: the metrics registry holds the
    /// device that holds this hook.
    fn failure_hook(&self) -> instance::FailureHook {
        let metrics = Arc::downgrade(&self.metrics);
        Arc::new(move |text: &str| {
            if let Some(m) = metrics.upgrade() {
                m.events().push(text);
            }
        })
    }

    /// Where the FUSE threads show the requests they are serving.
    pub fn inflight(&self) -> &Arc<crate::metrics::InflightTable> {
        self.metrics.inflight()
    }

    pub fn set_state(&self, state: State) {
        *lock(&self.state) = state;
        if state == State::Stopped {
            // A stop inside the readahead window keeps what it recorded.
            for r in lock(&self.mounts).values() {
                if let Some(ra) = r.device.readahead() {
                    ra.finish();
                }
            }
        }
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
        self.mount_at(path, source, config, prefetch_files, None)
    }

    /// As `mount`, at the Vfs index a predecessor served it at, so every
    /// inode number the kernel holds stays the same. Meant for a Vfs whose
    /// snapshot is already restored (the pseudo directory then exists).
    pub fn reopen(
        &self,
        path: &str,
        source: PathBuf,
        config: &ConfigSource,
        prefetch_files: Option<Vec<String>>,
        index: u8,
    ) -> Result<(), String> {
        self.mount_at(path, source, config, prefetch_files, Some(index))
    }

    fn mount_at(
        &self,
        path: &str,
        source: PathBuf,
        config: &ConfigSource,
        prefetch_files: Option<Vec<String>>,
        index: Option<u8>,
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
        let result = self.attach(&mut mounts, &path, source, parsed, prefetch_files, index);
        if result.is_err() {
            self.metrics.remove(&path);
        }
        let came = mounts.get(&path).map(|r| r.reader.clone());
        drop(mounts);
        result?;
        // The kernel may have cached negative entries here.
        self.invalidate_change(&path, None, came.as_deref());
        Ok(())
    }

    /// Replaces the instance at `path` with `source` + `config` in one step
    /// (the path never disappears); the old one keeps serving if the new one
    /// cannot be opened.
    pub fn remount(
        &self,
        path: &str,
        source: PathBuf,
        config: &ConfigSource,
    ) -> Result<(), String> {
        let path = normalize_vfs_path(path)?;
        let parsed = instance::load_config(config)?;
        let mut mounts = lock(&self.mounts);
        let Some(old) = mounts.get(&path) else {
            return Err(format!("mountpoint {path} doesn't exist"));
        };
        let prefetch = old.prefetch_files.clone();
        let old_opts = instance::metrics_options(&old.config);
        let result = self.attach(&mut mounts, &path, source, parsed, prefetch, None);
        if result.is_err() {
            // attach() registered fresh counters for the new instance; the
            // old one keeps serving, so give it a set again.
            self.metrics.add_fs(&path, old_opts);
        }
        let came = mounts.get(&path).map(|r| r.reader.clone());
        drop(mounts);
        let old = result?;
        let gone = old.as_ref().map(|o| (o.index, &*o.reader));
        self.invalidate_change(&path, gone, came.as_deref());
        Ok(())
    }

    /// The highest Vfs index handed out on this FUSE connection (0: none).
    pub fn highest_index(&self) -> u8 {
        self.highest_index.load(Ordering::Acquire)
    }

    /// Records that `index` was handed out (here, or by a predecessor).
    pub fn note_highest_index(&self, index: u8) {
        self.highest_index.fetch_max(index, Ordering::AcqRel);
    }

    /// Marks the mounts made from now on as restored from a predecessor
    /// (`true`) or fresh (`false`).
    pub fn set_restoring(&self, on: bool) {
        self.restoring.store(on, Ordering::Relaxed);
    }

    /// Opens the instance and puts it at `path` in the Vfs (over any
    /// instance already there), at the next index or at `reuse_index`, then
    /// records it and returns the record it replaced. Called with the table
    /// lock.
    fn attach(
        &self,
        mounts: &mut BTreeMap<String, MountRecord>,
        path: &str,
        source: PathBuf,
        parsed: DaemonConfig,
        prefetch_files: Option<Vec<String>>,
        reuse_index: Option<u8>,
    ) -> Result<Option<MountRecord>, String> {
        let fs_metrics = self
            .metrics
            .add_fs(path, instance::metrics_options(&parsed));
        if let Some(i) = reuse_index {
            // A handed-over state names each index once; taking one twice
            // would serve two paths from one image.
            if let Some((other, _)) = mounts.iter().find(|(_, r)| r.index == i) {
                return Err(format!(
                    "mountpoint {path}: index {i} is already {other}'s in the handed-over state"
                ));
            }
            if i == 0 {
                return Err(format!(
                    "mountpoint {path}: index 0 in the handed-over state (the pseudo root's)"
                ));
            }
        }
        // With opens skipped, file handles carry no image tag, so an index
        // must never be handed out twice: a descriptor left open on an
        // earlier image there would read the new image's bytes. The Vfs
        // hands indexes out in turn, so the next is `highest + 1` until
        // all 255 have been used.
        if reuse_index.is_none() && self.vfs.options().no_open && self.highest_index() == u8::MAX {
            return Err(format!(
                "mountpoint {path}: this nydusd has used all 255 mount slots and, since the kernel skips opens here, cannot reuse one safely; start a new nydusd for more images"
            ));
        }
        let opened = instance::open(OpenRequest {
            bootstrap: &source,
            config: &parsed,
            start_time: self.start_time,
            stats: fs_metrics,
            on_failure: Some(self.failure_hook()),
            shared_connection: path != "/",
            guest_memory: self.guest_memory,
            fresh_start: !self.restoring.load(Ordering::Relaxed),
        })?;
        let device = opened.device.clone();
        let reader = opened.fs.reader().clone();
        let index = match reuse_index {
            Some(index) => self
                .vfs
                .restore_mount(Box::new(opened.fs), index, path)
                .map(|()| index)
                .map_err(|e| format!("mountpoint {path} at index {index}: {e}"))?,
            None => self
                .vfs
                .mount(Box::new(opened.fs), path)
                .map_err(|e| format!("mountpoint {path}: {e}"))?,
        };
        self.note_highest_index(index);
        self.view.mounted(path);
        let cache_id = parsed.id.clone().unwrap_or_default();
        self.metrics.add_storage(path, &cache_id, device.clone());
        // Before serving (the --bootstrap image) this is start-up detail,
        // reported by the "serving" line; later mounts are news.
        let level = if lock(&self.notifier).is_some() {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        log::log!(
            level,
            "mounted {} at {path} (index {index}, mode {})",
            source.display(),
            parsed.rafs.mode.as_str()
        );
        let cancel = Arc::new(AtomicBool::new(false));
        crate::prefetch::start(
            path,
            reader.clone(),
            device.clone(),
            &parsed,
            prefetch_files.clone(),
            cancel.clone(),
        );
        let record = MountRecord {
            source,
            config: parsed,
            prefetch_files,
            index,
            mounted_at: SystemTime::now(),
            cancel_prefetch: cancel,
            reader,
            device,
        };
        let old = mounts.insert(path.to_string(), record);
        if let Some(old) = &old {
            old.cancel_prefetch.store(true, Ordering::Relaxed);
        }
        Ok(old)
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
        self.view.unmounted(&path);
        let old = mounts.remove(&path);
        drop(mounts);
        self.metrics.remove(&path);
        log::info!("unmounted {path}");
        if let Some(old) = &old {
            old.cancel_prefetch.store(true, Ordering::Relaxed);
        }
        // Drop the kernel's dentries and cached attributes of the old image,
        // so a later image at the same index is never confused with it.
        let gone = old.as_ref().map(|o| (o.index, &*o.reader));
        self.invalidate_change(&path, gone, None);
        Ok(())
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
        assert!(normalize_vfs_path("/a\0b").is_err());
        assert!(nested("/a", "/a/b"));
        assert!(nested("/", "/x"));
        assert!(!nested("/a", "/ab"));
    }
}
