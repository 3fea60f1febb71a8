//! `nydusctl --sock ... <command>` against a fake nydusd API socket: the
//! command line, the requests it makes, what it prints, its exit status.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// One request as the fake daemon saw it: method, target (path + query), body.
type Seen = (String, String, String);

struct FakeDaemon {
    dir: tempfile::TempDir,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Canned replies, like nydusd's: (status, body).
fn reply(method: &str, target: &str) -> (u16, Value) {
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/api/v1/daemon") => (
            200,
            json!({"version": {"package_ver": "v9.9.9", "profile": "release", "git_commit": "c0ffee"},
                   "id": null, "supervisor": null, "state": "RUNNING",
                   "backend_collection": {"/": {"backend_type": "Rafs", "mountpoint": "/",
                       "mounted_time": "2026-07-01 10:00:00", "config": {"rafs": {"mode": "direct"},
                       "cache": {"prefetch": {"enable": false, "batch_size": 0}}}}}}),
        ),
        ("GET", "/api/v1/metrics/backend") => (
            200,
            json!({"backend_type": "localfs", "read_count": 2, "read_errors": 0,
                   "read_amount_total": 1048576, "read_cumulative_latency_millis_total": 4,
                   "read_cumulative_latency_millis_dist": [0, 0, 0, 0, 0, 0, 0, 4],
                   "read_count_block_size_dist": [0, 0, 0, 0, 0, 0, 0, 2]}),
        ),
        ("GET", "/api/v1/metrics/blobcache") => (
            200,
            json!({"partial_hits": 5, "whole_hits": 0, "total": 6, "store_path": "/cache",
                   "underlying_files": [], "prefetch_data_amount": 0}),
        ),
        ("GET", "/api/v1/metrics") => (
            200,
            json!({"id": "/", "data_read": 10,
                   "fop_hits": [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                   "fop_errors": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                   "read_latency_dist": [2, 0, 0, 0, 0, 0, 0, 0]}),
        ),
        ("GET", "/api/v1/metrics/inflight") => (204, Value::Null),
        ("PUT", "/api/v1/daemon") | ("POST", "/api/v1/mount") => (204, Value::Null),
        ("DELETE", "/api/v1/mount") => (
            500,
            json!({"code": "UNDEFINED", "message": "object or filesystem doesn't exist"}),
        ),
        _ => (404, json!({"code": "UNDEFINED", "message": "NoRoute"})),
    }
}

fn serve_one(
    stream: std::os::unix::net::UnixStream,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let (status, v) = reply(&method, &target);
    seen.lock()
        .unwrap()
        .push((method, target, String::from_utf8_lossy(&body).into_owned()));
    let text = if v.is_null() {
        String::new()
    } else {
        v.to_string()
    };
    let mut w = stream;
    write!(
        w,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
}

impl FakeDaemon {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("api.sock")).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve_one(stream, &s);
            }
        });
        FakeDaemon { dir, seen }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn nydusctl(sock: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nydusctl"));
    if let Some(s) = sock {
        c.arg("--sock").arg(s);
    }
    c.args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn info_formatted_and_raw() {
    let d = FakeDaemon::start();
    let out = stdout(&nydusctl(Some(&d.sock()), &["info"]));
    assert!(
        out.contains("Version:                \"v9.9.9\"\n"),
        "{out}"
    );
    assert!(
        out.contains("Status:                 \"RUNNING\"\n"),
        "{out}"
    );
    assert!(
        out.contains("\tInstance Mountpoint:  /\n\tType:  Rafs\n"),
        "{out}"
    );
    assert!(out.contains("\tMode:  direct\n"), "{out}");
    for args in [&["--raw", "info"][..], &["info", "-r"], &["-r", "info"]] {
        let out = stdout(&nydusctl(Some(&d.sock()), args));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["state"], "RUNNING");
    }
    // `-S` and `--apisock` name the same option.
    let o = Command::new(env!("CARGO_BIN_EXE_nydusctl"))
        .arg("-S")
        .arg(d.sock())
        .arg("info")
        .output()
        .unwrap();
    assert!(stdout(&o).contains("Commit:"));
    assert!(d
        .seen()
        .iter()
        .all(|(m, t, _)| m == "GET" && t == "/api/v1/daemon"));
}

