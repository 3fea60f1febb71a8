//! Every v6 image under shared/fixtures/rafs: opens, every path of
//! `expected.manifest` resolves by lookup with the listed attributes,
//! directories list exactly their manifest children, and every regular
//! file reads back with the manifest's sha256 both through the bootstrap
//! chunk table and through the blob ci tables.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use nydus_protocol::rafs::codec::{digest, Digester};
use nydus_protocol::rafs::file::{ChunkReader, DirBlobSource};
use nydus_protocol::rafs::{open_file, FileKind, FsVersion, Reader};

fn fixtures_dir() -> PathBuf {
    let near = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rafs");
    let dir = if near.is_dir() {
        near
    } else {
        PathBuf::from("/work/shared/fixtures/rafs")
    };
    assert!(dir.is_dir(), "fixtures missing at {}", dir.display());
    dir
}

/// Image directories whose bootstrap is v6.
fn v6_images() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("read fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|d| {
            std::fs::read(d.join("bootstrap"))
                .is_ok_and(|b| b.get(1024..1028) == Some(&0xE0F5_E1E2u32.to_le_bytes()[..]))
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 4,
        "expected at least 4 v6 fixtures, found {out:?}"
    );
    out
}

/// `\xNN` escapes of manifest.py back to bytes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).expect("hex escape"));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

struct Line {
    path: Vec<u8>,
    f: HashMap<String, String>,
}

fn manifest(dir: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(dir.join("expected.manifest")).expect("manifest");
    text.lines()
        .map(|l| {
            let mut parts = l.split(' ');
            let path = unescape(parts.next().expect("path"));
            let f = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Line { path, f }
        })
        .collect()
}

fn resolve(r: &dyn Reader, path: &[u8]) -> u64 {
    let mut ino = r.super_info().root_ino;
    for part in path.split(|&c| c == b'/').skip(1) {
        ino = r
            .lookup(ino, part)
            .unwrap_or_else(|e| panic!("lookup {}: {e}", String::from_utf8_lossy(path)))
            .unwrap_or_else(|| panic!("{} not found", String::from_utf8_lossy(path)));
    }
    ino
}

fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::Regular => "file",
        FileKind::Directory => "dir",
        FileKind::Symlink => "symlink",
        FileKind::CharDevice => "chr",
        FileKind::BlockDevice => "blk",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "sock",
    }
}

fn rdev_text(dev: u64) -> String {
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    format!("{major}:{minor}")
}

