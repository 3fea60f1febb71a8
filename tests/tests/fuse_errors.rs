//! How `nydusd` fails and stops: bad flags, config or bootstrap exit 1
//! with one line naming the culprit and nothing mounted; a corrupt blob
//! makes only the affected reads fail (EIO) while the mount keeps serving;
//! SIGTERM/SIGINT unmount and exit 0; `umount -l` by the user ends it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nydus_e2e::api::is_fuse_mounted;
use nydus_e2e::mount::{run_expect_exit, v1_config, Nydusd};
use nydus_e2e::source::parse;
use nydus_e2e::{fixtures, Fixture};

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name} missing"))
}

struct Setup {
    tmp: tempfile::TempDir,
    mnt: PathBuf,
    config: PathBuf,
    fx: Fixture,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = fixture("mini-v6-zstd-sha256");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir mnt");
    let config = tmp.path().join("config.json");
    let text = v1_config(
        &fx.blob_dir,
        "blobcache",
        &tmp.path().join("cache"),
        "direct",
    );
    std::fs::write(&config, text).expect("write config");
    Setup {
        tmp,
        mnt,
        config,
        fx,
    }
}

fn os(items: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    items.iter().map(|s| s.as_ref().to_os_string()).collect()
}

/// Runs nydusd with `args`; it must exit 1 with one non-empty line that
/// contains every string of `names`, and leave `mnt` unmounted.
fn expect_failure(s: &Setup, what: &str, args: &[OsString], names: &[&str]) {
    let log = s.tmp.path().join("fail.log");
    let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let out = run_expect_exit(&refs, &log, Some(&s.mnt));
    let lines: Vec<&str> = out
        .output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit status; output:\n{}",
        out.output
    );
    assert_eq!(
        lines.len(),
        1,
        "{what}: want one line, got:\n{}",
        out.output
    );
    for name in names {
        assert!(
            lines[0].contains(name),
            "{what}: {name:?} not named in {:?}",
            lines[0]
        );
    }
}

#[test]
fn bad_command_lines_exit_1_with_one_line() {
    let s = setup();
    let t = s.tmp.path();
    std::fs::write(t.join("garbage.bootstrap"), vec![0x5au8; 8192]).unwrap();
    std::fs::write(t.join("bad.json"), "{\"device\": {\"backend\": [1,2}").unwrap();
    let bad_mode =
        r#"{"device":{"backend":{"type":"localfs","config":{"dir":"/tmp"}}},"mode":"sideways"}"#;
    std::fs::write(t.join("bad-mode.json"), bad_mode).unwrap();
    std::fs::write(t.join("a-file"), "x").unwrap();
    // The fixture's one blob, absent from an empty directory and from one
    // that does not exist.
    let blob_id = std::fs::read_dir(&s.fx.blob_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("the fixture has a blob");
    std::fs::create_dir(t.join("empty-blobs")).unwrap();
    for (file, dir) in [
        ("no-blob.json", "empty-blobs"),
        ("no-dir.json", "no-such-dir"),
    ] {
        let text = v1_config(&t.join(dir), "blobcache", &t.join("cache"), "direct");
        std::fs::write(t.join(file), text).unwrap();
    }
    // Arguments split at spaces; {X} stands for a path (no spaces in them).
    let vars: Vec<(&str, OsString)> = vec![
        ("{C}", s.config.clone().into()),
        ("{M}", s.mnt.clone().into()),
        ("{B}", s.fx.bootstrap.clone().into()),
        ("{BLOBS}", s.fx.blob_dir.clone().into()),
        ("{T}", t.as_os_str().to_os_string()),
    ];
    let ok = "--config {C} --bootstrap {B}";
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown flag", "--no-such-flag --mountpoint {M}".into(), "--no-such-flag"),
        ("thread count 0", "--thread-num 0 --mountpoint {M}".into(), "thread"),
        ("no mountpoint", ok.into(), "--mountpoint"),
        ("missing mountpoint", format!("{ok} --mountpoint {{T}}/no-such-file"), "no-such-file"),
        ("mountpoint is a file", format!("{ok} --mountpoint {{T}}/a-file"), "a-file"),
        ("missing bootstrap", "--config {C} --bootstrap {T}/no-such-file --mountpoint {M}".into(), "no-such-file"),
        ("garbage bootstrap", "--config {C} --bootstrap {T}/garbage.bootstrap --mountpoint {M}".into(), "garbage.bootstrap"),
        ("garbage bootstrap, with --apisock", "--apisock {T}/api.sock --config {C} --bootstrap {T}/garbage.bootstrap --mountpoint {M}".into(), "garbage.bootstrap"),
        ("missing config", "--config {T}/no-such-file --bootstrap {B} --mountpoint {M}".into(), "no-such-file"),
        ("bad JSON config", "--config {T}/bad.json --bootstrap {B} --mountpoint {M}".into(), "bad.json"),
        ("bad config value", "--config {T}/bad-mode.json --bootstrap {B} --mountpoint {M}".into(), "mode"),
        ("bootstrap without config", "--bootstrap {B} --mountpoint {M}".into(), "--config"),
        ("config and localfs-dir", format!("{ok} --localfs-dir {{BLOBS}} --mountpoint {{M}}"), "--localfs-dir"),
        ("API socket in a missing directory", format!("--apisock {{T}}/no-such-file/api.sock {ok} --mountpoint {{M}}"), "--apisock"),
        ("bad log level", format!("--log-level loud {ok} --mountpoint {{M}}"), "loud"),
        ("missing blob", "--config {T}/no-blob.json --bootstrap {B} --mountpoint {M}".into(), &blob_id),
        ("missing localfs dir", "--config {T}/no-dir.json --bootstrap {B} --mountpoint {M}".into(), "no-such-dir"),
    ];
    for (what, line, name) in cases {
        let args: Vec<OsString> = line
            .split(' ')
            .map(|word| {
                let mut word = OsString::from(word);
                for (key, value) in &vars {
                    let text = word.to_string_lossy().into_owned();
                    if let Some(rest) = text.strip_prefix(key) {
                        word = value.clone();
                        word.push(rest);
                    }
                }
                word
            })
            .collect();
        expect_failure(&s, what, &args, &[name]);
    }
}

