//! v2 in TOML and JSON, format detection, and v1 → v2 equivalence.

use super::*;
use std::path::PathBuf;

/// nydusd-reference §3.7, verbatim.
const REFERENCE_TOML: &str = r#"version = 2                      # required, must be 2
id = "my_id"                     # optional
[backend]
type = "registry"                # localfs|oss|s3|registry|http-proxy|localdisk
[backend.registry]               # table named after the type ("http-proxy" for that one)
host = "my.registry.com"
repo = "library/ubuntu"
# ... keys as in 3.3
[backend.registry.proxy]
url = "http://127.0.0.1:4001"
[[external_backends]]            # optional; {type, patch = {..}, config = {..}} string maps
[cache]
type = "filecache"               # blobcache|filecache|fscache|dummycache|""
compressed = false
validate = false
[cache.filecache]                # or [cache.fscache]
work_dir = "/var/lib/nydus/cache"
[cache.prefetch]                 # blob-level worker pool
enable = true                    # required if the table is present
threads = 8                      # default 8
batch_size = 1048576             # default 1 MiB
bandwidth_limit = 0
[rafs]
mode = "direct"                  # default "direct"
batch_size = 1048576             # = v1 amplify_io
validate = false
enable_xattr = false
iostats_files = false
access_pattern = false
latest_read_files = false
[rafs.prefetch]                  # file-level prefetch
enable = false
threads = 8
batch_size = 1048576
bandwidth_limit = 0
prefetch_all = false             # NB default differs from v1
[overlay]                        # optional: writable overlay (with --writable)
upper_dir = "/path/upper"
work_dir = "/path/work"
"#;

#[test]
fn reference_toml() {
    let p = ok(REFERENCE_TOML);
    assert_eq!(p.format, ConfigFormat::V2Toml);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let c = &p.config;
    assert_eq!(c.id.as_deref(), Some("my_id"));
    let BackendConfig::Registry(r) = &c.backend else {
        panic!()
    };
    assert_eq!(
        (r.host.as_str(), r.repo.as_str()),
        ("my.registry.com", "library/ubuntu")
    );
    assert_eq!(r.http.proxy.url.expose(), "http://127.0.0.1:4001");
    assert_eq!(c.external_backends.len(), 1);
    assert_eq!(c.cache.kind, CacheKind::Blobcache);
    assert_eq!(
        c.cache.work_dir,
        Some(PathBuf::from("/var/lib/nydus/cache"))
    );
    assert!(c.cache.prefetch.enable);
    assert_eq!(c.rafs.mode, RafsMode::Direct);
    assert!(!c.rafs.prefetch.enable && !c.rafs.prefetch.prefetch_all);
    let o = c.overlay.as_ref().unwrap();
    assert_eq!(o.upper_dir, PathBuf::from("/path/upper"));
}

#[test]
fn toml_errors_and_warnings_have_positions() {
    let text = "version = 2\n[backend]\ntype = \"localfs\"\n[backend.localfs]\ndir = \"/b\"\ntimeout = \"5\"\n";
    let p = ok(text);
    assert_eq!(
        p.warnings,
        vec![
            "config test.json: unknown key `backend.localfs.timeout` (line 6, column 1), ignored"
                .to_string()
        ]
    );
    let e = err("version = 2\n[backend]\ntype = \"localfs\"\n[backend.localfs]\ndir = 5\n");
    assert!(
        e.contains("`backend.localfs.dir` (line 5, column 7)") && e.contains("a string"),
        "{e}"
    );
    let e = err("version = 2\n[backend\n");
    assert!(e.contains("invalid TOML") && e.contains("line 2"), "{e}");
}

#[test]
fn v2_json() {
    let text = r#"{
      "version": 2,
      "backend": {"type": "localfs", "localfs": {"dir": "/b", "alt_dirs": ["/x", "/y"]}},
      "cache": {"type": "fscache", "fscache": {"work_dir": "/fs"}},
      "rafs": {"mode": "cached", "batch_size": 131072, "validate": true,
               "prefetch": {"enable": true, "threads": 2, "batch_size": 4096, "bandwidth_limit": 5}}
    }"#;
    let p = ok(text);
    assert_eq!(p.format, ConfigFormat::V2Json);
    let c = p.config;
    let BackendConfig::Localfs(l) = &c.backend else {
        panic!()
    };
    assert_eq!(l.alt_dirs, vec![PathBuf::from("/x"), PathBuf::from("/y")]);
    assert_eq!(c.cache.kind, CacheKind::Fscache);
    assert_eq!(c.cache.work_dir, Some(PathBuf::from("/fs")));
    assert_eq!(c.rafs.mode, RafsMode::Cached);
    assert_eq!(c.rafs.amplify_io, 131072);
    assert!(c.rafs.digest_validate);
    let pf = &c.rafs.prefetch;
    assert_eq!(
        (pf.threads_count, pf.merging_size, pf.bandwidth_rate),
        (2, 4096, 5)
    );
    assert!(!pf.prefetch_all, "v2 default");
}

