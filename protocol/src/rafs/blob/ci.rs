//! The chunk-information ("ci") table of a v6 data blob and its 4 KiB
//! header (§4.3–§4.6).

use super::features::*;
use super::refused_feature;
use crate::rafs::bytes::Bytes;
use crate::rafs::codec;
use crate::rafs::error::{RafsError, Result};
use crate::rafs::file::BlobSource;
use crate::rafs::types::{BlobInfo, ChunkInfo};

pub const CI_HEADER_SIZE: usize = 4096;
pub const CI_MAGIC: u32 = 0xB10B_B10B;
const ROW_V1: usize = 16;
const ROW_V2: usize = 24;
const MAX_CHUNKS: u64 = 1 << 24;

/// The decoded 4096-byte ci header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiHeader {
    pub features: u32,
    pub ci_compressor: u32,
    pub ci_entries: u32,
    pub ci_offset: u64,
    pub ci_compressed_size: u64,
    pub ci_uncompressed_size: u64,
    pub ctx_offset: u64,
    pub ctx_size: u64,
    pub ctx_count: u32,
}

impl CiHeader {
    /// Decodes a header stored at absolute offset `base` of its blob.
    pub fn parse(data: &[u8], base: u64) -> Result<Self> {
        let b = Bytes {
            data,
            base,
            structure: "blob ci header",
        };
        if data.len() != CI_HEADER_SIZE {
            return Err(b.err(0, format!("is {} bytes, not {CI_HEADER_SIZE}", data.len())));
        }
        for off in [0, CI_HEADER_SIZE - 4] {
            let magic = b.u32(off)?;
            if magic != CI_MAGIC {
                return Err(b.err(off, format!("magic {magic:#x}, expected {CI_MAGIC:#x}")));
            }
        }
        Ok(CiHeader {
            features: b.u32(4)?,
            ci_compressor: b.u32(8)?,
            ci_entries: b.u32(12)?,
            ci_offset: b.u64(16)?,
            ci_compressed_size: b.u64(24)?,
            ci_uncompressed_size: b.u64(32)?,
            ctx_offset: b.u64(40)?,
            ctx_size: b.u64(48)?,
            ctx_count: b.u32(56)?,
        })
    }
}

/// A loaded, decompressed ci table: row `i` describes chunk index `i`.
#[derive(Debug)]
pub struct CiTable {
    blob_index: u32,
    rows: Vec<u8>,
    row_size: usize,
    /// Where the ci data sits in the blob, for error offsets.
    ci_offset: u64,
    /// Length of the chunk data region (§4.2); rows must stay inside it.
    data_size: u64,
    /// `round_up(uncompressed_size, 4096)`; uncompressed ends must stay inside.
    uncompressed_limit: u64,
    /// The blob's chunk digest array (§4.7), when it has one.
    digests: Option<Vec<u8>>,
}

