//! A `nydusctl supervise` guard for the supervisor tests: unique temp dir,
//! socket and state dir; on drop it kills the supervisor and every worker
//! it started (by pid, process groups) and `umount -l`s every mountpoint.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nydus_e2e::{nydusctl_bin, nydusd_bin, Fixture};

pub struct Supervisor {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub state: PathBuf,
    child: Option<Child>,
    pub mountpoints: Vec<PathBuf>,
}

pub fn config_for(fx: &Fixture, dir: &Path, name: &str) -> PathBuf {
    let cache = dir.join(format!("cache-{name}"));
    std::fs::create_dir_all(&cache).unwrap();
    let text = format!(
        r#"{{"device":{{"backend":{{"type":"localfs","config":{{"dir":"{}"}}}},"cache":{{"type":"blobcache","config":{{"work_dir":"{}"}}}}}},"mode":"direct","digest_validate":true}}"#,
        fx.blob_dir.display(),
        cache.display()
    );
    let p = dir.join(format!("config-{name}.json"));
    std::fs::write(&p, text).unwrap();
    p
}

impl Supervisor {
    pub fn start() -> Supervisor {
        let dir = tempfile::Builder::new()
            .prefix("nydus-sup-")
            .tempdir()
            .unwrap();
        let sock = dir.path().join("sup.sock");
        let state = dir.path().join("state");
        let mut s = Supervisor {
            dir,
            sock,
            state,
            child: None,
            mountpoints: Vec::new(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("supervisor.log"))
            .unwrap();
        let child = Command::new(nydusctl_bin())
            .arg("supervise")
            .arg("--sock")
            .arg(&self.sock)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--nydusd")
            .arg(nydusd_bin())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn nydusctl supervise");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.sock).is_err() {
            assert!(
                Instant::now() < deadline,
                "supervisor did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9 the supervisor (workers keep running).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9 the supervisor and start it again.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("supervisor.log")).unwrap_or_default()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(nydusctl_bin());
        cmd.args(args).env("NYDUS_SUPERVISOR_SOCK", &self.sock);
        run_with_timeout(cmd, Duration::from_secs(60))
    }

    /// `nydusctl ARGS`, which must succeed: else panics with `what`, its
    /// stderr and the supervisor's log.
    pub fn ctl_ok(&self, args: &[&str], what: &str) -> Output {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "{what}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }

    /// `nydusctl mount`; returns the id. Panics with the output on failure.
    pub fn mount(&mut self, fx: &Fixture, name: &str) -> (String, PathBuf) {
        let mp = self.dir.path().join(format!("mnt-{name}"));
        std::fs::create_dir_all(&mp).unwrap();
        self.mountpoints.push(mp.clone());
        let cfg = config_for(fx, self.dir.path(), name);
        let out = self.ctl(&[
            "mount",
            "--bootstrap",
            fx.bootstrap.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            mp.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "mount failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        (String::from_utf8_lossy(&out.stdout).trim().to_string(), mp)
    }

    /// `nydusctl mount --vhost-user-sock --id vm-NAME`; returns the id
    /// (checked to be the one asked for) and the socket.
    pub fn mount_vhost(&mut self, fx: &Fixture, name: &str) -> (String, PathBuf) {
        let sock = self.dir.path().join(format!("vfs-{name}.sock"));
        let cfg = config_for(fx, self.dir.path(), name);
        let id = format!("vm-{name}");
        let out = self.ctl(&[
            "mount",
            "--bootstrap",
            fx.bootstrap.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--id",
            &id,
            "--vhost-user-sock",
            sock.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "mount --vhost-user-sock failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            sock,
        )
    }

    pub fn list(&self) -> Vec<serde_json::Value> {
        let out = self.ctl(&["list", "--json"]);
        assert!(
            out.status.success(),
            "list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    }

    pub fn pid_of(&self, id: &str) -> Option<i32> {
        self.list()
            .iter()
            .find(|m| m["id"] == id)
            .and_then(|m| m["pid"].as_i64())
            .map(|p| p as i32)
    }

    /// Waits until `id` is served by a pid other than `old`.
    pub fn wait_new_pid(&self, id: &str, old: i32) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(p) = self.pid_of(id) {
                if p != old {
                    return p;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no successor for {id}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Every worker whose command line names our temp dir.
        let tag = self.dir.path().display().to_string();
        for pid in worker_pids(&tag) {
            // SAFETY: kill(2) on pids we just found running our own
            // worker command line (their own process groups).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        for mp in &self.mountpoints {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(mp)
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn worker_pids(tag: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains(tag) && cmd.contains("--supervisor") {
                out.push(pid);
            }
        }
    }
    out
}

pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
}

/// Every regular file under `root` with its bytes.
pub fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}
