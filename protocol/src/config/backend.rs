//! Backend keys (reference §3.3), the same in v1 `device.backend.config`
//! and v2 `backend.<type>`.

use std::path::PathBuf;

use super::error::ConfigError;
use super::fields::{Ctx, Obj};
use super::json::Value;
use super::secret::Secret;
use super::types::*;

pub(crate) const BACKEND_TYPES: &[&str] = &[
    "localfs",
    "registry",
    "oss",
    "s3",
    "http-proxy",
    "localdisk",
];

/// Reads the settings object of a backend of type `kind`; `obj` is `None`
/// when the object is missing altogether.
pub(crate) fn read_backend(
    ctx: &mut Ctx<'_>,
    kind: &str,
    obj: Obj<'_>,
) -> Result<BackendConfig, ConfigError> {
    let mut o = obj;
    let cfg = match kind {
        "localfs" => BackendConfig::Localfs(localfs(ctx, &mut o)?),
        "registry" => BackendConfig::Registry(registry(ctx, &mut o)?),
        "oss" => BackendConfig::Oss(oss(ctx, &mut o)?),
        "s3" => BackendConfig::S3(s3(ctx, &mut o)?),
        "http-proxy" => BackendConfig::HttpProxy(http_proxy(ctx, &mut o)?),
        "localdisk" => BackendConfig::Localdisk(LocaldiskConfig {
            device_path: required(ctx, &mut o, "device_path")?.into(),
            disable_gpt: o.bool(ctx, "disable_gpt", false)?,
        }),
        _ => {
            return Err(ctx.error(
                o.path(),
                o.pos,
                format!(
                    "unsupported backend type; allowed: {}",
                    BACKEND_TYPES.join(", ")
                ),
            ))
        }
    };
    o.finish(ctx);
    Ok(cfg)
}

/// A string key that must be present and non-empty.
fn required(ctx: &Ctx<'_>, o: &mut Obj<'_>, key: &str) -> Result<String, ConfigError> {
    let pos = o.pos;
    match o.string(ctx, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ctx.error(&o.key(key), pos, "is required: a non-empty string")),
    }
}

fn scheme(ctx: &Ctx<'_>, o: &mut Obj<'_>) -> Result<String, ConfigError> {
    o.choice(ctx, "scheme", "https", &["http", "https", ""])
}

fn paths(ctx: &Ctx<'_>, o: &mut Obj<'_>, key: &str) -> Result<Vec<PathBuf>, ConfigError> {
    Ok(o.strings(ctx, key)?
        .into_iter()
        .map(PathBuf::from)
        .collect())
}

