//! The P2P proxy (reference §4.6) with nginx as the proxy in front of a
//! real registry: reads go through it; when it is killed mid-test reads
//! keep working through the fallback to the origin; once it is back (and
//! a health ping saw it) reads use it again. Without fallback, a dead
//! proxy means EIO. `proxy_url` through `PUT /api/v1/config` adds and
//! removes the proxy without a remount.

use std::time::{Duration, Instant};

use nydus_e2e::api::call;
use nydus_e2e::secrets::Exposed;
use nydus_e2e::servers::{
    assert_fixture, backend_metrics, fixture, full_log, mount_fixture, pick_file, read_cold, Nginx,
    Registry, RegistryOpts,
};
use serde_json::json;

const REPO: &str = "e2e/proxied";
/// Credentials in the proxy URL (nginx ignores them): they are secret
/// like any other.
const PROXY_PASS: &str = "Proxy-Pa55-never-shown";

fn config(r: &Registry, ngx: &Nginx, fallback: bool) -> serde_json::Value {
    let proxy = format!("http://127.0.0.1:{}", ngx.port);
    json!({
        "scheme": "http",
        "host": r.host(),
        "repo": REPO,
        "timeout": 5,
        "connect_timeout": 2,
        "proxy": {
            "url": format!("http://p2p:{PROXY_PASS}@127.0.0.1:{}", ngx.port),
            "ping_url": format!("{proxy}/server/ping"),
            "check_interval": 1,
            "fallback": fallback,
        },
    })
}

fn read(path: &std::path::Path) {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
}

/// nginx's request count once it exceeds `seen` and has not grown for
/// 300 ms: nginx logs a request after sending the answer, and one read may
/// make more than one request, so the log can lag the read. `seen` after
/// 5 s without any.
fn requests_after(ngx: &Nginx, seen: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while ngx.requests() <= seen && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut count = ngx.requests();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = ngx.requests();
        if now == count {
            return count;
        }
        count = now;
    }
}

#[test]
fn proxy_fallback_while_down_and_back_when_healthy() {
    let t = tempfile::tempdir().expect("tempdir");
    let r = Registry::start(&t.path().join("reg"), RegistryOpts::default());
    let fx = fixture("mini-v6-none-blake3");
    r.push_dir(REPO, &fx.blob_dir);
    let ngx = Nginx::start(&t.path().join("nginx"));
    let tmp = t.path().join("m");
    let d = mount_fixture(&fx, "registry", config(&r, &ngx, true), "dummycache", &tmp);
    let file = |k| d.mountpoint.join(pick_file(&fx, 4096, k));

    read(&file(0));
    let through = requests_after(&ngx, 0);
    assert!(through > 0, "the first read did not go through the proxy");

    ngx.stop();
    for k in 1..4 {
        read(&file(k));
    }
    assert_eq!(ngx.requests(), through, "requests reached a stopped proxy?");

    ngx.restart();
    // A read after `check_interval` starts a ping; once it has answered,
    // reads use the proxy again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut k = 4;
    while ngx.requests() <= through {
        assert!(
            Instant::now() < deadline,
            "reads did not return to the proxy; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
        read(&file(k));
        k += 1;
    }
    let log = full_log(&d);
    assert!(log.contains("proxy is unhealthy"), "{log}");
    assert!(log.contains("proxy is healthy again"), "{log}");
    let m: serde_json::Value =
        serde_json::from_str(&backend_metrics(&tmp)).expect("metrics are JSON");
    let http = &m["http"];
    assert!(http["proxy_requests"].as_u64() > Some(0), "{m}");
    assert!(http["proxy_unhealthy"].as_u64() >= Some(1), "{m}");
    assert_eq!(http["proxy_healthy"], true, "{m}");
    assert_fixture(&fx, &d, "registry through nginx");
    let mut exposed = Exposed::new();
    exposed.daemon("proxy fallback", &d, &tmp.join("api.sock"));
    exposed.assert_none(&[PROXY_PASS]);
}

#[test]
fn dead_proxy_without_fallback_is_eio() {
    let t = tempfile::tempdir().expect("tempdir");
    let r = Registry::start(&t.path().join("reg"), RegistryOpts::default());
    let fx = fixture("mini-v6-zstd-sha256");
    r.push_dir(REPO, &fx.blob_dir);
    let ngx = Nginx::start(&t.path().join("nginx"));
    let cfg = config(&r, &ngx, false);
    ngx.stop();
    let d = mount_fixture(&fx, "registry", cfg, "dummycache", &t.path().join("m"));
    let path = d.mountpoint.join(pick_file(&fx, 4096, 0));
    let err = std::fs::read(&path).expect_err("read through a dead proxy without fallback");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    ngx.restart();
    // The proxy is back: the next read (after a ping) succeeds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(&path).is_err() {
        assert!(
            Instant::now() < deadline,
            "reads never recovered:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_fixture(&fx, &d, "registry through nginx, no fallback");
    let mut exposed = Exposed::new();
    exposed.daemon("proxy without fallback", &d, &t.path().join("m/api.sock"));
    exposed.assert_none(&[PROXY_PASS]);
}

#[test]
fn proxy_url_from_the_api_takes_effect_without_remount() {
    let t = tempfile::tempdir().expect("tempdir");
    let r = Registry::start(&t.path().join("reg"), RegistryOpts::default());
    let fx = fixture("mini-v6-none-blake3");
    r.push_dir(REPO, &fx.blob_dir);
    let ngx = Nginx::start(&t.path().join("nginx"));
    let cfg = json!({
        "scheme": "http",
        "host": r.host(),
        "repo": REPO,
        "timeout": 5,
        "connect_timeout": 2,
    });
    let tmp = t.path().join("m");
    let d = mount_fixture(&fx, "registry", cfg, "dummycache", &tmp);
    let sock = tmp.join("api.sock");
    let file = |k| d.mountpoint.join(pick_file(&fx, 4096, k));
    let put = |v: &str| {
        let body = json!({ "proxy_url": v }).to_string();
        call(&sock, "PUT", "/api/v1/config?id=/", Some(&body))
    };

    read(&file(0));
    assert_eq!(ngx.requests(), 0, "no proxy is configured yet");
    let bad = put("not a url");
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(!bad.body.contains("not a url"), "{}", bad.body);
    let url = format!("http://p2p:{PROXY_PASS}@127.0.0.1:{}", ngx.port);
    assert_eq!(put(&url).status, 204);
    // The same file each time, read past the page cache: dummycache keeps
    // nothing, so every read reaches the backend.
    let cold = || read_cold(&file(0)).expect("read through the backend");
    cold();
    let through = requests_after(&ngx, 0);
    assert!(
        through > 0,
        "the read after PUT proxy_url did not use the proxy:\n{}",
        full_log(&d)
    );
    let mut exposed = Exposed::new();
    exposed.daemon("proxy_url set", &d, &sock);
    assert_eq!(put("").status, 204);
    cold();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ngx.requests(), through, "requests went to a removed proxy");
    assert_fixture(&fx, &d, "registry after proxy_url changes");

    exposed.daemon("proxy_url removed", &d, &sock);
    exposed.assert_none(&[PROXY_PASS]);
}
