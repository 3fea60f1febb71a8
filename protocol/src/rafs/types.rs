//! Version-neutral views of RAFS structures, as the readers return them.
//!
//! Readers may add fields; consumers (the worker, nydusctl) use only these
//! types and the `Reader` trait, never v5/v6 internals.

use super::codec::{Compressor, Digester};

/// RAFS format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FsVersion {
    V5,
    V6,
}

/// Superblock facts every consumer needs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SuperInfo {
    pub version: FsVersion,
    /// RAFS superblock flags (§1.7).
    pub flags: u64,
    pub block_size: u32,
    pub chunk_size: u32,
    /// Image-wide defaults; v6 blobs carry their own (`BlobInfo`).
    pub compressor: Compressor,
    pub digester: Digester,
    pub inode_count: u64,
    /// The reader's inode number of the root directory.
    pub root_ino: u64,
    /// EXPLICIT_UID_GID: if false, report the daemon's own uid/gid.
    pub explicit_uidgid: bool,
    /// HAS_XATTR: if false (and config does not force it), xattr ops are ENOSYS.
    pub has_xattr: bool,
}

pub const FEATURE_INLINED_FS_META: u32 = 0x0000_0002;
pub const FEATURE_CAP_TAR_TOC: u32 = 0x4000_0000;
pub const FEATURE_SEPARATE: u32 = 0x0000_0010;
pub const FEATURE_EXTERNAL: u32 = 0x0000_0800;

/// One entry of the blob table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BlobInfo {
    /// Index in the blob table (what chunk descriptors refer to).
    pub index: u32,
    /// The id stored in the table, trailing NULs removed.
    pub blob_id: String,
    pub chunk_count: u32,
    /// Size of the blob's chunk data (compressed), if recorded.
    pub compressed_size: u64,
    /// Size of the blob's uncompressed image, if recorded.
    pub uncompressed_size: u64,
    pub compressor: Compressor,
    pub digester: Digester,
    pub chunk_size: u32,
    /// Blob feature bits (§4.8); 0 for v5 blobs without an extended entry.
    pub features: u32,
    /// Where the ci table sits in the data blob (v6), if any.
    pub meta: Option<BlobMetaInfo>,
}

impl BlobInfo {
    /// The id used to name the blob in a backend (§1.5). `meta_file_stem`
    /// is the stem of the file the metadata came from, when known.
    pub fn effective_id(&self, meta_file_stem: Option<&str>) -> String {
        let inlined = self.features & FEATURE_INLINED_FS_META != 0
            && self.features & (FEATURE_SEPARATE | FEATURE_EXTERNAL) == 0;
        let lacks_toc = self.features & FEATURE_CAP_TAR_TOC == 0;
        match meta_file_stem {
            Some(stem) if inlined || (lacks_toc && self.blob_id.starts_with("xxxxxxxx")) => {
                stem.to_string()
            }
            _ => self.blob_id.clone(),
        }
    }
}

/// Location of a v6 blob's chunk-information table (§4.3).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BlobMetaInfo {
    pub ci_compressor: Compressor,
    pub ci_offset: u64,
    pub ci_compressed_size: u64,
    pub ci_uncompressed_size: u64,
}

/// File type, from the mode bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileKind {
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & 0o170000 {
            0o100000 => FileKind::Regular,
            0o040000 => FileKind::Directory,
            0o120000 => FileKind::Symlink,
            0o020000 => FileKind::CharDevice,
            0o060000 => FileKind::BlockDevice,
            0o010000 => FileKind::Fifo,
            0o140000 => FileKind::Socket,
            _ => return None,
        })
    }

    /// The `d_type` value for readdir (DT_*).
    pub fn dirent_type(self) -> u32 {
        match self {
            FileKind::Fifo => 1,
            FileKind::CharDevice => 2,
            FileKind::Directory => 4,
            FileKind::BlockDevice => 6,
            FileKind::Regular => 8,
            FileKind::Symlink => 10,
            FileKind::Socket => 12,
        }
    }
}

/// Attributes of one inode as the filesystem reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inode {
    /// The reader's inode number: stable, shared by all hardlinks of a file.
    pub ino: u64,
    /// Full st_mode (type + permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    /// Seconds since the epoch (may be negative).
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Device number in the kernel's `new_encode_dev` form (st_rdev).
    pub rdev: u64,
    /// Whether the inode has extended attributes.
    pub has_xattr: bool,
}

impl Inode {
    pub fn kind(&self) -> Option<FileKind> {
        FileKind::from_mode(self.mode)
    }
}

/// One directory entry (never "." or "..").
#[derive(Debug, Clone, Copy)]
pub struct DirEntry<'a> {
    pub name: &'a [u8],
    pub ino: u64,
    pub kind: FileKind,
}

/// A fully resolved chunk descriptor (§1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChunkInfo {
    pub blob_index: u32,
    /// Ordinal of the chunk inside its blob (v6: ci table row).
    pub chunk_index: u32,
    pub compressed_offset: u64,
    pub compressed_size: u32,
    pub uncompressed_offset: u64,
    pub uncompressed_size: u32,
    pub compressed: bool,
    pub encrypted: bool,
    pub batch: bool,
    /// Digest of the uncompressed bytes; `None` where the descriptor has none
    /// (v6 ci rows without a bootstrap chunk table or digest array).
    pub digest: Option<[u8; 32]>,
    pub crc32: Option<u32>,
}

impl ChunkInfo {
    /// Stored as is (not compressed, encrypted or batched): its stored bytes
    /// are its data, so both sizes must agree.
    pub fn stored_raw(&self) -> bool {
        !self.compressed && !self.encrypted && !self.batch
    }
}

/// The reference a file holds for its k-th chunk.
///
/// v5 chunk records are complete (`info` is `Some`). v6 inodes only name
/// (blob, chunk index); the bootstrap chunk table, when present, completes
/// them, otherwise the blob's ci table must be loaded (`file::ChunkReader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChunkRef {
    pub blob_index: u32,
    pub chunk_index: u32,
    /// Offset of the chunk's first byte within the file.
    pub file_offset: u64,
    pub info: Option<ChunkInfo>,
}
