//! End-to-end tests of the server over a real unix socket, with a fake
//! daemon behind it and a plain hyper client in front.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::*;
use crate::metrics::{Fop, FsMetricsOptions, Metrics, MetricsSource};

#[derive(Default)]
struct Fake {
    metrics: Metrics,
    mounts: Mutex<BTreeSet<String>>,
    calls: Mutex<Vec<String>>,
    inflight: Mutex<Vec<InflightOp>>,
    /// How long each mount takes.
    mount_delay: Duration,
}

impl Fake {
    fn log(&self, s: String) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl DaemonControl for Fake {
    fn info(&self) -> Value {
        json!({"id": null, "state": "RUNNING", "version": {"package_ver": "v0"},
               "backend_collection": {"/": {"backend_type": "Rafs"}}})
    }
    fn mount(
        &self,
        mp: &str,
        source: &str,
        fs_type: &str,
        config: &str,
        prefetch: Option<Vec<String>>,
    ) -> Result<(), ApiError> {
        std::thread::sleep(self.mount_delay);
        self.log(format!(
            "mount {mp} {source} {fs_type} {config} {prefetch:?}"
        ));
        if !self
            .mounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mp.into())
        {
            return Err(ApiError::internal("object or filesystem already exists"));
        }
        Ok(())
    }
    fn remount(&self, mp: &str, source: &str, config: &str) -> Result<(), ApiError> {
        self.log(format!("remount {mp} {source} {config}"));
        Ok(())
    }
    fn umount(&self, mp: &str) -> Result<(), ApiError> {
        self.log(format!("umount {mp}"));
        if !self
            .mounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mp)
        {
            return Err(ApiError::internal("object or filesystem doesn't exist"));
        }
        Ok(())
    }
    fn exit(&self) {
        self.log("exit".into());
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    fn inflight(&self) -> Result<Vec<InflightOp>, ApiError> {
        Ok(self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
    fn set_config(&self, id: Option<&str>, key: &str, _value: &str) -> Result<(), ApiError> {
        self.log(format!("config {id:?} {key}"));
        Ok(())
    }
}

struct FakeStorage;
impl MetricsSource for FakeStorage {
    fn backend_json(&self) -> Value {
        json!({"backend_type": "localfs", "read_count": 3})
    }
    fn blobcache_json(&self) -> Value {
        json!({"store_path": "/cache", "total": 9})
    }
}

/// One request on a fresh connection; returns (status, headers' content
/// type and server, parsed body or Null when empty).
fn call(sock: &Path, method: Method, uri: &str, body: &str) -> (u16, String, String, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(sock)
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let resp = sender.send_request(req).await.expect("send");
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (ct, server) = (header("content-type"), header("server"));
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (status, ct, server, v)
    })
}

fn setup() -> (tempfile::TempDir, Arc<Fake>, ApiServerHandle) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    let sock = dir.path().join("api.sock");
    let handle = spawn_api_server(&sock, fake.clone()).expect("spawn");
    (dir, fake, handle)
}

fn is_error(v: &Value) -> bool {
    v["code"] == "UNDEFINED" && v["message"].is_string()
}

#[test]
fn api_daemon_info_and_headers() {
    let (_d, _fake, h) = setup();
    let (st, ct, server, v) = call(h.path(), Method::GET, "/api/v1/daemon", "");
    assert_eq!(
        (st, ct.as_str(), server.as_str()),
        (200, "application/json", "Nydus API")
    );
    assert_eq!(v["state"], "RUNNING");
    assert_eq!(v["backend_collection"]["/"]["backend_type"], "Rafs");
    let (st, _, _, v) = call(h.path(), Method::GET, "http://localhost/api/v2/daemon", "");
    assert_eq!(st, 200);
    assert!(v
        .as_object()
        .is_some_and(|o| o["backend_collection"].is_null()));
}

#[test]
fn api_mount_lifecycle() {
    let (_d, fake, h) = setup();
    let body = json!({"source": "/b", "fs_type": "rafs", "config": "{\"device\":{}}",
                      "prefetch_files": ["/usr"]})
    .to_string();
    let (st, ct, _, v) = call(
        h.path(),
        Method::POST,
        "/api/v1/mount?mountpoint=%2Fsub%20x",
        &body,
    );
    assert_eq!((st, ct.as_str(), v), (204, "application/json", Value::Null));
    let (st, _, _, v) = call(
        h.path(),
        Method::POST,
        "/api/v1/mount?mountpoint=/sub%20x",
        &body,
    );
    assert_eq!(st, 500);
    assert!(
        is_error(&v)
            && v["message"]
                .as_str()
                .unwrap_or("")
                .contains("already exists")
    );
    let (st, ..) = call(
        h.path(),
        Method::PUT,
        "/api/v1/mount?mountpoint=/sub%20x",
        &body,
    );
    assert_eq!(st, 204);
    let (st, ..) = call(
        h.path(),
        Method::DELETE,
        "/api/v1/mount?mountpoint=/sub%20x",
        "",
    );
    assert_eq!(st, 204);
    let (st, _, _, v) = call(
        h.path(),
        Method::DELETE,
        "/api/v1/mount?mountpoint=/sub%20x",
        "",
    );
    assert_eq!(st, 500);
    assert!(is_error(&v));
    let calls = fake.calls();
    assert_eq!(
        calls[0],
        "mount /sub x /b rafs {\"device\":{}} Some([\"/usr\"])"
    );
    assert_eq!(calls[2], "remount /sub x /b {\"device\":{}}");
    assert_eq!(calls[3], "umount /sub x");
}

