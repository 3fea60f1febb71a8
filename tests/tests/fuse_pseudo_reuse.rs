//! Pseudo mounts removed while in use (reference §9).
//!
//! * A file kept open across the umount of its pseudo mount: once later
//!   mounts reuse the unmounted instance's inode-number prefix (`fs_index`,
//!   1..=255, round robin), the old descriptor must not read another image's
//!   file that got the same node id -- it may fail or still read its own
//!   file, never someone else's bytes (architecture: "Wrong bytes are never
//!   returned").
//! * Umount under load: readers busy on the mount see correct bytes until
//!   the umount and errors after it, the umount answers promptly, and the
//!   daemon keeps serving.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nydus_e2e::api::{self, Daemon, V1Config};
use nydus_e2e::{fixtures, source, Fixture};

const LOW56: u64 = (1 << 56) - 1;

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name} missing"))
}

/// Regular files under `root`: backend inode (low 56 bits) -> relative path.
fn files_by_ino(root: &Path) -> BTreeMap<u64, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for e in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        {
            let e = e.expect("dirent");
            let md = e.metadata().expect("stat entry");
            let child = rel.join(e.file_name());
            if md.is_dir() {
                stack.push(child);
            } else if md.is_file() {
                out.insert(md.ino() & LOW56, child);
            }
        }
    }
    out
}

fn ok(r: &api::Response, what: &str, d: &Daemon) {
    assert!(
        r.status == 204 || r.status == 200,
        "{what}: HTTP {} {}; log:\n{}",
        r.status,
        r.body,
        d.log_tail()
    );
}

