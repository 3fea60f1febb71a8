//! Which chunks to prefetch: the `--prefetch-files` list, the image's
//! prefetch table or the whole tree, and the chunks an access log names.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use nydus_protocol::rafs::{ChunkRef, FileKind, Reader};

/// Where the tree walk starts: the `--prefetch-files` list (exactly `/`
/// means everything) or else the image's prefetch table, then the root
/// when `all`.
pub fn roots(reader: &dyn Reader, files: Option<&[String]>, all: bool) -> Vec<u64> {
    let root = reader.super_info().root_ino;
    let mut roots = match files {
        Some([only]) if only == "/" => vec![root],
        Some(list) => list
            .iter()
            .filter_map(|f| {
                let ino = resolve(reader, root, f);
                if ino.is_none() {
                    log::warn!("prefetch file {f:?} is not in the image; skipped");
                }
                ino
            })
            .collect(),
        None => reader.prefetch_inodes().unwrap_or_default(),
    };
    if all {
        roots.push(root);
    }
    roots
}

/// Walks the trees under `roots` depth first, calling `file(ino, chunks)`
/// for every regular file once; stops when `file` returns false or
/// `cancel` is set. Returns (files, files whose chunks could not be read).
pub fn walk(
    reader: &dyn Reader,
    roots: Vec<u64>,
    cancel: &AtomicBool,
    file: &mut dyn FnMut(Vec<ChunkRef>) -> bool,
) -> (u64, u64) {
    let (mut files, mut failed) = (0u64, 0u64);
    let mut stack: Vec<u64> = roots.into_iter().rev().collect();
    let mut seen = HashSet::new();
    while let Some(ino) = stack.pop() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        if !seen.insert(ino) {
            continue;
        }
        let Ok(inode) = reader.inode(ino) else {
            continue;
        };
        match inode.kind() {
            Some(FileKind::Directory) => {
                let mut kids = Vec::new();
                let _ = reader.readdir(ino, 0, &mut |e, _| {
                    kids.push(e.ino);
                    true
                });
                stack.extend(kids.into_iter().rev());
            }
            Some(FileKind::Regular) => {
                files += 1;
                match reader.chunks(ino) {
                    Ok(c) => {
                        if !file(c) {
                            break;
                        }
                    }
                    Err(_) => failed += 1,
                }
            }
            _ => {}
        }
    }
    (files, failed)
}

/// The chunk references of `wanted` (blob index, chunk index) keys, in
/// `wanted` order; keys no file of the image uses are dropped. One walk of
/// the tree, ended as soon as every key is found.
pub fn find_chunks(
    reader: &dyn Reader,
    wanted: &[(u32, u32)],
    cancel: &AtomicBool,
) -> Vec<ChunkRef> {
    let mut slots: HashMap<(u32, u32), usize> = HashMap::with_capacity(wanted.len());
    for (i, k) in wanted.iter().enumerate() {
        slots.entry(*k).or_insert(i);
    }
    let mut found: Vec<Option<ChunkRef>> = vec![None; wanted.len()];
    let mut missing = slots.len();
    let root = reader.super_info().root_ino;
    walk(reader, vec![root], cancel, &mut |chunks| {
        for c in chunks {
            if let Some(i) = slots.remove(&(c.blob_index, c.chunk_index)) {
                found[i] = Some(c);
                missing -= 1;
            }
        }
        missing > 0
    });
    found.into_iter().flatten().collect()
}

/// The inode at absolute `path` in the image, if any.
fn resolve(reader: &dyn Reader, root: u64, path: &str) -> Option<u64> {
    let mut ino = root;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = reader.lookup(ino, part.as_bytes()).ok().flatten()?;
    }
    Some(ino)
}
