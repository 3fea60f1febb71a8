//! Client requests: one `CtlRequest` frame in, one `CtlReply` out.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nydus_protocol::handoff::{CtlReply, CtlRequest, MountStatus};

use super::conn::Conn;
use super::recovery::{self, detach, wait_gone};
use super::table::{Entry, Persisted};
use super::workers::{self, kill_group, wait_registered};
use super::{log, Sup};

pub fn serve(sup: &Sup, stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut conn = Conn::new(stream);
    let reply = match conn.recv::<CtlRequest>(|_| false) {
        Ok((req, _)) => handle(sup, req).unwrap_or_else(|message| CtlReply::Error { message }),
        Err(e) => CtlReply::Error {
            message: format!("bad request: {e}"),
        },
    };
    let _ = conn.send(&reply, None);
}

fn handle(sup: &Sup, req: CtlRequest) -> Result<CtlReply, String> {
    match req {
        CtlRequest::Mount {
            mountpoint,
            bootstrap,
            config,
            vhost_user,
            id,
        } => mount(sup, &mountpoint, &bootstrap, &config, vhost_user, id),
        CtlRequest::Umount { target } => umount(sup, &target),
        CtlRequest::List => Ok(CtlReply::List {
            mounts: sup.lock().mounts.values().map(Entry::info).collect(),
        }),
        CtlRequest::Upgrade { target, nydusd } => {
            if let Some(bin) = &nydusd {
                if !Path::new(bin).is_absolute() || !Path::new(bin).is_file() {
                    return Err(format!(
                        "--nydusd {bin}: give the absolute path of a nydusd binary"
                    ));
                }
            }
            let ids: Vec<String> = match target {
                Some(t) => vec![resolve(sup, &t)?],
                None => sup.lock().mounts.keys().cloned().collect(),
            };
            let mut done = Vec::new();
            for id in ids {
                match recovery::upgrade(sup, &id, nydusd.as_deref()) {
                    Ok(m) => done.push(m),
                    Err(e) if done.is_empty() => return Err(e),
                    Err(e) => {
                        return Err(format!(
                            "{e} (stopped; done before it: {})",
                            done.join("; ")
                        ))
                    }
                }
            }
            Ok(CtlReply::Done {
                message: if done.is_empty() {
                    "no mounts".into()
                } else {
                    done.join("\n")
                },
            })
        }
        CtlRequest::Restart { target } => {
            let id = resolve(sup, &target)?;
            let message = recovery::upgrade(sup, &id, None)?;
            Ok(CtlReply::Done { message })
        }
    }
}

/// A mount id, or a mountpoint.
fn resolve(sup: &Sup, target: &str) -> Result<String, String> {
    let inner = sup.lock();
    if inner.mounts.contains_key(target) {
        return Ok(target.to_string());
    }
    let canon = std::fs::canonicalize(target)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| target.to_string());
    inner
        .mounts
        .values()
        .find(|e| e.p.mountpoint == target || e.p.mountpoint == canon)
        .map(|e| e.p.id.clone())
        .ok_or_else(|| format!("no mount {target}: give an id or mountpoint from `nydusctl list`"))
}

fn check_abs(what: &str, p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{what} {p:?} is a relative path; give an absolute path"
        ))
    }
}

/// Whether anything is mounted exactly at `path`.
fn mounted_at(path: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // The last line is the top mount.
    info.lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(path))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|r| r.split(' ').next())
        .map(str::to_string)
}

/// Ids name worker logs and API sockets in the state dir, so they stay
/// plain file names.
fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with(['.', '-'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--id {id:?}: use 1 to 64 letters, digits, '.', '_' or '-' (not first)"
        ))
    }
}

/// A FUSE mountpoint: an existing directory nothing is mounted on.
fn check_mountpoint(mountpoint: &str) -> Result<String, String> {
    check_abs("mountpoint", mountpoint)?;
    let mp = std::fs::canonicalize(mountpoint)
        .map_err(|e| format!("mountpoint {mountpoint}: {e}; create the directory first"))?;
    if !mp.is_dir() {
        return Err(format!("mountpoint {mountpoint} is not a directory"));
    }
    let mp = mp.display().to_string();
    if let Some(fstype) = mounted_at(&mp) {
        if fstype.starts_with("fuse") {
            return Err(format!(
                "mountpoint {mp} is already mounted ({fstype}); unmount it first"
            ));
        }
    }
    Ok(mp)
}

