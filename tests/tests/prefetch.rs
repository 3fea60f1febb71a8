//! Prefetch against a real object store (S3 API, `object-store-server`)
//! behind an nginx reverse proxy whose access log records every backend
//! request with its Range, in order:
//! - readahead: a mount records its start-up reads; a later mount of the
//!   same image with an emptied cache prefetches exactly those chunks,
//!   before anything else; the cache then survives a daemon restart;
//! - `bandwidth_rate` is a real limit, and user reads still go first;
//! - the image's prefetch table fetches the listed files and no others.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nydus_e2e::mount::Nydusd;
use nydus_e2e::nydusctl_bin;
use nydus_e2e::servers::{free_port_pair, run_timeout, wait_port, ObjectStore};
use serde_json::json;

const AK: &str = "prefetch-ak";
const SK: &str = "prefetch-sk";
const BUCKET: &str = "pf";
const REGION: &str = "us-test-1";
const CHUNK: u64 = 64 << 10;

/// Deterministic incompressible bytes (xorshift64), distinct per seed.
fn bytes(seed: u64, len: u64) -> Vec<u8> {
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

struct Image {
    boot: PathBuf,
    files: Vec<(String, Vec<u8>)>,
}

/// `count` files `fNN` of `size` bytes, built with 64 KiB uncompressed
/// chunks (so backend bytes equal file bytes) and stored in the bucket.
fn image(dir: &Path, store: &ObjectStore, count: u64, size: u64, table: &[&str]) -> Image {
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
struct Proxy {
    dir: PathBuf,
    port: u16,
}

impl Proxy {
    fn start(dir: &Path, upstream: u16) -> Proxy {
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
    fn ranges(&self) -> Vec<(u64, u64)> {
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
fn union(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
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

fn covered(set: &[(u64, u64)], r: (u64, u64)) -> bool {
    set.iter().any(|&(a, b)| a <= r.0 && r.1 <= b)
}

fn total(set: &[(u64, u64)]) -> u64 {
    set.iter().map(|(a, b)| b - a).sum()
}

/// Mounts `img` at `dir/mnt` with a v1 config: S3 through `proxy`,
/// blobcache in `cache` (dummycache for None), plus `extra` top-level keys
/// and `backend_extra`.
fn mount(
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
fn wait_log(d: &Nydusd, what: &str, secs: u64) -> String {
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
fn millis(line: &str) -> u64 {
    line.rsplit('(')
        .next()
        .and_then(|s| s.strip_suffix(" ms)"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {line:?}"))
}

fn check_read(d: &Nydusd, name: &str, want: &[u8]) {
    let got = std::fs::read(d.mountpoint.join(name)).expect("read file");
    assert!(got == want, "{name}: wrong bytes; log:\n{}", d.log_text());
}

/// Empties the blob cache but keeps the readahead access log.
fn empty_cache_keep_log(cache: &Path) -> PathBuf {
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

#[test]
fn readahead_log_prefetches_startup_reads_first_and_cache_survives_restart() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = ObjectStore::start(&t.path().join("store"), AK, SK, REGION);
    let img = image(&t.path().join("img"), &store, 24, 3 * CHUNK, &[]);
    let proxy = Proxy::start(&t.path().join("nginx"), store.port);
    let cache = t.path().join("cache");
    let wanted = ["f03", "f11", "f17"];
    let file = |n: &str| &img.files.iter().find(|f| f.0 == n).expect("file").1;
    let readahead = json!({"readahead": true, "readahead_sec": 4});

    // 1. Record: read three files in the window, chunk by chunk
    //    (amplify_io 0), so the backend log names exactly their chunks.
    let d = mount(
        &t.path().join("m1"),
        &img,
        proxy.port,
        Some(&cache),
        readahead.clone(),
        json!({"amplify_io": 0}),
    );
    for n in wanted {
        check_read(&d, n, file(n));
    }
    wait_log(&d, "readahead: recorded 9 chunks", 10);
    drop(d);
    let startup = proxy.ranges();
    let b1 = union(&startup);
    assert_eq!(total(&b1), 9 * CHUNK, "start-up fetched {startup:?}");

    // 2. Emptied cache, kept log, no reads and fs_prefetch off: the
    //    backend serves exactly the logged chunks, then reads are local.
    let log_file = empty_cache_keep_log(&cache);
    let seen = startup.len();
    store.hook("/__reset");
    let d = mount(
        &t.path().join("m2"),
        &img,
        proxy.port,
        Some(&cache),
        readahead.clone(),
        json!({}),
    );
    wait_log(&d, "9 of 9 logged chunks prefetched first", 20);
    std::thread::sleep(Duration::from_millis(500));
    let second = proxy.ranges()[seen..].to_vec();
    assert_eq!(
        union(&second),
        b1,
        "prefetch fetched {second:?}, start-up read {b1:?}"
    );
    let stats = store.hook("/__stats");
    assert!(
        stats.contains(&format!("\"bytes_out\": {}", 9 * CHUNK)),
        "store stats: {stats}"
    );
    for n in wanted {
        check_read(&d, n, file(n));
    }
    assert_eq!(
        proxy.ranges().len(),
        seen + second.len(),
        "reads went to the backend"
    );
    drop(d);

    // 3. With prefetch_all as well: the logged chunks come first, whatever
    //    the other settings, then the rest of the image.
    empty_cache_keep_log(&cache);
    let seen = proxy.ranges().len();
    let prefetch_all = json!({"fs_prefetch": {"enable": true, "prefetch_all": true,
        "threads_count": 4, "merging_size": 131072}});
    let d = mount(
        &t.path().join("m3"),
        &img,
        proxy.port,
        Some(&cache),
        readahead.clone(),
        prefetch_all,
    );
    wait_log(&d, "prefetch of / done", 30);
    let third = proxy.ranges()[seen..].to_vec();
    let first_other = third
        .iter()
        .position(|r| !covered(&b1, *r))
        .unwrap_or(third.len());
    assert_eq!(
        union(&third[..first_other]),
        b1,
        "the logged chunks were not all fetched before the others: {third:?}"
    );
    assert_eq!(total(&union(&third)), 24 * 3 * CHUNK, "{third:?}");
    drop(d);

    // 4. Restart on the full cache: readiness was persisted, nothing is
    //    fetched, every byte is right.
    let seen = proxy.ranges().len();
    let d = mount(
        &t.path().join("m4"),
        &img,
        proxy.port,
        Some(&cache),
        json!({}),
        json!({}),
    );
    for (n, data) in &img.files {
        check_read(&d, n, data);
    }
    assert_eq!(
        proxy.ranges().len(),
        seen,
        "a restarted daemon refetched cached chunks"
    );
    drop(d);

    // 5. A damaged access log is ignored with one warning, not an error.
    std::fs::write(&log_file, b"NYDUSACL damaged").expect("damage log");
    empty_cache_keep_log(&cache);
    let d = mount(
        &t.path().join("m5"),
        &img,
        proxy.port,
        Some(&cache),
        readahead,
        json!({}),
    );
    let line = wait_log(&d, "readahead log", 10);
    assert!(line.contains("ignored"), "{line}");
    check_read(&d, "f00", file("f00"));
}

#[test]
fn bandwidth_rate_limits_prefetch_but_user_reads_go_first() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = ObjectStore::start(&t.path().join("store"), AK, SK, REGION);
    let size = 4 * CHUNK;
    let img = image(&t.path().join("img"), &store, 16, size, &[]);
    let proxy = Proxy::start(&t.path().join("nginx"), store.port);
    let (rate, merging) = (1u64 << 20, 2 * CHUNK);
    let d = mount(
        &t.path().join("m"),
        &img,
        proxy.port,
        Some(&t.path().join("cache")),
        json!({}),
        json!({"fs_prefetch": {"enable": true, "prefetch_all": true, "threads_count": 4,
            "merging_size": merging, "bandwidth_rate": rate}}),
    );
    std::thread::sleep(Duration::from_millis(300));
    // The last file is the last one the prefetch walk reaches.
    let (name, data) = img.files.last().expect("files");
    let t0 = Instant::now();
    check_read(&d, name, data);
    let read_ms = t0.elapsed().as_millis() as u64;
    let done = wait_log(&d, "prefetch of / done", 30);
    let prefetch_ms = millis(&done);
    // The prefetch moved everything but the file the user read.
    let prefetched = 16 * size - size;
    let floor = (prefetched - merging) * 1000 / rate;
    assert!(
        prefetch_ms >= floor,
        "prefetch of {prefetched} bytes at {rate} B/s took {prefetch_ms} ms, under {floor} ms"
    );
    assert!(
        read_ms < 1000 && read_ms * 3 < prefetch_ms,
        "user read took {read_ms} ms during a {prefetch_ms} ms prefetch"
    );
    // Every chunk was fetched once, and is now served locally.
    let ranges = proxy.ranges();
    assert_eq!(total(&union(&ranges)), 16 * size, "{ranges:?}");
    assert_eq!(ranges.iter().map(|r| r.1 - r.0).sum::<u64>(), 16 * size);
    for (n, data) in &img.files {
        check_read(&d, n, data);
    }
    assert_eq!(proxy.ranges().len(), ranges.len());
    println!("bandwidth: {prefetched} B prefetched in {prefetch_ms} ms at {rate} B/s; user read {read_ms} ms");
}

#[test]
fn prefetch_table_fetches_listed_files_only() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = ObjectStore::start(&t.path().join("store"), AK, SK, REGION);
    let size = 2 * CHUNK;
    let img = image(&t.path().join("img"), &store, 8, size, &["/f02", "/f05"]);
    let proxy = Proxy::start(&t.path().join("nginx"), store.port);
    let d = mount(
        &t.path().join("m"),
        &img,
        proxy.port,
        Some(&t.path().join("cache")),
        json!({}),
        json!({"fs_prefetch": {"enable": true, "prefetch_all": false}}),
    );
    wait_log(&d, "prefetch of / done: 2 files", 20);
    let ranges = proxy.ranges();
    assert_eq!(total(&union(&ranges)), 2 * size, "{ranges:?}");
    let file = |n: &str| &img.files.iter().find(|f| f.0 == n).expect("file").1;
    for n in ["f02", "f05"] {
        check_read(&d, n, file(n));
    }
    assert_eq!(
        proxy.ranges().len(),
        ranges.len(),
        "listed files were not ready"
    );
    check_read(&d, "f00", file("f00"));
    assert!(
        proxy.ranges().len() > ranges.len(),
        "an unlisted file was prefetched"
    );
}

#[test]
fn readahead_log_is_kept_at_an_early_stop_and_dummycache_warns() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = ObjectStore::start(&t.path().join("store"), AK, SK, REGION);
    let img = image(&t.path().join("img"), &store, 4, 2 * CHUNK, &[]);
    let proxy = Proxy::start(&t.path().join("nginx"), store.port);
    let cache = t.path().join("cache");
    let readahead = json!({"readahead": true, "readahead_sec": 600});

    // SIGTERM long before the window ends: what was read is still kept.
    let mut d = mount(
        &t.path().join("m1"),
        &img,
        proxy.port,
        Some(&cache),
        readahead.clone(),
        json!({}),
    );
    check_read(&d, "f01", &img.files[1].1);
    d.signal(libc::SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(20)).is_some(),
        "nydusd did not stop"
    );
    let text = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(text.contains("readahead: recorded 2 chunks"), "{text}");
    drop(d);
    empty_cache_keep_log(&cache);

    // The next mount prefetches them with no read at all.
    let seen = proxy.ranges().len();
    let d = mount(
        &t.path().join("m2"),
        &img,
        proxy.port,
        Some(&cache),
        readahead.clone(),
        json!({}),
    );
    wait_log(&d, "2 of 2 logged chunks prefetched first", 20);
    let fetched = proxy.ranges()[seen..].to_vec();
    assert_eq!(total(&union(&fetched)), 2 * CHUNK, "{fetched:?}");
    drop(d);

    // dummycache has nowhere to prefetch into: one warning, reads work.
    let d = mount(
        &t.path().join("m3"),
        &img,
        proxy.port,
        None,
        readahead,
        json!({}),
    );
    let line = wait_log(&d, "nothing to prefetch into", 10);
    assert!(line.contains("readahead"), "{line}");
    check_read(&d, "f00", &img.files[0].1);
}
