//! RAFS v5 on-disk layout (format doc §2): constants, the superblock and the
//! tables that follow it, each validated when the image is opened.

use super::super::bytes::Bytes;
use super::super::codec::{Compressor, Digester};
use super::super::error::{RafsError, Result};
use super::super::types::BlobInfo;

pub const MAGIC: u32 = 0x5241_4653;
pub const VERSION: u32 = 0x500;
pub const SUPER_SIZE: u64 = 8192;
pub const INODE_HEADER_SIZE: u64 = 128;
pub const CHUNK_RECORD_SIZE: u64 = 80;
pub const EXT_BLOB_ENTRY_SIZE: u64 = 64;
/// Upstream caps a v5 bootstrap at 2 GiB; offsets in the inode table are
/// `offset >> 3` and values from 2^29 on are rejected.
pub const MAX_FILE_SIZE: u64 = 0x8000_0000;
pub const MAX_INODE_TABLE_VALUE: u32 = 1 << 29;

/// Superblock flags upstream accepts (§1.7); anything else is rejected.
pub const KNOWN_FLAGS: u64 = 0x3ff | 0x0100_0000 | 0x0200_0000 | 0xfc00_0000;
pub const FLAG_EXPLICIT_UID_GID: u64 = 0x10;
pub const FLAG_HAS_XATTR: u64 = 0x20;

/// The decoded superblock (§2.2).
#[derive(Debug, Clone)]
pub struct SuperBlock {
    pub chunk_size: u32,
    pub flags: u64,
    pub inodes_count: u64,
    pub inode_table_offset: u64,
    pub prefetch_table_offset: u64,
    pub blob_table_offset: u64,
    pub inode_table_entries: u32,
    pub prefetch_table_entries: u32,
    pub blob_table_size: u32,
    pub ext_blob_table_entries: u32,
    pub ext_blob_table_offset: u64,
}

const S: &str = "v5 superblock";

impl SuperBlock {
    /// Decodes and validates the superblock and the placement of every table.
    pub fn parse(file: &[u8]) -> Result<Self> {
        let b = Bytes::at(file, 0, SUPER_SIZE, S)?;
        let magic = b.u32(0)?;
        if magic != MAGIC {
            return Err(b.err(0, format!("magic {magic:#x}, expected {MAGIC:#x}")));
        }
        let version = b.u32(4)?;
        if version != VERSION {
            return Err(b.err(4, format!("version {version:#x}, expected {VERSION:#x}")));
        }
        let sb_size = b.u32(8)?;
        if u64::from(sb_size) != SUPER_SIZE {
            return Err(b.err(8, format!("sb_size {sb_size}, expected {SUPER_SIZE}")));
        }
        let len = file.len() as u64;
        if len <= SUPER_SIZE || len > MAX_FILE_SIZE {
            return Err(b.err(0, format!("file size {len} out of range (8193..=2 GiB)")));
        }
        let sb = SuperBlock {
            chunk_size: b.u32(12)?,
            flags: b.u64(16)?,
            inodes_count: b.u64(24)?,
            inode_table_offset: b.u64(32)?,
            prefetch_table_offset: b.u64(40)?,
            blob_table_offset: b.u64(48)?,
            inode_table_entries: b.u32(56)?,
            prefetch_table_entries: b.u32(60)?,
            blob_table_size: b.u32(64)?,
            ext_blob_table_entries: b.u32(68)?,
            ext_blob_table_offset: b.u64(72)?,
        };
        let cs = sb.chunk_size;
        if !cs.is_power_of_two() || !(0x1000..=0x100_0000).contains(&cs) {
            return Err(b.err(
                12,
                format!("chunk_size {cs:#x} not a power of two in 4 KiB..16 MiB"),
            ));
        }
        let unknown = sb.flags & !KNOWN_FLAGS;
        if unknown != 0 {
            return Err(b.err(16, format!("unknown flag bits {unknown:#x}")));
        }
        if sb.inode_table_entries == 0 {
            return Err(b.err(56, "inode table has no entries (no root)"));
        }
        if sb.inodes_count > u64::from(sb.inode_table_entries) {
            return Err(b.err(
                24,
                format!(
                    "inodes_count {} exceeds inode_table_entries {}",
                    sb.inodes_count, sb.inode_table_entries
                ),
            ));
        }
        sb.check_tables(len)?;
        Ok(sb)
    }

    /// Byte ranges of the tables, with the superblock field offset each
    /// came from (for error messages). Empty optional tables are omitted.
    fn table_ranges(&self) -> Vec<(&'static str, usize, u64, u64)> {
        let mut out = vec![
            (
                "inode table",
                32,
                self.inode_table_offset,
                u64::from(self.inode_table_entries) * 4,
            ),
            (
                "blob table",
                48,
                self.blob_table_offset,
                u64::from(self.blob_table_size),
            ),
        ];
        if self.prefetch_table_entries > 0 {
            let size = u64::from(self.prefetch_table_entries) * 4;
            out.push(("prefetch table", 40, self.prefetch_table_offset, size));
        }
        if self.ext_blob_table_entries > 0 {
            let size = u64::from(self.ext_blob_table_entries) * EXT_BLOB_ENTRY_SIZE;
            out.push(("extended blob table", 72, self.ext_blob_table_offset, size));
        }
        out
    }

