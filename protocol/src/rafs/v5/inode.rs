//! One v5 inode record (format doc §2.7-§2.11): header, name, symlink
//! target, xattr block and chunk records, validated as it is decoded.

use super::super::bytes::Bytes;
use super::super::error::{RafsError, Result};
use super::super::types::{BlobInfo, ChunkInfo, ChunkRef, FileKind, Inode};
use super::super::walk::name_problem;
use super::layout::{CHUNK_RECORD_SIZE, INODE_HEADER_SIZE};

pub const FLAG_XATTR: u64 = 0x4;
pub const FLAG_HAS_HOLE: u64 = 0x8;

const CHUNK_COMPRESSED: u32 = 0x01;
const CHUNK_ENCRYPTED: u32 = 0x04;
const CHUNK_BATCH: u32 = 0x08;
const CHUNK_HAS_CRC32: u32 = 0x10;

const H: &str = "v5 inode";
const X: &str = "v5 xattr block";
const C: &str = "v5 chunk record";

/// What a record is checked against: facts from the superblock.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub inode_table_entries: u32,
    pub chunk_size: u32,
}

/// A decoded inode record; byte fields borrow from the bootstrap.
#[derive(Clone)]
pub struct Record<'a> {
    pub offset: u64,
    pub digest: [u8; 32],
    pub parent: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub size: u64,
    pub blocks: u64,
    pub flags: u64,
    pub nlink: u32,
    pub child_index: u32,
    pub child_count: u32,
    pub rdev: u32,
    pub mtime_nsec: u32,
    pub mtime: u64,
    pub kind: FileKind,
    pub name: &'a [u8],
    pub symlink: &'a [u8],
    /// The xattr pairs (`total` bytes), when the XATTR flag is set.
    pub xattrs: Option<Bytes<'a>>,
    /// Absolute offset of the first chunk record.
    pub chunks_offset: u64,
}

fn pad8(n: u64) -> u64 {
    // n is at most a u32 or a bounds-checked u64, so no overflow.
    n.div_ceil(8) * 8
}

impl<'a> Record<'a> {
    /// Decodes the record at `offset`. `is_root` exempts the name from the
    /// entry-name rules (the root is named "/").
    pub fn parse(file: &'a [u8], offset: u64, is_root: bool, lim: Limits) -> Result<Self> {
        let h = Bytes::at(file, offset, INODE_HEADER_SIZE, H)?;
        let mode = h.u32(60)?;
        let kind = FileKind::from_mode(mode)
            .ok_or_else(|| h.err(60, format!("mode {mode:#o} has no valid file type")))?;
        let ino = h.u64(40)?;
        if ino == 0 || ino > u64::from(lim.inode_table_entries) {
            return Err(h.err(
                40,
                format!("ino {ino} outside 1..={}", lim.inode_table_entries),
            ));
        }
        let name_size = u64::from(h.u16(100)?);
        let symlink_size = u64::from(h.u16(102)?);
        let mtime_nsec = h.u32(108)?;
        if mtime_nsec >= 1_000_000_000 {
            return Err(h.err(108, format!("mtime_nsec {mtime_nsec} is not below 10^9")));
        }
        let name_at = offset + INODE_HEADER_SIZE;
        let name = Bytes::at(file, name_at, name_size, "v5 inode name")?.data;
        if !is_root {
            if let Some(why) = name_problem(name) {
                return Err(RafsError::corrupt("v5 inode name", name_at, why));
            }
        }
        let link_at = name_at + pad8(name_size);
        let symlink = Bytes::at(file, link_at, symlink_size, "v5 symlink target")?.data;
        if kind == FileKind::Symlink && symlink.is_empty() {
            return Err(h.err(102, "symlink with an empty target"));
        }
        let flags = h.u64(80)?;
        let mut pos = link_at + pad8(symlink_size);
        let mut xattrs = None;
        if flags & FLAG_XATTR != 0 {
            let total = Bytes::at(file, pos, 8, X)?.u64(0)?;
            let pairs = Bytes::at(file, pos + 8, total, X)?;
            check_xattr_pairs(&pairs)?;
            // In bounds (checked above), so pad8 cannot overflow.
            pos = pos + 8 + pad8(total);
            xattrs = Some(pairs);
        }
        let child_index = h.u32(92)?;
        let child_count = h.u32(96)?;
        let size = h.u64(64)?;
        match kind {
            FileKind::Regular => {
                if flags & FLAG_HAS_HOLE == 0 {
                    let want = size.div_ceil(u64::from(lim.chunk_size));
                    if want != u64::from(child_count) {
                        return Err(h.err(96, format!(
                            "{child_count} chunk records for a file of {size} bytes (expected {want})"
                        )));
                    }
                }
                let len = u64::from(child_count) * CHUNK_RECORD_SIZE;
                // The chunk records must lie inside the file.
                Bytes::at(file, pos, len, C)?;
            }
            FileKind::Directory if child_count > 0 => {
                let last = u64::from(child_index) + u64::from(child_count) - 1;
                if child_index == 0 || last > u64::from(lim.inode_table_entries) {
                    return Err(h.err(
                        92,
                        format!(
                            "children {child_index}..={last} outside the inode table (1..={})",
                            lim.inode_table_entries
                        ),
                    ));
                }
            }
            _ => {}
        }
        Ok(Record {
            offset,
            digest: h.array(0)?,
            parent: h.u64(32)?,
            ino,
            uid: h.u32(48)?,
            gid: h.u32(52)?,
            mode,
            size,
            blocks: h.u64(72)?,
            flags,
            nlink: h.u32(88)?,
            child_index,
            child_count,
            rdev: h.u32(104)?,
            mtime_nsec,
            mtime: h.u64(112)?,
            kind,
            name,
            symlink,
            xattrs,
            chunks_offset: pos,
        })
    }

