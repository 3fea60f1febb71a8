//! RAFS v5 reader (format doc §2).
//!
//! `open` validates the superblock and every table (O(tables)); inode
//! records are validated each time they are decoded, so a lookup or readdir
//! on a corrupt record is an error naming its offset, never a panic.

mod digest;
mod dump;
mod inode;
mod layout;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;

use super::error::{RafsError, Result};
use super::types::{BlobInfo, ChunkRef, DirEntry, FileKind, FsVersion, Inode, SuperInfo};
use super::{Backing, Reader};

pub use dump::structures;
use inode::{Limits, Record};
use layout::{BlobEntry, SuperBlock, FLAG_EXPLICIT_UID_GID, FLAG_HAS_XATTR};

/// Whether `bytes` start like a v5 bootstrap (§1.6).
pub fn detect(bytes: &[u8]) -> bool {
    bytes.get(0..4) == Some(&layout::MAGIC.to_le_bytes()[..])
        && bytes.get(4..8) == Some(&layout::VERSION.to_le_bytes()[..])
}

/// A validated v5 bootstrap. Inode numbers are the stored `ino` values
/// (root 1); every name of a hardlinked file reports the same number.
pub struct V5Reader {
    backing: Backing,
    sb: SuperBlock,
    info: SuperInfo,
    blob_entries: Vec<BlobEntry>,
    blobs: Vec<BlobInfo>,
    prefetch: Vec<u64>,
}

impl V5Reader {
    pub fn open(backing: Backing) -> Result<Self> {
        let file: &[u8] = (*backing).as_ref();
        let sb = SuperBlock::parse(file)?;
        layout::check_inode_table(file, &sb)?;
        let prefetch = layout::parse_prefetch_table(file, &sb)?;
        let blob_entries = layout::parse_blob_table(file, &sb)?;
        let blobs = layout::blob_infos(file, &sb, &blob_entries)?;
        let info = SuperInfo {
            version: FsVersion::V5,
            flags: sb.flags,
            block_size: 4096,
            chunk_size: sb.chunk_size,
            compressor: sb.compressor(),
            digester: sb.digester(),
            inode_count: sb.inodes_count,
            root_ino: 1,
            explicit_uidgid: sb.flags & FLAG_EXPLICIT_UID_GID != 0,
            has_xattr: sb.flags & FLAG_HAS_XATTR != 0,
        };
        let reader = V5Reader {
            backing,
            sb,
            info,
            blob_entries,
            blobs,
            prefetch,
        };
        let root = reader.slot(1)?;
        if root.kind != FileKind::Directory || root.ino != 1 {
            return Err(RafsError::corrupt(
                "v5 inode",
                root.offset,
                format!(
                    "root (slot 1) is {:?} with ino {}, expected a directory with ino 1",
                    root.kind, root.ino
                ),
            ));
        }
        Ok(reader)
    }

    fn file(&self) -> &[u8] {
        (*self.backing).as_ref()
    }

    fn limits(&self) -> Limits {
        Limits {
            inode_table_entries: self.sb.inode_table_entries,
            chunk_size: self.sb.chunk_size,
        }
    }

    /// Number of inode-table slots (directory entries, root included).
    pub fn slot_count(&self) -> u32 {
        self.sb.inode_table_entries
    }

    /// Absolute offset of the record of slot `slot` (1-based).
    fn slot_offset(&self, slot: u64) -> Result<u64> {
        if slot == 0 || slot > u64::from(self.sb.inode_table_entries) {
            return Err(RafsError::NotFound(format!("v5 inode slot {slot}")));
        }
        let at = self.sb.inode_table_offset + (slot - 1) * 4;
        let t = super::bytes::Bytes::at(self.file(), at, 4, "v5 inode table")?;
        Ok(u64::from(t.u32(0)?) << 3)
    }

