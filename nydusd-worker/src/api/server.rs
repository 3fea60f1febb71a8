//! Transport: a unix-socket listener served by hyper on a one-thread tokio
//! runtime of its own, so the API never competes with the FUSE threads for
//! more than one core and never blocks them.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::{oneshot, Mutex, Semaphore};

use super::routes::{handle, Shared};
use super::DaemonControl;

/// A client that sends headers this slowly is gone or hostile.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections served at once; more wait in the listen backlog, so a
/// runaway client cannot exhaust the daemon's file descriptors or memory.
const MAX_CONNECTIONS: usize = 64;
/// How long a stop waits for handlers still running (a mount, say).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Owns the server thread; [`ApiServerHandle::stop`] (or drop) stops
/// accepting, waits briefly for running handlers and removes the socket.
pub struct ApiServerHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    sock: PathBuf,
    sock_id: (u64, u64),
}

fn file_id(p: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl ApiServerHandle {
    /// The socket path the server listens on.
    #[allow(dead_code)] // used by tests and by callers that log it
    pub fn path(&self) -> &Path {
        &self.sock
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("API server thread panicked");
            }
            // During an upgrade a successor may already have bound a new
            // socket at this path: remove the file only if it is still ours.
            if file_id(&self.sock) == Some(self.sock_id) {
                let _ = std::fs::remove_file(&self.sock);
            }
        }
    }
}

impl Drop for ApiServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes a stale socket left by a dead daemon (upstream removes whatever
/// is at the path; we refuse to delete a regular file or directory, which
/// is more likely a typo than a stale socket).
fn remove_stale(sock: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(sock) {
        Ok(md) if md.file_type().is_socket() => std::fs::remove_file(sock),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{}: exists and is not a socket", sock.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Binds `sock` (removing a stale socket first) and serves the API on a
/// thread of its own until the returned handle is stopped or dropped.
/// Bind errors are returned here, before any thread starts.
pub fn spawn_api_server(
    sock: &Path,
    control: Arc<dyn DaemonControl>,
) -> io::Result<ApiServerHandle> {
    remove_stale(sock)?;
    let std_listener = std::os::unix::net::UnixListener::bind(sock)?;
    std_listener.set_nonblocking(true)?;
    let sock_id = file_id(sock).ok_or_else(|| io::Error::other("socket vanished after bind"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("nydusd-api-rt")
        .build()?;
    let (tx, rx) = oneshot::channel();
    let shared = Arc::new(Shared {
        control,
        serial: Mutex::new(()),
        config_store: std::sync::Mutex::new(Default::default()),
    });
    let thread = std::thread::Builder::new()
        .name("nydusd-api".into())
        .spawn(move || {
            let result = rt.block_on(async move {
                let listener = UnixListener::from_std(std_listener)?;
                accept_loop(listener, shared, rx).await;
                io::Result::Ok(())
            });
            if let Err(e) = result {
                log::error!("API server: {e}");
            }
            rt.shutdown_timeout(STOP_GRACE);
        })?;
    log::info!("API server listening on {}", sock.display());
    Ok(ApiServerHandle {
        stop: Some(tx),
        thread: Some(thread),
        sock: sock.to_path_buf(),
        sock_id,
    })
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = &mut stop => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    log::warn!("API server: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                log::debug!("API connection: {e}");
            }
            drop(permit);
        });
    }
}
