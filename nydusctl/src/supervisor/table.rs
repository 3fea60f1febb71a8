//! The supervisor's mount table: in memory, and persisted atomically
//! (temp file + rename, mode 0600: states carry config secrets).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use nydus_protocol::handoff::{MountInfo, MountStatus, VhostUserState, WorkerState};
use serde::{Deserialize, Serialize};

/// One mount and its current worker.
pub struct Entry {
    pub p: Persisted,
    pub status: MountStatus,
    pub pid: Option<u32>,
    /// Identifies the connection of the current worker; an EOF on any
    /// other connection (a retired worker) means nothing.
    pub conn_token: u64,
    /// To send `Stop` to the current worker.
    pub writer: Option<UnixStream>,
    /// The kept `/dev/fuse` fd.
    pub fuse: Option<File>,
    pub registered_at: Option<Instant>,
    /// Quick deaths in a row, for the crash-loop backoff.
    pub recent_crashes: u32,
    pub last_error: Option<String>,
    /// umount in progress: a worker exit is expected.
    pub stopping: bool,
    /// A restored successor waiting for `Activate` (pid, its connection).
    pub standby: Option<(u32, UnixStream)>,
    /// A standby started but not yet ready.
    pub standby_pending: Option<u32>,
    /// virtio-fs: the device the old worker handed over on `Stop` (or why
    /// it could not), kept until the successor registers.
    pub vhost_kept: Option<Result<(VhostUserState, Vec<File>), String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Persisted {
    pub id: String,
    pub mountpoint: String,
    pub bootstrap: String,
    pub config: String,
    pub nydusd: String,
    pub generation: u64,
    pub crashes: u64,
    #[serde(default)]
    pub state: Option<WorkerState>,
    /// Served over virtio-fs: `mountpoint` is the vhost-user socket.
    #[serde(default)]
    pub vhost_user: bool,
}

#[derive(Default, Serialize, Deserialize)]
pub struct TableFile {
    pub next_id: u64,
    pub mounts: Vec<Persisted>,
}

impl Entry {
    pub fn new(p: Persisted, status: MountStatus) -> Self {
        Entry {
            p,
            status,
            pid: None,
            conn_token: 0,
            writer: None,
            fuse: None,
            registered_at: None,
            recent_crashes: 0,
            last_error: None,
            stopping: false,
            standby: None,
            standby_pending: None,
            vhost_kept: None,
        }
    }

    pub fn info(&self) -> MountInfo {
        MountInfo {
            id: self.p.id.clone(),
            mountpoint: self.p.mountpoint.clone(),
            bootstrap: self.p.bootstrap.clone(),
            status: self.status.clone(),
            pid: self.pid,
            nydusd: self.p.nydusd.clone(),
            apisock: self.p.state.as_ref().and_then(|s| s.apisock.clone()),
            generation: self.p.generation,
            crashes: self.p.crashes,
            last_error: self.last_error.clone(),
            vhost_user: self.p.vhost_user,
        }
    }
}

pub fn load(path: &Path) -> Result<TableFile, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{}: not a mount table ({e}); move it away to start empty",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TableFile::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

pub fn save(path: &Path, next_id: u64, mounts: &BTreeMap<String, Entry>) -> Result<(), String> {
    let table = TableFile {
        next_id,
        mounts: mounts.values().map(|e| e.p.clone()).collect(),
    };
    let bytes = serde_json::to_vec_pretty(&table).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("saving the mount table {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persisted(vhost_user: bool) -> Persisted {
        Persisted {
            id: "m1".into(),
            mountpoint: "/run/vm/vfs.sock".into(),
            bootstrap: "/img/b".into(),
            config: "/etc/c.json".into(),
            nydusd: "/bin/nydusd".into(),
            generation: 3,
            crashes: 0,
            state: None,
            vhost_user,
        }
    }

    #[test]
    fn virtio_fs_mounts_round_trip_and_old_tables_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mounts.json");
        let mut mounts = BTreeMap::new();
        mounts.insert(
            "m1".to_string(),
            Entry::new(persisted(true), MountStatus::Running),
        );
        save(&path, 1, &mounts).unwrap();
        let back = load(&path).unwrap();
        assert!(back.mounts[0].vhost_user);
        assert!(
            Entry::new(back.mounts[0].clone(), MountStatus::Running)
                .info()
                .vhost_user
        );

        // A table written before virtio-fs mounts existed.
        let mut v = serde_json::to_value(persisted(false)).unwrap();
        v.as_object_mut().unwrap().remove("vhost_user");
        let old = serde_json::json!({ "next_id": 1, "mounts": [v] });
        std::fs::write(&path, old.to_string()).unwrap();
        assert!(!load(&path).unwrap().mounts[0].vhost_user);
    }
}
