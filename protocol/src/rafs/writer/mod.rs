//! RAFS writers: turn a prepared in-memory tree into a v5 or v6 bootstrap
//! laid out the way `nydus-image create` lays it out (format doc §2.1, §3.1),
//! and chunk data into a data blob (`blob::BlobWriter`).
//!
//! Nothing here walks a filesystem: callers (nydusctl's builder) describe
//! the tree with `Node`s and the stored chunks with `ChunkDesc`/`BlobDesc`.
//! Output is a pure function of the input, so equal inputs give equal bytes.

pub mod blob;
mod flat;
mod v5;
mod v6;
mod v6_meta;
mod v6_place;

#[cfg(test)]
mod tests;

use super::codec::{Compressor, Digester};
use super::error::{RafsError, Result};
use super::types::FsVersion;

pub use blob::{BlobWriter, PreparedChunk};

/// Superblock flag bits the writers set (§1.7).
pub const FLAG_EXPLICIT_UID_GID: u64 = 0x10;
pub const FLAG_HAS_XATTR: u64 = 0x20;
pub const FLAG_ENCRYPTION_NONE: u64 = 0x0100_0000;

/// Blob feature bits the writers set (§4.8).
pub const BLOB_FEATURE_ALIGNED: u32 = 0x0000_0001;
pub const BLOB_FEATURE_CAP_TAR_TOC: u32 = 0x4000_0000;

/// Chunk flag bits (§2.11).
pub const CHUNK_FLAG_COMPRESSED: u32 = 0x01;
pub const CHUNK_FLAG_HAS_CRC32: u32 = 0x10;

/// One extended attribute: full name (`user.x`, ...) and value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// One entry of the tree. Children of a directory may come in any order:
/// the writers sort them by name bytes, as the format requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Last path component (raw bytes); ignored for the root.
    pub name: Vec<u8>,
    /// Full `st_mode`; the type bits must agree with `kind`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch (negative before 1970).
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Full extended attribute names (`user.x`, ...) and values.
    pub xattrs: Vec<Xattr>,
    pub kind: NodeKind,
}

/// What a node is, with the data each type carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Dir(Vec<Node>),
    File(FileData),
    Symlink(Vec<u8>),
    /// Char/block device: `rdev` as `stat` returns it (glibc `dev_t`).
    Device(u64),
    Fifo,
    Socket,
}

/// A regular file's size, chunks and hardlink identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    pub size: u64,
    /// Indexes into `ImageSpec::chunks`, chunk `k` of the file first.
    pub chunks: Vec<u32>,
    /// Names with the same `Some(key)` are one inode (a hardlink group).
    pub hardlink: Option<u64>,
}

/// One stored chunk (a row of a blob), as `BlobWriter` produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkDesc {
    pub blob_index: u32,
    /// Ordinal inside the blob (v6: ci table row).
    pub index: u32,
    pub digest: [u8; 32],
    pub crc32: u32,
    pub compressed: bool,
    pub compressed_offset: u64,
    pub compressed_size: u32,
    pub uncompressed_offset: u64,
    pub uncompressed_size: u32,
}

/// Where a v6 blob's chunk-information table sits (§4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiDesc {
    pub compressor: Compressor,
    pub offset: u64,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
}

/// One data blob the image refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDesc {
    pub id: String,
    pub chunk_count: u32,
    /// Size of the blob file.
    pub compressed_size: u64,
    /// Size of the blob's uncompressed image.
    pub uncompressed_size: u64,
    pub compressor: Compressor,
    pub digester: Digester,
    pub features: u32,
    /// v6 blobs: the ci table; v5 blobs have none.
    pub ci: Option<CiDesc>,
}

/// Everything a bootstrap holds.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub version: FsVersion,
    pub chunk_size: u32,
    pub compressor: Compressor,
    pub digester: Digester,
    /// EXPLICIT_UID_GID: store uid/gid (clear = `--repeatable`, all 0).
    pub explicit_uid_gid: bool,
    pub root: Node,
    pub chunks: Vec<ChunkDesc>,
    pub blobs: Vec<BlobDesc>,
    /// Paths to prefetch, absolute (`/usr/bin`), in table order.
    pub prefetch: Vec<Vec<u8>>,
}

