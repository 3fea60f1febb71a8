//! Telling the kernel to forget what it cached of an image (reference §9,
//! upstream issue 1694): the mountpoint's entry, and every inode of an
//! unmounted image, so that once the 8-bit mount index wraps around a new
//! image is never served under a stale cached inode or page.

use std::ffi::CString;
use std::os::unix::io::AsRawFd;

use fuse_backend_rs::transport::FuseDevWriter;
use nydus_protocol::rafs::{FileKind, Reader};

use super::{lock, Daemon};
use crate::fs::MAX_BACKEND_INO;

/// Beyond this many inodes the walk is skipped: the entry invalidation
/// alone still drops every dentry the kernel is not using.
const MAX_WALK: usize = 4_000_000;

impl Daemon {
    /// Runs `f` with a writer on the /dev/fuse fd, if serving. A failed
    /// notice only means the kernel had nothing cached: logged at debug.
    fn notify(
        &self,
        what: &dyn Fn() -> String,
        f: &dyn Fn(FuseDevWriter<'_>) -> std::io::Result<()>,
    ) {
        let notifier = lock(&self.notifier);
        let Some(file) = notifier.as_ref() else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        let r = FuseDevWriter::<()>::new(file.as_raw_fd(), &mut buf)
            .map_err(std::io::Error::other)
            .and_then(f);
        if let Err(e) = r {
            log::debug!("invalidate {}: {e}", what());
        }
    }

    /// FUSE_NOTIFY_INVAL_ENTRY for the last component of `path` (nothing
    /// for `/`, which the kernel never caches as an entry).
    pub(super) fn invalidate_path(&self, path: &str) {
        let Some((parent_path, name)) = path.rsplit_once('/') else {
            return;
        };
        let parent = if parent_path.is_empty() {
            "/"
        } else {
            parent_path
        };
        let (Ok(Some(parent_ino)), Ok(cname)) = (
            self.vfs.get_root_pseudofs().path_walk(parent),
            CString::new(name),
        ) else {
            return;
        };
        if name.is_empty() {
            return;
        }
        self.notify(&|| path.to_string(), &|w| {
            self.server
                .notify_inval_entry(w, parent_ino, &cname)
                .map(|_| ())
                .map_err(std::io::Error::other)
        });
    }

    /// FUSE_NOTIFY_INVAL_INODE (attributes and pages) for every inode of
    /// the image that was mounted at `index`.
    pub(super) fn invalidate_image(&self, index: u8, reader: &dyn Reader) {
        if lock(&self.notifier).is_none() {
            return;
        }
        let root = reader.super_info().root_ino;
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![root];
        while let Some(ino) = stack.pop() {
            if seen.len() >= MAX_WALK {
                log::info!("image at index {index}: more than {MAX_WALK} inodes; invalidated only its entry");
                return;
            }
            if ino > MAX_BACKEND_INO || !seen.insert(ino) {
                continue;
            }
            let _ = reader.readdir(ino, 0, &mut |e, _| {
                if e.kind == FileKind::Directory {
                    stack.push(e.ino);
                } else if e.ino <= MAX_BACKEND_INO {
                    seen.insert(e.ino);
                }
                true
            });
        }
        for ino in seen {
            let nodeid = (u64::from(index) << 56) | ino;
            self.notify(&|| format!("inode {nodeid:#x}"), &|w| {
                self.server
                    .notify_inval_inode(w, nodeid, 0, 0)
                    .map(|_| ())
                    .map_err(std::io::Error::other)
            });
        }
    }
}
