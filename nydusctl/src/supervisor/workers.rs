//! Worker processes: start, registration, death detection (EOF on the
//! worker's connection), reaping.

use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use nydus_protocol::handoff::{MountStatus, WorkerMsg};

use super::conn::Conn;
use super::{log, Sup};

/// How long a new worker has to mount or take over and register.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A worker dying sooner than this after registering counts as a crash loop.
const QUICK_DEATH: Duration = Duration::from_millis(500);

pub fn spawn_reaper(sup: Arc<Sup>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => record_exit(&sup, pid, code),
                Ok(WaitStatus::Signaled(pid, _, _)) => record_exit(&sup, pid, -1),
                Ok(_) | Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        })
        .map(|_| ())
        .map_err(|e| format!("starting the reaper: {e}"))
}

fn record_exit(sup: &Sup, pid: Pid, code: i32) {
    let mut inner = sup.lock();
    inner.exited.insert(pid.as_raw() as u32, code);
    if inner.exited.len() > 4096 {
        inner.exited.clear();
    }
    sup.cv.notify_all();
}

pub fn spawn_worker_listener(sup: Arc<Sup>, l: UnixListener) -> Result<(), String> {
    std::thread::Builder::new()
        .name("workers".into())
        .spawn(move || {
            for s in l.incoming().flatten() {
                let sup = sup.clone();
                let _ = std::thread::Builder::new()
                    .name("worker-conn".into())
                    .spawn(move || worker_conn(sup, s));
            }
        })
        .map(|_| ())
        .map_err(|e| format!("starting the worker listener: {e}"))
}

/// One worker connection, for its whole life.
fn worker_conn(sup: Arc<Sup>, stream: UnixStream) {
    let mut conn = Conn::new(stream);
    let token = {
        let mut inner = sup.lock();
        inner.next_token += 1;
        inner.next_token
    };
    let mut registered: Option<String> = None;
    let mut standby_pid: Option<u32> = None;
    // A virtio-fs worker that handed its device over exits on purpose.
    let mut handed_over = false;
    loop {
        let (msg, mut fds) = match conn.recv_fds(WorkerMsg::fd_count) {
            Ok(m) => m,
            Err(_) => break,
        };
        let fd = if matches!(msg, WorkerMsg::Register { .. }) {
            fds.pop()
        } else {
            None
        };
        match msg {
            WorkerMsg::Register { id, pid, state, .. } => {
                let mut inner = sup.lock();
                let Some(e) = inner.mounts.get_mut(&id) else {
                    drop(inner);
                    let msg = format!("unknown mount id {id}; it was unmounted");
                    let _ = conn.send(&WorkerMsg::Error { message: msg }, None);
                    continue;
                };
                if fd.is_none() {
                    drop(inner);
                    let msg = "register without a /dev/fuse fd".to_string();
                    let _ = conn.send(&WorkerMsg::Error { message: msg }, None);
                    continue;
                }
                e.fuse = fd;
                e.p.state = Some(state);
                e.pid = Some(pid);
                e.writer = conn.stream.try_clone().ok();
                e.conn_token = token;
                e.registered_at = Some(Instant::now());
                if e.status != MountStatus::Upgrading {
                    e.status = MountStatus::Running;
                }
                e.last_error = None;
                // The handed-over device now lives in this worker.
                e.vhost_kept = None;
                let running = e.status == MountStatus::Running;
                registered = Some(id.clone());
                sup.persist(&inner);
                sup.cv.notify_all();
                drop(inner);
                if running {
                    super::standby::ensure(&sup, &id);
                }
            }
            WorkerMsg::State { state } => {
                let mut inner = sup.lock();
                if let Some(e) = registered.as_ref().and_then(|id| inner.mounts.get_mut(id)) {
                    if e.conn_token == token {
                        e.p.state = Some(state);
                        sup.persist(&inner);
                    }
                }
            }
            WorkerMsg::Handover { id } => super::handover::relay(&sup, &id, &conn.stream),
            WorkerMsg::VhostState { state } => {
                handed_over = state.is_some();
                super::handover::kept(&sup, registered.as_deref(), token, state, fds)
            }
            WorkerMsg::Error { message } => {
                super::handover::failed(&sup, registered.as_deref(), token, message)
            }
            WorkerMsg::StandbyReady { id, pid } => {
                standby_pid = Some(pid);
                super::standby::ready(&sup, &id, pid, &conn.stream);
            }
            WorkerMsg::Takeover { id, .. } => {
                let inner = sup.lock();
                let reply = match inner.mounts.get(&id) {
                    Some(e) => match (&e.p.state, &e.fuse) {
                        (Some(st), Some(f)) => Ok((
                            // Always resend: after a crash it recovers what the
                            // dead worker had read; during an upgrade the old
                            // worker may die too. A resent request is answered
                            // again identically (read-only, stateless handles)
                            // and the kernel drops the stale reply.
                            WorkerMsg::Restore {
                                state: st.clone(),
                                resend: true,
                            },
                            f.as_raw_fd(),
                        )),
                        _ => Err(format!("mount {id} has no kept fd and state")),
                    },
                    None => Err(format!("unknown mount id {id}")),
                };
                // Sent under the lock so the fd cannot be closed meanwhile;
                // the frame is small and the socket buffer takes it.
                let _ = match reply {
                    Ok((m, fd)) => conn.send(&m, Some(fd)),
                    Err(message) => conn.send(&WorkerMsg::Error { message }, None),
                };
            }
            _ => {}
        }
    }
    if let Some(pid) = standby_pid {
        super::standby::gone(&sup, pid);
    }
    let Some(id) = registered else { return };
    let mut inner = sup.lock();
    let Some(e) = inner.mounts.get_mut(&id) else {
        return;
    };
    if e.conn_token != token || e.stopping {
        return; // a retired worker, or an expected exit
    }
    e.writer = None;
    e.pid = None;
    if handed_over {
        return; // its successor registers on its own connection
    }
    e.p.crashes += 1;
    // The dead worker's API socket file stays behind otherwise.
    if let Some(api) = e.p.state.as_ref().and_then(|s| s.apisock.as_ref()) {
        let _ = std::fs::remove_file(api);
    }
    if e.status == MountStatus::Upgrading {
        // The upgrade's new worker takes over (and resends); if it fails,
        // the upgrade starts the failover.
        log(&format!("worker of {id} died during an upgrade"));
        return;
    }
    let quick = e.registered_at.is_none_or(|t| t.elapsed() < QUICK_DEATH);
    e.recent_crashes = if quick { e.recent_crashes + 1 } else { 0 };
    e.status = MountStatus::Recovering;
    log(&format!(
        "worker of {id} ({}) died; starting a successor",
        e.p.mountpoint
    ));
    drop(inner);
    let sup2 = sup.clone();
    let _ = std::thread::Builder::new()
        .name("failover".into())
        .spawn(move || super::recovery::failover(&sup2, &id));
}

