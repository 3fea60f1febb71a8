//! Upstream's documented v1 configs, verbatim.

use super::*;
use std::path::PathBuf;

/// docs/nydusd.md "Run Nydusd Daemon" (localfs + blobcache).
const README_LOCALFS: &str = r#"{
  "device": {
    "backend": {
      "type": "localfs",
      "config": {
        "dir": "/var/lib/nydus/blobs"
      }
    },
    "cache": {
      "type": "blobcache",
      "config": {
        "work_dir": "/var/lib/nydus/cache"
      }
    }
  },
  "mode": "direct",
  "digest_validate": false,
  "iostats_files": false,
  "enable_xattr": true
}
"#;

#[test]
fn readme_localfs() {
    let p = ok(README_LOCALFS);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let c = p.config;
    assert_eq!(p.format, ConfigFormat::V1Json);
    let BackendConfig::Localfs(l) = &c.backend else {
        panic!("not localfs")
    };
    assert_eq!(l.dir, Some(PathBuf::from("/var/lib/nydus/blobs")));
    assert_eq!(c.cache.kind, CacheKind::Blobcache);
    assert_eq!(
        c.cache.work_dir,
        Some(PathBuf::from("/var/lib/nydus/cache"))
    );
    assert_eq!(c.rafs.mode, RafsMode::Direct);
    assert!(c.rafs.enable_xattr);
    assert!(!c.rafs.digest_validate);
    assert_eq!(c.rafs.amplify_io, 1048576);
    assert!(!c.rafs.prefetch.enable);
}

/// nydusd-reference §3.9, a snapshotter-generated config.
#[test]
fn snapshotter_config() {
    let text = r#"{
  "device": {
    "id": "/42",
    "backend": {"type": "registry", "config": {
      "readahead": false, "host": "index.docker.io", "repo": "library/nginx",
      "auth": "dXNlcjpwYXNz", "scheme": "https",
      "proxy": {"fallback": false}, "timeout": 5, "connect_timeout": 5, "retry_limit": 2}},
    "cache": {"type": "blobcache", "config": {
      "work_dir": "/var/lib/snap/cache", "disable_indexed_map": false}}
  },
  "mode": "direct", "digest_validate": false, "enable_xattr": true,
  "amplify_io": 1048576,
  "fs_prefetch": {"enable": true, "prefetch_all": true, "threads_count": 8, "merging_size": 1048576}
}"#;
    let p = ok(text);
    let c = &p.config;
    assert_eq!(c.id.as_deref(), Some("/42"));
    let BackendConfig::Registry(r) = &c.backend else {
        panic!("not registry")
    };
    assert_eq!(r.host, "index.docker.io");
    assert_eq!(r.auth.as_ref().map(Secret::expose), Some("dXNlcjpwYXNz"));
    assert!(!r.http.proxy.fallback);
    assert_eq!(r.http.retry_limit, 2);
    assert!(c.rafs.prefetch.enable && c.rafs.prefetch.prefetch_all);
    assert!(c.cache.prefetch.enable);
    // `readahead` belongs to localfs; the snapshotter writes it for every backend.
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("device.backend.config.readahead"));
}

#[test]
fn wrong_type_names_key_line_column() {
    let e = err("{\"device\": {\"backend\": {\"type\": \"localfs\", \"config\": {\"dir\": \"/d\"}}},\n  \"mode\": \"direct\",\n  \"digest_validate\": 1}");
    assert!(e.contains("`digest_validate`"), "{e}");
    assert!(e.contains("line 3, column 22"), "{e}");
    assert!(e.contains("true or false"), "{e}");
    assert!(e.starts_with("config test.json: "), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn unknown_key_is_warned_with_position() {
    let p = ok("{\"device\": {\"backend\": {\"type\": \"localfs\", \"config\": {\"dir\": \"/d\"}},\n \"cache\": {\"foo\": 1}}, \"mode\": \"direct\"}");
    assert_eq!(
        p.warnings,
        vec![
            "config test.json: unknown key `device.cache.foo` (line 2, column 12), ignored"
                .to_string()
        ]
    );
}