fn check_image(dir: &Path) -> usize {
    let name = dir.display();
    let img = open_file(&dir.join("bootstrap")).unwrap_or_else(|e| panic!("{name}: {e}"));
    let r = img.reader.as_ref();
    assert_eq!(r.super_info().version, FsVersion::V6);
    let source = DirBlobSource::new(dir.join("blobs"));
    let via_table = ChunkReader::new(r, &source, img.meta_file_stem.clone());
    let via_ci = ChunkReader::new(r, &source, img.meta_file_stem.clone()).use_ci_tables(true);
    let lines = manifest(dir);
    let mut inos: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut children: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut files = 0;
    for line in &lines {
        let p = String::from_utf8_lossy(&line.path).into_owned();
        let ino = resolve(r, &line.path);
        inos.insert(line.path.clone(), ino);
        if let Some(pos) = line.path.iter().rposition(|&c| c == b'/') {
            let (parent, child) = (line.path[..pos].to_vec(), line.path[pos + 1..].to_vec());
            children.entry(parent).or_default().insert(child);
        }
        let inode = r.inode(ino).unwrap_or_else(|e| panic!("{name} {p}: {e}"));
        let kind = inode.kind().expect("kind");
        let f = |k: &str| line.f[k].as_str();
        assert_eq!(kind_name(kind), f("type"), "{name} {p}");
        assert_eq!(
            format!("{:04o}", inode.mode & 0o7777),
            f("mode"),
            "{name} {p}"
        );
        assert_eq!(inode.uid.to_string(), f("uid"), "{name} {p}");
        assert_eq!(inode.gid.to_string(), f("gid"), "{name} {p}");
        if line.path != b"." {
            assert_eq!(inode.mtime.to_string(), f("mtime"), "{name} {p}");
        }
        let mut xattrs: Vec<String> = r
            .xattrs(ino)
            .unwrap_or_else(|e| panic!("{name} {p}: {e}"))
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}:{}",
                    String::from_utf8_lossy(k),
                    hex::encode(digest(Digester::Sha256, v))
                )
            })
            .collect();
        xattrs.sort();
        let want_x = if f("xattr") == "-" {
            String::new()
        } else {
            f("xattr").to_string()
        };
        assert_eq!(xattrs.join(","), want_x, "{name} {p}");
        match kind {
            FileKind::Regular => {
                assert_eq!(inode.size.to_string(), f("size"), "{name} {p}");
                let a = via_table
                    .read_file(ino, true)
                    .unwrap_or_else(|e| panic!("{name} {p}: {e}"));
                let b = via_ci
                    .read_file(ino, true)
                    .unwrap_or_else(|e| panic!("{name} {p} (ci): {e}"));
                assert_eq!(
                    hex::encode(digest(Digester::Sha256, &a)),
                    f("sha256"),
                    "{name} {p}"
                );
                assert!(a == b, "{name} {p}: chunk table and ci table reads differ");
                for c in r.chunks(ino).expect("chunks") {
                    let t = via_table.resolve(&c).expect("resolve");
                    let ci = via_ci.resolve(&c).expect("resolve ci");
                    assert_eq!(t, ci, "{name} {p}: descriptors differ");
                }
                files += 1;
            }
            FileKind::Symlink => {
                assert_eq!(
                    r.readlink(ino).expect("readlink"),
                    unescape(f("target")),
                    "{name} {p}"
                );
            }
            FileKind::CharDevice | FileKind::BlockDevice => {
                assert_eq!(rdev_text(inode.rdev), f("rdev"), "{name} {p}");
            }
            _ => {}
        }
        if f("link") != "-" {
            let leader = inos[&unescape(f("link"))];
            assert_eq!(ino, leader, "{name} {p}: hardlink group");
        }
    }
    for (parent, want) in children {
        let mut got = BTreeSet::new();
        r.readdir(inos[&parent], 0, &mut |e, _| {
            got.insert(e.name.to_vec());
            true
        })
        .expect("readdir");
        assert_eq!(got, want, "{name} {}", String::from_utf8_lossy(&parent));
    }
    files
}

#[test]
fn every_v6_fixture_matches_its_manifest() {
    for dir in v6_images() {
        let files = check_image(&dir);
        assert!(files > 10, "{}: only {files} files", dir.display());
    }
}

#[test]
fn layers3_reads_from_all_three_blobs() {
    let dir = fixtures_dir().join("layers3-v6-zstd-blake3");
    let img = open_file(&dir.join("bootstrap")).expect("open");
    let r = img.reader.as_ref();
    assert_eq!(r.blobs().len(), 3);
    let mut used = BTreeSet::new();
    for line in manifest(&dir).iter().filter(|l| l.f["type"] == "file") {
        for c in r.chunks(resolve(r, &line.path)).expect("chunks") {
            used.insert(c.blob_index);
        }
    }
    assert_eq!(used, BTreeSet::from([0, 1, 2]));
    // The per-layer bootstraps are images of their own.
    for n in 1..=3 {
        let layer = open_file(&dir.join(format!("layers/layer{n}.bootstrap"))).expect("layer");
        assert_eq!(layer.reader.blobs().len(), 1, "layer {n}");
    }
}

