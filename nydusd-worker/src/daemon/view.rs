//! The Vfs as the kernel is served it: every call goes straight to the Vfs,
//! except that pseudo directories (the root without an image at `/`, and
//! the directories above sub-path mounts) report the time of the last
//! mount-table change as their mtime and ctime.
//!
//! Why: OPENDIR is skipped, so the kernel caches every directory's listing
//! and drops it only when a page of it is invalidated or, at the start of a
//! listing, when the directory's mtime differs from the cached one. An
//! empty listing (a pseudo root before the first mount) has no page, so only
//! the mtime can drop it. The Vfs's own pseudo directories report "now" in
//! whole seconds, which a mount within the same second does not change.

use std::ffi::CStr;
use std::io::Result;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn};
use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, FsOptions, GetxattrReply, ListxattrReply, OpenOptions,
    SetattrValid, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::api::Vfs;
use fuse_backend_rs::transport::FsCacheReqHandler;

/// The kernel's node id of the mountpoint's root directory.
const ROOT: u64 = 1;

pub struct VfsView {
    vfs: Arc<Vfs>,
    /// Nanoseconds since the epoch of the last mount-table change; never
    /// a whole second, so it never equals a time the Vfs reported itself.
    changed_ns: AtomicU64,
    /// An image is mounted at `/`: node 1 is its root, not a pseudo one.
    image_at_root: AtomicBool,
}

impl VfsView {
    pub fn new(vfs: Arc<Vfs>) -> Self {
        let view = VfsView {
            vfs,
            changed_ns: AtomicU64::new(0),
            image_at_root: AtomicBool::new(false),
        };
        view.table_changed();
        view
    }

    /// After the Vfs mounted an image at `path` (a remount too), and before
    /// the kernel is told to drop what it cached of the pseudo directories:
    /// a listing cached before this call is then never taken as current.
    pub fn mounted(&self, path: &str) {
        if path == "/" {
            self.image_at_root.store(true, Ordering::Release);
        }
        self.table_changed();
    }

    /// As `mounted`, after the Vfs unmounted `path`.
    pub fn unmounted(&self, path: &str) {
        if path == "/" {
            self.image_at_root.store(false, Ordering::Release);
        }
        self.table_changed();
    }

    fn table_changed(&self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut ns = now.max(self.changed_ns.load(Ordering::Acquire) + 1);
        if ns % 1_000_000_000 == 0 {
            ns += 1;
        }
        self.changed_ns.store(ns, Ordering::Release);
    }

    fn is_pseudo(&self, nodeid: u64) -> bool {
        // Index 0 is the pseudo filesystem; the Vfs answers for a mount's
        // root with the mounted filesystem's index, except at `/`.
        super::mount_index(nodeid) == 0
            && !(nodeid == ROOT && self.image_at_root.load(Ordering::Acquire))
    }

    /// ENOENT for a node of an image no longer mounted (its Vfs index is
    /// empty; with opens skipped, a descriptor reaches the Vfs with just the
    /// node) is ESTALE: the node the kernel holds is gone, not a name. For a
    /// path, ESTALE also makes the kernel look the name up afresh.
    fn stale_if_gone<T>(nodeid: u64, r: Result<T>) -> Result<T> {
        match r {
            Err(e) if super::mount_index(nodeid) != 0 && e.raw_os_error() == Some(libc::ENOENT) => {
                Err(std::io::Error::from_raw_os_error(libc::ESTALE))
            }
            r => r,
        }
    }

    fn stamp(&self, nodeid: u64, attr: &mut stat64) {
        if self.is_pseudo(nodeid) {
            let ns = self.changed_ns.load(Ordering::Acquire);
            let (secs, nsec) = ((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64);
            attr.st_mtime = secs;
            attr.st_mtime_nsec = nsec;
            attr.st_ctime = secs;
            attr.st_ctime_nsec = nsec;
        }
    }
}

impl FileSystem for VfsView {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, opts: FsOptions) -> Result<FsOptions> {
        self.vfs.init(opts)
    }

