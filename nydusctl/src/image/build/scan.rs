//! Reads a source directory into a tree of metadata (no file data yet):
//! names sorted by bytes, every attribute `nydus-image` keeps, and one
//! `FileRef` per distinct regular file so each is read once.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nydus_protocol::rafs::writer::Xattr;

/// A scanned entry; `file` indexes `Scan::files` for regular files.
pub struct ScanNode {
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub xattrs: Vec<Xattr>,
    pub kind: ScanKind,
}

pub enum ScanKind {
    Dir(Vec<ScanNode>),
    /// Index into `Scan::files`; hardlinked names share it.
    File(usize),
    Symlink(Vec<u8>),
    Device(u64),
    Fifo,
    Socket,
}

/// One distinct regular file whose data goes into the blob.
pub struct FileRef {
    pub path: PathBuf,
    pub size: u64,
    /// Number of names in the tree (> 1: a hardlink group).
    pub names: u32,
}

pub struct Scan {
    pub root: ScanNode,
    /// In depth-first name order: the order their data is stored.
    pub files: Vec<FileRef>,
}

/// Namespaces RAFS can store (format doc §2.10); upstream refuses others.
const XATTR_OK: [&[u8]; 5] = [
    b"user.",
    b"security.",
    b"trusted.",
    b"system.posix_acl_access",
    b"system.posix_acl_default",
];

pub fn scan(root: &Path) -> Result<Scan, String> {
    let meta = fs::symlink_metadata(root).map_err(|e| format!("{}: {e}", root.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "{}: the source must be a directory",
            root.display()
        ));
    }
    let mut s = Scanner {
        files: Vec::new(),
        links: HashMap::new(),
    };
    let root = s.node(root, Vec::new(), &meta)?;
    Ok(Scan {
        root,
        files: s.files,
    })
}

struct Scanner {
    files: Vec<FileRef>,
    /// (dev, ino) of hardlinked regular files → index in `files`.
    links: HashMap<(u64, u64), usize>,
}

impl Scanner {
    fn node(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: &fs::Metadata,
    ) -> Result<ScanNode, String> {
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            let mut names: Vec<OsString> = fs::read_dir(path)
                .map_err(err)?
                .map(|d| d.map(|d| d.file_name()))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let mut children = Vec::with_capacity(names.len());
            for n in names {
                let child = path.join(&n);
                let m = fs::symlink_metadata(&child)
                    .map_err(|e| format!("{}: {e}", child.display()))?;
                children.push(self.node(&child, n.into_vec(), &m)?);
            }
            ScanKind::Dir(children)
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            let known = if meta.nlink() > 1 {
                self.links.get(&key).copied()
            } else {
                None
            };
            let index = match known {
                Some(i) => {
                    self.files[i].names += 1;
                    i
                }
                None => {
                    self.files.push(FileRef {
                        path: path.to_path_buf(),
                        size: meta.len(),
                        names: 1,
                    });
                    if meta.nlink() > 1 {
                        self.links.insert(key, self.files.len() - 1);
                    }
                    self.files.len() - 1
                }
            };
            ScanKind::File(index)
        } else if ft.is_symlink() {
            ScanKind::Symlink(
                fs::read_link(path)
                    .map_err(err)?
                    .into_os_string()
                    .into_vec(),
            )
        } else if ft.is_char_device() || ft.is_block_device() {
            ScanKind::Device(meta.rdev())
        } else if ft.is_fifo() {
            ScanKind::Fifo
        } else if ft.is_socket() {
            ScanKind::Socket
        } else {
            return Err(format!("{}: unsupported file type", path.display()));
        };
        let xattrs = xattrs(path)?;
        for (k, _) in &xattrs {
            if !XATTR_OK.iter().any(|p| k.starts_with(p)) {
                return Err(format!(
                    "{}: xattr {} cannot be stored in RAFS (only user., security., trusted. and POSIX ACLs); remove it from the source",
                    path.display(),
                    String::from_utf8_lossy(k)
                ));
            }
        }
        Ok(ScanNode {
            name,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
            xattrs,
            kind,
        })
    }
}

/// All xattrs of `path` (not following symlinks), sorted by name.
fn xattrs(path: &Path) -> Result<Vec<Xattr>, String> {
    let err = |what: &str| {
        format!(
            "{}: {what}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: path contains NUL", path.display()))?;
    let names = read_sized(|buf, len| {
        // SAFETY: `c` is a NUL-terminated path; `buf` is valid for `len` bytes (or null with len 0).
        unsafe { libc::llistxattr(c.as_ptr(), buf.cast(), len) }
    })
    .map_err(|e| match e {
        Some(code) if code == libc::ENOTSUP => String::new(),
        _ => err("listing xattrs"),
    });
    let names = match names {
        Ok(n) => n,
        Err(e) if e.is_empty() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(|_| err("xattr name"))?;
        let value = read_sized(|buf, len| {
            // SAFETY: both strings are NUL-terminated; `buf` is valid for `len` bytes (or null with len 0).
            unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), buf.cast(), len) }
        })
        .map_err(|_| {
            format!(
                "{}: reading xattr {}: {}",
                path.display(),
                OsStr::from_bytes(name).to_string_lossy(),
                std::io::Error::last_os_error()
            )
        })?;
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Calls a size-query-then-fill libc function, retrying if the value grew
/// in between. `Err(errno)` on failure.
fn read_sized(mut call: impl FnMut(*mut u8, usize) -> isize) -> Result<Vec<u8>, Option<i32>> {
    for _ in 0..8 {
        let need = call(std::ptr::null_mut(), 0);
        if need < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error());
        }
        let mut buf = vec![0u8; need as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let got = call(buf.as_mut_ptr(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return Err(std::io::Error::last_os_error().raw_os_error());
        }
    }
    Err(Some(libc::ERANGE))
}
