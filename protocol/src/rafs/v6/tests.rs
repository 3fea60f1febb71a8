//! Synthetic v6 pieces: multi-block directories, xattr areas, compact
//! inodes and the chunk index worked example of the format doc.

use super::chunks::{file_chunks, ChunkTable};
use super::dir::Dir;
use super::inode::RawInode;
use super::xattr::xattrs;
use crate::rafs::bytes::PutLe;
use crate::rafs::codec::{Compressor, Digester};
use crate::rafs::types::{BlobInfo, FileKind};

const B: u64 = 4096;

/// An extended inode (64 bytes) with the given format/mode/size/u.
fn ext_inode(format: u16, xattr_icount: u16, mode: u16, size: u64, u: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.put_u16(format);
    v.put_u16(xattr_icount);
    v.put_u16(mode);
    v.put_u16(0);
    v.put_u64(size);
    v.put_u32(u);
    v.put_u32(7);
    v.put_u32(1000);
    v.put_u32(100);
    v.put_u64((-5i64) as u64);
    v.put_u32(9);
    v.put_u32(2);
    v.put_zeros(16);
    v
}

/// Directory blocks holding `names` (sorted) packed like the builder does.
fn dir_blocks(names: &[Vec<u8>]) -> (Vec<u8>, u64) {
    let mut blocks: Vec<Vec<&Vec<u8>>> = vec![Vec::new()];
    let mut used = 0;
    for n in names {
        if used + 12 + n.len() > B as usize {
            blocks.push(Vec::new());
            used = 0;
        }
        used += 12 + n.len();
        blocks.last_mut().unwrap().push(n);
    }
    let mut out = Vec::new();
    let count = blocks.len();
    let mut size = 0;
    for (bi, blk) in blocks.iter().enumerate() {
        let mut ents = Vec::new();
        let mut namebuf = Vec::new();
        let base = 12 * blk.len();
        for (j, n) in blk.iter().enumerate() {
            ents.put_u64(1000 + j as u64);
            ents.put_u16((base + namebuf.len()) as u16);
            ents.put_u8(1);
            ents.put_u8(0);
            namebuf.extend_from_slice(n);
        }
        ents.extend(namebuf);
        size = if bi + 1 == count {
            bi as u64 * B + ents.len() as u64
        } else {
            0
        };
        ents.resize(B as usize, 0);
        out.extend(ents);
    }
    (out, size)
}

#[test]
fn multi_block_directories_look_up_and_list_every_name() {
    let mut names: Vec<Vec<u8>> = (0..1500)
        .map(|i| format!("name-{i:05}").into_bytes())
        .collect();
    names.extend([
        b".".to_vec(),
        b"..".to_vec(),
        b"!first".to_vec(),
        b"zz".to_vec(),
    ]);
    names.sort();
    let (data, size) = dir_blocks(&names);
    assert!(size > 3 * B, "the test needs several blocks");
    // Inode at nid 0 of a meta area at block 0; data from block 1.
    let mut file = ext_inode(0x1, 0, 0o40755, size, 1);
    file.resize(B as usize, 0);
    file.extend(&data);
    let raw = RawInode::parse(&file, 0, 0).unwrap();
    assert_eq!(raw.kind, FileKind::Directory);
    assert_eq!(
        (raw.mtime, raw.mtime_nsec, raw.uid, raw.gid, raw.nlink),
        (-5, 9, 1000, 100, 2)
    );
    let dir = Dir::new(&file, &raw, B).unwrap();
    for n in &names {
        let e = dir
            .lookup(n)
            .unwrap()
            .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(n)));
        assert_eq!(e.name, &n[..]);
    }
    for miss in [&b"name-2"[..], b"a", b"", b"~", b"name-01499x"] {
        assert!(dir.lookup(miss).unwrap().is_none());
    }
    let mut listed = Vec::new();
    dir.for_each_from(0, 0, &mut |_, _, e| {
        listed.push(e.name.to_vec());
        true
    })
    .unwrap();
    assert_eq!(listed, names);
}

