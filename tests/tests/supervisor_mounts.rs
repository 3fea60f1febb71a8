//! Several mounts, each its own worker; killing one affects no other. And
//! bad requests: each a clear one-line error, nothing left half-mounted.

mod supervisor_support;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use nydus_e2e::api::is_fuse_mounted;
use supervisor_support::{config_for, run_with_timeout, snapshot, Supervisor};

fn fixture() -> nydus_e2e::Fixture {
    nydus_e2e::fixtures()
        .into_iter()
        .find(|f| f.name == "mini-v6-zstd-sha256")
        .expect("fixture mini-v6-zstd-sha256")
}

#[test]
fn ten_mounts_kill_one() {
    let fx = fixture();
    let mut sup = Supervisor::start();
    let mut mounts = Vec::new();
    for i in 0..10 {
        mounts.push(sup.mount(&fx, &format!("m{i}")));
    }
    let want = snapshot(&mounts[0].1);
    let before: Vec<i32> = mounts
        .iter()
        .map(|(id, _)| sup.pid_of(id).unwrap())
        .collect();
    let mut uniq = before.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 10, "one worker per mount");

    let victim = &mounts[3].0;
    // SAFETY: kill(2) on the worker pid the supervisor reports.
    unsafe { libc::kill(before[3], libc::SIGKILL) };
    sup.wait_new_pid(victim, before[3]);
    for (i, (id, mp)) in mounts.iter().enumerate() {
        let got = snapshot(mp);
        let rel = |v: &[(std::path::PathBuf, Vec<u8>)], base: &std::path::Path| {
            v.iter()
                .map(|(p, b)| (p.strip_prefix(base).unwrap().to_path_buf(), b.clone()))
                .collect::<Vec<_>>()
        };
        assert!(
            rel(&got, mp) == rel(&want, &mounts[0].1),
            "{id}: wrong content"
        );
        if i != 3 {
            assert_eq!(sup.pid_of(id), Some(before[i]), "{id}: its worker changed");
        }
    }
    let listed = sup.list();
    assert_eq!(listed.len(), 10);
    assert!(
        listed.iter().all(|m| m["status"] == "running"),
        "{listed:?}"
    );
    for (id, mp) in &mounts {
        sup.ctl_ok(&["umount", id], &format!("umount {id}"));
        assert!(!is_fuse_mounted(mp), "{} still mounted", mp.display());
    }
    assert!(sup.list().is_empty());
}

fn expect_err(sup: &Supervisor, args: &[&str], needle: &str) {
    let out = sup.ctl(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: want {needle:?} in {err:?}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{args:?}: one line, got {err:?}"
    );
}

#[test]
fn bad_requests() {
    let fx = fixture();
    let mut sup = Supervisor::start();
    let dir = sup.dir.path().to_path_buf();
    let cfg = config_for(&fx, &dir, "x");
    let (cfg_s, boot) = (cfg.to_str().unwrap(), fx.bootstrap.to_str().unwrap());
    let mp = dir.join("mnt-bad");
    std::fs::create_dir_all(&mp).unwrap();
    sup.mountpoints.push(mp.clone());
    let mp_s = mp.to_str().unwrap();
    let missing = dir.join("nope");
    let missing_s = missing.to_str().unwrap();

    expect_err(
        &sup,
        &["mount", "--bootstrap", boot, "--config", cfg_s, missing_s],
        "create the directory first",
    );
    expect_err(
        &sup,
        &["mount", "--bootstrap", missing_s, "--config", cfg_s, mp_s],
        "no such file",
    );
    expect_err(
        &sup,
        &["mount", "--bootstrap", "rel/boot", "--config", cfg_s, mp_s],
        "relative path",
    );
    expect_err(
        &sup,
        &["mount", "--bootstrap", boot, "--config", cfg_s, "mnt"],
        "relative path",
    );
    let bad_cfg = dir.join("bad.json");
    std::fs::write(&bad_cfg, "{ not json").unwrap();
    expect_err(
        &sup,
        &[
            "mount",
            "--bootstrap",
            boot,
            "--config",
            bad_cfg.to_str().unwrap(),
            mp_s,
        ],
        "bad.json",
    );
    // A file that is not a bootstrap: the worker refuses it; its error is reported.
    expect_err(
        &sup,
        &["mount", "--bootstrap", cfg_s, "--config", cfg_s, mp_s],
        "failed",
    );
    assert!(!is_fuse_mounted(&mp), "half-mounted after a failed mount");
    assert!(
        sup.list().is_empty(),
        "a failed mount is listed: {:?}",
        sup.list()
    );

    let (id, _) = sup.mount(&fx, "ok");
    let ok_mp = dir.join("mnt-ok");
    expect_err(
        &sup,
        &[
            "mount",
            "--bootstrap",
            boot,
            "--config",
            cfg_s,
            ok_mp.to_str().unwrap(),
        ],
        "already mounted",
    );
    expect_err(&sup, &["umount", "m999"], "no mount m999");
    expect_err(
        &sup,
        &["upgrade", "--nydusd", "/nonexistent/nydusd", &id],
        "nydusd binary",
    );

    // A second supervisor on the same socket.
    let mut cmd = Command::new(nydus_e2e::nydusctl_bin());
    cmd.args([
        "supervise",
        "--sock",
        sup.sock.to_str().unwrap(),
        "--state-dir",
        dir.join("state2").to_str().unwrap(),
    ]);
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already serving"),
        "{out:?}"
    );

    // A client that is not root.
    let mut cmd = Command::new(nydus_e2e::nydusctl_bin());
    cmd.args(["list"])
        .env("NYDUS_SUPERVISOR_SOCK", &sup.sock)
        .uid(65534)
        .gid(65534);
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );

    // The mount survived all of it.
    assert_eq!(sup.list().len(), 1);
    assert!(sup.ctl(&["umount", &id]).status.success());
}