#[test]
fn api_bad_requests() {
    let (_d, fake, h) = setup();
    let cases: &[(Method, &str, &str, u16)] = &[
        (Method::GET, "/api/v1/nothing", "", 404),
        (Method::GET, "/api/v1/daemon/", "", 404),
        (Method::POST, "/api/v1/daemon", "", 400),
        (Method::GET, "/api/v1/mount?mountpoint=/a", "", 400),
        (
            Method::POST,
            "/api/v1/mount",
            r#"{"source":"s","config":"c"}"#,
            400,
        ),
        (
            Method::POST,
            "/api/v1/mount?mountpoint=",
            r#"{"source":"s","config":"c"}"#,
            400,
        ),
        (
            Method::POST,
            "/api/v1/mount?mountpoint=/a",
            "{not json",
            400,
        ),
        (Method::POST, "/api/v1/mount?mountpoint=/a", "", 400),
        (
            Method::POST,
            "/api/v1/mount?mountpoint=/a",
            r#"{"source":"s","config":{}}"#,
            400,
        ),
        (Method::POST, "/api/v1/mount?mountpoint=/a", r#"[1,2]"#, 400),
        (
            Method::PUT,
            "/api/v1/daemon",
            r#"{"log_level":"loud"}"#,
            500,
        ),
        (Method::PUT, "/api/v1/daemon", "", 400),
        (Method::PUT, "/api/v1/daemon/exit", "{}", 400),
        (Method::GET, "/api/v1/daemon/backend", "", 400),
        (Method::GET, "/api/v1/daemon/backend?mountpoint=/", "", 501),
        (Method::PUT, "/api/v1/daemon/start", "", 501),
        (Method::PUT, "/api/v1/daemon/fuse/sendfd", "", 501),
        (Method::PUT, "/api/v1/daemon/fuse/takeover", "", 501),
        (Method::PUT, "/api/v2/blobs", "{}", 501),
        (Method::GET, "/api/v1/metrics/files?latest=maybe", "", 400),
        (Method::PUT, "/api/v1/config", r#"{"nope": "x"}"#, 500),
        (Method::PUT, "/api/v1/config", "[]", 400),
    ];
    for (m, uri, body, want) in cases {
        let (st, ct, _, v) = call(h.path(), m.clone(), uri, body);
        assert_eq!(st, *want, "{m} {uri}: {v}");
        assert_eq!(ct, "application/json");
        assert!(is_error(&v), "{m} {uri}: {v}");
    }
    // Nothing reached the daemon's mutating calls.
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[test]
fn api_huge_body_is_refused() {
    let (_d, _fake, h) = setup();
    let body = "x".repeat(5 << 20);
    let (st, _, _, v) = call(h.path(), Method::POST, "/api/v1/mount?mountpoint=/a", &body);
    assert_eq!(st, 413);
    assert!(is_error(&v));
}

#[test]
fn api_metrics_routes() {
    let (_d, fake, h) = setup();
    let (st, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics", "");
    assert_eq!(st, 404, "no counter set yet: {v}");
    let opts = FsMetricsOptions {
        files_account: true,
        access_pattern: true,
        latest_read_files: true,
    };
    let fs = fake.metrics.add_fs("/", opts);
    fs.op(Fop::Getattr, 1, true);
    fs.read(7, 10, Duration::from_micros(5), true);
    fake.metrics
        .add_storage("/", "cache-id", Arc::new(FakeStorage));

    let (st, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics", "");
    assert_eq!(st, 200);
    assert_eq!(v["id"], "/");
    assert_eq!(v["fop_hits"][0], 1);
    assert_eq!(v["data_read"], 10);
    let (st, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics?id=/", "");
    assert_eq!((st, v["id"].clone()), (200, json!("/")));
    let (st, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics?id=/x", "");
    assert_eq!(st, 404);
    assert!(is_error(&v));
    let (_, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics/files", "");
    assert_eq!(v["7"]["data_read"], 10);
    let (_, _, _, v) = call(
        h.path(),
        Method::GET,
        "/api/v1/metrics/files?latest=true",
        "",
    );
    assert_eq!(v, json!([[7]]));
    let (_, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics/pattern?id=/", "");
    assert_eq!(v[0]["ino"], 7);
    let (_, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics/backend?id=/", "");
    assert_eq!(v["backend_type"], "localfs");
    let (_, _, _, v) = call(
        h.path(),
        Method::GET,
        "/api/v1/metrics/blobcache?id=cache-id",
        "",
    );
    assert_eq!(v["store_path"], "/cache");

    let (st, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics/inflight", "");
    assert_eq!((st, v), (204, Value::Null));
    let op = InflightOp {
        inode: 1,
        opcode: 15,
        unique: 42,
        timestamp_secs: 1_700_000_000,
    };
    fake.inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(op);
    let (st, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics/inflight", "");
    assert_eq!(st, 200);
    assert_eq!(
        v,
        json!([{"inode": 1, "opcode": 15, "unique": 42, "timestamp_secs": 1_700_000_000u64}])
    );

    fake.metrics.events().push("registry: 503 for blob abc");
    let (_, _, _, v) = call(h.path(), Method::GET, "/api/v1/daemon/events", "");
    assert_eq!(v["total_errors"], 1);
    assert_eq!(v["max_errors"], 500);
}

#[test]
fn api_daemon_put_exit_and_config() {
    let (_d, fake, h) = setup();
    let (st, ..) = call(
        h.path(),
        Method::PUT,
        "/api/v1/daemon",
        r#"{"log_level":"debug"}"#,
    );
    assert_eq!(st, 204);
    assert_eq!(log::max_level(), log::LevelFilter::Debug);
    let (st, ..) = call(h.path(), Method::PUT, "/api/v1/daemon/exit", "");
    assert_eq!(st, 204);
    let body = r#"{"registry_auth": "c2VjcmV0OnNlY3JldA==", "proxy_url": "http://p"}"#;
    let (st, ..) = call(h.path(), Method::PUT, "/api/v1/config?id=/a", body);
    assert_eq!(st, 204);
    let (st, _, _, v) = call(h.path(), Method::GET, "/api/v1/config?id=/a", "");
    assert_eq!(st, 200);
    assert_eq!(
        v,
        json!({"registry_auth": "<redacted>", "proxy_url": "http://p"})
    );
    let (_, _, _, v) = call(h.path(), Method::GET, "/api/v1/config", "");
    assert_eq!(v, json!({}));
    assert_eq!(
        fake.calls(),
        [
            "exit",
            "config Some(\"/a\") proxy_url",
            "config Some(\"/a\") registry_auth"
        ]
    );
}

#[test]
fn api_stale_socket_and_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("api.sock");
    // A socket left by a dead daemon is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind"));
    let h = spawn_api_server(&sock, Arc::new(Fake::default())).expect("spawn over stale");
    assert_eq!(call(&sock, Method::GET, "/api/v1/daemon", "").0, 200);
    h.stop();
    assert!(!sock.exists());
    // A regular file is not ours to delete.
    std::fs::write(&sock, b"x").expect("write");
    assert!(spawn_api_server(&sock, Arc::new(Fake::default())).is_err());
}

#[test]
fn api_reads_do_not_wait_for_a_slow_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake {
        mount_delay: Duration::from_millis(800),
        ..Fake::default()
    });
    let sock = dir.path().join("api.sock");
    let _h = spawn_api_server(&sock, fake.clone()).expect("spawn");
    let body = json!({"source": "/b", "fs_type": "rafs", "config": "{}"}).to_string();
    let mounts: Vec<_> = ["/a", "/b"]
        .into_iter()
        .map(|mp| {
            let (sock, body) = (sock.clone(), body.clone());
            let uri = format!("/api/v1/mount?mountpoint={mp}");
            std::thread::spawn(move || call(&sock, Method::POST, &uri, &body).0)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    assert_eq!(call(&sock, Method::GET, "/api/v1/daemon", "").0, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "info waited {:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    for m in mounts {
        assert_eq!(m.join().ok(), Some(204));
    }
    // Mounts are serialized: the second started after the first ended.
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(fake.calls().len(), 2);
}

#[test]
fn api_many_connections_are_all_served() {
    let (_d, _fake, h) = setup();
    let sock = h.path().to_path_buf();
    // Idle connections beyond the limit wait; they are not refused.
    let idle: Vec<_> = (0..70)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).expect("connect"))
        .collect();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || call(&sock, Method::GET, "/api/v1/daemon", "").0)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    drop(idle);
    for w in workers {
        assert_eq!(w.join().ok(), Some(200));
    }
}