    pub fn to_inode(&self) -> Inode {
        Inode {
            ino: self.ino,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            nlink: self.nlink,
            size: self.size,
            // Stored as the two's-complement image of a signed value (§2.7).
            mtime: self.mtime as i64,
            mtime_nsec: self.mtime_nsec,
            rdev: u64::from(self.rdev),
            has_xattr: self.xattrs.is_some_and(|x| !x.data.is_empty()),
        }
    }

    /// All (name, value) pairs, in on-disk order.
    pub fn xattr_pairs(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        if let Some(pairs) = &self.xattrs {
            for_each_pair(pairs, |name, value| {
                out.push((name.to_vec(), value.to_vec()))
            })?;
        }
        Ok(out)
    }

    /// Decodes and validates the chunk records of a regular file.
    pub fn chunks(&self, file: &[u8], blobs: &[BlobInfo], lim: Limits) -> Result<Vec<ChunkRef>> {
        if self.kind != FileKind::Regular {
            return Ok(Vec::new());
        }
        let n = self.child_count as usize;
        let t = Bytes::at(file, self.chunks_offset, n as u64 * CHUNK_RECORD_SIZE, C)?;
        let hole = self.flags & FLAG_HAS_HOLE != 0;
        let cs = u64::from(lim.chunk_size);
        let mut out = Vec::with_capacity(n);
        let mut covered = 0u64;
        for k in 0..n {
            let o = k * CHUNK_RECORD_SIZE as usize;
            let r = decode_chunk(&t, o, blobs, lim)?;
            let file_offset = t.u64(o + 64)?;
            let len = u64::from(r.uncompressed_size);
            if hole {
                // Records must be in file order, disjoint and inside the file.
                let end = file_offset.checked_add(len).filter(|&e| e <= self.size);
                if file_offset < covered || end.is_none() {
                    return Err(t.err(
                        o + 64,
                        format!(
                        "hole-file chunk at {file_offset:#x}+{len:#x} overlaps or exceeds size {}",
                        self.size
                    ),
                    ));
                }
                covered = end.unwrap_or(covered);
            } else {
                let want_off = k as u64 * cs;
                let want_len = self.size.saturating_sub(want_off).min(cs);
                if file_offset != want_off || len != want_len {
                    return Err(t.err(o + 44, format!(
                        "chunk {k} covers {file_offset:#x}+{len:#x}, expected {want_off:#x}+{want_len:#x}"
                    )));
                }
            }
            out.push(ChunkRef {
                blob_index: r.blob_index,
                chunk_index: r.chunk_index,
                file_offset,
                info: Some(r),
            });
        }
        Ok(out)
    }
}