/// Starts `nydusd` for mount `id`. Returns the pid.
/// How a worker starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Mounts `--bootstrap` itself.
    Fresh,
    /// Takes over the kept fd and state, serves at once.
    Takeover,
    /// Takes over, restores, then waits for `Activate`.
    Standby,
}

pub fn spawn_worker(sup: &Sup, id: &str, start: Start, nydusd: &str) -> Result<u32, String> {
    let (mp, bootstrap, config, generation, vhost_user) = {
        let mut inner = sup.lock();
        let e = inner.mounts.get_mut(id).ok_or("mount vanished")?;
        e.p.generation += 1;
        (
            e.p.mountpoint.clone(),
            e.p.bootstrap.clone(),
            e.p.config.clone(),
            e.p.generation,
            e.p.vhost_user,
        )
    };
    let logf = sup.state_dir.join(format!("{id}.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&logf)
        .map_err(|e| format!("worker log {}: {e}", logf.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let apisock = sup.state_dir.join(format!("{id}.{generation}.api.sock"));
    let mut cmd = Command::new(nydusd);
    cmd.arg("--supervisor")
        .arg(&sup.worker_sock)
        .arg("--id")
        .arg(id)
        .arg(if vhost_user { "--sock" } else { "--mountpoint" })
        .arg(&mp)
        .arg("--apisock")
        .arg(&apisock);
    if start == Start::Standby {
        cmd.env("NYDUSD_STANDBY", "1");
    }
    if start != Start::Fresh {
        cmd.arg("--upgrade");
    } else {
        cmd.arg("--config")
            .arg(&config)
            .arg("--bootstrap")
            .arg(&bootstrap);
    }
    // Own process group: a terminal's ^C or a supervisor restart must not
    // reach workers, and a stuck one is killed as a group.
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {nydusd}: {e}; check --nydusd"))?;
    Ok(child.id())
}

/// Waits until worker `pid` registered for `id`; the error says why not.
pub fn wait_registered(sup: &Sup, id: &str, pid: u32) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut inner = sup.lock();
    loop {
        match inner.mounts.get(id) {
            Some(e) if e.pid == Some(pid) && e.writer.is_some() => return Ok(()),
            Some(_) => {}
            None => return Err(format!("mount {id} was removed")),
        }
        if let Some(code) = inner.exited.get(&pid) {
            let code = *code;
            drop(inner);
            return Err(format!(
                "worker exited ({code}) before serving: {}",
                log_tail(&sup.state_dir.join(format!("{id}.log")))
            ));
        }
        let Some(next) = sup.wait_until(inner, deadline) else {
            kill_group(pid);
            return Err(format!(
                "worker did not become ready within {READY_TIMEOUT:?}"
            ));
        };
        inner = next;
    }
}

/// The last line the worker wrote that looks like an error.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| l.contains("nydusd:") || l.contains("ERROR"))
        .or_else(|| text.lines().last())
        .unwrap_or("no output")
        .trim()
        .to_string()
}

pub fn kill_group(pid: u32) {
    let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
}
