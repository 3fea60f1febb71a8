//! v6 inodes (§3.7–§3.10, §3.12, §3.13): compact and extended forms, inline
//! and shared xattrs, and the FLAT_PLAIN / FLAT_INLINE data layouts.

use crate::rafs::bytes::Bytes;
use crate::rafs::error::{RafsError, Result};
use crate::rafs::types::{FileKind, Inode};

pub const LAYOUT_FLAT_PLAIN: u16 = 0;
pub const LAYOUT_FLAT_INLINE: u16 = 2;
pub const LAYOUT_CHUNK_BASED: u16 = 4;
const XATTR_IBODY_HEADER: u64 = 12;

/// One decoded on-disk inode, with where it lives.
#[derive(Debug, Clone)]
pub struct RawInode {
    pub nid: u64,
    /// Absolute offset in the bootstrap.
    pub offset: u64,
    pub extended: bool,
    pub layout: u16,
    pub xattr_icount: u16,
    pub mode: u32,
    pub nlink: u32,
    pub size: u64,
    pub u: u32,
    /// The builder's informational inode number.
    pub ino_field: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub kind: FileKind,
}

impl RawInode {
    /// Decodes the inode with `nid` in a meta area starting at `meta_base`.
    pub fn parse(file: &[u8], meta_base: u64, nid: u64) -> Result<Self> {
        let offset = nid
            .checked_mul(32)
            .and_then(|o| o.checked_add(meta_base))
            .ok_or_else(|| RafsError::NotFound(format!("nid {nid} is out of range")))?;
        let head = Bytes::at(file, offset, 32, "v6 inode")?;
        let format = head.u16(0)?;
        if format & 0xFFF0 != 0 {
            return Err(head.err(
                0,
                format!("nid {nid}: format {format:#x} has reserved bits set"),
            ));
        }
        let extended = format & 1 != 0;
        let layout = (format >> 1) & 7;
        let b = if extended {
            Bytes::at(file, offset, 64, "v6 extended inode")?
        } else {
            head
        };
        let mode = u32::from(b.u16(4)?);
        let kind = FileKind::from_mode(mode)
            .ok_or_else(|| b.err(4, format!("nid {nid}: mode {mode:#o} has no file type")))?;
        let mut inode = RawInode {
            nid,
            offset,
            extended,
            layout,
            xattr_icount: b.u16(2)?,
            mode,
            nlink: 0,
            size: 0,
            u: b.u32(16)?,
            ino_field: b.u32(20)?,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            kind,
        };
        if extended {
            inode.size = b.u64(8)?;
            inode.uid = b.u32(24)?;
            inode.gid = b.u32(28)?;
            inode.mtime = i64::from_le_bytes(b.array(32)?);
            inode.mtime_nsec = b.u32(40)?;
            inode.nlink = b.u32(44)?;
        } else {
            inode.nlink = u32::from(b.u16(6)?);
            inode.size = u64::from(b.u32(8)?);
            inode.uid = u32::from(b.u16(24)?);
            inode.gid = u32::from(b.u16(26)?);
        }
        let layout_ok = match kind {
            FileKind::Regular => layout == LAYOUT_CHUNK_BASED,
            FileKind::Directory | FileKind::Symlink => {
                layout == LAYOUT_FLAT_PLAIN || layout == LAYOUT_FLAT_INLINE
            }
            _ => layout == LAYOUT_FLAT_PLAIN,
        };
        if !layout_ok {
            return Err(b.err(
                0,
                format!("nid {nid}: data layout {layout} is not valid for a {kind:?}"),
            ));
        }
        if kind == FileKind::Symlink && inode.size == 0 {
            return Err(b.err(8, format!("nid {nid}: symlink with an empty target")));
        }
        // The inode and its xattr area must be inside the file.
        Bytes::at(file, offset, inode.body_size(), "v6 inode xattr area")?;
        Ok(inode)
    }

    pub fn inode_size(&self) -> u64 {
        if self.extended {
            64
        } else {
            32
        }
    }

    pub fn xattr_size(&self) -> u64 {
        match self.xattr_icount {
            0 => 0,
            n => XATTR_IBODY_HEADER + 4 * (u64::from(n) - 1),
        }
    }

    /// Inode plus xattr area: where inline data starts, relative to `offset`.
    pub fn body_size(&self) -> u64 {
        self.inode_size() + self.xattr_size()
    }

    /// The consumer's view. `ino` is the nid (upstream's st_ino).
    pub fn to_inode(&self) -> Inode {
        let rdev = match self.kind {
            FileKind::CharDevice | FileKind::BlockDevice if self.extended => u64::from(self.u),
            _ => 0,
        };
        Inode {
            ino: self.nid,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            nlink: self.nlink,
            size: self.size,
            mtime: self.mtime,
            mtime_nsec: self.mtime_nsec,
            rdev,
            has_xattr: self.xattr_icount > 0,
        }
    }

    /// Number of data blocks of a directory or symlink.
    pub fn data_blocks(&self, block_size: u64) -> u64 {
        self.size.div_ceil(block_size)
    }

    /// The bytes of data block `i` (§3.10): the last block is shorter when
    /// the size is not a block multiple, and with FLAT_INLINE it sits right
    /// after the inode and its xattrs.
    pub fn data_block<'f>(&self, file: &'f [u8], block_size: u64, i: u64) -> Result<Bytes<'f>> {
        let nblocks = self.data_blocks(block_size);
        if i >= nblocks {
            return Err(RafsError::NotFound(format!(
                "nid {}: data block {i} of {nblocks}",
                self.nid
            )));
        }
        let last = i + 1 == nblocks;
        let len = if last {
            self.size - i * block_size
        } else {
            block_size
        };
        if last && len != block_size && self.layout == LAYOUT_FLAT_INLINE {
            return Bytes::at(
                file,
                self.offset + self.body_size(),
                len,
                "v6 inline tail data",
            );
        }
        let start = u64::from(self.u)
            .checked_add(i)
            .and_then(|b| b.checked_mul(block_size))
            .ok_or_else(|| {
                RafsError::corrupt(
                    "v6 inode",
                    self.offset + 16,
                    format!("nid {}: data block address overflows", self.nid),
                )
            })?;
        Bytes::at(file, start, len, "v6 data block")
    }

    /// The whole data of a directory or symlink, block by block.
    pub fn data(&self, file: &[u8], block_size: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for i in 0..self.data_blocks(block_size) {
            out.extend_from_slice(self.data_block(file, block_size, i)?.data);
        }
        Ok(out)
    }
}
