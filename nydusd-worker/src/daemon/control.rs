//! What the admin API sees of the daemon: `DaemonControl`, and the
//! `GET /api/v1/daemon` body.

use std::time::SystemTime;

use serde_json::{json, Value};

use nydus_protocol::config::Secret;

use super::{lock, ConfigSource, Daemon, Event};
use crate::api::{ApiError, DaemonControl};
use crate::metrics::Metrics;
use crate::storage::Backend;

impl Daemon {
    fn mounts_json(&self) -> Value {
        let mounts = lock(&self.mounts);
        let mut out = serde_json::Map::new();
        for (path, rec) in mounts.iter() {
            let mounted = rec
                .mounted_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            out.insert(
                path.clone(),
                json!({
                    "backend_type": "Rafs",
                    "mountpoint": path,
                    "source": rec.source,
                    "index": rec.index,
                    "mounted_time": format_mounted_time(mounted),
                    "config": rec.config.to_redacted_json(),
                }),
            );
        }
        Value::Object(out)
    }
}

/// Upstream's `mounted_time` format, `YYYY-MM-DD HH:MM:SS.nnnnnnnnn +00:00:00`.
fn format_mounted_time(t: std::time::Duration) -> String {
    let secs = t.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::logging::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:09} +00:00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        t.subsec_nanos()
    )
}

fn api_error(msg: String) -> ApiError {
    if msg.contains("doesn't exist") {
        ApiError::not_found(msg)
    } else {
        ApiError::internal(msg)
    }
}

impl DaemonControl for Daemon {
    fn info(&self) -> Value {
        let v = crate::cli::version_info();
        json!({
            "version": v,
            "id": self.id,
            "supervisor": self.supervisor,
            "state": lock(&self.state).as_str(),
            "backend_collection": self.mounts_json(),
        })
    }

    fn mount(
        &self,
        mountpoint: &str,
        source: &str,
        fs_type: &str,
        config_text: &str,
        prefetch_files: Option<Vec<String>>,
    ) -> Result<(), ApiError> {
        if fs_type != "rafs" {
            return Err(ApiError::internal(format!(
                "fs_type {fs_type:?} is not supported: only \"rafs\""
            )));
        }
        // An image at the root would hide every other pseudo mount and the
        // way to add more; the root image comes from --bootstrap instead.
        if super::normalize_vfs_path(mountpoint).as_deref() == Ok("/") {
            return Err(ApiError::bad_request(
                "mountpoint / is refused: the API mounts images at sub-paths such as /image; \
                 serve an image at the root with --bootstrap",
            ));
        }
        let config = ConfigSource::Text {
            text: config_text.to_string(),
            origin: "mount request config".into(),
            image_pull_auth: None,
        };
        Daemon::mount(self, mountpoint, source.into(), &config, prefetch_files).map_err(api_error)
    }

    fn remount(&self, mountpoint: &str, source: &str, config_text: &str) -> Result<(), ApiError> {
        let config = ConfigSource::Text {
            text: config_text.to_string(),
            origin: "remount request config".into(),
            image_pull_auth: None,
        };
        Daemon::remount(self, mountpoint, source.into(), &config).map_err(api_error)
    }

    fn umount(&self, mountpoint: &str) -> Result<(), ApiError> {
        Daemon::umount(self, mountpoint).map_err(api_error)
    }

    fn exit(&self) {
        let _ = self.events.send(Event::Exit);
    }

    fn backend_info(&self, mountpoint: &str) -> Result<Value, ApiError> {
        let path = super::normalize_vfs_path(mountpoint).map_err(ApiError::bad_request)?;
        let mounts = lock(&self.mounts);
        let rec = mounts
            .get(&path)
            .ok_or_else(|| ApiError::not_found(format!("mountpoint {path} doesn't exist")))?;
        let sb = rec.reader.super_info();
        let ttl = crate::fs::FsOptions::for_daemon(0, false).ttl.as_secs();
        // Upstream's field names where it has the fact; the blob table in
        // the form `nydusctl` prints.
        Ok(json!({
            "version": match sb.version {
                nydus_protocol::rafs::FsVersion::V5 => 5,
                nydus_protocol::rafs::FsVersion::V6 => 6,
            },
            "root_inode": sb.root_ino,
            "chunk_size": sb.chunk_size,
            "block_size": sb.block_size,
            "inodes_count": sb.inode_count,
            "flags": sb.flags,
            "explicit_uidgid": sb.explicit_uidgid,
            "has_xattr": sb.has_xattr,
            "compressor": format!("{:?}", sb.compressor),
            "digester": format!("{:?}", sb.digester),
            "attr_timeout": ttl,
            "entry_timeout": ttl,
            "blobs": rec.reader.blobs().iter().map(|b| b.blob_id.clone()).collect::<Vec<_>>(),
        }))
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn set_config(&self, id: Option<&str>, key: &str, value: &str) -> Result<(), ApiError> {
        let value = Secret::new(value.trim());
        match key {
            "registry_auth" => {
                let auth = (!value.is_empty()).then(|| value.clone());
                self.each_backend(id, key, |b| b.set_auth(auth.clone()))
            }
            "proxy_url" => self.each_backend(id, key, |b| b.set_proxy_url(&value)),
            _ => Err(ApiError::unsupported(&format!(
                "setting {key} at run time (change it in the config and remount)"
            ))),
        }
    }
}

impl Daemon {
    /// Applies `set` to the backend of the instance at mountpoint `id`, or
    /// of every instance when there is no `id` (those whose backend has no
    /// such setting are skipped). Values may be secrets (registry_auth,
    /// a proxy URL with credentials): no message shows them.
    fn each_backend(
        &self,
        id: Option<&str>,
        key: &str,
        set: impl Fn(&dyn Backend) -> std::io::Result<()>,
    ) -> Result<(), ApiError> {
        let mounts = lock(&self.mounts);
        let targets: Vec<(&String, &super::MountRecord)> = match id {
            Some(id) => {
                let path = super::normalize_vfs_path(id).map_err(ApiError::bad_request)?;
                let (path, rec) = mounts.get_key_value(&path).ok_or_else(|| {
                    ApiError::not_found(format!("mountpoint {path} doesn't exist"))
                })?;
                vec![(path, rec)]
            }
            None => mounts.iter().collect(),
        };
        let mut applied = 0;
        let mut refused = None;
        for (path, rec) in targets {
            match set(rec.device.backend()) {
                Ok(()) => {
                    applied += 1;
                    log::info!("mountpoint {path}: new {key} from the API");
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    return Err(ApiError::bad_request(format!("{key}: {e}")))
                }
                Err(e) => refused = Some(format!("mountpoint {path}: {e}")),
            }
        }
        match (applied, refused) {
            (0, Some(why)) => Err(ApiError::bad_request(format!("{key}: {why}"))),
            (0, None) => Err(ApiError::not_found(format!(
                "{key}: no instance is mounted"
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounted_time_format() {
        let t = std::time::Duration::new(86_400 + 3661, 5);
        assert_eq!(
            format_mounted_time(t),
            "1970-01-02 01:01:01.000000005 +00:00:00"
        );
    }
}