    fn destroy(&self) {
        self.vfs.destroy()
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> Result<Entry> {
        let mut entry = self.vfs.lookup(ctx, parent.into(), name)?;
        self.stamp(entry.inode, &mut entry.attr);
        Ok(entry)
    }

    fn forget(&self, ctx: &Context, inode: u64, count: u64) {
        self.vfs.forget(ctx, inode.into(), count)
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(u64, u64)>) {
        self.vfs.batch_forget(
            ctx,
            requests.into_iter().map(|(i, n)| (i.into(), n)).collect(),
        )
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> Result<(stat64, Duration)> {
        let (mut attr, ttl) =
            Self::stale_if_gone(inode, self.vfs.getattr(ctx, inode.into(), handle))?;
        self.stamp(inode, &mut attr);
        Ok((attr, ttl))
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> Result<(stat64, Duration)> {
        self.vfs.setattr(ctx, inode.into(), attr, handle, valid)
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> Result<Vec<u8>> {
        Self::stale_if_gone(inode, self.vfs.readlink(ctx, inode.into()))
    }

    fn symlink(&self, ctx: &Context, linkname: &CStr, parent: u64, name: &CStr) -> Result<Entry> {
        self.vfs.symlink(ctx, linkname, parent.into(), name)
    }

    fn mknod(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> Result<Entry> {
        self.vfs.mknod(ctx, inode.into(), name, mode, rdev, umask)
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> Result<Entry> {
        self.vfs.mkdir(ctx, parent.into(), name, mode, umask)
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> Result<()> {
        self.vfs.unlink(ctx, parent.into(), name)
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> Result<()> {
        self.vfs.rmdir(ctx, parent.into(), name)
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> Result<()> {
        self.vfs
            .rename(ctx, olddir.into(), oldname, newdir.into(), newname, flags)
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> Result<Entry> {
        self.vfs.link(ctx, inode.into(), newparent.into(), newname)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> Result<(Option<u64>, OpenOptions, Option<u32>)> {
        Self::stale_if_gone(inode, self.vfs.open(ctx, inode.into(), flags, fuse_flags))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        args: CreateIn,
    ) -> Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        self.vfs.create(ctx, parent.into(), name, args)
    }

    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> Result<usize> {
        let read = self.vfs.read(
            ctx,
            inode.into(),
            handle,
            w,
            size,
            offset,
            lock_owner,
            flags,
        );
        Self::stale_if_gone(inode, read)
    }

    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> Result<usize> {
        self.vfs.write(
            ctx,
            inode.into(),
            handle,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags,
        )
    }

    fn flush(&self, ctx: &Context, inode: u64, handle: u64, lock_owner: u64) -> Result<()> {
        self.vfs.flush(ctx, inode.into(), handle, lock_owner)
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> Result<()> {
        self.vfs.fsync(ctx, inode.into(), datasync, handle)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> Result<()> {
        self.vfs
            .fallocate(ctx, inode.into(), handle, mode, offset, length)
    }

    fn release(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        handle: u64,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> Result<()> {
        self.vfs.release(
            ctx,
            inode.into(),
            flags,
            handle,
            flush,
            flock_release,
            lock_owner,
        )
    }

    fn statfs(&self, ctx: &Context, inode: u64) -> Result<statvfs64> {
        self.vfs.statfs(ctx, inode.into())
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> Result<()> {
        self.vfs.setxattr(ctx, inode.into(), name, value, flags)
    }

    fn getxattr(&self, ctx: &Context, inode: u64, name: &CStr, size: u32) -> Result<GetxattrReply> {
        Self::stale_if_gone(inode, self.vfs.getxattr(ctx, inode.into(), name, size))
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> Result<ListxattrReply> {
        Self::stale_if_gone(inode, self.vfs.listxattr(ctx, inode.into(), size))
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> Result<()> {
        self.vfs.removexattr(ctx, inode.into(), name)
    }

    fn opendir(&self, ctx: &Context, inode: u64, flags: u32) -> Result<(Option<u64>, OpenOptions)> {
        self.vfs.opendir(ctx, inode.into(), flags)
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry<'_>) -> Result<usize>,
    ) -> Result<()> {
        self.vfs
            .readdir(ctx, inode.into(), handle, size, offset, add_entry)
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry<'_>, Entry) -> Result<usize>,
    ) -> Result<()> {
        self.vfs
            .readdirplus(ctx, inode.into(), handle, size, offset, &mut |d, mut e| {
                self.stamp(e.inode, &mut e.attr);
                add_entry(d, e)
            })
    }

    fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> Result<()> {
        self.vfs.fsyncdir(ctx, inode.into(), datasync, handle)
    }

    fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> Result<()> {
        self.vfs.releasedir(ctx, inode.into(), flags, handle)
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> Result<()> {
        self.vfs.access(ctx, inode.into(), mask)
    }

    fn id_remap(&self, ctx: &mut Context) -> Result<()> {
        self.vfs.id_remap(ctx)
    }

    fn setupmapping(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        foffset: u64,
        len: u64,
        flags: u64,
        moffset: u64,
        req: &mut dyn FsCacheReqHandler,
    ) -> Result<()> {
        self.vfs
            .setupmapping(ctx, inode.into(), handle, foffset, len, flags, moffset, req)
    }

    fn removemapping(
        &self,
        ctx: &Context,
        inode: u64,
        requests: Vec<RemovemappingOne>,
        req: &mut dyn FsCacheReqHandler,
    ) -> Result<()> {
        self.vfs.removemapping(ctx, inode.into(), requests, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuse_backend_rs::api::VfsOptions;

    fn errno<T>(r: Result<T>) -> Option<i32> {
        r.err().and_then(|e| e.raw_os_error())
    }

    #[test]
    fn a_node_of_an_unmounted_image_is_stale_and_a_pseudo_one_is_not() {
        // Real opens, as where handles carry a tag (else the Vfs says ENOSYS).
        let opts = VfsOptions {
            no_open: false,
            ..VfsOptions::default()
        };
        let view = VfsView::new(Arc::new(Vfs::new(opts)));
        let ctx = Context::default();
        // Index 1 holds no image: every node under it is a leftover.
        let gone = crate::daemon::node_id(1, 2);
        assert_eq!(errno(view.getattr(&ctx, gone, None)), Some(libc::ESTALE));
        assert_eq!(errno(view.readlink(&ctx, gone)), Some(libc::ESTALE));
        assert_eq!(errno(view.open(&ctx, gone, 0, 0)), Some(libc::ESTALE));
        // A pseudo node the Vfs does not know keeps the Vfs's answer.
        assert_ne!(errno(view.getattr(&ctx, 77, None)), Some(libc::ESTALE));
        assert!(view.getattr(&ctx, ROOT, None).is_ok());
    }
}
