//! Real network peers for the backend tests, each behind a guard that stops
//! it on drop: the OCI registry (`registry-server`), the OSS/S3 object
//! store (`object-store-server`) and nginx as the P2P proxy
//! (test-harness.md §3–5). Also the fixture comparison the backend tests
//! share. Every wait has a timeout; failures say what is missing.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::shared_script;

mod fixture;
mod nginx;
mod token;

pub use fixture::{
    assert_fixture, backend_metrics, fixture, fixture_diffs, full_log, mount_fixture, mount_image,
    pick_file, read_cold,
};
pub use nginx::Nginx;
pub use token::{http_get, TokenServer};

/// Runs `cmd`, killing it after `secs`; panics with its output on timeout.
pub fn run_timeout(cmd: &mut Command, secs: u64) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Drained while it runs: a child writing more than a pipe holds would
    // otherwise block forever.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().ok().flatten() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "{cmd:?} did not finish within {secs} s:\n{}\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
    };
    Output {
        status,
        stdout: out,
        stderr: err,
    }
}

fn checked(cmd: &mut Command, secs: u64) -> String {
    let out = run_timeout(cmd, secs);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free TCP port on 127.0.0.1 whose successor is free too (the registry's
/// token server takes PORT+1).
pub fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = a.local_addr().expect("local addr").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free pair of TCP ports on 127.0.0.1");
}

/// `KEY=VALUE` words of a script's output.
fn assignments(text: &str) -> BTreeMap<String, String> {
    text.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Waits until something listens on `port`.
pub fn wait_port(port: u16, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The blob files of a fixture's blob dir: names of 64 hex digits (other
/// files there, such as cache files a localfs run left, are skipped).
fn blobs(dir: &Path) -> Vec<std::fs::DirEntry> {
    let hex = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
    let out: Vec<_> = std::fs::read_dir(dir)
        .expect("read blob dir")
        .flatten()
        .filter(|e| hex(&e.file_name().to_string_lossy()))
        .collect();
    assert!(!out.is_empty(), "no blobs in {}", dir.display());
    out
}

/// Registry options: `--basic`, `--tls`, `--token`.
#[derive(Default, Clone)]
pub struct RegistryOpts {
    pub basic: Option<String>,
    pub tls: bool,
    pub token: Option<String>,
}

/// A running `registry-server` (stopped on drop; data kept in `dir`).
pub struct Registry {
    dir: PathBuf,
    pub port: u16,
    /// `http://127.0.0.1:P` or `https://…`.
    pub url: String,
    /// The test CA clients trust with `--tls`.
    pub cacert: Option<PathBuf>,
    /// `http://127.0.0.1:P/token` with `--token`.
    pub token_url: Option<String>,
    opts: RegistryOpts,
}

impl Registry {
    pub fn start(dir: &Path, opts: RegistryOpts) -> Registry {
        let mut r = Registry {
            dir: dir.to_path_buf(),
            port: free_port_pair(),
            url: String::new(),
            cacert: None,
            token_url: None,
            opts,
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(shared_script("registry-server"));
        cmd.arg("start")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&self.dir);
        if let Some(b) = &self.opts.basic {
            cmd.arg("--basic").arg(b);
        }
        if self.opts.tls {
            cmd.arg("--tls");
        }
        if let Some(t) = &self.opts.token {
            cmd.arg("--token").arg(t);
        }
        // The first start may apt-get install docker-registry.
        let vars = assignments(&checked(&mut cmd, 300));
        self.url = vars
            .get("REGISTRY_URL")
            .cloned()
            .expect("registry-server printed no REGISTRY_URL");
        self.cacert = vars
            .get("REGISTRY_CACERT")
            .filter(|c| !c.is_empty())
            .map(PathBuf::from);
        self.token_url = vars.get("REGISTRY_TOKEN_URL").cloned();
        wait_port(self.port, 30);
    }

    /// `host:port` for the backend config.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&self) {
        let mut cmd = Command::new(shared_script("registry-server"));
        cmd.arg("stop").arg("--dir").arg(&self.dir);
        let _ = run_timeout(&mut cmd, 60);
    }

    /// Starts it again with the same settings and data.
    pub fn restart(&mut self) {
        self.launch();
    }

    /// Pushes every blob of `blob_dir` to `repo` (blob ids are sha256 hex,
    /// so the registry accepts them under their own names).
    pub fn push_dir(&self, repo: &str, blob_dir: &Path) {
        let user = self.opts.basic.clone().or(self.opts.token.clone());
        for e in blobs(blob_dir) {
            let mut cmd = Command::new(shared_script("registry-server"));
            cmd.arg("push-blob")
                .arg("--url")
                .arg(&self.url)
                .arg("--repo")
                .arg(repo)
                .arg("--file")
                .arg(e.path());
            if let Some(u) = &user {
                cmd.arg("--user").arg(u);
            }
            if let Some(c) = &self.cacert {
                cmd.arg("--cacert").arg(c);
            }
            let digest = checked(&mut cmd, 120);
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(digest.contains(&name), "pushed {name} as {digest}");
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `object-store-server` with keys `ak`/`sk`.
pub struct ObjectStore {
    dir: PathBuf,
    pub port: u16,
}

impl ObjectStore {
    pub fn start(dir: &Path, ak: &str, sk: &str, region: &str) -> ObjectStore {
        let port = free_port_pair();
        let mut cmd = Command::new(shared_script("object-store-server"));
        cmd.arg("start")
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir)
            .args([
                "--access-key",
                ak,
                "--secret-key",
                sk,
                "--region",
                region,
                "--quiet",
            ]);
        checked(&mut cmd, 60);
        wait_port(port, 30);
        ObjectStore {
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// Stores every blob of `blob_dir` as `<bucket>/<prefix><id>`.
    pub fn put_dir(&self, bucket: &str, prefix: &str, blob_dir: &Path) {
        let base = self.dir.join("data").join(bucket);
        for e in blobs(blob_dir) {
            let dst = base.join(format!("{prefix}{}", e.file_name().to_string_lossy()));
            std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir bucket");
            // A link where possible: test images can be a GiB. The server
            // never writes an object in place (PUT renames a new file).
            if std::fs::hard_link(e.path(), &dst).is_err() {
                std::fs::copy(e.path(), &dst).expect("copy blob into the store");
            }
        }
    }

    /// `POST` to a test hook (`/__faults?…`, `/__reset`); returns the body.
    pub fn hook(&self, path_query: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect store");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let req = format!(
            "POST {path_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("send hook");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        let mut cmd = Command::new(shared_script("object-store-server"));
        cmd.arg("stop").arg("--dir").arg(&self.dir);
        let _ = run_timeout(&mut cmd, 60);
    }
}
