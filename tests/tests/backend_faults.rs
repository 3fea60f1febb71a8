//! A slow or unreachable backend is EIO within a bound the config sets,
//! never a hang: the object store answering 3 s late against a 1 s
//! `timeout`, and a blackholed port (a listener whose accept queue is
//! full, so SYNs are dropped) against `connect_timeout`. Once the store
//! is fast again the same read succeeds without a remount. A registry
//! that is down when `nydusd` starts: the mount comes up (nothing is
//! fetched at mount: chunk data, and a v6 blob's ci table where the
//! bootstrap lacks a chunk's descriptor, are fetched at first use), reads
//! are EIO, and once the registry is back the same reads give the
//! right bytes without a remount.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nydus_e2e::secrets::Exposed;
use nydus_e2e::servers::{
    assert_fixture, fixture, full_log, mount_fixture, pick_file, read_cold, ObjectStore, Registry,
    RegistryOpts,
};
use serde_json::json;

const AK: &str = "faults-access-key";
const SK: &str = "faults-SECRET-key-never-shown";
const BUCKET: &str = "faults";
const PREFIX: &str = "";
const REGION: &str = "us-test-1";
const FIXTURE: &str = "mini-v6-zstd-sha256";
/// Attempts of one read for `retry_limit` ≤ 3 (storage/http/mod.rs: 1 +
/// max(retry_limit, 3)), and the back-off between them: 100, 200, 400 ms.
const ATTEMPTS: u32 = 4;
const BACKOFF: Duration = Duration::from_millis(700);
/// FUSE requests behind one failing `read(2)`: the kernel's readahead
/// request fails, then it reads the page again synchronously (Linux
/// `filemap_read` retries a folio readahead left !uptodate). Each request
/// runs its own attempts.
const REQUESTS: u32 = 2;
/// Scheduling, process and FUSE overhead on a busy machine.
const SLACK: Duration = Duration::from_secs(3);

fn s3_config(port: u16, timeout: u32, connect_timeout: u32) -> serde_json::Value {
    json!({
        "scheme": "http",
        "endpoint": format!("127.0.0.1:{port}"),
        "region": REGION,
        "bucket_name": BUCKET,
        "object_prefix": PREFIX,
        "access_key_id": AK,
        "access_key_secret": SK,
        "timeout": timeout,
        "connect_timeout": connect_timeout,
        "retry_limit": 1,
    })
}

/// Reads `path` expecting EIO; returns how long that took.
fn expect_eio(path: &std::path::Path, what: &str) -> Duration {
    let t = Instant::now();
    let err = std::fs::read(path).expect_err(what);
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{what}: {err}");
    t.elapsed()
}

#[test]
fn slow_store_is_eio_within_the_timeouts_then_recovers() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = ObjectStore::start(&t.path().join("store"), AK, SK, REGION);
    let fx = fixture(FIXTURE);
    store.put_dir(BUCKET, PREFIX, &fx.blob_dir);
    let tmp = t.path().join("m");
    let d = mount_fixture(&fx, "s3", s3_config(store.port, 1, 1), "dummycache", &tmp);

    let hook = store.hook("/__faults?latency_ms=3000");
    assert!(hook.contains(" 200"), "{hook}");
    let file = d.mountpoint.join(pick_file(&fx, 4096, 0));
    let took = expect_eio(&file, "read while every answer takes 3 s");
    let bound = (Duration::from_secs(1) * ATTEMPTS + BACKOFF) * REQUESTS + SLACK;
    assert!(
        took <= bound,
        "EIO after {took:?}: more than {REQUESTS} requests x ({ATTEMPTS} attempts x 1 s timeout \
         + back-off) + slack = {bound:?}"
    );
    // Every attempt waited for its timeout: the latency was in effect.
    assert!(
        took >= Duration::from_secs(ATTEMPTS.into()),
        "EIO after only {took:?}"
    );
    eprintln!("3 s latency, timeout 1 s: EIO after {took:?} (bound {bound:?})");

    store.hook("/__faults?latency_ms=0");
    assert_fixture(&fx, &d, "s3 after the latency is gone");
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(
        log.contains("timed out"),
        "the log does not say why:\n{log}"
    );
    let mut exposed = Exposed::new();
    exposed.daemon("slow store", &d, &tmp.join("api.sock"));
    exposed.assert_none(&[SK, AK]);
}

