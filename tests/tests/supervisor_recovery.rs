//! When a new worker cannot start: an upgrade rolls back (the old worker
//! keeps serving), and a crashed mount whose successors keep failing backs
//! off, then is detached and reported instead of left dead.

mod supervisor_support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use nydus_e2e::api::is_fuse_mounted;
use supervisor_support::Supervisor;

/// A nydusd wrapper that fails while `flag` exists.
fn wrapper(sup: &Supervisor) -> (std::path::PathBuf, std::path::PathBuf) {
    let flag = sup.dir.path().join("fail");
    let script = sup.dir.path().join("nydusd-wrapper");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ -e {} ] && {{ echo 'nydusd: injected start failure' >&2; exit 1; }}\nexec {} \"$@\"\n",
            flag.display(),
            nydus_e2e::nydusd_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, flag)
}

#[test]
fn failed_upgrade_rolls_back_and_crash_loop_detaches() {
    let fx = nydus_e2e::fixtures()
        .into_iter()
        .find(|f| f.name == "mini-v6-zstd-sha256")
        .expect("fixture");
    let mut sup = Supervisor::start();
    let (script, flag) = wrapper(&sup);
    let (id, mp) = sup.mount(&fx, "a");
    // Run the mount on the wrapper binary (it still works).
    sup.ctl_ok(
        &["upgrade", "--nydusd", script.to_str().unwrap(), &id],
        "upgrade to the wrapper",
    );
    let pid = sup.pid_of(&id).unwrap();

    // Upgrade to a binary that fails: rolled back, same worker serves.
    std::fs::write(&flag, b"").unwrap();
    let out = sup.ctl(&["upgrade", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("rolled back") && err.contains("injected start failure"),
        "{err}"
    );
    assert_eq!(sup.pid_of(&id), Some(pid));
    assert!(
        std::fs::read_dir(&mp).unwrap().count() > 0,
        "mount still serves"
    );

    // Crash with successors failing: backoff, then detached and reported.
    // SAFETY: kill(2) on the worker pid the supervisor reports.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_backoff = false;
    let info = loop {
        let m = sup.list().into_iter().find(|m| m["id"] == id).unwrap();
        saw_backoff |= m["status"] == "backoff";
        if m["status"] == "failed" {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "never failed: {m}\n{}",
            sup.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(saw_backoff, "no backoff before giving up");
    assert!(
        info["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("detached"),
        "{info}"
    );
    assert!(!is_fuse_mounted(&mp), "a dead mount was left behind");
    let out = sup.ctl(&["list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed"));
    assert!(sup.ctl(&["umount", &id]).status.success());
    assert!(sup.list().is_empty());
}

/// A worker that dies while the supervisor is down takes the last fd with
/// it: after the restart the mount is detached and reported, not left as
/// "transport endpoint is not connected".
#[test]
fn worker_lost_while_supervisor_down_is_detached() {
    let fx = nydus_e2e::fixtures()
        .into_iter()
        .find(|f| f.name == "mini-v6-zstd-sha256")
        .expect("fixture");
    let mut sup = Supervisor::start();
    let (id, mp) = sup.mount(&fx, "a");
    let (id2, mp2) = sup.mount(&fx, "b");
    let pid = sup.pid_of(&id).unwrap();
    sup.stop();
    // SAFETY: kill(2) on the worker pid the supervisor reported.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    sup.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = sup.list();
        let a = l.iter().find(|m| m["id"] == id).unwrap();
        let b = l.iter().find(|m| m["id"] == id2).unwrap();
        if a["status"] == "failed" && b["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "{l:?}\n{}", sup.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_fuse_mounted(&mp), "dead mount left behind");
    assert!(
        std::fs::read_dir(&mp2).unwrap().count() > 0,
        "the other mount serves"
    );
    assert!(sup.ctl(&["umount", &id]).status.success());
    assert!(sup.ctl(&["umount", &id2]).status.success());
}
