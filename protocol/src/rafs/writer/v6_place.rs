//! Placement of v6 inodes in the meta area, following upstream's policy
//! so that our images lay out like `nydus-image`'s: inodes in numbering
//! order on 32-byte slots, directory and symlink tails packed after their
//! inode, and the free ends of blocks skipped that way reused for later
//! small inodes (smallest fitting fragment first, first-in first-out).

use std::collections::VecDeque;

use super::flat::Flat;
use super::v6::dir_data;
use super::v6_meta::{xattr_body, BLOCK, INODE_SIZE, LAYOUT_CHUNK, LAYOUT_INLINE, LAYOUT_PLAIN};
use super::{invalid, round_up, NodeKind};
use crate::rafs::error::Result;

const SLOT: u64 = 32;
const CLASSES: usize = (BLOCK / SLOT) as usize;

/// Where one inode went and what data it carries.
pub(super) struct Placed {
    /// Absolute offset of the inode.
    pub offset: u64,
    pub layout: u16,
    /// Absolute block of the first full data block (dirs, symlinks).
    pub data_blkaddr: u32,
    pub xattrs: Vec<u8>,
}

/// The allocation cursor plus the free block ends left behind.
struct Cursor {
    at: u64,
    /// `free[k]`: blocks whose last `k * 32` bytes (at least) are unused.
    free: Vec<VecDeque<u64>>,
}

impl Cursor {
    /// Remembers the rest of the block `offset` is in as reusable.
    fn note_free(&mut self, offset: u64) {
        if offset % BLOCK != 0 {
            let class = ((BLOCK - offset % BLOCK) / SLOT) as usize;
            self.free[class].push_back(offset - offset % BLOCK);
        }
    }

    /// A 32-byte aligned place for `size` bytes in a remembered block end.
    fn take_free(&mut self, size: u64) -> Option<u64> {
        if size >= BLOCK {
            return None;
        }
        let need = size.div_ceil(SLOT) as usize;
        for class in need..CLASSES {
            if let Some(block) = self.free[class].pop_front() {
                let offset = block + BLOCK - class as u64 * SLOT;
                self.note_free(offset + need as u64 * SLOT);
                return Some(offset);
            }
        }
        None
    }

    /// Sequential space for `size` bytes.
    fn bump(&mut self, size: u64) -> u64 {
        let at = self.at;
        self.at += size;
        at
    }

    /// Ends the current block: its rest becomes a free fragment.
    fn next_block(&mut self) {
        self.note_free(self.at);
        self.at = round_up(self.at, BLOCK);
    }
}

/// Assigns every inode its offset: a directory (with its entries), then its
/// non-directory children, directory by directory in numbering order.
/// Returns the placements by position and the end of the meta area.
pub(super) fn place(flat: &Flat<'_>, meta_base: u64) -> Result<(Vec<Option<Placed>>, u64)> {
    let mut placed: Vec<Option<Placed>> = (0..flat.entries.len()).map(|_| None).collect();
    // The first block stays unused so that the root does not get nid 0.
    let mut cur = Cursor {
        at: meta_base + BLOCK,
        free: vec![VecDeque::new(); CLASSES],
    };
    for &dir in &flat.dir_order {
        let kids = flat.entries[dir].children.clone();
        let others = kids.filter(|&k| !flat.entries[k].is_dir() && flat.entries[k].first == k);
        for pos in std::iter::once(dir).chain(others) {
            placed[pos] = Some(place_one(flat, pos, &mut cur)?);
        }
    }
    Ok((placed, cur.at))
}

fn place_one(flat: &Flat<'_>, pos: usize, cur: &mut Cursor) -> Result<Placed> {
    let node = flat.entries[pos].node;
    let xattrs = xattr_body(&node.xattrs)?;
    let isz = INODE_SIZE + xattrs.len() as u64;
    let (offset, layout, blkaddr) = match &node.kind {
        NodeKind::Dir(_) => with_data(cur, isz, dir_data(flat, pos, &|_| 0).len() as u64),
        NodeKind::Symlink(t) => with_data(cur, isz, t.len() as u64),
        NodeKind::File(f) => {
            let total = round_up(isz, 8) + 8 * f.chunks.len() as u64;
            let offset = cur.take_free(total).unwrap_or_else(|| cur.bump(total));
            (offset, LAYOUT_CHUNK, 0)
        }
        _ => (cur.bump(isz), LAYOUT_PLAIN, 0),
    };
    cur.at = round_up(cur.at, SLOT);
    let data_blkaddr =
        u32::try_from(blkaddr).map_err(|_| invalid("bootstrap exceeds 2^32 blocks"))?;
    Ok(Placed {
        offset,
        layout,
        data_blkaddr,
        xattrs,
    })
}

/// Places an inode of `isz` bytes with `len` bytes of data (directory
/// blocks, symlink target); returns (offset, layout, data block address).
fn with_data(cur: &mut Cursor, isz: u64, len: u64) -> (u64, u16, u64) {
    let tail = len % BLOCK;
    if tail != 0 && isz + tail <= BLOCK {
        // Tail packing: inode, xattrs and the partial last block must share
        // one block.
        let offset = cur.take_free(isz + tail).unwrap_or_else(|| {
            if BLOCK - cur.at % BLOCK < isz + tail {
                cur.next_block();
            }
            cur.bump(isz + tail)
        });
        if len != tail {
            cur.next_block();
        }
        // With no full block the address is unused; upstream stores the
        // cursor's block there, and so do we.
        let blkaddr = cur.at / BLOCK;
        cur.bump(len - tail);
        (offset, LAYOUT_INLINE, blkaddr)
    } else {
        let total = round_up(isz, SLOT);
        let offset = cur.take_free(total).unwrap_or_else(|| cur.bump(total));
        cur.next_block();
        let blkaddr = cur.at / BLOCK;
        cur.bump(round_up(len, BLOCK));
        (offset, LAYOUT_PLAIN, blkaddr)
    }
}
