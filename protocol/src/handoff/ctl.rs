//! Client ⇄ supervisor requests (`nydusctl mount`, `list`, ...).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CtlRequest {
    /// Start a worker serving `bootstrap` at `mountpoint` (absolute paths).
    /// With `vhost_user`, `mountpoint` is the vhost-user-fs socket the
    /// worker creates for a VMM (virtio-fs) instead of a FUSE directory.
    Mount {
        mountpoint: String,
        bootstrap: String,
        config: String,
        #[serde(default)]
        vhost_user: bool,
        /// The mount id to use instead of the next `mN`.
        #[serde(default)]
        id: Option<String>,
    },
    /// Unmount and stop the worker; `target` is a mount id or mountpoint.
    Umount {
        target: String,
    },
    List,
    /// Replace the worker(s) with `nydusd` (default: the current binary)
    /// without a gap. `target: None` means all, one at a time.
    Upgrade {
        target: Option<String>,
        nydusd: Option<String>,
    },
    /// A fresh worker of the same binary takes over without a gap.
    Restart {
        target: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountStatus {
    Starting,
    Running,
    Upgrading,
    /// A successor is being started after a crash.
    Recovering,
    /// Crash loop: the next restart waits.
    Backoff,
    /// No worker could be restored; the mount was detached.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    pub id: String,
    pub mountpoint: String,
    pub bootstrap: String,
    pub status: MountStatus,
    pub pid: Option<u32>,
    pub nydusd: String,
    /// The worker's admin API socket (metrics).
    pub apisock: Option<String>,
    /// Workers started after the first (upgrades, restarts, failovers).
    pub generation: u64,
    pub crashes: u64,
    /// Why the mount is failing, if it is.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Served over virtio-fs: `mountpoint` is the vhost-user socket.
    #[serde(default)]
    pub vhost_user: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CtlReply {
    Mounted { id: String },
    Done { message: String },
    List { mounts: Vec<MountInfo> },
    Error { message: String },
}
