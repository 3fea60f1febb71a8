//! What the supervisor handoff (`crate::supervised`) needs from the daemon:
//! the Vfs (snapshot/restore) and the mount table.

use std::path::PathBuf;
use std::sync::Arc;

use fuse_backend_rs::api::Vfs;

use super::{lock, Daemon};

/// (Vfs path, bootstrap, index, prefetch files) of one mount.
pub type MountRow = (String, PathBuf, u8, Option<Vec<String>>);

impl Daemon {
    /// The Vfs, for the handoff's snapshot and restore.
    pub fn vfs(&self) -> &Arc<Vfs> {
        &self.vfs
    }

    /// (Vfs path, bootstrap, index, prefetch files) of every mount.
    pub fn mount_table(&self) -> Vec<MountRow> {
        lock(&self.mounts)
            .iter()
            .map(|(p, r)| {
                (
                    p.clone(),
                    r.source.clone(),
                    r.index,
                    r.prefetch_files.clone(),
                )
            })
            .collect()
    }
}

impl Daemon {
    /// Each mount's config as v2 JSON with secrets, for the successor only
    /// (the state travels over a 0600 socket into a 0600 file).
    pub fn mount_configs(&self) -> Vec<(String, String)> {
        lock(&self.mounts)
            .iter()
            .map(|(p, r)| {
                (
                    p.clone(),
                    r.config.to_v2_json_exposing_secrets().to_string(),
                )
            })
            .collect()
    }
}
