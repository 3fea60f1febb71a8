//! A depth-first walk over any `Reader`, and absolute-path resolution.
//!
//! The walk is the one place that turns a bootstrap's directory structure
//! into paths, so it also guards against what a crafted image can do to a
//! tree: loops, a directory reachable twice, absurd depth, bad names.

use std::collections::HashSet;

use super::error::{RafsError, Result};
use super::types::{FileKind, Inode};
use super::Reader;

/// Deeper trees are refused (Linux PATH_MAX allows about 2048 levels).
pub const MAX_DEPTH: usize = 4096;
/// Upper bound on visited entries, so a crafted image cannot make a walk
/// run for ever by sharing child ranges between many directories.
pub const MAX_ENTRIES: u64 = 1 << 24;

const T: &str = "directory tree";

/// Why `name` cannot be a directory entry name, if it cannot.
pub fn name_problem(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name == b"." || name == b".." {
        Some("name is \".\" or \"..\"")
    } else if name.contains(&b'/') {
        Some("name contains '/'")
    } else if name.contains(&0) {
        Some("name contains NUL")
    } else {
        None
    }
}

/// One visited entry.
pub struct Entry<'p> {
    /// "/" for the root, else "/a/b" (raw bytes, not necessarily UTF-8).
    pub path: &'p [u8],
    /// 0 for the root.
    pub depth: usize,
    pub inode: Inode,
}

/// Visits the root, then every entry below it, depth first, children in
/// the reader's directory order. Hardlinked files are visited once per name.
/// Stops at the first error of the reader, of `visit` or of the tree shape.
pub fn walk(reader: &dyn Reader, visit: &mut dyn FnMut(&Entry<'_>) -> Result<()>) -> Result<()> {
    let root_ino = reader.super_info().root_ino;
    let root = reader.inode(root_ino)?;
    if root.kind() != Some(FileKind::Directory) {
        return Err(tree_err(format!(
            "root inode {root_ino} is not a directory"
        )));
    }
    let mut seen_dirs: HashSet<u64> = HashSet::new();
    let mut visited = 0u64;
    // Pending entries, last to visit first: (path, depth, ino, kind from the parent).
    let mut stack: Vec<(Vec<u8>, usize, u64, Option<FileKind>)> =
        vec![(b"/".to_vec(), 0, root_ino, None)];
    while let Some((path, depth, ino, dirent_kind)) = stack.pop() {
        visited += 1;
        if visited > MAX_ENTRIES {
            return Err(tree_err(format!("more than {MAX_ENTRIES} entries")));
        }
        let inode = reader.inode(ino)?;
        let kind = inode.kind();
        if dirent_kind.is_some() && dirent_kind != kind {
            return Err(tree_err(format!(
                "{}: directory entry says {dirent_kind:?}, inode {ino} is {kind:?}",
                show(&path)
            )));
        }
        visit(&Entry {
            path: &path,
            depth,
            inode,
        })?;
        if kind != Some(FileKind::Directory) {
            continue;
        }
        if !seen_dirs.insert(ino) {
            return Err(tree_err(format!(
                "{}: directory inode {ino} is reachable twice (loop or shared directory)",
                show(&path)
            )));
        }
        if depth >= MAX_DEPTH {
            return Err(tree_err(format!(
                "{}: deeper than {MAX_DEPTH} levels",
                show(&path)
            )));
        }
        let mut children = Vec::new();
        list_dir(reader, ino, &path, &mut children)?;
        for (name, child, kind) in children.into_iter().rev() {
            let mut p = path.clone();
            if depth > 0 {
                p.push(b'/');
            }
            p.extend_from_slice(&name);
            stack.push((p, depth + 1, child, Some(kind)));
        }
    }
    Ok(())
}

/// All entries of directory `ino`, checked for valid and unique names.
fn list_dir(
    reader: &dyn Reader,
    ino: u64,
    path: &[u8],
    out: &mut Vec<(Vec<u8>, u64, FileKind)>,
) -> Result<()> {
    let mut err = None;
    let mut names: HashSet<Vec<u8>> = HashSet::new();
    reader.readdir(ino, 0, &mut |e, _| {
        if let Some(why) = name_problem(e.name) {
            err = Some(tree_err(format!(
                "{}: entry {}: {why}",
                show(path),
                show(e.name)
            )));
            return false;
        }
        if !names.insert(e.name.to_vec()) {
            err = Some(tree_err(format!(
                "{}: duplicate entry {}",
                show(path),
                show(e.name)
            )));
            return false;
        }
        out.push((e.name.to_vec(), e.ino, e.kind));
        // Bounds memory: a directory cannot list more than the walk allows.
        if out.len() as u64 > MAX_ENTRIES {
            err = Some(tree_err(format!(
                "{}: more than {MAX_ENTRIES} entries",
                show(path)
            )));
            return false;
        }
        true
    })?;
    err.map_or(Ok(()), Err)
}

/// Resolves an absolute path ("/a/b") to an inode number. `None` when a
/// component does not exist or a non-final component is not a directory.
/// "." components are skipped; ".." goes up (and stays at the root).
pub fn resolve(reader: &dyn Reader, path: &[u8]) -> Result<Option<u64>> {
    if path.first() != Some(&b'/') {
        return Err(RafsError::NotFound(format!(
            "{} is not an absolute path",
            show(path)
        )));
    }
    let root = reader.super_info().root_ino;
    let mut stack = vec![root];
    for comp in path.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            _ => {}
        }
        let cur = stack.last().copied().unwrap_or(root);
        if reader.inode(cur)?.kind() != Some(FileKind::Directory) {
            return Ok(None);
        }
        match reader.lookup(cur, comp)? {
            Some(ino) => stack.push(ino),
            None => return Ok(None),
        }
    }
    Ok(stack.last().copied())
}

/// Printable form of a raw name or path for error messages.
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

fn tree_err(reason: String) -> RafsError {
    // The tree is not one byte range; the reason names path and inode.
    RafsError::corrupt(T, 0, reason)
}
