//! Our vhost-user-fs device: the slave side of the vhost-user protocol as
//! far as virtio-fs needs it. Everything the frontend set up is kept in
//! plain fields (features, memory regions with their fds, each vring's
//! addresses, indices and eventfds), so the live device can be handed to
//! a successor process ([`super::handover`]); vhost-user-backend keeps it
//! private, which is why it is not used.
//!
//! Queue 0 is the hiprio queue, 1..=N are request queues; each started and
//! enabled vring is served by its own thread ([`super::queue`]).

use std::fs::File;
use std::sync::{Arc, Mutex};

use nydus_protocol::handoff::MemRegionState;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Error as VuError, GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut,
};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{
    FileOffset, GuestAddress, GuestAddressSpace, GuestMemoryMmap, GuestRegionMmap, MmapRegion,
};

use super::queue::{CallFd, QueueThread, Serving};
use crate::metrics::InflightTable;

/// Descriptors per queue; what QEMU's vhost-user-fs-pci offers by default.
pub const QUEUE_SIZE: usize = 1024;
/// Request queues are capped so a huge --thread-num does not make a
/// device with hundreds of idle queues.
pub const MAX_REQUEST_QUEUES: usize = 16;

pub const FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_RING_F_INDIRECT_DESC)
    | (1 << VIRTIO_RING_F_EVENT_IDX)
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// A guest memory region and the fd it is mapped from.
pub struct Region {
    pub meta: MemRegionState,
    pub file: File,
}

#[derive(Default)]
pub struct Vring {
    pub num: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// Valid while no thread runs the ring (the thread owns the queue).
    pub next_avail: u16,
    pub next_used: u16,
    pub started: bool,
    pub enabled: bool,
    pub kick: Option<File>,
    pub call: CallFd,
    pub err: Option<File>,
    pub running: Option<QueueThread>,
}

pub struct Device {
    pub serving: Serving,
    inflight: Arc<InflightTable>,
    pub acked_features: u64,
    pub acked_protocol_features: u64,
    pub regions: Vec<Region>,
    pub vrings: Vec<Vring>,
}

fn bad(what: &'static str) -> VuError {
    VuError::InvalidOperation(what)
}

fn io_err(e: impl std::fmt::Display) -> VuError {
    VuError::ReqHandlerError(std::io::Error::other(e.to_string()))
}

impl Device {
    pub fn new(serving: Serving, inflight: Arc<InflightTable>, request_queues: usize) -> Self {
        let n = 1 + request_queues.clamp(1, MAX_REQUEST_QUEUES);
        Device {
            serving,
            inflight,
            acked_features: 0,
            acked_protocol_features: 0,
            regions: Vec::new(),
            vrings: (0..n).map(|_| Vring::default()).collect(),
        }
    }

    pub fn event_idx(&self) -> bool {
        self.acked_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0
    }

    fn vring(&mut self, index: u32) -> VuResult<&mut Vring> {
        self.vrings
            .get_mut(index as usize)
            .ok_or(VuError::InvalidParam)
    }

    /// Maps the regions into a new guest memory; threads pick it up at
    /// their next chain (the old mapping lives while a chain uses it).
    pub fn map_regions(&mut self) -> Result<(), String> {
        let mut mapped = Vec::new();
        for r in &self.regions {
            let file = r
                .file
                .try_clone()
                .map_err(|e| format!("dup of a region fd: {e}"))?;
            let size = usize::try_from(r.meta.memory_size).map_err(|_| "region too large")?;
            let mapping = MmapRegion::<()>::build(
                Some(FileOffset::new(file, r.meta.mmap_offset)),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
            )
            .map_err(|e| format!("mapping guest memory: {e}"))?;
            let region = GuestRegionMmap::new(mapping, GuestAddress(r.meta.guest_phys_addr))
                .ok_or("guest memory region overflows the address space")?;
            mapped.push(region);
        }
        let mem = GuestMemoryMmap::from_regions(mapped)
            .map_err(|e| format!("guest memory layout: {e}"))?;
        self.serving
            .mem
            .lock()
            .map_err(|_| "memory lock poisoned")?
            .replace(mem);
        Ok(())
    }