fn localfs(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Result<LocalfsConfig, ConfigError> {
    let (readahead, readahead_sec) = readahead(ctx, o)?;
    let c = LocalfsConfig {
        dir: o
            .string(ctx, "dir")?
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        blob_file: o
            .string(ctx, "blob_file")?
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        alt_dirs: paths(ctx, o, "alt_dirs")?,
        readahead,
        readahead_sec,
    };
    if c.dir.is_none() && c.blob_file.is_none() {
        return Err(ctx.error(
            o.path(),
            o.pos,
            "localfs needs `dir` or `blob_file` (a non-empty path)",
        ));
    }
    Ok(c)
}

fn registry(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Result<RegistryConfig, ConfigError> {
    let auth_pos = o.take("auth").and_then(|n| n.pos);
    let auth = o.string(ctx, "auth")?.filter(|s| !s.is_empty());
    if let Some(a) = &auth {
        check_auth(a).map_err(|m| ctx.error(&o.key("auth"), auth_pos, m))?;
    }
    Ok(RegistryConfig {
        scheme: scheme(ctx, o)?,
        host: required(ctx, o, "host")?,
        repo: required(ctx, o, "repo")?,
        auth: auth.map(Secret::new),
        registry_token: o
            .string(ctx, "registry_token")?
            .filter(|s| !s.is_empty())
            .map(Secret::new),
        blob_url_scheme: o.string_or(ctx, "blob_url_scheme", "")?,
        blob_redirected_host: o.string_or(ctx, "blob_redirected_host", "")?,
        http: http(ctx, o)?,
    })
}

fn oss(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Result<OssConfig, ConfigError> {
    Ok(OssConfig {
        endpoint: required(ctx, o, "endpoint")?,
        bucket_name: required(ctx, o, "bucket_name")?,
        scheme: scheme(ctx, o)?,
        object_prefix: o.string_or(ctx, "object_prefix", "")?,
        access_key_id: Secret::new(o.string_or(ctx, "access_key_id", "")?),
        access_key_secret: Secret::new(o.string_or(ctx, "access_key_secret", "")?),
        http: http(ctx, o)?,
    })
}

fn s3(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Result<S3Config, ConfigError> {
    if !o.has("endpoint") {
        let msg = "is required (may be empty for s3.amazonaws.com)";
        return Err(ctx.error(&o.key("endpoint"), o.pos, msg));
    }
    Ok(S3Config {
        endpoint: o.string_or(ctx, "endpoint", "")?,
        region: required(ctx, o, "region")?,
        bucket_name: required(ctx, o, "bucket_name")?,
        scheme: scheme(ctx, o)?,
        object_prefix: o.string_or(ctx, "object_prefix", "")?,
        access_key_id: Secret::new(o.string_or(ctx, "access_key_id", "")?),
        access_key_secret: Secret::new(o.string_or(ctx, "access_key_secret", "")?),
        http: http(ctx, o)?,
    })
}

fn http_proxy(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Result<HttpProxyConfig, ConfigError> {
    let addr_pos = o.take("addr").and_then(|n| n.pos);
    let addr = required(ctx, o, "addr")?;
    if !(addr.starts_with("http://") || addr.starts_with("https://") || addr.starts_with('/')) {
        return Err(ctx.error(
            &o.key("addr"),
            addr_pos,
            "must start with http://, https:// or be an absolute unix socket path",
        ));
    }
    Ok(HttpProxyConfig {
        addr,
        path: o.string_or(ctx, "path", "")?,
        http: http(ctx, o)?,
    })
}

/// The common network keys, including both proxy layouts.
fn http(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Result<HttpConfig, ConfigError> {
    let d = HttpConfig::default();
    o.obsolete(ctx, "force_upload", "removed upstream in 2021, ignored");
    // nydus-snapshotter writes `"readahead": false` for every backend; the
    // seed honoured it for localfs only, this nydusd for every backend.
    let (readahead, readahead_sec) = readahead(ctx, o)?;
    // `retry_limit` stays valid though retries are fixed now (reference §4.2).
    Ok(HttpConfig {
        timeout: o.uint(ctx, "timeout", d.timeout, u32::MAX.into())?,
        connect_timeout: o.uint(ctx, "connect_timeout", d.connect_timeout, u32::MAX.into())?,
        retry_limit: o.uint(ctx, "retry_limit", d.retry_limit, u8::MAX.into())?,
        skip_verify: o.bool(ctx, "skip_verify", d.skip_verify)?,
        ca_cert_files: paths(ctx, o, "ca_cert_files")?,
        proxy: proxy(ctx, o)?,
        mirrors: mirrors(ctx, o)?,
        readahead,
        readahead_sec,
    })
}

/// `readahead` + `readahead_sec`: record the chunks read in the first
/// seconds after mount and prefetch them first at the next mount.
fn readahead(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Result<(bool, u32), ConfigError> {
    let pos = o.key_pos("readahead_sec");
    let on = o.bool(ctx, "readahead", false)?;
    let secs = o.uint(ctx, "readahead_sec", 10, u32::MAX.into())?;
    if on && secs == 0 {
        let msg = "is 0, so no reads are recorded; set the start-up window in seconds";
        ctx.warn(&o.key("readahead_sec"), pos, msg);
    }
    Ok((on, secs))
}

fn proxy(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Result<ProxyConfig, ConfigError> {
    let d = ProxyConfig::default();
    let flat_string = matches!(o.take("proxy"), Some(n) if matches!(n.value, Value::Str(_)));
    let mut p = if flat_string {
        let pos = o.key_pos("proxy");
        let url = o.string(ctx, "proxy")?.unwrap_or_default();
        let msg = "legacy flat proxy string, read as `proxy.url` (upstream rejects this form)";
        ctx.warn(&o.key("proxy"), pos, msg);
        ProxyConfig {
            url: Secret::new(url),
            ..d.clone()
        }
    } else if let Some(mut n) = o.obj(ctx, "proxy")? {
        let p = ProxyConfig {
            url: Secret::new(n.string_or(ctx, "url", "")?),
            ping_url: n.string_or(ctx, "ping_url", "")?,
            fallback: n.bool(ctx, "fallback", d.fallback)?,
            check_interval: n.uint(ctx, "check_interval", d.check_interval, u64::MAX)?,
            use_http: n.bool(ctx, "use_http", d.use_http)?,
            check_pause_elapsed: n.uint(
                ctx,
                "check_pause_elapsed",
                d.check_pause_elapsed,
                u64::MAX,
            )?,
            dragonfly_scheduler_endpoint: n.string_or(ctx, "dragonfly_scheduler_endpoint", "")?,
        };
        n.finish(ctx);
        p
    } else {
        d.clone()
    };
    // Legacy flat keys: honoured (upstream silently ignores them), with a note.
    let flat: [(&str, &str); 3] = [
        ("proxy_fallback", "proxy.fallback"),
        ("proxy_ping_url", "proxy.ping_url"),
        ("proxy_check_interval", "proxy.check_interval"),
    ];
    for (flat_key, nested) in flat {
        if !o.has(flat_key) {
            continue;
        }
        let pos = o.key_pos(flat_key);
        match flat_key {
            "proxy_fallback" => p.fallback = o.bool(ctx, flat_key, p.fallback)?,
            "proxy_ping_url" => p.ping_url = o.string_or(ctx, flat_key, &p.ping_url.clone())?,
            _ => p.check_interval = o.uint(ctx, flat_key, p.check_interval, u64::MAX)?,
        }
        let msg = format!("legacy flat proxy key, read as `{nested}`");
        ctx.warn(&o.key(flat_key), pos, &msg);
    }
    Ok(p)
}

fn mirrors(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Result<Vec<MirrorConfig>, ConfigError> {
    let pos = o.key_pos("mirrors");
    let items = o.array(ctx, "mirrors")?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut m = Obj::of(ctx, item, &format!("{}[{i}]", o.key("mirrors")))?;
        m.obsolete(ctx, "auth_through", "removed upstream in 2023, ignored");
        out.push(MirrorConfig {
            host: m.string_or(ctx, "host", "")?,
            ping_url: m.string_or(ctx, "ping_url", "")?,
            headers: m
                .string_map(ctx, "headers")?
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect(),
            health_check_interval: m.uint(ctx, "health_check_interval", 5, u64::MAX)?,
            failure_limit: m.uint(ctx, "failure_limit", 5, u8::MAX.into())?,
            health_check_pause_elapsed: m.uint(ctx, "health_check_pause_elapsed", 300, u64::MAX)?,
        });
        m.finish(ctx);
    }
    if !items.is_empty() {
        let msg = "mirrors were removed upstream in July 2025; not used (configure `proxy` or point `host` at the mirror)";
        ctx.warn(&o.key("mirrors"), pos, msg);
    }
    Ok(out)
}

/// `auth` must be base64 of `user:password` (UTF-8). Never echoes the value.
pub(crate) fn check_auth(auth: &str) -> Result<(), String> {
    let bytes = base64_decode(auth.trim()).ok_or("is not valid base64 (of `user:password`)")?;
    let text = String::from_utf8(bytes).map_err(|_| "does not decode to UTF-8 text")?;
    if !text.contains(':') {
        return Err("must be base64 of `user:password` (no `:` found)".to_string());
    }
    Ok(())
}

/// Standard base64 with or without padding; `None` if malformed.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}