#[test]
fn busy_mountpoint_is_refused_and_first_daemon_keeps_serving() {
    let s = setup();
    let args = os(&[
        &"--config",
        &s.config,
        &"--bootstrap",
        &s.fx.bootstrap,
        &"--mountpoint",
        &s.mnt,
    ]);
    let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let first = Nydusd::start(&s.mnt, &s.tmp.path().join("first.log"), &refs);
    let log = s.tmp.path().join("second.log");
    let out = run_expect_exit(&refs, &log, None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "second daemon; output:\n{}",
        out.output
    );
    assert_eq!(
        out.output.trim().lines().count(),
        1,
        "one line:\n{}",
        out.output
    );
    assert!(
        out.output.contains("mnt"),
        "names the mountpoint: {}",
        out.output
    );
    assert!(
        std::fs::read_dir(&s.mnt).is_ok(),
        "first mount broken; log:\n{}",
        first.log_text()
    );
}

/// Copies a fixture's blobs and flips one byte in the middle of the blob.
fn corrupt_blobs(fx: &Fixture, dir: &Path) {
    std::fs::create_dir(dir).unwrap();
    for e in std::fs::read_dir(&fx.blob_dir).unwrap() {
        let e = e.unwrap();
        let mut data = std::fs::read(e.path()).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(dir.join(e.file_name()), data).unwrap();
    }
}

