//! The manifest of an image: the lines `shared/scripts/manifest.py` prints
//! for a mount of it, so an image can be diffed against its source tree.
//!
//! Mirrors what a mount shows (format doc §7.3): the root's permission bits
//! are 0755; without EXPLICIT_UID_GID every entry has the daemon's uid/gid;
//! without HAS_XATTR there are no xattrs. Stored mtimes are printed as they
//! are (a mount would show the daemon start time for 0).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::error::{RafsError, Result};
use super::file::ChunkReader;
use super::types::{FileKind, Inode};
use super::walk::{walk, Entry};
use super::Reader;

/// What the manifest cannot learn from the image.
#[derive(Debug, Clone, Copy)]
pub struct ManifestOptions {
    /// uid/gid reported for every entry when the image does not store them
    /// (the daemon's euid/egid).
    pub default_uid: u32,
    pub default_gid: u32,
}

/// Manifest lines (no trailing newlines) and the entries that failed to read.
pub struct Manifest {
    pub lines: Vec<String>,
    /// One line per file whose content could not be read; its sha256 field
    /// is "!EIO", as manifest.py prints a failed read.
    pub errors: Vec<String>,
}

struct Item {
    path: Vec<u8>,
    inode: Inode,
    target: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Builds the manifest. `data` reads file contents for the sha256 field;
/// without it the field is "*" (as `manifest.py --ignore sha256`).
pub fn manifest(
    reader: &dyn Reader,
    data: Option<&ChunkReader<'_>>,
    opts: &ManifestOptions,
) -> Result<Manifest> {
    let info = reader.super_info().clone();
    let mut items = Vec::new();
    walk(reader, &mut |e: &Entry<'_>| {
        let kind = e.inode.kind();
        let target = match kind {
            Some(FileKind::Symlink) => Some(reader.readlink(e.inode.ino)?),
            _ => None,
        };
        let xattrs = if info.has_xattr {
            reader.xattrs(e.inode.ino)?
        } else {
            Vec::new()
        };
        let mut path = b".".to_vec();
        if e.depth > 0 {
            path.extend_from_slice(e.path);
        }
        items.push(Item {
            path,
            inode: e.inode.clone(),
            target,
            xattrs,
        });
        Ok(())
    })?;
    items.sort_by(|a, b| a.path.cmp(&b.path));

    // Hardlink groups: non-directories sharing an inode number.
    let mut groups: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        if it.inode.kind() != Some(FileKind::Directory) {
            groups.entry(it.inode.ino).or_default().push(i);
        }
    }
    let mut link: HashMap<usize, String> = HashMap::new();
    for members in groups.values().filter(|m| m.len() > 1) {
        // Items are sorted, so the first member has the smallest path.
        let first = members
            .first()
            .and_then(|&i| items.get(i))
            .map(|it| esc(&it.path));
        for &i in members {
            link.insert(i, first.clone().unwrap_or_default());
        }
    }

    let mut hashes: HashMap<u64, String> = HashMap::new();
    let mut lines = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let ino = &it.inode;
        let kind = ino.kind();
        let sha = match (kind, data) {
            (Some(FileKind::Regular), None) => "*".to_string(),
            (Some(FileKind::Regular), Some(chunks)) => match hashes.get(&ino.ino) {
                Some(h) => h.clone(),
                None => {
                    let h = match file_sha256(reader, chunks, ino) {
                        Ok(d) => hex::encode(d),
                        Err(e) => {
                            errors.push(format!("{}: {e}", esc(&it.path)));
                            "!EIO".to_string()
                        }
                    };
                    hashes.insert(ino.ino, h.clone());
                    h
                }
            },
            _ => "-".to_string(),
        };
        let is_root = it.path == b".";
        let perm = if is_root { 0o755 } else { ino.mode & 0o7777 };
        let (uid, gid) = if info.explicit_uidgid {
            (ino.uid, ino.gid)
        } else {
            (opts.default_uid, opts.default_gid)
        };
        let rdev = match kind {
            Some(FileKind::CharDevice | FileKind::BlockDevice) => {
                let (major, minor) = major_minor(ino.rdev);
                format!("{major}:{minor}")
            }
            _ => "-".to_string(),
        };
        lines.push(format!(
            "{} type={} mode={perm:04o} uid={uid} gid={gid} size={} mtime={} sha256={sha} target={} rdev={rdev} xattr={} link={}",
            esc(&it.path),
            type_name(kind),
            if kind == Some(FileKind::Regular) { ino.size.to_string() } else { "-".into() },
            ino.mtime,
            it.target.as_deref().map(esc).unwrap_or_else(|| "-".into()),
            xattr_field(&it.xattrs),
            link.get(&i).map(String::as_str).unwrap_or("-"),
        ));
    }
    Ok(Manifest { lines, errors })
}

