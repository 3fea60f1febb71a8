//! v6 extended attributes (§3.9): the inline ibody and, EROFS-style, shared
//! entries in the xattr block area.

use super::inode::RawInode;
use crate::rafs::bytes::Bytes;
use crate::rafs::error::Result;

const IBODY_HEADER: usize = 12;
const ENTRY_HEADER: usize = 4;

/// A full xattr name and its value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// Full attribute name prefix of an EROFS name index.
fn prefix(index: u8) -> Option<&'static [u8]> {
    Some(match index {
        1 => b"user.",
        2 => b"system.posix_acl_access",
        3 => b"system.posix_acl_default",
        4 => b"trusted.",
        6 => b"security.",
        _ => return None,
    })
}

/// Decodes one entry at relative offset `off` of `b`; returns the
/// (name, value) pair and the 4-byte-aligned entry length.
fn entry(b: &Bytes<'_>, off: usize) -> Result<(Xattr, usize)> {
    let name_len = usize::from(b.u8(off)?);
    let index = b.u8(off + 1)?;
    let value_len = usize::from(b.u16(off + 2)?);
    let pre =
        prefix(index).ok_or_else(|| b.err(off + 1, format!("unknown xattr name index {index}")))?;
    let suffix = b.slice(off + ENTRY_HEADER, name_len)?;
    let value = b.slice(off + ENTRY_HEADER + name_len, value_len)?;
    let mut name = pre.to_vec();
    name.extend_from_slice(suffix);
    if name.contains(&0) {
        return Err(b.err(off + ENTRY_HEADER, "xattr name contains a NUL byte"));
    }
    let len = (ENTRY_HEADER + name_len + value_len).next_multiple_of(4);
    Ok(((name, value.to_vec()), len))
}

/// All xattrs of `inode`. Shared entries (unused by RAFS builders, but valid
/// EROFS) are read from the xattr area at `xattr_blkaddr`.
pub fn xattrs(file: &[u8], inode: &RawInode, xattr_base: Option<u64>) -> Result<Vec<Xattr>> {
    let size = inode.xattr_size();
    if size == 0 {
        return Ok(Vec::new());
    }
    let b = Bytes::at(
        file,
        inode.offset + inode.inode_size(),
        size,
        "v6 inline xattr area",
    )?;
    let shared = usize::from(b.u8(4)?);
    let mut out = Vec::new();
    for i in 0..shared {
        let id = u64::from(b.u32(IBODY_HEADER + 4 * i)?);
        let base = xattr_base.ok_or_else(|| {
            b.err(
                4,
                format!(
                    "nid {}: shared xattrs but the superblock has no xattr area",
                    inode.nid
                ),
            )
        })?;
        let at = base
            .checked_add(id * 4)
            .ok_or_else(|| b.err(IBODY_HEADER + 4 * i, "shared xattr id out of range"))?;
        // An entry is at most 4 + 255 + 65535 bytes; clip to the file.
        let avail = (file.len() as u64)
            .saturating_sub(at)
            .min(ENTRY_HEADER as u64 + 255 + 65535);
        let sb = Bytes::at(file, at, avail, "v6 shared xattr entry")?;
        out.push(entry(&sb, 0)?.0);
    }
    let mut off = IBODY_HEADER + 4 * shared;
    if off > b.data.len() {
        return Err(b.err(
            4,
            format!("{shared} shared xattr ids do not fit the {size}-byte area"),
        ));
    }
    while off < b.data.len() {
        let (pair, len) = entry(&b, off)?;
        if off + len > b.data.len() {
            return Err(b.err(off, "xattr entry runs past the end of the area"));
        }
        out.push(pair);
        off += len;
    }
    Ok(out)
}
