//! RafsFs against an in-memory image: attribute rules, directory offsets,
//! xattr size protocol, errno mapping.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuse_backend_rs::api::filesystem::{Context, FileSystem, GetxattrReply, ListxattrReply};
use nydus_protocol::rafs::codec::{Compressor, Digester};
use nydus_protocol::rafs::{
    BlobInfo, ChunkRef, DirEntry, FsVersion, Inode, RafsError, Reader, Result, SuperInfo,
};

use super::stats::NoStats;
use super::*;

/// (name, value) pairs of one inode.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

struct MemReader {
    sb: SuperInfo,
    inodes: BTreeMap<u64, Inode>,
    children: BTreeMap<u64, Vec<(Vec<u8>, u64)>>,
    xattrs: BTreeMap<u64, Xattrs>,
    /// How many chunk lists `chunks` has built.
    lists_built: AtomicUsize,
}

impl Reader for MemReader {
    fn super_info(&self) -> &SuperInfo {
        &self.sb
    }
    fn blobs(&self) -> &[BlobInfo] {
        &[]
    }
    fn inode(&self, ino: u64) -> Result<Inode> {
        self.inodes
            .get(&ino)
            .cloned()
            .ok_or_else(|| RafsError::NotFound(format!("inode {ino}")))
    }
    fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<u64>> {
        Ok(self
            .children
            .get(&parent)
            .and_then(|c| c.iter().find(|(n, _)| n == name).map(|(_, i)| *i)))
    }
    fn readdir(
        &self,
        ino: u64,
        offset: u64,
        sink: &mut dyn FnMut(DirEntry<'_>, u64) -> bool,
    ) -> Result<()> {
        let kids = self.children.get(&ino).cloned().unwrap_or_default();
        for (i, (name, child)) in kids.iter().enumerate().skip(offset as usize) {
            let kind = self.inodes[child].kind().unwrap();
            let e = DirEntry {
                name,
                ino: *child,
                kind,
            };
            if !sink(e, i as u64 + 1) {
                break;
            }
        }
        Ok(())
    }
    fn readlink(&self, _ino: u64) -> Result<Vec<u8>> {
        Ok(b"target".to_vec())
    }
    fn xattrs(&self, ino: u64) -> Result<Xattrs> {
        Ok(self.xattrs.get(&ino).cloned().unwrap_or_default())
    }
    /// One reference per chunk-size piece of the file.
    fn chunks(&self, ino: u64) -> Result<Vec<ChunkRef>> {
        self.lists_built.fetch_add(1, Ordering::SeqCst);
        let pieces = self.inode(ino)?.size.div_ceil(self.sb.chunk_size.into());
        Ok((0..pieces as u32)
            .map(|i| ChunkRef {
                blob_index: 0,
                chunk_index: i,
                file_offset: u64::from(i) * u64::from(self.sb.chunk_size),
                info: None,
            })
            .collect())
    }
    fn prefetch_inodes(&self) -> Result<Vec<u64>> {
        Ok(Vec::new())
    }
}

fn inode(ino: u64, mode: u32, size: u64, mtime: i64) -> Inode {
    Inode {
        ino,
        mode,
        uid: 1000,
        gid: 1001,
        nlink: 1,
        size,
        mtime,
        mtime_nsec: 5,
        rdev: 0,
        has_xattr: ino == 3,
    }
}

fn image(explicit: bool, has_xattr: bool) -> MemReader {
    let sb = SuperInfo {
        version: FsVersion::V6,
        flags: 0,
        block_size: 4096,
        chunk_size: 1 << 20,
        compressor: Compressor::None,
        digester: Digester::Blake3,
        inode_count: 3,
        root_ino: 1,
        explicit_uidgid: explicit,
        has_xattr,
    };
    let mut inodes = BTreeMap::new();
    inodes.insert(1, inode(1, libc::S_IFDIR | 0o700, 4096, 0));
    inodes.insert(2, inode(2, libc::S_IFREG | 0o644, 10, 1_600_000_000));
    inodes.insert(3, inode(3, libc::S_IFDIR | 0o750, 4096, 1_700_000_000));
    let mut children = BTreeMap::new();
    children.insert(1, vec![(b"a".to_vec(), 2), (b"d".to_vec(), 3)]);
    let mut xattrs = BTreeMap::new();
    xattrs.insert(3, vec![(b"user.k".to_vec(), b"value".to_vec())]);
    MemReader {
        sb,
        inodes,
        children,
        xattrs,
        lists_built: AtomicUsize::new(0),
    }
}

/// Serves fixed bytes, or fails when `fail` is set.
struct Bytes {
    fail: Mutex<bool>,
}

impl FileData for Bytes {
    fn read(
        &self,
        _c: &[ChunkRef],
        size: u64,
        off: u64,
        buf: &mut [u8],
        want: usize,
    ) -> io::Result<usize> {
        if *self.fail.lock().unwrap() {
            return Err(io::Error::other("bad digest"));
        }
        // The room past `want` is scratch: scribble on it, as decoding may.
        buf[want..].fill(b'#');
        let n = want.min((size - off) as usize);
        buf[..n].fill(b'x');
        Ok(n)
    }
}

fn fs(explicit: bool, has_xattr: bool, enable_xattr: bool) -> RafsFs {
    let opts = FsOptions {
        enable_xattr,
        xattr_enosys: true,
        start_time: 42,
        uid: 7,
        gid: 8,
        ttl: Duration::from_secs(60),
        entry_ttl: Duration::from_secs(60),
        handle_tag: 0x51,
    };
    let data = Arc::new(Bytes {
        fail: Mutex::new(false),
    });
    RafsFs::new(
        Arc::new(image(explicit, has_xattr)),
        data,
        opts,
        Arc::new(NoStats),
    )
    .unwrap()
}

fn ctx() -> Context {
    Context::default()
}

/// The errno of a result that must be an error.
fn err<T>(r: io::Result<T>) -> i32 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.raw_os_error().unwrap(),
    }
}

