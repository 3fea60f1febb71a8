//! Replacing workers: failover after a death (backoff, detach when
//! nothing restores), upgrade with no gap, and the orphan check after a
//! supervisor restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use nydus_protocol::handoff::{MountStatus, WorkerMsg};

use super::conn::send_on;
use super::workers::{kill_group, spawn_worker, wait_registered, Start};
use super::{log, Sup};

/// Attempts to restore a crashed mount before it is detached.
const MAX_RESTORE_ATTEMPTS: u32 = 6;

/// Replaces a dead worker from the kept fd and state; backs off in a crash
/// loop; detaches the mount when nothing can restore it.
pub fn failover(sup: &Sup, id: &str) {
    // The standby first, unless in a crash loop (then the backoff below
    // applies, to the standby's successors too).
    let looping = sup
        .lock()
        .mounts
        .get(id)
        .is_some_and(|e| e.recent_crashes > 3);
    if !looping && super::standby::activate(sup, id) {
        return;
    }
    let mut attempt = 0u32;
    loop {
        let (delay, nydusd) = {
            let mut inner = sup.lock();
            let Some(e) = inner.mounts.get_mut(id) else {
                return;
            };
            if e.stopping {
                return;
            }
            let n = e.recent_crashes.saturating_sub(3);
            let delay = if n == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(250u64 << n.min(7)).min(Duration::from_secs(30))
            };
            if !delay.is_zero() {
                e.status = MountStatus::Backoff;
                log(&format!("{id}: crash loop, next worker in {delay:?}"));
            }
            (delay, e.p.nydusd.clone())
        };
        std::thread::sleep(delay);
        if let Some(e) = sup.lock().mounts.get_mut(id) {
            e.status = MountStatus::Recovering;
        }
        let t0 = Instant::now();
        let result = spawn_worker(sup, id, Start::Takeover, &nydusd)
            .and_then(|pid| wait_registered(sup, id, pid));
        match result {
            Ok(()) => {
                log(&format!("{id}: successor serving after {:?}", t0.elapsed()));
                return;
            }
            Err(err) => {
                attempt += 1;
                let mut inner = sup.lock();
                let Some(e) = inner.mounts.get_mut(id) else {
                    return;
                };
                e.last_error = Some(err.clone());
                e.recent_crashes += 1;
                log(&format!("{id}: successor failed ({err})"));
                if attempt >= MAX_RESTORE_ATTEMPTS {
                    e.status = MountStatus::Failed;
                    e.fuse = None;
                    let mp = e.p.mountpoint.clone();
                    e.last_error = Some(format!(
                        "no worker could restore it ({err}); detached. `nydusctl umount {id}` then mount again"
                    ));
                    sup.persist(&inner);
                    drop(inner);
                    detach(&mp);
                    return;
                }
            }
        }
    }
}

/// `umount -l`: never leave "transport endpoint is not connected" behind.
pub fn detach(mountpoint: &str) {
    let _ = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH);
}

/// New worker first, then the old one stops: no gap. On failure the new
/// one is killed and the old keeps serving.
pub fn upgrade(sup: &Sup, id: &str, nydusd: Option<&str>) -> Result<String, String> {
    let (old_pid, old_writer, bin) = {
        let mut inner = sup.lock();
        let e = inner
            .mounts
            .get_mut(id)
            .ok_or_else(|| format!("no mount {id}; see `nydusctl list`"))?;
        if e.status != MountStatus::Running || e.writer.is_none() {
            return Err(format!(
                "mount {id} is {:?}, not running; wait for it or see `nydusctl list`",
                e.status
            ));
        }
        e.status = MountStatus::Upgrading;
        // A standby runs the old binary; a new one follows the upgrade.
        super::standby::kill_locked(e);
        let bin = nydusd.map_or_else(|| e.p.nydusd.clone(), str::to_string);
        (
            e.pid,
            e.writer.as_ref().and_then(|w| w.try_clone().ok()),
            bin,
        )
    };
    let old_api = sup
        .lock()
        .mounts
        .get(id)
        .and_then(|e| e.p.state.as_ref()?.apisock.clone());
    let result =
        spawn_worker(sup, id, Start::Takeover, &bin).and_then(|pid| wait_registered(sup, id, pid));
    let mut inner = sup.lock();
    let Some(e) = inner.mounts.get_mut(id) else {
        return Err(format!("mount {id} was removed during the upgrade"));
    };
    e.status = MountStatus::Running;
    if let Err(err) = result {
        if e.writer.is_some() {
            drop(inner);
            super::standby::ensure(sup, id);
            return Err(format!(
                "upgrade of {id} rolled back, the old worker keeps serving: {err}"
            ));
        }
        // The old worker died meanwhile: recover the mount now.
        e.status = MountStatus::Recovering;
        drop(inner);
        failover(sup, id);
        return Err(format!(
            "upgrade of {id} failed ({err}) and the old worker died; recovered with the previous binary, see `nydusctl list`"
        ));
    }
    e.p.nydusd = bin.clone();
    sup.persist(&inner);
    drop(inner);
    super::standby::ensure(sup, id);
    if let Some(w) = old_writer {
        let _ = send_on(&w, &WorkerMsg::Stop, None);
    }
    if let Some(pid) = old_pid {
        wait_gone(pid, Duration::from_secs(10));
    }
    if let Some(path) = old_api {
        let _ = std::fs::remove_file(path);
    }
    Ok(format!("{id} now served by {bin}"))
}

/// Waits for `pid` to exit (it may not be our child), then SIGKILLs it.
pub fn wait_gone(pid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let p = Pid::from_raw(pid as i32);
    while Instant::now() < deadline {
        if kill(p, None).is_err() || is_zombie(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_group(pid);
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// After a restart: a mount whose worker did not come back in time lost
/// its fd with it; detach it rather than leave a dead mount.
pub fn spawn_orphan_check(sup: Arc<Sup>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("orphans".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            let mut inner = sup.lock();
            let mut lost = Vec::new();
            for e in inner.mounts.values_mut() {
                if e.writer.is_none() && e.status == MountStatus::Recovering {
                    e.status = MountStatus::Failed;
                    e.last_error = Some(
                        "the worker did not re-register after the supervisor restart; detached"
                            .into(),
                    );
                    lost.push(e.p.mountpoint.clone());
                }
            }
            sup.persist(&inner);
            drop(inner);
            for mp in lost {
                log(&format!(
                    "{mp}: worker lost while the supervisor was down; detached"
                ));
                detach(&mp);
            }
        })
        .map(|_| ())
        .map_err(|e| format!("starting the orphan check: {e}"))
}
