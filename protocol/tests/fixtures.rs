//! Every image under shared/fixtures/rafs: the library's manifest equals
//! `expected.manifest` (except the root's mtime, stored as 0 by the
//! builder), and every chunk of every file reads back verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nydus_protocol::rafs::file::{ChunkReader, DirBlobSource};
use nydus_protocol::rafs::manifest::{manifest, ManifestOptions};
use nydus_protocol::rafs::v5::V5Reader;
use nydus_protocol::rafs::walk::resolve;
use nydus_protocol::rafs::{detect, open_file, Detected};

fn fixtures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rafs");
    assert!(
        dir.is_dir(),
        "fixtures missing: expected the shared RAFS fixtures at {}",
        dir.display()
    );
    dir
}

/// (image dir, bootstrap path) of every fixture.
fn images() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures_dir()).expect("read fixtures dir") {
        let dir = entry.expect("dir entry").path();
        let meta = dir.join("meta.json");
        if !meta.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&meta).expect("read meta.json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("parse meta.json");
        let boot = v["bootstrap"].as_str().expect("meta.json: bootstrap");
        out.push((dir.clone(), dir.join(boot)));
    }
    out.sort();
    out
}

#[test]
fn manifests_match_and_data_verifies() {
    let mut checked = 0;
    for (dir, boot) in images() {
        let image = open_file(&boot).unwrap_or_else(|e| panic!("{}: {e}", boot.display()));
        let reader = image.reader;
        let source = DirBlobSource::new(dir.join("blobs"));
        let chunks = ChunkReader::new(reader.as_ref(), &source, image.meta_file_stem.clone());
        let opts = ManifestOptions {
            default_uid: 0,
            default_gid: 0,
        };
        let m = manifest(reader.as_ref(), Some(&chunks), &opts)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(m.errors.is_empty(), "{}: {:?}", dir.display(), m.errors);
        let expected =
            std::fs::read_to_string(dir.join("expected.manifest")).expect("expected.manifest");
        let expected: Vec<&str> = expected.lines().collect();
        assert_eq!(
            m.lines.len(),
            expected.len(),
            "{}: entry count",
            dir.display()
        );
        for (got, want) in m.lines.iter().zip(&expected) {
            if want.starts_with(". ") {
                assert_eq!(
                    strip_mtime(got),
                    strip_mtime(want),
                    "{}: root",
                    dir.display()
                );
            } else {
                assert_eq!(got, want, "{}", dir.display());
            }
        }
        // Every listed path resolves to the inode the walk reported.
        for line in &m.lines {
            let rel = unescape(line.split(' ').next().unwrap_or_default());
            let abs = if rel == b"." {
                b"/".to_vec()
            } else {
                rel[1..].to_vec()
            };
            let ino = resolve(reader.as_ref(), &abs).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(ino.is_some(), "{}: {line} does not resolve", dir.display());
        }
        if detect(&std::fs::read(&boot).expect("bootstrap")) == Detected::V5 {
            let v5 = V5Reader::open(Arc::new(std::fs::read(&boot).expect("bootstrap")))
                .expect("v5 open");
            let problems = v5.verify_inode_digests().expect("v5 digests");
            assert!(problems.is_empty(), "{}: {problems:?}", dir.display());
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} fixtures were checked");
}

/// manifest.py's `\xHH` escapes back to bytes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = s
            .get(i + 2..i + 4)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], b.get(i + 1), hex) {
            (b'\\', Some(b'x'), Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn strip_mtime(line: &str) -> String {
    line.split(' ')
        .filter(|f| !f.starts_with("mtime="))
        .collect::<Vec<_>>()
        .join(" ")
}
