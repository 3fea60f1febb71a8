//! Issue 4's matrix: for each network backend (registry over plain HTTP,
//! OSS, S3, and the registry through the nginx P2P proxy) and for both
//! `dummycache` and `blobcache`, every upstream-made fixture and one image
//! built by `nydusctl image create` from a `mktree.py` tree, mounted from
//! that backend, reproduce their manifests. One server per backend serves
//! every image; one test per backend, so backends run in parallel.
//! Secrets in the backend configs never reach the daemon's log or its
//! API replies.

use std::path::{Path, PathBuf};
use std::process::Command;

use nydus_e2e::secrets::Exposed;
use nydus_e2e::servers::{
    assert_fixture, backend_metrics, mount_fixture, mount_image, Nginx, ObjectStore, Registry,
    RegistryOpts,
};
use nydus_e2e::{fixtures, nydusctl_bin, source};
use serde_json::json;

const REPO: &str = "e2e/matrix";
const AK: &str = "matrix-access-key";
const SK: &str = "matrix-SECRET-key-never-shown";
const BUCKET: &str = "matrix";
const PREFIX: &str = "imgs/";
const REGION: &str = "us-test-1";
/// In the proxy URL (nginx ignores it): secret like any credential.
const PROXY_PASS: &str = "Matrix-Proxy-Pa55-never-shown";
const CACHES: [&str; 2] = ["dummycache", "blobcache"];
/// The fixtures (README: 5 upstream-made images); checked so a missing
/// one fails instead of shrinking the matrix.
const FIXTURES: usize = 5;

/// An image built by `nydusctl image create` and its source's manifest.
struct Built {
    boot: PathBuf,
    blobs: PathBuf,
    want: String,
}

/// Builds the mktree `small` tree into a RAFS v`fs` image under `dir`;
/// each backend uses a different format so the matrix covers both.
fn build_image(dir: &Path, fs: u8, compressor: &str, digester: &str) -> Built {
    let began = std::time::Instant::now();
    let tree = dir.join("src");
    source::make_tree("small", &tree);
    let want = source::manifest(&tree, &["--ignore", "rootattr"]);
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).expect("mkdir blobs");
    let boot = dir.join("image.boot");
    let out = Command::new(nydusctl_bin())
        .args(["image", "create", "--bootstrap"])
        .arg(&boot)
        .arg("--blob-dir")
        .arg(&blobs)
        .args(["--fs-version", &fs.to_string()])
        .args(["--compressor", compressor, "--digester", digester])
        .arg(&tree)
        .output()
        .expect("run nydusctl image create");
    assert!(
        out.status.success(),
        "nydusctl image create failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("mktree + image create: {:?}", began.elapsed());
    Built { boot, blobs, want }
}

/// One backend of the matrix: how the daemon reaches it and what it must
/// never show.
struct Backend<'a> {
    kind: &'a str,
    config: serde_json::Value,
    secrets: &'a [&'a str],
}

/// Mounts every fixture and `built` from `b` with each cache and checks
/// them; collects every failure before panicking, so one run shows the
/// whole row of the matrix. All mounts of a backend run side by side: the
/// time goes to waiting on the server (object-store-server takes ~30 ms
/// per request), not to CPU.
fn check_backend(b: &Backend<'_>, built: &Built, tmp: &Path) {
    let all = fixtures();
    assert_eq!(all.len(), FIXTURES, "fixtures under shared/fixtures/rafs");
    let began = std::time::Instant::now();
    let rows: Vec<(Vec<String>, Exposed)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for cache in CACHES {
            for fx in &all {
                handles.push(s.spawn(move || check_fixture(b, fx, cache, tmp)));
            }
            handles.push(s.spawn(move || check_built(b, built, cache, tmp)));
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|e| (vec![panic_text(e)], Exposed::new()))
            })
            .collect()
    });
    eprintln!("{}: {} mounts in {:?}", b.kind, rows.len(), began.elapsed());
    let failures: Vec<String> = rows.iter().flat_map(|r| r.0.clone()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} mounts over {} failed:\n{}",
        failures.len(),
        rows.len(),
        b.kind,
        failures.join("\n\n")
    );
    for (_, exposed) in &rows {
        exposed.assert_none(b.secrets);
    }
}

/// One fixture over `b` + `cache`: the failures and what the daemon exposed.
fn check_fixture(
    b: &Backend<'_>,
    fx: &nydus_e2e::Fixture,
    cache: &str,
    tmp: &Path,
) -> (Vec<String>, Exposed) {
    let what = format!("{} + {cache}", b.kind);
    let m = tmp.join(format!("{}-{cache}", fx.name));
    let d = mount_fixture(fx, b.kind, b.config.clone(), cache, &m);
    let mut failures = Vec::new();
    // assert_fixture panics with the diffs and the log; catch it so the
    // daemon's exposure is still collected.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_fixture(fx, &d, &what)
    }));
    if let Err(e) = r {
        failures.push(panic_text(e));
    }
    let metrics = backend_metrics(&m);
    if !metrics.contains(&format!("\"backend_type\":\"{}\"", b.kind)) {
        failures.push(format!("{} over {what}: metrics {metrics}", fx.name));
    }
    let mut exposed = Exposed::new();
    exposed.daemon(&format!("{} over {what}", fx.name), &d, &m.join("api.sock"));
    (failures, exposed)
}

