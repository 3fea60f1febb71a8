//! Admin API errors (reference §6): every bad request gets an error status
//! and a `{"code","message"}` body naming the problem, nothing is left half
//! mounted, and the daemon keeps serving.
//!
//! Status codes: the issue asks for 4xx on bad mount requests; upstream
//! answers daemon-side mount failures ("already exists", "doesn't exist",
//! bootstrap errors) with 500 and the reference asks to keep its codes, so
//! for those `4xx or 500` is accepted. Routing and parsing errors have
//! exact codes in both (404 unknown path, 400 bad JSON / query / method).

use std::ffi::OsStr;
use std::path::Path;

use nydus_e2e::api::{self, Daemon, Response, V1Config};
use nydus_e2e::fixtures;

fn start(tmp: &Path) -> Daemon {
    Daemon::start(
        &tmp.join("mnt"),
        &tmp.join("api.sock"),
        &tmp.join("nydusd.log"),
        &[OsStr::new("--log-level"), OsStr::new("warn")],
    )
}

/// Checks an error reply: status in `allowed`, JSON `{"code","message"}`
/// with `Content-Type: application/json`, and a message that contains one
/// of `words` (case-insensitive).
fn assert_error(r: &Response, what: &str, allowed: &[u16], words: &[&str]) {
    let expected = if allowed.len() > 100 {
        "4xx or 500".to_string()
    } else {
        format!("{allowed:?}")
    };
    assert!(
        allowed.contains(&r.status),
        "{what}: expected HTTP {expected}, got {} {:?}",
        r.status,
        r.body
    );
    let msg = api::error_message(r, what);
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{what}: Content-Type {ct:?}, expected application/json"
    );
    let lower = msg.to_lowercase();
    assert!(
        words.iter().any(|w| lower.contains(&w.to_lowercase())),
        "{what}: message {msg:?} does not name the problem (expected one of {words:?})"
    );
}

/// 4xx, or 500 as upstream answers daemon-side mount failures.
fn mount_error_codes() -> Vec<u16> {
    let mut v: Vec<u16> = (400..500).collect();
    v.push(500);
    v
}

fn assert_enoent(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => panic!("{} should not exist, got {other:?}", path.display()),
    }
}

fn mount_path(sub: &str) -> String {
    format!("/api/v1/mount?mountpoint={}", api::encode_query(sub))
}

#[test]
fn api_errors_are_reported_and_daemon_keeps_serving() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = fixtures()
        .into_iter()
        .find(|f| f.name == "mini-v5-lz4-blake3")
        .expect("fixture mini-v5-lz4-blake3");
    let config = V1Config::new(&fx.blob_dir, &tmp.path().join("cache")).text();
    let mut d = start(tmp.path());
    let sock = d.apisock.clone();
    let mnt = d.mountpoint.clone();
    let codes = mount_error_codes();

    // A good mount to check that the errors below leave it alone.
    let r = api::mount(&sock, "/good", &fx.bootstrap, &config);
    assert!(r.status == 204 || r.status == 200, "mount /good: {r:?}");
    let probe = mnt.join("good/misc/dir00/f000.txt");
    let before = std::fs::read(&probe).expect("read through /good");

    // "/" over an existing mount: refused as a nested mount.
    let r = api::mount(&sock, "/", &fx.bootstrap, &config);
    assert_error(
        &r,
        "mount at / beside /good",
        &codes,
        &["nest", "root", "exist"],
    );

    for sub in ["/x/../y", "/..", "/a/..", "x/../../etc"] {
        let r = api::mount(&sock, sub, &fx.bootstrap, &config);
        assert_error(&r, &format!("mount at {sub:?}"), &codes, &[".."]);
    }
    assert_enoent(&mnt.join("x"));
    assert_enoent(&mnt.join("y"));
    for sub in ["relative", "\0nul", "/with\0nul"] {
        let r = api::mount(&sock, sub, &fx.bootstrap, &config);
        assert_error(
            &r,
            &format!("mount at {sub:?}"),
            &codes,
            &["absolute", "nul", "\\0", "invalid"],
        );
    }
    assert_enoent(&mnt.join("relative"));
    assert_enoent(&mnt.join("with"));

    let r = api::mount(&sock, "/good", &fx.bootstrap, &config);
    assert_error(
        &r,
        "second mount at /good",
        &codes,
        &["exist", "already", "mounted"],
    );

    let missing = tmp.path().join("no-such-bootstrap");
    let r = api::mount(&sock, "/missing", &missing, &config);
    assert_error(
        &r,
        "mount of a missing bootstrap",
        &codes,
        &["no-such-bootstrap", "no such file", "not found"],
    );
    assert_enoent(&mnt.join("missing"));

    for (bad, what) in [
        ("this is { not json", "unparsable config"),
        ("{\"device\": {}}", "config without backend"),
        ("{\"device\": {\"backend\": {\"type\": \"localfs\", \"config\": {}}}, \"mode\": \"sideways\"}", "config with bad mode"),
    ] {
        let r = api::mount(&sock, "/badcfg", &fx.bootstrap, bad);
        assert_error(&r, what, &codes, &["config", "parse", "mode", "backend", "device"]);
        assert_enoent(&mnt.join("badcfg"));
    }

    let body = serde_json::json!({"source": fx.bootstrap, "fs_type": "ext4", "config": config});
    let r = api::call(&sock, "POST", &mount_path("/ext4"), Some(&body.to_string()));
    assert_error(&r, "fs_type ext4", &codes, &["ext4", "fs_type", "type"]);
    assert_enoent(&mnt.join("ext4"));

    let r = api::umount(&sock, "/never-mounted");
    assert_error(
        &r,
        "umount of a path not mounted",
        &codes,
        &[
            "exist",
            "not mounted",
            "not found",
            "no such",
            "never-mounted",
        ],
    );

    let r = api::call(&sock, "GET", "/api/v1/no-such-endpoint", None);
    assert_error(
        &r,
        "unknown endpoint",
        &[404],
        &["route", "not found", "no-such-endpoint"],
    );

    let r = api::call(
        &sock,
        "POST",
        &mount_path("/badjson"),
        Some("{\"source\": "),
    );
    assert_error(
        &r,
        "truncated JSON body",
        &[400],
        &["parse", "json", "body", "eof"],
    );
    let r = api::call(
        &sock,
        "POST",
        &mount_path("/badjson"),
        Some("{\"source\": \"/x\"}"),
    );
    assert_error(&r, "body without config", &[400], &["config", "missing"]);
    let body = api::mount_body(&fx.bootstrap, &config);
    let r = api::call(&sock, "POST", "/api/v1/mount", Some(&body));
    assert_error(
        &r,
        "mount without mountpoint query",
        &[400],
        &["mountpoint"],
    );
    let r = api::call(&sock, "GET", "/api/v1/mount", None);
    assert_error(
        &r,
        "GET on the mount endpoint",
        &[400, 405],
        &["method", "get", "bad"],
    );
    assert_enoent(&mnt.join("badjson"));

    // Still serving: the API, the old mount, and a new mount.
    assert!(d.alive(), "nydusd died; log:\n{}", d.log_tail());
    let info = api::call(&sock, "GET", "/api/v1/daemon", None);
    info.expect_status(200, "GET /api/v1/daemon after errors");
    assert_eq!(
        info.json()["state"],
        "RUNNING",
        "daemon state: {}",
        info.body
    );
    assert_eq!(
        std::fs::read(&probe).expect("read /good after errors"),
        before,
        "/good content changed"
    );
    let r = api::mount(&sock, "/missing", &fx.bootstrap, &config);
    assert!(
        r.status == 204 || r.status == 200,
        "mount at a path whose mount failed before: {r:?}; log:\n{}",
        d.log_tail()
    );
    assert_eq!(
        std::fs::read(mnt.join("missing/misc/dir00/f000.txt")).expect("read /missing"),
        before
    );
    let r = api::umount(&sock, "/good");
    assert!(r.status == 204 || r.status == 200, "umount /good: {r:?}");
    let r = api::umount(&sock, "/good");
    assert_error(
        &r,
        "second umount of /good",
        &codes,
        &["exist", "not mounted", "not found", "no such", "good"],
    );
}

