//! virtio-fs end to end: `nydusd virtiofs --sock` (and the README's
//! `nydusd --sock`) serving a real QEMU guest (`shared/scripts/virtiofs-guest`,
//! TCG). Guest boots are slow, so every fixture is checked in one boot (each
//! fixture a pseudo mount of one daemon), and boots never run concurrently.
//!
//! Needs root (QEMU, apt-get on a fresh machine). `NYDUS_VIRTIOFS_SECS`
//! sets the parallel-read duration (default 30).

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nydus_e2e::mount::{now_secs, v1_config};
use nydus_e2e::source::{make_tree, manifest, parse};
use nydus_e2e::virtiofs::{biggest_plain_files, diffs, guest, parse_listing, start_nydusd, LIST};
use nydus_e2e::{api, fixtures, nydusctl_bin, nydusd_bin, servers::run_timeout, Fixture};

/// A builder round-trip image of the mktree `small` tree (every edge case:
/// devices, hardlinks, odd names, long symlinks) with its source manifest.
fn roundtrip_image(tmp: &Path) -> (Fixture, String) {
    let tree = tmp.join("rt-tree");
    make_tree("small", &tree);
    let expected = manifest(&tree, &[]);
    let out = tmp.join("roundtrip");
    let blob_dir = out.join("blobs");
    std::fs::create_dir_all(&blob_dir).expect("blob dir");
    let bootstrap = out.join("image.boot");
    let res = Command::new(nydusctl_bin())
        .args(["image", "create", "--bootstrap"])
        .arg(&bootstrap)
        .arg("--blob-dir")
        .arg(&blob_dir)
        .arg(&tree)
        .output()
        .expect("run nydusctl image create");
    assert!(
        res.status.success(),
        "image create: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let fx = Fixture {
        name: "roundtrip".into(),
        dir: out.clone(),
        bootstrap,
        blob_dir,
        expected_manifest: out.join("expected.manifest"),
    };
    std::fs::write(&fx.expected_manifest, &expected).expect("manifest");
    (fx, expected)
}

fn fixture_config(fx: &Fixture, tmp: &Path, i: usize) -> String {
    let work = tmp.join(format!("cache{i}"));
    std::fs::create_dir_all(&work).expect("cache dir");
    v1_config(&fx.blob_dir, "blobcache", &work, "direct")
}