#[test]
fn corrupt_blob_gives_eio_and_the_mount_survives() {
    for (name, validate) in [("mini-v5-lz4-blake3", true), ("mini-v6-none-blake3", false)] {
        let tmp = tempfile::tempdir().unwrap();
        let fx = fixture(name);
        let blobs = tmp.path().join("blobs");
        corrupt_blobs(&fx, &blobs);
        let mnt = tmp.path().join("mnt");
        let config = tmp.path().join("config.json");
        let mut cfg: serde_json::Value = serde_json::from_str(&v1_config(
            &blobs,
            "blobcache",
            &tmp.path().join("cache"),
            "direct",
        ))
        .unwrap();
        cfg["digest_validate"] = validate.into();
        std::fs::write(&config, cfg.to_string()).unwrap();
        let args = os(&[
            &"--config",
            &config,
            &"--bootstrap",
            &fx.bootstrap,
            &"--mountpoint",
            &mnt,
        ]);
        let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let d = Nydusd::start(&mnt, &tmp.path().join("nydusd.log"), &refs);

        let manifest = std::fs::read_to_string(&fx.expected_manifest).unwrap();
        let (mut good, mut eio) = (0, Vec::new());
        for e in parse(&manifest).into_iter().filter(|e| e.is_file()) {
            let path = mnt.join(&e.rel);
            // Through stdin: sha256sum escapes names with a backslash.
            let input = std::fs::File::open(&path).unwrap();
            let out = Command::new("sha256sum").stdin(input).output().unwrap();
            if out.status.success() {
                let sum = String::from_utf8_lossy(&out.stdout);
                assert!(
                    sum.starts_with(e.field("sha256")),
                    "{name}: {} returned wrong bytes; log:\n{}",
                    e.name,
                    d.log_text()
                );
                good += 1;
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("Input/output error"),
                    "{name}: {}: {err}",
                    e.name
                );
                eio.push(path);
            }
        }
        assert!(
            !eio.is_empty(),
            "{name}: no read failed; log:\n{}",
            d.log_text()
        );
        assert!(
            good > 10,
            "{name}: only {good} files read fine; log:\n{}",
            d.log_text()
        );
        // The failure is not cached: `cat` fails again, the mount still answers.
        let cat = Command::new("cat").arg(&eio[0]).output().unwrap();
        assert!(
            !cat.status.success(),
            "{name}: second read of {} succeeded",
            eio[0].display()
        );
        assert!(String::from_utf8_lossy(&cat.stderr).contains("Input/output error"));
        assert!(
            std::fs::read_dir(&mnt).is_ok() && is_fuse_mounted(&mnt),
            "{name}: mount gone"
        );
    }
}

fn start_plain(s: &Setup, log: &str) -> Nydusd {
    let args = os(&[
        &"fuse",
        &"--config",
        &s.config,
        &"--bootstrap",
        &s.fx.bootstrap,
        &"--mountpoint",
        &s.mnt,
    ]);
    let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    Nydusd::start(&s.mnt, &s.tmp.path().join(log), &refs)
}

#[test]
fn sigterm_and_sigint_unmount_and_exit_0() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let s = setup();
        let mut d = start_plain(&s, "sig.log");
        assert!(std::fs::read_dir(&s.mnt).unwrap().count() > 0);
        d.signal(sig);
        let status = d.wait_exit(Duration::from_secs(10));
        let status =
            status.unwrap_or_else(|| panic!("signal {sig}: still running; log:\n{}", d.log_text()));
        assert_eq!(
            status.code(),
            Some(0),
            "signal {sig}; log:\n{}",
            d.log_text()
        );
        assert!(!is_fuse_mounted(&s.mnt), "signal {sig}: still mounted");
    }
}

#[test]
fn lazy_umount_by_the_user_ends_the_daemon() {
    let s = setup();
    let mut d = start_plain(&s, "umount.log");
    let st = Command::new("umount")
        .arg("-l")
        .arg(&s.mnt)
        .status()
        .unwrap();
    assert!(st.success());
    let status = d.wait_exit(Duration::from_secs(10));
    let status =
        status.unwrap_or_else(|| panic!("still running after umount -l; log:\n{}", d.log_text()));
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log_text());
}

/// An aborted connection (`/sys/fs/fuse/connections/N/abort`) ends the
/// daemon, and the dead mount it leaves (ENOTCONN) is detached.
#[test]
fn aborted_connection_ends_the_daemon_without_a_dead_mount() {
    use std::os::unix::fs::MetadataExt;
    let conns = Path::new("/sys/fs/fuse/connections");
    if std::fs::read_dir(conns).map_or(true, |mut d| d.next().is_none()) {
        // fusectl is not mounted by default here (test-harness.md §7).
        let _ = Command::new("mount")
            .args(["-t", "fusectl", "none"])
            .arg(conns)
            .status();
    }
    let s = setup();
    let mut d = start_plain(&s, "abort.log");
    let dev = std::fs::metadata(&s.mnt).unwrap().dev();
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    let abort = conns.join(minor.to_string()).join("abort");
    std::fs::write(&abort, "1").unwrap_or_else(|e| panic!("{}: {e}", abort.display()));
    let status = d.wait_exit(Duration::from_secs(10));
    let status =
        status.unwrap_or_else(|| panic!("still running after abort; log:\n{}", d.log_text()));
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log_text());
    assert!(
        !is_fuse_mounted(&s.mnt),
        "dead mount left; log:\n{}",
        d.log_text()
    );
}
