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

#[cfg(test)]
mod tests {
    use super::super::codec::{Compressor, Digester};
    use super::super::types::{BlobInfo, ChunkRef, DirEntry, FsVersion, SuperInfo};
    use super::*;

    /// Directories only: `dirs[i]` lists (name, ino) of inode i + 1.
    struct Dirs {
        info: SuperInfo,
        dirs: Vec<Vec<(&'static [u8], u64)>>,
    }

    fn dirs(dirs: Vec<Vec<(&'static [u8], u64)>>) -> Dirs {
        let info = SuperInfo {
            version: FsVersion::V5,
            flags: 0,
            block_size: 4096,
            chunk_size: 0x10_0000,
            compressor: Compressor::None,
            digester: Digester::Blake3,
            inode_count: dirs.len() as u64,
            root_ino: 1,
            explicit_uidgid: true,
            has_xattr: false,
        };
        Dirs { info, dirs }
    }

    impl Reader for Dirs {
        fn super_info(&self) -> &SuperInfo {
            &self.info
        }
        fn blobs(&self) -> &[BlobInfo] {
            &[]
        }
        fn inode(&self, ino: u64) -> Result<Inode> {
            let _ = self
                .dirs
                .get(ino as usize - 1)
                .ok_or(RafsError::NotFound("ino".into()))?;
            Ok(Inode {
                ino,
                mode: 0o40755,
                uid: 0,
                gid: 0,
                nlink: 2,
                size: 4096,
                mtime: 0,
                mtime_nsec: 0,
                rdev: 0,
                has_xattr: false,
            })
        }
        fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<u64>> {
            let d = &self.dirs[parent as usize - 1];
            Ok(d.iter().find(|(n, _)| *n == name).map(|&(_, i)| i))
        }
        fn readdir(
            &self,
            ino: u64,
            offset: u64,
            sink: &mut dyn FnMut(DirEntry<'_>, u64) -> bool,
        ) -> Result<()> {
            for (k, &(name, ino)) in self.dirs[ino as usize - 1]
                .iter()
                .enumerate()
                .skip(offset as usize)
            {
                if !sink(
                    DirEntry {
                        name,
                        ino,
                        kind: FileKind::Directory,
                    },
                    k as u64 + 1,
                ) {
                    break;
                }
            }
            Ok(())
        }
        fn readlink(&self, _: u64) -> Result<Vec<u8>> {
            Err(RafsError::NotFound("symlink".into()))
        }
        fn xattrs(&self, _: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            Ok(Vec::new())
        }
        fn chunks(&self, _: u64) -> Result<Vec<ChunkRef>> {
            Ok(Vec::new())
        }
        fn prefetch_inodes(&self) -> Result<Vec<u64>> {
            Ok(Vec::new())
        }
    }

    fn run(r: &Dirs) -> Result<Vec<String>> {
        let mut out = Vec::new();
        walk(r, &mut |e| {
            out.push(show(e.path));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn walks_in_order_and_resolves() {
        let r = dirs(vec![
            vec![(b"a", 2), (b"b", 3)],
            vec![(b"c", 4)],
            vec![],
            vec![],
        ]);
        assert_eq!(run(&r).unwrap(), ["/", "/a", "/a/c", "/b"]);
        assert_eq!(resolve(&r, b"/a/c").unwrap(), Some(4));
        assert_eq!(resolve(&r, b"/a/../b/").unwrap(), Some(3));
        assert_eq!(resolve(&r, b"/../a/./c").unwrap(), Some(4));
        assert_eq!(resolve(&r, b"/x").unwrap(), None);
        assert_eq!(resolve(&r, b"/").unwrap(), Some(1));
        assert!(resolve(&r, b"a").is_err());
    }

    #[test]
    fn loops_shared_dirs_and_bad_names_are_errors() {
        let looped = dirs(vec![vec![(b"a", 2)], vec![(b"up", 1)]]);
        assert!(run(&looped)
            .unwrap_err()
            .to_string()
            .contains("reachable twice"));
        let shared = dirs(vec![vec![(b"a", 2), (b"b", 2)], vec![]]);
        assert!(run(&shared)
            .unwrap_err()
            .to_string()
            .contains("reachable twice"));
        for bad in [&b"x/y"[..], b"..", b"", b"n\0"] {
            let r = dirs(vec![vec![(bad, 2)], vec![]]);
            assert!(run(&r).is_err(), "{bad:?}");
        }
        let dup = dirs(vec![vec![(b"a", 2), (b"a", 3)], vec![], vec![]]);
        assert!(run(&dup).unwrap_err().to_string().contains("duplicate"));
    }

    #[test]
    fn depth_is_limited() {
        let n = MAX_DEPTH + 2;
        let chain = (1..=n as u64)
            .map(|i| {
                if (i as usize) < n {
                    vec![(&b"d"[..], i + 1)]
                } else {
                    vec![]
                }
            })
            .collect();
        let err = run(&dirs(chain)).unwrap_err().to_string();
        assert!(err.contains("deeper than"), "{err}");
    }
}
