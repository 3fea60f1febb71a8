//! `structures()`: every v6 structure with its offset, for
//! `nydusctl image inspect`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use super::chunks::parse_record;
use super::dir::Dir;
use super::inode::RawInode;
use super::layout::{
    BLOB_ENTRY_SIZE, CHUNK_RECORD_SIZE, DEVT_SLOT_SIZE, EROFS_SB_OFFSET, EROFS_SB_SIZE,
    EXT_SB_OFFSET, EXT_SB_SIZE,
};
use super::V6Reader;
use crate::rafs::dump::Item;
use crate::rafs::error::Result;
use crate::rafs::types::FileKind;
use crate::rafs::Reader;

/// Decodes a v6 bootstrap (optional variants included) and lists its
/// structures in file order: superblocks, device slots, blob entries,
/// prefetch and chunk tables, then every inode reachable from the root with
/// its xattrs, chunk index array and directory blocks.
pub fn structures(bytes: &[u8]) -> Result<Vec<Item>> {
    let r = V6Reader::open_for_inspection(Arc::new(bytes.to_vec()))?;
    let mut items = header_items(&r);
    tree_items(&r, &mut items)?;
    items.sort_by_key(|i| i.offset);
    Ok(items)
}

fn header_items(r: &V6Reader) -> Vec<Item> {
    let (sb, ext) = (&r.sb, &r.ext);
    let mut items = vec![
        Item::new(EROFS_SB_OFFSET, EROFS_SB_SIZE, "EROFS superblock")
            .field("magic", "0xe0f5e1e2")
            .field("feature_compat", format!("{:#x}", sb.feature_compat))
            .field("blkszbits", sb.blkszbits)
            .field("root_nid", sb.root_nid)
            .field("inos", sb.inos)
            .field("blocks", sb.blocks)
            .field("meta_blkaddr", sb.meta_blkaddr)
            .field("xattr_blkaddr", sb.xattr_blkaddr)
            .field("feature_incompat", format!("{:#x}", sb.feature_incompat))
            .field("extra_devices", sb.extra_devices),
        Item::new(EXT_SB_OFFSET, EXT_SB_SIZE, "RAFS v6 extended superblock")
            .field(
                "flags",
                format!(
                    "{:#x} ({}, {})",
                    ext.flags,
                    ext.compressor().name(),
                    ext.digester().name()
                ),
            )
            .field("blob_table_offset", format!("{:#x}", ext.blob_table_offset))
            .field("blob_table_size", ext.blob_table_size)
            .field("chunk_size", format!("{:#x}", ext.chunk_size))
            .field(
                "chunk_table_offset",
                format!("{:#x}", ext.chunk_table_offset),
            )
            .field("chunk_table_size", ext.chunk_table_size)
            .field(
                "prefetch_table_offset",
                format!("{:#x}", ext.prefetch_table_offset),
            )
            .field("prefetch_table_size", ext.prefetch_table_size),
    ];
    for (i, d) in r.devices.iter().enumerate() {
        items.push(
            Item::new(d.offset, DEVT_SLOT_SIZE, format!("device slot {i}"))
                .field("tag", &d.tag)
                .field("blocks", d.blocks)
                .field("mapped_blkaddr", d.mapped_blkaddr),
        );
    }
    for (b, x) in r.blobs.iter().zip(&r.blob_extra) {
        let mut item = Item::new(
            x.offset,
            BLOB_ENTRY_SIZE,
            format!("blob table entry {}", b.index),
        )
        .field("blob_id", &b.blob_id)
        .field("chunk_size", format!("{:#x}", b.chunk_size))
        .field("chunk_count", b.chunk_count)
        .field("compressor", b.compressor.name())
        .field("digester", b.digester.name())
        .field("features", format!("{:#x}", b.features))
        .field("compressed_size", b.compressed_size)
        .field("uncompressed_size", b.uncompressed_size)
        .field("toc_size", x.toc_size);
        if let Some(m) = &b.meta {
            item = item
                .field("ci_compressor", m.ci_compressor.name())
                .field("ci_offset", format!("{:#x}", m.ci_offset))
                .field("ci_compressed_size", m.ci_compressed_size)
                .field("ci_uncompressed_size", m.ci_uncompressed_size);
        }
        items.push(
            item.field("toc_digest", hex::encode(x.toc_digest))
                .field("blob_meta_digest", hex::encode(x.blob_meta_digest))
                .field("blob_meta_size", x.blob_meta_size)
                .field("cipher", x.cipher),
        );
    }
    if ext.prefetch_table_size > 0 {
        let nids: Vec<String> = r.prefetch.iter().map(u64::to_string).collect();
        items.push(
            Item::new(
                ext.prefetch_table_offset,
                u64::from(ext.prefetch_table_size),
                "prefetch table",
            )
            .field("nids", nids.join(" ")),
        );
    }
    for i in 0..ext.chunk_table_size / CHUNK_RECORD_SIZE {
        let at = ext.chunk_table_offset + i * CHUNK_RECORD_SIZE;
        // Records were validated on open.
        if let Ok((c, file_offset)) = parse_record(r.file(), at) {
            items.push(
                Item::new(at, CHUNK_RECORD_SIZE, format!("chunk table record {i}"))
                    .field("digest", c.digest.map(hex::encode).unwrap_or_default())
                    .field("blob_index", c.blob_index)
                    .field("index", c.chunk_index)
                    .field(
                        "compressed",
                        format!(
                            "{:#x}+{:#x}{}",
                            c.compressed_offset,
                            c.compressed_size,
                            if c.compressed { "" } else { " (raw)" }
                        ),
                    )
                    .field(
                        "uncompressed",
                        format!("{:#x}+{:#x}", c.uncompressed_offset, c.uncompressed_size),
                    )
                    .field("file_offset", format!("{file_offset:#x}"))
                    .field(
                        "crc32",
                        c.crc32
                            .map(|v| format!("{v:#010x}"))
                            .unwrap_or_else(|| "none".into()),
                    ),
            );
        }
    }
    items
}

