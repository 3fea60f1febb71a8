//! The pieces of `nydusctl image create`: scan the source tree, stream its
//! file data into a blob, then describe the tree for the RAFS writers.

pub mod data;
pub mod scan;

use nydus_protocol::rafs::writer::{FileData, Node, NodeKind};

use scan::{FileRef, ScanKind, ScanNode};

/// Turns the scanned tree into the writers' tree, attaching each regular
/// file's chunk list; hardlink groups share the `FileRef` index as key.
pub fn to_node(s: ScanNode, files: &[FileRef], file_chunks: &[Vec<u32>]) -> Node {
    let kind = match s.kind {
        ScanKind::Dir(children) => NodeKind::Dir(
            children
                .into_iter()
                .map(|c| to_node(c, files, file_chunks))
                .collect(),
        ),
        ScanKind::File(i) => NodeKind::File(FileData {
            size: files[i].size,
            chunks: file_chunks[i].clone(),
            hardlink: (files[i].names > 1).then_some(i as u64),
        }),
        ScanKind::Symlink(t) => NodeKind::Symlink(t),
        ScanKind::Device(rdev) => NodeKind::Device(rdev),
        ScanKind::Fifo => NodeKind::Fifo,
        ScanKind::Socket => NodeKind::Socket,
    };
    Node {
        name: s.name,
        mode: s.mode,
        uid: s.uid,
        gid: s.gid,
        mtime: s.mtime,
        mtime_nsec: s.mtime_nsec,
        xattrs: s.xattrs,
        kind,
    }
}

/// Regular files in upstream's data order: the inode numbering order
/// (each directory's children as one run, directories depth first), each
/// hardlink group at its first name.
pub fn data_order(root: &ScanNode, nfiles: usize) -> Vec<usize> {
    let mut seen = vec![false; nfiles];
    let mut order = Vec::with_capacity(nfiles);
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let ScanKind::Dir(children) = &dir.kind else {
            continue;
        };
        for c in children {
            if let ScanKind::File(i) = c.kind {
                if !std::mem::replace(&mut seen[i], true) {
                    order.push(i);
                }
            }
        }
        stack.extend(
            children
                .iter()
                .rev()
                .filter(|c| matches!(c.kind, ScanKind::Dir(_))),
        );
    }
    order
}
