//! A worker whose mount table was changed through its own API (`PUT
//! /api/v1/mount?mountpoint=/`, or pseudo mounts after `/` was unmounted)
//! serves images at later mount indexes. Its successors, after an upgrade
//! or a crash, must serve each image at its path with the same inode
//! numbers, without an error.

mod supervisor_support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nydus_e2e::api;
use supervisor_support::{config_for, snapshot, Supervisor};

fn fixture(name: &str) -> nydus_e2e::Fixture {
    nydus_e2e::fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name}"))
}

/// (path under the mountpoint, st_ino, bytes) of every regular file.
fn files(mp: &Path) -> Vec<(PathBuf, u64, Vec<u8>)> {
    snapshot(mp)
        .into_iter()
        .map(|(p, bytes)| {
            let ino = std::fs::symlink_metadata(&p).expect("stat").ino();
            (p.strip_prefix(mp).unwrap().to_path_buf(), ino, bytes)
        })
        .collect()
}

/// The API socket of `id`'s worker.
fn worker_apisock(sup: &Supervisor, id: &str) -> PathBuf {
    let entry = sup.list().into_iter().find(|m| m["id"] == id);
    PathBuf::from(
        entry
            .as_ref()
            .and_then(|m| m["apisock"].as_str())
            .unwrap_or_else(|| panic!("no worker apisock in {entry:?}")),
    )
}

#[test]
fn upgrade_and_crash_after_a_remount_keep_the_new_image() {
    let first = fixture("mini-v6-zstd-sha256");
    let second = fixture("dedup-v6-zstd-blake3");
    let mut sup = Supervisor::start();
    let (id, mp) = sup.mount(&first, "r");
    let before = files(&mp);

    let sock = worker_apisock(&sup, &id);
    let config = std::fs::read_to_string(config_for(&second, sup.dir.path(), "second"))
        .expect("read config");
    let body = api::mount_body(&second.bootstrap, &config);
    let r = api::call(&sock, "PUT", "/api/v1/mount?mountpoint=/", Some(&body));
    r.expect_status(204, "PUT /api/v1/mount?mountpoint=/");
    let replaced = files(&mp);
    assert_ne!(
        replaced.iter().map(|f| &f.0).collect::<Vec<_>>(),
        before.iter().map(|f| &f.0).collect::<Vec<_>>(),
        "the remount did not change the tree"
    );

    let old = sup.pid_of(&id).expect("worker pid");
    sup.ctl_ok(&["upgrade", &id], "upgrade after a remount");
    let new = sup.wait_new_pid(&id, old);
    assert!(
        files(&mp) == replaced,
        "after the upgrade the mount serves other names, inode numbers or bytes"
    );

    // SAFETY: kill(2) on the worker pid the supervisor reports.
    unsafe { libc::kill(new, libc::SIGKILL) };
    sup.wait_new_pid(&id, new);
    assert!(
        files(&mp) == replaced,
        "after a crash the mount serves other names, inode numbers or bytes"
    );
}

/// The same for a worker whose table became pseudo mounts through its API
/// (`/` unmounted, images at sub-paths, one of them unmounted again): after
/// an upgrade each path leads to its own image, at its own inode numbers.
#[test]
fn upgrade_keeps_each_pseudo_mount_at_its_path() {
    let first = fixture("mini-v6-zstd-sha256");
    let second = fixture("dedup-v6-zstd-blake3");
    let mut sup = Supervisor::start();
    let (id, mp) = sup.mount(&first, "p");
    let sock = worker_apisock(&sup, &id);
    let text = |fx: &nydus_e2e::Fixture, name: &str| {
        std::fs::read_to_string(config_for(fx, sup.dir.path(), name)).expect("read config")
    };
    api::umount(&sock, "/").expect_status(204, "DELETE /");
    for (sub, fx, name) in [
        ("/gone", &first, "g"),
        ("/a", &first, "a"),
        ("/b", &second, "b"),
    ] {
        let r = api::mount(&sock, sub, &fx.bootstrap, &text(fx, name));
        r.expect_status(204, &format!("POST {sub}"));
    }
    api::umount(&sock, "/gone").expect_status(204, "DELETE /gone");
    let a = files(&mp.join("a"));
    let b = files(&mp.join("b"));
    assert!(!a.is_empty() && !b.is_empty() && a != b);

    let old = sup.pid_of(&id).expect("worker pid");
    sup.ctl_ok(&["upgrade", &id], "upgrade of a pseudo-mount worker");
    sup.wait_new_pid(&id, old);
    // Names looked up afresh, not only the kernel's cached entries.
    let fresh = mp.join("b/..").join("a");
    assert!(
        files(&fresh) == a,
        "/a serves another image after the upgrade"
    );
    assert!(
        files(&mp.join("b")) == b,
        "/b serves another image after the upgrade"
    );
    let mut names: Vec<_> = std::fs::read_dir(&mp)
        .expect("readdir")
        .map(|e| e.expect("dirent").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"], "root listing after the upgrade");
}
