//! v6 fixed structures: EROFS superblock, RAFS extended superblock, device
//! slots and blob table entries (§3.2–§3.5), decoded and validated.

use crate::rafs::bytes::Bytes;
use crate::rafs::codec::{Compressor, Digester};
use crate::rafs::error::{RafsError, Result};

pub const EROFS_SB_OFFSET: u64 = 1024;
pub const EROFS_SB_SIZE: u64 = 128;
pub const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
pub const EXT_SB_OFFSET: u64 = 1152;
pub const EXT_SB_SIZE: u64 = 256;
pub const DEVT_OFFSET: u64 = 1408;
pub const DEVT_SLOT_SIZE: u64 = 128;
pub const DEVT_SLOTOFF: u16 = 11;
pub const BLOB_ENTRY_SIZE: u64 = 256;
pub const CHUNK_RECORD_SIZE: u64 = 80;
pub const FEATURE_COMPAT_RAFS: u32 = 0x4000_0000;
/// CHUNKED_FILE | DEVICE_TABLE.
pub const FEATURE_INCOMPAT: u32 = 0x0000_000C;
pub const MIN_FILE_SIZE: u64 = 4096;

/// RAFS superblock flag bits every reader knows (§1.7).
const KNOWN_FLAGS: u64 = 0x3FF | 0xFF00_0000;
const COMPRESSION_FLAGS: u64 = 0x1 | 0x2 | 0x40 | 0x80;
const HASH_FLAGS: u64 = 0x4 | 0x8;
pub const FLAG_TARFS_MODE: u64 = 0x200;
pub const FLAG_ENCRYPTION_AES_128_XTS: u64 = 0x0200_0000;

/// The EROFS superblock fields RAFS uses.
#[derive(Debug, Clone)]
pub struct ErofsSuper {
    pub blkszbits: u8,
    pub root_nid: u16,
    pub inos: u64,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    pub xattr_blkaddr: u32,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub extra_devices: u16,
}

impl ErofsSuper {
    pub fn parse(file: &[u8]) -> Result<Self> {
        let len = file.len() as u64;
        if len < MIN_FILE_SIZE {
            return Err(RafsError::corrupt(
                "v6 bootstrap",
                0,
                format!("file of {len} bytes is shorter than {MIN_FILE_SIZE}"),
            ));
        }
        let b = Bytes::at(file, EROFS_SB_OFFSET, EROFS_SB_SIZE, "EROFS superblock")?;
        let magic = b.u32(0)?;
        if magic != EROFS_MAGIC {
            return Err(b.err(0, format!("magic {magic:#x}, expected {EROFS_MAGIC:#x}")));
        }
        let sb = ErofsSuper {
            blkszbits: b.u8(12)?,
            root_nid: b.u16(14)?,
            inos: b.u64(16)?,
            blocks: b.u32(36)?,
            meta_blkaddr: b.u32(40)?,
            xattr_blkaddr: b.u32(44)?,
            feature_compat: b.u32(8)?,
            feature_incompat: b.u32(80)?,
            extra_devices: b.u16(86)?,
        };
        let checks: [(usize, bool, String); 8] = [
            (
                4,
                b.u32(4)? == 0,
                "checksum is set (the EROFS CRC feature is not used by RAFS)".into(),
            ),
            (
                8,
                sb.feature_compat & FEATURE_COMPAT_RAFS != 0,
                format!(
                    "feature_compat {:#x} lacks the RAFS v6 bit",
                    sb.feature_compat
                ),
            ),
            (
                12,
                sb.blkszbits == 12 || sb.blkszbits == 9,
                format!("blkszbits {} (expected 12)", sb.blkszbits),
            ),
            (13, b.u8(13)? == 0, "extslots must be 0".into()),
            (16, sb.inos != 0, "inode count is 0".into()),
            (
                80,
                sb.feature_incompat & !FEATURE_INCOMPAT == 0,
                format!(
                    "unknown feature_incompat bits {:#x}",
                    sb.feature_incompat & !FEATURE_INCOMPAT
                ),
            ),
            (84, b.u16(84)? == 0, "union field at 84 must be 0".into()),
            (
                88,
                b.u16(88)? == DEVT_SLOTOFF,
                format!("devt_slotoff {} (expected {DEVT_SLOTOFF})", b.u16(88)?),
            ),
        ];
        if let Some((off, _, why)) = checks.into_iter().find(|c| !c.1) {
            return Err(b.err(off, why));
        }
        if sb.blkszbits == 9 {
            return Err(RafsError::Unsupported(
                "tarfs images (512-byte blocks)".into(),
            ));
        }
        if u64::from(sb.meta_blkaddr) * sb.block_size() > len {
            return Err(b.err(
                40,
                format!(
                    "meta_blkaddr {} is past the end of the {len}-byte file",
                    sb.meta_blkaddr
                ),
            ));
        }
        Ok(sb)
    }

    pub fn block_size(&self) -> u64 {
        1u64 << self.blkszbits
    }
}

/// The RAFS extended superblock.
#[derive(Debug, Clone)]
pub struct ExtSuper {
    pub flags: u64,
    pub blob_table_offset: u64,
    pub blob_table_size: u32,
    pub chunk_size: u32,
    pub chunk_table_offset: u64,
    pub chunk_table_size: u64,
    pub prefetch_table_offset: u64,
    pub prefetch_table_size: u32,
}

