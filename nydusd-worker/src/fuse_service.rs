//! The FUSE transport: mount(2) through fuse-backend-rs, N threads reading
//! `/dev/fuse`, and the two ways to stop (unmount, or leave the mount for a
//! successor).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::daemon::VfsView;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseChannel, FuseSession};

use crate::daemon::Event;
use crate::metrics::{InflightSlot, InflightTable};

/// Upstream's filesystem name (`/proc/mounts` source column).
const FS_NAME: &str = "rafs";

/// Resolves `--mountpoint` and refuses what would fail or stack mounts:
/// a missing path, a non-directory, a dead FUSE mount, an existing FUSE mount.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    let canon = path.canonicalize().map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTCONN) => format!(
            "--mountpoint {shown}: a dead FUSE mount is there (transport endpoint is not connected); run `umount -l {shown}` first"
        ),
        Some(libc::ENOENT) => format!("--mountpoint {shown}: no such directory; create it first"),
        _ => format!("--mountpoint {shown}: {e}"),
    })?;
    if !canon.is_dir() {
        return Err(format!("--mountpoint {shown}: not a directory"));
    }
    if let Some(fstype) = mounted_fstype(&canon) {
        if fstype.starts_with("fuse") {
            return Err(format!(
                "--mountpoint {shown}: already a FUSE mount ({fstype}), maybe another nydusd; unmount it first"
            ));
        }
    }
    Ok(canon)
}

/// The fstype of the top mount at exactly `path`, from /proc/self/mountinfo.
pub fn mounted_fstype(path: &Path) -> Option<String> {
    mount_entry(path).map(|(_, fstype)| fstype)
}