/// Decodes one 80-byte chunk record at relative offset `o` of `t` (§2.11).
pub fn decode_chunk(t: &Bytes<'_>, o: usize, blobs: &[BlobInfo], lim: Limits) -> Result<ChunkInfo> {
    let blob_index = t.u32(o + 32)?;
    let blob = blobs.get(blob_index as usize).ok_or_else(|| {
        t.err(
            o + 32,
            format!("blob index {blob_index} but {} blobs", blobs.len()),
        )
    })?;
    let flags = t.u32(o + 36)?;
    if flags & (CHUNK_ENCRYPTED | CHUNK_BATCH) != 0 {
        return Err(t.err(
            o + 36,
            format!("chunk flags {flags:#x}: encrypted/batch chunks are v6 only"),
        ));
    }
    let compressed = flags & CHUNK_COMPRESSED != 0;
    let compressed_size = t.u32(o + 40)?;
    let uncompressed_size = t.u32(o + 44)?;
    if uncompressed_size == 0 || uncompressed_size > lim.chunk_size {
        return Err(t.err(
            o + 44,
            format!("uncompressed size {uncompressed_size} outside 1..=chunk size"),
        ));
    }
    // Chunks are stored compressed only when that makes them strictly
    // smaller (§5.2), which also bounds what a reader has to allocate.
    let bad = if compressed {
        compressed_size == 0 || compressed_size >= uncompressed_size
    } else {
        compressed_size != uncompressed_size
    };
    if bad {
        return Err(t.err(
            o + 40,
            format!(
            "compressed size {compressed_size} invalid for uncompressed size {uncompressed_size}"
        ),
        ));
    }
    let compressed_offset = t.u64(o + 48)?;
    let end = compressed_offset.checked_add(u64::from(compressed_size));
    if end.is_none() || (blob.compressed_size > 0 && end > Some(blob.compressed_size)) {
        return Err(t.err(
            o + 48,
            format!(
                "stored bytes {compressed_offset:#x}+{compressed_size:#x} past blob size {}",
                blob.compressed_size
            ),
        ));
    }
    let uncompressed_offset = t.u64(o + 56)?;
    if uncompressed_offset
        .checked_add(u64::from(uncompressed_size))
        .is_none()
    {
        return Err(t.err(o + 56, "uncompressed offset + size overflows"));
    }
    let chunk_index = t.u32(o + 72)?;
    if blob.chunk_count > 0 && chunk_index >= blob.chunk_count {
        return Err(t.err(
            o + 72,
            format!(
                "chunk index {chunk_index} but blob {blob_index} has {} chunks",
                blob.chunk_count
            ),
        ));
    }
    Ok(ChunkInfo {
        blob_index,
        chunk_index,
        compressed_offset,
        compressed_size,
        uncompressed_offset,
        uncompressed_size,
        compressed,
        encrypted: false,
        batch: false,
        digest: Some(t.array(o)?),
        crc32: (flags & CHUNK_HAS_CRC32 != 0).then_some(t.u32(o + 76)?),
    })
}

/// Calls `f(name, value)` for each xattr pair (§2.10).
fn for_each_pair<'a>(pairs: &Bytes<'a>, mut f: impl FnMut(&'a [u8], &'a [u8])) -> Result<()> {
    let mut pos = 0usize;
    while pos < pairs.data.len() {
        let len = pairs.u32(pos)? as usize;
        let body = pairs.slice(pos + 4, len)?;
        let nul = body.iter().position(|&c| c == 0);
        match nul {
            Some(n) if n > 0 => f(&body[..n], &body[n + 1..]),
            _ => return Err(pairs.err(pos, "xattr pair without a name or its NUL")),
        }
        pos = pos + 4 + len;
    }
    Ok(())
}

fn check_xattr_pairs(pairs: &Bytes<'_>) -> Result<()> {
    for_each_pair(pairs, |_, _| {})
}
