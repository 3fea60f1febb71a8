//! The config in v2 JSON form: redacted for API replies, or in full for
//! handing a config to another process.

use serde_json::{json, Map, Value};

use super::secret::{Secret, REDACTED};
use super::types::*;

/// Whether secrets are written out or replaced by `<redacted>`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Redact,
    Expose,
}

impl DaemonConfig {
    /// v2 JSON as `GET /api/v1/daemon` shows it: every credential (registry
    /// auth and token, OSS/S3 keys, proxy userinfo, encryption key) is
    /// `"<redacted>"`.
    pub fn to_redacted_json(&self) -> Value {
        render(self, Secrets::Redact)
    }

    /// v2 JSON with secrets in clear text, for process hand-over only. It
    /// parses back to an equal config. Never log or reply with it.
    pub fn to_v2_json_exposing_secrets(&self) -> Value {
        render(self, Secrets::Expose)
    }
}

fn render(c: &DaemonConfig, s: Secrets) -> Value {
    let mut backend = Map::new();
    backend.insert("type".into(), json!(c.backend.type_name()));
    backend.insert(
        c.backend.type_name().into(),
        backend_settings(&c.backend, s),
    );
    let externals: Vec<Value> = c
        .external_backends
        .iter()
        .map(|e| {
            json!({
                "type": e.kind,
                "patch": Map::from_iter(e.patch.iter().map(|(k, v)| (k.clone(), json!(v)))),
                "config": Map::from_iter(e.config.iter().map(|(k, v)| (k.clone(), secret(v, s)))),
            })
        })
        .collect();
    json!({
        "version": 2,
        "id": c.id.clone().unwrap_or_default(),
        "backend": backend,
        "external_backends": externals,
        "cache": cache(&c.cache, s),
        "rafs": rafs(&c.rafs),
        "overlay": c.overlay.as_ref().map(|o| json!({
            "upper_dir": o.upper_dir, "work_dir": o.work_dir,
        })),
    })
}

fn secret(v: &Secret, s: Secrets) -> Value {
    match s {
        Secrets::Expose => json!(v.expose()),
        Secrets::Redact if v.is_empty() => json!(""),
        Secrets::Redact => json!(REDACTED),
    }
}

/// A URL with any `user:pass@` replaced, so the host stays visible.
fn url(v: &Secret, s: Secrets) -> Value {
    let text = v.expose();
    if s == Secrets::Expose {
        return json!(text);
    }
    let after_scheme = text.find("://").map_or(0, |i| i + 3);
    let host_end = text[after_scheme..]
        .find('/')
        .map_or(text.len(), |i| after_scheme + i);
    match text[after_scheme..host_end].rfind('@') {
        Some(at) => json!(format!(
            "{}{REDACTED}{}",
            &text[..after_scheme],
            &text[after_scheme + at..]
        )),
        None => json!(text),
    }
}

fn backend_settings(b: &BackendConfig, s: Secrets) -> Value {
    let mut v = match b {
        BackendConfig::Localfs(l) => {
            let mut v = json!({
                "dir": l.dir.clone().unwrap_or_default(),
                "blob_file": l.blob_file.clone().unwrap_or_default(),
                "alt_dirs": l.alt_dirs,
            });
            if let Value::Object(map) = &mut v {
                add_readahead(map, l.readahead, l.readahead_sec);
            }
            return v;
        }
        BackendConfig::Localdisk(l) => {
            return json!({"device_path": l.device_path, "disable_gpt": l.disable_gpt})
        }
        BackendConfig::Registry(r) => json!({
            "scheme": r.scheme, "host": r.host, "repo": r.repo,
            "auth": r.auth.as_ref().map(|a| secret(a, s)),
            "registry_token": r.registry_token.as_ref().map(|t| secret(t, s)),
            "blob_url_scheme": r.blob_url_scheme,
            "blob_redirected_host": r.blob_redirected_host,
        }),
        BackendConfig::Oss(o) => json!({
            "endpoint": o.endpoint, "bucket_name": o.bucket_name, "scheme": o.scheme,
            "object_prefix": o.object_prefix,
            "access_key_id": secret(&o.access_key_id, s),
            "access_key_secret": secret(&o.access_key_secret, s),
        }),
        BackendConfig::S3(o) => json!({
            "endpoint": o.endpoint, "region": o.region, "bucket_name": o.bucket_name,
            "scheme": o.scheme, "object_prefix": o.object_prefix,
            "access_key_id": secret(&o.access_key_id, s),
            "access_key_secret": secret(&o.access_key_secret, s),
        }),
        BackendConfig::HttpProxy(h) => json!({"addr": h.addr, "path": h.path}),
    };
    if let (Some(http), Value::Object(map)) = (b.http(), &mut v) {
        add_http(map, http, s);
    }
    v
}

