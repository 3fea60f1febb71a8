//! The v2 layout (`version = 2`, reference §3.7), from JSON or TOML.

use super::backend::{read_backend, BACKEND_TYPES};
use super::common::*;
use super::error::ConfigError;
use super::fields::{Ctx, Obj};
use super::json::{Node, Value};
use super::secret::Secret;
use super::types::*;

pub(crate) fn read(ctx: &mut Ctx<'_>, root: &Node) -> Result<DaemonConfig, ConfigError> {
    let mut top = Obj::of(ctx, root, "")?;
    let version_pos = top.take("version").and_then(|n| n.pos).or(top.pos);
    if top.uint::<u64>(ctx, "version", 0, u64::MAX).ok() != Some(2) {
        return Err(ctx.error(
            "version",
            version_pos,
            "must be 2 (or drop it and use the v1 `device` layout)",
        ));
    }
    let mut cfg = DaemonConfig {
        id: top.string(ctx, "id")?.filter(|s| !s.is_empty()),
        ..DaemonConfig::default()
    };
    // Part of blob cache entries (`config_v2`); meaningless for a mount.
    top.take("metadata_path");

    let Some(mut backend) = top.obj(ctx, "backend")? else {
        return Err(ctx.error(
            "backend",
            top.pos,
            "is required: a table with `type` and a table named after it",
        ));
    };
    let kind = backend.choice(ctx, "type", "", BACKEND_TYPES)?;
    let empty = Node::new(Value::Obj(Vec::new()), backend.pos);
    let settings = match backend.obj(ctx, &kind)? {
        Some(o) => o,
        None => Obj::of(ctx, &empty, &backend.key(&kind))?,
    };
    cfg.backend = read_backend(ctx, &kind, settings)?;
    for other in BACKEND_TYPES.iter().filter(|t| **t != kind) {
        backend.obsolete(ctx, other, &format!("not used: backend type is \"{kind}\""));
    }
    backend.finish(ctx);

    cfg.external_backends = external_backends(ctx, &mut top)?;
    if let Some(mut cache) = top.obj(ctx, "cache")? {
        read_cache(ctx, &mut cache, &mut cfg.cache)?;
        cache.finish(ctx);
    }
    if let Some(mut rafs) = top.obj(ctx, "rafs")? {
        read_rafs(ctx, &mut rafs, &mut cfg.rafs)?;
        known_noise(ctx, &mut rafs);
        rafs.finish(ctx);
    }
    if let Some(mut o) = top.obj(ctx, "overlay")? {
        let pos = o.pos;
        let dir = |o: &mut Obj<'_>, key: &str| match o.string(ctx, key)? {
            Some(s) if !s.is_empty() => Ok(s.into()),
            _ => Err(ctx.error(&o.key(key), pos, "is required: a non-empty directory path")),
        };
        cfg.overlay = Some(OverlayConfig {
            upper_dir: dir(&mut o, "upper_dir")?,
            work_dir: dir(&mut o, "work_dir")?,
        });
        o.finish(ctx);
    }
    top.finish(ctx);
    Ok(cfg)
}

fn external_backends(
    ctx: &mut Ctx<'_>,
    top: &mut Obj<'_>,
) -> Result<Vec<ExternalBackendConfig>, ConfigError> {
    let mut out = Vec::new();
    for (i, item) in top.array(ctx, "external_backends")?.iter().enumerate() {
        let mut o = Obj::of(ctx, item, &format!("external_backends[{i}]"))?;
        out.push(ExternalBackendConfig {
            kind: o.string_or(ctx, "type", "")?,
            patch: o.string_map(ctx, "patch")?,
            config: o
                .string_map(ctx, "config")?
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect(),
        });
        o.finish(ctx);
    }
    Ok(out)
}

fn read_cache(ctx: &mut Ctx<'_>, o: &mut Obj<'_>, c: &mut CacheConfig) -> Result<(), ConfigError> {
    c.kind = cache_kind(&o.choice(ctx, "type", "", CACHE_TYPES)?);
    c.compressed = o.bool(ctx, "compressed", false)?;
    c.validate = o.bool(ctx, "validate", false)?;
    let table = match c.kind {
        CacheKind::Fscache => "fscache",
        _ => "filecache",
    };
    let pos = o.pos;
    match o.obj(ctx, table)? {
        Some(mut files) if c.kind.is_local() => {
            cache_files(ctx, &mut files, c, None)?;
            files.finish(ctx);
        }
        Some(files) => {
            let mut files = files;
            files.take("work_dir");
            files.finish(ctx);
        }
        None if c.kind.is_local() => {
            let msg = "is required for this cache type: a table with `work_dir`";
            return Err(ctx.error(&o.key(table), pos, msg));
        }
        None => {}
    }
    let other = if table == "fscache" {
        "filecache"
    } else {
        "fscache"
    };
    o.obsolete(
        ctx,
        other,
        &format!("not used with cache type \"{}\"", c.kind.as_str()),
    );
    if let Some(p) = o.obj(ctx, "prefetch")? {
        if !p.has("enable") {
            let msg = "is required when `cache.prefetch` is present: true or false";
            return Err(ctx.error("cache.prefetch.enable", p.pos, msg));
        }
        c.prefetch = prefetch(ctx, p, &V2_PREFETCH, None)?;
    }
    Ok(())
}

fn read_rafs(ctx: &mut Ctx<'_>, o: &mut Obj<'_>, r: &mut RafsConfig) -> Result<(), ConfigError> {
    let d = RafsConfig::default();
    r.mode = rafs_mode(&o.choice(ctx, "mode", "direct", &["direct", "cached"])?);
    r.amplify_io = o.uint(ctx, "batch_size", d.amplify_io, MAX_BATCH_SIZE)?;
    r.digest_validate = o.bool(ctx, "validate", d.digest_validate)?;
    r.enable_xattr = o.bool(ctx, "enable_xattr", d.enable_xattr)?;
    r.iostats_files = o.bool(ctx, "iostats_files", d.iostats_files)?;
    r.access_pattern = o.bool(ctx, "access_pattern", d.access_pattern)?;
    r.latest_read_files = o.bool(ctx, "latest_read_files", d.latest_read_files)?;
    r.attr_timeout = super::v1::timeout(ctx, o, "attr_timeout")?;
    r.entry_timeout = super::v1::timeout(ctx, o, "entry_timeout")?;
    if let Some(p) = o.obj(ctx, "prefetch")? {
        r.prefetch = prefetch(ctx, p, &V2_PREFETCH, Some(false))?;
    }
    Ok(())
}