/// Every fixture and a builder round-trip image in one guest boot: the
/// first through `--bootstrap`, the others as pseudo mounts made through the
/// API. The guest also says whether its kernel still knows the old
/// `virtio_fs` type name (mainline has only ever registered `virtiofs`).
#[test]
fn fixtures_match_manifests_in_guest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut fxs = fixtures();
    fxs.push(roundtrip_image(tmp.path()).0);
    let (sock, apisock) = (tmp.path().join("vfs.sock"), tmp.path().join("api.sock"));
    let cfg0 = tmp.path().join("config0.json");
    std::fs::write(&cfg0, fixture_config(&fxs[0], tmp.path(), 0)).expect("config");
    let sub0 = format!("/{}", fxs[0].name);
    let started = now_secs();
    let mut d = start_nydusd(
        &[
            "virtiofs".as_ref(),
            "--sock".as_ref(),
            sock.as_os_str(),
            "--apisock".as_ref(),
            apisock.as_os_str(),
            "--config".as_ref(),
            cfg0.as_os_str(),
            "--bootstrap".as_ref(),
            fxs[0].bootstrap.as_os_str(),
            "--virtual-mountpoint".as_ref(),
            sub0.as_ref(),
        ],
        &sock,
        &tmp.path().join("nydusd.log"),
    );
    for (i, fx) in fxs.iter().enumerate().skip(1) {
        let r = api::mount(
            &apisock,
            &format!("/{}", fx.name),
            &fx.bootstrap,
            &fixture_config(fx, tmp.path(), i),
        );
        assert!(
            r.status == 204 || r.status == 200,
            "mount {}: {r:?}",
            fx.name
        );
    }
    let probe = "if grep -qw virtio_fs /proc/filesystems; then echo VIRTIO_FS present >&2; \
                 else echo VIRTIO_FS absent >&2; fi";
    let run = guest(
        &sock,
        &format!("{probe}; cd /mnt && {{ {LIST}\n}}"),
        150,
        tmp.path(),
    );
    let ended = now_secs();
    assert!(
        run.status.success(),
        "guest failed ({}):\n{}\nnydusd:\n{}",
        run.status,
        run.stderr,
        d.log_text()
    );
    let listing = parse_listing(&run.stdout);
    let mut bad = Vec::new();
    let mut files = 0;
    for fx in &fxs {
        let text = std::fs::read_to_string(&fx.expected_manifest).expect("manifest");
        let expected = parse(&text);
        files += expected.iter().filter(|e| e.is_file()).count();
        bad.extend(diffs(&expected, &listing, &fx.name, (started, ended)));
    }
    // Guards against a listing that silently lost its hash lines.
    let hashed = listing
        .values()
        .filter(|e| e.contains_key("sha256"))
        .count();
    assert_eq!(hashed, files, "hashes in the guest listing");
    eprintln!(
        "{} images (fixtures + round trip), {} entries, {hashed} file hashes checked in one guest",
        fxs.len(),
        listing.len()
    );
    // The README's `-t virtio_fs` form needs a kernel that registers that
    // name; Debian 12's 6.1 guest kernel registers only `virtiofs`.
    let virtio_fs = run.stderr.lines().find(|l| l.starts_with("VIRTIO_FS"));
    eprintln!("guest kernel: {}", virtio_fs.unwrap_or("VIRTIO_FS unknown"));
    assert!(virtio_fs.is_some(), "the guest's probe line is missing");
    assert!(d.alive(), "nydusd died:\n{}", d.log_text());
    assert!(
        bad.is_empty(),
        "{} differences:\n{}",
        bad.len(),
        bad[..bad.len().min(40)].join("\n")
    );
}

/// The README form `nydusd --sock`: 4 files read in parallel for
/// NYDUS_VIRTIOFS_SECS with the guest's caches dropped between reads, every
/// hash checked; then a guest killed mid-read, and the next guest is served.
#[test]
fn parallel_reads_then_next_guest_after_kill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = fixtures()
        .into_iter()
        .find(|f| f.name == "mini-v6-zstd-sha256")
        .expect("fixture mini-v6-zstd-sha256");
    let cfg = tmp.path().join("config.json");
    std::fs::write(&cfg, fixture_config(&fx, tmp.path(), 0)).expect("config");
    let sock = tmp.path().join("vfs.sock");
    let mut d = start_nydusd(
        &[
            "--config".as_ref(),
            cfg.as_os_str(),
            "--sock".as_ref(),
            sock.as_os_str(),
            "--bootstrap".as_ref(),
            fx.bootstrap.as_os_str(),
        ],
        &sock,
        &tmp.path().join("nydusd.log"),
    );
    // The 4 biggest files with plain names, and their expected hashes.
    let files = biggest_plain_files(&fx.expected_manifest, 4);
    let secs: u64 = std::env::var("NYDUS_VIRTIOFS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut script = format!(
        r#"[ -w /proc/sys/vm/drop_caches ] || mount -t proc proc /proc
end=$(( $(date +%s) + {secs} ))
check() {{ n=0; while [ "$(date +%s)" -lt "$end" ]; do
  echo 3 > /proc/sys/vm/drop_caches
  got=$(sha256sum "$1" | cut -d" " -f1)
  [ "$got" = "$2" ] || echo "BAD $1 $got"
  n=$((n+1)); done; echo "DONE $1 $n"; }}
"#
    );
    for f in &files {
        let path = format!("/mnt/{}", f.name.trim_start_matches("./"));
        script.push_str(&format!("check {path} {} &\n", f.field("sha256")));
    }
    script.push_str("wait\n");
    let run = guest(&sock, &script, secs + 90, tmp.path());
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "guest failed ({}):\n{out}\n{}",
        run.status,
        run.stderr
    );
    assert!(!out.contains("BAD"), "wrong bytes:\n{out}");
    let rounds: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("DONE "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(rounds.len(), 4, "not every reader finished:\n{out}");
    assert!(rounds.iter().all(|&n| n > 0), "a reader never read:\n{out}");
    eprintln!("parallel reads over {secs} s: {rounds:?} rounds per file");

    // A guest killed by its timeout while reading in a loop.
    let loop_script = format!(
        "while :; do sha256sum /mnt/{} >/dev/null; echo 3 > /proc/sys/vm/drop_caches; done",
        files[0].name.trim_start_matches("./")
    );
    let killed = guest(&sock, &loop_script, 10, tmp.path());
    assert_eq!(
        killed.status.code(),
        Some(124),
        "expected a timeout: {}",
        killed.stderr
    );
    assert!(d.alive(), "nydusd died with its guest:\n{}", d.log_text());

    // The next guest gets correct bytes from the same daemon.
    let f = &files[1];
    let run = guest(
        &sock,
        &format!("sha256sum /mnt/{}", f.name.trim_start_matches("./")),
        60,
        tmp.path(),
    );
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "next guest failed: {}\n{}",
        run.stderr,
        d.log_text()
    );
    assert!(out.starts_with(f.field("sha256")), "next guest read {out}");
    assert!(
        d.log_text().matches("frontend disconnected").count() >= 2,
        "{}",
        d.log_text()
    );
}

