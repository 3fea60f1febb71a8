//! Every route: status, headers and body shape; bad requests.

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};

use super::*;
use crate::metrics::{Fop, FsMetricsOptions, Metrics};

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

    let (st, ct, _, v) = call(h.path(), Method::GET, "/metrics", "");
    assert_eq!(st, 200);
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = v.as_str().unwrap_or_default();
    assert!(
        text.contains("nydusd_fs_data_read{mountpoint=\"/\"} 10"),
        "{text}"
    );

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

/// A daemon implementing only the required methods gets the defaults.
struct Minimal(Metrics);

impl DaemonControl for Minimal {
    fn info(&self) -> Value {
        json!({})
    }
    fn mount(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: Option<Vec<String>>,
    ) -> Result<(), ApiError> {
        Ok(())
    }
    fn remount(&self, _: &str, _: &str, _: &str) -> Result<(), ApiError> {
        Ok(())
    }
    fn umount(&self, _: &str) -> Result<(), ApiError> {
        Ok(())
    }
    fn exit(&self) {}
    fn metrics(&self) -> &Metrics {
        &self.0
    }
}

#[test]
fn api_default_inflight_reads_the_fuse_hooks() {
    use fuse_backend_rs::abi::fuse_abi::InHeader;
    use fuse_backend_rs::api::server::MetricsHook;

    let dir = tempfile::tempdir().expect("tempdir");
    let control = Arc::new(Minimal(Metrics::new()));
    let h = spawn_api_server(&dir.path().join("api.sock"), control.clone()).expect("spawn");
    let (st, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics/inflight", "");
    assert_eq!(st, 501, "no FUSE threads: not tracked: {v}");
    let slot = control.0.inflight().slot();
    let (st, ..) = call(h.path(), Method::GET, "/api/v1/metrics/inflight", "");
    assert_eq!(st, 204);
    let ih = InHeader {
        opcode: 15,
        unique: 99,
        nodeid: 5,
        ..InHeader::default()
    };
    slot.collect(&ih);
    let (st, _, _, v) = call(h.path(), Method::GET, "/api/v1/metrics/inflight", "");
    assert_eq!(st, 200);
    assert_eq!(
        (
            v[0]["opcode"].clone(),
            v[0]["unique"].clone(),
            v[0]["inode"].clone()
        ),
        (json!(15), json!(99), json!(5))
    );
    slot.release(None);
    let (st, ..) = call(h.path(), Method::GET, "/api/v1/metrics/inflight", "");
    assert_eq!(st, 204);
    let (st, ..) = call(
        h.path(),
        Method::PUT,
        "/api/v1/config",
        r#"{"proxy_url": "http://p"}"#,
    );
    assert_eq!(st, 501, "set_config defaults to unsupported");
}
