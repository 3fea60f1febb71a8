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

/// (name, value) pairs of one inode.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

impl RafsFs {
    /// Runs one operation and reports it to metrics.
    fn counted<T>(&self, op: Fop, ino: u64, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let r = f();
        self.stats.fop(op, ino, r.is_ok());
        r
    }

    fn do_lookup(&self, parent: u64, name: &CStr) -> io::Result<Entry> {
        let name = name.to_bytes();
        let dir = self.inode(parent)?;
        if dir.kind() != Some(FileKind::Directory) {
            return Err(errno(libc::ENOTDIR));
        }
        let ino = match name {
            b"." => Some(parent),
            b".." if parent == self.root_ino => Some(parent),
            _ => self.reader.lookup(parent, name).map_err(rafs_errno)?,
        };
        match ino {
            Some(ino) => Ok(self.entry(&self.inode(ino)?)),
            // A negative entry the kernel may cache: the image never changes.
            None => Ok(Entry {
                inode: 0,
                generation: 0,
                // SAFETY: stat64 is a plain C struct of integers; all-zero is valid.
                attr: unsafe { std::mem::zeroed() },
                attr_flags: 0,
                attr_timeout: self.opts.ttl,
                entry_timeout: self.opts.ttl,
            }),
        }
    }

    /// Lists directory `ino` from FUSE offset `offset`: "." is offset 0,
    /// ".." 1, and the reader's entry at position p is p + 2. `emit`
    /// returns false once the reply buffer is full.
    fn list_dir(
        &self,
        ino: u64,
        offset: u64,
        emit: &mut dyn FnMut(DirEntry<'_>) -> io::Result<bool>,
    ) -> io::Result<()> {
        let dir = self.inode(ino)?;
        if dir.kind() != Some(FileKind::Directory) {
            return Err(errno(libc::ENOTDIR));
        }
        let dtype = FileKind::Directory.dirent_type();
        if offset == 0 && !emit(dot_entry(b".", ino, 1, dtype))? {
            return Ok(());
        }
        if offset <= 1 {
            let parent = if ino == self.root_ino {
                ino
            } else {
                // ".." is informational in readdir (the kernel never follows
                // it), so the directory itself stands in when the reader
                // cannot name the parent.
                self.reader.lookup(ino, b"..").ok().flatten().unwrap_or(ino)
            };
            if !emit(dot_entry(b"..", parent, 2, dtype))? {
                return Ok(());
            }
        }
        let mut failed: Option<io::Error> = None;
        self.reader
            .readdir(ino, offset.saturating_sub(2), &mut |e, next| {
                let entry = DirEntry {
                    ino: e.ino,
                    offset: next.saturating_add(2),
                    type_: e.kind.dirent_type(),
                    name: e.name,
                };
                match emit(entry) {
                    Ok(more) => more,
                    Err(err) => {
                        failed = Some(err);
                        false
                    }
                }
            })
            .map_err(rafs_errno)?;
        failed.map_or(Ok(()), Err)
    }

    fn do_read(
        &self,
        ino: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
    ) -> io::Result<usize> {
        let inode = self.inode(ino)?;
        match inode.kind() {
            Some(FileKind::Regular) => {}
            Some(FileKind::Directory) => return Err(errno(libc::EISDIR)),
            _ => return Err(errno(libc::EINVAL)),
        }
        if offset >= inode.size || size == 0 {
            return Ok(0);
        }
        let len = (inode.size - offset).min(u64::from(size)) as usize;
        let chunks = self.reader.chunks(ino).map_err(rafs_errno)?;
        let mut buf = vec![0u8; len];
        let n = self
            .data
            .read(&chunks, inode.size, offset, &mut buf)
            .map_err(|e| {
                log::error!("read of inode {ino} at {offset}+{len} failed: {e}");
                errno(libc::EIO)
            })?;
        let n = n.min(len);
        w.write_all(&buf[..n])?;
        Ok(n)
    }

    fn xattr_list(&self, ino: u64) -> io::Result<Xattrs> {
        if !self.xattr {
            return Err(errno(libc::ENOSYS));
        }
        let inode = self.inode(ino)?;
        if !inode.has_xattr {
            return Ok(Vec::new());
        }
        self.reader.xattrs(ino).map_err(rafs_errno)
    }

    fn do_getxattr(&self, ino: u64, name: &CStr, size: u32) -> io::Result<GetxattrReply> {
        let list = self.xattr_list(ino)?;
        let value = list
            .into_iter()
            .find(|(n, _)| n.as_slice() == name.to_bytes())
            .map(|(_, v)| v)
            .ok_or_else(|| errno(libc::ENODATA))?;
        size_reply(value, size, GetxattrReply::Value, GetxattrReply::Count)
    }

    fn do_listxattr(&self, ino: u64, size: u32) -> io::Result<ListxattrReply> {
        let mut names = Vec::new();
        for (n, _) in self.xattr_list(ino)? {
            names.extend_from_slice(&n);
            names.push(0);
        }
        size_reply(names, size, ListxattrReply::Names, ListxattrReply::Count)
    }

    fn do_access(&self, ctx: &Context, ino: u64, mask: u32) -> io::Result<()> {
        let inode = self.inode(ino)?;
        let mask = mask as i32;
        if mask & libc::W_OK != 0 {
            return Err(errno(libc::EROFS));
        }
        if mask == libc::F_OK || ctx.uid == 0 && mask & libc::X_OK == 0 {
            return Ok(());
        }
        let st = self.stat(&inode);
        let bits = if ctx.uid == st.st_uid {
            (st.st_mode >> 6) & 7
        } else if ctx.gid == st.st_gid {
            (st.st_mode >> 3) & 7
        } else {
            st.st_mode & 7
        };
        // root may execute anything with at least one x bit set.
        let bits = if ctx.uid == 0 && st.st_mode & 0o111 != 0 {
            bits | 1
        } else {
            bits
        };
        if (mask as u32) & !bits & 7 == 0 {
            Ok(())
        } else {
            Err(errno(libc::EACCES))
        }
    }
}

fn dot_entry(name: &'static [u8], ino: u64, next: u64, dtype: u32) -> DirEntry<'static> {
    DirEntry {
        ino,
        offset: next,
        type_: dtype,
        name,
    }
}

/// getxattr/listxattr size protocol: 0 asks for the size, a too small
/// buffer is ERANGE.
fn size_reply<R>(
    data: Vec<u8>,
    size: u32,
    full: impl FnOnce(Vec<u8>) -> R,
    count: impl FnOnce(u32) -> R,
) -> io::Result<R> {
    let len = u32::try_from(data.len()).map_err(|_| errno(libc::E2BIG))?;
    if size == 0 {
        Ok(count(len))
    } else if len > size {
        Err(errno(libc::ERANGE))
    } else {
        Ok(full(data))
    }
}

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
            Ok((None, OpenOptions::KEEP_CACHE, None))
        })
    }

    fn read(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _flags: u32,
    ) -> io::Result<usize> {
        let start = Instant::now();
        let r = self.do_read(inode, w, size, offset);
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

    fn flush(&self, _: &Context, _: u64, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }

    fn fsync(&self, _: &Context, _: u64, _: bool, _: u64) -> io::Result<()> {
        Ok(())
    }

    fn fsyncdir(&self, _: &Context, _: u64, _: bool, _: u64) -> io::Result<()> {
        Ok(())
    }
}