/// Only when set, so configs without readahead render as before; a
/// successor worker must keep recording and prefetching the same way.
fn add_readahead(map: &mut Map<String, Value>, on: bool, secs: u32) {
    if on || secs != HttpConfig::default().readahead_sec {
        map.insert("readahead".into(), json!(on));
        map.insert("readahead_sec".into(), json!(secs));
    }
}

fn add_http(map: &mut Map<String, Value>, h: &HttpConfig, s: Secrets) {
    add_readahead(map, h.readahead, h.readahead_sec);
    let p = &h.proxy;
    map.insert("timeout".into(), json!(h.timeout));
    map.insert("connect_timeout".into(), json!(h.connect_timeout));
    map.insert("retry_limit".into(), json!(h.retry_limit));
    map.insert("skip_verify".into(), json!(h.skip_verify));
    map.insert("ca_cert_files".into(), json!(h.ca_cert_files));
    map.insert(
        "proxy".into(),
        json!({
            "url": url(&p.url, s), "ping_url": p.ping_url, "fallback": p.fallback,
            "check_interval": p.check_interval, "use_http": p.use_http,
            "check_pause_elapsed": p.check_pause_elapsed,
            "dragonfly_scheduler_endpoint": p.dragonfly_scheduler_endpoint,
        }),
    );
    if !h.mirrors.is_empty() {
        let mirrors: Vec<Value> = h
            .mirrors
            .iter()
            .map(|m| {
                let headers = m.headers.iter().map(|(k, v)| (k.clone(), secret(v, s)));
                json!({
                    "host": m.host, "ping_url": m.ping_url,
                    "headers": Map::from_iter(headers),
                    "health_check_interval": m.health_check_interval,
                    "failure_limit": m.failure_limit,
                    "health_check_pause_elapsed": m.health_check_pause_elapsed,
                })
            })
            .collect();
        map.insert("mirrors".into(), json!(mirrors));
    }
}

fn cache(c: &CacheConfig, s: Secrets) -> Value {
    let mut v = json!({
        "type": c.kind.as_str(),
        "compressed": c.compressed,
        "validate": c.validate,
        "prefetch": prefetch(&c.prefetch, false),
    });
    if let (Some(dir), Value::Object(map)) = (&c.work_dir, &mut v) {
        let files = json!({
            "work_dir": dir,
            "disable_indexed_map": c.disable_indexed_map,
            "enable_encryption": c.enable_encryption,
            "enable_convergent_encryption": c.enable_convergent_encryption,
            "encryption_key": secret(&c.encryption_key, s),
        });
        let table = if c.kind == CacheKind::Fscache {
            "fscache"
        } else {
            "filecache"
        };
        map.insert(table.into(), files);
    }
    v
}

fn prefetch(p: &PrefetchConfig, file_level: bool) -> Value {
    let mut v = json!({
        "enable": p.enable,
        "threads": p.threads_count,
        "batch_size": p.merging_size,
        "bandwidth_limit": p.bandwidth_rate,
    });
    if let (true, Value::Object(map)) = (file_level, &mut v) {
        map.insert("prefetch_all".into(), json!(p.prefetch_all));
        map.insert("stream_prefetch".into(), json!(p.stream_prefetch));
    }
    v
}

fn rafs(r: &RafsConfig) -> Value {
    let mut v = json!({
        "mode": r.mode.as_str(),
        "batch_size": r.amplify_io,
        "validate": r.digest_validate,
        "enable_xattr": r.enable_xattr,
        "iostats_files": r.iostats_files,
        "access_pattern": r.access_pattern,
        "latest_read_files": r.latest_read_files,
        "prefetch": prefetch(&r.prefetch, true),
    });
    // Absent means "the daemon's choice"; null would not parse back.
    if let Value::Object(map) = &mut v {
        for (key, secs) in [
            ("attr_timeout", r.attr_timeout),
            ("entry_timeout", r.entry_timeout),
        ] {
            if let Some(secs) = secs {
                map.insert(key.into(), json!(secs));
            }
        }
    }
    v
}