#[test]
fn set_log_level() {
    let d = FakeDaemon::start();
    let o = nydusctl(Some(&d.sock()), &["set", "log-level", "debug"]);
    assert_eq!(stdout(&o), "");
    let seen = d.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("PUT", "/api/v1/daemon")
    );
    let body: Value = serde_json::from_str(&seen[0].2).unwrap();
    assert_eq!(body, json!({"log_level": "debug"}));
    // Only log-level is settable, as upstream.
    let o = nydusctl(Some(&d.sock()), &["set", "color", "red"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn metrics_categories() {
    let d = FakeDaemon::start();
    let out = stdout(&nydusctl(Some(&d.sock()), &["metrics", "backend"]));
    assert!(out.contains("Backend Type:       \"localfs\"\n"), "{out}");
    assert!(
        out.contains("Read Amount:        1048576 Bytes (1 MB)"),
        "{out}"
    );
    let out = stdout(&nydusctl(Some(&d.sock()), &["metrics", "cache"]));
    assert!(out.contains("Partial Hits:               5\n"), "{out}");
    let out = stdout(&nydusctl(
        Some(&d.sock()),
        &["metrics", "blobcache", "--id", "/a b"],
    ));
    assert!(
        out.contains("Directory:                  \"/cache\""),
        "{out}"
    );
    let out = stdout(&nydusctl(Some(&d.sock()), &["metrics", "fsstats"]));
    assert!(out.contains("Read Data: 10Bytes (0MB)"), "{out}");
    assert!(out.contains("Getattr(1) "), "{out}");
    let out = stdout(&nydusctl(Some(&d.sock()), &["--raw", "metrics", "fsstats"]));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["id"], "/");
    let out = stdout(&nydusctl(Some(&d.sock()), &["metrics"]));
    assert!(out.contains("FOP Counters:"), "{out}");
    let out = stdout(&nydusctl(Some(&d.sock()), &["metrics", "inflight"]));
    assert_eq!(out, "");
    let targets: Vec<String> = d.seen().into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(
        targets,
        [
            "/api/v1/metrics/backend",
            "/api/v1/metrics/blobcache",
            "/api/v1/metrics/blobcache?id=/a%20b",
            "/api/v1/metrics",
            "/api/v1/metrics",
            "/api/v1/metrics",
            "/api/v1/metrics/inflight"
        ]
    );
}

#[test]
fn mount_and_umount() {
    let d = FakeDaemon::start();
    let cfg = d.dir.path().join("config.json");
    std::fs::write(
        &cfg,
        "{\"device\": {\"backend\": {\"type\": \"localfs\"}}}\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let o = nydusctl(
        Some(&d.sock()),
        &[
            "mount",
            "-s",
            "/img/bootstrap",
            "-c",
            cfg,
            "-m",
            "/sub",
            "-t",
            "rafs",
        ],
    );
    assert_eq!(stdout(&o), "");
    let seen = d.seen();
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("POST", "/api/v1/mount?mountpoint=/sub")
    );
    let body: Value = serde_json::from_str(&seen[0].2).unwrap();
    assert_eq!(body["source"], "/img/bootstrap");
    assert_eq!(body["fs_type"], "rafs");
    assert_eq!(
        body["config"],
        "{\"device\": {\"backend\": {\"type\": \"localfs\"}}}\n"
    );

    // `-t` may be left out: rafs.
    let o = nydusctl(
        Some(&d.sock()),
        &["mount", "-s", "/b", "-c", cfg, "-m", "/t"],
    );
    assert_eq!(stdout(&o), "");
    let seen = d.seen();
    let body: Value = serde_json::from_str(&seen[1].2).unwrap();
    assert_eq!(body["fs_type"], "rafs");
    let o = nydusctl(
        Some(&d.sock()),
        &[
            "mount",
            "-s",
            "/b",
            "-c",
            cfg,
            "-m",
            "/t",
            "-t",
            "passthrough",
        ],
    );
    assert_eq!(stdout(&o), "");
    let body: Value = serde_json::from_str(&d.seen()[2].2).unwrap();
    assert_eq!(body["fs_type"], "passthrough_fs");

    // The fake says the mount is unknown: upstream's error line, exit 1.
    for args in [&["umount", "-m", "/sub"][..], &["umount", "/sub"]] {
        let o = nydusctl(Some(&d.sock()), args);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(r#"Request failed. {"code":"UNDEFINED","message":"object or filesystem doesn't exist"}"#),
            "{err}"
        );
    }
    let seen = d.seen();
    assert_eq!(seen[3].0, "DELETE");
    assert_eq!(seen[3].1, "/api/v1/mount?mountpoint=/sub");
    assert_eq!(seen[4].1, "/api/v1/mount?mountpoint=/sub");

    // A missing config file fails before any request.
    let o = nydusctl(
        Some(&d.sock()),
        &[
            "mount",
            "-s",
            "/b",
            "-c",
            "/nonexistent",
            "-m",
            "/x",
            "-t",
            "rafs",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(d.seen().len(), 5);
}

#[test]
fn errors_without_daemon() {
    let o = nydusctl(None, &["info"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--sock"));
    let dir = tempfile::tempdir().unwrap();
    let o = nydusctl(Some(&dir.path().join("none.sock")), &["metrics", "backend"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("none.sock"));
}
