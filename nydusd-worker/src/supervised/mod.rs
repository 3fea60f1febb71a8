//! Running under `nydusctl supervise` (`--supervisor SOCK --id ID`).
//!
//! * A serving worker connects to the supervisor's worker socket, registers
//!   with a dup of its `/dev/fuse` fd and its state (`protocol::handoff`),
//!   and keeps the connection: the supervisor learns of its death by EOF,
//!   and sends `Stop` on it for an upgrade. If the supervisor goes away the
//!   worker reconnects and registers again.
//! * A successor (`--upgrade`) asks for the kept fd and state, re-opens the
//!   same images at the same Vfs indices (so inode numbers are unchanged),
//!   serves the same fd, and after a crash asks the kernel to resend what
//!   the dead worker had read (`FUSE_NOTIFY_RESEND`).
//! * A virtio-fs worker registers its vhost-user listener instead of a
//!   `/dev/fuse` fd. Its successor restores the images first, then asks for
//!   the live device (`Handover`): the supervisor stops the old worker,
//!   which answers with the device state and fds (`VhostState`), and the
//!   successor resumes the vrings where the old one stopped.

mod conn;
mod link;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::transport::{FuseDevWriter, FuseSession};
use nydus_protocol::handoff::{MountEntry, WorkerMsg, WorkerState};

use crate::cli::Cli;
use crate::daemon::{Daemon, Event};
use crate::instance::ConfigSource;
use crate::virtiofs::{Handover, VhostHandle};

pub use conn::Conn;
pub use link::{attach, Link};

/// How long a successor waits for the supervisor's reply.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// Set by the supervisor for a standby successor (not a flag: a standby is
/// the supervisor's business, never a user's).
const STANDBY_ENV: &str = "NYDUSD_STANDBY";

/// What a successor got from the supervisor.
pub struct Takeover {
    pub conn: RefCell<Conn>,
    standby: bool,
    pub state: WorkerState,
    pub fuse: File,
    pub resend: bool,
}

/// Connects to `sup`, asks for the fd and state kept for `id`.
pub fn takeover(sup: &Path, id: &str) -> Result<Takeover, String> {
    let stream = UnixStream::connect(sup).map_err(|e| {
        format!(
            "--upgrade: connecting to the supervisor at {}: {e}; is `nydusctl supervise` running?",
            sup.display()
        )
    })?;
    let _ = stream.set_read_timeout(Some(TAKEOVER_TIMEOUT));
    let mut conn = Conn::new(stream);
    let pid = std::process::id();
    let standby = std::env::var_os(STANDBY_ENV).is_some();
    conn.send(
        &WorkerMsg::Takeover {
            id: id.to_string(),
            pid,
            standby,
        },
        None,
    )
    .map_err(|e| format!("--upgrade: asking the supervisor for mount {id}: {e}"))?;
    let (msg, fd) = conn
        .recv()
        .map_err(|e| format!("--upgrade: waiting for the state of mount {id}: {e}"))?;
    let _ = conn.stream().set_read_timeout(None);
    match (msg, fd) {
        (WorkerMsg::Restore { state, resend }, Some(fuse)) => Ok(Takeover {
            conn: RefCell::new(conn),
            standby,
            state,
            fuse,
            resend,
        }),
        (WorkerMsg::Restore { .. }, None) => {
            Err("--upgrade: the supervisor sent no /dev/fuse fd; restart the mount".into())
        }
        (WorkerMsg::Error { message }, _) => Err(format!("--upgrade: supervisor: {message}")),
        (other, _) => Err(format!("--upgrade: unexpected reply {other:?}")),
    }
}

impl Takeover {
    /// Restores the Vfs snapshot (the negotiated INIT options and the
    /// pseudo tree), then re-opens every image at its old index, so inode
    /// numbers are unchanged and each pseudo directory leads to its own
    /// image. The successor never sees a FUSE INIT.
    pub fn restore(&self, daemon: &Daemon) -> Result<(), String> {
        // A virtio-fs guest may have mounted after the state was saved:
        // its snapshot comes with the live device (`vhost_handover`); its
        // images are at `/`, which no pseudo directory stands for.
        if !self.state.virtiofs {
            restore_vfs(daemon, &self.state.vfs_state)?;
        }
        daemon.set_restoring(true);
        let reopened = self.reopen(daemon, &self.state.mounts);
        daemon.set_restoring(false);
        reopened?;
        daemon.note_highest_index(self.state.highest_index);
        self.wait_activation()
    }

