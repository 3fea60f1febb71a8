//! Mounting a fixture over a network backend and comparing it with its
//! expected manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::source::{parse, Entry};

/// Differences between a fixture's `expected.manifest` and a mount's
/// manifest, except the documented one (fixtures README): an mtime stored
/// as 0, and the root's, shows the daemon's start time.
pub fn fixture_diffs(expected: &str, actual: &str, started: i64, ended: i64) -> Vec<String> {
    let index = |text: &str| -> BTreeMap<String, Entry> {
        parse(text)
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    };
    let (exp, act) = (index(expected), index(actual));
    let mut out = Vec::new();
    for (name, e) in &exp {
        let Some(a) = act.get(name) else {
            out.push(format!("{name}: missing"));
            continue;
        };
        for (k, want) in &e.fields {
            let got = a.field(k);
            if got == want {
                continue;
            }
            let start_time = got
                .parse::<i64>()
                .is_ok_and(|t| (started - 2..=ended + 2).contains(&t));
            if !(k == "mtime" && (want == "0" || name == ".") && start_time) {
                out.push(format!("{name}: {k} expected {want} got {got}"));
            }
        }
    }
    out.extend(
        act.keys()
            .filter(|n| !exp.contains_key(*n))
            .map(|n| format!("{n}: extra")),
    );
    out
}

/// Mounts `fx` with a v1 config of backend `kind`/`backend` and `cache`
/// (`blobcache` or `dummycache`), with an API socket at `tmp/api.sock`.
pub fn mount_fixture(
    fx: &crate::Fixture,
    kind: &str,
    backend: serde_json::Value,
    cache: &str,
    tmp: &Path,
) -> crate::mount::Nydusd {
    mount_image(
        &fx.bootstrap,
        kind,
        backend,
        cache,
        tmp,
        serde_json::json!({}),
    )
}

/// `mount_fixture` for any bootstrap, with `extra` top-level v1 keys
/// (`amplify_io`, say) added to the config.
pub fn mount_image(
    bootstrap: &Path,
    kind: &str,
    backend: serde_json::Value,
    cache: &str,
    tmp: &Path,
    extra: serde_json::Value,
) -> crate::mount::Nydusd {
    std::fs::create_dir_all(tmp).expect("create test dir");
    let mnt = tmp.join("mnt");
    let config = tmp.join("config.json");
    let mut text = serde_json::json!({
        "device": {
            "backend": {"type": kind, "config": backend},
            "cache": {"type": cache, "config": {"work_dir": tmp.join("cache")}},
        },
        "mode": "direct",
        "digest_validate": false,
        "enable_xattr": true,
    });
    if let (Some(o), Some(e)) = (text.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    std::fs::write(&config, text.to_string()).expect("write config");
    let (log, sock) = (tmp.join("nydusd.log"), tmp.join("api.sock"));
    let args: Vec<&std::ffi::OsStr> = vec![
        "--config".as_ref(),
        config.as_os_str(),
        "--mountpoint".as_ref(),
        mnt.as_os_str(),
        "--bootstrap".as_ref(),
        bootstrap.as_os_str(),
        "--apisock".as_ref(),
        sock.as_os_str(),
        "--log-level".as_ref(),
        "debug".as_ref(),
    ];
    crate::mount::Nydusd::start(&mnt, &log, &args)
}

/// `manifest.py` of the mount equals the fixture's expected manifest up to
/// the documented mtimes; panics with the differences and the daemon log.
pub fn assert_fixture(fx: &crate::Fixture, d: &crate::mount::Nydusd, what: &str) {
    let expected = std::fs::read_to_string(&fx.expected_manifest).expect("read expected manifest");
    let actual = crate::source::manifest(&d.mountpoint, &[]);
    let diffs = fixture_diffs(&expected, &actual, d.started, crate::mount::now_secs());
    assert!(
        diffs.is_empty(),
        "{} over {what}: {} unexpected differences:\n{}\nnydusd log:\n{}",
        fx.name,
        diffs.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        d.log_text()
    );
}

/// The fixture named `name`.
pub fn fixture(name: &str) -> crate::Fixture {
    crate::fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name} missing"))
}

/// The whole daemon log (not just the tail), for secret checks.
pub fn full_log(d: &crate::mount::Nydusd) -> String {
    String::from_utf8_lossy(&std::fs::read(&d.log).unwrap_or_default()).into_owned()
}

/// `GET /api/v1/metrics/backend` of the daemon mounted from `tmp`.
pub fn backend_metrics(tmp: &Path) -> String {
    crate::api::call(
        &tmp.join("api.sock"),
        "GET",
        "/api/v1/metrics/backend",
        None,
    )
    .body
}

/// The first regular file of the fixture's manifest at least `min` bytes
/// long (the `skip`-th such), relative to the mount.
pub fn pick_file(fx: &crate::Fixture, min: u64, skip: usize) -> PathBuf {
    let text = std::fs::read_to_string(&fx.expected_manifest).expect("read expected manifest");
    parse(&text)
        .into_iter()
        .filter(|e| e.is_file() && e.size() >= min)
        .nth(skip)
        .map(|e| e.rel)
        .unwrap_or_else(|| panic!("{}: no file of {min}+ bytes", fx.name))
}

/// Reads `path` past the page cache: the kernel's pages of it are dropped
/// first, so the read goes to the daemon (and, with dummycache, the backend).
pub fn read_cold(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    // SAFETY: fadvise on an fd we own; it only drops clean cached pages.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut out)?;
    Ok(out)
}
