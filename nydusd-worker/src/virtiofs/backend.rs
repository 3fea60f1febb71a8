//! The vhost-user-fs device model: queue 0 is the hiprio queue, queues
//! 1..=N are request queues, each served by its own vring thread (the
//! library spawns one thread per `queues_per_thread` entry). Every
//! descriptor chain is one FUSE request handed to fuse-backend-rs's
//! `Server`; replies are written straight into guest memory by
//! `VirtioFsWriter` (file data goes from the blob cache into the guest's
//! buffers without a bounce buffer).
//!
//! The backend is `VhostUserBackend` (shared `&self`), not the `Mut`
//! flavour: the `Mut` flavour sits behind one lock, which would serialise
//! all queue threads.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::api::Vfs;
use fuse_backend_rs::transport::{FsCacheReqHandler, Reader, VirtioFsWriter};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringMutex, VringState, VringT};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::{DescriptorChain, QueueOwnedT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryLoadGuard, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::metrics::{InflightSlot, InflightTable};

/// Descriptors per queue; what QEMU's vhost-user-fs-pci offers by default.
pub const QUEUE_SIZE: usize = 1024;
/// Request queues are capped so the queue bitmasks fit in a u64 and a huge
/// --thread-num does not spawn idle threads by the hundred.
pub const MAX_REQUEST_QUEUES: usize = 16;

type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

/// One connection's device state. A new one is made per frontend
/// connection, so nothing negotiated with a previous guest leaks into the
/// next.
pub struct FsBackend {
    server: Arc<Server<Arc<Vfs>>>,
    /// The same atomic the library updates on SET_MEM_TABLE.
    mem: Mem,
    request_queues: usize,
    event_idx: AtomicBool,
    /// One inflight slot per vring thread (index = thread id), so
    /// `/api/v1/metrics/inflight` shows what the guest is waiting for.
    slots: Vec<InflightSlot>,
    exit: (EventConsumer, EventNotifier),
}

fn other(what: &str, e: impl std::fmt::Debug) -> io::Error {
    io::Error::other(format!("{what}: {e:?}"))
}

impl FsBackend {
    pub fn new(
        server: Arc<Server<Arc<Vfs>>>,
        mem: Mem,
        request_queues: usize,
        inflight: &Arc<InflightTable>,
    ) -> io::Result<Self> {
        let request_queues = request_queues.clamp(1, MAX_REQUEST_QUEUES);
        let slots = (0..=request_queues).map(|_| inflight.slot()).collect();
        Ok(FsBackend {
            server,
            mem,
            request_queues,
            event_idx: AtomicBool::new(false),
            slots,
            exit: new_event_consumer_and_notifier(EventFlag::NONBLOCK)?,
        })
    }

    /// Wakes every vring thread so it returns (the eventfd is shared and
    /// never read, so one write reaches them all).
    pub fn stop_threads(&self) {
        if let Err(e) = self.exit.1.notify() {
            log::warn!("virtio-fs: waking vring threads: {e}");
        }
    }

    /// Pops and answers every available chain of one queue.
    fn process_queue(&self, vring: &mut VringState<Mem>, thread: usize) -> io::Result<()> {
        let mem = self.mem.memory();
        let chains: Vec<_> = vring
            .get_queue_mut()
            .iter(mem.clone())
            .map_err(|e| other("virtqueue", e))?
            .collect();
        for chain in chains {
            let head = chain.head_index();
            // A request that cannot be parsed or answered still gets its
            // descriptor back (0 bytes written), so the guest is not left
            // waiting on a descriptor nobody will ever return.
            let len = match self.handle_chain(&mem, chain, thread) {
                Ok(len) => len,
                Err(e) => {
                    log::warn!("virtio-fs: request failed: {e}");
                    0
                }
            };
            vring
                .add_used(head, len)
                .map_err(|e| other("add_used", e))?;
            if !self.event_idx.load(Ordering::Relaxed) || vring.needs_notification().unwrap_or(true)
            {
                vring.signal_used_queue()?;
            }
        }
        Ok(())
    }

    fn handle_chain(
        &self,
        mem: &GuestMemoryLoadGuard<GuestMemoryMmap>,
        chain: DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap>>,
        thread: usize,
    ) -> io::Result<u32> {
        let reader = Reader::from_descriptor_chain(&**mem, chain.clone())
            .map_err(|e| other("request descriptors", e))?;
        let writer =
            VirtioFsWriter::new(&**mem, chain).map_err(|e| other("reply descriptors", e))?;
        let hook = self
            .slots
            .get(thread)
            .map(|s| s as &dyn fuse_backend_rs::api::server::MetricsHook);
        // No DAX: fuse-backend-rs 0.14 has no cache request handler for
        // vhost's backend channel, and we advertise no cache window.
        match self.server.handle_message(
            reader,
            writer.into(),
            None::<&mut dyn FsCacheReqHandler>,
            hook,
        ) {
            Ok(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
            // The guest gave a reply buffer too small for the answer.
            Err(fuse_backend_rs::Error::EncodeMessage(e)) => Err(other("reply", e)),
            Err(e) => Err(other("handle_message", e)),
        }
    }
}

impl VhostUserBackend for FsBackend {
    type Bitmap = ();
    type Vring = VringMutex;

    fn num_queues(&self) -> usize {
        1 + self.request_queues
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // MQ: QEMU asks how many queues we have. No BACKEND_REQ: it only
        // serves DAX mapping requests, which we do not make.
        VhostUserProtocolFeatures::MQ
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn update_memory(&self, _mem: Mem) -> io::Result<()> {
        // `self.mem` is the atomic the library just updated.
        Ok(())
    }

    /// Thread i serves queue i: the hiprio queue and each request queue
    /// get a thread of their own.
    fn queues_per_thread(&self) -> Vec<u64> {
        (0..self.num_queues()).map(|q| 1u64 << q).collect()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        Some((self.exit.0.try_clone().ok()?, self.exit.1.try_clone().ok()?))
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringMutex],
        thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(other("unexpected epoll event", evset));
        }
        // Each thread owns exactly one vring (see queues_per_thread), and
        // the library passes only that thread's vrings.
        let Some(vring) = vrings.first() else {
            return Err(other("no vring for event", device_event));
        };
        let mut vring = vring.get_mut();
        if self.event_idx.load(Ordering::Relaxed) {
            // With EVENT_IDX, re-check after enabling notifications so a
            // request that arrived meanwhile is not missed.
            loop {
                vring
                    .disable_notification()
                    .map_err(|e| other("disable_notification", e))?;
                self.process_queue(&mut vring, thread_id)?;
                if !vring
                    .enable_notification()
                    .map_err(|e| other("enable_notification", e))?
                {
                    break;
                }
            }
        } else {
            self.process_queue(&mut vring, thread_id)?;
        }
        Ok(())
    }
}