    /// The record in slot `slot`, decoded and validated.
    fn slot(&self, slot: u64) -> Result<Record<'_>> {
        let off = self.slot_offset(slot)?;
        Record::parse(self.file(), off, slot == 1, self.limits())
    }

    /// The record that inode number `ino` stands for: slot `ino`, whose
    /// stored ino must be `ino` (later hardlink names point back to it).
    fn record(&self, ino: u64) -> Result<Record<'_>> {
        let rec = self.slot(ino)?;
        if rec.ino != ino {
            return Err(RafsError::corrupt(
                "v5 inode",
                rec.offset + 40,
                format!(
                    "slot {ino} holds ino {}; inode {ino} has no record of its own",
                    rec.ino
                ),
            ));
        }
        Ok(rec)
    }

    fn dir(&self, ino: u64) -> Result<Record<'_>> {
        let rec = self.record(ino)?;
        if rec.kind != FileKind::Directory {
            return Err(RafsError::NotFound(format!(
                "v5 inode {ino} is not a directory"
            )));
        }
        Ok(rec)
    }

    /// The `k`-th child of `dir`, checked against its parent.
    fn child(&self, dir: &Record<'_>, k: u32) -> Result<Record<'_>> {
        let slot = u64::from(dir.child_index) + u64::from(k);
        let rec = self.slot(slot)?;
        if rec.parent != dir.ino {
            return Err(RafsError::corrupt(
                "v5 inode",
                rec.offset + 32,
                format!(
                    "parent {} but listed under directory {}",
                    rec.parent, dir.ino
                ),
            ));
        }
        // Only regular files may share an inode number (hardlinks, §2.14).
        if rec.ino != slot && rec.kind != FileKind::Regular {
            return Err(RafsError::corrupt(
                "v5 inode",
                rec.offset + 40,
                format!("{:?} in slot {slot} claims ino {}", rec.kind, rec.ino),
            ));
        }
        Ok(rec)
    }

    /// Every distinct record with its first slot, in slot order (for dump
    /// and digest checks, which look at records rather than the tree).
    fn records(&self) -> Result<Vec<(u64, Record<'_>)>> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for slot in 1..=u64::from(self.sb.inode_table_entries) {
            let off = self.slot_offset(slot)?;
            if seen.insert(off) {
                out.push((
                    slot,
                    Record::parse(self.file(), off, slot == 1, self.limits())?,
                ));
            }
        }
        Ok(out)
    }

    /// Blob-level readahead ranges from the blob table, by blob index.
    pub fn blob_readahead(&self) -> Vec<(u32, u32)> {
        self.blob_entries
            .iter()
            .map(|e| (e.readahead_offset, e.readahead_size))
            .collect()
    }
}

impl Reader for V5Reader {
    fn super_info(&self) -> &SuperInfo {
        &self.info
    }

    fn blobs(&self) -> &[BlobInfo] {
        &self.blobs
    }

    fn inode(&self, ino: u64) -> Result<Inode> {
        Ok(self.record(ino)?.to_inode())
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<u64>> {
        let dir = self.dir(parent)?;
        if super::walk::name_problem(name).is_some() {
            return Ok(None);
        }
        // Children are sorted by name in byte order (§2.12, §2.13).
        let (mut lo, mut hi) = (0u32, dir.child_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let child = self.child(&dir, mid)?;
            match child.name.cmp(name) {
                Ordering::Equal => return Ok(Some(child.ino)),
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    fn readdir(
        &self,
        ino: u64,
        offset: u64,
        sink: &mut dyn FnMut(DirEntry<'_>, u64) -> bool,
    ) -> Result<()> {
        let dir = self.dir(ino)?;
        let start = u32::try_from(offset).unwrap_or(u32::MAX);
        let mut prev: Option<&[u8]> = None;
        for k in start..dir.child_count {
            let child = self.child(&dir, k)?;
            if prev.is_some_and(|p| p >= child.name) {
                return Err(RafsError::corrupt(
                    "v5 inode name",
                    child.offset + 128,
                    format!("children of directory {ino} are not sorted by name"),
                ));
            }
            prev = Some(child.name);
            let entry = DirEntry {
                name: child.name,
                ino: child.ino,
                kind: child.kind,
            };
            if !sink(entry, u64::from(k) + 1) {
                break;
            }
        }
        Ok(())
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let rec = self.record(ino)?;
        if rec.kind != FileKind::Symlink {
            return Err(RafsError::NotFound(format!(
                "v5 inode {ino} is not a symlink"
            )));
        }
        Ok(rec.symlink.to_vec())
    }

    fn xattrs(&self, ino: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.record(ino)?.xattr_pairs()
    }

    fn chunks(&self, ino: u64) -> Result<Vec<ChunkRef>> {
        let rec = self.record(ino)?;
        if rec.kind != FileKind::Regular {
            return Err(RafsError::NotFound(format!(
                "v5 inode {ino} is not a regular file"
            )));
        }
        rec.chunks(self.file(), &self.blobs, self.limits())
    }

    fn prefetch_inodes(&self) -> Result<Vec<u64>> {
        Ok(self.prefetch.clone())
    }
}
