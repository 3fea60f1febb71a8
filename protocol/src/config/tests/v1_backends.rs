//! docs/nydusd.md backend snippets and the legacy proxy layout.

use super::*;

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
    let back = ok(&p.config.to_v2_json_exposing_secrets().to_string()).config;
    assert_eq!(back.backend, p.config.backend);
    // Honoured (for every backend), so no warning.
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.config.backend.readahead(), Some(10));
}

#[test]
fn readahead_for_network_backends_and_zero_window() {
    let p = ok(&snippet(
        r#"{"type": "registry", "config": {"host": "h", "repo": "r",
            "readahead": true, "readahead_sec": 3}}"#,
    ));
    assert_eq!(p.config.backend.readahead(), Some(3));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // A successor worker gets it too.
    let back = ok(&p.config.to_v2_json_exposing_secrets().to_string()).config;
    assert_eq!(back.backend.readahead(), Some(3));
    let p = ok(&snippet(
        r#"{"type": "s3", "config": {"endpoint": "", "region": "r", "bucket_name": "b",
            "readahead": false}}"#,
    ));
    assert_eq!(p.config.backend.readahead(), None);
    let p = ok(&snippet(
        r#"{"type": "localfs", "config": {"dir": "/d", "readahead": true, "readahead_sec": 0}}"#,
    ));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("readahead_sec") && w.contains("is 0")),
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
