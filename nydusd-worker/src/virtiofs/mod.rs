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

mod backend;

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use fuse_backend_rs::api::filesystem::FileSystem;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::api::Vfs;
use vhost::vhost_user::{Error as VuError, Listener};
use vhost_user_backend::{Error as DaemonError, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::daemon::Event;
use crate::metrics::InflightTable;
use backend::FsBackend;

/// A bound vhost-user-fs socket and the thread accepting frontends on it.
pub struct VirtiofsService {
    sock: PathBuf,
}

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
    /// Serves frontends on `listener` (from [`bind`]) until the process
    /// exits. A listener failure is reported on `events`.
    pub fn start(
        sock: &Path,
        listener: UnixListener,
        vfs: Arc<Vfs>,
        request_queues: usize,
        events: Sender<Event>,
        inflight: Arc<InflightTable>,
    ) -> Result<Self, String> {
        // From a std listener, so vhost does not unlink the path on drop:
        // removal is ours, at exit.
        let mut listener = Listener::from(listener);
        let server = Arc::new(Server::new(vfs.clone()));
        std::thread::Builder::new()
            .name("vhost-accept".into())
            .spawn(move || {
                let why = loop {
                    if let Err(e) = serve_one(&mut listener, &server, request_queues, &inflight) {
                        break e;
                    }
                    // The next guest starts with FUSE_INIT, which the Vfs
                    // refuses once initialised; a guest that went away
                    // without unmounting never sent DESTROY, so do it here.
                    // RAFS keeps no per-session state, so nothing is lost.
                    vfs.destroy();
                };
                let _ = events.send(Event::FuseStopped(Some(why)));
            })
            .map_err(|e| format!("starting the vhost-user thread: {e}"))?;
        Ok(VirtiofsService {
            sock: sock.to_path_buf(),
        })
    }

    /// Ends the service on the main loop's `event` (every event ends it:
    /// there is no mount to leave behind) and gives the exit code. Removes
    /// the socket file so no VMM dials a dead daemon; the threads end with
    /// the process.
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
        if let Err(e) = std::fs::remove_file(&self.sock) {
            if e.kind() != ErrorKind::NotFound {
                log::warn!("removing {}: {e}", self.sock.display());
            }
        }
        code
    }
}

/// Accepts one frontend and serves it until it disconnects. `Err` only when
/// the listener itself failed (the daemon cannot go on).
fn serve_one(
    listener: &mut Listener,
    server: &Arc<Server<Arc<Vfs>>>,
    request_queues: usize,
    inflight: &Arc<InflightTable>,
) -> Result<(), String> {
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    let backend = Arc::new(
        FsBackend::new(server.clone(), mem.clone(), request_queues, inflight)
            .map_err(|e| format!("virtio-fs device: {e}"))?,
    );
    let mut daemon = VhostUserDaemon::new("vhost-fs".into(), backend.clone(), mem)
        .map_err(|e| format!("virtio-fs device: {e}"))?;
    match daemon.start(listener) {
        Ok(()) => {}
        Err(DaemonError::CreateBackendListener(e)) => {
            backend.stop_threads();
            return Err(format!("accepting on the vhost-user socket: {e}"));
        }
        Err(e) => {
            // Could not start the request thread for this frontend; the
            // next one may fare better.
            log::error!("virtio-fs: frontend rejected: {e}");
            backend.stop_threads();
            return Ok(());
        }
    }
    log::info!("virtio-fs: frontend connected");
    match daemon.wait() {
        Ok(())
        | Err(DaemonError::HandleRequest(VuError::Disconnected))
        | Err(DaemonError::HandleRequest(VuError::PartialMessage)) => {
            log::info!("virtio-fs: frontend disconnected; waiting for the next one");
        }
        Err(e) => log::warn!("virtio-fs: frontend connection ended: {e}; waiting for the next one"),
    }
    // The vring threads of this connection go away; a request they are
    // answering finishes first (the guest memory mapping outlives them).
    backend.stop_threads();
    Ok(())
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
