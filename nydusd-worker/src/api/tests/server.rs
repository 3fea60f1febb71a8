//! The transport: limits, socket life cycle, concurrency.

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde_json::json;

use super::*;

#[test]
fn api_huge_body_is_refused() {
    let (_d, _fake, h) = setup();
    let body = "x".repeat(5 << 20);
    let (st, _, _, v) = call(h.path(), Method::POST, "/api/v1/mount?mountpoint=/a", &body);
    assert_eq!(st, 413);
    assert!(is_error(&v));
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
