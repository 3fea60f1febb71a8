//! The supervisor's two wire protocols, both carried in the same frame:
//!
//! * worker ⇄ supervisor (`WorkerMsg`): register with the `/dev/fuse` fd
//!   and a `WorkerState`, re-send the state on change, take over a kept fd
//!   and state, stop on request;
//! * client ⇄ supervisor (`CtlRequest` / `CtlReply`): `nydusctl mount`,
//!   `umount`, `list`, `upgrade`, `restart`.
//!
//! A frame is a 16-byte header then a JSON body:
//! `magic "NYHO" | version u16 LE | flags u16 (0) | length u32 LE | crc32c u32 LE`.
//! Bodies are capped at [`MAX_BODY`]; a bad magic, version, length or
//! checksum is an error, never a panic. Fds travel beside frames with
//! SCM_RIGHTS; which messages carry one is documented on each variant.

mod ctl;
mod frame;
#[cfg(test)]
mod tests;
mod vhost;

pub use ctl::{CtlReply, CtlRequest, MountInfo, MountStatus};
pub use frame::{
    decode_frame, encode_frame, FrameError, FrameReader, HEADER_LEN, MAGIC, MAX_BODY, VERSION,
};
pub use vhost::{
    MemRegionState, VhostUserState, VringHandover, MAX_VHOST_FDS, VHOST_STATE_VERSION,
};

use serde::{Deserialize, Serialize};

/// One pseudo mount inside a worker's FUSE filesystem: everything a
/// successor needs to re-open it identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    /// Path inside the FUSE filesystem (`/` for the `--bootstrap` image).
    pub path: String,
    /// Absolute bootstrap path.
    pub bootstrap: String,
    /// The full config text (secrets included: the state file is 0600).
    pub config: String,
    #[serde(default)]
    pub prefetch_files: Option<Vec<String>>,
    /// The Vfs index, so inode numbers stay the same in a successor.
    pub index: u8,
}

/// What a worker hands the supervisor (and a successor restores from).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerState {
    pub id: String,
    /// The canonical host mountpoint.
    pub mountpoint: String,
    pub mounts: Vec<MountEntry>,
    /// The Vfs snapshot (negotiated FUSE INIT options, pseudo tree, next
    /// index), hex; opaque to the supervisor.
    #[serde(default)]
    pub vfs_state: String,
    /// FUSE INIT result as seen by the worker, for `list`/debugging.
    #[serde(default)]
    pub fuse_init: Option<FuseInit>,
    pub fuse_threads: u32,
    #[serde(default)]
    pub apisock: Option<String>,
    #[serde(default)]
    pub log_level: String,
    /// The first worker's start time: files whose mtime is 0 report it, so a
    /// successor must keep it to answer identically.
    pub start_time: i64,
    /// A virtio-fs worker: `mountpoint` is its vhost-user socket and the
    /// fd handed around is the socket's listener, not `/dev/fuse`.
    #[serde(default)]
    pub virtiofs: bool,
    /// The highest Vfs index handed out on this FUSE connection so far
    /// (0: none). Where the kernel skips opens, an index is never reused,
    /// so a successor must not hand out one of these again either.
    #[serde(default)]
    pub highest_index: u8,
}

/// The negotiated FUSE INIT options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuseInit {
    /// Flags the kernel offered.
    pub in_flags: u64,
    /// Flags we enabled.
    pub out_flags: u64,
}

/// Worker ⇄ supervisor messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMsg {
    /// Worker → supervisor, first message of a serving worker (also after a
    /// supervisor restart, and from a successor once it serves). Carries the
    /// `/dev/fuse` fd.
    Register {
        id: String,
        pid: u32,
        version: String,
        state: WorkerState,
    },
    /// Worker → supervisor: the state changed (mount, umount, remount).
    State { state: WorkerState },
    /// Successor → supervisor: send me the fd and state of `id`. A
    /// `standby` restores, reports `StandbyReady` and serves only on
    /// `Activate` (so a crash costs no process start).
    Takeover {
        id: String,
        pid: u32,
        #[serde(default)]
        standby: bool,
    },
    /// Standby → supervisor: restored, waiting for `Activate`.
    StandbyReady { id: String, pid: u32 },
    /// Supervisor → standby: the worker died; serve now.
    Activate,
    /// Supervisor → successor: the kept state, with the fd. `resend` asks
    /// for FUSE_NOTIFY_RESEND (the previous worker died with requests read
    /// but unanswered).
    Restore { state: WorkerState, resend: bool },
    /// Supervisor → worker: stop reading, answer what is in flight, exit
    /// without unmounting.
    Stop,
    /// Worker → supervisor: stopped; exiting now.
    Stopped,
    /// Successor of a virtio-fs worker → supervisor: restored; stop the
    /// old worker and hand me its live vhost-user connection.
    Handover { id: String },
    /// Old virtio-fs worker → supervisor (its answer to `Stop`), then
    /// supervisor → successor: the connection state with its fds
    /// ([`VhostUserState::fd_count`]). `None` to the successor: no live
    /// worker to take it from (after a crash): serve the listener only.
    VhostState { state: Option<VhostUserState> },
    /// Either way: the request cannot be served.
    Error { message: String },
}

impl WorkerMsg {
    /// Whether an fd travels with this message.
    pub fn carries_fd(&self) -> bool {
        self.fd_count() > 0
    }

    /// How many fds travel with this message (in one SCM_RIGHTS batch).
    pub fn fd_count(&self) -> usize {
        match self {
            WorkerMsg::Register { .. } | WorkerMsg::Restore { .. } => 1,
            WorkerMsg::VhostState { state: Some(s) } => s.fd_count(),
            _ => 0,
        }
    }
}

/// Encodes any message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg).map_err(|e| FrameError::Json(e.to_string()))?;
    encode_frame(&body)
}

/// Decodes one frame's body as `T`.
pub fn decode_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Json(e.to_string()))
}