#[test]
fn bad_directory_blocks_are_errors() {
    let names = vec![b".".to_vec(), b"..".to_vec(), b"a/b".to_vec()];
    let (mut data, size) = dir_blocks(&names);
    let mut file = ext_inode(0x1, 0, 0o40755, size, 1);
    file.resize(B as usize, 0);
    file.extend(&data);
    let raw = RawInode::parse(&file, 0, 0).unwrap();
    let dir = Dir::new(&file, &raw, B).unwrap();
    let e = dir.lookup(b"a/b").unwrap_err().to_string();
    assert!(e.contains("'/'"), "{e}");
    // A first nameoff that is not a multiple of 12.
    data[8] = 13;
    file.truncate(B as usize);
    file.extend(&data);
    let dir = Dir::new(&file, &raw, B).unwrap();
    assert!(dir.lookup(b"x").is_err());
    // Data blocks past the end of the file.
    let far = ext_inode(0x1, 0, 0o40755, 100, 1_000_000);
    let raw = RawInode::parse(&far, 0, 0).unwrap();
    assert!(Dir::new(&far, &raw, B).unwrap().lookup(b"x").is_err());
}

#[test]
fn inline_xattrs_with_every_prefix() {
    let mut area = Vec::new();
    area.put_zeros(12);
    for (index, suffix, value) in [
        (1u8, &b"k"[..], &b"v"[..]),
        (2, b"", b"acl"),
        (4, b"t", b""),
        (6, b"selinux", b"ctx!"),
    ] {
        let start = area.len();
        area.put_u8(suffix.len() as u8);
        area.put_u8(index);
        area.put_u16(value.len() as u16);
        area.extend_from_slice(suffix);
        area.extend_from_slice(value);
        area.resize(start + (area.len() - start).next_multiple_of(4), 0);
    }
    let icount = ((area.len() - 12) / 4 + 1) as u16;
    let mut file = ext_inode(0x1 | (4 << 1), icount, 0o100644, 0, 0);
    file.extend(&area);
    let raw = RawInode::parse(&file, 0, 0).unwrap();
    let got = xattrs(&file, &raw, None).unwrap();
    let want: Vec<(Vec<u8>, Vec<u8>)> = [
        (&b"user.k"[..], &b"v"[..]),
        (b"system.posix_acl_access", b"acl"),
        (b"trusted.t", b""),
        (b"security.selinux", b"ctx!"),
    ]
    .iter()
    .map(|(k, v)| (k.to_vec(), v.to_vec()))
    .collect();
    assert_eq!(got, want);
    // Unknown name index 5.
    file[64 + 12 + 1] = 5;
    assert!(xattrs(&file, &raw, None).is_err());
    // A shared xattr id without an xattr area.
    file[64 + 12 + 1] = 1;
    file[64 + 4] = 1;
    assert!(xattrs(&file, &raw, None).is_err());
}

#[test]
fn compact_inodes_and_the_chunk_index_example() {
    // Compact chunk-based regular file, 5000 bytes, chunk size 4096: two
    // index entries; the first is the format doc's §3.14 worked example.
    let mut file = Vec::new();
    file.put_u16(4 << 1);
    file.put_u16(0);
    file.put_u16(0o100600);
    file.put_u16(1);
    file.put_u32(5000);
    file.put_u32(0);
    file.put_u32(0x20);
    file.put_u32(3);
    file.put_u16(5);
    file.put_u16(6);
    file.put_u32(0);
    file.extend([0x01, 0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00]);
    file.extend([0x02, 0x00, 0x01, 0x01, 0x06, 0x00, 0x00, 0x00]);
    let raw = RawInode::parse(&file, 0, 0).unwrap();
    assert!(!raw.extended);
    let inode = raw.to_inode();
    assert_eq!(
        (inode.size, inode.uid, inode.gid, inode.mtime, inode.rdev),
        (5000, 5, 6, 0, 0)
    );
    let blob = BlobInfo {
        index: 0,
        blob_id: "b".into(),
        chunk_count: 0x1_0003,
        compressed_size: 0,
        uncompressed_size: 0,
        compressor: Compressor::Zstd,
        digester: Digester::Blake3,
        chunk_size: 4096,
        features: 1,
        meta: None,
    };
    let chunks = file_chunks(
        &file,
        &raw,
        std::slice::from_ref(&blob),
        4096,
        &ChunkTable::new(0, 0, 4096, 4096),
    )
    .unwrap();
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        (
            chunks[0].blob_index,
            chunks[0].chunk_index,
            chunks[0].file_offset
        ),
        (0, 1, 0)
    );
    assert_eq!(
        (
            chunks[1].blob_index,
            chunks[1].chunk_index,
            chunks[1].file_offset
        ),
        (0, 0x1_0002, 4096)
    );
    // Device id 0 and an out-of-range blob are errors.
    let mut bad = file.clone();
    bad[34] = 0;
    assert!(file_chunks(
        &bad,
        &raw,
        std::slice::from_ref(&blob),
        4096,
        &ChunkTable::new(0, 0, 4096, 4096)
    )
    .is_err());
    bad[34] = 2;
    assert!(file_chunks(
        &bad,
        &raw,
        std::slice::from_ref(&blob),
        4096,
        &ChunkTable::new(0, 0, 4096, 4096)
    )
    .is_err());
}

