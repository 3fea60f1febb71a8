//! One FUSE serving thread's end of `/dev/fuse`.
//!
//! fuse-backend-rs's `FuseChannel` gives each thread its own epoll set
//! watching the device without `EPOLLEXCLUSIVE`, so every request wakes
//! every idle thread; all but one then find the queue empty. On this
//! 2-core VM that cost more CPU than serving a cold `find` itself (57% of
//! the daemon's samples were in `epoll_wait`, mostly context switches).
//! Here each thread waits with `EPOLLEXCLUSIVE`, so a request wakes one.

use std::fs::File;
use std::os::fd::AsFd;

use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// A request fills at most this: what fuse-backend-rs negotiates in INIT
/// (256 pages of data plus a header page).
const BUF_SIZE: usize = 256 * 4096 + 0x1000;

const FUSE_EVENT: u64 = 1;
const STOP_EVENT: u64 = 2;

/// Tells every thread's channel to return: one write, seen by all (the
/// event is level-triggered and never read).
pub struct Stop(EventFd);

impl Stop {
    pub fn new() -> Result<Self, String> {
        EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map(Stop)
            .map_err(|e| format!("eventfd: {e}"))
    }

    pub fn fire(&self) -> Result<(), String> {
        self.0
            .write(1)
            .map(|_| ())
            .map_err(|e| format!("waking FUSE threads: {e}"))
    }
}

pub struct Channel {
    /// A dup of the session's (non-blocking) `/dev/fuse` fd.
    fuse: File,
    epoll: Epoll,
    buf: Vec<u8>,
}

impl Channel {
    pub fn new(fuse: &File, stop: &Stop) -> Result<Self, String> {
        let fuse = fuse
            .try_clone()
            .map_err(|e| format!("dup /dev/fuse: {e}"))?;
        let epoll =
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        let exclusive = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
        epoll
            .add(fuse.as_fd(), EpollEvent::new(exclusive, FUSE_EVENT))
            .and_then(|()| {
                epoll.add(
                    stop.0.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, STOP_EVENT),
                )
            })
            .map_err(|e| format!("epoll add: {e}"))?;
        Ok(Channel {
            fuse,
            epoll,
            buf: vec![0; BUF_SIZE],
        })
    }

    /// The next request and a writer for its reply, or `None` once stopped
    /// or unmounted.
    pub fn next(&mut self) -> Result<Option<(Reader<'_>, FuseDevWriter<'_>)>, String> {
        use std::os::fd::AsRawFd;
        let fd = self.fuse.as_raw_fd();
        loop {
            let mut events = [EpollEvent::empty(); 2];
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(format!("epoll_wait: {e}")),
            };
            if events[..n].iter().any(|e| e.data() == STOP_EVENT) {
                return Ok(None);
            }
            if events[..n]
                .iter()
                .any(|e| e.events().contains(EpollFlags::EPOLLERR))
            {
                // The connection is gone (unmounted or aborted).
                return Ok(None);
            }
            let len = match nix::unistd::read(self.fuse.as_fd(), &mut self.buf) {
                Ok(len) => len,
                // Another thread took it, or it was interrupted meanwhile.
                Err(Errno::EAGAIN | Errno::EINTR | Errno::ENOENT) => continue,
                Err(Errno::ENODEV) => return Ok(None),
                Err(e) => return Err(format!("reading /dev/fuse: {e}")),
            };
            // The reply is written over the request, as fuse-backend-rs's
            // own channel does: `Server` has parsed all of a request before
            // it writes any of the reply.
            let whole = self.buf.as_mut_ptr();
            let cap = self.buf.len();
            // SAFETY: `whole..whole+cap` is our buffer, alive and not
            // otherwise borrowed while the reader and writer live (both
            // borrow `self` mutably through the returned lifetime). The two
            // views alias; see above for why that is sound in use.
            let (request, reply) = unsafe {
                (
                    std::slice::from_raw_parts_mut(whole, len),
                    std::slice::from_raw_parts_mut(whole, cap),
                )
            };
            let reader = Reader::from_fuse_buffer(FuseBuf::new(request))
                .map_err(|e| format!("FUSE request: {e}"))?;
            let writer = FuseDevWriter::new(fd, reply).map_err(|e| format!("FUSE reply: {e}"))?;
            return Ok(Some((reader, writer)));
        }
    }
}
