//! Hand-built v5 images: the reader's answers on good trees and its errors
//! on crafted ones (loops, bad names, unsorted children, bad ranges).

use std::sync::Arc;

use super::super::bytes::PutLe;
use super::super::walk::{resolve, walk};
use super::super::{FileKind, RafsError, Reader};
use super::V5Reader;

const CS: u32 = 0x1000;

/// One inode record to write; slot numbers are positions + 1.
#[derive(Clone, Default)]
struct N {
    name: &'static [u8],
    mode: u32,
    ino: u64,
    parent: u64,
    child_index: u32,
    child_count: u32,
    size: u64,
    flags: u64,
    symlink: &'static [u8],
    xattrs: Vec<u8>,
    /// (file_offset, uncompressed size) of each chunk, all raw in blob 0.
    chunks: Vec<(u64, u32)>,
}

fn dir(name: &'static [u8], ino: u64, parent: u64, first: u32, count: u32) -> N {
    N {
        name,
        mode: 0o40755,
        ino,
        parent,
        child_index: first,
        child_count: count,
        ..N::default()
    }
}

fn file(name: &'static [u8], ino: u64, parent: u64, size: u64) -> N {
    let chunks = (0..size.div_ceil(u64::from(CS)))
        .map(|k| {
            (
                k * u64::from(CS),
                (size - k * u64::from(CS)).min(u64::from(CS)) as u32,
            )
        })
        .collect::<Vec<_>>();
    let child_count = chunks.len() as u32;
    N {
        name,
        mode: 0o100644,
        ino,
        parent,
        size,
        chunks,
        child_count,
        ..N::default()
    }
}

fn pad8(v: &mut Vec<u8>) {
    v.put_zeros((8 - v.len() % 8) % 8);
}

fn build(nodes: &[N]) -> Vec<u8> {
    let n = nodes.len();
    let table_at = 8192u64;
    let table_len = (n as u64 * 4).div_ceil(8) * 8;
    let blob_at = table_at + table_len;
    let id = b"blob0";
    let blob_len = (8 + id.len() as u64).div_ceil(8) * 8;
    let ext_at = blob_at + blob_len;
    let mut records = Vec::new();
    let mut offsets = Vec::new();
    let rec_base = ext_at + 64;
    for node in nodes {
        offsets.push(rec_base + records.len() as u64);
        let r = &mut records;
        r.put_zeros(32);
        r.put_u64(node.parent);
        r.put_u64(node.ino);
        r.put_u32(0);
        r.put_u32(0);
        r.put_u32(0);
        r.put_u32(node.mode);
        r.put_u64(node.size);
        r.put_u64(0);
        r.put_u64(node.flags | if node.xattrs.is_empty() { 0 } else { 0x4 });
        r.put_u32(1);
        r.put_u32(node.child_index);
        r.put_u32(node.child_count);
        r.put_u16(node.name.len() as u16);
        r.put_u16(node.symlink.len() as u16);
        r.put_u32(0);
        r.put_u32(0);
        r.put_u64(1_600_000_000);
        r.put_zeros(8);
        r.extend_from_slice(node.name);
        pad8(r);
        r.extend_from_slice(node.symlink);
        pad8(r);
        if !node.xattrs.is_empty() {
            r.put_u64(node.xattrs.len() as u64);
            r.extend_from_slice(&node.xattrs);
            pad8(r);
        }
        for (k, &(file_offset, size)) in node.chunks.iter().enumerate() {
            r.put_zeros(32);
            r.put_u32(0);
            r.put_u32(0);
            r.put_u32(size);
            r.put_u32(size);
            r.put_u64(k as u64 * u64::from(CS));
            r.put_u64(k as u64 * u64::from(CS));
            r.put_u64(file_offset);
            r.put_u32(0);
            r.put_u32(0);
        }
    }
    let mut out = Vec::new();
    out.put_u32(0x5241_4653);
    out.put_u32(0x500);
    out.put_u32(8192);
    out.put_u32(CS);
    out.put_u64(0x1 | 0x4 | 0x10 | 0x20);
    out.put_u64(n as u64);
    out.put_u64(table_at);
    out.put_u64(blob_at);
    out.put_u64(blob_at);
    out.put_u32(n as u32);
    out.put_u32(0);
    out.put_u32(blob_len as u32);
    out.put_u32(1);
    out.put_u64(ext_at);
    out.resize(8192, 0);
    for off in offsets {
        out.put_u32((off >> 3) as u32);
    }
    pad8(&mut out);
    out.put_u32(0);
    out.put_u32(0);
    out.extend_from_slice(id);
    pad8(&mut out);
    out.put_u32(0); // chunk_count 0: unknown, so any index is accepted
    out.put_zeros(60);
    out.extend_from_slice(&records);
    out
}

