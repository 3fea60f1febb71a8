//! `structures`: every v5 on-disk structure with its offset, for
//! `nydusctl image inspect`.

use std::sync::Arc;

use super::super::dump::Item;
use super::super::error::Result;
use super::super::walk::show;
use super::layout::{CHUNK_RECORD_SIZE, EXT_BLOB_ENTRY_SIZE, SUPER_SIZE};
use super::V5Reader;

/// Decodes a whole v5 bootstrap: superblock, tables, every distinct inode
/// record and its chunk records. Fails on the first corrupt structure.
pub fn structures(bytes: &[u8]) -> Result<Vec<Item>> {
    let r = V5Reader::open(Arc::new(bytes.to_vec()))?;
    let sb = &r.sb;
    let mut out = vec![Item::new(0, SUPER_SIZE, "v5 superblock")
        .field("magic", "0x52414653")
        .field("version", "0x500")
        .field("sb_size", SUPER_SIZE)
        .field("chunk_size", format!("{:#x}", sb.chunk_size))
        .field("flags", format!("{:#x}", sb.flags))
        .field("inodes_count", sb.inodes_count)
        .field(
            "inode_table_offset",
            format!("{:#x}", sb.inode_table_offset),
        )
        .field(
            "prefetch_table_offset",
            format!("{:#x}", sb.prefetch_table_offset),
        )
        .field("blob_table_offset", format!("{:#x}", sb.blob_table_offset))
        .field("inode_table_entries", sb.inode_table_entries)
        .field("prefetch_table_entries", sb.prefetch_table_entries)
        .field("blob_table_size", sb.blob_table_size)
        .field("ext_blob_table_entries", sb.ext_blob_table_entries)
        .field(
            "ext_blob_table_offset",
            format!("{:#x}", sb.ext_blob_table_offset),
        )];

    let mut table = Item::new(
        sb.inode_table_offset,
        u64::from(sb.inode_table_entries) * 4,
        "v5 inode table",
    );
    for slot in 1..=u64::from(sb.inode_table_entries) {
        table = table.field(
            &format!("slot {slot}"),
            format!("{:#x}", r.slot_offset(slot)?),
        );
    }
    out.push(table);

    let mut prefetch = Item::new(
        sb.prefetch_table_offset,
        u64::from(sb.prefetch_table_entries) * 4,
        "v5 prefetch table",
    );
    for (i, ino) in r.prefetch.iter().enumerate() {
        prefetch = prefetch.field(&format!("entry {i}"), format!("ino {ino}"));
    }
    out.push(prefetch);

    for (i, e) in r.blob_entries.iter().enumerate() {
        out.push(
            Item::new(
                e.offset,
                8 + e.id.len() as u64,
                format!("v5 blob table entry {i}"),
            )
            .field("readahead_offset", e.readahead_offset)
            .field("readahead_size", e.readahead_size)
            .field("blob_id", &e.id),
        );
    }
    for (i, b) in r
        .blobs
        .iter()
        .enumerate()
        .take(sb.ext_blob_table_entries as usize)
    {
        let off = sb.ext_blob_table_offset + i as u64 * EXT_BLOB_ENTRY_SIZE;
        out.push(
            Item::new(
                off,
                EXT_BLOB_ENTRY_SIZE,
                format!("v5 extended blob entry {i}"),
            )
            .field("chunk_count", b.chunk_count)
            .field("features", format!("{:#x}", b.features))
            .field("uncompressed_size", b.uncompressed_size)
            .field("compressed_size", b.compressed_size),
        );
    }

    for (slot, rec) in r.records()? {
        let mut item = Item::new(
            rec.offset,
            rec.chunks_offset.saturating_sub(rec.offset),
            format!("v5 inode slot {slot} {}", show(rec.name)),
        )
        .field("digest", hex::encode(rec.digest))
        .field("parent", rec.parent)
        .field("ino", rec.ino)
        .field("uid", rec.uid)
        .field("gid", rec.gid)
        .field("mode", format!("{:#o}", rec.mode))
        .field("size", rec.size)
        .field("blocks", rec.blocks)
        .field("flags", format!("{:#x}", rec.flags))
        .field("nlink", rec.nlink)
        .field("child_index", rec.child_index)
        .field("child_count", rec.child_count)
        .field("rdev", format!("{:#x}", rec.rdev))
        .field("mtime", rec.mtime as i64)
        .field("mtime_nsec", rec.mtime_nsec)
        .field("name", show(rec.name));
        if !rec.symlink.is_empty() {
            item = item.field("symlink", show(rec.symlink));
        }
        for (name, value) in rec.xattr_pairs()? {
            item = item.field(&format!("xattr {}", show(&name)), show(&value));
        }
        out.push(item);
        for (k, c) in rec
            .chunks(r.file(), &r.blobs, r.limits())?
            .iter()
            .enumerate()
        {
            let off = rec.chunks_offset + k as u64 * CHUNK_RECORD_SIZE;
            let Some(i) = c.info else { continue };
            out.push(
                Item::new(
                    off,
                    CHUNK_RECORD_SIZE,
                    format!("v5 chunk {k} of ino {}", rec.ino),
                )
                .field("digest", i.digest.map(hex::encode).unwrap_or_default())
                .field("blob_index", i.blob_index)
                .field("compressed", i.compressed)
                .field("compressed_size", i.compressed_size)
                .field("uncompressed_size", i.uncompressed_size)
                .field("compressed_offset", format!("{:#x}", i.compressed_offset))
                .field(
                    "uncompressed_offset",
                    format!("{:#x}", i.uncompressed_offset),
                )
                .field("file_offset", format!("{:#x}", c.file_offset))
                .field("index", i.chunk_index)
                .field(
                    "crc32",
                    i.crc32
                        .map(|c| format!("{c:#010x}"))
                        .unwrap_or_else(|| "-".into()),
                ),
            );
        }
    }
    // File order: records are written depth-first, slots breadth-first.
    out.sort_by_key(|i| i.offset);
    Ok(out)
}
