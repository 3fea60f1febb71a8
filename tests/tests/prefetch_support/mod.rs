//! Helpers of the prefetch tests: images of incompressible files in an
//! object store, an nginx reverse proxy that logs every backend request
//! with its Range, and mounting with a chosen cache and prefetch config.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nydus_e2e::mount::Nydusd;
use nydus_e2e::nydusctl_bin;
use nydus_e2e::servers::{free_port_pair, run_timeout, wait_port, ObjectStore};
use serde_json::json;

pub const AK: &str = "prefetch-ak";
pub const SK: &str = "prefetch-sk";
pub const BUCKET: &str = "pf";
pub const REGION: &str = "us-test-1";
pub const CHUNK: u64 = 64 << 10;

/// Deterministic incompressible bytes (xorshift64), distinct per seed.
pub fn bytes(seed: u64, len: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len as usize + 8);
    while (out.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

pub struct Image {
    pub boot: PathBuf,
    pub files: Vec<(String, Vec<u8>)>,
}

/// `count` files `fNN` of `size` bytes, built with 64 KiB uncompressed
/// chunks (so backend bytes equal file bytes) and stored in the bucket.
pub fn image(dir: &Path, store: &ObjectStore, count: u64, size: u64, table: &[&str]) -> Image {
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).expect("mkdir tree");
    let mut files = Vec::new();
    for i in 0..count {
        let name = format!("f{i:02}");
        let data = bytes(i + 1, size);
        std::fs::write(tree.join(&name), &data).expect("write source file");
        files.push((name, data));
    }
    let (boot, blobs) = (dir.join("image.boot"), dir.join("blobs"));
    let mut cmd = Command::new(nydusctl_bin());
    cmd.args(["image", "create", "--compressor", "none", "--chunk-size"])
        .arg(format!("{CHUNK:#x}"))
        .arg("-B")
        .arg(&boot)
        .arg("-D")
        .arg(&blobs);
    if !table.is_empty() {
        let list = dir.join("prefetch.list");
        std::fs::write(&list, table.join("\n") + "\n").expect("write prefetch list");
        cmd.arg("--prefetch-files").arg(list);
    }
    let out = run_timeout(cmd.arg(&tree), 120);
    assert!(
        out.status.success(),
        "nydusctl image create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    store.put_dir(BUCKET, "", &blobs);
    Image { boot, files }
}

/// nginx as a reverse proxy to the store, logging `METHOD URI RANGE STATUS
/// BYTES` per request.
pub struct Proxy {
    dir: PathBuf,
    pub port: u16,
}

impl Proxy {
    pub fn start(dir: &Path, upstream: u16) -> Proxy {
        assert!(
            Command::new("nginx").arg("-v").output().is_ok(),
            "nginx is missing: install it (apt-get install nginx-light) to log backend requests"
        );
        let port = free_port_pair();
        std::fs::create_dir_all(dir.join("tmp")).expect("nginx dir");
        let d = dir.display();
        let conf = format!(
            r#"worker_processes 1;
daemon on;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  log_format rng '$request_method $uri "$http_range" $status $body_bytes_sent';
  access_log {d}/access.log rng;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_buffering off;
    }}
  }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        let mut cmd = Command::new("nginx");
        cmd.arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let st = run_timeout(&mut cmd, 30);
        assert!(
            st.status.success(),
            "nginx failed to start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        wait_port(port, 10);
        Proxy {
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// Byte ranges of the blob GETs logged so far, in log order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("GET ") && !l.contains("/__"))
            .map(|l| {
                let r = l
                    .split('"')
                    .nth(1)
                    .and_then(|r| r.strip_prefix("bytes="))
                    .unwrap_or_else(|| panic!("blob GET without a range: {l}"));
                let (a, b) = r.split_once('-').expect("range a-b");
                (
                    a.parse().expect("start"),
                    b.parse::<u64>().expect("end") + 1,
                )
            })
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nginx.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) of the master pid this test's nginx wrote.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
    }
}

