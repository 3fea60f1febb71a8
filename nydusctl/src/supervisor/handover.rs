//! virtio-fs upgrades: the live vhost-user device goes from the old worker
//! to its successor through the supervisor. The successor restores its
//! images first and then asks (`Handover`); only then is the old worker
//! stopped, since the vring indices exist only once it stops popping. The
//! old worker answers `Stop` with the device (`VhostState` + fds), which
//! is kept here until the successor registers, and relayed to it.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nydus_protocol::handoff::{VhostUserState, WorkerMsg};

use super::conn::{send_fds_on, send_on};
use super::{log, Sup};

/// How long the old worker has to stop and send its device: the chains in
/// hand are answered first, and one may wait on a slow remote read.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(15);

type Device = (VhostUserState, Vec<File>);

/// A successor asked on `stream` for the device of mount `id`.
pub fn relay(sup: &Sup, id: &str, stream: &UnixStream) {
    let t0 = Instant::now();
    let sent = match take(sup, id) {
        Ok(Some((state, fds))) => {
            let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
            let msg = WorkerMsg::VhostState { state: Some(state) };
            send_fds_on(stream, &msg, &raw)
        }
        Ok(None) => send_on(stream, &WorkerMsg::VhostState { state: None }, None),
        Err(message) => {
            log(&format!("{id}: handover failed: {message}"));
            send_on(stream, &WorkerMsg::Error { message }, None)
        }
    };
    match sent {
        Ok(()) => log(&format!(
            "{id}: virtio-fs device relayed after {:?}",
            t0.elapsed()
        )),
        Err(e) => log(&format!("{id}: sending the device to the successor: {e}")),
    }
}

/// Stops the old worker and waits for its device. `None`: no live worker
/// to take one from (after a crash the vring indices are lost).
fn take(sup: &Sup, id: &str) -> Result<Option<Device>, String> {
    let writer = {
        let mut inner = sup.lock();
        let e = inner
            .mounts
            .get_mut(id)
            .ok_or_else(|| format!("unknown mount id {id}"))?;
        if !e.p.vhost_user {
            return Err(format!("mount {id} is not served over virtio-fs"));
        }
        match e.writer.as_ref().and_then(|w| w.try_clone().ok()) {
            Some(w) => {
                e.vhost_kept = None;
                w
            }
            None => {
                if e.vhost_kept.take().is_some() {
                    log(&format!(
                        "{id}: the previous successor died during a handover; the guest's requests in flight are lost"
                    ));
                }
                return Ok(None);
            }
        }
    };
    send_on(&writer, &WorkerMsg::Stop, None)
        .map_err(|e| format!("telling the old worker to stop: {e}"))?;
    let deadline = Instant::now() + HANDOVER_TIMEOUT;
    let mut inner = sup.lock();
    loop {
        let e = inner
            .mounts
            .get(id)
            .ok_or_else(|| format!("mount {id} was removed"))?;
        match &e.vhost_kept {
            Some(Ok((state, fds))) => {
                let dups = fds
                    .iter()
                    .map(File::try_clone)
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(|e| format!("dup of a device fd: {e}"))?;
                return Ok(Some((state.clone(), dups)));
            }
            Some(Err(m)) => return Err(format!("the old worker could not hand over: {m}")),
            None if e.writer.is_none() => {
                return Err("the old worker died before handing over its device".into())
            }
            None => {}
        }
        inner = sup
            .wait_until(inner, deadline)
            .ok_or_else(|| format!("the old worker sent no device within {HANDOVER_TIMEOUT:?}"))?;
    }
}

/// The old worker (connection `token`) sent its device.
pub fn kept(
    sup: &Sup,
    id: Option<&str>,
    token: u64,
    state: Option<VhostUserState>,
    fds: Vec<File>,
) {
    let result = match state {
        Some(st) if st.fd_count() == fds.len() => Ok((st, fds)),
        Some(st) => Err(format!(
            "{} fds arrived for a device of {}",
            fds.len(),
            st.fd_count()
        )),
        None => Err("the old worker sent no device".to_string()),
    };
    store(sup, id, token, result);
}

/// The old worker could not stop its device.
pub fn failed(sup: &Sup, id: Option<&str>, token: u64, message: String) {
    store(sup, id, token, Err(message));
}

fn store(sup: &Sup, id: Option<&str>, token: u64, result: Result<Device, String>) {
    let Some(id) = id else { return };
    let mut inner = sup.lock();
    if let Some(e) = inner.mounts.get_mut(id) {
        if e.conn_token == token {
            e.vhost_kept = Some(result);
            sup.cv.notify_all();
        }
    }
}
