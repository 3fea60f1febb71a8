//! Starting `nydusd` by its command line and cleaning up after it.
//!
//! [`Nydusd`] is a guard: it starts the built binary, waits until the
//! mountpoint is a FUSE mount, and on drop kills the process and
//! `umount -l`s the mountpoint, so a failing test leaves nothing behind.
//! Assertion messages carry the daemon's log.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::api::is_fuse_mounted;

/// A running `nydusd` serving a mountpoint.
pub struct Nydusd {
    child: Option<Child>,
    pub mountpoint: PathBuf,
    pub log: PathBuf,
    /// Unix seconds just before the process started (its start time is
    /// at or after this).
    pub started: i64,
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn spawn(args: &[&OsStr], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("create log file");
    let err = out.try_clone().expect("clone log fd");
    Command::new(crate::nydusd_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn nydusd")
}

fn read_log(log: &Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let start = text.len().saturating_sub(8192);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

impl Nydusd {
    /// Runs `nydusd ARGS` (which must include `--mountpoint mountpoint`),
    /// output to `log`, and waits up to 30 s for the mount. Panics with the
    /// log if the process exits first.
    pub fn start(mountpoint: &Path, log: &Path, args: &[&OsStr]) -> Nydusd {
        std::fs::create_dir_all(mountpoint).expect("create mountpoint");
        let started = now_secs();
        let mut d = Nydusd {
            child: Some(spawn(args, log)),
            mountpoint: mountpoint.to_path_buf(),
            log: log.to_path_buf(),
            started,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_fuse_mounted(mountpoint) {
            if let Some(status) = d.try_wait() {
                panic!(
                    "nydusd exited before mounting ({status}); log:\n{}",
                    d.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nydusd did not mount {} within 30 s; log:\n{}",
                mountpoint.display(),
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// The daemon's output so far (the last 8 KiB).
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, which we have not
        // reaped yet, so the pid cannot have been reused.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nydusd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .stderr(Stdio::null())
            .status();
    }
}

/// What a `nydusd` run that is expected to fail produced.
pub struct Failed {
    pub status: ExitStatus,
    pub output: String,
}

/// Runs `nydusd ARGS` to completion (30 s at most; killed and panics after
/// that, e.g. because it mounted and kept serving) and returns its status
/// and output. If `mountpoint` got mounted meanwhile it is unmounted and the
/// test fails.
pub fn run_expect_exit(args: &[&OsStr], log: &Path, mountpoint: Option<&Path>) -> Failed {
    let mut child = spawn(args, log);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut mounted = false;
    let status = loop {
        if let Some(s) = child.try_wait().ok().flatten() {
            break s;
        }
        mounted |= mountpoint.is_some_and(is_fuse_mounted);
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            if let Some(m) = mountpoint {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
            panic!("nydusd {args:?} kept running; log:\n{}", read_log(log));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(m) = mountpoint {
        if mounted || is_fuse_mounted(m) {
            let _ = Command::new("umount").arg("-l").arg(m).status();
            panic!(
                "nydusd {args:?} mounted {} before failing; log:\n{}",
                m.display(),
                read_log(log)
            );
        }
    }
    Failed {
        status,
        output: read_log(log),
    }
}

/// A v1 config for a fixture's blobs: localfs on `blob_dir`, `cache`
/// ("blobcache" with `work_dir`, or "dummycache") and RAFS `mode`.
pub fn v1_config(blob_dir: &Path, cache: &str, work_dir: &Path, mode: &str) -> String {
    serde_json::json!({
        "device": {
            "backend": {"type": "localfs", "config": {"dir": blob_dir}},
            "cache": {"type": cache, "config": {"work_dir": work_dir}},
        },
        "mode": mode,
        "digest_validate": false,
        "enable_xattr": true,
    })
    .to_string()
}
