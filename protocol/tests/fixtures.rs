//! Every image under shared/fixtures/rafs: the library's manifest equals
//! `expected.manifest` (except the root's mtime, stored as 0 by the
//! builder), and every chunk of every file reads back verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nydus_protocol::rafs::file::{ChunkReader, DirBlobSource};
use nydus_protocol::rafs::manifest::{manifest, ManifestOptions};
use nydus_protocol::rafs::v5::V5Reader;
use nydus_protocol::rafs::{Reader, Result};

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

fn open(path: &Path) -> Result<Box<dyn Reader>> {
    let bytes = std::fs::read(path)?;
    Ok(Box::new(V5Reader::open(Arc::new(bytes))?))
}

fn is_v5(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| nydus_protocol::rafs::v5::detect(&b))
}

#[test]
fn manifests_match_and_data_verifies() {
    let mut checked = 0;
    for (dir, boot) in images() {
        if !is_v5(&boot) {
            continue;
        }
        let reader = open(&boot).unwrap_or_else(|e| panic!("{}: {e}", boot.display()));
        let source = DirBlobSource::new(dir.join("blobs"));
        let chunks = ChunkReader::new(reader.as_ref(), &source, None);
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
        checked += 1;
    }
    assert!(checked > 0, "no fixture was checked");
}

fn strip_mtime(line: &str) -> String {
    line.split(' ')
        .filter(|f| !f.starts_with("mtime="))
        .collect::<Vec<_>>()
        .join(" ")
}