impl CiTable {
    /// Fetches and checks the ci table of `blob` (named `blob_id` in
    /// `source`), and its chunk digest array when the blob has one.
    pub fn load(blob: &BlobInfo, blob_id: &str, source: &dyn BlobSource) -> Result<Self> {
        let name = &blob.blob_id;
        if let Some(what) = refused_feature(blob.features) {
            return Err(RafsError::Unsupported(format!("blob {name}: {what}")));
        }
        let meta = blob
            .meta
            .as_ref()
            .filter(|m| m.ci_compressed_size != 0 && m.ci_uncompressed_size != 0);
        let Some(meta) = meta else {
            return Err(RafsError::NotFound(format!(
                "blob {name} has no chunk-information table"
            )));
        };
        let corrupt = |reason: String| {
            RafsError::corrupt(
                "blob table entry (ci table)",
                meta.ci_offset,
                format!("blob {name}: {reason}"),
            )
        };
        let row_size = if blob.features & CHUNK_INFO_V2 != 0 {
            ROW_V2
        } else {
            ROW_V1
        };
        let rows_wanted = u64::from(blob.chunk_count) * row_size as u64;
        let chunkdict = blob.features & IS_CHUNKDICT_GENERATED != 0;
        if u64::from(blob.chunk_count) > MAX_CHUNKS
            || meta.ci_uncompressed_size > MAX_CHUNKS * row_size as u64
            || meta.ci_uncompressed_size % row_size as u64 != 0
            || (!chunkdict && meta.ci_uncompressed_size != rows_wanted)
            || meta.ci_uncompressed_size < rows_wanted
        {
            return Err(corrupt(format!(
                "ci table of {} bytes does not hold {} rows of {row_size} bytes",
                meta.ci_uncompressed_size, blob.chunk_count
            )));
        }
        if meta.ci_compressed_size > meta.ci_uncompressed_size {
            return Err(corrupt(format!(
                "stored ci size {} exceeds its decompressed size {}",
                meta.ci_compressed_size, meta.ci_uncompressed_size
            )));
        }
        // Both sizes are bounded by MAX_CHUNKS * ROW_V2 (< 2^29): no overflow.
        let stored_len = meta.ci_compressed_size as usize;
        let mut stored = vec![0u8; stored_len + CI_HEADER_SIZE];
        source.read_at(blob_id, meta.ci_offset, &mut stored)?;
        let header_at = meta.ci_offset.saturating_add(meta.ci_compressed_size);
        let header = CiHeader::parse(&stored[stored_len..], header_at)?;
        let expect = [
            (
                "ci_compressor",
                u64::from(header.ci_compressor),
                u64::from(meta.ci_compressor.code()),
            ),
            ("ci_offset", header.ci_offset, meta.ci_offset),
            (
                "ci_compressed_size",
                header.ci_compressed_size,
                meta.ci_compressed_size,
            ),
            (
                "ci_uncompressed_size",
                header.ci_uncompressed_size,
                meta.ci_uncompressed_size,
            ),
        ];
        for (field, got, want) in expect {
            if got != want {
                return Err(RafsError::corrupt(
                    "blob ci header",
                    header_at,
                    format!("blob {name}: {field} {got:#x} but the blob table says {want:#x}"),
                ));
            }
        }
        if !chunkdict && header.ci_entries != blob.chunk_count {
            return Err(RafsError::corrupt(
                "blob ci header",
                header_at,
                format!(
                    "blob {name}: {} entries but the blob table says {}",
                    header.ci_entries, blob.chunk_count
                ),
            ));
        }
        let mut rows = vec![0u8; meta.ci_uncompressed_size as usize];
        codec::decompress_into(meta.ci_compressor, &stored[..stored_len], &mut rows)
            .map_err(|e| corrupt(format!("ci table does not decompress: {e}")))?;
        let data_size = if blob.features & CAP_TAR_TOC != 0 {
            let tar = if blob.features & HAS_TAR_HEADER != 0 {
                512
            } else {
                0
            };
            meta.ci_offset
                .checked_sub(tar)
                .ok_or_else(|| corrupt("ci table overlaps the image.blob tar header".into()))?
        } else {
            blob.compressed_size
        };
        let uncompressed_limit = blob
            .uncompressed_size
            .checked_next_multiple_of(4096)
            .ok_or_else(|| corrupt("uncompressed size overflows".into()))?;
        let mut table = CiTable {
            blob_index: blob.index,
            rows,
            row_size,
            ci_offset: meta.ci_offset,
            data_size,
            uncompressed_limit,
            digests: None,
        };
        if blob.features & INLINED_CHUNK_DIGEST != 0 {
            table.digests = super::trailer::load_digest_array(blob, blob_id, source)?;
        }
        Ok(table)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len() / self.row_size
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The checked descriptor of chunk index `index`.
    pub fn row(&self, index: u32) -> Result<ChunkInfo> {
        let off = (index as usize)
            .checked_mul(self.row_size)
            .filter(|off| off.saturating_add(self.row_size) <= self.rows.len())
            .ok_or_else(|| {
                RafsError::NotFound(format!(
                    "chunk index {index} of blob {} (ci table has {} rows)",
                    self.blob_index,
                    self.len()
                ))
            })?;
        let b = Bytes {
            data: &self.rows,
            base: 0,
            structure: "blob ci row",
        };
        let (w0, w1) = (b.u64(off)?, b.u64(off + 8)?);
        let mut info = if self.row_size == ROW_V1 {
            decode_v1(w0, w1)
        } else {
            decode_v2(w0, w1, b.u64(off + 16)?)
        };
        info.blob_index = self.blob_index;
        info.chunk_index = index;
        if let Some(d) = &self.digests {
            info.digest = Bytes {
                data: d,
                base: 0,
                structure: "blob chunk digest array",
            }
            .array(off / self.row_size * 32)
            .ok();
        }
        self.check(&info, off)?;
        Ok(info)
    }

    fn check(&self, c: &ChunkInfo, row_off: usize) -> Result<()> {
        let err = |reason: String| {
            RafsError::corrupt(
                "blob ci row",
                self.ci_offset,
                format!(
                    "blob {} row {} (decompressed offset {row_off:#x}): {reason}",
                    self.blob_index, c.chunk_index
                ),
            )
        };
        let c_end = c
            .compressed_offset
            .saturating_add(u64::from(c.compressed_size));
        if c_end > self.data_size {
            return Err(err(format!(
                "compressed end {c_end:#x} is past the chunk data ({:#x} bytes)",
                self.data_size
            )));
        }
        let u_end = c
            .uncompressed_offset
            .saturating_add(u64::from(c.uncompressed_size));
        if u_end > self.uncompressed_limit {
            return Err(err(format!(
                "uncompressed end {u_end:#x} is past the blob's image ({:#x} bytes)",
                self.uncompressed_limit
            )));
        }
        if c.uncompressed_size == 0 {
            return Err(err("uncompressed size is 0".into()));
        }
        if !c.compressed && !c.encrypted && c.compressed_size != c.uncompressed_size {
            return Err(err(format!(
                "stored raw but sizes differ ({} vs {})",
                c.compressed_size, c.uncompressed_size
            )));
        }
        if c.crc32 == Some(0) {
            return Err(err("HAS_CRC32 with a zero CRC".into()));
        }
        Ok(())
    }
}

/// ci row v1 (§4.4): sizes minus one, split 20 + 4 bits; compressed iff the
/// sizes differ.
pub(super) fn decode_v1(w0: u64, w1: u64) -> ChunkInfo {
    let usize_ = ((((w0 >> 8) & 0xF) << 20) | (w0 >> 44)) + 1;
    let csize = ((((w1 >> 40) & 0xF) << 20) | (w1 >> 44)) + 1;
    ChunkInfo {
        blob_index: 0,
        chunk_index: 0,
        compressed_offset: w1 & 0xFF_FFFF_FFFF,
        compressed_size: csize as u32,
        uncompressed_offset: w0 & 0x0000_0FFF_FFFF_F000,
        uncompressed_size: usize_ as u32,
        compressed: csize != usize_,
        encrypted: false,
        batch: false,
        digest: None,
        crc32: None,
    }
}

/// ci row v2 (§4.5): flags in the top byte of word 0, CRC in the data word.
pub(super) fn decode_v2(w0: u64, w1: u64, data: u64) -> ChunkInfo {
    let flags = (w0 >> 56) as u8;
    ChunkInfo {
        blob_index: 0,
        chunk_index: 0,
        compressed_offset: w1 & 0xFF_FFFF_FFFF,
        compressed_size: (w1 >> 40) as u32,
        uncompressed_offset: (w0 & 0xFFFF_FFFF) << 12,
        uncompressed_size: (((w0 >> 32) & 0xFF_FFFF) + 1) as u32,
        compressed: flags & 0x01 != 0,
        encrypted: flags & 0x08 != 0,
        batch: flags & 0x04 != 0,
        digest: None,
        // Batch members use the data word for their batch position.
        crc32: (flags & 0x10 != 0 && flags & 0x04 == 0).then_some(data as u32),
    }
}
