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

/// The kernel's node id of the mountpoint's root directory.
const FUSE_ROOT_ID: u64 = 1;

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

    /// Everything the kernel may have cached that a change of the image at
    /// `path` makes wrong: the pseudo directories down to `path`; for `/`,
    /// where the image is the root directory itself, the top-level names of
    /// the image that left and of the one that came; and every inode of the
    /// image that left (`gone`: its index and reader).
    pub(super) fn invalidate_change(
        &self,
        path: &str,
        gone: Option<(u8, &dyn Reader)>,
        came: Option<&dyn Reader>,
    ) {
        self.invalidate_path(path);
        if path == "/" {
            for reader in gone.map(|(_, r)| r).into_iter().chain(came) {
                self.invalidate_root_names(reader);
            }
        }
        if let Some((index, reader)) = gone {
            self.invalidate_image(index, reader);
        }
    }

    /// After the mount table changed at `path`: the kernel's entry for each
    /// component of `path` that exists in the pseudo tree, plus the first
    /// that does not (a pseudo directory removed with the mount), and the
    /// attributes and cached listing of every pseudo directory above them.
    /// The kernel caches pseudo directories' listings (OPENDIR is skipped),
    /// so without this a new mount would not be listed and an old one would
    /// linger.
    fn invalidate_path(&self, path: &str) {
        if lock(&self.notifier).is_none() {
            return;
        }
        let pseudo = self.vfs.get_root_pseudofs();
        let mut dir = FUSE_ROOT_ID;
        let mut dir_path = String::new();
        self.invalidate_inode(dir);
        for name in path.split('/').filter(|c| !c.is_empty()) {
            self.invalidate_entry(dir, name.as_bytes());
            dir_path.push('/');
            dir_path.push_str(name);
            match pseudo.path_walk(&dir_path) {
                Ok(Some(ino)) => {
                    dir = ino;
                    self.invalidate_inode(ino);
                }
                _ => break,
            }
        }
    }

    /// The kernel's entries for every name in the root directory of the
    /// image `reader`: the image at `/` is replaced or removed, so its
    /// names must go (positive entries) or a new image's names must become
    /// visible (negative entries). The root's own listing goes with
    /// `invalidate_path("/")`.
    fn invalidate_root_names(&self, reader: &dyn Reader) {
        if lock(&self.notifier).is_none() {
            return;
        }
        let root = reader.super_info().root_ino;
        let mut names = Vec::new();
        let _ = reader.readdir(root, 0, &mut |e, _| {
            if e.name != b"." && e.name != b".." {
                names.push(e.name.to_vec());
            }
            true
        });
        for name in names {
            self.invalidate_entry(FUSE_ROOT_ID, &name);
        }
    }

    fn invalidate_entry(&self, parent: u64, name: &[u8]) {
        let Ok(cname) = CString::new(name) else {
            return;
        };
        self.notify(
            &|| format!("entry {:?} in {parent:#x}", String::from_utf8_lossy(name)),
            &|w| {
                self.server
                    .notify_inval_entry(w, parent, &cname)
                    .map(|_| ())
                    .map_err(std::io::Error::other)
            },
        );
    }

    /// Attributes and cached pages (a directory's listing) of one node.
    fn invalidate_inode(&self, nodeid: u64) {
        self.notify(&|| format!("inode {nodeid:#x}"), &|w| {
            self.server
                .notify_inval_inode(w, nodeid, 0, 0)
                .map(|_| ())
                .map_err(std::io::Error::other)
        });
    }

    /// FUSE_NOTIFY_INVAL_INODE (attributes and pages) for every inode of
    /// the image that was mounted at `index`.
    fn invalidate_image(&self, index: u8, reader: &dyn Reader) {
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
            self.invalidate_inode(super::node_id(index, ino));
        }
    }
}
