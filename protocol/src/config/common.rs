//! Readers shared by v1 and v2: cache files, prefetch, and their validation.

use std::path::PathBuf;

use super::error::ConfigError;
use super::fields::{Ctx, Obj};
use super::secret::Secret;
use super::types::*;

/// Key names of a prefetch object in one format.
pub(crate) struct PrefetchKeys {
    pub threads: &'static str,
    pub batch: &'static str,
    pub bandwidth: &'static str,
}

pub(crate) const V1_PREFETCH: PrefetchKeys = PrefetchKeys {
    threads: "threads_count",
    batch: "merging_size",
    bandwidth: "bandwidth_rate",
};

pub(crate) const V2_PREFETCH: PrefetchKeys = PrefetchKeys {
    threads: "threads",
    batch: "batch_size",
    bandwidth: "bandwidth_limit",
};

/// Reads a prefetch object; `with_all` adds `prefetch_all`/`stream_prefetch`
/// (file-level prefetch) with the format's `prefetch_all` default.
pub(crate) fn prefetch(
    ctx: &mut Ctx<'_>,
    mut o: Obj<'_>,
    keys: &PrefetchKeys,
    with_all: Option<bool>,
) -> Result<PrefetchConfig, ConfigError> {
    let d = PrefetchConfig::default();
    let threads_pos = o.take(keys.threads).and_then(|n| n.pos);
    let batch_pos = o.take(keys.batch).and_then(|n| n.pos);
    let mut p = PrefetchConfig {
        enable: o.bool(ctx, "enable", d.enable)?,
        threads_count: o.uint(ctx, keys.threads, d.threads_count, u32::MAX.into())?,
        merging_size: o.uint(ctx, keys.batch, d.merging_size, u32::MAX.into())?,
        bandwidth_rate: o.uint(ctx, keys.bandwidth, d.bandwidth_rate, u32::MAX.into())?,
        ..d
    };
    if let Some(all_default) = with_all {
        p.prefetch_all = o.bool(ctx, "prefetch_all", all_default)?;
        p.stream_prefetch = o.bool(ctx, "stream_prefetch", false)?;
    }
    // Like upstream, limits apply only to enabled prefetch.
    if p.enable && u64::from(p.merging_size) > MAX_BATCH_SIZE {
        let pos = batch_pos.or(o.pos);
        let msg = format!(
            "expected an integer in 0..={MAX_BATCH_SIZE}, found {}",
            p.merging_size
        );
        return Err(ctx.error(&o.key(keys.batch), pos, msg));
    }
    if p.enable && !(1..=1024).contains(&p.threads_count) {
        let pos = threads_pos.or(o.pos);
        return Err(ctx.error(
            &o.key(keys.threads),
            pos,
            format!(
                "expected an integer in 1..=1024 when prefetch is enabled, found {}",
                p.threads_count
            ),
        ));
    }
    o.finish(ctx);
    Ok(p)
}

/// The local cache keys (v1 `device.cache.config`, v2 `cache.filecache`).
pub(crate) fn cache_files(
    ctx: &mut Ctx<'_>,
    o: &mut Obj<'_>,
    c: &mut CacheConfig,
    default_dir: Option<&str>,
) -> Result<(), ConfigError> {
    let dir_pos = o.take("work_dir").and_then(|n| n.pos).or(o.pos);
    let dir = o
        .string(ctx, "work_dir")?
        .or(default_dir.map(str::to_string));
    match dir {
        Some(d) if !d.is_empty() => c.work_dir = Some(PathBuf::from(d)),
        _ => {
            let key = o.key("work_dir");
            return Err(ctx.error(&key, dir_pos, "is required: a non-empty directory path"));
        }
    }
    c.disable_indexed_map = o.bool(ctx, "disable_indexed_map", false)?;
    c.enable_encryption = o.bool(ctx, "enable_encryption", false)?;
    c.enable_convergent_encryption = o.bool(ctx, "enable_convergent_encryption", false)?;
    let key_pos = o.take("encryption_key").and_then(|n| n.pos);
    let key = o.string_or(ctx, "encryption_key", "")?;
    if !key.is_empty() && (key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit())) {
        let k = o.key("encryption_key");
        return Err(ctx.error(&k, key_pos, "must be 64 hex digits (32 bytes)"));
    }
    c.encryption_key = Secret::new(key);
    Ok(())
}

/// Parses a `mode` value.
pub(crate) fn rafs_mode(s: &str) -> RafsMode {
    if s == "cached" {
        RafsMode::Cached
    } else {
        RafsMode::Direct
    }
}

pub(crate) fn cache_kind(s: &str) -> CacheKind {
    match s {
        "blobcache" | "filecache" => CacheKind::Blobcache,
        "fscache" => CacheKind::Fscache,
        "dummycache" => CacheKind::Dummycache,
        _ => CacheKind::None,
    }
}

pub(crate) const CACHE_TYPES: &[&str] = &["blobcache", "filecache", "fscache", "dummycache", ""];

/// Keys seen in the wild that nydusd never read; named so users learn why.
pub(crate) fn known_noise(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) {
    o.obsolete(
        ctx,
        "iostat_files",
        "not a key (did you mean `iostats_files`?), ignored",
    );
    o.obsolete(
        ctx,
        "warmup",
        "written by nydus-snapshotter, not used by nydusd, ignored",
    );
    o.obsolete(
        ctx,
        "id_mapping",
        "written by nydus-snapshotter, not used by nydusd, ignored",
    );
}