/// SHA-256 of a regular file's content, read chunk by chunk with digest
/// and CRC checks; bytes no chunk covers (v5 HAS_HOLE) read as zero.
pub fn file_sha256(
    reader: &dyn Reader,
    chunks: &ChunkReader<'_>,
    inode: &Inode,
) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut pos = 0u64;
    for r in reader.chunks(inode.ino)? {
        if r.file_offset < pos {
            return Err(data_err(
                inode,
                format!("chunk at {:#x} overlaps the previous one", r.file_offset),
            ));
        }
        if r.file_offset > inode.size {
            return Err(data_err(
                inode,
                format!(
                    "chunk at {:#x} is past the size {}",
                    r.file_offset, inode.size
                ),
            ));
        }
        zeros(&mut h, r.file_offset - pos);
        let info = chunks.resolve(&r)?;
        let bytes = chunks.read_chunk(&info, true)?;
        h.update(&bytes);
        pos = r.file_offset.saturating_add(bytes.len() as u64);
    }
    if pos > inode.size {
        return Err(data_err(
            inode,
            format!("chunks end at {pos:#x}, past the size {}", inode.size),
        ));
    }
    zeros(&mut h, inode.size - pos);
    Ok(h.finalize().into())
}

fn zeros(h: &mut Sha256, mut n: u64) {
    const Z: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(Z.len() as u64);
        h.update(&Z[..k as usize]);
        n -= k;
    }
}

fn data_err(inode: &Inode, reason: String) -> RafsError {
    RafsError::Codec(format!("inode {}: {reason}", inode.ino))
}

fn type_name(kind: Option<FileKind>) -> &'static str {
    match kind {
        Some(FileKind::Directory) => "dir",
        Some(FileKind::Regular) => "file",
        Some(FileKind::Symlink) => "symlink",
        Some(FileKind::Fifo) => "fifo",
        Some(FileKind::CharDevice) => "chr",
        Some(FileKind::BlockDevice) => "blk",
        Some(FileKind::Socket) => "sock",
        None => "unknown",
    }
}

/// glibc's major()/minor() of a `dev_t`.
pub fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

fn xattr_field(xattrs: &[(Vec<u8>, Vec<u8>)]) -> String {
    if xattrs.is_empty() {
        return "-".into();
    }
    let mut sorted: Vec<_> = xattrs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(n, v)| format!("{}:{}", esc(n), hex::encode(Sha256::digest(v))))
        .collect::<Vec<_>>()
        .join(",")
}

/// manifest.py's escaping: bytes outside 0x21..=0x7e and the backslash as \xHH.
pub fn esc(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if (0x21..=0x7e).contains(&c) && c != b'\\' {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_devices() {
        assert_eq!(esc(b"a b\\\xff~"), "a\\x20b\\x5c\\xff~");
        // 259:65536 in the kernel's new_encode_dev form.
        let (major, minor) = (259u64, 65536u64);
        let dev = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        assert_eq!(major_minor(dev), (259, 65536));
    }
}