/// The built image over `b` + `cache`, compared with its source tree.
fn check_built(b: &Backend<'_>, built: &Built, cache: &str, tmp: &Path) -> (Vec<String>, Exposed) {
    let what = format!("built image over {} + {cache}", b.kind);
    let m = tmp.join(format!("built-{cache}"));
    let d = mount_image(&built.boot, b.kind, b.config.clone(), cache, &m, json!({}));
    let diff = source::diff_mount(&built.want, &d.mountpoint, d.started);
    let mut failures = Vec::new();
    if !diff.is_empty() {
        failures.push(format!(
            "{what}: {} differences, first: {:#?}\nlog:\n{}",
            diff.len(),
            &diff[..diff.len().min(8)],
            d.log_text()
        ));
    }
    let mut exposed = Exposed::new();
    exposed.daemon(&what, &d, &m.join("api.sock"));
    (failures, exposed)
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

fn registry_config(r: &Registry) -> serde_json::Value {
    json!({
        "scheme": "http",
        "host": r.host(),
        "repo": REPO,
        "timeout": 5,
        "connect_timeout": 2,
    })
}

/// Pushes every fixture's blobs and the built image's to `r`.
fn push_all(r: &Registry, built: &Built) {
    for fx in fixtures() {
        r.push_dir(REPO, &fx.blob_dir);
    }
    r.push_dir(REPO, &built.blobs);
}

fn put_all(store: &ObjectStore, built: &Built) {
    for fx in fixtures() {
        store.put_dir(BUCKET, PREFIX, &fx.blob_dir);
    }
    store.put_dir(BUCKET, PREFIX, &built.blobs);
}

fn object_config(store: &ObjectStore, kind: &str) -> serde_json::Value {
    // OSS is virtual-hosted: `<bucket>.localhost` resolves to 127.0.0.1.
    let host = if kind == "oss" {
        "localhost"
    } else {
        "127.0.0.1"
    };
    json!({
        "scheme": "http",
        "endpoint": format!("{host}:{}", store.port),
        "region": REGION,
        "bucket_name": BUCKET,
        "object_prefix": PREFIX,
        "access_key_id": AK,
        "access_key_secret": SK,
        "timeout": 5,
        "connect_timeout": 2,
    })
}

fn object_store_matrix(kind: &str, fs: u8, compressor: &str, digester: &str) {
    let t = tempfile::tempdir().expect("tempdir");
    let built = build_image(&t.path().join("img"), fs, compressor, digester);
    let store = ObjectStore::start(&t.path().join("store"), AK, SK, REGION);
    put_all(&store, &built);
    let mut cfg = object_config(&store, kind);
    if kind == "oss" {
        // OSS has no region key; an unknown key would be rejected or ignored.
        cfg.as_object_mut().expect("object").remove("region");
    }
    let b = Backend {
        kind,
        config: cfg,
        secrets: &[SK, AK],
    };
    check_backend(&b, &built, &t.path().join("m"));
}

#[test]
fn registry_plain_http_every_image_both_caches() {
    let t = tempfile::tempdir().expect("tempdir");
    let built = build_image(&t.path().join("img"), 6, "zstd", "sha256");
    let r = Registry::start(&t.path().join("reg"), RegistryOpts::default());
    push_all(&r, &built);
    let b = Backend {
        kind: "registry",
        config: registry_config(&r),
        secrets: &[],
    };
    check_backend(&b, &built, &t.path().join("m"));
}

#[test]
fn oss_every_image_both_caches() {
    object_store_matrix("oss", 5, "lz4_block", "blake3");
}

#[test]
fn s3_every_image_both_caches() {
    object_store_matrix("s3", 6, "none", "blake3");
}

#[test]
fn registry_through_nginx_proxy_every_image_both_caches() {
    let t = tempfile::tempdir().expect("tempdir");
    let built = build_image(&t.path().join("img"), 5, "zstd", "sha256");
    let r = Registry::start(&t.path().join("reg"), RegistryOpts::default());
    push_all(&r, &built);
    let ngx = Nginx::start(&t.path().join("nginx"));
    let mut cfg = registry_config(&r);
    // Without fallback a read that bypassed the proxy could not succeed
    // silently: every blob read goes through nginx or fails.
    cfg["proxy"] = json!({
        "url": format!("http://p2p:{PROXY_PASS}@127.0.0.1:{}", ngx.port),
        "ping_url": format!("http://127.0.0.1:{}/server/ping", ngx.port),
        "check_interval": 5,
        "fallback": false,
    });
    let b = Backend {
        kind: "registry",
        config: cfg,
        secrets: &[PROXY_PASS],
    };
    check_backend(&b, &built, &t.path().join("m"));
    // Without fallback nothing bypasses nginx; still, every mount must have
    // read through it (nginx logs each request, cache hits too, after
    // answering it, so allow it a moment).
    let mounts = (FIXTURES + 1) * CACHES.len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ngx.requests() < mounts && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        ngx.requests() >= mounts,
        "only {} requests went through nginx for {mounts} mounts",
        ngx.requests()
    );
}