    /// A VMM address (as vring addresses are given) to a guest address.
    fn to_guest(&self, uaddr: u64) -> Option<GuestAddress> {
        self.regions.iter().find_map(|r| {
            let m = &r.meta;
            (uaddr >= m.userspace_addr && uaddr - m.userspace_addr < m.memory_size)
                .then(|| GuestAddress(uaddr - m.userspace_addr + m.guest_phys_addr))
        })
    }

    /// Stops ring `i`'s thread (after the chain in hand) and keeps its
    /// indices.
    pub fn stop_ring(&mut self, i: usize) {
        let Some(v) = self.vrings.get_mut(i) else {
            return;
        };
        if let Some(t) = v.running.take() {
            let q = t.stop();
            v.next_avail = q.next_avail();
            v.next_used = q.next_used();
        }
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.vrings.len() {
            self.stop_ring(i);
        }
    }

    /// Starts ring `i` if it is set up, started and enabled.
    pub fn try_start(&mut self, i: usize) -> Result<(), String> {
        let event_idx = self.event_idx();
        let v = &self.vrings[i];
        if v.running.is_some() || !v.started || !v.enabled || self.regions.is_empty() {
            return Ok(());
        }
        let Some(kick) = v.kick.as_ref() else {
            return Ok(());
        };
        let addr = |a: u64, what: &str| {
            self.to_guest(a)
                .ok_or_else(|| format!("vring {i}: {what} address {a:#x} is outside guest memory"))
        };
        let (desc, avail, used) = (
            addr(v.desc, "descriptor")?,
            addr(v.avail, "available ring")?,
            addr(v.used, "used ring")?,
        );
        let mut q = Queue::new(QUEUE_SIZE as u16).map_err(|e| format!("{e:?}"))?;
        q.set_size(v.num);
        q.set_desc_table_address(Some(desc.0 as u32), Some((desc.0 >> 32) as u32));
        q.set_avail_ring_address(Some(avail.0 as u32), Some((avail.0 >> 32) as u32));
        q.set_used_ring_address(Some(used.0 as u32), Some((used.0 >> 32) as u32));
        q.set_next_avail(v.next_avail);
        q.set_next_used(v.next_used);
        q.set_event_idx(event_idx);
        q.set_ready(true);
        if !q.is_valid(&*self.serving.mem.memory()) {
            return Err(format!("vring {i}: size or addresses are invalid"));
        }
        let kick = kick
            .try_clone()
            .map_err(|e| format!("dup of a kick fd: {e}"))?;
        let t = QueueThread::start(
            i,
            q,
            kick,
            v.call.clone(),
            self.serving.clone(),
            Some(self.inflight.slot()),
        )
        .map_err(|e| format!("starting the vring {i} thread: {e}"))?;
        self.vrings[i].running = Some(t);
        Ok(())
    }