fn open(nodes: &[N]) -> Result<V5Reader, RafsError> {
    V5Reader::open(Arc::new(build(nodes)))
}

/// / = {a/ = {x}, b (8 KiB + 1), c -> b, d (hardlink of b)}
fn sample() -> Vec<N> {
    vec![
        dir(b"/", 1, 0, 2, 4),
        dir(b"a", 2, 1, 6, 1),
        file(b"b", 3, 1, 8193),
        N {
            name: b"c",
            mode: 0o120777,
            ino: 4,
            parent: 1,
            symlink: b"b",
            ..N::default()
        },
        file(b"d", 3, 1, 8193),
        N {
            xattrs: xattr(b"user.k", b"v"),
            ..file(b"x", 6, 2, 0)
        },
    ]
}

fn xattr(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.put_u32((name.len() + 1 + value.len()) as u32);
    v.extend_from_slice(name);
    v.push(0);
    v.extend_from_slice(value);
    v
}

fn paths(r: &dyn Reader) -> Result<Vec<(String, u64)>, RafsError> {
    let mut out = Vec::new();
    walk(r, &mut |e| {
        out.push((String::from_utf8_lossy(e.path).into_owned(), e.inode.ino));
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn good_tree() {
    let r = open(&sample()).unwrap();
    let p = paths(&r).unwrap();
    let want = [
        ("/", 1),
        ("/a", 2),
        ("/a/x", 6),
        ("/b", 3),
        ("/c", 4),
        ("/d", 3),
    ];
    assert_eq!(p, want.map(|(a, b)| (a.to_string(), b)).to_vec());
    assert_eq!(
        r.lookup(1, b"d").unwrap(),
        Some(3),
        "hardlink reports the first ino"
    );
    assert_eq!(r.lookup(1, b"zz").unwrap(), None);
    assert_eq!(r.lookup(1, b"a/x").unwrap(), None);
    assert_eq!(resolve(&r, b"/a/../c").unwrap(), Some(4));
    assert_eq!(resolve(&r, b"/b/x").unwrap(), None);
    assert_eq!(r.readlink(4).unwrap(), b"b");
    assert_eq!(
        r.xattrs(6).unwrap(),
        vec![(b"user.k".to_vec(), b"v".to_vec())]
    );
    let c = r.chunks(3).unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(c[2].file_offset, 0x2000);
    assert_eq!(c[2].info.unwrap().uncompressed_size, 1);
    assert_eq!(r.inode(4).unwrap().kind(), Some(FileKind::Symlink));
    let mut names = Vec::new();
    r.readdir(1, 2, &mut |e, next| {
        names.push((e.name.to_vec(), next));
        true
    })
    .unwrap();
    assert_eq!(names, vec![(b"c".to_vec(), 3), (b"d".to_vec(), 4)]);
    assert!(
        r.verify_inode_digests().unwrap().len() == 6,
        "all-zero digests are wrong"
    );
    assert!(super::structures(&build(&sample())).unwrap().len() > 8);
}

fn expect_err(nodes: &[N], what: &str) {
    let err = open(nodes)
        .and_then(|r| paths(&r).map(drop))
        .expect_err(what)
        .to_string();
    assert!(err.contains(what), "expected {what:?} in: {err}");
    assert!(!err.contains('\n'));
}

#[test]
fn crafted_trees_are_errors() {
    let mut s = sample();
    s[1].child_index = 1; // a/ contains the root: a loop
    expect_err(&s, "parent 0 but listed under directory 2");
    let mut s = sample();
    s[1].child_index = 2; // a/ contains itself
    s[1].parent = 2;
    expect_err(&s, "parent 2 but listed under directory 1");
    for bad in [&b"x/y"[..], b"..", b".", b"", b"a\0"] {
        let mut s = sample();
        s[5].name = bad;
        expect_err(&s, "v5 inode name");
    }
    let mut s = sample();
    s.swap(2, 3); // children out of order
    s[2].ino = 3;
    s[3].ino = 4;
    s[3].symlink = b"c";
    expect_err(&s, "not sorted");
    let mut s = sample();
    s[0].child_count = 9;
    expect_err(&s, "outside the inode table");
    let mut s = sample();
    s[3].ino = 2; // a symlink may not share an inode number
    expect_err(&s, "claims ino 2");
    let mut s = sample();
    s[3].symlink = b"";
    expect_err(&s, "empty target");
    let mut s = sample();
    s[5].xattrs.truncate(6);
    expect_err(&s, "v5 xattr block");
    let mut s = sample();
    s[2].size = 1;
    expect_err(&s, "expected 1");
    let mut s = sample();
    s[0].mode = 0o10644;
    expect_err(&s, "root (slot 1)");
}

#[test]
fn directory_loops_stop_the_walk() {
    // a/ lists slot 2 (itself) as its child, with a matching parent field.
    let nodes = vec![dir(b"/", 1, 0, 2, 1), dir(b"a", 2, 2, 2, 1)];
    let err = open(&nodes)
        .and_then(|r| paths(&r).map(drop))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parent 2 but listed under directory 1"),
        "{err}"
    );
    let nodes = vec![
        dir(b"/", 1, 0, 2, 1),
        dir(b"a", 2, 1, 3, 1),
        dir(b"b", 3, 2, 2, 1),
    ];
    let err = open(&nodes)
        .and_then(|r| paths(&r).map(drop))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parent 1 but listed under directory 3"),
        "{err}"
    );
}

#[test]
fn hole_files() {
    let mut s = sample();
    s[2].flags = 0x8;
    s[2].size = 3 * u64::from(CS);
    s[2].chunks = vec![(0, CS), (2 * u64::from(CS), CS)];
    s[2].child_count = 2;
    s[4] = N {
        ino: 5,
        ..file(b"d", 5, 1, 1)
    };
    let r = open(&s).unwrap();
    let c = r.chunks(3).unwrap();
    assert_eq!(
        c.iter().map(|c| c.file_offset).collect::<Vec<_>>(),
        vec![0, 0x2000]
    );
    s[2].chunks = vec![(0, CS), (u64::from(CS) / 2, CS)];
    let err = open(&s).unwrap().chunks(3).unwrap_err().to_string();
    assert!(err.contains("overlaps"), "{err}");
}

#[test]
fn truncated_and_bad_superblocks() {
    let good = build(&sample());
    for cut in [0, 8, 8192, 8200, good.len() - 1] {
        // Records past the root are checked when reached, so walk too.
        let r = V5Reader::open(Arc::new(good[..cut].to_vec()));
        assert!(r.and_then(|r| paths(&r)).is_err(), "cut {cut}");
    }
    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&0x3000u32.to_le_bytes());
    assert!(V5Reader::open(Arc::new(bad))
        .err()
        .unwrap()
        .to_string()
        .contains("chunk_size"));
    let mut bad = good.clone();
    bad[16..24].copy_from_slice(&0x400u64.to_le_bytes());
    assert!(V5Reader::open(Arc::new(bad))
        .err()
        .unwrap()
        .to_string()
        .contains("unknown flag"));
    let mut bad = good;
    bad[48..56].copy_from_slice(&8192u64.to_le_bytes());
    assert!(V5Reader::open(Arc::new(bad))
        .err()
        .unwrap()
        .to_string()
        .contains("overlaps"));
}

