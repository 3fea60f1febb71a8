//! RAFS v6 bootstrap (format doc §3): an EROFS image with chunk-based files
//! and a device per blob, plus the RAFS extended superblock, blob table,
//! prefetch table and bootstrap chunk table.

use std::collections::BTreeMap;

use super::flat::{lossy, Flat};
use super::v6_meta::{
    dir_blocks, file_type, put_inode, xattr_icount, Dirent, InodeFields, BLOCK, LAYOUT_INLINE,
    LAYOUT_PLAIN,
};
use super::v6_place::{place, Placed};
use super::{
    invalid, round_up, superblock_flags, ChunkDesc, ImageSpec, NodeKind, FLAG_ENCRYPTION_NONE,
};
use crate::rafs::bytes::PutLe;
use crate::rafs::error::Result;

const DEVICE_SLOTS: u64 = 1408;
/// Boundary the flattened block-device export aligns blobs to (§3.4).
const MAPPED_ALIGN: u64 = 512 * 1024;

pub(super) fn write(spec: &ImageSpec, flat: &Flat<'_>) -> Result<Vec<u8>> {
    let nblobs = spec.blobs.len() as u64;
    let blob_table_offset = round_up(DEVICE_SLOTS + 128 * nblobs, BLOCK);
    let blob_table_size = 256 * nblobs;
    // Upstream writes a prefetch table only when there is data to prefetch.
    let prefetch: &[usize] = if nblobs > 0 { &flat.prefetch } else { &[] };
    let prefetch_offset = blob_table_offset + blob_table_size;
    let prefetch_size = 4 * prefetch.len() as u64;
    let meta_blkaddr = round_up(prefetch_offset + prefetch_size, BLOCK) / BLOCK;
    let meta_base = meta_blkaddr * BLOCK;

    let (placed, meta_end) = place(flat, meta_base)?;
    let nid = |pos: usize| -> u64 {
        let first = flat.entries[pos].first;
        placed[first]
            .as_ref()
            .map_or(0, |p| (p.offset - meta_base) / 32)
    };
    let root_nid = u16::try_from(nid(0)).map_err(|_| invalid("root nid does not fit 16 bits"))?;

    let chunk_table = chunk_table(spec, flat);
    let chunk_table_offset = round_up(meta_end, BLOCK);
    let chunk_table_size = chunk_table.len() as u64;
    let total = round_up(chunk_table_offset + chunk_table_size, BLOCK);
    let mut out = vec![0u8; usize::try_from(total).map_err(|_| invalid("bootstrap too large"))?];

    // Meta area: every inode with its xattrs, inline tail or chunk indexes.
    for (pos, p) in placed.iter().enumerate() {
        let Some(p) = p else { continue };
        let (head, blocks) = inode_bytes(spec, flat, pos, p, &nid)?;
        put_at(&mut out, p.offset, &head)?;
        put_at(&mut out, p.data_blkaddr as u64 * BLOCK, &blocks)?;
    }
    put_at(&mut out, chunk_table_offset, &chunk_table)?;

    // Superblocks, device slots, blob and prefetch tables.
    let mut device_blocks = 0u64;
    let mut mapped = round_up(total, MAPPED_ALIGN) / BLOCK;
    let mut slots = Vec::new();
    let mut table = Vec::new();
    for (i, b) in spec.blobs.iter().enumerate() {
        let blocks = b.uncompressed_size / BLOCK;
        let (Ok(blocks32), Ok(mapped32)) = (u32::try_from(blocks), u32::try_from(mapped)) else {
            return Err(invalid(format!(
                "blob {} is too large for the EROFS device table",
                b.id
            )));
        };
        put_id(&mut slots, &b.id);
        slots.put_u32(blocks32.max(1));
        slots.put_u32(mapped32);
        slots.put_zeros(56);
        device_blocks += blocks.max(1);
        mapped += blocks;
        blob_entry(&mut table, spec, i as u32, b);
    }
    put_at(&mut out, DEVICE_SLOTS, &slots)?;
    put_at(&mut out, blob_table_offset, &table)?;
    let mut pt = Vec::new();
    for &pos in prefetch {
        pt.put_u32(nid(pos) as u32);
    }
    put_at(&mut out, prefetch_offset, &pt)?;

    let mut sb = Vec::with_capacity(384);
    sb.put_u32(0xE0F5_E1E2);
    sb.put_u32(0);
    sb.put_u32(0x4000_0000);
    sb.put_u8(12);
    sb.put_u8(0);
    sb.put_u16(root_nid);
    sb.put_u64(flat.entries.len() as u64);
    sb.put_u64(0);
    sb.put_u32(0);
    sb.put_u32(u32::try_from(device_blocks).unwrap_or(u32::MAX));
    sb.put_u32(meta_blkaddr as u32);
    sb.put_u32(0);
    sb.put_zeros(32);
    sb.put_u32(0x0C);
    sb.put_u16(0);
    sb.put_u16(nblobs as u16);
    sb.put_u16((DEVICE_SLOTS / 128) as u16);
    sb.put_zeros(38);
    // RAFS extended superblock.
    sb.put_u64(superblock_flags(spec, flat.has_xattr) | FLAG_ENCRYPTION_NONE);
    sb.put_u64(blob_table_offset);
    sb.put_u32(blob_table_size as u32);
    sb.put_u32(spec.chunk_size);
    sb.put_u64(if chunk_table_size > 0 {
        chunk_table_offset
    } else {
        0
    });
    sb.put_u64(chunk_table_size);
    sb.put_u64(if prefetch_size > 0 {
        prefetch_offset
    } else {
        0
    });
    sb.put_u32(prefetch_size as u32);
    sb.put_zeros(204);
    put_at(&mut out, 1024, &sb)?;
    Ok(out)
}