fn refs(v: &[std::ffi::OsString]) -> Vec<&OsStr> {
    v.iter().map(|s| s.as_os_str()).collect()
}

/// Runs nydusd expecting a start-up failure: exit 1 and exactly one line.
fn expect_refusal(args: &[&OsStr], needle: &str) {
    let out = run_timeout(Command::new(nydusd_bin()).args(args), 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: not one line: {stderr}"
    );
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

#[test]
fn bad_sockets_and_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = &fixtures()[0];
    let cfg = tmp.path().join("config.json");
    std::fs::write(&cfg, fixture_config(fx, tmp.path(), 0)).expect("config");
    let base = |sock: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "virtiofs".into(),
            "--sock".into(),
            sock.into(),
            "--config".into(),
            cfg.clone().into(),
            "--bootstrap".into(),
            fx.bootstrap.clone().into(),
        ]
    };

    let missing = tmp.path().join("no/such/dir/vfs.sock");
    expect_refusal(&refs(&base(&missing)), "does not exist");

    let plain = tmp.path().join("plain-file");
    std::fs::write(&plain, b"keep me").expect("write");
    expect_refusal(&refs(&base(&plain)), "not a socket");
    assert_eq!(std::fs::read(&plain).expect("read"), b"keep me");

    expect_refusal(
        &refs(&[
            "virtiofs".into(),
            "--config".into(),
            cfg.clone().into(),
            "--bootstrap".into(),
            fx.bootstrap.clone().into(),
        ]),
        "--sock",
    );
    let mut both = base(&tmp.path().join("x.sock"));
    both.extend(["--mountpoint".into(), tmp.path().into()]);
    expect_refusal(&refs(&both), "--mountpoint");

    // A socket in use by a live daemon: the second one refuses and the
    // first keeps its socket.
    let sock = tmp.path().join("vfs.sock");
    let mut first = start_nydusd(&refs(&base(&sock)), &sock, &tmp.path().join("first.log"));
    expect_refusal(&refs(&base(&sock)), "in use");
    assert!(first.alive(), "{}", first.log_text());
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());

    // SIGTERM: exit 0 and the socket file is gone.
    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe { libc::kill(first.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(st)) = first.child.try_wait() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", first.log_text());
    assert!(!sock.exists(), "socket left behind");

    // A stale socket file (nobody listening) is replaced.
    let stale = tmp.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let mut again = start_nydusd(&refs(&base(&stale)), &stale, &tmp.path().join("again.log"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(again.alive(), "{}", again.log_text());
}
