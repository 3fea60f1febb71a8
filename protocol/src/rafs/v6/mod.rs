//! RAFS v6: an EROFS image with a RAFS extension (format doc §3).
//!
//! `V6Reader::open` validates the fixed structures and tables up front (the
//! chunk table's records on first use, see `ChunkTable`);
//! inodes and directories are decoded on demand from the backing bytes.
//! Inode numbers are nids, as upstream `nydusd` reports them (so hardlinks,
//! which share a nid, share an inode number).

mod blob_entry;
mod chunks;
mod dir;
mod dump;
mod inode;
mod layout;
mod xattr;

pub use blob_entry::BlobExtra;
pub use dump::structures;

use self::chunks::{ChunkKey, ChunkTable};
use self::dir::Dir;
use self::inode::RawInode;
use self::layout::{DeviceSlot, ErofsSuper, ExtSuper};
use super::error::{RafsError, Result};
use super::types::{
    BlobInfo, ChunkInfo, ChunkRef, DirEntry, FileKind, FsVersion, Inode, SuperInfo,
};
use super::{Backing, Reader};

/// Readdir positions are `block << 16 | entry`: a block holds at most
/// 4096 / 12 entries, so 16 bits suffice and resuming needs no scan.
const POS_SHIFT: u32 = 16;

/// Read access to a v6 bootstrap.
pub struct V6Reader {
    backing: Backing,
    info: SuperInfo,
    sb: ErofsSuper,
    ext: ExtSuper,
    devices: Vec<DeviceSlot>,
    blobs: Vec<BlobInfo>,
    blob_extra: Vec<BlobExtra>,
    chunk_table: ChunkTable,
    prefetch: Vec<u64>,
}

impl V6Reader {
    /// Opens and validates a v6 bootstrap, refusing variants this
    /// implementation does not serve (tarfs, encryption, zran, batch, …).
    pub fn open(backing: Backing) -> Result<Self> {
        Self::parse(backing, true)
    }

    /// Like `open`, but decodes refused variants too (for inspection only:
    /// their data cannot be read).
    pub fn open_for_inspection(backing: Backing) -> Result<Self> {
        Self::parse(backing, false)
    }

    fn parse(backing: Backing, strict: bool) -> Result<Self> {
        let file: &[u8] = (*backing).as_ref();
        let sb = ErofsSuper::parse(file)?;
        let ext = ExtSuper::parse(file, &sb, strict)?;
        let devices = layout::parse_devices(file, &sb)?;
        let count = ext.blob_count();
        if count != devices.len() as u64 {
            return Err(RafsError::corrupt(
                "EROFS superblock",
                1024 + 86,
                format!(
                    "{} device slots but the blob table has {count} entries",
                    devices.len()
                ),
            ));
        }
        let mut blobs = Vec::new();
        let mut blob_extra = Vec::new();
        for i in 0..count as u32 {
            let (blob, extra) = blob_entry::parse_blob(file, &ext, i, strict)?;
            blobs.push(blob);
            blob_extra.push(extra);
        }
        let block_size = sb.block_size();
        let chunk_table = ChunkTable::new(
            ext.chunk_table_offset,
            ext.chunk_table_size,
            ext.chunk_size,
            block_size,
        );
        let mut reader = V6Reader {
            info: SuperInfo {
                version: FsVersion::V6,
                flags: ext.flags,
                block_size: block_size as u32,
                chunk_size: ext.chunk_size,
                compressor: ext.compressor(),
                digester: ext.digester(),
                inode_count: sb.inos,
                root_ino: u64::from(sb.root_nid),
                explicit_uidgid: ext.flags & 0x10 != 0,
                has_xattr: ext.flags & 0x20 != 0,
            },
            backing: backing.clone(),
            sb,
            ext,
            devices,
            blobs,
            blob_extra,
            chunk_table,
            prefetch: Vec::new(),
        };
        let root = reader.raw(reader.info.root_ino)?;
        if root.kind != FileKind::Directory {
            return Err(RafsError::corrupt(
                "v6 inode",
                root.offset,
                "the root is not a directory",
            ));
        }
        reader.prefetch = reader.load_prefetch()?;
        Ok(reader)
    }

    fn file(&self) -> &[u8] {
        (*self.backing).as_ref()
    }

    fn meta_base(&self) -> u64 {
        u64::from(self.sb.meta_blkaddr) * self.sb.block_size()
    }