    fn check_tables(&self, len: u64) -> Result<()> {
        let ranges = self.table_ranges();
        for &(name, field, off, size) in &ranges {
            let bad = |why: String| RafsError::corrupt(S, field as u64, format!("{name}: {why}"));
            if off % 8 != 0 {
                return Err(bad(format!("offset {off:#x} not 8-byte aligned")));
            }
            if off < SUPER_SIZE {
                return Err(bad(format!("offset {off:#x} inside the superblock")));
            }
            match off.checked_add(size) {
                Some(end) if end <= len => {}
                _ => {
                    return Err(bad(format!(
                        "{size} bytes at {off:#x} run past the file end {len:#x}"
                    )))
                }
            }
        }
        for (i, &(a, field, a_off, a_size)) in ranges.iter().enumerate() {
            for &(b, _, b_off, b_size) in &ranges[i + 1..] {
                // Both ranges are in bounds (checked above), so no overflow.
                if a_size > 0 && b_size > 0 && a_off < b_off + b_size && b_off < a_off + a_size {
                    return Err(RafsError::corrupt(
                        S,
                        field as u64,
                        format!("{a} overlaps {b}"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn compressor(&self) -> Compressor {
        Compressor::from_flags(self.flags)
    }

    pub fn digester(&self) -> Digester {
        Digester::from_flags(self.flags)
    }
}

/// The inode table: slot `i` (1-based) holds the record offset `>> 3`.
/// Every value is validated on open, so `record_offset` cannot fail later.
pub fn check_inode_table(file: &[u8], sb: &SuperBlock) -> Result<()> {
    let n = u64::from(sb.inode_table_entries);
    let t = Bytes::at(file, sb.inode_table_offset, n * 4, "v5 inode table")?;
    let len = file.len() as u64;
    for i in 0..sb.inode_table_entries as usize {
        let v = t.u32(i * 4)?;
        let off = u64::from(v) << 3;
        if v == 0 || v >= MAX_INODE_TABLE_VALUE || off < SUPER_SIZE || off + INODE_HEADER_SIZE > len
        {
            return Err(t.err(
                i * 4,
                format!("slot {} points at {off:#x}, outside the inode area", i + 1),
            ));
        }
    }
    Ok(())
}

/// The prefetch table (§2.4): inode numbers up to the first 0.
pub fn parse_prefetch_table(file: &[u8], sb: &SuperBlock) -> Result<Vec<u64>> {
    let n = sb.prefetch_table_entries as usize;
    let t = Bytes::at(
        file,
        sb.prefetch_table_offset,
        n as u64 * 4,
        "v5 prefetch table",
    )?;
    let mut out = Vec::new();
    for i in 0..n {
        let ino = t.u32(i * 4)?;
        if ino == 0 {
            break;
        }
        if ino > sb.inode_table_entries {
            return Err(t.err(i * 4, format!("inode {ino} is not in the inode table")));
        }
        out.push(u64::from(ino));
    }
    Ok(out)
}

/// One blob table entry with its blob-level readahead range (§2.5).
#[derive(Debug, Clone)]
pub struct BlobEntry {
    pub offset: u64,
    pub readahead_offset: u32,
    pub readahead_size: u32,
    pub id: String,
}

/// Parses the NUL-separated blob table exactly like upstream (§2.5).
pub fn parse_blob_table(file: &[u8], sb: &SuperBlock) -> Result<Vec<BlobEntry>> {
    let size = u64::from(sb.blob_table_size);
    let t = Bytes::at(file, sb.blob_table_offset, size, "v5 blob table")?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while t.data.len().saturating_sub(pos) > 8 {
        let readahead_offset = t.u32(pos)?;
        let readahead_size = t.u32(pos + 4)?;
        let rest = t.data.get(pos + 8..).unwrap_or_default();
        let id_len = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        let id = blob_id(&t, pos + 8, &rest[..id_len])?;
        out.push(BlobEntry {
            offset: t.base + pos as u64,
            readahead_offset,
            readahead_size,
            id,
        });
        // Skip the id and its NUL separator (absent after the last id).
        pos = pos + 8 + id_len + 1;
    }
    Ok(out)
}

/// A blob id names a file in a blob directory, so it must be a plain name.
fn blob_id(t: &Bytes<'_>, off: usize, raw: &[u8]) -> Result<String> {
    let id = std::str::from_utf8(raw).map_err(|_| t.err(off, "blob id is not UTF-8"))?;
    if id.is_empty() || id == "." || id == ".." || id.contains('/') {
        return Err(t.err(off, format!("blob id {id:?} is not a plain file name")));
    }
    Ok(id.to_string())
}

/// Joins the blob table with the extended blob table (§2.6) into `BlobInfo`s.
pub fn blob_infos(file: &[u8], sb: &SuperBlock, entries: &[BlobEntry]) -> Result<Vec<BlobInfo>> {
    let n_ext = sb.ext_blob_table_entries as usize;
    if n_ext > 0 && n_ext < entries.len() {
        return Err(RafsError::corrupt(
            S,
            68,
            format!("{n_ext} extended blob entries for {} blobs", entries.len()),
        ));
    }
    let ext = if n_ext > 0 {
        let size = n_ext as u64 * EXT_BLOB_ENTRY_SIZE;
        Some(Bytes::at(
            file,
            sb.ext_blob_table_offset,
            size,
            "v5 extended blob table",
        )?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let (chunk_count, features, uncompressed_size, compressed_size) = if let Some(ext) = ext {
            let o = i * EXT_BLOB_ENTRY_SIZE as usize;
            (
                ext.u32(o)?,
                ext.u32(o + 4)?,
                ext.u64(o + 8)?,
                ext.u64(o + 16)?,
            )
        } else {
            (0, 0, 0, 0)
        };
        out.push(BlobInfo {
            index: i as u32,
            blob_id: e.id.clone(),
            chunk_count,
            compressed_size,
            uncompressed_size,
            compressor: sb.compressor(),
            digester: sb.digester(),
            chunk_size: sb.chunk_size,
            features,
            meta: None,
        });
    }
    Ok(out)
}