#[test]
fn inodes_with_invalid_layouts_or_modes_are_errors() {
    for (format, mode) in [
        (0x1 | (4 << 1), 0o40755u16),
        (0x1, 0o100644),
        (0x1 | (1 << 1), 0o40755),
        (0x1, 0o000644),
        (0x11, 0o40755),
    ] {
        let file = ext_inode(format, 0, mode, 10, 1);
        assert!(
            RawInode::parse(&file, 0, 0).is_err(),
            "format {format:#x} mode {mode:#o}"
        );
    }
    assert!(RawInode::parse(&[0u8; 16], 0, 0).is_err());
    assert!(RawInode::parse(&[0u8; 64], u64::MAX, 1).is_err());
}

/// One 80-byte chunk table record: (blob, chunk, uncompressed offset, size).
fn chunk_record(blob: u32, chunk: u32, uoff: u64, size: u32) -> Vec<u8> {
    let mut r = vec![0u8; 80];
    r[32..36].copy_from_slice(&blob.to_le_bytes());
    r[40..44].copy_from_slice(&size.to_le_bytes());
    r[44..48].copy_from_slice(&size.to_le_bytes());
    r[56..64].copy_from_slice(&uoff.to_le_bytes());
    r[72..76].copy_from_slice(&chunk.to_le_bytes());
    r
}

#[test]
fn chunk_table_is_searched_in_place_or_indexed_and_checked_on_first_use() {
    let blob = BlobInfo {
        index: 0,
        blob_id: "b".into(),
        chunk_count: 8,
        compressed_size: 0,
        uncompressed_size: 0,
        compressor: Compressor::Zstd,
        digester: Digester::Blake3,
        chunk_size: 4096,
        features: 1,
        meta: None,
    };
    let blobs = std::slice::from_ref(&blob);
    for order in [[0u32, 1, 2, 5, 7], [5, 2, 0, 1, 7], [2, 5, 2, 0, 1]] {
        let mut file = vec![0u8; 16];
        for (i, c) in order.into_iter().enumerate() {
            // The first of duplicate keys (the third order) wins.
            let size = if order[..i].contains(&c) {
                999
            } else {
                100 + c
            };
            file.extend(chunk_record(0, c, u64::from(c) * 4096, size));
        }
        let t = ChunkTable::new(16, 5 * 80, 4096, 4096);
        assert_eq!(t.byte_range(), 16..16 + 5 * 80);
        for c in [0u32, 1, 2, 5] {
            let got = t.get(&file, blobs, (0, c, u64::from(c))).unwrap().unwrap();
            assert_eq!((got.chunk_index, got.uncompressed_size), (c, 100 + c));
        }
        assert_eq!(t.get(&file, blobs, (0, 3, 3)).unwrap(), None);
        assert_eq!(t.get(&file, blobs, (0, 5, 4)).unwrap(), None);
        assert_eq!(t.get(&file, blobs, (0, 9, 9)).unwrap(), None);
    }
    // A bad record anywhere fails every lookup, naming its offset.
    let mut file = vec![0u8; 16];
    file.extend(chunk_record(0, 0, 0, 100));
    file.extend(chunk_record(0, 9, 4096, 100));
    let t = ChunkTable::new(16, 2 * 80, 4096, 4096);
    let e = t.get(&file, blobs, (0, 0, 0)).unwrap_err().to_string();
    assert!(e.contains("0x60") && e.contains("chunk index 9"), "{e}");
}