#[test]
fn root_mode_forced_and_zero_mtime_is_start_time() {
    let f = fs(true, false, false);
    let (root, _) = f.getattr(&ctx(), 1, None).unwrap();
    assert_eq!(root.st_mode, libc::S_IFDIR | 0o755);
    assert_eq!((root.st_mtime, root.st_atime, root.st_ctime), (42, 42, 42));
    let (file, _) = f.getattr(&ctx(), 2, None).unwrap();
    assert_eq!(file.st_mode, libc::S_IFREG | 0o644);
    assert_eq!((file.st_mtime, file.st_mtime_nsec), (1_600_000_000, 5));
    assert_eq!((file.st_atime, file.st_ctime), (0, 0));
    assert_eq!((file.st_uid, file.st_gid), (1000, 1001));
    assert_eq!((file.st_blocks, file.st_blksize), (1, 4096));
}

#[test]
fn implicit_owner_is_the_daemon() {
    let f = fs(false, false, false);
    let (file, _) = f.getattr(&ctx(), 2, None).unwrap();
    assert_eq!((file.st_uid, file.st_gid), (7, 8));
}

#[test]
fn lookup_and_negative_entries() {
    let f = fs(true, false, false);
    let name = CString::new("a").unwrap();
    assert_eq!(f.lookup(&ctx(), 1, &name).unwrap().inode, 2);
    let missing = CString::new("zz").unwrap();
    assert_eq!(f.lookup(&ctx(), 1, &missing).unwrap().inode, 0);
    assert_eq!(err(f.lookup(&ctx(), 2, &name)), libc::ENOTDIR);
    assert_eq!(err(f.getattr(&ctx(), 99, None)), libc::ENOENT);
}

