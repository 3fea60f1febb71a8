//! `nydusctl image create` round trips: every combination of RAFS version,
//! compressor, digester and chunk size on the mktree `small` and `dedup`
//! trees must list back (`image ls --manifest`) exactly as `manifest.py`
//! prints the source, and pass `image check`; builds are reproducible and
//! identical chunks are stored once. Needs root (mktree.py).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use nydus_e2e::nydusctl_bin;
use nydus_e2e::source::{diff_manifests, make_tree, manifest};
use nydus_protocol::rafs::codec::{Digester, Hasher};
use tempfile::TempDir;

struct Trees {
    dir: TempDir,
    /// (profile, tree path, manifest.py output)
    trees: Vec<(&'static str, PathBuf, String)>,
}

/// The source trees, made once for all tests of this file.
fn trees() -> &'static Trees {
    static TREES: OnceLock<Trees> = OnceLock::new();
    TREES.get_or_init(|| {
        let dir = TempDir::new().expect("temp dir");
        let trees = ["small", "dedup"]
            .into_iter()
            .map(|p| {
                let path = dir.path().join(p);
                make_tree(p, &path);
                let m = manifest(&path, &[]);
                (p, path, m)
            })
            .collect();
        Trees { dir, trees }
    })
}

fn tree(profile: &str) -> &'static (&'static str, PathBuf, String) {
    trees()
        .trees
        .iter()
        .find(|t| t.0 == profile)
        .expect("profile made")
}

/// Runs nydusctl; `Err` holds a description of a failure.
fn nydusctl(args: &[&str]) -> Result<String, String> {
    let out = Command::new(nydusctl_bin())
        .args(args)
        .output()
        .map_err(|e| format!("cannot run nydusctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nydusctl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `image create` into `out/boot` and `out/blobs`.
fn create(source: &Path, out: &Path, flags: &[&str]) -> Result<(PathBuf, PathBuf), String> {
    let boot = out.join("boot");
    let blobs = out.join("blobs");
    let (b, d) = (boot.to_str().unwrap(), blobs.to_str().unwrap());
    let mut args = vec!["image", "create", "-B", b, "-D", d];
    args.extend_from_slice(flags);
    args.push(source.to_str().unwrap());
    nydusctl(&args)?;
    Ok((boot, blobs))
}

/// Chunk identity for counting distinct chunks (BLAKE3: cheap in debug).
fn chunk_key(bytes: &[u8]) -> [u8; 32] {
    let mut h = Hasher::new(Digester::Blake3);
    h.update(bytes);
    h.finish()
}

/// One combination: build, compare the listing, check, and verify the blob
/// is named by the SHA-256 of its bytes.
fn round_trip(profile: &str, flags: &[&str], out: &Path) -> Result<(), String> {
    let (_, source, expected) = tree(profile);
    let (boot, blobs) = create(source, out, flags)?;
    let (b, d) = (boot.to_str().unwrap(), blobs.to_str().unwrap());
    let listed = nydusctl(&["image", "ls", "--manifest", "--blob-dir", d, b])?;
    let diff = diff_manifests(expected, &listed);
    if !diff.is_empty() {
        return Err(format!(
            "manifest differs: {:?}",
            &diff[..diff.len().min(5)]
        ));
    }
    if expected != &listed {
        return Err("manifest has the same fields but differs as text".into());
    }
    nydusctl(&["image", "check", "--blob-dir", d, b])?;
    // coreutils' sha256sum: hashing every blob in this (debug) test binary
    // would cost more CPU than the builds themselves.
    for entry in fs::read_dir(&blobs).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let out = Command::new("sha256sum")
            .arg(&path)
            .output()
            .map_err(|e| format!("sha256sum: {e}"))?;
        let sum = String::from_utf8_lossy(&out.stdout);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !out.status.success() || sum.split_whitespace().next() != Some(&*name) {
            return Err(format!("blob {name} is not named by its sha256 ({sum})"));
        }
    }
    fs::remove_dir_all(out).map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn every_combination_round_trips() {
    let mut combos: Vec<(&str, Vec<&str>)> = Vec::new();
    for profile in ["small", "dedup"] {
        for v in ["5", "6"] {
            for c in ["none", "lz4_block", "zstd"] {
                for d in ["blake3", "sha256"] {
                    for cs in ["0x10000", "0x100000"] {
                        let flags = vec![
                            "--fs-version",
                            v,
                            "--compressor",
                            c,
                            "--digester",
                            d,
                            "--chunk-size",
                            cs,
                        ];
                        combos.push((profile, flags));
                    }
                }
            }
        }
    }
    let base = trees().dir.path().join("out-combos");
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    // Three workers: the builds are single-file pipelines with idle moments.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((profile, flags)) = combos.get(i) else {
                    break;
                };
                if let Err(e) = round_trip(profile, flags, &base.join(i.to_string())) {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{profile} {}: {e}", flags.join(" ")));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} combinations failed:\n{}",
        failures.len(),
        combos.len(),
        failures.join("\n")
    );
}

#[test]
fn builds_are_reproducible() {
    let (_, source, _) = tree("small");
    let base = trees().dir.path().join("out-repro");
    for v in ["5", "6"] {
        let one = create(source, &base.join(format!("{v}a")), &["--fs-version", v]).unwrap();
        let two = create(source, &base.join(format!("{v}b")), &["--fs-version", v]).unwrap();
        assert_eq!(
            fs::read(&one.0).unwrap(),
            fs::read(&two.0).unwrap(),
            "v{v} bootstraps differ"
        );
        let names = |d: &Path| -> Vec<_> {
            fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect()
        };
        assert_eq!(names(&one.1), names(&two.1), "v{v} blob ids differ");
    }
}

/// (digest, size) of every chunk of every file, to count distinct chunks.
fn distinct_chunks(dir: &Path, chunk: usize, set: &mut HashSet<([u8; 32], usize)>) {
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            distinct_chunks(&path, chunk, set);
        } else if meta.is_file() {
            for c in fs::read(&path).unwrap().chunks(chunk) {
                set.insert((chunk_key(c), c.len()));
            }
        }
    }
}

