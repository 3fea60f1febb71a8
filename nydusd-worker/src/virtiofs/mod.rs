//! The virtio-fs transport: a vhost-user-fs backend on a unix socket that a
//! VMM (QEMU's `vhost-user-fs-pci`, Cloud Hypervisor, Dragonball) connects
//! to. It serves the daemon's `Vfs`, so pseudo mounts made through the API
//! appear in the guest like they do on a FUSE mount.
//!
//! One frontend at a time (vhost-user is point to point). When a guest goes
//! away, the socket stays bound and the next frontend is accepted with a
//! fresh device state: a VM restart or a second VM reusing the socket just
//! works, which suits a long-running daemon better than exiting after the
//! first guest (as QEMU's C virtiofsd does).
//!
//! The tag (`mount -t virtiofs nydus /mnt`) is not ours to set: the VMM's
//! device advertises it (`-device vhost-user-fs-pci,tag=nydus`).

mod device;
mod handover;
mod queue;
#[cfg(test)]
mod tests_frontend;

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fuse_backend_rs::api::filesystem::FileSystem;
use fuse_backend_rs::api::server::Server;

use nydus_protocol::handoff::{VhostUserState, VHOST_STATE_VERSION};
use vhost::vhost_user::{BackendReqHandler, Error as VuError};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::daemon::{Event, VfsView};
use crate::metrics::InflightTable;
use device::{Device, SharedDevice};
use queue::{poll_in, Serving};

/// A bound vhost-user-fs socket and the thread serving frontends on it.
pub struct VirtiofsService {
    sock: PathBuf,
    shared: Arc<Shared>,
}

/// What the link of a supervised worker uses to hand the live device over.
#[derive(Clone)]
pub struct VhostHandle(Arc<Shared>);

/// The connection a stopped service thread leaves behind.
type Frozen = Option<(SharedDevice, UnixStream)>;

struct Shared {
    /// Written once, never read: every poller sees it from then on.
    stop: EventFd,
    thread: Mutex<Option<JoinHandle<Result<Frozen, String>>>>,
    /// The socket now belongs to a successor: leave its file at exit.
    handed_over: AtomicBool,
}

/// A device from a predecessor: the state and fds it sent.
pub type Handover = (VhostUserState, Vec<File>);