impl ExtSuper {
    /// Decodes and validates; `strict` refuses the optional variants this
    /// implementation does not serve.
    pub fn parse(file: &[u8], sb: &ErofsSuper, strict: bool) -> Result<Self> {
        let b = Bytes::at(
            file,
            EXT_SB_OFFSET,
            EXT_SB_SIZE,
            "RAFS v6 extended superblock",
        )?;
        let mut ext = ExtSuper {
            flags: b.u64(0)?,
            blob_table_offset: b.u64(8)?,
            blob_table_size: b.u32(16)?,
            chunk_size: b.u32(20)?,
            chunk_table_offset: b.u64(24)?,
            chunk_table_size: b.u64(32)?,
            prefetch_table_offset: b.u64(40)?,
            prefetch_table_size: b.u32(48)?,
        };
        let flags = ext.flags;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(b.err(0, format!("unknown flags {:#x}", flags & !KNOWN_FLAGS)));
        }
        if (flags & COMPRESSION_FLAGS).count_ones() != 1 || (flags & HASH_FLAGS).count_ones() != 1 {
            return Err(b.err(
                0,
                format!("flags {flags:#x} must name exactly one compressor and one digester"),
            ));
        }
        if strict && flags & FLAG_TARFS_MODE != 0 {
            return Err(RafsError::Unsupported("tarfs images".into()));
        }
        if strict && flags & FLAG_ENCRYPTION_AES_128_XTS != 0 {
            return Err(RafsError::Unsupported(
                "encrypted images (AES-128-XTS)".into(),
            ));
        }
        if !ext.chunk_size.is_power_of_two() || !(0x1000..=0x100_0000).contains(&ext.chunk_size) {
            return Err(b.err(
                20,
                format!(
                    "chunk size {:#x} is not a power of two in 4 KiB..16 MiB",
                    ext.chunk_size
                ),
            ));
        }
        // Legacy images may give a prefetch size with no offset: no table.
        if ext.prefetch_table_offset == 0 {
            ext.prefetch_table_size = 0;
        }
        let len = file.len() as u64;
        let dev_end = DEVT_OFFSET + u64::from(sb.extra_devices) * DEVT_SLOT_SIZE;
        let tables = [
            (
                "blob table",
                8usize,
                ext.blob_table_offset,
                u64::from(ext.blob_table_size),
                BLOB_ENTRY_SIZE,
            ),
            (
                "chunk table",
                24,
                ext.chunk_table_offset,
                ext.chunk_table_size,
                CHUNK_RECORD_SIZE,
            ),
            (
                "prefetch table",
                40,
                ext.prefetch_table_offset,
                u64::from(ext.prefetch_table_size),
                4,
            ),
        ];
        let mut ranges = Vec::new();
        for (name, off, start, size, unit) in tables {
            if size == 0 {
                continue;
            }
            let end = start.checked_add(size).filter(|&e| e <= len);
            let Some(end) = end else {
                return Err(b.err(
                    off,
                    format!("{name} at {start:#x} + {size:#x} is outside the {len}-byte file"),
                ));
            };
            if size % unit != 0 {
                return Err(b.err(
                    off + 8,
                    format!("{name} size {size} is not a multiple of {unit}"),
                ));
            }
            if start < dev_end || (name != "prefetch table" && start % 4096 != 0) {
                return Err(b.err(
                    off,
                    format!(
                        "{name} offset {start:#x} is misplaced (device table ends at {dev_end:#x})"
                    ),
                ));
            }
            if let Some((other, ..)) = ranges.iter().find(|(_, s, e)| start < *e && *s < end) {
                return Err(b.err(off, format!("{name} overlaps the {other}")));
            }
            ranges.push((name, start, end));
        }
        Ok(ext)
    }

    pub fn compressor(&self) -> Compressor {
        Compressor::from_flags(self.flags)
    }

    pub fn digester(&self) -> Digester {
        Digester::from_flags(self.flags)
    }

    pub fn blob_count(&self) -> u64 {
        u64::from(self.blob_table_size) / BLOB_ENTRY_SIZE
    }
}

/// One device slot.
#[derive(Debug, Clone)]
pub struct DeviceSlot {
    pub offset: u64,
    pub tag: String,
    pub blocks: u32,
    pub mapped_blkaddr: u32,
}

/// The device table, checked: no empty slot, no duplicate tag.
pub fn parse_devices(file: &[u8], sb: &ErofsSuper) -> Result<Vec<DeviceSlot>> {
    let mut out: Vec<DeviceSlot> = Vec::with_capacity(usize::from(sb.extra_devices));
    for i in 0..u64::from(sb.extra_devices) {
        let offset = DEVT_OFFSET + i * DEVT_SLOT_SIZE;
        let b = Bytes::at(file, offset, DEVT_SLOT_SIZE, "v6 device slot")?;
        let tag = nul_trimmed_utf8(&b, 0, 64)?;
        let blocks = b.u32(64)?;
        if blocks == 0 {
            return Err(b.err(64, format!("device {tag:?} has 0 blocks")));
        }
        if out.iter().any(|d| d.tag == tag) {
            return Err(b.err(0, format!("duplicate device tag {tag:?}")));
        }
        out.push(DeviceSlot {
            offset,
            tag,
            blocks,
            mapped_blkaddr: b.u32(68)?,
        });
    }
    Ok(out)
}

/// A 64-byte NUL-padded id field as text.
pub(super) fn nul_trimmed_utf8(b: &Bytes<'_>, off: usize, len: usize) -> Result<String> {
    let raw = b.slice(off, len)?;
    let end = raw.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
    std::str::from_utf8(&raw[..end])
        .map(str::to_string)
        .map_err(|_| b.err(off, "blob id is not UTF-8"))
}
