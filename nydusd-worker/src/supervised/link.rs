//! The registration link a serving worker keeps with its supervisor.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nydus_protocol::handoff::{encode, MountEntry, WorkerMsg, WorkerState};

use super::Conn;
use crate::daemon::{Daemon, Event};
use crate::virtiofs::VhostHandle;

/// Everything the link needs to describe this worker.
#[derive(Clone)]
pub struct Link {
    pub supervisor: PathBuf,
    pub id: String,
    pub daemon: Arc<Daemon>,
    /// A dup of the `/dev/fuse` fd, sent with every registration.
    pub fuse: Arc<File>,
    pub events: Sender<Event>,
    /// mountpoint, threads, apisock, log level, start time; mounts are
    /// filled in from the daemon's table.
    pub base: WorkerState,
    /// Config text by Vfs path (the parsed config cannot be turned back
    /// into the user's text, and a successor must re-parse the original).
    pub configs: HashMap<String, String>,
    /// A virtio-fs worker's device, handed over on `Stop`.
    pub vhost: Option<VhostHandle>,
}

/// Starts the link thread. `conn` is the successor's takeover connection,
/// reused so the supervisor sees the registration on it.
pub fn attach(link: Link, conn: Option<Conn>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("supervisor-link".into())
        .spawn(move || run(link, conn))
        .map(|_| ())
        .map_err(|e| format!("starting the supervisor link thread: {e}"))
}

fn run(link: Link, mut conn: Option<Conn>) {
    // A guest mounts whenever it likes; its INIT travels with the device.
    if link.vhost.is_none() {
        wait_initialized(&link.daemon);
    }
    let mut logged = false;
    loop {
        let mut c = match conn.take() {
            Some(c) => c,
            None => match UnixStream::connect(&link.supervisor) {
                Ok(s) => Conn::new(s),
                Err(e) => {
                    if !logged {
                        log::warn!(
                            "supervisor {} unreachable ({e}); retrying until it is back",
                            link.supervisor.display()
                        );
                        logged = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        logged = false;
        let register = WorkerMsg::Register {
            id: link.id.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            state: state(&link),
        };
        if let Err(e) = c.send(&register, Some(link.fuse.as_raw_fd())) {
            log::warn!("registering with the supervisor: {e}; retrying");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        log::info!("registered with the supervisor as {}", link.id);
        let alive = Arc::new(AtomicBool::new(true));
        if let Ok(w) = c.stream().try_clone() {
            let (link2, alive2) = (link.clone(), alive.clone());
            let _ = std::thread::Builder::new()
                .name("state-resend".into())
                .spawn(move || resend_on_change(&link2, w, &alive2));
        }
        let _guard = StopOnDrop(alive);
        loop {
            match c.recv() {
                Ok((WorkerMsg::Stop, _)) => {
                    if let Some(vhost) = &link.vhost {
                        hand_over(&link, vhost, &c);
                    }
                    log::info!("supervisor: stop (a successor serves); leaving the mount");
                    let _ = link.events.send(Event::Exit);
                    // Keep the connection open until the process exits, so
                    // the supervisor's EOF means "gone".
                    loop {
                        std::thread::park();
                    }
                }
                Ok((WorkerMsg::Error { message }, _)) => {
                    log::error!("supervisor refused registration: {message}");
                    std::thread::sleep(Duration::from_secs(5));
                    break;
                }
                Ok((other, _)) => log::warn!("supervisor sent unexpected {other:?}; ignored"),
                Err(e) => {
                    log::warn!("supervisor link lost ({e}); reconnecting");
                    break;
                }
            }
        }
    }
}

/// Stops the virtio-fs device and sends it (state and fds) for the
/// successor; a failure is sent instead, so the successor knows at once.
fn hand_over(link: &Link, vhost: &VhostHandle, c: &Conn) {
    let t0 = Instant::now();
    let msg = match vhost.freeze() {
        Ok((mut st, fds)) => {
            st.vfs_state = vfs_snapshot(link);
            let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
            let msg = WorkerMsg::VhostState { state: Some(st) };
            match c.send_fds(&msg, &raw) {
                Ok(()) => {
                    log::info!("virtio-fs device handed over after {:?}", t0.elapsed());
                    return;
                }
                Err(e) => format!("sending the vhost-user device: {e}"),
            }
        }
        Err(e) => e,
    };
    log::error!("virtio-fs handover failed: {msg}");
    let _ = c.send(&WorkerMsg::Error { message: msg }, None);
}

/// The state is only useful once the kernel's INIT is processed (the Vfs
/// snapshot carries the negotiated options).
fn wait_initialized(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.vfs().initialized() {
        if Instant::now() > deadline {
            log::warn!("FUSE INIT not seen after 10 s; registering anyway");
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Sends the state again whenever the mount table changes (API mount,
/// umount, remount): a stale state would resurrect the old mount set on
/// failover. Polled, so the daemon needs no hook; a mount is rare.
fn resend_on_change(link: &Link, stream: UnixStream, alive: &AtomicBool) {
    let key = |l: &Link| l.daemon.mount_table();
    let mut last = key(link);
    while alive.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let now = key(link);
        if now == last {
            continue;
        }
        last = now;
        let msg = WorkerMsg::State { state: state(link) };
        let Ok(frame) = encode(&msg) else { continue };
        if let Err(e) = (&stream).write_all(&frame) {
            log::warn!("re-sending the state to the supervisor: {e}");
            return;
        }
        log::info!("mount table changed; state re-sent to the supervisor");
    }
}

fn state(link: &Link) -> WorkerState {
    let configs: HashMap<String, String> = link.daemon.mount_configs().into_iter().collect();
    let mut st = link.base.clone();
    st.mounts = link
        .daemon
        .mount_table()
        .into_iter()
        .filter_map(|(path, source, index, prefetch_files)| {
            // The user's own text when we have it; else the parsed config
            // rendered back (API mounts).
            let Some(config) = link.configs.get(&path).or_else(|| configs.get(&path)) else {
                log::warn!("no config text for mount {path}; a successor will not restore it");
                return None;
            };
            Some(MountEntry {
                path,
                bootstrap: source.display().to_string(),
                config: config.clone(),
                prefetch_files,
                index,
            })
        })
        .collect();
    st.vfs_state = vfs_snapshot(link);
    st.highest_index = link.daemon.highest_index();
    st
}

fn vfs_snapshot(link: &Link) -> String {
    match link.daemon.vfs().save_to_bytes() {
        Ok(b) => hex::encode(b),
        Err(e) => {
            log::error!("saving the vfs snapshot: {e}");
            String::new()
        }
    }
}
