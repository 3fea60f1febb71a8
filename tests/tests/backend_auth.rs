//! Registry credentials over time, against a real registry: a Bearer token
//! that expires while reads go on is renewed with no failed read (and not
//! before every request), and new `registry_auth` through
//! `PUT /api/v1/config` repairs a mount with wrong credentials without a
//! remount. No password, auth string or token reaches the log, the
//! metrics or an API reply.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nydus_e2e::api::call;
use nydus_e2e::secrets::{b64, credential_secrets, Exposed};
use nydus_e2e::servers::{
    assert_fixture, backend_metrics, fixture, full_log, http_get, mount_fixture, read_cold,
    Registry, RegistryOpts,
};
use serde_json::json;

const REPO: &str = "e2e/auth";
const USER: &str = "authuser";
const PASS: &str = "Auth-Pa55-never-logged";
const FIXTURE: &str = "mini-v6-zstd-sha256";
/// docker-registry (distribution 2.8) accepts a token up to 60 s past its
/// `exp`; tokens that must die after `LIFE` s carry exp = now + LIFE - 60.
const LEEWAY: i64 = 60;
const LIFE: u64 = 3;

fn config(r: &Registry, user_pass: &str) -> serde_json::Value {
    json!({
        "scheme": "http",
        "host": r.host(),
        "repo": REPO,
        "auth": b64(user_pass),
        "timeout": 5,
        "connect_timeout": 2,
    })
}

/// Regular files of the fixture (relative paths), from its manifest.
fn files(fx: &nydus_e2e::Fixture) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(&fx.expected_manifest).expect("read manifest");
    nydus_e2e::source::parse(&text)
        .into_iter()
        .filter(|e| e.is_file() && e.size() > 0)
        .map(|e| e.rel)
        .collect()
}

fn token_requests(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.contains("GET /token?")).count()
}