/// Copies `bytes` to `offset`; a placement outside the file is a bug in
/// this writer, reported as an error rather than a panic.
fn put_at(out: &mut [u8], offset: u64, bytes: &[u8]) -> Result<()> {
    let dst = usize::try_from(offset)
        .ok()
        .and_then(|start| out.get_mut(start..start.checked_add(bytes.len())?))
        .ok_or_else(|| invalid(format!("internal layout error at offset {offset:#x}")))?;
    dst.copy_from_slice(bytes);
    Ok(())
}

fn put_id(out: &mut Vec<u8>, id: &str) {
    let start = out.len();
    out.extend_from_slice(id.as_bytes());
    out.resize(start + 64, 0);
}

/// One 256-byte blob table entry (§3.5).
fn blob_entry(out: &mut Vec<u8>, spec: &ImageSpec, index: u32, b: &super::BlobDesc) {
    let start = out.len();
    put_id(out, &b.id);
    out.put_u32(index);
    out.put_u32(spec.chunk_size);
    out.put_u32(b.chunk_count);
    out.put_u32(b.compressor.code());
    out.put_u32(b.digester.code());
    out.put_u32(b.features);
    out.put_u64(b.compressed_size);
    out.put_u64(b.uncompressed_size);
    out.put_u32(0);
    let ci = b.ci.unwrap_or(super::CiDesc {
        compressor: crate::rafs::codec::Compressor::None,
        offset: 0,
        compressed_size: 0,
        uncompressed_size: 0,
    });
    out.put_u32(ci.compressor.code());
    out.put_u64(ci.offset);
    out.put_u64(ci.compressed_size);
    out.put_u64(ci.uncompressed_size);
    out.resize(start + 256, 0);
}

/// Directory blocks of `pos` with children's nids from `nid`.
pub(super) fn dir_data(flat: &Flat<'_>, pos: usize, nid: &dyn Fn(usize) -> u64) -> Vec<u8> {
    let e = &flat.entries[pos];
    let mut ents: Vec<Dirent<'_>> = vec![
        Dirent {
            name: b".",
            nid: nid(pos),
            file_type: 2,
        },
        Dirent {
            name: b"..",
            nid: nid(e.parent),
            file_type: 2,
        },
    ];
    for k in e.children.clone() {
        let child = &flat.entries[k];
        ents.push(Dirent {
            name: &child.node.name,
            nid: nid(k),
            file_type: file_type(child.node.mode),
        });
    }
    ents.sort_by(|a, b| a.name.cmp(b.name));
    dir_blocks(&ents)
}