/// (`major:minor`, fstype) of the top mount at exactly `path`. Reads only
/// /proc, so it is safe while our own FUSE mount is not being served.
fn mount_entry(path: &Path) -> Option<(String, String)> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let want = path.as_os_str().as_bytes();
    let mut found = None;
    for line in info.split(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(line);
        let fields: Vec<&str> = text.split(' ').collect();
        let (Some(dev), Some(mp)) = (fields.get(2), fields.get(4)) else {
            continue;
        };
        if unescape_mountinfo(mp) != want {
            continue;
        }
        let fstype = text
            .split(" - ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next());
        // Later lines are mounted on top of earlier ones.
        if let Some(fstype) = fstype {
            found = Some((dev.to_string(), fstype.to_string()));
        }
    }
    found
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// A mounted, serving FUSE session.
pub struct FuseService {
    session: FuseSession,
    threads: Vec<JoinHandle<()>>,
    /// `major:minor` of our mount, to recognise it at exit.
    dev: Option<String>,
}

impl FuseService {
    /// Mounts `mountpoint` (already checked) read-only.
    pub fn mount(mountpoint: &Path) -> Result<FuseSession, String> {
        let mut se = FuseSession::new(mountpoint, FS_NAME, "", true)
            .map_err(|e| format!("--mountpoint {}: {e}", mountpoint.display()))?;
        se.mount()
            .map_err(|e| format!("mounting {}: {e}", mountpoint.display()))?;
        Ok(se)
    }

    /// Starts `threads` threads serving `se` with `server`. Each reports on
    /// `events` when it stops on its own (the mount went away).
    pub fn start(
        session: FuseSession,
        server: Arc<Server<Arc<VfsView>>>,
        threads: u32,
        events: Sender<Event>,
        inflight: &Arc<InflightTable>,
    ) -> Result<Self, String> {
        let dev = mount_entry(session.mountpoint())
            .filter(|(_, fstype)| fstype.starts_with("fuse"))
            .map(|(dev, _)| dev);
        let mut svc = FuseService {
            session,
            threads: Vec::new(),
            dev,
        };
        let readahead = Arc::new(Readahead {
            dev: svc.dev.clone(),
            done: std::sync::Once::new(),
        });
        for i in 0..threads {
            let ch = svc
                .session
                .new_channel()
                .map_err(|e| format!("FUSE channel: {e}"))?;
            let server = server.clone();
            let events = events.clone();
            let slot = inflight.slot();
            let readahead = readahead.clone();
            let t = std::thread::Builder::new()
                .name(format!("fuse-{i}"))
                .spawn(move || {
                    let why = serve(ch, &server, &slot, &readahead);
                    let _ = events.send(Event::FuseStopped(why));
                })
                .map_err(|e| format!("starting FUSE thread: {e}"))?;
            svc.threads.push(t);
        }
        Ok(svc)
    }

    /// A dup of the /dev/fuse fd, for notifications.
    pub fn notifier(&self) -> Option<std::fs::File> {
        self.session
            .get_fuse_file()
            .and_then(|f| f.try_clone().ok())
    }

    /// Unmounts (unless someone already did) and joins the threads.
    pub fn stop_and_unmount(mut self) {
        // umount() skips the umount2 when the device reports the mount gone.
        if let Err(e) = self.session.umount() {
            log::warn!("unmounting {}: {e}", self.session.mountpoint().display());
        }
        self.join();
        // An aborted connection (/sys/fs/fuse/connections/N/abort) leaves a
        // dead mount that umount() took for already gone: if our mount is
        // still the top one there, detach it.
        let mp = self.session.mountpoint().to_path_buf();
        if self.dev.is_some() && mount_entry(&mp).map(|(dev, _)| dev) == self.dev {
            match nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) => log::info!("detached the dead mount at {}", mp.display()),
                Err(e) => log::warn!("detaching {}: {e}", mp.display()),
            }
        }
    }

    /// Stops serving but leaves the mount (and its connection) in place for
    /// a successor; the process must exit right after.
    pub fn stop_keep_mount(mut self) {
        self.join();
        // Dropping the session would unmount.
        std::mem::forget(self.session);
    }

    fn join(&mut self) {
        if let Err(e) = self.session.wake() {
            log::warn!("waking FUSE threads: {e}");
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One thread's loop. Returns why it stopped when that was an error.
/// `slot` shows the request being served in `/api/v1/metrics/inflight`.
/// Raises the mount's readahead window once FUSE INIT is done.
///
/// The kernel caps the window at what INIT negotiated (128 KiB unless the
/// bdi was tuned), so a cold sequential read costs one request and one chunk
/// lookup per 128 KiB. Chunks are 1 MiB by default, so a 1 MiB window asks
/// for a whole chunk at once: 8 times fewer requests (a cold 64 MiB
/// sequential read measured about 20% faster). It must be set after INIT (whose reply would lower it again), i.e. after
/// the first request any thread answers; INIT is always the first.
struct Readahead {
    dev: Option<String>,
    done: std::sync::Once,
}

const READAHEAD_KB: u32 = 1024;

impl Readahead {
    fn after_request(&self) {
        self.done.call_once(|| {
            let Some(dev) = &self.dev else { return };
            let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
            if let Err(e) = std::fs::write(&path, format!("{READAHEAD_KB}\n")) {
                log::debug!("{path}: {e}; keeping the kernel's readahead window");
            }
        });
    }
}

fn serve(
    mut ch: FuseChannel,
    server: &Server<Arc<VfsView>>,
    slot: &InflightSlot,
    readahead: &Readahead,
) -> Option<String> {
    loop {
        match ch.get_request() {
            Ok(Some((reader, writer))) => {
                let result = server.handle_message(reader, writer.into(), None, Some(slot));
                readahead.after_request();
                match result {
                    Ok(_) => {}
                    // The kernel no longer wants the reply (interrupted, or
                    // the mount is going away).
                    Err(fuse_backend_rs::Error::EncodeMessage(_)) => {}
                    Err(e) => log::error!("FUSE request failed: {e}"),
                }
            }
            // Woken by stop, or ENODEV: unmounted.
            Ok(None) => return None,
            Err(e) => {
                let text = e.to_string();
                // After an unmount the device's epoll reports an error: a
                // normal end, not a failure.
                if text.contains("epoll error") {
                    return None;
                }
                log::error!("reading /dev/fuse: {text}");
                return Some(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), b"/a b\\c");
        assert_eq!(unescape_mountinfo("/x\\04"), b"/x\\04");
        assert_eq!(mounted_fstype(Path::new("/proc")).as_deref(), Some("proc"));
    }
}