    fn raw(&self, nid: u64) -> Result<RawInode> {
        RawInode::parse(self.file(), self.meta_base(), nid)
    }

    fn load_prefetch(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        let start = self.ext.prefetch_table_offset;
        for i in 0..u64::from(self.ext.prefetch_table_size) / 4 {
            let at = start + i * 4;
            let b = super::bytes::Bytes::at(self.file(), at, 4, "v6 prefetch table")?;
            let nid = u64::from(b.u32(0)?);
            if nid == 0 {
                break;
            }
            self.raw(nid).map_err(|e| {
                RafsError::corrupt("v6 prefetch table", at, format!("nid {nid}: {e}"))
            })?;
            out.push(nid);
        }
        Ok(out)
    }

    /// Raw blob-entry fields not in `BlobInfo`, by blob index.
    pub fn blob_extra(&self) -> &[BlobExtra] {
        &self.blob_extra
    }

    /// The builder's informational inode number of `ino` (the on-disk `ino`
    /// field; shared by hardlinks).
    pub fn stored_ino(&self, ino: u64) -> Result<u32> {
        Ok(self.raw(ino)?.ino_field)
    }

    /// The bootstrap chunk table's descriptor for a chunk, if it has one.
    pub fn chunk_table_entry(&self, key: ChunkKey) -> Result<Option<ChunkInfo>> {
        self.chunk_table.get(self.file(), &self.blobs, key)
    }
}

impl Reader for V6Reader {
    fn super_info(&self) -> &SuperInfo {
        &self.info
    }

    fn blobs(&self) -> &[BlobInfo] {
        &self.blobs
    }

    fn inode(&self, ino: u64) -> Result<Inode> {
        Ok(self.raw(ino)?.to_inode())
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<u64>> {
        let dir = self.raw(parent)?;
        Ok(Dir::new(self.file(), &dir, self.sb.block_size())?
            .lookup(name)?
            .map(|e| e.nid))
    }

    fn readdir(
        &self,
        ino: u64,
        offset: u64,
        sink: &mut dyn FnMut(DirEntry<'_>, u64) -> bool,
    ) -> Result<()> {
        let raw = self.raw(ino)?;
        let dir = Dir::new(self.file(), &raw, self.sb.block_size())?;
        let (block, index) = (
            offset >> POS_SHIFT,
            (offset & ((1 << POS_SHIFT) - 1)) as usize,
        );
        let mut failed = None;
        dir.for_each_from(block, index, &mut |b, j, e| {
            if e.is_dot_or_dotdot() {
                return true;
            }
            let kind = match e.kind() {
                Some(k) => k,
                None => match self.raw(e.nid) {
                    Ok(child) => child.kind,
                    Err(err) => {
                        failed = Some(err);
                        return false;
                    }
                },
            };
            let next = (b << POS_SHIFT) | (j as u64 + 1);
            sink(
                DirEntry {
                    name: e.name,
                    ino: e.nid,
                    kind,
                },
                next,
            )
        })?;
        failed.map_or(Ok(()), Err)
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let raw = self.raw(ino)?;
        if raw.kind != FileKind::Symlink {
            return Err(RafsError::NotFound(format!("inode {ino} is not a symlink")));
        }
        raw.data(self.file(), self.sb.block_size())
    }

    fn xattrs(&self, ino: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let raw = self.raw(ino)?;
        let base = (self.sb.xattr_blkaddr != 0)
            .then(|| u64::from(self.sb.xattr_blkaddr) * self.sb.block_size());
        xattr::xattrs(self.file(), &raw, base)
    }

    fn chunks(&self, ino: u64) -> Result<Vec<ChunkRef>> {
        let raw = self.raw(ino)?;
        if raw.kind != FileKind::Regular {
            return Err(RafsError::NotFound(format!(
                "inode {ino} is not a regular file"
            )));
        }
        chunks::file_chunks(
            self.file(),
            &raw,
            &self.blobs,
            self.ext.chunk_size,
            &self.chunk_table,
        )
    }

    fn prefetch_inodes(&self) -> Result<Vec<u64>> {
        Ok(self.prefetch.clone())
    }

    fn index_chunks(&self) -> Result<()> {
        self.chunk_table.index(self.file(), &self.blobs).map(|_| ())
    }

    fn index_source(&self) -> Option<std::ops::Range<u64>> {
        let range = self.chunk_table.byte_range();
        (!range.is_empty()).then_some(range)
    }
}

#[cfg(test)]
mod tests;
