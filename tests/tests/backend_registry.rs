//! The registry backend against a real registry (`registry-server`):
//! fixtures mounted with `backend.type = registry` (no auth, Basic + TLS,
//! Bearer token + TLS with skip_verify) reproduce their manifests with
//! blobcache and dummycache; an outage gives EIO and the next read after a
//! restart gets the right bytes; wrong credentials give one clear error;
//! passwords never reach the log or the metrics.

use std::path::Path;

use nydus_e2e::secrets::{b64, credential_secrets, Exposed};
use nydus_e2e::servers::{
    assert_fixture, backend_metrics, fixture, full_log, http_get, mount_fixture, pick_file,
    Registry, RegistryOpts,
};
use serde_json::json;

const REPO: &str = "e2e/fixture";
const USER: &str = "nydususer";
const PASS: &str = "Pa55-word-NOT-in-logs";

fn registry_config(
    r: &Registry,
    auth: Option<&str>,
    extra: serde_json::Value,
) -> serde_json::Value {
    let scheme = if r.url.starts_with("https") {
        "https"
    } else {
        "http"
    };
    let mut c = json!({
        "scheme": scheme,
        "host": r.host(),
        "repo": REPO,
        "timeout": 5,
        "connect_timeout": 2,
    });
    if let Some(a) = auth {
        c["auth"] = json!(b64(a));
    }
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    c
}

/// The password, its base64 `auth`, and (with `--token`) the header of
/// the JWTs the token server issues, which every token starts with.
fn secrets(r: &Registry) -> Vec<String> {
    let mut out = credential_secrets(&format!("{USER}:{PASS}"));
    if let Some(url) = &r.token_url {
        let port: u16 = url
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches("/token")
            .parse()
            .expect("token port");
        let basic = format!("Basic {}", b64(&format!("{USER}:{PASS}")));
        let q = format!("/token?service=registry.local&scope=repository:{REPO}:pull");
        let (status, body) = http_get(port, &q, &[("Authorization", &basic)]);
        assert_eq!(status, 200, "token server: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("token JSON");
        let token = v["token"].as_str().expect("a token");
        out.push(token.split('.').next().expect("JWT").to_string());
    }
    out
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn mount_and_check(fx: &str, r: &Registry, cfg: serde_json::Value, cache: &str, tmp: &Path) {
    let fx = fixture(fx);
    let d = mount_fixture(&fx, "registry", cfg, cache, tmp);
    assert_fixture(&fx, &d, &format!("registry {} + {cache}", r.url));
    let metrics = backend_metrics(tmp);
    assert!(
        metrics.contains("\"backend_type\":\"registry\""),
        "{metrics}"
    );
    let mut exposed = Exposed::new();
    exposed.daemon(&format!("registry + {cache}"), &d, &tmp.join("api.sock"));
    exposed.assert_none(&secrets(r));
}

#[test]
fn registry_plain_blobcache_and_dummycache() {
    let t = tmpdir();
    let r = Registry::start(&t.path().join("reg"), RegistryOpts::default());
    for name in ["mini-v6-zstd-sha256", "layers3-v6-zstd-blake3"] {
        r.push_dir(REPO, &fixture(name).blob_dir);
        for cache in ["blobcache", "dummycache"] {
            let m = t.path().join(format!("{name}-{cache}"));
            mount_and_check(name, &r, registry_config(&r, None, json!({})), cache, &m);
        }
    }
}

#[test]
fn registry_basic_auth_over_tls() {
    let t = tmpdir();
    let opts = RegistryOpts {
        basic: Some(format!("{USER}:{PASS}")),
        tls: true,
        ..Default::default()
    };
    let r = Registry::start(&t.path().join("reg"), opts);
    let ca = r
        .cacert
        .clone()
        .expect("registry-server --tls printed no CA");
    let fx = "mini-v5-lz4-blake3";
    r.push_dir(REPO, &fixture(fx).blob_dir);
    let extra = json!({"ca_cert_files": [ca]});
    let cfg = registry_config(&r, Some(&format!("{USER}:{PASS}")), extra);
    mount_and_check(fx, &r, cfg, "blobcache", &t.path().join("m"));
}

#[test]
fn registry_bearer_token_over_tls_skip_verify() {
    let t = tmpdir();
    let opts = RegistryOpts {
        tls: true,
        token: Some(format!("{USER}:{PASS}")),
        ..Default::default()
    };
    let r = Registry::start(&t.path().join("reg"), opts);
    let fx = "mini-v6-none-blake3";
    r.push_dir(REPO, &fixture(fx).blob_dir);
    let cfg = registry_config(
        &r,
        Some(&format!("{USER}:{PASS}")),
        json!({"skip_verify": true}),
    );
    mount_and_check(fx, &r, cfg, "dummycache", &t.path().join("m"));
    // The daemon got its token from the token server (with the password).
    let tokens = std::fs::read_to_string(t.path().join("reg/token.log")).unwrap_or_default();
    assert!(
        tokens.contains("GET /token?") && tokens.contains(" 200 "),
        "no token was issued:\n{tokens}"
    );
}

#[test]
fn registry_wrong_password_is_one_clear_error() {
    let t = tmpdir();
    let opts = RegistryOpts {
        basic: Some(format!("{USER}:{PASS}")),
        ..Default::default()
    };
    let r = Registry::start(&t.path().join("reg"), opts);
    let fx = fixture("mini-v6-zstd-sha256");
    r.push_dir(REPO, &fx.blob_dir);
    let wrong = format!("{USER}:{PASS}-wrong");
    let cfg = registry_config(&r, Some(&wrong), json!({}));
    let tmp = t.path().join("m");
    let d = mount_fixture(&fx, "registry", cfg, "dummycache", &tmp);
    let file = d.mountpoint.join(pick_file(&fx, 4096, 0));
    let err = std::fs::read(&file).expect_err("read with wrong credentials");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let log = full_log(&d);
    assert!(
        log.contains("registry refused the credentials"),
        "no clear credentials error in the log:\n{log}"
    );
    let mut exposed = Exposed::new();
    exposed.daemon("wrong password", &d, &tmp.join("api.sock"));
    let mut all = secrets(&r);
    all.extend(credential_secrets(&wrong));
    exposed.assert_none(&all);
}

#[test]
fn registry_outage_gives_eio_then_recovers_without_remount() {
    let t = tmpdir();
    let mut r = Registry::start(&t.path().join("reg"), RegistryOpts::default());
    let fx = fixture("mini-v6-zstd-sha256");
    r.push_dir(REPO, &fx.blob_dir);
    let tmp = t.path().join("m");
    let cfg = registry_config(&r, None, json!({}));
    let d = mount_fixture(&fx, "registry", cfg, "dummycache", &tmp);
    r.stop();
    let file = d.mountpoint.join(pick_file(&fx, 4096, 1));
    let began = std::time::Instant::now();
    let err = std::fs::read(&file).expect_err("read while the registry is down");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        began.elapsed() < std::time::Duration::from_secs(30),
        "EIO took {:?}",
        began.elapsed()
    );
    r.restart();
    assert_fixture(&fx, &d, "registry after a restart");
    let mut exposed = Exposed::new();
    exposed.daemon("outage", &d, &tmp.join("api.sock"));
    exposed.assert_none(&secrets(&r));
}
