//! Every documented default (nydusd-reference §3.2–3.5, §3.7).

use super::*;
use std::path::PathBuf;

const MINIMAL_V1: &str = r#"{"device": {"backend": {"type": "registry", "config": {"host": "h", "repo": "r"}}}, "mode": "direct"}"#;

#[test]
fn v1_top_level_defaults() {
    let c = ok(MINIMAL_V1).config;
    assert_eq!(c.id, None);
    assert_eq!(c.rafs, RafsConfig::default());
    let r = &c.rafs;
    assert!(!r.digest_validate && !r.iostats_files && !r.enable_xattr);
    assert!(!r.access_pattern && !r.latest_read_files);
    assert_eq!(r.amplify_io, 1048576);
    assert_eq!(r.mode, RafsMode::Direct);
    assert_eq!(c.cache.kind, CacheKind::None);
    assert_eq!(c.cache.work_dir, None);
    assert!(!c.cache.compressed && !c.cache.validate);
    assert!(c.overlay.is_none() && c.external_backends.is_empty());
}

#[test]
fn network_defaults() {
    let c = ok(MINIMAL_V1).config;
    let BackendConfig::Registry(r) = &c.backend else {
        panic!()
    };
    assert_eq!(r.scheme, "https");
    assert_eq!(r.auth, None);
    assert_eq!(r.registry_token, None);
    assert_eq!(
        (r.blob_url_scheme.as_str(), r.blob_redirected_host.as_str()),
        ("", "")
    );
    let h = &r.http;
    assert_eq!((h.timeout, h.connect_timeout, h.retry_limit), (5, 5, 0));
    assert!(!h.skip_verify && h.ca_cert_files.is_empty() && h.mirrors.is_empty());
    let p = &h.proxy;
    assert!(p.url.is_empty() && p.ping_url.is_empty());
    assert!(p.fallback && !p.use_http);
    assert_eq!((p.check_interval, p.check_pause_elapsed), (5, 300));
    assert_eq!(p.dragonfly_scheduler_endpoint, "");
}

#[test]
fn proxy_object_defaults() {
    let text = MINIMAL_V1.replace(
        r#""repo": "r""#,
        r#""repo": "r", "proxy": {"url": "http://p:1"}"#,
    );
    let c = ok(&text).config;
    let p = &c.backend.http().unwrap().proxy;
    assert!(p.fallback);
    assert_eq!((p.check_interval, p.check_pause_elapsed), (5, 300));
}

#[test]
fn oss_s3_localfs_localdisk_defaults() {
    let oss = r#"{"device": {"backend": {"type": "oss", "config": {"endpoint": "e", "bucket_name": "b"}}}, "mode": "direct"}"#;
    let BackendConfig::Oss(o) = ok(oss).config.backend else {
        panic!()
    };
    assert_eq!((o.scheme.as_str(), o.object_prefix.as_str()), ("https", ""));
    assert!(o.access_key_id.is_empty() && o.access_key_secret.is_empty());
    let s3 = r#"{"device": {"backend": {"type": "s3", "config": {"endpoint": "", "region": "r", "bucket_name": "b"}}}, "mode": "direct"}"#;
    let BackendConfig::S3(s) = ok(s3).config.backend else {
        panic!()
    };
    assert_eq!((s.endpoint.as_str(), s.scheme.as_str()), ("", "https"));
    let lfs = r#"{"device": {"backend": {"type": "localfs", "config": {"dir": "/d"}}}, "mode": "direct"}"#;
    let BackendConfig::Localfs(l) = ok(lfs).config.backend else {
        panic!()
    };
    assert_eq!((l.blob_file.clone(), l.alt_dirs.len()), (None, 0));
    assert!(!l.readahead);
    assert_eq!(l.readahead_sec, 10);
}