/// The issue: an API mount at `/` is refused, even on an empty daemon.
/// (Upstream allows it: the image then hides the pseudo root, reference §9.)
#[test]
fn mount_at_root_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = fixtures()
        .into_iter()
        .find(|f| f.name == "mini-v5-lz4-blake3")
        .expect("fixture mini-v5-lz4-blake3");
    let config = V1Config::new(&fx.blob_dir, &tmp.path().join("cache")).text();
    let mut d = start(tmp.path());
    let r = api::mount(&d.apisock, "/", &fx.bootstrap, &config);
    let listing: Vec<_> = std::fs::read_dir(&d.mountpoint)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_error(
        &r,
        "mount at / on an empty daemon",
        &mount_error_codes(),
        &["/", "root"],
    );
    assert!(
        listing.is_empty(),
        "pseudo root not empty after a refused mount: {listing:?}"
    );
    let r = api::mount(&d.apisock, "/ok", &fx.bootstrap, &config);
    assert!(
        r.status == 204 || r.status == 200,
        "mount /ok after refusing /: {r:?}"
    );
    assert!(d.alive(), "nydusd died; log:\n{}", d.log_tail());
}

/// Eight clients mount at one path at once: exactly one wins, the others get
/// "already exists"; eight at eight paths all succeed.
#[test]
fn concurrent_mounts_at_one_path_one_wins() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = fixtures()
        .into_iter()
        .find(|f| f.name == "mini-v5-lz4-blake3")
        .expect("fixture mini-v5-lz4-blake3");
    let config = V1Config::new(&fx.blob_dir, &tmp.path().join("cache")).text();
    let mut d = start(tmp.path());
    let run = |paths: Vec<String>| -> Vec<Response> {
        std::thread::scope(|s| {
            let hs: Vec<_> = paths
                .iter()
                .map(|p| s.spawn(|| api::mount(&d.apisock, p, &fx.bootstrap, &config)))
                .collect();
            hs.into_iter().map(|h| h.join().expect("client")).collect()
        })
    };
    let same = run(vec!["/same".to_string(); 8]);
    let wins = same
        .iter()
        .filter(|r| r.status == 204 || r.status == 200)
        .count();
    assert_eq!(wins, 1, "concurrent mounts at /same: {same:?}");
    for r in same.iter().filter(|r| r.status != 204 && r.status != 200) {
        assert_error(
            r,
            "concurrent mount at /same",
            &mount_error_codes(),
            &["exist", "already"],
        );
    }
    let many = run((0..8).map(|i| format!("/d{i}")).collect());
    assert!(
        many.iter().all(|r| r.status == 204 || r.status == 200),
        "concurrent mounts at eight paths: {many:?}"
    );
    for i in 0..8 {
        let f = d.mountpoint.join(format!("d{i}/misc/dir00/f000.txt"));
        std::fs::metadata(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    assert!(d.alive(), "nydusd died; log:\n{}", d.log_tail());
}