/// A port where connects hang: a listener with backlog 0 whose queue is
/// filled and never accepted (Linux then drops new SYNs). `None` if this
/// kernel answers anyway.
fn blackhole() -> Option<(TcpListener, Vec<TcpStream>, u16)> {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a socket we own; a second listen() only
    // changes the backlog.
    let rc = unsafe { libc::listen(l.as_raw_fd(), 0) };
    assert_eq!(rc, 0, "listen(fd, 0)");
    let port = l.local_addr().expect("addr").port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut fill = Vec::new();
    for _ in 0..4 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(s) => fill.push(s),
            Err(_) => return Some((l, fill, port)),
        }
    }
    None
}

#[test]
fn blackholed_port_is_eio_within_connect_timeout() {
    let Some((_listener, _fill, port)) = blackhole() else {
        panic!("cannot make a blackholed port here: connects to a full backlog-0 listener succeed");
    };
    let t = tempfile::tempdir().expect("tempdir");
    let fx = fixture(FIXTURE);
    let tmp = t.path().join("m");
    // `timeout` is far larger: only `connect_timeout` can end the attempts.
    let d = mount_fixture(&fx, "s3", s3_config(port, 60, 1), "dummycache", &tmp);
    let file = d.mountpoint.join(pick_file(&fx, 4096, 0));
    let took = expect_eio(&file, "read from a blackholed port");
    let bound = (Duration::from_secs(1) * ATTEMPTS + BACKOFF) * REQUESTS + SLACK;
    assert!(
        took <= bound,
        "EIO after {took:?}: more than {REQUESTS} requests x ({ATTEMPTS} attempts x 1 s \
         connect_timeout + back-off) + slack = {bound:?}"
    );
    assert!(
        took >= Duration::from_secs(ATTEMPTS.into()),
        "EIO after only {took:?}"
    );
    eprintln!("blackholed port, connect_timeout 1 s: EIO after {took:?} (bound {bound:?})");
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(
        log.contains("timed out") || log.contains("connect"),
        "{log}"
    );
    let mut exposed = Exposed::new();
    exposed.daemon("blackhole", &d, &tmp.join("api.sock"));
    exposed.assert_none(&[SK, AK]);
}

#[test]
fn registry_down_at_mount_is_eio_until_it_is_back() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut r = Registry::start(&t.path().join("reg"), RegistryOpts::default());
    // v6, so any blob meta the daemon needs comes from the blob at first
    // use, never before the outage.
    let fx = fixture(FIXTURE);
    r.push_dir("e2e/down", &fx.blob_dir);
    r.stop();
    let cfg = json!({
        "scheme": "http",
        "host": r.host(),
        "repo": "e2e/down",
        "timeout": 2,
        "connect_timeout": 1,
        "retry_limit": 1,
    });
    let mut mounts = Vec::new();
    for cache in ["dummycache", "blobcache"] {
        let tmp = t.path().join(cache);
        // Nydusd::start panics with the log if nydusd exits instead.
        let mut d = mount_fixture(&fx, "registry", cfg.clone(), cache, &tmp);
        let file = d.mountpoint.join(pick_file(&fx, 4096, 0));
        let took = expect_eio(&file, &format!("{cache}: read while the registry is down"));
        assert!(
            took < Duration::from_secs(30),
            "{cache}: EIO after {took:?}"
        );
        // The directory tree comes from the bootstrap: still browsable.
        assert!(std::fs::read_dir(&d.mountpoint).is_ok_and(|mut e| e.next().is_some()));
        assert!(d.try_wait().is_none(), "{cache}: nydusd exited");
        // One error line says which backend and why (the retries are debug).
        let log = full_log(&d);
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains("registry blob")
                && l.contains("Connection refused")),
            "{cache}: no error line names the registry and the cause:\n{log}"
        );
        mounts.push((cache, d, file));
    }
    r.restart();
    for (cache, d, file) in &mounts {
        // The same file first (past the page cache): a failure is not
        // remembered, and no remount is needed.
        read_cold(file).unwrap_or_else(|e| panic!("{cache}: read after restart: {e}"));
        assert_fixture(
            &fx,
            d,
            &format!("registry back after being down at mount, {cache}"),
        );
    }
}