/// Binds `sock`, refusing to steal it from a live listener. A stale socket
/// file (nobody accepts on it) is replaced; any other kind of file is left
/// alone.
pub fn bind(sock: &Path) -> Result<UnixListener, String> {
    let shown = sock.display();
    match std::fs::symlink_metadata(sock) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(sock) {
            Ok(_) => {
                return Err(format!(
                    "--sock {shown}: socket is in use (another process is listening on it)"
                ))
            }
            Err(_) => std::fs::remove_file(sock)
                .map_err(|e| format!("--sock {shown}: removing the stale socket: {e}"))?,
        },
        Ok(_) => {
            return Err(format!(
                "--sock {shown}: exists and is not a socket; remove it or pick another path"
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("--sock {shown}: {e}")),
    }
    UnixListener::bind(sock).map_err(|e| match e.kind() {
        ErrorKind::NotFound => {
            format!("--sock {shown}: the directory does not exist; create it first")
        }
        _ => format!("--sock {shown}: {e}"),
    })
}

impl VirtiofsService {
    /// Serves frontends on `listener` (from [`bind`], or handed over) until
    /// the process exits or the device is handed over; `handover` is a
    /// predecessor's live connection, served first. A listener failure is
    /// reported on `events`.
    pub fn start(
        sock: &Path,
        listener: UnixListener,
        vfs: Arc<VfsView>,
        request_queues: usize,
        events: Sender<Event>,
        inflight: Arc<InflightTable>,
        handover: Option<Handover>,
    ) -> Result<(Self, VhostHandle), String> {
        let serving = Serving {
            server: Arc::new(Server::new(vfs.clone())),
            mem: GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        };
        let first = match handover {
            Some((state, fds)) => {
                let (dev, sock) = handover::restore(
                    serving.clone(),
                    inflight.clone(),
                    request_queues,
                    &state,
                    fds,
                )?;
                sock.map(|s| (dev, s))
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            stop: EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?,
            thread: Mutex::new(None),
            handed_over: AtomicBool::new(false),
        });
        let stop = shared
            .stop
            .try_clone()
            .map_err(|e| format!("eventfd: {e}"))?;
        let handle = std::thread::Builder::new()
            .name("vhost-user".into())
            .spawn(move || {
                let ctx = Ctx {
                    serving,
                    inflight,
                    request_queues,
                    vfs,
                    stop,
                };
                let r = ctx.serve(&listener, first);
                if let Err(why) = &r {
                    let _ = events.send(Event::FuseStopped(Some(why.clone())));
                }
                r
            })
            .map_err(|e| format!("starting the vhost-user thread: {e}"))?;
        *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok((
            VirtiofsService {
                sock: sock.to_path_buf(),
                shared: shared.clone(),
            },
            VhostHandle(shared),
        ))
    }

    /// Ends the service on the main loop's `event` (every event ends it:
    /// there is no mount to leave behind) and gives the exit code. Removes
    /// the socket file so no VMM dials a dead daemon, unless a successor
    /// serves it now; the threads end with the process.
    pub fn stop(self, event: Event) -> ExitCode {
        let code = match event {
            Event::FuseStopped(Some(e)) => {
                log::error!("virtio-fs service failed: {e}");
                ExitCode::FAILURE
            }
            other => {
                log::info!("{other:?}: closing {}", self.sock.display());
                ExitCode::SUCCESS
            }
        };
        if self.shared.handed_over.load(Ordering::SeqCst) {
            return code;
        }
        if let Err(e) = std::fs::remove_file(&self.sock) {
            if e.kind() != ErrorKind::NotFound {
                log::warn!("removing {}: {e}", self.sock.display());
            }
        }
        code
    }
}

impl VhostHandle {
    /// Stops serving between two vhost-user messages (nothing half read
    /// stays buffered here), stops every ring after the chain in hand, and
    /// describes the device with its fds for a successor. Once only.
    pub fn freeze(&self) -> Result<Handover, String> {
        let sh = &self.0;
        sh.stop
            .write(1)
            .map_err(|e| format!("stopping the vhost-user thread: {e}"))?;
        let handle = sh
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or("the virtio-fs device was already handed over")?;
        let frozen = handle
            .join()
            .map_err(|_| "the vhost-user thread panicked".to_string())??;
        sh.handed_over.store(true, Ordering::SeqCst);
        match frozen {
            Some((dev, stream)) => {
                let mut dev = dev.lock().unwrap_or_else(|e| e.into_inner());
                handover::capture(&mut dev, Some(&stream))
            }
            None => Ok((
                VhostUserState {
                    version: VHOST_STATE_VERSION,
                    ..VhostUserState::default()
                },
                Vec::new(),
            )),
        }
    }
}

struct Ctx {
    serving: Serving,
    inflight: Arc<InflightTable>,
    request_queues: usize,
    vfs: Arc<VfsView>,
    stop: EventFd,
}

/// How one frontend connection ended.
enum ConnEnd {
    /// The frontend went away.
    Gone,
    /// A handover stopped us; the connection stays open for the successor.
    Stopped,
}

impl Ctx {
    /// Serves `first`, then one frontend at a time from `listener`. `Ok`
    /// with the live connection when stopped; `Err` only when the listener
    /// failed (the daemon cannot go on).
    fn serve(
        &self,
        listener: &UnixListener,
        mut first: Option<(Device, UnixStream)>,
    ) -> Result<Frozen, String> {
        loop {
            let (dev, stream) = match first.take() {
                Some(c) => c,
                None => {
                    let ready = poll_in(&[listener.as_raw_fd(), self.stop.as_raw_fd()])
                        .map_err(|e| format!("waiting on the vhost-user socket: {e}"))?;
                    if ready[1] {
                        return Ok(None);
                    }
                    if !ready[0] {
                        continue;
                    }
                    let (s, _) = listener
                        .accept()
                        .map_err(|e| format!("accepting on the vhost-user socket: {e}"))?;
                    log::info!("virtio-fs: frontend connected");
                    let dev = Device::new(
                        self.serving.clone(),
                        self.inflight.clone(),
                        self.request_queues,
                    );
                    (dev, s)
                }
            };
            let dev = Arc::new(Mutex::new(dev));
            match self.serve_conn(&dev, &stream) {
                ConnEnd::Stopped => return Ok(Some((dev, stream))),
                ConnEnd::Gone => {
                    // The rings of this connection stop; a request they are
                    // answering finishes first.
                    dev.lock().unwrap_or_else(|e| e.into_inner()).stop_all();
                    // The next guest starts with FUSE_INIT, which the Vfs
                    // refuses once initialised; a guest that went away
                    // without unmounting never sent DESTROY, so do it here.
                    // RAFS keeps no per-session state, so nothing is lost.
                    self.vfs.destroy();
                    log::info!("virtio-fs: frontend disconnected; waiting for the next one");
                }
            }
        }
    }

    fn serve_conn(&self, dev: &SharedDevice, stream: &UnixStream) -> ConnEnd {
        let sock = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => {
                log::error!("virtio-fs: dup of the frontend socket: {e}");
                return ConnEnd::Gone;
            }
        };
        let mut handler = BackendReqHandler::from_stream(sock, dev.clone());
        loop {
            // Only between messages: a handover must not leave part of one
            // read here and the rest for the successor.
            match poll_in(&[stream.as_raw_fd(), self.stop.as_raw_fd()]) {
                Ok(r) if r[1] => return ConnEnd::Stopped,
                Ok(r) if !r[0] => continue,
                Ok(_) => {}
                Err(e) => {
                    log::error!("virtio-fs: waiting on the frontend socket: {e}");
                    return ConnEnd::Gone;
                }
            }
            match handler.handle_request() {
                Ok(()) => {}
                Err(VuError::Disconnected | VuError::PartialMessage | VuError::SocketBroken(_)) => {
                    return ConnEnd::Gone
                }
                // The message was read whole; the device refused it.
                Err(
                    e @ (VuError::ReqHandlerError(_)
                    | VuError::InvalidOperation(_)
                    | VuError::InvalidParam
                    | VuError::InactiveFeature(_)
                    | VuError::InactiveOperation(_)),
                ) => log::warn!("virtio-fs: frontend request refused: {e}"),
                Err(e) => {
                    log::warn!("virtio-fs: frontend connection ended: {e}");
                    return ConnEnd::Gone;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_refuses_live_and_foreign_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("vfs.sock");
        let live = bind(&sock).expect("first bind");
        let err = bind(&sock).expect_err("socket in use");
        assert!(err.contains("in use"), "{err}");
        drop(live);
        // The file of a closed listener is stale and gets replaced.
        let _again = bind(&sock).expect("stale socket replaced");

        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").expect("write");
        let err = bind(&file).expect_err("a regular file");
        assert!(err.contains("not a socket"), "{err}");
        assert!(file.exists());

        let err = bind(&dir.path().join("missing/vfs.sock")).expect_err("missing dir");
        assert!(err.contains("does not exist"), "{err}");
    }
}