/// Sorted, merged union of half-open ranges.
pub fn union(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut v = ranges.to_vec();
    v.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

pub fn covered(set: &[(u64, u64)], r: (u64, u64)) -> bool {
    set.iter().any(|&(a, b)| a <= r.0 && r.1 <= b)
}

pub fn total(set: &[(u64, u64)]) -> u64 {
    set.iter().map(|(a, b)| b - a).sum()
}

/// Mounts `img` at `dir/mnt` with a v1 config: S3 through `proxy`,
/// blobcache in `cache` (dummycache for None), plus `extra` top-level keys
/// and `backend_extra`.
pub fn mount(
    dir: &Path,
    img: &Image,
    proxy_port: u16,
    cache: Option<&Path>,
    backend_extra: serde_json::Value,
    extra: serde_json::Value,
) -> Nydusd {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut backend = json!({
        "scheme": "http", "endpoint": format!("127.0.0.1:{proxy_port}"),
        "region": REGION, "bucket_name": BUCKET,
        "access_key_id": AK, "access_key_secret": SK,
        "timeout": 10, "connect_timeout": 2,
    });
    for (k, v) in backend_extra.as_object().expect("object") {
        backend[k] = v.clone();
    }
    let mut cfg = json!({
        "device": {
            "backend": {"type": "s3", "config": backend},
            "cache": match cache {
                Some(dir) => json!({"type": "blobcache", "config": {"work_dir": dir}}),
                None => json!({"type": "dummycache"}),
            },
        },
        "mode": "direct",
        "digest_validate": false,
    });
    for (k, v) in extra.as_object().expect("object") {
        cfg[k] = v.clone();
    }
    let config = dir.join("config.json");
    std::fs::write(&config, cfg.to_string()).expect("write config");
    let (mnt, log, sock) = (
        dir.join("mnt"),
        dir.join("nydusd.log"),
        dir.join("api.sock"),
    );
    let args: Vec<&OsStr> = vec![
        "--config".as_ref(),
        config.as_os_str(),
        "--mountpoint".as_ref(),
        mnt.as_os_str(),
        "--bootstrap".as_ref(),
        img.boot.as_os_str(),
        "--apisock".as_ref(),
        sock.as_os_str(),
        "--log-level".as_ref(),
        "info".as_ref(),
    ];
    Nydusd::start(&mnt, &log, &args)
}

/// Waits up to `secs` for a daemon log line containing `what`; returns it.
pub fn wait_log(d: &Nydusd, what: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(&d.log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(what)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the daemon log within {secs} s:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `(N ms)` a prefetch log line reports.
pub fn millis(line: &str) -> u64 {
    line.rsplit('(')
        .next()
        .and_then(|s| s.strip_suffix(" ms)"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {line:?}"))
}

pub fn check_read(d: &Nydusd, name: &str, want: &[u8]) {
    let got = std::fs::read(d.mountpoint.join(name)).expect("read file");
    assert!(got == want, "{name}: wrong bytes; log:\n{}", d.log_text());
}

/// Empties the blob cache but keeps the readahead access log.
pub fn empty_cache_keep_log(cache: &Path) -> PathBuf {
    let mut log = None;
    for e in std::fs::read_dir(cache).expect("read cache dir") {
        let p = e.expect("entry").path();
        if p.extension() == Some(OsStr::new("access")) {
            log = Some(p);
        } else {
            std::fs::remove_file(&p).expect("remove cache file");
        }
    }
    log.unwrap_or_else(|| panic!("no *.access log in {}", cache.display()))
}

/// One test's world: an object store holding an image of `count` files of
/// `size` bytes, the recording proxy in front of it, and the blob cache
/// directory, all in a fresh temporary directory.
pub struct Rig {
    pub store: ObjectStore,
    pub img: Image,
    pub proxy: Proxy,
    pub cache: PathBuf,
    /// Declared last: removed once the servers using it have stopped.
    pub tmp: tempfile::TempDir,
}

impl Rig {
    /// `table`: the image's prefetch table (absolute paths).
    pub fn new(count: u64, size: u64, table: &[&str]) -> Rig {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = ObjectStore::start(&tmp.path().join("store"), AK, SK, REGION);
        let img = image(&tmp.path().join("img"), &store, count, size, table);
        let proxy = Proxy::start(&tmp.path().join("nginx"), store.port);
        Rig {
            cache: tmp.path().join("cache"),
            store,
            img,
            proxy,
            tmp,
        }
    }

    /// `mount` of the image at `<tmp>/<name>`, with the rig's blob cache
    /// (`cached`) or dummycache.
    pub fn mount(
        &self,
        name: &str,
        cached: bool,
        backend_extra: serde_json::Value,
        extra: serde_json::Value,
    ) -> Nydusd {
        let cache = cached.then_some(self.cache.as_path());
        let dir = self.tmp.path().join(name);
        mount(
            &dir,
            &self.img,
            self.proxy.port,
            cache,
            backend_extra,
            extra,
        )
    }
}
