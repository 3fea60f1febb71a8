//! Corrupted v6 bootstraps (flipped bits, truncations) give errors or a
//! working image, never a panic, through every reader API and the dump.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nydus_protocol::rafs::{FileKind, Reader};

fn v6_images() -> Vec<PathBuf> {
    let near = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rafs");
    let dir = if near.is_dir() {
        near
    } else {
        PathBuf::from("/work/shared/fixtures/rafs")
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures missing at {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|d| {
            std::fs::read(d.join("bootstrap"))
                .is_ok_and(|b| b.get(1024..1028) == Some(&0xE0F5_E1E2u32.to_le_bytes()[..]))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no v6 fixtures in {}", dir.display());
    out
}

/// Every reader API over every reachable inode, bounded.
fn exercise(r: &dyn Reader) {
    let mut stack = vec![r.super_info().root_ino];
    let mut seen = BTreeSet::new();
    while let Some(ino) = stack.pop() {
        if !seen.insert(ino) || seen.len() > 2000 {
            continue;
        }
        let Ok(inode) = r.inode(ino) else { continue };
        let _ = r.xattrs(ino);
        match inode.kind() {
            Some(FileKind::Directory) => {
                let _ = r.lookup(ino, b"a");
                let _ = r.readdir(ino, 0, &mut |e, _| {
                    stack.push(e.ino);
                    true
                });
            }
            Some(FileKind::Symlink) => {
                let _ = r.readlink(ino);
            }
            Some(FileKind::Regular) => {
                let _ = r.chunks(ino);
            }
            _ => {}
        }
    }
    let _ = r.prefetch_inodes();
}

/// Flipped bytes and truncations anywhere in a bootstrap give errors or
/// (for harmless bytes) a working image, never a panic.
#[test]
fn corrupted_bootstraps_never_panic() {
    for dir in v6_images() {
        let good = std::fs::read(dir.join("bootstrap")).expect("bootstrap");
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let mut bad = good.clone();
            if round % 10 == 0 {
                bad.truncate((next() % good.len() as u64) as usize);
            } else {
                for _ in 0..1 + round % 3 {
                    // Mostly the first blocks (superblocks, tables) and the
                    // meta area, where the structure is.
                    let span = if round % 2 == 0 {
                        0x5000
                    } else {
                        good.len() as u64
                    };
                    let at = (next() % span.min(good.len() as u64)) as usize;
                    bad[at] ^= 1 << (next() % 8);
                }
            }
            if round % 4 == 0 {
                let _ = nydus_protocol::rafs::v6::structures(&bad);
            }
            if let Ok(img) = nydus_protocol::rafs::open(std::sync::Arc::new(bad), Some("bootstrap"))
            {
                exercise(img.reader.as_ref());
            }
        }
    }
}
