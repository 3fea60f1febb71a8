//! Capturing a live device for a successor, and rebuilding it there.
//!
//! The fd list is ordered as `VhostUserState::fd_count` documents:
//! [frontend socket], region fds..., then per vring its kick, call, err.
//! The successor maps the same memfds, so nothing of guest memory is
//! copied; the queues resume at the recorded indices.
//!
//! One gap: vhost's `BackendReqHandler` keeps the negotiated features to
//! itself, so the successor's handler starts with none. Until the VMM sends
//! SET_FEATURES again (it does on every device start, e.g. a guest reset),
//! a SET_VRING_ENABLE is refused: logged, the message consumed whole (the
//! stream stays in step), and GET_VRING_BASE still stops the ring.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use nydus_protocol::handoff::{VhostUserState, VringHandover, VHOST_STATE_VERSION};

use super::device::{Device, Region, Vring};
use super::queue::Serving;
use crate::metrics::InflightTable;

fn dup(f: &File) -> Result<File, String> {
    f.try_clone()
        .map_err(|e| format!("dup for the handover: {e}"))
}

/// Stops every ring (after the chain each has in hand) and describes the
/// device. The device is left stopped: the caller exits after sending.
pub fn capture(
    dev: &mut Device,
    sock: Option<&UnixStream>,
) -> Result<(VhostUserState, Vec<File>), String> {
    dev.stop_all();
    let mut fds = Vec::new();
    if let Some(s) = sock {
        fds.push(File::from(std::os::fd::OwnedFd::from(
            s.try_clone()
                .map_err(|e| format!("dup of the frontend socket: {e}"))?,
        )));
    }
    for r in &dev.regions {
        fds.push(dup(&r.file)?);
    }
    let mut vrings = Vec::new();
    for v in &dev.vrings {
        let call = v.call.lock().unwrap_or_else(|e| e.into_inner());
        for f in [v.kick.as_ref(), call.as_ref(), v.err.as_ref()]
            .into_iter()
            .flatten()
        {
            fds.push(dup(f)?);
        }
        vrings.push(VringHandover {
            num: v.num,
            desc: v.desc,
            avail: v.avail,
            used: v.used,
            next_avail: v.next_avail,
            next_used: v.next_used,
            started: v.started,
            enabled: v.enabled,
            kick: v.kick.is_some(),
            call: call.is_some(),
            err: v.err.is_some(),
        });
    }
    let state = VhostUserState {
        version: VHOST_STATE_VERSION,
        acked_features: dev.acked_features,
        acked_protocol_features: dev.acked_protocol_features,
        connected: sock.is_some(),
        regions: dev.regions.iter().map(|r| r.meta.clone()).collect(),
        vrings,
        vfs_state: String::new(),
    };
    debug_assert_eq!(state.fd_count(), fds.len());
    Ok((state, fds))
}

/// Rebuilds the device from a handed-over state and starts its rings.
/// Returns it with the frontend socket (when one was connected).
pub fn restore(
    serving: Serving,
    inflight: Arc<InflightTable>,
    request_queues: usize,
    state: &VhostUserState,
    fds: Vec<File>,
) -> Result<(Device, Option<UnixStream>), String> {
    if state.version != VHOST_STATE_VERSION {
        return Err(format!(
            "vhost-user state version {} is not supported (this build reads {VHOST_STATE_VERSION}); restart the VM's device",
            state.version
        ));
    }
    if fds.len() != state.fd_count() {
        return Err(format!(
            "vhost-user handover: {} fds received, the state describes {}",
            fds.len(),
            state.fd_count()
        ));
    }
    let mut dev = Device::new(serving, inflight, request_queues);
    if !state.connected {
        // No frontend was connected: a fresh device for the next one.
        return Ok((dev, None));
    }
    if state.vrings.len() != dev.vrings.len() {
        return Err(format!(
            "vhost-user handover: the device had {} queues, this worker has {} (keep --thread-num)",
            state.vrings.len(),
            dev.vrings.len()
        ));
    }
    let mut fds = fds.into_iter();
    let mut next = || fds.next().ok_or("vhost-user handover: fd list too short");
    let sock = if state.connected {
        Some(UnixStream::from(std::os::fd::OwnedFd::from(next()?)))
    } else {
        None
    };
    dev.acked_features = state.acked_features;
    dev.acked_protocol_features = state.acked_protocol_features;
    for meta in &state.regions {
        dev.regions.push(Region {
            meta: meta.clone(),
            file: next()?,
        });
    }
    for (v, h) in dev.vrings.iter_mut().zip(&state.vrings) {
        let take = |flag: bool, next: &mut dyn FnMut() -> Result<File, &'static str>| {
            if flag {
                next().map(Some)
            } else {
                Ok(None)
            }
        };
        let kick = take(h.kick, &mut next)?;
        let call = take(h.call, &mut next)?;
        let err = take(h.err, &mut next)?;
        *v = Vring {
            num: h.num,
            desc: h.desc,
            avail: h.avail,
            used: h.used,
            next_avail: h.next_avail,
            next_used: h.next_used,
            started: h.started,
            enabled: h.enabled,
            kick,
            call: Arc::new(std::sync::Mutex::new(call)),
            err,
            running: None,
        };
    }
    if !dev.regions.is_empty() {
        dev.map_regions()?;
    }
    for i in 0..dev.vrings.len() {
        dev.try_start(i)?;
    }
    Ok((dev, sock))
}
