//! The other command-line forms upstream's README and nydus-snapshotter
//! use: `nydusd fuse ...` with flags on either side, `--localfs-dir`,
//! `--virtual-mountpoint`, `--thread-num`, `--apisock`, `-V`; and what the
//! kernel is told: upstream inode numbering, and cache settings under which
//! a warm re-read reaches the daemon with no READ at all.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use nydus_e2e::api;
use nydus_e2e::mount::{v1_config, Nydusd};
use nydus_e2e::source::{manifest, parse};
use nydus_e2e::{fixtures, nydusd_bin, Fixture};

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name} missing"))
}

fn refs(args: &[OsString]) -> Vec<&OsStr> {
    args.iter().map(OsString::as_os_str).collect()
}

/// Manifests of the image as served at `dir`, ignoring mtimes (the start
/// time rule is covered by fuse_fixtures).
fn same_tree(fx: &Fixture, dir: &std::path::Path, d: &Nydusd) {
    let want = std::fs::read_to_string(&fx.expected_manifest).unwrap();
    let want = parse(&want);
    let got = parse(&manifest(dir, &["--ignore", "mtime"]));
    assert_eq!(
        want.len(),
        got.len(),
        "entry count at {}; log:\n{}",
        dir.display(),
        d.log_text()
    );
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w.name, g.name);
        for k in ["type", "mode", "size", "sha256", "target", "xattr", "link"] {
            assert_eq!(
                w.field(k),
                g.field(k),
                "{} {k}; log:\n{}",
                w.name,
                d.log_text()
            );
        }
    }
}

#[test]
fn version_flag() {
    for flag in ["-V", "--version"] {
        let out = Command::new(nydusd_bin()).arg(flag).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for key in [
            "Version:",
            "Git Commit:",
            "Build Time:",
            "Profile:",
            "Rustc:",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(key)),
                "{key} in {text:?}"
            );
        }
    }
}

#[test]
fn localfs_dir_with_subcommand_and_flags_around_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture("mini-v5-lz4-blake3");
    // --localfs-dir is the blobs' dir and the cache's work dir at once.
    let dir = tmp.path().join("localfs");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(&fx.blob_dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let mnt = tmp.path().join("mnt");
    let args: Vec<OsString> = [
        OsStr::new("--log-level"),
        OsStr::new("info"),
        OsStr::new("fuse"),
        OsStr::new("--thread-num"),
        OsStr::new("2"),
        OsStr::new("--id"),
        OsStr::new("abc"),
        OsStr::new("--localfs-dir"),
        dir.as_os_str(),
        OsStr::new("--bootstrap"),
        fx.bootstrap.as_os_str(),
        OsStr::new("--mountpoint"),
        mnt.as_os_str(),
    ]
    .iter()
    .map(|s| s.to_os_string())
    .collect();
    let d = Nydusd::start(&mnt, &tmp.path().join("log"), &refs(&args));
    same_tree(&fx, &mnt, &d);
}

#[test]
fn virtual_mountpoint_inode_numbers_and_warm_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture("mini-v6-zstd-sha256");
    let mnt = tmp.path().join("mnt");
    let sock = tmp.path().join("api.sock");
    let config = tmp.path().join("config.json");
    let text = v1_config(
        &fx.blob_dir,
        "blobcache",
        &tmp.path().join("cache"),
        "direct",
    );
    std::fs::write(&config, text).unwrap();
    let args: Vec<OsString> = [
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--bootstrap"),
        fx.bootstrap.as_os_str(),
        OsStr::new("--virtual-mountpoint"),
        OsStr::new("/sub/image"),
        OsStr::new("--apisock"),
        sock.as_os_str(),
        OsStr::new("fuse"),
        OsStr::new("--mountpoint"),
        mnt.as_os_str(),
    ]
    .iter()
    .map(|s| s.to_os_string())
    .collect();
    let d = Nydusd::start(&mnt, &tmp.path().join("log"), &refs(&args));
    let image = mnt.join("sub/image");
    same_tree(&fx, &image, &d);

    // Upstream numbering: the first mount has index 1 in the top 8 bits.
    for rel in ["", "sizes", "sizes/random-3m"] {
        let ino = std::fs::symlink_metadata(image.join(rel)).unwrap().ino();
        assert_eq!(ino >> 56, 1, "{rel}: st_ino {ino:#x}");
    }

    // A warm re-read of a file is served from the page cache: no READ.
    let file = image.join("sizes/random-3m");
    let reads = || {
        let m = api::call(&sock, "GET", "/api/v1/metrics", None).json();
        m["fop_hits"][4].as_u64().expect("fop_hits[4]")
    };
    let first = std::fs::read(&file).unwrap();
    let after_first = reads();
    assert!(after_first > 0, "cold read reached the daemon");
    let second = std::fs::read(&file).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        reads(),
        after_first,
        "warm re-read sent READs; log:\n{}",
        d.log_text()
    );
}

/// `fs_prefetch.enable` (v1 default `prefetch_all: true`): the whole image
/// lands in the blob cache without any read, and reading every file after
/// that costs no backend request.
#[test]
fn prefetch_fills_the_blob_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture("dedup-v6-zstd-blake3");
    let mnt = tmp.path().join("mnt");
    let sock = tmp.path().join("api.sock");
    let config = tmp.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&v1_config(
        &fx.blob_dir,
        "blobcache",
        &tmp.path().join("cache"),
        "direct",
    ))
    .unwrap();
    cfg["fs_prefetch"] = serde_json::json!({"enable": true, "threads_count": 2});
    std::fs::write(&config, cfg.to_string()).unwrap();
    let args: Vec<OsString> = [
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--bootstrap"),
        fx.bootstrap.as_os_str(),
        OsStr::new("--apisock"),
        sock.as_os_str(),
        OsStr::new("--mountpoint"),
        mnt.as_os_str(),
    ]
    .iter()
    .map(|s| s.to_os_string())
    .collect();
    let d = Nydusd::start(&mnt, &tmp.path().join("log"), &refs(&args));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = api::call(&sock, "GET", "/api/v1/metrics/blobcache", None).json();
        if m["data_all_ready"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "prefetch did not fill the cache: {m}; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let backend_reads = || {
        api::call(&sock, "GET", "/api/v1/metrics/backend", None).json()["read_count"]
            .as_u64()
            .expect("read_count")
    };
    let before = backend_reads();
    same_tree(&fx, &mnt, &d);
    assert_eq!(
        backend_reads(),
        before,
        "reads after prefetch went to the backend"
    );
}