#[test]
fn manifest_lines() {
    use super::super::manifest::{manifest, ManifestOptions};
    let opts = ManifestOptions {
        default_uid: 1234,
        default_gid: 5678,
    };
    let mut bytes = build(&sample());
    let r = V5Reader::open(Arc::new(bytes.clone())).unwrap();
    let m = manifest(&r, None, &opts).unwrap();
    let x = "user.k:4c94485e0c21ae6c41ce1dfe7b6bfaceea5ab68e40a2476f50208e526f506080";
    let want = [
        ". type=dir mode=0755 uid=0 gid=0 size=- mtime=1600000000 sha256=- target=- rdev=- xattr=- link=-".to_string(),
        "./a type=dir mode=0755 uid=0 gid=0 size=- mtime=1600000000 sha256=- target=- rdev=- xattr=- link=-".into(),
        format!("./a/x type=file mode=0644 uid=0 gid=0 size=0 mtime=1600000000 sha256=* target=- rdev=- xattr={x} link=-"),
        "./b type=file mode=0644 uid=0 gid=0 size=8193 mtime=1600000000 sha256=* target=- rdev=- xattr=- link=./b".into(),
        "./c type=symlink mode=0777 uid=0 gid=0 size=- mtime=1600000000 sha256=- target=b rdev=- xattr=- link=-".into(),
        "./d type=file mode=0644 uid=0 gid=0 size=8193 mtime=1600000000 sha256=* target=- rdev=- xattr=- link=./b".into(),
    ];
    assert_eq!(m.lines, want);
    // Without EXPLICIT_UID_GID (0x10) and HAS_XATTR (0x20), as a mount shows it.
    bytes[16] &= !0x30;
    let r = V5Reader::open(Arc::new(bytes)).unwrap();
    let m = manifest(&r, None, &opts).unwrap();
    assert!(m.lines[2].contains(" uid=1234 gid=5678 ") && m.lines[2].contains(" xattr=- "));
}
