//! The live vhost-user connection of a virtio-fs worker, as handed from
//! an old worker to its successor. Plain numbers only: the fds travel
//! beside the frame (SCM_RIGHTS), in the order [`VhostUserState::fd_count`]
//! documents, and guest memory is never copied (the successor maps the
//! same memfds).

use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning; a successor refuses other versions.
pub const VHOST_STATE_VERSION: u32 = 1;

/// One guest memory region as SET_MEM_TABLE described it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemRegionState {
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    /// The VMM's address of the region; vring addresses are given in it.
    pub userspace_addr: u64,
    pub mmap_offset: u64,
}

/// One vring: its set-up and where the device was in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VringHandover {
    pub num: u16,
    /// VMM user addresses, as SET_VRING_ADDR gave them (0: not set).
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// The next available index to pop and the next used index to fill.
    pub next_avail: u16,
    pub next_used: u16,
    /// Between SET_VRING_KICK and GET_VRING_BASE.
    pub started: bool,
    pub enabled: bool,
    /// Which eventfds follow in the fd list.
    pub kick: bool,
    pub call: bool,
    pub err: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostUserState {
    pub version: u32,
    pub acked_features: u64,
    pub acked_protocol_features: u64,
    /// Whether a frontend is connected (its socket is the first fd).
    pub connected: bool,
    pub regions: Vec<MemRegionState>,
    pub vrings: Vec<VringHandover>,
    /// The Vfs snapshot at stop time (hex): the guest may have mounted
    /// (FUSE INIT) after the worker registered.
    #[serde(default)]
    pub vfs_state: String,
}

/// SCM_RIGHTS allows 253 fds per message; far more than any device here.
pub const MAX_VHOST_FDS: usize = 200;

impl VhostUserState {
    /// Fds beside the frame: the connection socket (if connected), one per
    /// region, then per vring its kick, call, err eventfds (those flagged).
    pub fn fd_count(&self) -> usize {
        usize::from(self.connected)
            + self.regions.len()
            + self
                .vrings
                .iter()
                .map(|v| usize::from(v.kick) + usize::from(v.call) + usize::from(v.err))
                .sum::<usize>()
    }
}