    fn restart(&mut self, i: usize) -> VuResult<()> {
        self.stop_ring(i);
        self.try_start(i).map_err(io_err)
    }
}

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.stop_all();
        for v in &mut self.vrings {
            *v = Vring::default();
        }
        self.acked_features = 0;
        Ok(())
    }

    fn reset_device(&mut self) -> VuResult<()> {
        self.reset_owner()
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(FEATURES)
    }

    fn set_features(&mut self, features: u64) -> VuResult<()> {
        if features & !FEATURES != 0 {
            return Err(VuError::InvalidParam);
        }
        self.acked_features = features;
        // Without VHOST_USER_F_PROTOCOL_FEATURES a ring is enabled as soon
        // as it starts (there is no SET_VRING_ENABLE).
        if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
            for v in &mut self.vrings {
                v.enabled = true;
            }
        }
        Ok(())
    }

    fn set_mem_table(&mut self, ctx: &[VhostUserMemoryRegion], files: Vec<File>) -> VuResult<()> {
        if ctx.len() != files.len() {
            return Err(VuError::InvalidParam);
        }
        self.regions = ctx
            .iter()
            .zip(files)
            .map(|(r, file)| Region {
                meta: MemRegionState {
                    guest_phys_addr: r.guest_phys_addr,
                    memory_size: r.memory_size,
                    userspace_addr: r.user_addr,
                    mmap_offset: r.mmap_offset,
                },
                file,
            })
            .collect();
        self.map_regions().map_err(io_err)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        if num == 0 || num as usize > QUEUE_SIZE || !num.is_power_of_two() {
            return Err(VuError::InvalidParam);
        }
        self.vring(index)?.num = num as u16;
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        let v = self.vring(index)?;
        (v.desc, v.used, v.avail) = (descriptor, used, available);
        self.restart(index as usize)
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let v = self.vring(index)?;
        // The used index restarts where the available one does: nothing
        // is in flight across a stop.
        v.next_avail = base as u16;
        v.next_used = base as u16;
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        self.vring(index)?;
        self.stop_ring(index as usize);
        let v = self.vring(index)?;
        v.started = false;
        v.kick = None;
        Ok(VhostUserVringState::new(index, u32::from(v.next_avail)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let v = self.vring(u32::from(index))?;
        v.kick = fd;
        v.started = true;
        self.restart(usize::from(index))
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let v = self.vring(u32::from(index))?;
        *v.call.lock().unwrap_or_else(|e| e.into_inner()) = fd;
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.vring(u32::from(index))?.err = fd;
        Ok(())
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        // MQ: QEMU asks how many queues we have. No BACKEND_REQ: it only
        // serves DAX mapping requests, which we do not make.
        Ok(VhostUserProtocolFeatures::MQ)
    }

    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        self.acked_protocol_features = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(self.vrings.len() as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        self.vring(index)?.enabled = enable;
        if enable {
            self.restart(index as usize)
        } else {
            self.stop_ring(index as usize);
            Ok(())
        }
    }

    fn get_config(&mut self, _: u32, _: u32, _: VhostUserConfigFlags) -> VuResult<Vec<u8>> {
        Err(bad("GET_CONFIG: the VMM owns the virtio-fs config (tag)"))
    }

    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> VuResult<()> {
        Err(bad("SET_CONFIG is not supported"))
    }

    fn set_gpu_socket(&mut self, _: GpuBackend) -> VuResult<()> {
        Err(bad("not a GPU device"))
    }

    fn get_shared_object(&mut self, _: VhostUserSharedMsg) -> VuResult<File> {
        Err(bad("shared objects are not supported"))
    }

    fn get_inflight_fd(&mut self, _: &VhostUserInflight) -> VuResult<(VhostUserInflight, File)> {
        Err(bad("inflight tracking is not supported"))
    }

    fn set_inflight_fd(&mut self, _: &VhostUserInflight, _: File) -> VuResult<()> {
        Err(bad("inflight tracking is not supported"))
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Err(bad("CONFIGURE_MEM_SLOTS is not supported"))
    }

    fn add_mem_region(&mut self, _: &VhostUserSingleMemoryRegion, _: File) -> VuResult<()> {
        Err(bad("CONFIGURE_MEM_SLOTS is not supported"))
    }

    fn remove_mem_region(&mut self, _: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        Err(bad("CONFIGURE_MEM_SLOTS is not supported"))
    }

    fn set_device_state_fd(
        &mut self,
        _: VhostTransferStateDirection,
        _: VhostTransferStatePhase,
        _: File,
    ) -> VuResult<Option<File>> {
        Err(bad("device state migration is not supported"))
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        Err(bad("device state migration is not supported"))
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        Err(bad("no shared memory regions (no DAX)"))
    }

    fn set_log_base(&mut self, _: &VhostUserLog, _: File) -> VuResult<()> {
        Err(bad("dirty logging (live migration) is not supported"))
    }
}

/// The lock the request handler goes through; also held by a handover.
pub type SharedDevice = Arc<Mutex<Device>>;
