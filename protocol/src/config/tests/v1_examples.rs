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

/// docs/nydusd.md backend snippets. Their `...` lines stand for "the rest
/// of the file" and are replaced by it; placeholder values by real ones.
fn snippet(backend: &str) -> String {
    format!(
        "{{\n  \"device\": {{\n    \"backend\": {backend},\n    \"cache\": {{\"type\": \"blobcache\", \"config\": {{\"work_dir\": \"/c\"}}}}\n  }},\n  \"mode\": \"direct\"\n}}"
    )
}

#[test]
fn readme_localfs_readahead() {
    let p = ok(&snippet(
        r#"{
      "type": "localfs",
      "config": {
        // The directory included all blob files declared in bootstrap
        "dir": "/path/to/blobs/",
        // Record read access log, prefetch data on next time
        "readahead": true,
        // Duration of recording access log
        "readahead_sec": 10
      }
    }"#,
    ));
    let BackendConfig::Localfs(l) = &p.config.backend else {
        panic!()
    };
    assert!(l.readahead && l.readahead_sec == 10);
    assert!(
        p.warnings.iter().any(|w| w.contains("removed upstream")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn readme_localdisk() {
    let p = ok(&snippet(
        r#"{
      "type": "localdisk",
      "config": {
        // Mounted block device path or original localdisk image file path.
        "device_path": "/dev/loop1"
        //"device_path": "/home/user/ubuntu.img"
      }
    }"#,
    ));
    assert_eq!(
        p.config.backend,
        BackendConfig::Localdisk(LocaldiskConfig {
            device_path: "/dev/loop1".into(),
            disable_gpt: false
        })
    );
}

#[test]
fn readme_oss_and_s3() {
    let p = ok(&snippet(
        r#"{
      "type": "oss",
      "config": {
        "endpoint": "region.aliyuncs.com",
        "scheme": "https",
        "access_key_id": "",
        "access_key_secret": "",
        "bucket_name": "bucket",
        "object_prefix": "nydus/"
      }
    }"#,
    ));
    let BackendConfig::Oss(o) = &p.config.backend else {
        panic!()
    };
    assert_eq!(
        (o.endpoint.as_str(), o.object_prefix.as_str()),
        ("region.aliyuncs.com", "nydus/")
    );
    let p = ok(&snippet(
        r#"{
      "type": "s3",
      "config": {
        "endpoint": "s3.amazonaws.com",
        "scheme": "https",
        "access_key_id": "",
        "access_key_secret": "",
        "bucket_name": "bucket",
        "region": "us-east-1",
        "object_prefix": "nydus/"
      }
    }"#,
    ));
    assert!(matches!(&p.config.backend, BackendConfig::S3(s) if s.region == "us-east-1"));
}

