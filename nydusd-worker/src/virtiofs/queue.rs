//! One thread per started vring: waits on the kick eventfd, pops chains
//! one at a time and answers each (a FUSE request to fuse-backend-rs's
//! `Server`, the reply written straight into guest memory), signals the
//! call eventfd. Stopping is between chains: the thread hands its `Queue`
//! back, and its indices are exactly what the guest has been answered.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::daemon::VfsView;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FsCacheReqHandler, Reader, VirtioFsWriter};
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryLoadGuard, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::metrics::InflightSlot;

pub type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

/// The call eventfd, shared so SET_VRING_CALL can swap it under a running
/// thread (QEMU does when the guest masks the queue's MSI-X vector).
pub type CallFd = Arc<Mutex<Option<File>>>;

/// What a queue thread serves with.
#[derive(Clone)]
pub struct Serving {
    pub server: Arc<Server<Arc<VfsView>>>,
    pub mem: Mem,
}

pub struct QueueThread {
    stop: Arc<AtomicBool>,
    wake: EventFd,
    handle: JoinHandle<Queue>,
}

impl QueueThread {
    /// Starts serving `queue`; `kick` is a dup the thread owns.
    pub fn start(
        index: usize,
        queue: Queue,
        kick: File,
        call: CallFd,
        serving: Serving,
        slot: Option<InflightSlot>,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = EventFd::new(EFD_NONBLOCK)?;
        let (stop2, wake2) = (stop.clone(), wake.try_clone()?);
        let handle = std::thread::Builder::new()
            .name(format!("vring-{index}"))
            .spawn(move || {
                let mut w = Worker {
                    queue,
                    kick,
                    call,
                    serving,
                    slot,
                    stop: stop2,
                };
                w.run(&wake2);
                w.queue
            })?;
        Ok(QueueThread { stop, wake, handle })
    }

    /// Stops after the chain in hand is answered; gives the queue back.
    pub fn stop(self) -> Queue {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
        match self.handle.join() {
            Ok(q) => q,
            // A panicking request handler: the indices are lost with it.
            Err(_) => {
                log::error!("virtio-fs: a vring thread panicked; its queue is reset");
                Queue::new(super::device::QUEUE_SIZE as u16).expect("valid queue size")
            }
        }
    }
}

struct Worker {
    queue: Queue,
    kick: File,
    call: CallFd,
    serving: Serving,
    slot: Option<InflightSlot>,
    stop: Arc<AtomicBool>,
}

/// Waits until one of `fds` is readable; returns which are.
pub fn poll_in(fds: &[RawFd]) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `pfds` is a valid array of pollfd of the given length,
        // alive for the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n >= 0 {
            return Ok(pfds.iter().map(|p| p.revents != 0).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Worker {
    fn run(&mut self, wake: &EventFd) {
        // Kicks may have come before this thread existed (set-up, or the
        // gap of a handover): look once before waiting.
        loop {
            if let Err(e) = self.drain() {
                log::error!("virtio-fs: vring stopped: {e}");
                return;
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            match poll_in(&[self.kick.as_raw_fd(), wake.as_raw_fd()]) {
                Ok(ready) => {
                    if ready[0] {
                        let mut b = [0u8; 8];
                        let _ = self.kick.read(&mut b);
                    }
                }
                Err(e) => {
                    log::error!("virtio-fs: waiting for a kick: {e}");
                    return;
                }
            }
        }
    }

    /// Answers every available chain; with EVENT_IDX, re-checks after
    /// re-enabling notifications so a request that raced is not missed.
    fn drain(&mut self) -> io::Result<()> {
        let mem = self.serving.mem.memory();
        let event_idx = self.queue.event_idx_enabled();
        loop {
            if event_idx {
                self.queue
                    .disable_notification(&*mem)
                    .map_err(|e| io::Error::other(format!("disable_notification: {e:?}")))?;
            }
            while !self.stop.load(Ordering::SeqCst) {
                let Some(chain) = self.queue.pop_descriptor_chain(mem.clone()) else {
                    break;
                };
                self.answer(&mem, chain)?;
            }
            if self.stop.load(Ordering::SeqCst) || !event_idx {
                return Ok(());
            }
            let more = self
                .queue
                .enable_notification(&*mem)
                .map_err(|e| io::Error::other(format!("enable_notification: {e:?}")))?;
            if !more {
                return Ok(());
            }
        }
    }

    fn answer(
        &mut self,
        mem: &GuestMemoryLoadGuard<GuestMemoryMmap>,
        chain: DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap>>,
    ) -> io::Result<()> {
        let head = chain.head_index();
        // A request that cannot be parsed or answered still gets its
        // descriptor back (0 bytes written), so the guest never waits on a
        // descriptor nobody will return.
        let len = self.handle(mem, chain).unwrap_or_else(|e| {
            log::warn!("virtio-fs: request failed: {e}");
            0
        });
        self.queue
            .add_used(&**mem, head, len)
            .map_err(|e| io::Error::other(format!("add_used: {e:?}")))?;
        let notify = !self.queue.event_idx_enabled()
            || self.queue.needs_notification(&**mem).unwrap_or(true);
        if notify {
            if let Some(call) = self.call.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = (&*call).write(&1u64.to_ne_bytes());
            }
        }
        Ok(())
    }

    fn handle(
        &self,
        mem: &GuestMemoryLoadGuard<GuestMemoryMmap>,
        chain: DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap>>,
    ) -> io::Result<u32> {
        let err = |what: &str, e: &dyn std::fmt::Debug| io::Error::other(format!("{what}: {e:?}"));
        let reader = Reader::from_descriptor_chain(&**mem, chain.clone())
            .map_err(|e| err("request descriptors", &e))?;
        let writer =
            VirtioFsWriter::new(&**mem, chain).map_err(|e| err("reply descriptors", &e))?;
        let hook = self
            .slot
            .as_ref()
            .map(|s| s as &dyn fuse_backend_rs::api::server::MetricsHook);
        // No DAX: no cache window is advertised, so no cache requests.
        match self.serving.server.handle_message(
            reader,
            writer.into(),
            None::<&mut dyn FsCacheReqHandler>,
            hook,
        ) {
            Ok(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => Err(err("handle_message", &e)),
        }
    }
}
