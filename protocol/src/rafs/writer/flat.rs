//! The tree flattened into upstream's inode numbering (§2.3): root is index
//! 1, each directory's children get one consecutive run in name order, and
//! runs are handed out depth first. Both writers work from this.

use std::collections::HashMap;
use std::ops::Range;

use super::{invalid, ImageSpec, Node, NodeKind};
use crate::rafs::error::Result;

/// One name of the tree. `pos` = index − 1.
pub(crate) struct Entry<'a> {
    pub node: &'a Node,
    /// Position of the containing directory (root: itself).
    pub parent: usize,
    /// Directories: positions of the children, sorted by name.
    pub children: Range<usize>,
    /// Position of the first name of this entry's hardlink group (itself
    /// when it is not a later hardlink name).
    pub first: usize,
    pub nlink: u32,
}

impl Entry<'_> {
    pub fn is_dir(&self) -> bool {
        matches!(self.node.kind, NodeKind::Dir(_))
    }
}

pub(crate) struct Flat<'a> {
    pub entries: Vec<Entry<'a>>,
    /// Directory positions in the order their runs were assigned (root first).
    pub dir_order: Vec<usize>,
    /// Positions named by the prefetch list, in list order.
    pub prefetch: Vec<usize>,
    pub has_xattr: bool,
}

const S_IFMT: u32 = 0o170000;

impl<'a> Flat<'a> {
    pub fn new(spec: &'a ImageSpec) -> Result<Self> {
        let root = &spec.root;
        if !matches!(root.kind, NodeKind::Dir(_)) {
            return Err(invalid("the root must be a directory"));
        }
        let mut entries = vec![Entry {
            node: root,
            parent: 0,
            children: 0..0,
            first: 0,
            nlink: 1,
        }];
        let mut dir_order = Vec::new();
        // Explicit stack instead of recursion: arbitrarily deep trees must not
        // overflow ours. Popping child dirs in name order reproduces the
        // recursive depth-first run assignment.
        let mut stack = vec![0usize];
        while let Some(pos) = stack.pop() {
            dir_order.push(pos);
            let NodeKind::Dir(children) = &entries[pos].node.kind else {
                continue;
            };
            let mut sorted: Vec<&Node> = children.iter().collect();
            sorted.sort_by(|a, b| a.name.cmp(&b.name));
            for w in sorted.windows(2) {
                if w[0].name == w[1].name {
                    return Err(invalid(format!(
                        "duplicate name {:?} in one directory",
                        lossy(&w[0].name)
                    )));
                }
            }
            let start = entries.len();
            for child in &sorted {
                check_node(child)?;
                entries.push(Entry {
                    node: child,
                    parent: pos,
                    children: 0..0,
                    first: entries.len(),
                    nlink: 1,
                });
            }
            let end = entries.len();
            entries[pos].children = start..end;
            for p in (start..end).rev() {
                if entries[p].is_dir() {
                    stack.push(p);
                }
            }
        }
        if entries.len() > u32::MAX as usize / 2 {
            return Err(invalid("too many entries"));
        }
        link_groups(&mut entries);
        let has_xattr = entries.iter().any(|e| !e.node.xattrs.is_empty());
        let mut flat = Flat {
            entries,
            dir_order,
            prefetch: Vec::new(),
            has_xattr,
        };
        for path in &spec.prefetch {
            let pos = flat.resolve(path)?;
            if !flat.prefetch.contains(&pos) {
                flat.prefetch.push(pos);
            }
        }
        Ok(flat)
    }

    /// Position of an absolute path (`/a/b`), for the prefetch table.
    fn resolve(&self, path: &[u8]) -> Result<usize> {
        let mut pos = 0usize;
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let range = self.entries[pos].children.clone();
            let kids = &self.entries[range.clone()];
            match kids.binary_search_by(|e| e.node.name.as_slice().cmp(comp)) {
                Ok(i) => pos = range.start + i,
                Err(_) => {
                    return Err(invalid(format!(
                        "prefetch path {:?} is not in the tree",
                        lossy(path)
                    )))
                }
            }
        }
        Ok(self.entries[pos].first)
    }

    /// The v5 inode number (`ino`) of a position: hardlinks share the first's.
    pub fn ino(&self, pos: usize) -> u64 {
        self.entries[pos].first as u64 + 1
    }

    /// Directory `nlink`: 2 + number of child directories.
    pub fn dir_nlink(&self, pos: usize) -> u32 {
        let range = self.entries[pos].children.clone();
        2 + self.entries[range].iter().filter(|e| e.is_dir()).count() as u32
    }

    /// Depth-first pre-order of positions (v5 record order): a directory,
    /// then each child in name order with its whole subtree.
    pub fn preorder(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.entries.len());
        let mut stack = vec![0usize];
        while let Some(pos) = stack.pop() {
            out.push(pos);
            stack.extend(self.entries[pos].children.clone().rev());
        }
        out
    }
}

/// Regular files sharing a hardlink key become one inode: later names point
/// at the first (in index order) and every name gets the group's size.
fn link_groups(entries: &mut [Entry<'_>]) {
    let mut groups: HashMap<u64, Vec<usize>> = HashMap::new();
    for (pos, e) in entries.iter().enumerate() {
        if let NodeKind::File(f) = &e.node.kind {
            if let Some(key) = f.hardlink {
                groups.entry(key).or_default().push(pos);
            }
        }
    }
    for members in groups.values() {
        let first = members[0];
        for &m in members {
            entries[m].first = first;
            entries[m].nlink = members.len() as u32;
        }
    }
}

fn check_node(node: &Node) -> Result<()> {
    let name = &node.name;
    if name.is_empty()
        || name.len() > 255
        || name == b"."
        || name == b".."
        || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(invalid(format!(
            "bad file name {:?}: must be 1..=255 bytes, not . or .., without / or NUL",
            lossy(name)
        )));
    }
    let want = match &node.kind {
        NodeKind::Dir(_) => 0o040000,
        NodeKind::File(_) => 0o100000,
        NodeKind::Symlink(_) => 0o120000,
        NodeKind::Device(_) if node.mode & S_IFMT == 0o060000 => 0o060000,
        NodeKind::Device(_) => 0o020000,
        NodeKind::Fifo => 0o010000,
        NodeKind::Socket => 0o140000,
    };
    if node.mode & S_IFMT != want {
        return Err(invalid(format!(
            "{:?}: mode {:o} does not match its file type",
            lossy(name),
            node.mode
        )));
    }
    if let NodeKind::Symlink(t) = &node.kind {
        if t.is_empty() || t.len() > 4095 {
            return Err(invalid(format!(
                "{:?}: symlink target must be 1..=4095 bytes",
                lossy(name)
            )));
        }
    }
    for (k, v) in &node.xattrs {
        if k.len() > 255 || v.len() > 65535 {
            return Err(invalid(format!(
                "{:?}: xattr {:?} too long (name ≤ 255, value ≤ 65535 bytes)",
                lossy(name),
                lossy(k)
            )));
        }
    }
    Ok(())
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
