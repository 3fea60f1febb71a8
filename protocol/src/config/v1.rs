//! The v1 layout (`device` + `mode`, reference §3.2) into [`DaemonConfig`].

use super::backend::{read_backend, BACKEND_TYPES};
use super::common::*;
use super::error::ConfigError;
use super::fields::{Ctx, Obj};
use super::json::Node;
use super::types::*;

pub(crate) fn read(ctx: &mut Ctx<'_>, root: &Node) -> Result<DaemonConfig, ConfigError> {
    let mut top = Obj::of(ctx, root, "")?;
    let mut cfg = DaemonConfig::default();

    let Some(mut device) = top.obj(ctx, "device")? else {
        let msg = "is required: an object with `backend` (and usually `cache`); a v2 file needs `\"version\": 2`";
        return Err(ctx.error("device", top.pos, msg));
    };
    cfg.id = device.string(ctx, "id")?.filter(|s| !s.is_empty());

    let Some(mut backend) = device.obj(ctx, "backend")? else {
        return Err(ctx.error(
            &device.key("backend"),
            device.pos,
            "is required: an object with `type` and `config`",
        ));
    };
    // http-proxy is v2-only upstream, but upstream's own docs show it in v1.
    let kind = backend.choice(ctx, "type", "", BACKEND_TYPES)?;
    let Some(settings) = backend.obj(ctx, "config")? else {
        return Err(ctx.error(
            &backend.key("config"),
            backend.pos,
            "is required: an object (may be empty `{}`)",
        ));
    };
    cfg.backend = read_backend(ctx, &kind, settings)?;
    backend.finish(ctx);

    if let Some(mut cache) = device.obj(ctx, "cache")? {
        read_cache(ctx, &mut cache, &mut cfg.cache)?;
        cache.finish(ctx);
    }
    device.finish(ctx);

    let r = &mut cfg.rafs;
    let d = RafsConfig::default();
    if !top.has("mode") {
        // Upstream requires it; its own README examples omit it.
        ctx.warn("mode", top.pos, "missing, using \"direct\"");
    }
    r.mode = rafs_mode(&top.choice(ctx, "mode", "direct", &["direct", "cached"])?);
    r.digest_validate = top.bool(ctx, "digest_validate", d.digest_validate)?;
    r.iostats_files = top.bool(ctx, "iostats_files", d.iostats_files)?;
    r.enable_xattr = top.bool(ctx, "enable_xattr", d.enable_xattr)?;
    r.access_pattern = top.bool(ctx, "access_pattern", d.access_pattern)?;
    r.latest_read_files = top.bool(ctx, "latest_read_files", d.latest_read_files)?;
    r.amplify_io = top.uint(ctx, "amplify_io", d.amplify_io, MAX_BATCH_SIZE)?;
    r.attr_timeout = timeout(ctx, &mut top, "attr_timeout")?;
    r.entry_timeout = timeout(ctx, &mut top, "entry_timeout")?;
    if let Some(p) = top.obj(ctx, "fs_prefetch")? {
        // v1 quirk kept: `prefetch_all` defaults to true once the object exists.
        r.prefetch = prefetch(ctx, p, &V1_PREFETCH, Some(true))?;
    }
    if r.prefetch.enable {
        // Upstream copies file-level prefetch settings to the blob worker pool.
        cfg.cache.prefetch = PrefetchConfig {
            prefetch_all: false,
            stream_prefetch: false,
            ..r.prefetch.clone()
        };
    }
    known_noise(ctx, &mut top);
    top.finish(ctx);
    Ok(cfg)
}

fn read_cache(ctx: &mut Ctx<'_>, o: &mut Obj<'_>, c: &mut CacheConfig) -> Result<(), ConfigError> {
    c.kind = cache_kind(&o.choice(ctx, "type", "", CACHE_TYPES)?);
    c.compressed = o.bool(ctx, "compressed", false)?;
    c.validate = o.bool(ctx, "validate", false)?;
    let pos = o.pos;
    match (o.obj(ctx, "config")?, c.kind) {
        (None, CacheKind::Blobcache) => Err(ctx.error(
            &o.key("config"),
            pos,
            "is required for blobcache: an object with `work_dir`",
        )),
        (Some(mut files), CacheKind::Blobcache | CacheKind::Fscache) => {
            cache_files(ctx, &mut files, c, Some("."))?;
            files.finish(ctx);
            Ok(())
        }
        (Some(files), _) => {
            // No cache: its settings do nothing, but unknown keys still get named.
            let mut files = files;
            for key in ["work_dir", "disable_indexed_map", "enable_encryption"] {
                files.take(key);
            }
            files.finish(ctx);
            Ok(())
        }
        (None, _) => Ok(()),
    }
}

/// `attr_timeout` / `entry_timeout`: seconds, absent = the daemon's choice.
pub(super) fn timeout(
    ctx: &Ctx<'_>,
    o: &mut Obj<'_>,
    key: &str,
) -> Result<Option<u32>, ConfigError> {
    if !o.has(key) {
        return Ok(None);
    }
    o.uint(ctx, key, 0u32, u64::from(u32::MAX)).map(Some)
}