/// Serialises `spec` as a bootstrap of `spec.version`.
pub fn write_bootstrap(spec: &ImageSpec) -> Result<Vec<u8>> {
    check_spec(spec)?;
    let flat = flat::Flat::new(spec)?;
    match spec.version {
        FsVersion::V5 => v5::write(spec, &flat),
        FsVersion::V6 => v6::write(spec, &flat),
    }
}

/// The RAFS superblock flags both versions share.
fn superblock_flags(spec: &ImageSpec, has_xattr: bool) -> u64 {
    let mut flags = spec.compressor.flag() | spec.digester.flag();
    if spec.explicit_uid_gid {
        flags |= FLAG_EXPLICIT_UID_GID;
    }
    if has_xattr {
        flags |= FLAG_HAS_XATTR;
    }
    flags
}

fn check_spec(spec: &ImageSpec) -> Result<()> {
    let cs = spec.chunk_size;
    if !cs.is_power_of_two() || !(0x1000..=0x100_0000).contains(&cs) {
        return Err(invalid(format!(
            "chunk size {cs:#x} must be a power of two between 0x1000 and 0x1000000"
        )));
    }
    if spec.compressor == Compressor::Gzip {
        return Err(invalid(
            "gzip chunks are only for reference conversions; use none, lz4_block or zstd",
        ));
    }
    let max_blobs = match spec.version {
        FsVersion::V5 => 256,
        FsVersion::V6 => 254,
    };
    if spec.blobs.len() > max_blobs {
        return Err(invalid(format!(
            "{} blobs, at most {max_blobs} allowed",
            spec.blobs.len()
        )));
    }
    for (i, b) in spec.blobs.iter().enumerate() {
        if b.id.is_empty() || b.id.len() > 64 || b.id.contains('\0') {
            return Err(invalid(format!(
                "blob {i} id {:?} must be 1..=64 bytes without NUL",
                b.id
            )));
        }
    }
    for (i, c) in spec.chunks.iter().enumerate() {
        let blob = spec.blobs.get(c.blob_index as usize).ok_or_else(|| {
            invalid(format!(
                "chunk {i} refers to blob {} which is not in the blob table",
                c.blob_index
            ))
        })?;
        if c.index >= blob.chunk_count || c.uncompressed_size == 0 || c.uncompressed_size > cs {
            return Err(invalid(format!(
                "chunk {i} has index {} / size {} out of range",
                c.index, c.uncompressed_size
            )));
        }
        if spec.version == FsVersion::V6 && c.uncompressed_offset % 4096 != 0 {
            return Err(invalid(format!(
                "chunk {i}: v6 uncompressed offsets must be 4 KiB aligned"
            )));
        }
    }
    Ok(())
}

/// The error for a spec the writer cannot serialise.
pub(crate) fn invalid(reason: impl std::fmt::Display) -> RafsError {
    RafsError::Unsupported(format!("cannot write this image: {reason}"))
}

/// `st_rdev` (glibc encoding) to the 32-bit `new_encode_dev` form RAFS stores.
pub(crate) fn encode_rdev(rdev: u64) -> Result<u32> {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    if major > 0xfff || minor > 0xf_ffff {
        return Err(invalid(format!(
            "device number {major}:{minor} does not fit the 32-bit on-disk form (major < 4096, minor < 2^20)"
        )));
    }
    Ok(((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)) as u32)
}

pub(crate) fn round_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// One 80-byte chunk record (§2.11): v5 inodes and the v6 chunk table.
pub(crate) fn put_chunk_record(out: &mut Vec<u8>, chunk: &ChunkDesc, file_offset: u64) {
    use super::bytes::PutLe;
    let mut flags = CHUNK_FLAG_HAS_CRC32;
    if chunk.compressed {
        flags |= CHUNK_FLAG_COMPRESSED;
    }
    out.extend_from_slice(&chunk.digest);
    out.put_u32(chunk.blob_index);
    out.put_u32(flags);
    out.put_u32(chunk.compressed_size);
    out.put_u32(chunk.uncompressed_size);
    out.put_u64(chunk.compressed_offset);
    out.put_u64(chunk.uncompressed_offset);
    out.put_u64(file_offset);
    out.put_u32(chunk.index);
    out.put_u32(chunk.crc32);
}
