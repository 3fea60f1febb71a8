//! The FUSE operations. Reads of metadata go straight to the reader; every
//! mutating operation is EROFS (the image is immutable).

use std::ffi::CStr;
use std::io;
use std::time::{Duration, Instant};

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn, FsOptions, OpenOptions};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, GetxattrReply, ListxattrReply, SetattrValid,
    ZeroCopyReader, ZeroCopyWriter,
};
use nydus_protocol::rafs::FileKind;

use super::{errno, rafs_errno, Fop, RafsFs};

impl FileSystem for RafsFs {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, _capable: FsOptions) -> io::Result<FsOptions> {
        Ok(FsOptions::empty())
    }

    fn lookup(&self, _ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        self.counted(Fop::Lookup, parent, || self.do_lookup(parent, name))
    }

    fn forget(&self, _ctx: &Context, inode: u64, _count: u64) {
        // Stateless: nothing to drop.
        self.stats.fop(Fop::Forget, inode, true);
    }

    fn batch_forget(&self, _ctx: &Context, _requests: Vec<(u64, u64)>) {
        self.stats.fop(Fop::BatchForget, 0, true);
    }

    fn getattr(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        self.counted(Fop::Getattr, inode, || {
            Ok((self.stat(&self.inode(inode)?), self.opts.ttl))
        })
    }

    fn setattr(
        &self,
        _ctx: &Context,
        _inode: u64,
        _attr: stat64,
        _handle: Option<u64>,
        _valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        Err(errno(libc::EROFS))
    }

    fn readlink(&self, _ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        self.counted(Fop::Readlink, inode, || {
            if self.inode(inode)?.kind() != Some(FileKind::Symlink) {
                return Err(errno(libc::EINVAL));
            }
            self.reader.readlink(inode).map_err(rafs_errno)
        })
    }

    fn open(
        &self,
        _ctx: &Context,
        inode: u64,
        flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        self.counted(Fop::Open, inode, || {
            let acc = flags as i32 & libc::O_ACCMODE;
            if acc != libc::O_RDONLY || flags as i32 & libc::O_TRUNC != 0 {
                return Err(errno(libc::EROFS));
            }
            self.inode(inode)?;
            // The data never changes: keep the page cache across opens so a
            // warm re-read costs no request.
            Ok((Some(self.opts.handle_tag), OpenOptions::KEEP_CACHE, None))
        })
    }

    fn read(
        &self,
        _ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _flags: u32,
    ) -> io::Result<usize> {
        let start = Instant::now();
        // 0: the kernel skips opens (then the daemon never reuses an index
        // the kernel may still hold; see `Daemon::attach`).
        let r = if handle == self.opts.handle_tag || handle == 0 {
            self.do_read(inode, w, size, offset)
        } else {
            Err(errno(libc::ESTALE))
        };
        let bytes = *r.as_ref().unwrap_or(&0);
        self.stats.read(inode, bytes, start.elapsed(), r.is_ok());
        r
    }

    fn release(
        &self,
        _ctx: &Context,
        inode: u64,
        _flags: u32,
        _handle: u64,
        _flush: bool,
        _flock_release: bool,
        _lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.counted(Fop::Release, inode, || Ok(()))
    }

    fn statfs(&self, _ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        self.counted(Fop::Statfs, inode, || Ok(self.statfs_reply()))
    }

    fn getxattr(
        &self,
        _ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.counted(Fop::Getxattr, inode, || self.do_getxattr(inode, name, size))
    }

    fn listxattr(&self, _ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        self.counted(Fop::Listxattr, inode, || self.do_listxattr(inode, size))
    }

    fn opendir(
        &self,
        _ctx: &Context,
        inode: u64,
        _flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        self.counted(Fop::Opendir, inode, || {
            if self.inode(inode)?.kind() != Some(FileKind::Directory) {
                return Err(errno(libc::ENOTDIR));
            }
            Ok((None, OpenOptions::KEEP_CACHE | OpenOptions::CACHE_DIR))
        })
    }

    fn readdir(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: u64,
        _size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry<'_>) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.counted(Fop::Readdir, inode, || {
            self.list_dir(inode, offset, &mut |e| Ok(add_entry(e)? > 0))
        })
    }

    fn readdirplus(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: u64,
        _size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry<'_>, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.counted(Fop::Readdirplus, inode, || {
            self.list_dir(inode, offset, &mut |e| {
                // The kernel takes no reference for "." and "..", so full
                // entries are safe for them too (and keep d_ino non-zero).
                let entry = self.entry(&self.inode(e.ino)?);
                Ok(add_entry(e, entry)? > 0)
            })
        })
    }

    fn releasedir(&self, _ctx: &Context, _inode: u64, _flags: u32, _handle: u64) -> io::Result<()> {
        Ok(())
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        self.counted(Fop::Access, inode, || self.do_access(ctx, inode, mask))
    }

    // Everything below would change the image.

    fn symlink(&self, _: &Context, _: &CStr, _: u64, _: &CStr) -> io::Result<Entry> {
        Err(errno(libc::EROFS))
    }

    fn mknod(&self, _: &Context, _: u64, _: &CStr, _: u32, _: u32, _: u32) -> io::Result<Entry> {
        Err(errno(libc::EROFS))
    }

    fn mkdir(&self, _: &Context, _: u64, _: &CStr, _: u32, _: u32) -> io::Result<Entry> {
        Err(errno(libc::EROFS))
    }

    fn unlink(&self, _: &Context, _: u64, _: &CStr) -> io::Result<()> {
        Err(errno(libc::EROFS))
    }

    fn rmdir(&self, _: &Context, _: u64, _: &CStr) -> io::Result<()> {
        Err(errno(libc::EROFS))
    }

    fn rename(&self, _: &Context, _: u64, _: &CStr, _: u64, _: &CStr, _: u32) -> io::Result<()> {
        Err(errno(libc::EROFS))
    }

    fn link(&self, _: &Context, _: u64, _: u64, _: &CStr) -> io::Result<Entry> {
        Err(errno(libc::EROFS))
    }

    fn create(
        &self,
        _: &Context,
        _: u64,
        _: &CStr,
        _: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        Err(errno(libc::EROFS))
    }

    fn write(
        &self,
        _: &Context,
        _: u64,
        _: u64,
        _: &mut dyn ZeroCopyReader,
        _: u32,
        _: u64,
        _: Option<u64>,
        _: bool,
        _: u32,
        _: u32,
    ) -> io::Result<usize> {
        Err(errno(libc::EROFS))
    }

    fn fallocate(&self, _: &Context, _: u64, _: u64, _: u32, _: u64, _: u64) -> io::Result<()> {
        Err(errno(libc::EROFS))
    }

    fn setxattr(&self, _: &Context, _: u64, _: &CStr, _: &[u8], _: u32) -> io::Result<()> {
        Err(errno(libc::EROFS))
    }

    fn removexattr(&self, _: &Context, _: u64, _: &CStr) -> io::Result<()> {
        Err(errno(libc::EROFS))
    }

    /// ENOSYS makes the kernel stop sending FLUSH for the whole connection
    /// (`fc->no_flush`): every close() of a file was otherwise a round trip
    /// with nothing to do, the only request left in a warm `tar` of a tree.
    fn flush(&self, _: &Context, _: u64, _: u64, _: u64) -> io::Result<()> {
        Err(errno(libc::ENOSYS))
    }

    fn fsync(&self, _: &Context, _: u64, _: bool, _: u64) -> io::Result<()> {
        Ok(())
    }

    fn fsyncdir(&self, _: &Context, _: u64, _: bool, _: u64) -> io::Result<()> {
        Ok(())
    }
}
