//! v6 directories (§3.11): self-contained blocks of 12-byte dirents followed
//! by their names, sorted by name across the whole directory.

use std::cmp::Ordering;

use super::inode::RawInode;
use crate::rafs::bytes::Bytes;
use crate::rafs::error::{RafsError, Result};
use crate::rafs::types::FileKind;

const DIRENT_SIZE: usize = 12;

/// One raw directory entry.
#[derive(Debug, Clone, Copy)]
pub struct RawDirent<'a> {
    pub nid: u64,
    pub name: &'a [u8],
    pub file_type: u8,
}

impl RawDirent<'_> {
    pub fn is_dot_or_dotdot(&self) -> bool {
        self.name == b"." || self.name == b".."
    }

    /// The entry's type, when the dirent records one.
    pub fn kind(&self) -> Option<FileKind> {
        Some(match self.file_type {
            1 => FileKind::Regular,
            2 => FileKind::Directory,
            3 => FileKind::CharDevice,
            4 => FileKind::BlockDevice,
            5 => FileKind::Fifo,
            6 => FileKind::Socket,
            7 => FileKind::Symlink,
            _ => return None,
        })
    }
}

/// One directory block, with its entry count validated.
pub struct DirBlock<'a> {
    b: Bytes<'a>,
    count: usize,
}

impl<'a> DirBlock<'a> {
    pub fn new(b: Bytes<'a>) -> Result<Self> {
        let first = usize::from(b.u16(8)?);
        if first == 0 || first % DIRENT_SIZE != 0 || first > b.data.len() {
            return Err(b.err(
                8,
                format!(
                    "first nameoff {first} is not a valid entry-table size for a {}-byte block",
                    b.data.len()
                ),
            ));
        }
        Ok(DirBlock {
            b,
            count: first / DIRENT_SIZE,
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Entry `j` of the block, with its name checked: non-empty, inside the
    /// block, no `/` and no NUL.
    pub fn entry(&self, j: usize) -> Result<RawDirent<'a>> {
        let off = j * DIRENT_SIZE;
        let b = &self.b;
        let start = usize::from(b.u16(off + 8)?);
        let end = if j + 1 < self.count {
            usize::from(b.u16(off + DIRENT_SIZE + 8)?)
        } else {
            // The last name runs to the first NUL or the block's usable end.
            let rest = b.data.get(start..).unwrap_or(&[]);
            start + rest.iter().position(|&c| c == 0).unwrap_or(rest.len())
        };
        if start < self.count * DIRENT_SIZE || end <= start || end > b.data.len() {
            return Err(b.err(
                off + 8,
                format!("entry {j}: name bytes {start}..{end} are outside the name area"),
            ));
        }
        let name = b.slice(start, end - start)?;
        if name.contains(&b'/') || name.contains(&0) {
            return Err(b.err(
                start,
                format!(
                    "entry {j}: name {:?} contains '/' or NUL",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        Ok(RawDirent {
            nid: b.u64(off)?,
            name,
            file_type: b.u8(off + 10)?,
        })
    }
}

/// The blocks of directory `dir`.
pub struct Dir<'a> {
    file: &'a [u8],
    dir: &'a RawInode,
    block_size: u64,
}

impl<'a> Dir<'a> {
    pub fn new(file: &'a [u8], dir: &'a RawInode, block_size: u64) -> Result<Self> {
        if dir.kind != FileKind::Directory {
            return Err(RafsError::NotFound(format!(
                "nid {} is not a directory",
                dir.nid
            )));
        }
        Ok(Dir {
            file,
            dir,
            block_size,
        })
    }

    pub fn blocks(&self) -> u64 {
        self.dir.data_blocks(self.block_size)
    }

    pub fn block(&self, i: u64) -> Result<DirBlock<'a>> {
        DirBlock::new(self.dir.data_block(self.file, self.block_size, i)?)
    }

    /// Binary search over blocks by first/last name, then within the block
    /// (upstream's algorithm; correct because names are sorted throughout).
    pub fn lookup(&self, name: &[u8]) -> Result<Option<RawDirent<'a>>> {
        let (mut lo, mut hi) = (0, self.blocks());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let block = self.block(mid)?;
            let first = block.entry(0)?;
            let last = block.entry(block.len() - 1)?;
            if name < first.name {
                hi = mid;
            } else if name > last.name {
                lo = mid + 1;
            } else {
                return search_block(&block, name);
            }
        }
        Ok(None)
    }

    /// Calls `f(block, index, entry)` for every entry from position
    /// (`block`, `index`) on, until `f` returns false.
    pub fn for_each_from(
        &self,
        mut block: u64,
        mut index: usize,
        f: &mut dyn FnMut(u64, usize, RawDirent<'a>) -> bool,
    ) -> Result<()> {
        while block < self.blocks() {
            let b = self.block(block)?;
            while index < b.len() {
                if !f(block, index, b.entry(index)?) {
                    return Ok(());
                }
                index += 1;
            }
            block += 1;
            index = 0;
        }
        Ok(())
    }
}

fn search_block<'a>(block: &DirBlock<'a>, name: &[u8]) -> Result<Option<RawDirent<'a>>> {
    let (mut lo, mut hi) = (0, block.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let e = block.entry(mid)?;
        match name.cmp(e.name) {
            Ordering::Less => hi = mid,
            Ordering::Greater => lo = mid + 1,
            Ordering::Equal => return Ok(Some(e)),
        }
    }
    Ok(None)
}
