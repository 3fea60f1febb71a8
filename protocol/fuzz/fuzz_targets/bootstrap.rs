//! Fuzzes the bootstrap reader: any input must give answers or errors,
//! never a panic, a hang or an out-of-bounds read.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use nydus_protocol::rafs::{self, Reader};

/// Bounds the work per input so a crafted image with huge directories cannot
/// make one run look like a hang.
const BUDGET: usize = 20_000;

fuzz_target!(|data: &[u8]| {
    let backing: rafs::Backing = Arc::new(data.to_vec());
    let Ok(image) = rafs::open(backing, Some("fuzz.boot")) else {
        return;
    };
    let reader = image.reader.as_ref();
    let _ = reader.prefetch_inodes();
    let mut budget = BUDGET;
    let mut stack = vec![reader.super_info().root_ino];
    while let Some(ino) = stack.pop() {
        visit(reader, ino, &mut stack, &mut budget);
        if budget == 0 {
            break;
        }
    }
});

fn visit(reader: &dyn Reader, ino: u64, stack: &mut Vec<u64>, budget: &mut usize) {
    let Ok(inode) = reader.inode(ino) else { return };
    let _ = reader.xattrs(ino);
    match inode.kind() {
        Some(rafs::FileKind::Directory) => {
            let mut names = Vec::new();
            let _ = reader.readdir(ino, 0, &mut |entry, _next| {
                *budget = budget.saturating_sub(1);
                names.push(entry.name.to_vec());
                if entry.kind == rafs::FileKind::Directory && stack.len() < 1000 {
                    stack.push(entry.ino);
                }
                *budget > 0
            });
            for name in names.iter().take(16) {
                let _ = reader.lookup(ino, name);
            }
        }
        Some(rafs::FileKind::Symlink) => {
            let _ = reader.readlink(ino);
        }
        Some(rafs::FileKind::Regular) => {
            let _ = reader.chunks(ino);
        }
        _ => {}
    }
}
