//! Config pieces that come from flags and the environment, not a file.

use std::path::Path;

use super::backend::check_auth;
use super::error::ConfigError;
use super::secret::Secret;
use super::types::*;

/// The config `--localfs-dir DIR` stands for (reference §2.2): localfs
/// backend on DIR, uncompressed blobcache in the same DIR, direct mode, no
/// digest validation.
pub fn localfs_dir_config(dir: &Path) -> DaemonConfig {
    DaemonConfig {
        backend: BackendConfig::Localfs(LocalfsConfig {
            dir: Some(dir.to_path_buf()),
            ..LocalfsConfig::default()
        }),
        cache: CacheConfig {
            kind: CacheKind::Blobcache,
            work_dir: Some(dir.to_path_buf()),
            ..CacheConfig::default()
        },
        ..DaemonConfig::default()
    }
}

/// Applies `IMAGE_PULL_AUTH` (base64 `user:pass`), read by the caller, to
/// the registry backend. Returns whether it changed anything: other
/// backends and an empty value are left alone. The error never contains
/// the value.
pub fn apply_image_pull_auth(config: &mut DaemonConfig, value: &str) -> Result<bool, ConfigError> {
    let value = value.trim();
    let BackendConfig::Registry(registry) = &mut config.backend else {
        return Ok(false);
    };
    if value.is_empty() {
        return Ok(false);
    }
    check_auth(value)
        .map_err(|m| ConfigError::new("from environment", Some("IMAGE_PULL_AUTH"), None, m))?;
    registry.auth = Some(Secret::new(value));
    Ok(true)
}
