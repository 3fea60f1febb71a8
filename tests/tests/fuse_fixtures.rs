//! Every upstream-made fixture image, mounted with `nydusd --config
//! --mountpoint --bootstrap` in three storage modes, must reproduce its
//! `expected.manifest` with only the differences upstream nydusd itself
//! shows: an mtime stored as 0 (the root of directory-built images, and a
//! file whose mtime really is 0) is reported as the daemon's start time.

use std::ffi::OsStr;
use std::path::Path;

use nydus_e2e::mount::{now_secs, v1_config, Nydusd};
use nydus_e2e::servers::fixture_diffs;
use nydus_e2e::source::manifest;
use nydus_e2e::{fixtures, shared_script, Fixture};

/// `manifest.py --compare`, for a readable summary in failure messages.
fn compare_summary(expected: &Path, actual: &str, tmp: &Path) -> String {
    let actual_path = tmp.join("actual.manifest");
    std::fs::write(&actual_path, actual).expect("write actual manifest");
    let out = std::process::Command::new("python3")
        .arg(shared_script("manifest.py"))
        .arg("--compare")
        .arg(expected)
        .arg(&actual_path)
        .output()
        .expect("run manifest.py --compare");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_fixture(fx: &Fixture, cache: &str, mode: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    let work = tmp.path().join("cache");
    let config = tmp.path().join("config.json");
    std::fs::write(&config, v1_config(&fx.blob_dir, cache, &work, mode)).expect("write config");
    let log = tmp.path().join("nydusd.log");
    let args: Vec<&OsStr> = vec![
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--mountpoint"),
        mnt.as_os_str(),
        OsStr::new("--bootstrap"),
        fx.bootstrap.as_os_str(),
        OsStr::new("--log-level"),
        OsStr::new("warn"),
    ];
    let daemon = Nydusd::start(&mnt, &log, &args);
    let expected = std::fs::read_to_string(&fx.expected_manifest).expect("read expected manifest");
    let actual = manifest(&mnt, &[]);
    // A second pass reads every file again, now warm (page cache or blob cache).
    let again = manifest(&mnt, &[]);
    let diffs = fixture_diffs(&expected, &actual, daemon.started, now_secs());
    assert!(
        diffs.is_empty(),
        "{} ({mode} + {cache}): {} unexpected differences:\n{}\nmanifest.py --compare:\n{}\nnydusd log:\n{}",
        fx.name,
        diffs.len(),
        diffs.join("\n"),
        compare_summary(&fx.expected_manifest, &actual, tmp.path()),
        daemon.log_text()
    );
    assert_eq!(
        actual, again,
        "{} ({mode} + {cache}): warm re-read differs",
        fx.name
    );
}

fn check_all(cache: &str, mode: &str) {
    for fx in fixtures() {
        check_fixture(&fx, cache, mode);
    }
}

#[test]
fn fixtures_direct_blobcache() {
    check_all("blobcache", "direct");
}

#[test]
fn fixtures_cached_blobcache() {
    check_all("blobcache", "cached");
}

#[test]
fn fixtures_direct_dummycache() {
    check_all("dummycache", "direct");
}

#[test]
fn allowed_differences_are_only_start_time_mtimes() {
    let exp = ". type=dir mtime=1600000000\n./a type=file mtime=0\n./b type=file mtime=5\n";
    let ok = ". type=dir mtime=100\n./a type=file mtime=101\n./b type=file mtime=5\n";
    assert!(fixture_diffs(exp, ok, 100, 101).is_empty());
    let bad = ". type=dir mtime=100\n./a type=file mtime=101\n./b type=file mtime=100\n";
    assert_eq!(fixture_diffs(exp, bad, 100, 101).len(), 1);
}
