//! v6 regular-file chunks: the per-inode chunk index array (§3.14) and the
//! bootstrap chunk table (§3.17).

use std::sync::OnceLock;

use super::inode::RawInode;
use super::layout::CHUNK_RECORD_SIZE;
use crate::rafs::bytes::Bytes;
use crate::rafs::error::{RafsError, Result};
use crate::rafs::types::{BlobInfo, ChunkInfo, ChunkRef};

/// Chunk flags shared by v5 records and the v6 chunk table (§2.11).
const CHUNK_COMPRESSED: u32 = 0x01;
const CHUNK_ENCRYPTED: u32 = 0x04;
const CHUNK_BATCH: u32 = 0x08;
const CHUNK_HAS_CRC32: u32 = 0x10;

/// Key of the chunk table map: (blob index, chunk index, uncompressed block
/// address), as upstream indexes it.
pub type ChunkKey = (u32, u32, u64);

/// Decodes one 80-byte chunk record at absolute offset `offset`.
pub fn parse_record(file: &[u8], offset: u64) -> Result<(ChunkInfo, u64)> {
    let b = Bytes::at(file, offset, CHUNK_RECORD_SIZE, "v6 chunk table record")?;
    let flags = b.u32(36)?;
    let info = ChunkInfo {
        blob_index: b.u32(32)?,
        chunk_index: b.u32(72)?,
        compressed_offset: b.u64(48)?,
        compressed_size: b.u32(40)?,
        uncompressed_offset: b.u64(56)?,
        uncompressed_size: b.u32(44)?,
        compressed: flags & CHUNK_COMPRESSED != 0,
        encrypted: flags & CHUNK_ENCRYPTED != 0,
        batch: flags & CHUNK_BATCH != 0,
        digest: Some(b.array(0)?),
        crc32: (flags & CHUNK_HAS_CRC32 != 0).then_some(b.u32(76)?),
    };
    Ok((info, b.u64(64)?))
}

/// Record positions sorted by their records' keys (read from the table
/// when searching, so an entry is 4 bytes, not 24).
pub type Index = Vec<u32>;

/// The bootstrap chunk table (§3.17), indexed on first use.
///
/// Opening an image only checks the table's extent (`ExtSuper::parse`);
/// decoding and checking every record is proportional to the image (about
/// 40 ms and 6 MiB for 40k chunks as a hash map), so it waits for the first
/// file read instead of delaying the mount. Tables the builder wrote in key
/// order (the usual case) are searched in place and cost no memory; others
/// get a sorted index of 4 bytes per record.
pub struct ChunkTable {
    offset: u64,
    count: u64,
    chunk_size: u32,
    block_size: u64,
    /// `None`: the records themselves are in key order.
    index: OnceLock<Result<Option<Index>>>,
}

impl ChunkTable {
    pub fn new(offset: u64, size: u64, chunk_size: u32, block_size: u64) -> Self {
        ChunkTable {
            offset,
            count: size / CHUNK_RECORD_SIZE,
            chunk_size,
            block_size,
            index: OnceLock::new(),
        }
    }

    /// Where the records lie in the bootstrap.
    pub fn byte_range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset.saturating_add(self.count * CHUNK_RECORD_SIZE)
    }

    /// Checks and indexes the table unless that is done; racing callers
    /// wait for the first.
    pub fn index(&self, file: &[u8], blobs: &[BlobInfo]) -> Result<Option<&Index>> {
        self.index
            .get_or_init(|| self.build(file, blobs))
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    /// The record for `key`; an error if any record of the table is bad.
    pub fn get(&self, file: &[u8], blobs: &[BlobInfo], key: ChunkKey) -> Result<Option<ChunkInfo>> {
        let index = self.index(file, blobs)?;
        let (len, at) = match index {
            Some(sorted) => (sorted.len() as u64, Some(sorted)),
            None => (self.count, None),
        };
        let position = |i: u64| at.map_or(i, |sorted| u64::from(sorted[i as usize]));
        let (mut lo, mut hi) = (0, len);
        let pos = loop {
            if lo >= hi {
                return Ok(None);
            }
            let mid = lo + (hi - lo) / 2;
            match self.key_at(file, position(mid))?.cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => break position(mid),
            }
        };
        Ok(Some(
            parse_record(file, self.offset + pos * CHUNK_RECORD_SIZE)?.0,
        ))
    }

    fn key_at(&self, file: &[u8], i: u64) -> Result<ChunkKey> {
        let b = Bytes::at(
            file,
            self.offset + i * CHUNK_RECORD_SIZE,
            CHUNK_RECORD_SIZE,
            "v6 chunk table record",
        )?;
        Ok((b.u32(32)?, b.u32(72)?, b.u64(56)? / self.block_size))
    }

    /// Checks every record against the blob table and indexes them.
    fn build(&self, file: &[u8], blobs: &[BlobInfo]) -> Result<Option<Index>> {
        let mut keys = Vec::new();
        let mut sorted = true;
        let mut last = None;
        for i in 0..self.count {
            let at = self.offset + i * CHUNK_RECORD_SIZE;
            let (info, _) = parse_record(file, at)?;
            check_record(&info, at, blobs, self.chunk_size)?;
            let key = (
                info.blob_index,
                info.chunk_index,
                info.uncompressed_offset / self.block_size,
            );
            // Equal keys would make the in-place search ambiguous.
            if sorted && last.is_some_and(|l| l >= key) {
                sorted = false;
                keys = (0..i)
                    .map(|j| self.key_at(file, j).map(|k| (k, j as u32)))
                    .collect::<Result<_>>()?;
            }
            if !sorted {
                keys.push((key, i as u32));
            }
            last = Some(key);
        }
        if sorted {
            return Ok(None);
        }
        // By position too: for duplicate keys the first record wins.
        keys.sort_unstable();
        keys.dedup_by_key(|&mut (k, _)| k);
        Ok(Some(keys.into_iter().map(|(_, pos)| pos).collect()))
    }
}