/// The bytes at the inode's offset (inode, xattrs, then inline tail or
/// chunk indexes) and the full data blocks that go to `data_blkaddr`.
fn inode_bytes(
    spec: &ImageSpec,
    flat: &Flat<'_>,
    pos: usize,
    p: &Placed,
    nid: &dyn Fn(usize) -> u64,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let e = &flat.entries[pos];
    let node = e.node;
    let (size, nlink, u, data): (u64, u32, u32, Vec<u8>) = match &node.kind {
        NodeKind::Dir(_) => {
            let data = dir_data(flat, pos, nid);
            (data.len() as u64, flat.dir_nlink(pos), p.data_blkaddr, data)
        }
        NodeKind::Symlink(t) => (t.len() as u64, 1, p.data_blkaddr, t.clone()),
        NodeKind::File(f) => (f.size, e.nlink, 0x20 | chunkbits(spec, f), Vec::new()),
        NodeKind::Device(rdev) => (0, 1, super::encode_rdev(*rdev)?, Vec::new()),
        NodeKind::Fifo | NodeKind::Socket => (0, 1, 0, Vec::new()),
    };
    let (uid, gid) = if spec.explicit_uid_gid {
        (node.uid, node.gid)
    } else {
        (0, 0)
    };
    let mut head = Vec::new();
    put_inode(
        &mut head,
        &InodeFields {
            layout: p.layout,
            xattr_icount: xattr_icount(p.xattrs.len()),
            mode: node.mode,
            size,
            u,
            ino: flat.ino(pos) as u32,
            uid,
            gid,
            mtime: node.mtime,
            mtime_nsec: node.mtime_nsec,
            nlink,
        },
    );
    head.extend_from_slice(&p.xattrs);
    let mut blocks = Vec::new();
    match p.layout {
        LAYOUT_INLINE => {
            let full = data.len() / BLOCK as usize * BLOCK as usize;
            head.extend_from_slice(&data[full..]);
            blocks.extend_from_slice(&data[..full]);
        }
        LAYOUT_PLAIN => blocks = data,
        _ => {
            let NodeKind::File(f) = &node.kind else {
                return Err(invalid("internal: chunk layout on a non-file"));
            };
            head.resize(round_up(head.len() as u64, 8) as usize, 0);
            for &c in &f.chunks {
                let chunk = lookup_chunk(spec, c, &node.name)?;
                head.put_u16(chunk.index as u16);
                head.put_u16(
                    ((chunk.blob_index + 1) & 0xff) as u16
                        | (((chunk.index >> 16) & 0xff) << 8) as u16,
                );
                head.put_u32((chunk.uncompressed_offset / BLOCK) as u32);
            }
        }
    }
    Ok((head, blocks))
}

fn lookup_chunk<'s>(spec: &'s ImageSpec, c: u32, name: &[u8]) -> Result<&'s ChunkDesc> {
    spec.chunks.get(c as usize).ok_or_else(|| {
        invalid(format!(
            "{:?}: chunk {c} is not in the chunk list",
            lossy(name)
        ))
    })
}

/// EROFS `chunkbits` of a file (§3.14): the chunk size, except that a file
/// of several chunks lying back to back in one blob's uncompressed image is
/// declared as one chunk of its size rounded up to a power of two, as
/// upstream does, so the kernel can map it as one extent. Readers use the
/// superblock chunk size either way.
fn chunkbits(spec: &ImageSpec, f: &super::FileData) -> u32 {
    let base = spec.chunk_size.trailing_zeros().saturating_sub(12);
    let chunks: Vec<&ChunkDesc> = f
        .chunks
        .iter()
        .filter_map(|&c| spec.chunks.get(c as usize))
        .collect();
    if chunks.len() < 2 || chunks.len() != f.chunks.len() {
        return base;
    }
    let contiguous = chunks.windows(2).all(|w| {
        w[0].blob_index == w[1].blob_index
            && w[0].uncompressed_offset + round_up(w[0].uncompressed_size as u64, BLOCK)
                == w[1].uncompressed_offset
    });
    if !contiguous {
        return base;
    }
    let whole = f
        .size
        .checked_next_power_of_two()
        .map_or(63, |p| p.trailing_zeros());
    whole.saturating_sub(12).clamp(base, 31)
}

/// The bootstrap chunk table (§3.17): one v5-format record per distinct
/// (digest, blob) referenced, sorted by that key; `file_offset` is the
/// first reference's.
fn chunk_table(spec: &ImageSpec, flat: &Flat<'_>) -> Vec<u8> {
    let mut seen: BTreeMap<([u8; 32], u32), (ChunkDesc, u64)> = BTreeMap::new();
    for pos in flat.preorder() {
        let e = &flat.entries[pos];
        let NodeKind::File(f) = &e.node.kind else {
            continue;
        };
        if e.first != pos {
            continue;
        }
        for (k, &c) in f.chunks.iter().enumerate() {
            if let Some(chunk) = spec.chunks.get(c as usize) {
                let file_offset = k as u64 * spec.chunk_size as u64;
                seen.entry((chunk.digest, chunk.blob_index))
                    .or_insert((*chunk, file_offset));
            }
        }
    }
    let mut out = Vec::with_capacity(seen.len() * 80);
    for (chunk, file_offset) in seen.values() {
        super::put_chunk_record(&mut out, chunk, *file_offset);
    }
    out
}