/// A vhost-user socket path: absolute, in an existing directory (the
/// worker creates the socket and refuses one a live process serves).
fn check_vhost_sock(sock: &str) -> Result<String, String> {
    check_abs("--vhost-user-sock", sock)?;
    let path = Path::new(sock);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(format!("--vhost-user-sock {sock}: not a socket path"));
    };
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| format!("--vhost-user-sock {sock}: directory: {e}; create it first"))?;
    Ok(dir.join(name).display().to_string())
}

fn mount(
    sup: &Sup,
    mountpoint: &str,
    bootstrap: &str,
    config: &str,
    vhost_user: bool,
    want_id: Option<String>,
) -> Result<CtlReply, String> {
    if let Some(id) = &want_id {
        check_id(id)?;
    }
    let mp = if vhost_user {
        check_vhost_sock(mountpoint)?
    } else {
        check_mountpoint(mountpoint)?
    };
    check_abs("bootstrap", bootstrap)?;
    check_abs("config", config)?;
    if !Path::new(bootstrap).is_file() {
        return Err(format!("bootstrap {bootstrap}: no such file"));
    }
    let text = std::fs::read_to_string(config).map_err(|e| format!("config {config}: {e}"))?;
    nydus_protocol::config::parse_daemon_config(&text, config).map_err(|e| e.to_string())?;
    let id = {
        let mut inner = sup.lock();
        if let Some(e) = inner.mounts.values().find(|e| e.p.mountpoint == mp) {
            return Err(format!("mountpoint {mp} is already mounted as {}", e.p.id));
        }
        let id = match want_id {
            Some(id) if inner.mounts.contains_key(&id) => {
                return Err(format!(
                    "--id {id}: a mount has that id already; pick another"
                ))
            }
            Some(id) => id,
            None => loop {
                inner.next_id += 1;
                let id = format!("m{}", inner.next_id);
                // A user-chosen id may have taken it.
                if !inner.mounts.contains_key(&id) {
                    break id;
                }
            },
        };
        let p = Persisted {
            id: id.clone(),
            mountpoint: mp.clone(),
            bootstrap: bootstrap.to_string(),
            config: config.to_string(),
            nydusd: sup.nydusd.display().to_string(),
            generation: 0,
            crashes: 0,
            state: None,
            vhost_user,
        };
        inner
            .mounts
            .insert(id.clone(), Entry::new(p, MountStatus::Starting));
        id
    };
    let bin = sup.nydusd.display().to_string();
    let result = workers::spawn_worker(sup, &id, workers::Start::Fresh, &bin)
        .and_then(|pid| wait_registered(sup, &id, pid).map(|()| pid));
    match result {
        Ok(_) => {
            sup.persist(&sup.lock());
            log(&format!("mounted {bootstrap} at {mp} as {id}"));
            Ok(CtlReply::Mounted { id })
        }
        Err(err) => {
            // Nothing half-mounted: forget the entry, detach whatever the
            // worker may have mounted.
            let pid = {
                let mut inner = sup.lock();
                let mut e = inner.mounts.remove(&id);
                if let Some(e) = e.as_mut() {
                    super::standby::kill_locked(e);
                }
                sup.persist(&inner);
                e.and_then(|e| e.pid)
            };
            if let Some(pid) = pid {
                kill_group(pid);
            }
            if !vhost_user && mounted_at(&mp).is_some_and(|t| t.starts_with("fuse")) {
                detach(&mp);
            }
            Err(format!("mount {mp} failed: {err}"))
        }
    }
}

fn umount(sup: &Sup, target: &str) -> Result<CtlReply, String> {
    let id = resolve(sup, target)?;
    let (mp, pid, vhost_user) = {
        let mut inner = sup.lock();
        let e = inner.mounts.get_mut(&id).ok_or("mount vanished")?;
        e.stopping = true;
        e.fuse = None;
        e.vhost_kept = None;
        super::standby::kill_locked(e);
        (e.p.mountpoint.clone(), e.pid, e.p.vhost_user)
    };
    if vhost_user {
        // SIGTERM: the worker removes its socket file as it exits (the
        // guest sees the device go away).
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    } else {
        detach(&mp);
    }
    if let Some(pid) = pid {
        wait_gone(pid, Duration::from_secs(5));
    }
    let mut inner = sup.lock();
    if let Some(e) = inner.mounts.remove(&id) {
        for g in 0..=e.p.generation {
            let _ = std::fs::remove_file(sup.state_dir.join(format!("{id}.{g}.api.sock")));
        }
    }
    sup.persist(&inner);
    log(&format!("unmounted {mp} ({id})"));
    Ok(CtlReply::Done {
        message: format!("unmounted {mp} ({id})"),
    })
}