fn check_record(info: &ChunkInfo, at: u64, blobs: &[BlobInfo], chunk_size: u32) -> Result<()> {
    let err = |reason: String| RafsError::corrupt("v6 chunk table record", at, reason);
    let blob = blobs.get(info.blob_index as usize).ok_or_else(|| {
        err(format!(
            "blob index {} is not in the blob table",
            info.blob_index
        ))
    })?;
    if info.chunk_index >= blob.chunk_count {
        return Err(err(format!(
            "chunk index {} but blob {} has {} chunks",
            info.chunk_index, blob.index, blob.chunk_count
        )));
    }
    if info.uncompressed_size == 0 || info.uncompressed_size > chunk_size {
        return Err(err(format!(
            "uncompressed size {:#x} is not in 1..={chunk_size:#x}",
            info.uncompressed_size
        )));
    }
    if info.stored_raw() && info.compressed_size != info.uncompressed_size {
        return Err(err(format!(
            "stored raw but sizes differ ({} vs {})",
            info.compressed_size, info.uncompressed_size
        )));
    }
    Ok(())
}

/// The chunk references of regular file `inode`: `ceil_div(size,
/// chunk_size)` index entries (the inode's own chunkbits is ignored, §3.14).
pub fn file_chunks(
    file: &[u8],
    inode: &RawInode,
    blobs: &[BlobInfo],
    chunk_size: u32,
    table: &ChunkTable,
) -> Result<Vec<ChunkRef>> {
    let count = inode.size.div_ceil(u64::from(chunk_size));
    let start = inode.offset + inode.body_size().next_multiple_of(8);
    let len = count.checked_mul(8).ok_or_else(|| {
        RafsError::corrupt(
            "v6 inode",
            inode.offset,
            format!(
                "nid {}: size {} needs too many chunks",
                inode.nid, inode.size
            ),
        )
    })?;
    let b = Bytes::at(file, start, len, "v6 chunk index array")?;
    let mut out = Vec::with_capacity(count as usize);
    for k in 0..count as usize {
        let off = k * 8;
        let ci_lo = u32::from(b.u16(off)?);
        let dev = b.u16(off + 2)?;
        let blkaddr = u64::from(b.u32(off + 4)?);
        let blob_index = u32::from(dev & 0xFF).checked_sub(1).ok_or_else(|| {
            b.err(
                off + 2,
                format!("nid {}: chunk {k} has device id 0", inode.nid),
            )
        })?;
        let chunk_index = (u32::from(dev >> 8) << 16) | ci_lo;
        let blob = blobs.get(blob_index as usize).ok_or_else(|| {
            b.err(
                off + 2,
                format!(
                    "nid {}: chunk {k} names blob {blob_index}, not in the blob table",
                    inode.nid
                ),
            )
        })?;
        if chunk_index >= blob.chunk_count {
            return Err(b.err(
                off,
                format!(
                    "nid {}: chunk {k} has index {chunk_index} but blob {blob_index} has {} chunks",
                    inode.nid, blob.chunk_count
                ),
            ));
        }
        let file_offset = k as u64 * u64::from(chunk_size);
        let info = table.get(file, blobs, (blob_index, chunk_index, blkaddr))?;
        if let Some(i) = &info {
            let want = (inode.size - file_offset).min(u64::from(chunk_size));
            if u64::from(i.uncompressed_size) != want {
                return Err(b.err(
                    off,
                    format!(
                        "nid {}: chunk {k} holds {} bytes, the file needs {want}",
                        inode.nid, i.uncompressed_size
                    ),
                ));
            }
        }
        out.push(ChunkRef {
            blob_index,
            chunk_index,
            file_offset,
            info,
        });
    }
    Ok(out)
}