#[test]
fn open_fd_across_umount_never_reads_another_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (fa, fb) = (
        fixture("mini-v5-lz4-blake3"),
        fixture("dedup-v6-zstd-blake3"),
    );
    let (ta, tb) = (tmp.path().join("src-a"), tmp.path().join("src-b"));
    source::make_checked_tree("mini", &ta, &fa.expected_manifest);
    source::make_checked_tree("dedup", &tb, &fb.expected_manifest);
    let ca = V1Config::new(&fa.blob_dir, &tmp.path().join("cache-a")).text();
    let cb = V1Config::new(&fb.blob_dir, &tmp.path().join("cache-b")).text();
    let mut d = Daemon::start(
        &tmp.path().join("mnt"),
        &tmp.path().join("api.sock"),
        &tmp.path().join("nydusd.log"),
        &[OsStr::new("--log-level"), OsStr::new("warn")],
    );
    let (sock, mnt) = (d.apisock.clone(), d.mountpoint.clone());

    // A file of A and a file of B with the same backend inode number and
    // different bytes.
    ok(
        &api::mount(&sock, "/p", &fa.bootstrap, &ca),
        "mount A at /p",
        &d,
    );
    ok(
        &api::mount(&sock, "/q", &fb.bootstrap, &cb),
        "mount B at /q",
        &d,
    );
    let (ia, ib) = (files_by_ino(&mnt.join("p")), files_by_ino(&mnt.join("q")));
    let (rel_a, rel_b, want_a, want_b) = ia
        .iter()
        .filter_map(|(ino, ra)| {
            let rb = ib.get(ino)?;
            let (a, b) = (
                std::fs::read(ta.join(ra)).ok()?,
                std::fs::read(tb.join(rb)).ok()?,
            );
            (!a.is_empty() && a.len() < b.len() && !b.starts_with(&a))
                .then(|| (ra.clone(), rb.clone(), a, b))
        })
        .next()
        .expect("no inode number names a regular file in both images");
    ok(&api::umount(&sock, "/q"), "umount /q", &d);

    let mut old = std::fs::File::open(mnt.join("p").join(&rel_a)).expect("open A's file");
    let mut got = Vec::new();
    old.read_to_end(&mut got).expect("read A's file");
    assert!(got == want_a, "A's file read wrong before the umount");
    let index = std::fs::metadata(mnt.join("p")).expect("stat /p").ino() >> 56;
    ok(&api::umount(&sock, "/p"), "umount /p", &d);

    // Mount B until its index is /p's old one (or 260 tries: a daemon that
    // never reuses an index while it is referenced is fine too).
    let mut reused = false;
    for _ in 0..260 {
        ok(
            &api::mount(&sock, "/w", &fb.bootstrap, &cb),
            "mount B at /w",
            &d,
        );
        if std::fs::metadata(mnt.join("w")).expect("stat /w").ino() >> 56 == index {
            reused = true;
            break;
        }
        ok(&api::umount(&sock, "/w"), "umount /w", &d);
    }
    if !reused {
        ok(
            &api::mount(&sock, "/w", &fb.bootstrap, &cb),
            "mount B at /w",
            &d,
        );
    }
    let new = std::fs::read(mnt.join("w").join(&rel_b)).expect("read B's file at /w");
    assert!(new == want_b, "B's file at /w has wrong bytes");

    // SAFETY: a valid descriptor; fadvise only drops clean cached pages.
    unsafe { libc::posix_fadvise(old.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut buf = vec![0u8; want_b.len()];
    match old.read_at(&mut buf, 0) {
        Err(_) => {}
        Ok(n) => assert!(
            buf[..n] == want_a[..],
            "a descriptor opened on {} of A read {n} bytes of something else after its \
             mount was removed and index {index} was reused (index reused: {reused}); \
             matches B's {}: {}",
            rel_a.display(),
            rel_b.display(),
            buf[..n] == want_b[..n]
        ),
    }
    drop(old);
    assert!(d.alive(), "nydusd died; log:\n{}", d.log_tail());
}

#[test]
fn umount_under_load() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fb = fixture("dedup-v6-zstd-blake3");
    let tree = tmp.path().join("src");
    source::make_checked_tree("dedup", &tree, &fb.expected_manifest);
    let manifest = std::fs::read_to_string(&fb.expected_manifest).expect("manifest");
    let files = source::load_files(&tree, &manifest);
    let cfg = V1Config::new(&fb.blob_dir, &tmp.path().join("cache")).text();
    let mut d = Daemon::start(
        &tmp.path().join("mnt"),
        &tmp.path().join("api.sock"),
        &tmp.path().join("nydusd.log"),
        &[OsStr::new("--log-level"), OsStr::new("warn")],
    );
    let at = d.mountpoint.join("x");
    for cycle in 0..10 {
        ok(
            &api::mount(&d.apisock, "/x", &fb.bootstrap, &cfg),
            "mount /x",
            &d,
        );
        let (umounting, stop, good) = (
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicU64::new(0),
        );
        let failures: Vec<String> = std::thread::scope(|s| {
            let readers: Vec<_> = (0..8usize)
                .map(|k| {
                    let (at, files, umounting, stop, good) =
                        (&at, &files, &umounting, &stop, &good);
                    s.spawn(move || {
                        let mut i = k;
                        while !stop.load(Ordering::SeqCst) {
                            let (rel, want) = &files[i % files.len()];
                            i += 7;
                            let got = std::fs::File::open(at.join(rel)).and_then(|mut f| {
                                // SAFETY: a valid descriptor; drops clean cached pages only.
                                unsafe {
                                    libc::posix_fadvise(
                                        f.as_raw_fd(),
                                        0,
                                        0,
                                        libc::POSIX_FADV_DONTNEED,
                                    )
                                };
                                let mut buf = Vec::new();
                                f.read_to_end(&mut buf).map(|_| buf)
                            });
                            // Read after the attempt: set before the umount is asked for.
                            let late = umounting.load(Ordering::SeqCst);
                            match got {
                                Ok(got) if got == *want => {
                                    good.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(_) => return Some(format!("{}: wrong bytes", rel.display())),
                                Err(e) if late && e.raw_os_error() != Some(libc::ENOTCONN) => {}
                                Err(e) => {
                                    return Some(format!(
                                        "{} (umount started: {late}): {e}",
                                        rel.display()
                                    ))
                                }
                            }
                        }
                        None
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            umounting.store(true, Ordering::SeqCst);
            let t = Instant::now();
            let r = api::umount(&d.apisock, "/x");
            let took = t.elapsed();
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::SeqCst);
            let mut out: Vec<String> = readers
                .into_iter()
                .filter_map(|h| h.join().expect("reader"))
                .collect();
            if r.status != 204 && r.status != 200 {
                out.push(format!("umount under load: HTTP {} {}", r.status, r.body));
            }
            if took > Duration::from_secs(10) {
                out.push(format!("umount under load took {took:?}"));
            }
            out
        });
        assert!(
            failures.is_empty(),
            "cycle {cycle}: {failures:#?}; log:\n{}",
            d.log_tail()
        );
        assert!(
            good.load(Ordering::Relaxed) > 0,
            "cycle {cycle}: no read succeeded before the umount"
        );
    }
    assert!(d.alive(), "nydusd died; log:\n{}", d.log_tail());
    ok(
        &api::mount(&d.apisock, "/y", &fb.bootstrap, &cfg),
        "mount /y",
        &d,
    );
    let (rel, want) = &files[0];
    assert!(std::fs::read(d.mountpoint.join("y").join(rel)).expect("read /y") == *want);
}
