//! `nydusctl image push` against a real registry: running it with the
//! password on stdin or in the environment, reading back what the registry
//! stored, and the registry backend config that mounts the pushed image.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::secrets::b64;
use crate::servers::Registry;

/// How the password reaches `nydusctl image push`.
pub enum Password<'a> {
    None,
    Stdin(&'a str),
    Env(&'a str),
}

/// Runs `nydusctl image push` of `fx` to `reference` with `extra` flags.
pub fn push(
    fx: &crate::Fixture,
    reference: &str,
    user: Option<&str>,
    pw: Password<'_>,
    extra: &[&str],
) -> Output {
    push_dir(&fx.bootstrap, &fx.blob_dir, reference, user, pw, extra)
}

pub fn push_dir(
    bootstrap: &Path,
    blob_dir: &Path,
    reference: &str,
    user: Option<&str>,
    pw: Password<'_>,
    extra: &[&str],
) -> Output {
    let mut cmd = Command::new(crate::nydusctl_bin());
    cmd.args(["image", "push", "--bootstrap"])
        .arg(bootstrap)
        .arg("--blob-dir")
        .arg(blob_dir)
        .args(extra)
        .env_remove("NYDUS_REGISTRY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = user {
        cmd.args(["--user", u]);
    }
    match pw {
        Password::None => {}
        Password::Stdin(_) => {
            cmd.arg("--password-stdin");
        }
        Password::Env(p) => {
            cmd.env("NYDUS_REGISTRY_PASSWORD", p);
        }
    }
    cmd.arg(reference);
    let mut child = cmd.spawn().expect("run nydusctl image push");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Password::Stdin(p) = pw {
        writeln!(stdin, "{p}").expect("write the password");
    }
    drop(stdin);
    wait_output(child, 300)
}

/// The child's output once it exits; kills it and panics after `secs`.
fn wait_output(mut child: Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "nydusctl image push did not finish within {secs} s:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

/// The digest a successful push printed (its only stdout line), or a
/// panic with its output.
pub fn pushed_digest(out: &Output) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "push failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let digest = stdout.trim();
    assert!(
        digest.len() == 71 && digest.starts_with("sha256:") && !digest.contains('\n'),
        "push printed {stdout:?}, not one digest"
    );
    digest.to_string()
}

/// `GET /v2/<repo>/manifests/<tag>` as the registry stored it: (the
/// Docker-Content-Digest header, the body). `auth` is `user:password` for
/// Basic registries.
pub fn fetch_manifest(
    r: &Registry,
    repo: &str,
    tag: &str,
    auth: Option<&str>,
) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let headers = dir.path().join("headers");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "-D"])
        .arg(&headers)
        .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"]);
    if let Some(ca) = &r.cacert {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some(a) = auth {
        cmd.args(["-u", a]);
    }
    cmd.arg(format!("{}/v2/{repo}/manifests/{tag}", r.url));
    let out = crate::servers::run_timeout(&mut cmd, 60);
    assert!(
        out.status.success(),
        "curl is needed to read the manifest back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read_to_string(&headers).expect("curl wrote headers");
    let digest = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = serde_json::from_slice(&out.stdout).expect("the manifest is JSON");
    (digest, body)
}

/// Requests of `method` the registry logged so far (its access log).
pub fn logged_requests(registry_dir: &Path, method: &str) -> usize {
    let log = std::fs::read_to_string(registry_dir.join("registry.log")).unwrap_or_default();
    let needle = format!("\"{method} /v2/");
    log.lines().filter(|l| l.contains(&needle)).count()
}

/// A registry backend config reading `repo` from `r` (with `auth` as
/// `user:password`, and the test CA when it is TLS).
pub fn backend_config(r: &Registry, repo: &str, auth: Option<&str>) -> serde_json::Value {
    let scheme = if r.url.starts_with("https") {
        "https"
    } else {
        "http"
    };
    let mut c = serde_json::json!({
        "scheme": scheme,
        "host": r.host(),
        "repo": repo,
        "timeout": 10,
        "connect_timeout": 2,
    });
    if let Some(a) = auth {
        c["auth"] = b64(a).into();
    }
    if let Some(ca) = &r.cacert {
        c["ca_cert_files"] = serde_json::json!([ca]);
    }
    c
}
