//! The v5 inode digest tree (format doc §5.5).

use super::super::codec::{digest, Hasher};
use super::super::error::Result;
use super::super::types::FileKind;
use super::super::walk::show;
use super::V5Reader;

impl V5Reader {
    /// Recomputes every inode's digest from what it covers (chunk digests,
    /// symlink target, children's stored digests) and returns one line per
    /// record whose stored digest differs. Structural errors are `Err`.
    pub fn verify_inode_digests(&self) -> Result<Vec<String>> {
        let digester = self.sb.digester();
        let mut problems = Vec::new();
        for (slot, rec) in self.records()? {
            let computed = match rec.kind {
                FileKind::Regular => {
                    let mut h = Hasher::new(digester);
                    for c in rec.chunks(self.file(), &self.blobs, self.limits())? {
                        if let Some(d) = c.info.and_then(|i| i.digest) {
                            h.update(&d);
                        }
                    }
                    h.finish()
                }
                FileKind::Symlink => digest(digester, rec.symlink),
                FileKind::Directory => {
                    let mut h = Hasher::new(digester);
                    for k in 0..rec.child_count {
                        h.update(&self.child(&rec, k)?.digest);
                    }
                    h.finish()
                }
                _ => digest(digester, &[]),
            };
            if computed != rec.digest {
                problems.push(format!(
                    "v5 inode at byte offset {:#x} (slot {slot}, {}): stored digest {} but contents hash to {}",
                    rec.offset,
                    show(rec.name),
                    hex::encode(rec.digest),
                    hex::encode(computed)
                ));
            }
        }
        Ok(problems)
    }
}
