//! RAFS v5 bootstrap (format doc §2): superblock, inode table, prefetch
//! table, blob table, extended blob table, then inode records in depth-first
//! pre-order, every part 8-byte aligned.

use super::flat::{lossy, Flat};
use super::{invalid, round_up, superblock_flags, ImageSpec, NodeKind};
use crate::rafs::bytes::PutLe;
use crate::rafs::codec::Hasher;
use crate::rafs::error::Result;

const SUPER_SIZE: usize = 8192;
const INODE_FLAG_SYMLINK: u64 = 0x1;
const INODE_FLAG_XATTR: u64 = 0x4;
/// nydusd refuses v5 bootstraps above 2 GiB.
const MAX_BOOTSTRAP: usize = 0x8000_0000;

pub(super) fn write(spec: &ImageSpec, flat: &Flat<'_>) -> Result<Vec<u8>> {
    let n = flat.entries.len();
    let inode_table_offset = SUPER_SIZE;
    let inode_table_size = round_up(n as u64 * 4, 8) as usize;
    let prefetch_offset = inode_table_offset + inode_table_size;
    let prefetch_size = round_up(flat.prefetch.len() as u64 * 4, 8) as usize;
    let blob_table = blob_table(spec);
    let blob_table_offset = prefetch_offset + prefetch_size;
    let ext_offset = blob_table_offset + blob_table.len();
    let records_offset = ext_offset + 64 * spec.blobs.len();

    let digests = inode_digests(spec, flat);
    let order = flat.preorder();
    let mut records = Vec::new();
    let mut slots = vec![0u32; n];
    for &pos in &order {
        let at = records_offset + records.len();
        if at > MAX_BOOTSTRAP {
            return Err(invalid(
                "the v5 bootstrap would exceed 2 GiB; use --fs-version 6",
            ));
        }
        slots[pos] = (at >> 3) as u32;
        record(spec, flat, pos, &digests[pos], &mut records)?;
    }

    let mut out = Vec::with_capacity(records_offset + records.len());
    out.put_u32(0x5241_4653);
    out.put_u32(0x500);
    out.put_u32(SUPER_SIZE as u32);
    out.put_u32(spec.chunk_size);
    out.put_u64(superblock_flags(spec, flat.has_xattr));
    out.put_u64(
        flat.entries
            .iter()
            .enumerate()
            .filter(|(p, e)| e.first == *p)
            .count() as u64,
    );
    out.put_u64(inode_table_offset as u64);
    out.put_u64(prefetch_offset as u64);
    out.put_u64(blob_table_offset as u64);
    out.put_u32(n as u32);
    out.put_u32(flat.prefetch.len() as u32);
    out.put_u32(blob_table.len() as u32);
    out.put_u32(spec.blobs.len() as u32);
    out.put_u64(ext_offset as u64);
    out.resize(SUPER_SIZE, 0);
    for s in &slots {
        out.put_u32(*s);
    }
    out.resize(prefetch_offset, 0);
    for &pos in &flat.prefetch {
        out.put_u32(flat.ino(pos) as u32);
    }
    out.resize(blob_table_offset, 0);
    out.extend_from_slice(&blob_table);
    for b in &spec.blobs {
        out.put_u32(b.chunk_count);
        out.put_u32(b.features);
        out.put_u64(b.uncompressed_size);
        out.put_u64(b.compressed_size);
        out.put_zeros(40);
    }
    out.extend_from_slice(&records);
    Ok(out)
}

/// Variable-length blob table (§2.5): readahead offset/size, id, NUL
/// between entries, zero padding to 8.
fn blob_table(spec: &ImageSpec) -> Vec<u8> {
    let mut t = Vec::new();
    for (i, b) in spec.blobs.iter().enumerate() {
        if i > 0 {
            t.put_u8(0);
        }
        t.put_u32(0);
        t.put_u32(0);
        t.extend_from_slice(b.id.as_bytes());
    }
    t.resize(round_up(t.len() as u64, 8) as usize, 0);
    t
}

/// Inode digests (§5.5), computed children first (reverse pre-order).
fn inode_digests(spec: &ImageSpec, flat: &Flat<'_>) -> Vec<[u8; 32]> {
    let mut digests = vec![[0u8; 32]; flat.entries.len()];
    for &pos in flat.preorder().iter().rev() {
        let e = &flat.entries[pos];
        let mut h = Hasher::new(spec.digester);
        match &flat.entries[e.first].node.kind {
            NodeKind::File(f) => {
                for &c in &f.chunks {
                    if let Some(chunk) = spec.chunks.get(c as usize) {
                        h.update(&chunk.digest);
                    }
                }
            }
            NodeKind::Symlink(target) => h.update(target),
            NodeKind::Dir(_) => {
                for child in e.children.clone() {
                    h.update(&digests[child]);
                }
            }
            NodeKind::Device(_) | NodeKind::Fifo | NodeKind::Socket => {}
        }
        digests[pos] = h.finish();
    }
    digests
}

