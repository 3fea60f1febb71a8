//! v6 regular-file chunks: the per-inode chunk index array (§3.14) and the
//! bootstrap chunk table (§3.17).

use std::collections::HashMap;

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

/// Loads the bootstrap chunk table into a map; records are checked against
/// the blob table.
pub fn load_table(
    file: &[u8],
    offset: u64,
    size: u64,
    blobs: &[BlobInfo],
    chunk_size: u32,
    block_size: u64,
) -> Result<HashMap<ChunkKey, ChunkInfo>> {
    let count = size / CHUNK_RECORD_SIZE;
    let mut map = HashMap::with_capacity(usize::try_from(count).unwrap_or(0));
    for i in 0..count {
        let at = offset + i * CHUNK_RECORD_SIZE;
        let (info, _) = parse_record(file, at)?;
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
        if !info.compressed
            && !info.encrypted
            && !info.batch
            && info.compressed_size != info.uncompressed_size
        {
            return Err(err(format!(
                "stored raw but sizes differ ({} vs {})",
                info.compressed_size, info.uncompressed_size
            )));
        }
        map.insert(
            (
                info.blob_index,
                info.chunk_index,
                info.uncompressed_offset / block_size,
            ),
            info,
        );
    }
    Ok(map)
}

/// The chunk references of regular file `inode`: `ceil_div(size,
/// chunk_size)` index entries (the inode's own chunkbits is ignored, §3.14).
pub fn file_chunks(
    file: &[u8],
    inode: &RawInode,
    blobs: &[BlobInfo],
    chunk_size: u32,
    table: &HashMap<ChunkKey, ChunkInfo>,
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
        let info = table.get(&(blob_index, chunk_index, blkaddr)).copied();
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