#[test]
fn identical_chunks_are_stored_once() {
    let (_, source, _) = tree("dedup");
    let base = trees().dir.path().join("out-dedup");
    for (cs, size) in [("0x10000", 0x10000), ("0x100000", 0x10_0000)] {
        let mut set = HashSet::new();
        distinct_chunks(source, size, &mut set);
        let stored: u64 = set.iter().map(|(_, n)| *n as u64).sum();
        // v5 without compression: the blob is exactly the distinct chunks.
        let (_, blobs) = create(
            source,
            &base.join(cs),
            &[
                "--fs-version",
                "5",
                "--compressor",
                "none",
                "--chunk-size",
                cs,
            ],
        )
        .unwrap();
        let blob = fs::read_dir(&blobs)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(
            fs::metadata(&blob).unwrap().len(),
            stored,
            "chunk size {cs}: blob holds a chunk twice"
        );
        let total: u64 = walk_sizes(source);
        assert!(
            stored * 2 < total,
            "dedup tree should shrink: {stored} of {total}"
        );
    }
}

fn walk_sizes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk_sizes(&p)
            } else if m.is_file() {
                m.len()
            } else {
                0
            }
        })
        .sum()
}

#[test]
fn a_tree_without_data_makes_no_blob() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("sub/empty"), b"").unwrap();
    std::os::unix::fs::symlink("sub/empty", src.join("link")).unwrap();
    fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o1777)).unwrap();
    let expected = manifest(&src, &[]);
    for v in ["5", "6"] {
        let out = dir.path().join(v);
        let (boot, blobs) = create(&src, &out, &["--fs-version", v]).unwrap();
        assert_eq!(
            fs::read_dir(&blobs).unwrap().count(),
            0,
            "v{v}: an empty tree got a blob"
        );
        let listed = nydusctl(&[
            "image",
            "ls",
            "--manifest",
            "--blob-dir",
            blobs.to_str().unwrap(),
            boot.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(listed, expected, "v{v}");
    }
}

#[test]
fn bad_flags_fail_with_one_line() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--chunk-size", "0x3000"], "power of two"),
        (vec!["--chunk-size", "0x2000000"], "power of two"),
        (vec!["--compressor", "gzip"], "gzip"),
    ];
    for (flags, want) in cases {
        let err = create(&src, &dir.path().join("o"), &flags).unwrap_err();
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    let err = create(&dir.path().join("missing"), &dir.path().join("o"), &[]).unwrap_err();
    assert!(err.contains("missing"), "{err}");
    fs::write(dir.path().join("list"), "relative/path\n").unwrap();
    let list = dir.path().join("list");
    let err = create(
        &src,
        &dir.path().join("o"),
        &["--prefetch-files", list.to_str().unwrap()],
    )
    .unwrap_err();
    assert!(err.contains("line 1") && err.contains("absolute"), "{err}");
}

#[test]
fn prefetch_list_reaches_the_bootstrap() {
    let (_, source, _) = tree("small");
    let base = trees().dir.path().join("out-prefetch");
    fs::create_dir_all(&base).unwrap();
    let list = base.join("list");
    fs::write(&list, "/sizes\n\n/links/target.txt\n").unwrap();
    for v in ["5", "6"] {
        let flags = [
            "--fs-version",
            v,
            "--prefetch-files",
            list.to_str().unwrap(),
        ];
        let (boot, _) = create(source, &base.join(v), &flags).unwrap();
        let image = nydus_protocol::rafs::open(Arc::new(fs::read(&boot).unwrap()), None).unwrap();
        let r = image.reader.as_ref();
        let want: Vec<u64> = ["/sizes", "/links/target.txt"]
            .iter()
            .map(|p| {
                nydus_protocol::rafs::walk::resolve(r, p.as_bytes())
                    .unwrap()
                    .unwrap()
            })
            .collect();
        assert_eq!(r.prefetch_inodes().unwrap(), want, "v{v}");
    }
}

/// With no compression the data blob does not depend on the compression
/// library, so ours must be byte-identical to upstream's fixture (same
/// chunk order, dedup, 4 KiB alignment, ci table and header): same blob
/// id. The bootstrap has the same size; it differs only in the root mtime
/// (we store it, upstream stores 0) and xattr order (upstream's is random).
#[test]
fn uncompressed_blob_is_identical_to_upstream() {
    let fixture = nydus_e2e::shared().join("fixtures/rafs/mini-v6-none-blake3");
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("mini");
    make_tree("mini", &src);
    let (boot, blobs) = create(&src, &dir.path().join("out"), &["--compressor", "none"]).unwrap();
    let names = |d: &Path| -> Vec<_> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    assert_eq!(names(&blobs), names(&fixture.join("blobs")));
    let ours = fs::metadata(&boot).unwrap().len();
    assert_eq!(ours, fs::metadata(fixture.join("bootstrap")).unwrap().len());
}
