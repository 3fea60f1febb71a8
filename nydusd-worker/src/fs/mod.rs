//! `RafsFs`: one RAFS image as a read-only FUSE filesystem.
//!
//! A thin adapter: metadata comes straight from a `protocol::rafs::Reader`,
//! file bytes from a `FileData` (the blob device). It keeps no per-inode or
//! per-handle state, so inode numbers and replies are pure functions of the
//! bootstrap and any process with the same image answers identically
//! (the property failover and upgrade rely on).

mod attr;
mod chunks;
mod filesystem;
mod ops;
pub mod stats;

use std::any::Any;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::api::filesystem::Entry;
use fuse_backend_rs::api::BackendFileSystem;
use nydus_protocol::rafs::{ChunkRef, Inode, RafsError, Reader};

pub use stats::{Fop, FopSink};

/// The largest inode number a backend may use under the Vfs (8 bits of the
/// 64 are the mount index).
pub const MAX_BACKEND_INO: u64 = 0x00ff_ffff_ffff_ffff;

/// Reads file bytes. Implemented by the blob device; a stub in tests.
pub trait FileData: Send + Sync {
    /// Fills the start of `room` with bytes `[offset, offset + want)` of a
    /// regular file of `file_size` bytes made of `chunks` (file order).
    /// Returns the count (short only at end of file). `room` past that is
    /// scratch the implementation may overwrite. Any fetch, decompression
    /// or digest failure is an error: the caller answers EIO.
    fn read(
        &self,
        chunks: &[ChunkRef],
        file_size: u64,
        offset: u64,
        room: &mut [u8],
        want: usize,
    ) -> io::Result<usize>;
}

/// How this filesystem presents the image (reference §7.3).
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// Answer xattr calls even when the image lacks HAS_XATTR (`enable_xattr`).
    pub enable_xattr: bool,
    /// Without xattrs, answer ENOSYS as upstream does. The kernel then stops
    /// asking for the whole connection, so this is only right when the
    /// image is alone on it (mounted at `/`); beside other pseudo mounts
    /// "no attributes" (ENODATA, empty list) is answered instead.
    pub xattr_enosys: bool,
    /// Reported for every inode whose stored mtime is 0.
    pub start_time: i64,
    /// Reported as owner when the image has no EXPLICIT_UID_GID.
    pub uid: u32,
    pub gid: u32,
    /// How long the kernel may cache attributes and names. The image never
    /// changes, so this is long; umount invalidates explicitly.
    pub ttl: Duration,
    /// How long the kernel may cache names (`entry_timeout`).
    pub entry_ttl: Duration,
    /// Returned as the handle of every open and required on every read
    /// (or 0, when the kernel skips opens). A pseudo-mount index is reused
    /// after 255 other mounts; a descriptor opened on an earlier image whose
    /// index is now someone else's then gets ESTALE instead of the new
    /// image's bytes. It depends only on the image (see `handle_tag`), so a
    /// successor worker that restores the same mount table accepts the
    /// handles its predecessor gave out, whichever way it was started.
    pub handle_tag: u64,
}

/// A stable, non-zero tag for an image: FNV-1a of its identity bytes. Not a
/// std hasher, whose output may change between Rust releases and so between
/// a worker and its upgraded successor.
pub fn handle_tag(identity: &[u8]) -> u64 {
    let hash = identity.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash | 1
}

impl FsOptions {
    /// Defaults for a daemon started now: its euid/egid, a long TTL.
    pub fn for_daemon(start_time: i64, enable_xattr: bool) -> Self {
        FsOptions {
            enable_xattr,
            xattr_enosys: true,
            start_time,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            ttl: Duration::from_secs(1 << 32),
            entry_ttl: Duration::from_secs(1 << 32),
            handle_tag: 1,
        }
    }
}

pub struct RafsFs {
    reader: Arc<dyn Reader>,
    data: Arc<dyn FileData>,
    opts: FsOptions,
    /// Whether xattr calls are answered at all (else ENOSYS, as upstream).
    xattr: bool,
    root_ino: u64,
    stats: Arc<dyn FopSink>,
    chunks: chunks::ChunkCache,
}

impl RafsFs {
    pub fn new(
        reader: Arc<dyn Reader>,
        data: Arc<dyn FileData>,
        opts: FsOptions,
        stats: Arc<dyn FopSink>,
    ) -> io::Result<Self> {
        let sb = reader.super_info();
        let root_ino = sb.root_ino;
        if root_ino == 0 || root_ino > MAX_BACKEND_INO {
            return Err(io::Error::other(format!(
                "root inode number {root_ino:#x} is outside 1..={MAX_BACKEND_INO:#x}"
            )));
        }
        let xattr = sb.has_xattr || opts.enable_xattr;
        Ok(RafsFs {
            reader,
            data,
            opts,
            xattr,
            root_ino,
            stats,
            chunks: chunks::ChunkCache::default(),
        })
    }

    pub fn reader(&self) -> &Arc<dyn Reader> {
        &self.reader
    }

    /// The inode, or ENOENT/EIO. Inode 0 and numbers above the Vfs limit
    /// never come from us, so they are ENOENT.
    fn inode(&self, ino: u64) -> io::Result<Inode> {
        if ino == 0 || ino > MAX_BACKEND_INO {
            return Err(errno(libc::ENOENT));
        }
        self.reader.inode(ino).map_err(rafs_errno)
    }

    fn entry(&self, inode: &Inode) -> Entry {
        Entry {
            inode: inode.ino,
            generation: 0,
            attr: self.stat(inode),
            attr_flags: 0,
            attr_timeout: self.opts.ttl,
            entry_timeout: self.opts.entry_ttl,
        }
    }
}

impl BackendFileSystem for RafsFs {
    fn mount(&self) -> io::Result<(Entry, u64)> {
        let root = self.inode(self.root_ino)?;
        if root.kind() != Some(nydus_protocol::rafs::FileKind::Directory) {
            return Err(io::Error::other(format!(
                "root inode {} is not a directory (mode {:o})",
                self.root_ino, root.mode
            )));
        }
        // The Vfs only checks the largest number against its limit; every
        // number we hand out is checked again in `inode()`.
        let max = self
            .reader
            .super_info()
            .inode_count
            .max(self.root_ino)
            .min(MAX_BACKEND_INO);
        Ok((self.entry(&root), max))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub(crate) fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The one place a reader error becomes an errno: an unknown inode or name
/// is ENOENT, anything wrong with the image or its data is EIO.
pub(crate) fn rafs_errno(e: RafsError) -> io::Error {
    match e {
        RafsError::NotFound(_) => errno(libc::ENOENT),
        RafsError::Corrupt { .. }
        | RafsError::Unsupported(_)
        | RafsError::Codec(_)
        | RafsError::Io(_) => {
            log::warn!("image error: {e}");
            errno(libc::EIO)
        }
    }
}

#[cfg(test)]
mod tests;
