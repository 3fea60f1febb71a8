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
use crate::source::{parse, Entry};

/// Runs `cmd`, killing it after `secs`; panics with its output on timeout.
pub fn run_timeout(cmd: &mut Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{cmd:?} did not finish within {secs} s:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
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
    opts: RegistryOpts,
}

impl Registry {
    pub fn start(dir: &Path, opts: RegistryOpts) -> Registry {
        let mut r = Registry {
            dir: dir.to_path_buf(),
            port: free_port_pair(),
            url: String::new(),
            cacert: None,
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
            std::fs::copy(e.path(), &dst).expect("copy blob into the store");
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

/// nginx as a caching forward proxy (test-harness.md §5), with
/// `/server/ping` for health checks. Stopped on drop.
pub struct Nginx {
    dir: PathBuf,
    pub port: u16,
}

impl Nginx {
    pub fn start(dir: &Path) -> Nginx {
        if Command::new("nginx").arg("-v").output().is_err() {
            let mut apt = Command::new("apt-get");
            apt.args(["install", "-y", "nginx-light"]);
            let out = run_timeout(&mut apt, 300);
            assert!(
                out.status.success(),
                "nginx is missing and `apt-get install -y nginx-light` failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let n = Nginx {
            dir: dir.to_path_buf(),
            port: free_port_pair(),
        };
        for sub in [
            "tmp/body",
            "tmp/proxy",
            "tmp/fcgi",
            "tmp/uwsgi",
            "tmp/scgi",
            "cache",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("nginx dirs");
        }
        let d = dir.display();
        let conf = format!(
            r#"worker_processes 1;
daemon on;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp/body;  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fcgi;  uwsgi_temp_path {d}/tmp/uwsgi;  scgi_temp_path {d}/tmp/scgi;
  proxy_cache_path {d}/cache levels=1:2 keys_zone=blobs:10m max_size=1g inactive=1d use_temp_path=off;
  server {{
    listen 127.0.0.1:{port};
    location = /server/ping {{ return 200 "ok\n"; }}
    location ~ "^/v2/.+/blobs/sha256:[0-9a-f]{{64}}$" {{
      slice 1m;
      proxy_cache blobs;
      proxy_cache_key $http_host$uri$slice_range;
      proxy_set_header Range $slice_range;
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_cache_valid 200 206 1d;
      proxy_cache_lock on;
      add_header X-Cache-Status $upstream_cache_status always;
      proxy_pass http://$http_host;
    }}
    location / {{ proxy_set_header Host $http_host; proxy_http_version 1.1; proxy_pass http://$http_host; }}
  }}
}}
"#,
            port = n.port
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        n.launch();
        n
    }

    fn launch(&self) {
        // nginx daemonizes; its output goes to error.log, so no pipes that
        // the daemon could hold open.
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nginx");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().ok().flatten() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("nginx did not start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        assert!(status.success(), "nginx failed ({status}):\n{log}");
        wait_port(self.port, 10);
    }

    /// Stops nginx (by its pid file) and waits until the port is closed.
    pub fn stop(&self) {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("nginx.pid")) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        // SAFETY: kill(2) of the master pid nginx wrote for this instance.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "nginx did not stop within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.dir.join("nginx.pid"));
    }

    pub fn restart(&self) {
        self.launch();
    }

    /// Requests nginx has logged so far.
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(self.dir.join("access.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Differences between a fixture's `expected.manifest` and a mount's
/// manifest, except the documented one (fixtures README): an mtime stored
/// as 0, and the root's, shows the daemon's start time.
pub fn fixture_diffs(expected: &str, actual: &str, started: i64, ended: i64) -> Vec<String> {
    let index = |text: &str| -> BTreeMap<String, Entry> {
        parse(text)
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    };
    let (exp, act) = (index(expected), index(actual));
    let mut out = Vec::new();
    for (name, e) in &exp {
        let Some(a) = act.get(name) else {
            out.push(format!("{name}: missing"));
            continue;
        };
        for (k, want) in &e.fields {
            let got = a.field(k);
            if got == want {
                continue;
            }
            let start_time = got
                .parse::<i64>()
                .is_ok_and(|t| (started - 2..=ended + 2).contains(&t));
            if !(k == "mtime" && (want == "0" || name == ".") && start_time) {
                out.push(format!("{name}: {k} expected {want} got {got}"));
            }
        }
    }
    out.extend(
        act.keys()
            .filter(|n| !exp.contains_key(*n))
            .map(|n| format!("{n}: extra")),
    );
    out
}

/// Mounts `fx` with a v1 config of backend `kind`/`backend` and `cache`
/// (`blobcache` or `dummycache`), with an API socket at `tmp/api.sock`.
pub fn mount_fixture(
    fx: &crate::Fixture,
    kind: &str,
    backend: serde_json::Value,
    cache: &str,
    tmp: &Path,
) -> crate::mount::Nydusd {
    std::fs::create_dir_all(tmp).expect("create test dir");
    let mnt = tmp.join("mnt");
    let config = tmp.join("config.json");
    let text = serde_json::json!({
        "device": {
            "backend": {"type": kind, "config": backend},
            "cache": {"type": cache, "config": {"work_dir": tmp.join("cache")}},
        },
        "mode": "direct",
        "digest_validate": false,
        "enable_xattr": true,
    });
    std::fs::write(&config, text.to_string()).expect("write config");
    let (log, sock) = (tmp.join("nydusd.log"), tmp.join("api.sock"));
    let args: Vec<&std::ffi::OsStr> = vec![
        "--config".as_ref(),
        config.as_os_str(),
        "--mountpoint".as_ref(),
        mnt.as_os_str(),
        "--bootstrap".as_ref(),
        fx.bootstrap.as_os_str(),
        "--apisock".as_ref(),
        sock.as_os_str(),
        "--log-level".as_ref(),
        "debug".as_ref(),
    ];
    crate::mount::Nydusd::start(&mnt, &log, &args)
}

/// `manifest.py` of the mount equals the fixture's expected manifest up to
/// the documented mtimes; panics with the differences and the daemon log.
pub fn assert_fixture(fx: &crate::Fixture, d: &crate::mount::Nydusd, what: &str) {
    let expected = std::fs::read_to_string(&fx.expected_manifest).expect("read expected manifest");
    let actual = crate::source::manifest(&d.mountpoint, &[]);
    let diffs = fixture_diffs(&expected, &actual, d.started, crate::mount::now_secs());
    assert!(
        diffs.is_empty(),
        "{} over {what}: {} unexpected differences:\n{}\nnydusd log:\n{}",
        fx.name,
        diffs.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        d.log_text()
    );
}

/// The fixture named `name`.
pub fn fixture(name: &str) -> crate::Fixture {
    crate::fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name} missing"))
}

/// The whole daemon log (not just the tail), for secret checks.
pub fn full_log(d: &crate::mount::Nydusd) -> String {
    String::from_utf8_lossy(&std::fs::read(&d.log).unwrap_or_default()).into_owned()
}

/// `GET /api/v1/metrics/backend` of the daemon mounted from `tmp`.
pub fn backend_metrics(tmp: &Path) -> String {
    crate::api::call(
        &tmp.join("api.sock"),
        "GET",
        "/api/v1/metrics/backend",
        None,
    )
    .body
}

/// The first regular file of the fixture's manifest at least `min` bytes
/// long whose path contains `hint`, relative to the mount.
pub fn pick_file(fx: &crate::Fixture, min: u64, skip: usize) -> PathBuf {
    let text = std::fs::read_to_string(&fx.expected_manifest).expect("read expected manifest");
    parse(&text)
        .into_iter()
        .filter(|e| e.is_file() && e.size() >= min)
        .nth(skip)
        .map(|e| e.rel)
        .unwrap_or_else(|| panic!("{}: no file of {min}+ bytes", fx.name))
}