#[test]
fn cache_defaults() {
    let text = r#"{"device": {"backend": {"type": "localfs", "config": {"dir": "/d"}},
        "cache": {"type": "blobcache", "config": {}}}, "mode": "direct"}"#;
    let c = ok(text).config.cache;
    assert_eq!(c.work_dir, Some(PathBuf::from(".")));
    assert!(!c.disable_indexed_map && !c.enable_encryption && !c.enable_convergent_encryption);
    assert!(c.encryption_key.is_empty());
    assert_eq!(c.prefetch, PrefetchConfig::default());
    for (name, kind) in [
        ("filecache", CacheKind::Blobcache),
        ("dummycache", CacheKind::Dummycache),
        ("", CacheKind::None),
        ("fscache", CacheKind::Fscache),
    ] {
        let t = text.replace("\"blobcache\"", &format!("\"{name}\""));
        assert_eq!(ok(&t).config.cache.kind, kind, "{name}");
    }
}

#[test]
fn v1_prefetch_defaults() {
    let text = MINIMAL_V1.replace(r#""mode""#, r#""fs_prefetch": {"enable": true}, "mode""#);
    let p = ok(&text).config.rafs.prefetch;
    assert!(p.enable);
    assert_eq!(
        (p.threads_count, p.merging_size, p.bandwidth_rate),
        (8, 1048576, 0)
    );
    assert!(p.prefetch_all, "v1 prefetch_all defaults to true");
    assert!(!p.stream_prefetch);
}

#[test]
fn v2_defaults() {
    let text = "version = 2\n[backend]\ntype = \"localfs\"\n[backend.localfs]\ndir = \"/d\"\n[rafs.prefetch]\nenable = true\n";
    let c = ok(text).config;
    assert_eq!(c.rafs.mode, RafsMode::Direct);
    assert_eq!(c.rafs.amplify_io, 1048576);
    let p = &c.rafs.prefetch;
    assert_eq!(
        (p.threads_count, p.merging_size, p.bandwidth_rate),
        (8, 1048576, 0)
    );
    assert!(!p.prefetch_all, "v2 prefetch_all defaults to false");
    assert_eq!(c.cache.kind, CacheKind::None);
}

#[test]
fn localfs_dir_flag() {
    let c = localfs_dir_config(std::path::Path::new("/srv/blobs"));
    let BackendConfig::Localfs(l) = &c.backend else {
        panic!()
    };
    assert_eq!(l.dir, Some(PathBuf::from("/srv/blobs")));
    assert_eq!(c.cache.kind, CacheKind::Blobcache);
    assert_eq!(c.cache.work_dir, Some(PathBuf::from("/srv/blobs")));
    assert!(!c.cache.compressed);
    assert_eq!(c.rafs.mode, RafsMode::Direct);
    assert!(!c.rafs.digest_validate);
    // And it survives the text form used for hand-over.
    let back = ok(&c.to_v2_json_exposing_secrets().to_string()).config;
    assert_eq!(back, c);
}

#[test]
fn attr_and_entry_timeouts() {
    let c = ok(MINIMAL_V1).config;
    assert_eq!((c.rafs.attr_timeout, c.rafs.entry_timeout), (None, None));
    let text = MINIMAL_V1.replace(
        r#""mode": "direct""#,
        r#""mode": "direct", "attr_timeout": 5, "entry_timeout": 0"#,
    );
    let parsed = ok(&text);
    assert_eq!(
        (
            parsed.config.rafs.attr_timeout,
            parsed.config.rafs.entry_timeout
        ),
        (Some(5), Some(0))
    );
    assert!(
        parsed.warnings.iter().all(|w| !w.contains("timeout")),
        "{:?}",
        parsed.warnings
    );
    let v2 = "version = 2\n[backend]\ntype = \"localfs\"\n[backend.localfs]\ndir = \"/d\"\n[rafs]\nattr_timeout = 7\n";
    assert_eq!(ok(v2).config.rafs.attr_timeout, Some(7));
    let bad = MINIMAL_V1.replace(
        r#""mode": "direct""#,
        r#""mode": "direct", "attr_timeout": "long""#,
    );
    let err = parse_daemon_config(&bad, "cfg.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("attr_timeout"), "{err}");
}