#[test]
fn readdir_resumes_from_any_offset() {
    let dir = fixtures_dir().join("mini-v6-zstd-sha256");
    let img = open_file(&dir.join("bootstrap")).expect("open");
    let r = img.reader.as_ref();
    let root = r.super_info().root_ino;
    let mut all = Vec::new();
    r.readdir(root, 0, &mut |e, next| {
        all.push((e.name.to_vec(), next));
        true
    })
    .expect("readdir");
    assert!(all.len() > 3);
    for (i, (_, next)) in all.iter().enumerate() {
        let mut rest = Vec::new();
        r.readdir(root, *next, &mut |e, _| {
            rest.push(e.name.to_vec());
            true
        })
        .expect("readdir resume");
        let want: Vec<Vec<u8>> = all[i + 1..].iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(rest, want);
    }
}

/// A layer blob with its bootstrap inlined (§6.5): the placeholder id and
/// INLINED_FS_META make the blob's effective id the file's stem.
#[test]
fn a_blob_with_an_inlined_bootstrap_opens_and_reads() {
    let dir = fixtures_dir().join("mini-v6-zstd-sha256");
    let mut boot = std::fs::read(dir.join("bootstrap")).expect("bootstrap");
    let le = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let table = le(&boot, 1160) as usize;
    boot[table..table + 64].fill(b'x');
    boot[1408..1408 + 64].fill(b'x');
    boot[table + 84] |= 0x02;
    let blob_dir = dir.join("blobs");
    let original = std::fs::read_dir(&blob_dir)
        .expect("blobs")
        .next()
        .expect("one blob")
        .expect("entry");
    let mut blob = std::fs::read(original.path()).expect("blob");
    blob.extend_from_slice(&boot);
    let mut header = vec![0u8; 512];
    header[..10].copy_from_slice(b"image.boot");
    header[124..135].copy_from_slice(format!("{:011o}", boot.len()).as_bytes());
    blob.extend_from_slice(&header);

    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("layerblob.tar.gz");
    std::fs::write(&path, &blob).expect("write");
    std::fs::write(tmp.path().join("layerblob"), &blob).expect("write");
    let img = open_file(&path).expect("open inlined");
    assert!(img.inlined);
    assert_eq!(img.meta_file_stem.as_deref(), Some("layerblob"));
    let r = img.reader.as_ref();
    assert_eq!(
        r.blobs()[0].effective_id(img.meta_file_stem.as_deref()),
        "layerblob"
    );
    let source = DirBlobSource::new(tmp.path());
    let chunks = ChunkReader::new(r, &source, img.meta_file_stem.clone()).use_ci_tables(true);
    for line in manifest(&dir).iter().filter(|l| l.f["type"] == "file") {
        let data = chunks
            .read_file(resolve(r, &line.path), true)
            .expect("read");
        assert_eq!(
            hex::encode(digest(Digester::Sha256, &data)),
            line.f["sha256"]
        );
    }
}

/// The library's manifest of each v6 image equals `expected.manifest`,
/// except the root's mtime (stored as 0 by directory builds).
#[test]
fn library_manifest_matches_for_every_v6_fixture() {
    use nydus_protocol::rafs::manifest::{manifest as build_manifest, ManifestOptions};
    for dir in v6_images() {
        let img = open_file(&dir.join("bootstrap")).expect("open");
        let source = DirBlobSource::new(dir.join("blobs"));
        let chunks = ChunkReader::new(img.reader.as_ref(), &source, img.meta_file_stem.clone());
        let opts = ManifestOptions {
            default_uid: 0,
            default_gid: 0,
        };
        let m = build_manifest(img.reader.as_ref(), Some(&chunks), &opts).expect("manifest");
        assert!(m.errors.is_empty(), "{}: {:?}", dir.display(), m.errors);
        let text = std::fs::read_to_string(dir.join("expected.manifest")).expect("manifest");
        let want: Vec<&str> = text.lines().collect();
        assert_eq!(m.lines.len(), want.len(), "{}", dir.display());
        let no_mtime = |l: &str| {
            l.split(' ')
                .filter(|f| !f.starts_with("mtime="))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for (got, want) in m.lines.iter().zip(want) {
            if want.starts_with(". ") {
                assert_eq!(no_mtime(got), no_mtime(want), "{}", dir.display());
            } else {
                assert_eq!(got, want, "{}", dir.display());
            }
        }
    }
}