/// Appends the inode record of `pos` (§2.7–§2.11).
fn record(
    spec: &ImageSpec,
    flat: &Flat<'_>,
    pos: usize,
    digest: &[u8; 32],
    out: &mut Vec<u8>,
) -> Result<()> {
    let e = &flat.entries[pos];
    // Later hardlink names carry the first name's attributes and chunks.
    let node = if e.first == pos {
        e.node
    } else {
        flat.entries[e.first].node
    };
    let name: &[u8] = if pos == 0 { b"/" } else { &e.node.name };
    let symlink: &[u8] = match &node.kind {
        NodeKind::Symlink(t) => t,
        _ => &[],
    };
    let xattrs = xattr_block(node);
    let (size, nlink, child_index, child_count, rdev, mut flags) = match &node.kind {
        NodeKind::Dir(_) => {
            let kids = &flat.entries[e.children.clone()];
            let names: u64 = kids.iter().map(|k| k.node.name.len() as u64 + 8).sum();
            let size = if kids.is_empty() {
                4096
            } else {
                round_up(names, 4096)
            };
            (
                size,
                flat.dir_nlink(pos),
                e.children.start as u32 + 1,
                kids.len() as u32,
                0,
                0,
            )
        }
        NodeKind::File(f) => (f.size, e.nlink, 0, f.chunks.len() as u32, 0, 0),
        NodeKind::Symlink(t) => (t.len() as u64, 1, 0, 0, 0, INODE_FLAG_SYMLINK),
        NodeKind::Device(rdev) => (0, 1, 0, 0, super::encode_rdev(*rdev)?, 0),
        NodeKind::Fifo | NodeKind::Socket => (0, 1, 0, 0, 0, 0),
    };
    if !xattrs.is_empty() {
        flags |= INODE_FLAG_XATTR;
    }
    let xattr_total = xattrs.len().saturating_sub(8) as u64;
    let (uid, gid) = if spec.explicit_uid_gid {
        (node.uid, node.gid)
    } else {
        (0, 0)
    };
    let parent_ino = if pos == 0 { 0 } else { flat.ino(e.parent) };

    out.extend_from_slice(digest);
    out.put_u64(parent_ino);
    out.put_u64(flat.ino(pos));
    out.put_u32(uid);
    out.put_u32(gid);
    out.put_u32(0);
    out.put_u32(node.mode);
    out.put_u64(size);
    out.put_u64((size + xattr_total).div_ceil(512));
    out.put_u64(flags);
    out.put_u32(nlink);
    out.put_u32(child_index);
    out.put_u32(child_count);
    out.put_u16(name.len() as u16);
    out.put_u16(symlink.len() as u16);
    out.put_u32(rdev);
    out.put_u32(node.mtime_nsec);
    out.put_u64(node.mtime as u64);
    out.put_zeros(8);
    put_padded(out, name);
    put_padded(out, symlink);
    out.extend_from_slice(&xattrs);
    if let NodeKind::File(f) = &node.kind {
        for (k, &c) in f.chunks.iter().enumerate() {
            let chunk = spec.chunks.get(c as usize).ok_or_else(|| {
                invalid(format!(
                    "{:?}: chunk {c} is not in the chunk list",
                    lossy(&node.name)
                ))
            })?;
            super::put_chunk_record(out, chunk, k as u64 * spec.chunk_size as u64);
        }
    }
    Ok(())
}

fn put_padded(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.resize(round_up(out.len() as u64, 8) as usize, 0);
}

/// The xattr block (§2.10), pairs sorted by name so output is reproducible;
/// empty when the node has no xattrs.
fn xattr_block(node: &super::Node) -> Vec<u8> {
    if node.xattrs.is_empty() {
        return Vec::new();
    }
    let mut pairs: Vec<&(Vec<u8>, Vec<u8>)> = node.xattrs.iter().collect();
    pairs.sort();
    let mut body = Vec::new();
    for (k, v) in pairs {
        body.put_u32((k.len() + 1 + v.len()) as u32);
        body.extend_from_slice(k);
        body.put_u8(0);
        body.extend_from_slice(v);
    }
    let mut out = Vec::with_capacity(8 + body.len() + 8);
    out.put_u64(body.len() as u64);
    put_padded(&mut out, &body);
    out
}
