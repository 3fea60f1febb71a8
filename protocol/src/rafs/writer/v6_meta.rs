//! Encoders for the pieces of the v6 meta area: extended inodes (§3.8),
//! inline xattr bodies (§3.9) and directory blocks (§3.11).

use super::flat::lossy;
use super::invalid;
use crate::rafs::bytes::PutLe;
use crate::rafs::error::Result;

pub(super) const BLOCK: u64 = 4096;
pub(super) const INODE_SIZE: u64 = 64;
pub(super) const LAYOUT_PLAIN: u16 = 0;
pub(super) const LAYOUT_INLINE: u16 = 2;
pub(super) const LAYOUT_CHUNK: u16 = 4;
const DIRENT_SIZE: usize = 12;

/// EROFS name indexes in upstream's matching order; the acl names are
/// complete names (empty suffix).
const XATTR_PREFIXES: [(&[u8], u8, bool); 5] = [
    (b"user.", 1, false),
    (b"system.posix_acl_access", 2, true),
    (b"system.posix_acl_default", 3, true),
    (b"trusted.", 4, false),
    (b"security.", 6, false),
];

/// Splits a full xattr name into (EROFS name index, suffix); names outside
/// the namespaces RAFS can store are an error, as upstream refuses them.
pub(super) fn split_xattr_name(name: &[u8]) -> Result<(u8, &[u8])> {
    for (prefix, index, exact) in XATTR_PREFIXES {
        if let Some(suffix) = name.strip_prefix(prefix) {
            if exact && !suffix.is_empty() {
                continue;
            }
            return Ok((index, suffix));
        }
    }
    Err(invalid(format!(
        "xattr {:?}: only user.*, trusted.*, security.* and system.posix_acl_{{access,default}} can be stored",
        lossy(name)
    )))
}

/// The inline xattr area (12-byte header + 4-aligned entries, sorted by
/// name for reproducibility), empty when there are no xattrs.
pub(super) fn xattr_body(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>> {
    if xattrs.is_empty() {
        return Ok(Vec::new());
    }
    let mut pairs: Vec<&(Vec<u8>, Vec<u8>)> = xattrs.iter().collect();
    pairs.sort();
    let mut out = vec![0u8; 12];
    for (name, value) in pairs {
        let (index, suffix) = split_xattr_name(name)?;
        let (Ok(name_len), Ok(value_len)) =
            (u8::try_from(suffix.len()), u16::try_from(value.len()))
        else {
            return Err(invalid(format!(
                "xattr {:?} is too long for an EROFS entry",
                lossy(name)
            )));
        };
        out.put_u8(name_len);
        out.put_u8(index);
        out.put_u16(value_len);
        out.extend_from_slice(suffix);
        out.extend_from_slice(value);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    if (out.len() - 12) / 4 + 1 > u16::MAX as usize {
        return Err(invalid(
            "xattrs of one inode exceed the 256 KiB EROFS inline limit",
        ));
    }
    Ok(out)
}

/// `xattr_icount` for an xattr area of `len` bytes.
pub(super) fn xattr_icount(len: usize) -> u16 {
    if len == 0 {
        0
    } else {
        ((len - 12) / 4 + 1) as u16
    }
}

/// One directory entry before blocking.
pub(super) struct Dirent<'a> {
    pub name: &'a [u8],
    pub nid: u64,
    pub file_type: u8,
}

/// Directory data for entries already sorted by name (`.`/`..` included):
/// self-contained blocks, all but the last padded to 4096 bytes.
pub(super) fn dir_blocks(entries: &[Dirent<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        // Take as many entries as fit in one block.
        let mut end = start;
        let mut used = 0;
        while end < entries.len() {
            let need = DIRENT_SIZE + entries[end].name.len();
            if used + need > BLOCK as usize {
                break;
            }
            used += need;
            end += 1;
        }
        let block_start = out.len();
        let mut nameoff = (end - start) * DIRENT_SIZE;
        for e in &entries[start..end] {
            out.put_u64(e.nid);
            out.put_u16(nameoff as u16);
            out.put_u8(e.file_type);
            out.put_u8(0);
            nameoff += e.name.len();
        }
        for e in &entries[start..end] {
            out.extend_from_slice(e.name);
        }
        start = end;
        if start < entries.len() {
            out.resize(block_start + BLOCK as usize, 0);
        }
    }
    out
}

/// EROFS dirent file type of a mode.
pub(super) fn file_type(mode: u32) -> u8 {
    match mode & 0o170000 {
        0o100000 => 1,
        0o040000 => 2,
        0o020000 => 3,
        0o060000 => 4,
        0o010000 => 5,
        0o140000 => 6,
        0o120000 => 7,
        _ => 0,
    }
}

/// Fields of one extended inode.
pub(super) struct InodeFields {
    pub layout: u16,
    pub xattr_icount: u16,
    pub mode: u32,
    pub size: u64,
    pub u: u32,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub nlink: u32,
}

/// Writes a 64-byte extended inode into `dst`.
pub(super) fn put_inode(dst: &mut Vec<u8>, f: &InodeFields) {
    dst.put_u16(1 | (f.layout << 1));
    dst.put_u16(f.xattr_icount);
    dst.put_u16(f.mode as u16);
    dst.put_u16(0);
    dst.put_u64(f.size);
    dst.put_u32(f.u);
    dst.put_u32(f.ino);
    dst.put_u32(f.uid);
    dst.put_u32(f.gid);
    dst.put_u64(f.mtime as u64);
    dst.put_u32(f.mtime_nsec);
    dst.put_u32(f.nlink);
    dst.put_zeros(16);
}