#[test]
fn expiring_bearer_token_is_renewed_without_a_failed_read() {
    let t = tempfile::tempdir().expect("tempdir");
    let opts = RegistryOpts {
        token: Some(format!("{USER}:{PASS}")),
        ..Default::default()
    };
    let r = Registry::start(&t.path().join("reg"), opts);
    let fx = fixture(FIXTURE);
    r.push_dir(REPO, &fx.blob_dir);
    let ts = r.short_tokens(LIFE as i64 - LEEWAY, LIFE);

    // The registry really refuses a token LIFE s old, so reads past that
    // need a renewed one.
    let basic = format!("Basic {}", b64(&format!("{USER}:{PASS}")));
    let q = format!("/token?service=registry.local&scope=repository:{REPO}:pull");
    let (status, body) = http_get(ts.port, &q, &[("Authorization", &basic)]);
    assert_eq!(status, 200, "token server: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("token JSON");
    let token = v["token"].as_str().expect("a token").to_string();
    assert_eq!(v["expires_in"], LIFE, "{body}");
    let blob = std::fs::read_dir(&fx.blob_dir)
        .expect("blob dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.len() == 64)
        .expect("a blob");
    let path = format!("/v2/{REPO}/blobs/sha256:{blob}");
    let bearer = format!("Bearer {token}");
    assert_eq!(
        http_get(r.port, &path, &[("Authorization", &bearer)]).0,
        200
    );
    std::thread::sleep(Duration::from_secs(LIFE + 1));
    assert_eq!(
        http_get(r.port, &path, &[("Authorization", &bearer)]).0,
        401,
        "the registry accepts an expired token: this test would prove nothing"
    );

    let tmp = t.path().join("m");
    let cfg = config(&r, &format!("{USER}:{PASS}"));
    let d = mount_fixture(&fx, "registry", cfg, "dummycache", &tmp);
    assert_fixture(&fx, &d, "registry with 3 s tokens");
    let names = files(&fx);
    let want: BTreeMap<&PathBuf, Vec<u8>> = names
        .iter()
        .map(|n| (n, std::fs::read(d.mountpoint.join(n)).expect("read")))
        .collect();
    let tokens_before = token_requests(&ts.log);
    let reads_before = backend_reads(&tmp);
    let began = Instant::now();
    let run = Duration::from_secs(LIFE * 3);
    // Two readers at once (in opposite orders, so they rarely share a
    // read), so renewals race with requests in flight.
    let reader = |reverse: bool| {
        let mut order: Vec<&PathBuf> = names.iter().collect();
        if reverse {
            order.reverse();
        }
        let mut reads = 0u64;
        while began.elapsed() < run {
            for n in order.iter().copied() {
                let got = read_cold(&d.mountpoint.join(n)).unwrap_or_else(|e| {
                    panic!("read {} after {:?}: {e}", n.display(), began.elapsed())
                });
                assert!(got == want[n], "{} read wrong bytes", n.display());
                reads += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        reads
    };
    let reads: u64 = std::thread::scope(|s| {
        let a = s.spawn(|| reader(false));
        let b = s.spawn(|| reader(true));
        [a, b]
            .into_iter()
            .map(|h| h.join().expect("a reader failed"))
            .sum()
    });
    let backend = backend_reads(&tmp) - reads_before;
    assert!(
        backend >= reads / 4,
        "only {backend} backend reads for {reads} file reads: the page cache answered"
    );
    let tokens = token_requests(&ts.log) - tokens_before;
    // One renewal per 3/4 of a lifetime, give or take a few through the
    // 401 path (a request in flight as its token expires).
    let most = (run.as_secs_f64() / (LIFE as f64 * 0.75)) as usize + 5;
    assert!(
        (2..=most).contains(&tokens),
        "{tokens} token requests for {reads} reads over {run:?} with {LIFE} s tokens; \
         expected 2..={most}"
    );
    eprintln!("{reads} reads ({backend} backend reads) over {run:?}: {tokens} token requests");
    let log = full_log(&d);
    assert!(!log.contains("refused the credentials"), "{log}");

    let mut exposed = Exposed::new();
    exposed.daemon("bearer", &d, &tmp.join("api.sock"));
    let mut secrets = credential_secrets(&format!("{USER}:{PASS}"));
    // Every token of this server starts with the same JWT header, so it
    // finds any token, not just this one.
    secrets.push(token.split('.').next().expect("JWT").to_string());
    secrets.push(token);
    exposed.assert_none(&secrets);
}

fn backend_reads(tmp: &Path) -> u64 {
    let m: serde_json::Value = serde_json::from_str(&backend_metrics(tmp)).expect("metrics JSON");
    m["read_count"].as_u64().expect("read_count")
}

fn error_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains(" ERROR ")).count()
}

#[test]
fn registry_auth_from_the_api_fixes_wrong_credentials_without_remount() {
    let t = tempfile::tempdir().expect("tempdir");
    let right = format!("{USER}:{PASS}");
    let wrong = format!("{USER}:{PASS}-old");
    let opts = RegistryOpts {
        basic: Some(right.clone()),
        ..Default::default()
    };
    let r = Registry::start(&t.path().join("reg"), opts);
    let fx = fixture(FIXTURE);
    r.push_dir(REPO, &fx.blob_dir);
    let tmp = t.path().join("m");
    let d = mount_fixture(&fx, "registry", config(&r, &wrong), "dummycache", &tmp);
    let sock = tmp.join("api.sock");
    let names = files(&fx);

    let all_fail = |files: &[PathBuf]| {
        for n in files {
            let err = read_cold(&d.mountpoint.join(n)).expect_err("read with wrong credentials");
            assert_eq!(
                err.raw_os_error(),
                Some(libc::EIO),
                "{}: {err}",
                n.display()
            );
        }
    };
    all_fail(&names[..1]);
    let log = full_log(&d);
    let errors = error_lines(&log);
    // More reads, of the same file and of every other one (other chunks).
    all_fail(&names);
    all_fail(&names);
    let log = full_log(&d);
    let told = log.matches("fail with EIO until that is fixed").count();
    assert_eq!(
        told, 1,
        "the credentials error is not said exactly once:\n{log}"
    );
    assert_eq!(
        error_lines(&log),
        errors,
        "{} more reads logged more errors:\n{log}",
        2 * names.len()
    );

    // Refused values: not base64 of user:pass, an unknown mountpoint.
    let bad = call(
        &sock,
        "PUT",
        "/api/v1/config?id=/",
        Some(r#"{"registry_auth": "no base64 !"}"#),
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(
        !bad.body.contains("no base64 !"),
        "the reply repeats the value: {}",
        bad.body
    );
    let body = json!({"registry_auth": b64(&right)}).to_string();
    let missing = call(&sock, "PUT", "/api/v1/config?id=/nope", Some(&body));
    assert_eq!(missing.status, 404, "{missing:?}");

    let ok = call(&sock, "PUT", "/api/v1/config?id=/", Some(&body));
    assert_eq!(ok.status, 204, "{ok:?}");
    assert_fixture(&fx, &d, "registry after new registry_auth");
    for n in &names {
        read_cold(&d.mountpoint.join(n))
            .unwrap_or_else(|e| panic!("read {} with the new auth: {e}", n.display()));
    }
    let stored = call(&sock, "GET", "/api/v1/config?id=/", None);
    assert_eq!(stored.json()["registry_auth"], "<redacted>", "{stored:?}");
    let log = full_log(&d);
    assert!(log.contains("new registry_auth from the API"), "{log}");

    let mut exposed = Exposed::new();
    exposed.daemon("api auth", &d, &sock);
    let mut secrets = credential_secrets(&right);
    secrets.extend(credential_secrets(&wrong));
    exposed.assert_none(&secrets);
}