#[test]
fn readdir_offsets_resume() {
    let f = fs(true, false, false);
    let mut all = Vec::new();
    f.readdir(&ctx(), 1, 0, 4096, 0, &mut |e| {
        all.push((e.name.to_vec(), e.offset));
        Ok(1)
    })
    .unwrap();
    let names: Vec<_> = all.iter().map(|(n, _)| n.as_slice()).collect();
    assert_eq!(names, [&b"."[..], b"..", b"a", b"d"]);
    // Resuming from each entry's offset yields exactly the rest.
    for (i, (_, off)) in all.iter().enumerate() {
        let mut rest = Vec::new();
        f.readdir(&ctx(), 1, 0, 4096, *off, &mut |e| {
            rest.push(e.name.to_vec());
            Ok(1)
        })
        .unwrap();
        assert_eq!(rest.len(), all.len() - i - 1);
    }
    // A full buffer stops the listing.
    let mut n = 0;
    f.readdir(&ctx(), 1, 0, 4096, 0, &mut |_| {
        n += 1;
        Ok(if n == 2 { 0 } else { 1 })
    })
    .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn xattrs_enosys_unless_enabled() {
    let k = CString::new("user.k").unwrap();
    let off = fs(true, false, false);
    assert_eq!(err(off.getxattr(&ctx(), 3, &k, 0)), libc::ENOSYS);
    assert_eq!(err(off.listxattr(&ctx(), 3, 0)), libc::ENOSYS);
    for f in [fs(true, true, false), fs(true, false, true)] {
        assert!(matches!(
            f.getxattr(&ctx(), 3, &k, 0).unwrap(),
            GetxattrReply::Count(5)
        ));
        assert_eq!(err(f.getxattr(&ctx(), 3, &k, 2)), libc::ERANGE);
        assert!(
            matches!(f.getxattr(&ctx(), 3, &k, 5).unwrap(), GetxattrReply::Value(v) if v == b"value")
        );
        let other = CString::new("user.none").unwrap();
        assert_eq!(err(f.getxattr(&ctx(), 3, &other, 9)), libc::ENODATA);
        assert!(matches!(
            f.listxattr(&ctx(), 3, 0).unwrap(),
            ListxattrReply::Count(7)
        ));
        assert!(matches!(
            f.listxattr(&ctx(), 2, 0).unwrap(),
            ListxattrReply::Count(0)
        ));
    }
}

#[test]
fn mutations_are_erofs() {
    let f = fs(true, false, false);
    let n = CString::new("new").unwrap();
    assert_eq!(err(f.mkdir(&ctx(), 1, &n, 0o755, 0)), libc::EROFS);
    assert_eq!(err(f.unlink(&ctx(), 1, &n)), libc::EROFS);
    assert_eq!(
        err(f.open(&ctx(), 2, libc::O_WRONLY as u32, 0)),
        libc::EROFS
    );
    let (handle, _, _) = f.open(&ctx(), 2, libc::O_RDONLY as u32, 0).unwrap();
    assert_eq!(handle, Some(0x51), "the image tag is the handle");
    assert_eq!(err(f.access(&ctx(), 2, libc::W_OK as u32)), libc::EROFS);
}

#[test]
fn errno_table() {
    let cases = [
        (RafsError::NotFound("x".into()), libc::ENOENT),
        (RafsError::corrupt("inode", 0, "bad"), libc::EIO),
        (RafsError::Codec("digest".into()), libc::EIO),
        (RafsError::Io("short".into()), libc::EIO),
        (RafsError::Unsupported("enc".into()), libc::EIO),
    ];
    for (e, want) in cases {
        assert_eq!(err::<()>(Err(rafs_errno(e))), want);
    }
}

#[test]
fn xattrs_beside_other_mounts_are_empty_not_enosys() {
    let mut f = fs(true, false, false);
    f.opts.xattr_enosys = false;
    let k = CString::new("user.k").unwrap();
    assert_eq!(err(f.getxattr(&ctx(), 3, &k, 0)), libc::ENODATA);
    assert!(matches!(
        f.listxattr(&ctx(), 3, 0).unwrap(),
        ListxattrReply::Count(0)
    ));
}

#[test]
fn flush_is_enosys_so_the_kernel_stops_sending_it() {
    let f = fs(false, false, false);
    assert_eq!(err(f.flush(&ctx(), 2, 0, 0)), libc::ENOSYS);
}

#[test]
fn chunk_list_cache_keeps_big_files_lists_only() {
    use super::chunks::{ChunkCache, MAX_REFS, MIN_CACHED_REFS};
    let mut reader = image(false, false);
    let chunk = u64::from(reader.sb.chunk_size);
    // A file of n chunks is inode 10 + n, clear of the image's own.
    let file = |n: u64| 10 + n;
    let half = (MAX_REFS / 2 + 1) as u64;
    for n in [
        1,
        MIN_CACHED_REFS as u64,
        MAX_REFS as u64 + 1,
        half,
        half + 1,
    ] {
        let ino = file(n);
        reader
            .inodes
            .insert(ino, inode(ino, libc::S_IFREG | 0o644, n * chunk, 0));
    }
    let cache = ChunkCache::default();
    let builds = |n: u64, reads: usize| {
        let before = reader.lists_built.load(Ordering::SeqCst);
        for _ in 0..reads {
            assert_eq!(cache.get(&reader, file(n)).unwrap().len() as u64, n);
        }
        reader.lists_built.load(Ordering::SeqCst) - before
    };
    assert_eq!(builds(1, 3), 3, "a one-chunk file's list is not kept");
    assert_eq!(builds(MIN_CACHED_REFS as u64, 3), 1);
    assert_eq!(builds(MAX_REFS as u64 + 1, 2), 2, "beyond the bound");
    // Filling past the bound starts over.
    assert_eq!(builds(half, 2), 1);
    assert_eq!(builds(half + 1, 2), 1);
    assert_eq!(builds(half, 1), 1, "dropped at the start-over");
}
