//! Build → mount → compare: images made by `nydusctl image create` from the
//! mktree `small` and `dedup` trees, in every combination of RAFS version,
//! compressor, digester and chunk size (all 48 images), mounted in
//! `mode: direct` and `mode: cached`, must show exactly the source tree (`manifest.py`), except the root's attributes (as
//! upstream) and mtime 0, which is shown as the daemon's start time (as
//! upstream; checked, not just tolerated).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use nydus_e2e::api::{self, Daemon, V1Config};
use nydus_e2e::{nydusctl_bin, source};

#[derive(Clone, Copy, Debug)]
struct Combo {
    fs: u8,
    compressor: &'static str,
    digester: &'static str,
    chunk: u32,
}

impl Combo {
    fn name(&self) -> String {
        format!(
            "v{}-{}-{}-{:#x}",
            self.fs, self.compressor, self.digester, self.chunk
        )
    }
}

fn all_combos(fs: u8) -> Vec<Combo> {
    let mut out = Vec::new();
    for compressor in ["none", "lz4_block", "zstd"] {
        for digester in ["blake3", "sha256"] {
            for chunk in [0x10000, 0x100000] {
                out.push(Combo {
                    fs,
                    compressor,
                    digester,
                    chunk,
                });
            }
        }
    }
    out
}

/// `nydusctl image create`; returns the bootstrap.
fn build(tree: &Path, out: &Path, blobs: &Path, c: Combo) -> PathBuf {
    let boot = out.join(format!("{}.boot", c.name()));
    let res = Command::new(nydusctl_bin())
        .args(["image", "create", "--bootstrap"])
        .arg(&boot)
        .arg("--blob-dir")
        .arg(blobs)
        .args(["--fs-version", &c.fs.to_string()])
        .args(["--compressor", c.compressor])
        .args(["--digester", c.digester])
        .args(["--chunk-size", &format!("{:#x}", c.chunk)])
        .arg(tree)
        .output()
        .expect("run nydusctl image create");
    assert!(
        res.status.success(),
        "nydusctl image create {} failed ({}): {}",
        c.name(),
        res.status,
        String::from_utf8_lossy(&res.stderr)
    );
    boot
}

/// Builds every combo from the `profile` tree and checks each mounted in
/// both modes through the API of one pseudo-mount daemon, plus the first
/// combo mounted standalone (`--bootstrap`). Collects every difference
/// before failing, so one run shows all broken combinations.
fn roundtrip(profile: &str, combos: &[Combo]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("src");
    source::make_tree(profile, &tree);
    let want = source::manifest(&tree, &["--ignore", "rootattr"]);
    let blobs = tmp.path().join("blobs");
    std::fs::create_dir(&blobs).expect("mkdir blobs");
    let started = source::now_secs();
    let d = Daemon::start(
        &tmp.path().join("mnt"),
        &tmp.path().join("api.sock"),
        &tmp.path().join("nydusd.log"),
        &[OsStr::new("--log-level"), OsStr::new("warn")],
    );
    let mut failures = Vec::new();
    for c in combos {
        let boot = build(&tree, tmp.path(), &blobs, *c);
        for mode in ["direct", "cached"] {
            let what = format!("{profile} {} mode {mode}", c.name());
            let mut cfg = V1Config::new(&blobs, &tmp.path().join("cache"));
            cfg.mode = mode;
            let sub = format!("/{}-{mode}", c.name());
            let r = api::mount(&d.apisock, &sub, &boot, &cfg.text());
            if r.status != 204 && r.status != 200 {
                failures.push(format!("{what}: mount: HTTP {} {}", r.status, r.body));
                continue;
            }
            let diff = source::diff_mount(&want, &d.mountpoint.join(&sub[1..]), started);
            if !diff.is_empty() {
                failures.push(format!(
                    "{what}: {} differences, first: {:#?}",
                    diff.len(),
                    &diff[..diff.len().min(8)]
                ));
            }
            let r = api::umount(&d.apisock, &sub);
            if r.status != 204 && r.status != 200 {
                failures.push(format!("{what}: umount: HTTP {} {}", r.status, r.body));
            }
        }
    }
    drop(d);
    if let Some(c) = combos.first() {
        let boot = tmp.path().join(format!("{}.boot", c.name()));
        let cfg_path = tmp.path().join("standalone.json");
        let cfg = V1Config::new(&blobs, &tmp.path().join("cache-standalone"));
        std::fs::write(&cfg_path, cfg.text()).expect("write config");
        let started = source::now_secs();
        let d = Daemon::start(
            &tmp.path().join("mnt-standalone"),
            &tmp.path().join("standalone.sock"),
            &tmp.path().join("standalone.log"),
            &[
                OsStr::new("--config"),
                cfg_path.as_os_str(),
                OsStr::new("--bootstrap"),
                boot.as_os_str(),
                OsStr::new("--log-level"),
                OsStr::new("warn"),
            ],
        );
        let diff = source::diff_mount(&want, &d.mountpoint, started);
        if !diff.is_empty() {
            failures.push(format!(
                "{profile} {} standalone --bootstrap mount: {} differences, first: {:#?}",
                c.name(),
                diff.len(),
                &diff[..diff.len().min(8)]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} mounts differ from the source:\n{}",
        failures.len(),
        combos.len() * 2 + 1,
        failures.join("\n")
    );
}

#[test]
fn roundtrip_small_v5() {
    roundtrip("small", &all_combos(5));
}

#[test]
fn roundtrip_small_v6() {
    roundtrip("small", &all_combos(6));
}

#[test]
fn roundtrip_dedup_v5() {
    roundtrip("dedup", &all_combos(5));
}

#[test]
fn roundtrip_dedup_v6() {
    roundtrip("dedup", &all_combos(6));
}