/// Every inode reachable from the root, breadth first, each nid once.
fn tree_items(r: &V6Reader, items: &mut Vec<Item>) -> Result<()> {
    let bs = r.sb.block_size();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([(r.info.root_ino, "/".to_string())]);
    while let Some((nid, path)) = queue.pop_front() {
        if !seen.insert(nid) {
            continue;
        }
        let raw = r.raw(nid)?;
        items.push(inode_item(&raw, &path));
        if raw.xattr_icount > 0 {
            let mut x = Item::new(
                raw.offset + raw.inode_size(),
                raw.xattr_size(),
                format!("xattrs of nid {nid} ({path})"),
            );
            for (name, value) in r.xattrs(nid)? {
                x = x.field(
                    &String::from_utf8_lossy(&name),
                    format!(
                        "{} bytes: {}",
                        value.len(),
                        String::from_utf8_lossy(&value).escape_debug()
                    ),
                );
            }
            items.push(x);
        }
        match raw.kind {
            FileKind::Regular => {
                let chunks = r.chunks(nid)?;
                if !chunks.is_empty() {
                    let start = raw.offset + raw.body_size().next_multiple_of(8);
                    let mut x = Item::new(
                        start,
                        chunks.len() as u64 * 8,
                        format!("chunk indexes of nid {nid} ({path})"),
                    );
                    for (k, c) in chunks.iter().enumerate() {
                        let via = if c.info.is_some() {
                            ""
                        } else {
                            " (not in chunk table)"
                        };
                        x = x.field(
                            &format!("chunk {k}"),
                            format!("blob {} index {}{via}", c.blob_index, c.chunk_index),
                        );
                    }
                    items.push(x);
                }
            }
            FileKind::Symlink => {
                let target = r.readlink(nid)?;
                if let Some(last) = items.last_mut() {
                    last.fields.push((
                        "target".into(),
                        String::from_utf8_lossy(&target).into_owned(),
                    ));
                }
            }
            FileKind::Directory => {
                let dir = Dir::new(r.file(), &raw, bs)?;
                for i in 0..dir.blocks() {
                    let block = raw.data_block(r.file(), bs, i)?;
                    let mut x = Item::new(
                        block.base,
                        block.data.len() as u64,
                        format!("directory block {i} of nid {nid} ({path})"),
                    );
                    let parsed = dir.block(i)?;
                    for j in 0..parsed.len() {
                        let e = parsed.entry(j)?;
                        let name = String::from_utf8_lossy(e.name).into_owned();
                        x = x.field(&name, format!("nid {} type {}", e.nid, e.file_type));
                        if !e.is_dot_or_dotdot() {
                            let sep = if path.ends_with('/') { "" } else { "/" };
                            queue.push_back((e.nid, format!("{path}{sep}{name}")));
                        }
                    }
                    items.push(x);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn inode_item(raw: &RawInode, path: &str) -> Item {
    let form = if raw.extended { "extended" } else { "compact" };
    Item::new(
        raw.offset,
        raw.inode_size(),
        format!("inode nid {} ({path})", raw.nid),
    )
    .field("format", format!("{form}, layout {}", raw.layout))
    .field("mode", format!("{:#o}", raw.mode))
    .field("nlink", raw.nlink)
    .field("size", raw.size)
    .field("u", format!("{:#x}", raw.u))
    .field("ino", raw.ino_field)
    .field("uid", raw.uid)
    .field("gid", raw.gid)
    .field("mtime", format!("{}.{:09}", raw.mtime, raw.mtime_nsec))
    .field("xattr_icount", raw.xattr_icount)
}
