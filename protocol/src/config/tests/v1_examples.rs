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
    // The snapshotter writes `readahead: false` for every backend; it is a
    // valid key for every backend here.
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(c.backend.readahead(), None);
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

/// docs/nydusd.md "Common Fields In Config", verbatim: comments and a
/// trailing comma.
const README_COMMON: &str = r#"{
  "device": {
    "backend": {
      // localfs | oss | registry
      "type": "localfs",
      "config": {
        // Drop the read request once http request timeout, in seconds
        "timeout": 5,
        // Drop the read request once http connection timeout, in seconds
        "connect_timeout": 5,
        // Retry count when read request failed
        "retry_limit": 0,
      }
    },
    "cache": {
      // Blobcache: enable local fs cache
      // Dummycache: disable cache, access remote storage backend directly
      "type": "blobcache",
      // Enable cache compression
      "compressed": true,
      "config": {
        // Directory of cache files, only for blobcache
        "work_dir": "/cache"
      }
    }
  },
  // direct | cached
  "mode": "direct",
  // Validate inode tree digest and chunk digest on demand
  "digest_validate": false,
  // Enable file IO metric
  "iostats_files": true,
  // Enable support of fs extended attributes
  "enable_xattr": false,
  // Amplified user IO request batch size to read data from remote storage backend / local cache
  // in unit of Bytes, valid values: 0-268435456, default: 1048576
  "amplify_io": 1048576,
  "fs_prefetch": {
    // Enable blob prefetch
    "enable": false,
    // Prefetch thread count
    "threads_count": 10,
    // Maximal read size per prefetch request, e.g. 128kb
    "merging_size": 131072,
    // Limit prefetch bandwidth to 1MB/S, it aims at reducing congestion with normal user io
    "bandwidth_rate": 1048576
  }
}"#;

#[test]
fn readme_common_fields() {
    // The example puts network keys on a localfs backend, which has no
    // network: it fails upstream's localfs check only for lack of `dir`.
    let e = err(README_COMMON);
    assert!(
        e.contains("`device.backend.config`") && e.contains("`dir` or `blob_file`"),
        "{e}"
    );
    let with_dir = README_COMMON.replace(
        "\"retry_limit\": 0,",
        "\"retry_limit\": 0,\n        \"dir\": \"/blobs\",",
    );
    let p = ok(&with_dir);
    let c = p.config;
    assert!(c.cache.compressed);
    assert!(c.rafs.iostats_files);
    assert_eq!(c.rafs.prefetch.threads_count, 10);
    assert_eq!(c.rafs.prefetch.merging_size, 131072);
    assert_eq!(c.rafs.prefetch.bandwidth_rate, 1048576);
    assert!(c.rafs.prefetch.prefetch_all, "v1 default");
    assert!(!c.cache.prefetch.enable);
    // timeout, connect_timeout and retry_limit mean nothing to localfs.
    assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("unknown key `device.backend.config.timeout` (line 8, column 9)")
    );
}
