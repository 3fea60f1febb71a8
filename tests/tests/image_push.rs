//! `nydusctl image push` against a real registry (`registry-server`):
//! pushed images are what the registry serves (the printed digest, the
//! nydus layer layout) and mount with `backend.type = registry` to their
//! expected manifests, over plain HTTP, Basic + TLS and Bearer token + TLS;
//! a second push uploads nothing; wrong or missing credentials, a blob
//! that does not hash to its id and an unreachable registry each give one
//! clear line and a non-zero exit, never the password.

use std::path::Path;

use nydus_e2e::push::{
    backend_config, fetch_manifest, logged_requests, push, push_dir, pushed_digest, Password,
};
use nydus_e2e::servers::{assert_fixture, fixture, mount_fixture, Registry, RegistryOpts};

const REPO: &str = "e2e/pushed";
const USER: &str = "pushuser";
const PASS: &str = "Pu5h-secret-NOT-in-output";

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// `host:port/e2e/pushed:TAG` with the registry's scheme.
fn reference(r: &Registry, tag: &str) -> String {
    format!("{}/{REPO}:{tag}", r.url)
}

/// The registry stored exactly the printed manifest, in the nydus layout:
/// one nydus blob layer per blob of the fixture, the bootstrap last.
fn assert_layout(r: &Registry, tag: &str, digest: &str, auth: Option<&str>, blobs: &Path) {
    let (stored, m) = fetch_manifest(r, REPO, tag, auth);
    assert_eq!(stored, digest, "registry's digest vs the printed one");
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let layers = m["layers"].as_array().expect("layers");
    let n = std::fs::read_dir(blobs).expect("blob dir").count();
    assert_eq!(layers.len(), n + 1, "{m}");
    for l in &layers[..n] {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.nydus.blob.v1"
        );
        assert_eq!(
            l["annotations"]["containerd.io/snapshot/nydus-blob"],
            "true"
        );
        let hex = l["digest"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("sha256:");
        assert!(
            blobs.join(hex).is_file(),
            "layer {hex} is not a blob of the image"
        );
    }
    let boot = &layers[n];
    assert_eq!(
        boot["annotations"]["containerd.io/snapshot/nydus-bootstrap"],
        "true"
    );
    assert_eq!(
        boot["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}

fn one_error_line(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "push succeeded:\n{stdout}\n{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(PASS), "the password was printed:\n{text}");
    }
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one error line:\n{stderr}");
    lines[0].to_string()
}

#[test]
fn push_plain_then_mount_and_push_again_uploads_nothing() {
    let t = tmpdir();
    let reg_dir = t.path().join("reg");
    let r = Registry::start(&reg_dir, RegistryOpts::default());
    let fx = fixture("layers3-v6-zstd-blake3");
    // No scheme in the reference: --plain-http picks http.
    let plain = reference(&r, "v1").replacen("http://", "", 1);
    let digest = pushed_digest(&push(&fx, &plain, None, Password::None, &["--plain-http"]));
    assert_layout(&r, "v1", &digest, None, &fx.blob_dir);
    let d = mount_fixture(
        &fx,
        "registry",
        backend_config(&r, REPO, None),
        "blobcache",
        &t.path().join("m"),
    );
    assert_fixture(&fx, &d, "registry after nydusctl image push");

    let posts = logged_requests(&reg_dir, "POST");
    let again = push(&fx, &reference(&r, "v1"), None, Password::None, &[]);
    assert_eq!(
        pushed_digest(&again),
        digest,
        "a second push changed the manifest"
    );
    assert_eq!(
        logged_requests(&reg_dir, "POST"),
        posts,
        "the second push uploaded blobs"
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.lines().all(|l| l.starts_with("exists sha256:")),
        "second push:\n{stderr}"
    );
}

#[test]
fn push_basic_auth_over_tls_with_env_password() {
    let t = tmpdir();
    let creds = format!("{USER}:{PASS}");
    let opts = RegistryOpts {
        basic: Some(creds.clone()),
        tls: true,
        ..Default::default()
    };
    let r = Registry::start(&t.path().join("reg"), opts);
    let ca = r
        .cacert
        .clone()
        .expect("registry-server --tls printed no CA");
    let fx = fixture("mini-v5-lz4-blake3");
    let ca_arg = ca.to_string_lossy().into_owned();
    let out = push(
        &fx,
        &reference(&r, "v5"),
        Some(USER),
        Password::Env(PASS),
        &["--cacert", &ca_arg],
    );
    let digest = pushed_digest(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(PASS));
    assert_layout(&r, "v5", &digest, Some(&creds), &fx.blob_dir);
    let cfg = backend_config(&r, REPO, Some(&creds));
    let d = mount_fixture(&fx, "registry", cfg, "blobcache", &t.path().join("m"));
    assert_fixture(&fx, &d, "registry (Basic + TLS) after nydusctl image push");
}

#[test]
fn push_bearer_token_over_tls_with_stdin_password() {
    let t = tmpdir();
    let opts = RegistryOpts {
        tls: true,
        token: Some(format!("{USER}:{PASS}")),
        ..Default::default()
    };
    let r = Registry::start(&t.path().join("reg"), opts);
    let fx = fixture("mini-v6-zstd-sha256");
    let out = push(
        &fx,
        &reference(&r, "tok"),
        Some(USER),
        Password::Stdin(PASS),
        &["--insecure-skip-verify"],
    );
    pushed_digest(&out);
    let tokens = std::fs::read_to_string(t.path().join("reg/token.log")).unwrap_or_default();
    assert!(
        tokens.contains("scope=repository%3Ae2e%2Fpushed%3Apull%2Cpush")
            || tokens.contains("pull,push"),
        "no pull,push token was asked for:\n{tokens}"
    );
    let cfg = backend_config(&r, REPO, Some(&format!("{USER}:{PASS}")));
    let d = mount_fixture(&fx, "registry", cfg, "dummycache", &t.path().join("m"));
    assert_fixture(&fx, &d, "registry (token + TLS) after nydusctl image push");
}

#[test]
fn wrong_or_missing_credentials_are_one_clear_error() {
    let t = tmpdir();
    let fx = fixture("mini-v6-none-blake3");
    let basic = Registry::start(
        &t.path().join("basic"),
        RegistryOpts {
            basic: Some(format!("{USER}:{PASS}")),
            ..Default::default()
        },
    );
    let token = Registry::start(
        &t.path().join("token"),
        RegistryOpts {
            token: Some(format!("{USER}:{PASS}")),
            ..Default::default()
        },
    );
    let wrong = format!("{PASS}-wrong");
    for r in [&basic, &token] {
        let out = push(
            &fx,
            &reference(r, "x"),
            Some(USER),
            Password::Stdin(&wrong),
            &[],
        );
        let line = one_error_line(&out);
        assert_eq!(
            line,
            format!("nydusctl: registry refused credentials for {REPO}")
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains(&wrong));
        let out = push(&fx, &reference(r, "x"), None, Password::None, &[]);
        let line = one_error_line(&out);
        assert!(
            line.contains("registry requires credentials for e2e/pushed"),
            "{line}"
        );
    }
    // --user without any password source is refused before any request.
    let line = one_error_line(&push(
        &fx,
        &reference(&basic, "x"),
        Some(USER),
        Password::None,
        &[],
    ));
    assert!(
        line.contains("--password-stdin") && line.contains("NYDUS_REGISTRY_PASSWORD"),
        "{line}"
    );
}

#[test]
fn blob_not_matching_its_id_and_unreachable_registry_are_refused() {
    let t = tmpdir();
    let fx = fixture("mini-v6-zstd-sha256");
    let blobs = t.path().join("blobs");
    std::fs::create_dir(&blobs).expect("mkdir");
    for e in std::fs::read_dir(&fx.blob_dir).expect("blob dir").flatten() {
        let mut data = std::fs::read(e.path()).expect("read blob");
        data[100] ^= 0xff;
        std::fs::write(blobs.join(e.file_name()), data).expect("write blob");
    }
    let out = push_dir(
        &fx.bootstrap,
        &blobs,
        "127.0.0.1:1/e2e/x",
        None,
        Password::None,
        &[],
    );
    let line = one_error_line(&out);
    assert!(
        line.contains(&blobs.display().to_string()) && line.contains("not the blob id"),
        "{line}"
    );

    // Nothing listens on port 1.
    let out = push(&fx, "http://127.0.0.1:1/e2e/x", None, Password::None, &[]);
    let line = one_error_line(&out);
    assert!(
        line.starts_with("nydusctl: cannot reach registry http://127.0.0.1:1"),
        "{line}"
    );
}
