//! Standby successors: one restored `nydusd` per mount, holding the fd but
//! not reading it, so a crash is answered by a message instead of a
//! process start and an image open.

use std::os::unix::net::UnixStream;
use std::time::Instant;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use nydus_protocol::handoff::{MountStatus, WorkerMsg};

use super::conn::send_on;
use super::table::Entry;
use super::workers::{kill_group, spawn_worker, wait_registered, Start};
use super::{log, Sup};

/// Starts a standby for `id` unless one exists or is starting.
pub fn ensure(sup: &Sup, id: &str) {
    let nydusd = {
        let mut inner = sup.lock();
        let Some(e) = inner.mounts.get_mut(id) else {
            return;
        };
        let pending_alive = e
            .standby_pending
            .is_some_and(|p| kill(Pid::from_raw(p as i32), None).is_ok());
        // A virtio-fs device cannot be taken from a dead worker (its vring
        // indices died with it), so a standby would buy nothing.
        if e.stopping
            || e.p.vhost_user
            || e.status != MountStatus::Running
            || e.standby.is_some()
            || pending_alive
        {
            return;
        }
        e.p.nydusd.clone()
    };
    match spawn_worker(sup, id, Start::Standby, &nydusd) {
        Ok(pid) => {
            if let Some(e) = sup.lock().mounts.get_mut(id) {
                e.standby_pending = Some(pid);
            }
        }
        Err(e) => log(&format!("{id}: no standby ({e})")),
    }
}

/// A standby reported ready on `stream`.
pub fn ready(sup: &Sup, id: &str, pid: u32, stream: &UnixStream) {
    let mut inner = sup.lock();
    let keep = match inner.mounts.get_mut(id) {
        Some(e) if !e.stopping && e.standby.is_none() => match stream.try_clone() {
            Ok(w) => {
                e.standby = Some((pid, w));
                e.standby_pending = None;
                true
            }
            Err(_) => false,
        },
        _ => false,
    };
    drop(inner);
    if !keep {
        kill_group(pid);
    }
}

/// A standby's connection closed (it died, or was activated and then died).
pub fn gone(sup: &Sup, pid: u32) {
    let mut inner = sup.lock();
    for e in inner.mounts.values_mut() {
        if e.standby.as_ref().is_some_and(|(p, _)| *p == pid) {
            e.standby = None;
        }
    }
}

/// Kills the standby (and a starting one) of `e`; caller holds the lock.
pub fn kill_locked(e: &mut Entry) {
    if let Some((pid, _)) = e.standby.take() {
        kill_group(pid);
    }
    if let Some(pid) = e.standby_pending.take() {
        kill_group(pid);
    }
}

/// Failover through the standby. True when it serves.
pub fn activate(sup: &Sup, id: &str) -> bool {
    let Some((pid, w)) = sup.lock().mounts.get_mut(id).and_then(|e| e.standby.take()) else {
        return false;
    };
    let t0 = Instant::now();
    let result = send_on(&w, &WorkerMsg::Activate, None)
        .map_err(|e| e.to_string())
        .and_then(|()| wait_registered(sup, id, pid));
    match result {
        Ok(()) => {
            // Its registration starts the next standby.
            log(&format!("{id}: standby serving after {:?}", t0.elapsed()));
            true
        }
        Err(e) => {
            kill_group(pid);
            log(&format!("{id}: standby failed ({e}); starting a successor"));
            false
        }
    }
}
