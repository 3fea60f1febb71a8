//! The OSS and S3 backends against `object-store-server`, which verifies
//! OSS V1 and SigV4 signatures: fixtures reproduce their manifests (OSS
//! virtual-hosted through a `.localhost` name, S3 path style), transient
//! 503s are retried away, a wrong secret is one clear error, and the
//! secret key never reaches the log or the metrics.

use nydus_e2e::secrets::Exposed;
use nydus_e2e::servers::{
    assert_fixture, backend_metrics, fixture, full_log, mount_fixture, pick_file, ObjectStore,
};
use serde_json::json;

const AK: &str = "e2e-access-key";
const SK: &str = "e2e-SECRET-key-not-in-logs";
const BUCKET: &str = "nydus-bkt";
const PREFIX: &str = "layers/";
const REGION: &str = "us-test-1";

fn oss_config(store: &ObjectStore, sk: &str) -> serde_json::Value {
    json!({
        "scheme": "http",
        // `<bucket>.localhost` resolves to 127.0.0.1 (RFC 6761), so the
        // virtual-hosted URL reaches the local server.
        "endpoint": format!("localhost:{}", store.port),
        "bucket_name": BUCKET,
        "object_prefix": PREFIX,
        "access_key_id": AK,
        "access_key_secret": sk,
        "timeout": 5,
        "connect_timeout": 2,
    })
}

fn s3_config(store: &ObjectStore, sk: &str) -> serde_json::Value {
    json!({
        "scheme": "http",
        "endpoint": format!("127.0.0.1:{}", store.port),
        "region": REGION,
        "bucket_name": BUCKET,
        "object_prefix": PREFIX,
        "access_key_id": AK,
        "access_key_secret": sk,
        "timeout": 5,
        "connect_timeout": 2,
    })
}

#[test]
fn oss_and_s3_mounts_reproduce_fixtures() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = ObjectStore::start(&t.path().join("store"), AK, SK, REGION);
    let fx = fixture("mini-v6-zstd-sha256");
    store.put_dir(BUCKET, PREFIX, &fx.blob_dir);
    let cases = [
        ("oss", oss_config(&store, SK), "blobcache"),
        ("s3", s3_config(&store, SK), "dummycache"),
    ];
    for (kind, cfg, cache) in cases {
        let tmp = t.path().join(kind);
        let d = mount_fixture(&fx, kind, cfg, cache, &tmp);
        assert_fixture(&fx, &d, &format!("{kind} + {cache}"));
        let metrics = backend_metrics(&tmp);
        assert!(
            metrics.contains(&format!("\"backend_type\":\"{kind}\"")),
            "{metrics}"
        );
        let mut exposed = Exposed::new();
        exposed.daemon(kind, &d, &tmp.join("api.sock"));
        exposed.assert_none(&[SK, AK]);
    }
}

#[test]
fn transient_errors_are_retried_and_wrong_secret_is_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = ObjectStore::start(&t.path().join("store"), AK, SK, REGION);
    let fx = fixture("layers3-v6-zstd-blake3");
    store.put_dir(BUCKET, PREFIX, &fx.blob_dir);

    // Two failing answers fit within the retries of one read.
    let tmp = t.path().join("s3");
    let d = mount_fixture(&fx, "s3", s3_config(&store, SK), "blobcache", &tmp);
    let hook = store.hook("/__faults?fail_next=2&status=503");
    assert!(
        hook.starts_with("HTTP/1.") && hook.contains(" 200"),
        "{hook}"
    );
    assert_fixture(&fx, &d, "s3 with two 503 answers");
    let mut exposed = Exposed::new();
    exposed.daemon("s3 503", &d, &tmp.join("api.sock"));
    drop(d);

    for (kind, cfg) in [
        ("oss", oss_config(&store, "wrong-secret")),
        ("s3", s3_config(&store, "wrong-secret")),
    ] {
        let tmp = t.path().join(format!("{kind}-wrong"));
        let d = mount_fixture(&fx, kind, cfg, "dummycache", &tmp);
        let file = d.mountpoint.join(pick_file(&fx, 4096, 0));
        let err = std::fs::read(&file).expect_err("read with a wrong secret");
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        let log = full_log(&d);
        assert!(
            log.contains(&format!("{kind} refused the credentials (HTTP 403)")),
            "no clear credentials error in the log:\n{log}"
        );
        exposed.daemon(&format!("{kind} wrong secret"), &d, &tmp.join("api.sock"));
    }
    exposed.assert_none(&[SK, AK, "wrong-secret"]);
}