#[test]
fn readme_registry_with_missing_comma() {
    // As published: no comma after `registry_token` (accepted, warned).
    let p = ok(&snippet(
        r#"{
      "type": "registry",
      "config": {
        // Registry url scheme, leave empty to automatically detect, otherwise specify to https or http.
        "scheme": "",
        // Registry hostname with format `$host:$port`
        "host": "my-registry:5000",
        // Skip SSL certificate validation for HTTPS scheme
        "skip_verify": false,
        // Use format `$namespace/$repo` (no image tag)
        "repo": "test/repo",
        // Username and password for auth
        // base64(username:password), optional
        "auth": "dXNlcjpwYXNzd29yZA==",
        // Bearer token for auth, optional
        "registry_token": "<bearer_token>"
        // Redirected blob download host, optional
        "blob_redirected_host": "<blob_redirected_host>"
      }
    }"#,
    ));
    let BackendConfig::Registry(r) = &p.config.backend else {
        panic!()
    };
    assert_eq!(r.scheme, "");
    assert_eq!(r.host, "my-registry:5000");
    assert_eq!(r.blob_redirected_host, "<blob_redirected_host>");
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("missing `,` between members (line 20, column 9), accepted")
            && p.warnings[0].contains("(line 20, column 9)"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn readme_nested_proxy() {
    let p = ok(&snippet(
        r#"{
      "type": "registry",
      "config": {
        "proxy": {
          // Access remote storage backend via P2P proxy, e.g. Dragonfly dfdaemon server URL
          "url": "http://p2p-proxy:65001",
          // Fallback to remote storage backend if P2P proxy ping failed
          "fallback": true,
          // Endpoint of P2P proxy health checking
          "ping_url": "http://p2p-proxy:40901/server/ping",
          // Interval of P2P proxy health checking, in seconds
          "check_interval": 5
        },
        "host": "index.docker.io", "repo": "library/ubuntu"
      }
    }"#,
    ));
    let proxy = &p.config.backend.http().unwrap().proxy;
    assert_eq!(proxy.url.expose(), "http://p2p-proxy:65001");
    assert_eq!(proxy.ping_url, "http://p2p-proxy:40901/server/ping");
    assert!(proxy.fallback);
    assert_eq!(proxy.check_interval, 5);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn legacy_flat_proxy_keys() {
    let p = ok(&snippet(
        r#"{"type": "registry", "config": {
        "host": "index.docker.io", "repo": "library/ubuntu",
        "proxy": "http://127.0.0.1:65001",
        "proxy_fallback": false,
        "proxy_ping_url": "http://127.0.0.1:40901/server/ping",
        "proxy_check_interval": 7
    }}"#,
    ));
    let proxy = &p.config.backend.http().unwrap().proxy;
    assert_eq!(proxy.url.expose(), "http://127.0.0.1:65001");
    assert!(!proxy.fallback);
    assert_eq!(proxy.ping_url, "http://127.0.0.1:40901/server/ping");
    assert_eq!(proxy.check_interval, 7);
    assert_eq!(p.warnings.len(), 4, "{:?}", p.warnings);
    assert!(p.warnings.iter().all(|w| w.contains("legacy flat proxy")));
}

#[test]
fn readme_mirrors_are_parsed_and_flagged() {
    let p = ok(&snippet(
        r#"{
      "type": "registry",
      "config": {
        "mirrors": [
          {
            // Mirror server URL (including scheme), e.g. Dragonfly dfdaemon server URL
            "host": "http://dragonfly1.io:65001",
            // Headers for mirror server
            "headers": {
              "X-Dragonfly-Registry": "https://index.docker.io"
            },
            "ping_url": "http://127.0.0.1:40901/server/ping",
            // Interval time (s) to check and recover unavailable mirror. Use 5 as default if left empty.
            "health_check_interval": 5,
            // Failure counts before disabling this mirror. Use 5 as default if left empty.
            "failure_limit": 5,
          },
          {
            "host": "http://dragonfly2.io:65001",
            "headers": {
              "X-Dragonfly-Registry": "https://index.docker.io"
            },
          }
        ],
        "host": "index.docker.io", "repo": "library/ubuntu"
      }
    }"#,
    ));
    let http = p.config.backend.http().unwrap();
    assert_eq!(http.mirrors.len(), 2);
    assert_eq!(http.mirrors[1].failure_limit, 5);
    assert_eq!(http.mirrors[1].health_check_pause_elapsed, 300);
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("mirrors were removed")));
}

#[test]
fn readme_http_proxy_examples() {
    let remote = r#"// for remote usage
{
  "device": {
      "backend": {
      "type": "http-proxy",
      "config": {
        "addr": "http://127.0.0.1:9977",
        "path": "/namespace/<repo>/blobs"
      }
    }
  }
}"#;
    let p = ok(remote);
    assert!(
        matches!(&p.config.backend, BackendConfig::HttpProxy(h) if h.addr == "http://127.0.0.1:9977")
    );
    assert_eq!(p.config.cache.kind, CacheKind::None);
    assert!(
        p.warnings.iter().any(|w| w.contains("`mode`")),
        "{:?}",
        p.warnings
    );
    let local = r#"// for local usage
{
  "device": {
      "backend": {
      "type": "http-proxy",
      "config": {
        "addr": "/path/to/unix.sock",
      }
    }
  }
}"#;
    let p = ok(local);
    assert!(
        matches!(&p.config.backend, BackendConfig::HttpProxy(h) if h.addr == "/path/to/unix.sock")
    );
}
