//! The work behind each FUSE operation: lookup, directory listing with
//! resumable offsets, reads through the blob device, xattrs, access.

use std::ffi::CStr;
use std::io;

use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, GetxattrReply, ListxattrReply, ZeroCopyWriter,
};
use fuse_backend_rs::common::file_buf::FileVolatileSlice;
use fuse_backend_rs::common::file_traits::FileReadWriteVolatile;
use nydus_protocol::rafs::{ChunkRef, FileKind};

use super::{errno, rafs_errno, FileData, Fop, RafsFs};

/// (name, value) pairs of one inode.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

impl RafsFs {
    /// Runs one operation and reports it to metrics.
    pub(super) fn counted<T>(
        &self,
        op: Fop,
        ino: u64,
        f: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let r = f();
        self.stats.fop(op, ino, r.is_ok());
        r
    }

    pub(super) fn do_lookup(&self, parent: u64, name: &CStr) -> io::Result<Entry> {
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
                entry_timeout: self.opts.entry_ttl,
            }),
        }
    }

    /// Lists directory `ino` from FUSE offset `offset`: "." is offset 0,
    /// ".." 1, and the reader's entry at position p is p + 2. `emit`
    /// returns false once the reply buffer is full.
    pub(super) fn list_dir(
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

    pub(super) fn do_read(
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
        // Any failure to resolve a regular file's chunks is bad image data:
        // EIO, never ENOENT on a file that exists.
        let chunks = self.chunks.get(&*self.reader, ino).map_err(|e| {
            log::error!("chunks of inode {ino}: {e}");
            errno(libc::EIO)
        })?;
        // Straight into the reply buffer: no chunk-sized buffer to allocate
        // (page-faulting 256 fresh pages), zero and copy again per request.
        // Offered whole, its room past `len` (a FUSE reply buffer holds a
        // chunk) takes a chunk wanted only in part as well.
        let mut src = FileSource {
            data: &*self.data,
            chunks: &chunks,
            size: inode.size,
            ino,
            want: len,
        };
        let room = w.available_bytes().max(len);
        let done = w.write_from(&mut src, room, offset)?;
        if done < len {
            // `src.want` has counted down to what is still missing.
            w.write_all_from(&mut src, len - done, offset + done as u64)?;
        }
        Ok(len)
    }

    fn xattr_list(&self, ino: u64) -> io::Result<Xattrs> {
        if !self.xattr && self.opts.xattr_enosys {
            return Err(errno(libc::ENOSYS));
        }
        let inode = self.inode(ino)?;
        if !self.xattr {
            return Ok(Vec::new());
        }
        if !inode.has_xattr {
            return Ok(Vec::new());
        }
        self.reader.xattrs(ino).map_err(rafs_errno)
    }

    pub(super) fn do_getxattr(
        &self,
        ino: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        let list = self.xattr_list(ino)?;
        let value = list
            .into_iter()
            .find(|(n, _)| n.as_slice() == name.to_bytes())
            .map(|(_, v)| v)
            .ok_or_else(|| errno(libc::ENODATA))?;
        size_reply(value, size, GetxattrReply::Value, GetxattrReply::Count)
    }

    pub(super) fn do_listxattr(&self, ino: u64, size: u32) -> io::Result<ListxattrReply> {
        let mut names = Vec::new();
        for (n, _) in self.xattr_list(ino)? {
            names.extend_from_slice(&n);
            names.push(0);
        }
        size_reply(names, size, ListxattrReply::Names, ListxattrReply::Count)
    }

    pub(super) fn do_access(&self, ctx: &Context, ino: u64, mask: u32) -> io::Result<()> {
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

/// A regular file's bytes as the FUSE writer's data source.
struct FileSource<'a> {
    data: &'a dyn FileData,
    chunks: &'a [ChunkRef],
    size: u64,
    ino: u64,
    /// Bytes still wanted: the writer's slices may be bigger (scratch).
    want: usize,
}

impl FileReadWriteVolatile for FileSource<'_> {
    fn read_volatile(&mut self, _slice: FileVolatileSlice<'_>) -> io::Result<usize> {
        Err(errno(libc::EINVAL))
    }

    fn write_volatile(&mut self, _slice: FileVolatileSlice<'_>) -> io::Result<usize> {
        Err(errno(libc::EROFS))
    }

    fn read_at_volatile(&mut self, slice: FileVolatileSlice<'_>, offset: u64) -> io::Result<usize> {
        // SAFETY: the slice is the unwritten part of the reply buffer the
        // writer hands us for this call only: valid, initialised memory
        // (the transports allocate it zero-filled or as guest memory) that
        // nothing else touches until we return.
        let buf = unsafe { std::slice::from_raw_parts_mut(slice.as_ptr(), slice.len()) };
        let want = self.want.min(buf.len());
        let n = self
            .data
            .read(self.chunks, self.size, offset, buf, want)
            .map_err(|e| {
                // The storage layer logged the cause once; an error line
                // here would repeat it for every read of a broken file.
                log::debug!("read of inode {} at {offset}+{want} failed: {e}", self.ino);
                errno(libc::EIO)
            })?;
        self.want -= n;
        Ok(n)
    }

    fn read_vectored_at_volatile(
        &mut self,
        bufs: &[FileVolatileSlice<'_>],
        offset: u64,
    ) -> io::Result<usize> {
        let mut done = 0;
        for slice in bufs {
            let wanted = self.want.min(slice.len());
            if wanted == 0 {
                break;
            }
            let n = self.read_at_volatile(*slice, offset + done as u64)?;
            done += n;
            if n < wanted {
                break;
            }
        }
        Ok(done)
    }

    fn write_at_volatile(
        &mut self,
        _slice: FileVolatileSlice<'_>,
        _offset: u64,
    ) -> io::Result<usize> {
        Err(errno(libc::EROFS))
    }
}