#[test]
fn v2_version_must_be_2() {
    for bad in [
        r#"{"version": 1, "backend": {}}"#,
        r#"{"version": "2"}"#,
        "version = 3\n",
    ] {
        let e = err(bad);
        assert!(e.contains("`version`") && e.contains("must be 2"), "{e}");
    }
    let e = err("[backend]\ntype = \"localfs\"\n");
    assert!(e.contains("`version`"), "{e}");
}

#[test]
fn v2_backend_table_checks() {
    let e = err("version = 2\n[backend]\ntype = \"registry\"\n");
    assert!(
        e.contains("`backend.registry.host`") && e.contains("required"),
        "{e}"
    );
    let p = ok(
        "version = 2\n[backend]\ntype = \"localfs\"\n[backend.localfs]\ndir = \"/b\"\n[backend.oss]\nendpoint = \"x\"\n",
    );
    assert!(p.warnings[0].contains("`backend.oss`") && p.warnings[0].contains("not used"));
    let e = err("version = 2\n[backend]\ntype = \"localfs\"\n[backend.localfs]\ndir = \"/b\"\n[cache]\ntype = \"filecache\"\n");
    assert!(e.contains("`cache.filecache`"), "{e}");
    let e = err("version = 2\n[backend]\ntype = \"localfs\"\n[backend.localfs]\ndir = \"/b\"\n[cache.prefetch]\nthreads = 2\n");
    assert!(e.contains("`cache.prefetch.enable`"), "{e}");
}

#[test]
fn detection_prefers_the_json_error_for_json_text() {
    let e = err("{\"device\": ");
    assert!(e.contains("unexpected end of text"), "{e}");
    let e = err("   \n  ");
    assert!(e.contains("empty"), "{e}");
    let e = err("[1, 2]");
    assert!(e.contains("must be an object"), "{e}");
}

/// Upstream converts v1 to v2 internally; our v2 rendering of a v1 file
/// must read back as the same config.
#[test]
fn v1_renders_to_equivalent_v2() {
    let v1 = r#"{
      "device": {"id": "/7",
        "backend": {"type": "registry", "config": {"host": "h:5000", "repo": "r/x",
          "auth": "dXNlcjpwYXNz", "registry_token": "tok", "scheme": "http",
          "proxy": {"url": "http://u:p@proxy:4001", "fallback": false, "use_http": true},
          "ca_cert_files": ["/ca.pem"], "timeout": 9, "skip_verify": true}},
        "cache": {"type": "blobcache", "compressed": true, "validate": true,
          "config": {"work_dir": "/c", "enable_encryption": true,
            "encryption_key": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}}},
      "mode": "cached", "digest_validate": true, "iostats_files": true, "enable_xattr": true,
      "access_pattern": true, "latest_read_files": true, "amplify_io": 2097152,
      "fs_prefetch": {"enable": true, "threads_count": 3, "merging_size": 65536,
        "bandwidth_rate": 100, "prefetch_all": false, "stream_prefetch": true}
    }"#;
    let c1 = ok(v1).config;
    let v2_text = c1.to_v2_json_exposing_secrets().to_string();
    let back = ok(&v2_text);
    assert_eq!(back.format, ConfigFormat::V2Json);
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    assert_eq!(back.config, c1);
    // Mapping spot checks (reference §3.6).
    let v = c1.to_redacted_json();
    assert_eq!(v["rafs"]["batch_size"], 2097152);
    assert_eq!(v["rafs"]["validate"], true);
    assert_eq!(v["rafs"]["prefetch"]["threads"], 3);
    assert_eq!(v["cache"]["prefetch"]["enable"], true);
    assert_eq!(v["cache"]["filecache"]["work_dir"], "/c");
    assert_eq!(v["backend"]["type"], "registry");
    assert_eq!(v["id"], "/7");
}

#[test]
fn every_backend_round_trips() {
    let backends = [
        r#"{"type": "localfs", "config": {"blob_file": "/one.blob"}}"#,
        r#"{"type": "oss", "config": {"endpoint": "e", "bucket_name": "b", "access_key_id": "AK", "access_key_secret": "SK"}}"#,
        r#"{"type": "s3", "config": {"endpoint": "", "region": "r", "bucket_name": "b", "access_key_secret": "SK"}}"#,
        r#"{"type": "http-proxy", "config": {"addr": "https://p", "path": "/ns/blobs"}}"#,
        r#"{"type": "localdisk", "config": {"device_path": "/dev/sdb", "disable_gpt": true}}"#,
    ];
    for b in backends {
        let text = format!(r#"{{"device": {{"backend": {b}}}, "mode": "direct"}}"#);
        let c = ok(&text).config;
        let back = ok(&c.to_v2_json_exposing_secrets().to_string()).config;
        assert_eq!(back, c, "{b}");
    }
}

/// The v2 example of man/nydusd-config.5.
#[test]
fn man_page_toml_example() {
    let text = "version = 2\n[backend]\ntype = \"registry\"\n[backend.registry]\nhost = \"index.docker.io\"\nrepo = \"library/ubuntu\"\n[backend.registry.proxy]\nurl = \"http://127.0.0.1:4001\"\n[cache]\ntype = \"filecache\"\n[cache.filecache]\nwork_dir = \"/var/lib/nydus/cache\"\n[rafs]\nmode = \"direct\"\n";
    let p = ok(text);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.config.cache.kind, CacheKind::Blobcache);
}