    /// Mounts each handed-over image again, at its old index.
    fn reopen(&self, daemon: &Daemon, mounts: &[MountEntry]) -> Result<(), String> {
        for m in mounts {
            let config = ConfigSource::Text {
                text: m.config.clone(),
                origin: format!("handed-over config of {}", m.path),
                image_pull_auth: None,
            };
            daemon.reopen(
                &m.path,
                PathBuf::from(&m.bootstrap),
                &config,
                m.prefetch_files.clone(),
                m.index,
            )?;
        }
        Ok(())
    }

    /// virtio-fs: once restored, asks the supervisor to stop the old worker
    /// and hand over its live vhost-user device. `None`: there is none (the
    /// old worker died); the listener alone is served.
    pub fn vhost_handover(&self, daemon: &Daemon) -> Result<Option<Handover>, String> {
        let mut conn = self.conn.borrow_mut();
        let ask = WorkerMsg::Handover {
            id: self.state.id.clone(),
        };
        conn.send(&ask, None)
            .map_err(|e| format!("--upgrade: asking for the vhost-user device: {e}"))?;
        let _ = conn.stream().set_read_timeout(Some(TAKEOVER_TIMEOUT));
        let got = conn.recv_fds();
        let _ = conn.stream().set_read_timeout(None);
        let (msg, fds) =
            got.map_err(|e| format!("--upgrade: waiting for the vhost-user device: {e}"))?;
        match msg {
            WorkerMsg::VhostState { state: Some(st) } => {
                restore_vfs(daemon, &st.vfs_state)?;
                Ok(Some((st, fds)))
            }
            WorkerMsg::VhostState { state: None } => {
                restore_vfs(daemon, &self.state.vfs_state)?;
                Ok(None)
            }
            WorkerMsg::Error { message } => Err(format!("--upgrade: supervisor: {message}")),
            other => Err(format!("--upgrade: unexpected reply {other:?}")),
        }
    }

    /// A standby returns only once the supervisor activates it (the worker
    /// died), so failover costs no process start and no image open. If the
    /// supervisor goes away first, the standby exits: nothing is mounted or
    /// served by it yet.
    fn wait_activation(&self) -> Result<(), String> {
        if !self.standby {
            return Ok(());
        }
        let mut conn = self.conn.borrow_mut();
        let ready = WorkerMsg::StandbyReady {
            id: self.state.id.clone(),
            pid: std::process::id(),
        };
        conn.send(&ready, None)
            .map_err(|e| format!("standby: reporting ready: {e}"))?;
        log::info!("standby for {}: restored, waiting", self.state.id);
        loop {
            match conn.recv() {
                Ok((WorkerMsg::Activate, _)) => {
                    log::info!("standby for {}: activated", self.state.id);
                    return Ok(());
                }
                Ok((other, _)) => log::warn!("standby: unexpected {other:?}; ignored"),
                Err(e) => return Err(format!("standby: supervisor link lost ({e}); exiting")),
            }
        }
    }

