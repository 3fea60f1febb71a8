//! A tiny HTTP/1.1 client for the daemon's admin API on a unix socket (std
//! only), plus builders for the v1 config and the mount body.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long one API call may take before the test fails.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The body as JSON; panics (with the body) if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.body))
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Panics unless the status is `want`, showing the whole response.
    pub fn expect_status(&self, want: u16, what: &str) -> &Self {
        assert_eq!(
            self.status, want,
            "{what}: expected HTTP {want}, got {} with body {:?}",
            self.status, self.body
        );
        self
    }
}

/// Percent-encodes a query value (everything but unreserved characters and `/`).
pub fn encode_query(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub fn request(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Response> {
    let mut stream = UnixStream::connect(sock)?;
    stream.set_read_timeout(Some(API_TIMEOUT))?;
    stream.set_write_timeout(Some(API_TIMEOUT))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str("Content-Type: application/json\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no header end in {:?}",
                String::from_utf8_lossy(raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    } else if let Some((_, len)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad content-length {len}")))?;
        if body.len() < len {
            return Err(bad(format!("short body: {} of {len} bytes", body.len())));
        }
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk size".into()))?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("truncated chunk".into()));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `request`, panicking (with what was asked) on a transport failure.
pub fn call(sock: &Path, method: &str, path: &str, body: Option<&str>) -> Response {
    request(sock, method, path, body)
        .unwrap_or_else(|e| panic!("API {method} {path} on {}: {e}", sock.display()))
}

/// Options of a v1 config (reference §3.2).
#[derive(Debug, Clone)]
pub struct V1Config {
    pub blob_dir: String,
    /// `None`: `dummycache`; `Some(dir)`: `blobcache` with that `work_dir`.
    pub cache_dir: Option<String>,
    pub mode: &'static str,
    pub digest_validate: bool,
    pub id: Option<String>,
}

impl V1Config {
    pub fn new(blob_dir: &Path, cache_dir: &Path) -> Self {
        V1Config {
            blob_dir: blob_dir.display().to_string(),
            cache_dir: Some(cache_dir.display().to_string()),
            mode: "direct",
            digest_validate: false,
            id: None,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let cache = match &self.cache_dir {
            Some(dir) => serde_json::json!({"type": "blobcache", "config": {"work_dir": dir}}),
            None => serde_json::json!({"type": "dummycache"}),
        };
        let mut device = serde_json::json!({
            "backend": {"type": "localfs", "config": {"dir": self.blob_dir}},
            "cache": cache,
        });
        if let Some(id) = &self.id {
            device["id"] = serde_json::json!(id);
        }
        serde_json::json!({
            "device": device,
            "mode": self.mode,
            "digest_validate": self.digest_validate,
            "iostats_files": true,
        })
    }

    /// The config as a JSON document (for a file or the mount body).
    pub fn text(&self) -> String {
        self.json().to_string()
    }
}

/// The `POST /api/v1/mount` body (reference §6.3 MountCmd).
pub fn mount_body(bootstrap: &Path, config: &str) -> String {
    serde_json::json!({
        "source": bootstrap.display().to_string(),
        "fs_type": "rafs",
        "config": config,
    })
    .to_string()
}

/// `POST /api/v1/mount?mountpoint=SUB`.
pub fn mount(sock: &Path, sub: &str, bootstrap: &Path, config: &str) -> Response {
    let path = format!("/api/v1/mount?mountpoint={}", encode_query(sub));
    call(sock, "POST", &path, Some(&mount_body(bootstrap, config)))
}

/// `DELETE /api/v1/mount?mountpoint=SUB`.
pub fn umount(sock: &Path, sub: &str) -> Response {
    let path = format!("/api/v1/mount?mountpoint={}", encode_query(sub));
    call(sock, "DELETE", &path, None)
}

/// Panics unless an error response is `{"code": .., "message": ..}` with a
/// non-empty message; returns the message.
pub fn error_message(resp: &Response, what: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&resp.body).unwrap_or_else(|e| {
        panic!(
            "{what}: error body is not JSON ({e}): HTTP {} {:?}",
            resp.status, resp.body
        )
    });
    assert!(
        v["code"].is_string(),
        "{what}: error body has no string \"code\": {}",
        resp.body
    );
    let msg = v["message"].as_str().unwrap_or_else(|| {
        panic!(
            "{what}: error body has no string \"message\": {}",
            resp.body
        )
    });
    assert!(!msg.trim().is_empty(), "{what}: empty error message");
    msg.to_string()
}

/// Whether `dir` is a FUSE mount point now (`/proc/self/mountinfo`).
pub fn is_fuse_mounted(dir: &Path) -> bool {
    let want = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let want = want.to_string_lossy().replace(' ', "\\040");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (left, right) = (halves.next().unwrap_or(""), halves.next().unwrap_or(""));
        left.split(' ').nth(4) == Some(want.as_str()) && right.starts_with("fuse")
    })
}

/// A `nydusd` with an API socket, started by a test: a [`Nydusd`] guard
/// (killed and `umount -l`ed on drop) that also waits for the API and has a
/// watchdog.
///
/// [`Nydusd`]: crate::mount::Nydusd
pub struct Daemon {
    /// The pid the watchdog may kill; taken (None) before the child is reaped.
    watch: std::sync::Arc<std::sync::Mutex<Option<u32>>>,
    pub inner: crate::mount::Nydusd,
    pub mountpoint: std::path::PathBuf,
    pub apisock: std::path::PathBuf,
    pub log: std::path::PathBuf,
}

impl Daemon {
    /// Starts `nydusd --mountpoint MNT --apisock SOCK [extra args]` with its
    /// output in `log`, and waits (30 s at most) until the mount is up and
    /// the API answers `GET /api/v1/daemon`.
    pub fn start(
        mountpoint: &Path,
        apisock: &Path,
        log: &Path,
        extra: &[&std::ffi::OsStr],
    ) -> Daemon {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--mountpoint".as_ref(),
            mountpoint.as_os_str(),
            "--apisock".as_ref(),
            apisock.as_os_str(),
        ];
        args.extend_from_slice(extra);
        let inner = crate::mount::Nydusd::start(mountpoint, log, &args);
        let watch = std::sync::Arc::new(std::sync::Mutex::new(Some(inner.pid() as u32)));
        spawn_watchdog(std::sync::Arc::clone(&watch));
        let mut d = Daemon {
            watch,
            inner,
            mountpoint: mountpoint.to_path_buf(),
            apisock: apisock.to_path_buf(),
            log: log.to_path_buf(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = d.inner.try_wait() {
                panic!(
                    "nydusd exited before serving ({status}); log:\n{}",
                    d.log_tail()
                );
            }
            let api_ok = request(apisock, "GET", "/api/v1/daemon", None)
                .map(|r| r.status == 200)
                .unwrap_or(false);
            if api_ok {
                return d;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nydusd API on {} not answering after 30 s; log:\n{}",
                apisock.display(),
                d.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last 4 KiB of the daemon's output, without fuse-backend-rs's
    /// multi-line "vfs::forget ... submount was dropped" warnings.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.contains("get_real_rootfs")
                    && !l.contains("vfs submount was dropped")
                    && l.trim() != "which is reasonable."
            })
            .collect();
        let kept = kept.join("\n");
        let mut start = kept.len().saturating_sub(4096);
        while !kept.is_char_boundary(start) {
            start += 1;
        }
        kept[start..].to_string()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.inner.try_wait().is_none()
    }
}

/// How long a test's daemon may live: `NYDUS_E2E_DAEMON_TIMEOUT` seconds,
/// default 480 (or `NYDUS_STRESS_SECS` + 240 if that is more).
fn daemon_lifetime() -> Duration {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let secs = env("NYDUS_E2E_DAEMON_TIMEOUT")
        .unwrap_or_else(|| 480.max(env("NYDUS_STRESS_SECS").unwrap_or(60) + 240));
    Duration::from_secs(secs)
}

/// Kills the daemon when it outlives `daemon_lifetime()`: a hung FUSE call
/// then fails (ENOTCONN) instead of hanging the test forever.
fn spawn_watchdog(watch: std::sync::Arc<std::sync::Mutex<Option<u32>>>) {
    let limit = daemon_lifetime();
    let end = std::time::Instant::now() + limit;
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(200));
        let guard = watch.lock().unwrap_or_else(|e| e.into_inner());
        let Some(pid) = *guard else { return };
        if std::time::Instant::now() >= end {
            eprintln!("watchdog: nydusd pid {pid} still running after {limit:?}; killing it");
            // SAFETY: plain syscall; the pid is our unreaped child (Drop
            // takes it out of `watch` under this lock before reaping).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            return;
        }
    });
}

impl Drop for Daemon {
    /// Disarms the watchdog; `inner` then kills, reaps and unmounts.
    fn drop(&mut self) {
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