    /// A session over the handed-over fd; nothing is mounted.
    ///
    /// `FuseSession::new` stats its path, and a stat of the mountpoint
    /// would wait for this very process to answer it when the previous
    /// worker died before the kernel cached the root (a deadlock). So the
    /// session is built on an empty private directory, removed at once:
    /// the session only uses the path to unmount, and a successor never
    /// unmounts by itself (the supervisor detaches on `umount`).
    pub fn session(&self) -> Result<FuseSession, String> {
        let dir = std::env::temp_dir().join(format!("nydusd-takeover-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("--upgrade: creating {}: {e}", dir.display()))?;
        let se = FuseSession::new(&dir, "rafs", "", true);
        let _ = std::fs::remove_dir(&dir);
        let mut se = se.map_err(|e| format!("--upgrade: FUSE session: {e}"))?;
        let file = self
            .fuse
            .try_clone()
            .map_err(|e| format!("--upgrade: dup of the /dev/fuse fd: {e}"))?;
        se.set_fuse_file(file);
        Ok(se)
    }

    /// After a crash: have the kernel queue again what the dead worker had
    /// read but not answered. Call once threads are serving.
    pub fn resend_if_needed(&self, daemon: &Daemon, policy: &str) {
        // A virtio-fs fd is a listener; there is no kernel queue to resend.
        if !self.resend || self.state.virtiofs {
            return;
        }
        if policy == "none" {
            log::warn!(
                "failover policy none: requests the previous worker had read stay unanswered"
            );
            return;
        }
        let mut buf = vec![0u8; 4096];
        let result = FuseDevWriter::<()>::new(self.fuse.as_raw_fd(), &mut buf)
            .map_err(|e| e.to_string())
            .and_then(|w| daemon.server().notify_resend(w).map_err(|e| e.to_string()));
        match result {
            Ok(()) => log::info!("takeover: FUSE_NOTIFY_RESEND sent"),
            Err(e) => log::warn!(
                "takeover: FUSE_NOTIFY_RESEND failed ({e}); the kernel needs Linux 6.9+: requests the crashed worker had read may hang"
            ),
        }
    }
}

/// Restores the Vfs snapshot (negotiated INIT options, pseudo tree).
fn restore_vfs(daemon: &Daemon, hexed: &str) -> Result<(), String> {
    let mut bytes =
        hex::decode(hexed).map_err(|e| format!("--upgrade: state has a bad vfs snapshot: {e}"))?;
    if !bytes.is_empty() {
        daemon
            .vfs()
            .restore_from_bytes(&mut bytes)
            .map_err(|e| format!("--upgrade: restoring the vfs snapshot: {e}"))?;
    }
    Ok(())
}

/// What the worker serves through: the fd the supervisor keeps (the
/// `/dev/fuse` fd, or a virtio-fs worker's listener) and, for virtio-fs,
/// the device to hand over on `Stop`.
pub struct Served {
    pub fd: Option<File>,
    pub vhost: Option<VhostHandle>,
}

/// Starts the supervisor link of a serving worker (fresh or successor).
/// `root` is the `--bootstrap` mount of a fresh worker: its Vfs path and
/// config.
pub fn start_link(
    cli: &Cli,
    daemon: Arc<Daemon>,
    served: Served,
    events: Sender<Event>,
    root: Option<(&str, &ConfigSource)>,
    takeover: Option<Takeover>,
    start_time: i64,
) -> Result<(), String> {
    let Served { fd: fuse, vhost } = served;
    let Some(supervisor) = cli.supervisor.clone() else {
        return Ok(());
    };
    let id = cli
        .id
        .clone()
        .ok_or("--supervisor needs --id: the mount id the supervisor knows this worker by")?;
    let fuse = fuse.ok_or("--supervisor: no /dev/fuse fd or vhost-user listener to hand over")?;
    let mut configs = HashMap::new();
    let mut mountpoint = cli
        .mountpoint
        .as_ref()
        .and_then(|m| m.canonicalize().ok())
        .map(|m| m.display().to_string())
        .or_else(|| cli.sock.as_ref().map(|s| s.display().to_string()))
        .unwrap_or_default();
    if let Some((path, ConfigSource::Text { text, .. })) = root {
        configs.insert(path.to_string(), text.clone());
    }
    let conn = match takeover {
        Some(t) => {
            for m in &t.state.mounts {
                configs.insert(m.path.clone(), m.config.clone());
            }
            mountpoint = t.state.mountpoint.clone();
            Some(t.conn.into_inner())
        }
        None => None,
    };
    let base = WorkerState {
        id: id.clone(),
        mountpoint,
        fuse_threads: cli.fuse_threads,
        apisock: cli.apisock.as_ref().map(|p| p.display().to_string()),
        log_level: cli.log_level.clone(),
        start_time,
        virtiofs: vhost.is_some(),
        ..WorkerState::default()
    };
    attach(
        Link {
            supervisor,
            id,
            daemon,
            fuse: Arc::new(fuse),
            events,
            base,
            configs,
            vhost,
        },
        conn,
    )
}
