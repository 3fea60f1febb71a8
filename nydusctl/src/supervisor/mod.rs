//! `nydusctl supervise`: the host daemon that runs one `nydusd` worker per
//! mount, keeps each worker's `/dev/fuse` fd and state, and replaces a
//! worker (upgrade, restart, crash) without unmounting.
//!
//! Threads: the client API (one thread per request), the worker socket
//! (one thread per worker connection: a worker's death is the EOF), a
//! reaper (waitpid), and one short-lived thread per failover. All share
//! `Sup` under one mutex; nothing blocks while holding it.

mod api;
pub mod conn;
mod handover;
mod recovery;
mod standby;
mod table;
mod workers;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Args;
use nydus_protocol::handoff::MountStatus;

use table::Entry;

pub const DEFAULT_SOCK: &str = "/run/nydus/supervisor.sock";

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    /// Client API socket (mode 0600).
    #[arg(long, default_value = DEFAULT_SOCK, value_name = "PATH")]
    pub sock: PathBuf,
    /// Where the mount table, the worker socket, worker logs and API sockets live.
    #[arg(long, default_value = "/run/nydus", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The nydusd binary for new workers.
    #[arg(long, value_name = "PATH")]
    pub nydusd: Option<PathBuf>,
}

pub struct Inner {
    pub mounts: BTreeMap<String, Entry>,
    pub next_id: u64,
    /// Exit codes of reaped children by pid (-1: killed by a signal).
    pub exited: HashMap<u32, i32>,
    pub next_token: u64,
}

pub struct Sup {
    pub state_dir: PathBuf,
    pub worker_sock: PathBuf,
    pub nydusd: PathBuf,
    pub inner: Mutex<Inner>,
    pub cv: Condvar,
}

impl Sup {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the next change to the table, but not past `deadline`:
    /// `None` (the lock released) once it has passed.
    pub fn wait_until<'a>(
        &self,
        inner: MutexGuard<'a, Inner>,
        deadline: Instant,
    ) -> Option<MutexGuard<'a, Inner>> {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (inner, _) = self
            .cv
            .wait_timeout(inner, left)
            .unwrap_or_else(|e| e.into_inner());
        Some(inner)
    }

    pub fn table_path(&self) -> PathBuf {
        self.state_dir.join("mounts.json")
    }

    /// Persists the table; a failure is logged (the mounts keep serving).
    pub fn persist(&self, inner: &Inner) {
        if let Err(e) = table::save(&self.table_path(), inner.next_id, &inner.mounts) {
            log(&e);
        }
    }
}

pub fn log(msg: &str) {
    // A closed stderr must not take the supervisor down.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "nydusctl supervise: {msg}");
}

/// Binds `path` for listening; refuses when a live server answers there.
fn bind_exclusive(path: &Path, what: &str) -> Result<UnixListener, String> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another supervisor is already serving {what} {}; stop it first (systemctl stop nydus-supervisor)",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("removing the stale socket {}: {e}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod 0600 {}: {e}", path.display()))?;
    Ok(l)
}

fn default_nydusd() -> PathBuf {
    // Beside our own binary first (installed together), else $PATH.
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("nydusd")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("nydusd"))
}

pub fn run(args: SuperviseArgs) -> Result<(), String> {
    let abs = |p: &Path, flag: &str| {
        if p.is_absolute() {
            Ok(())
        } else {
            Err(format!("{flag} {}: give an absolute path", p.display()))
        }
    };
    abs(&args.sock, "--sock")?;
    abs(&args.state_dir, "--state-dir")?;
    std::fs::create_dir_all(&args.state_dir)
        .map_err(|e| format!("--state-dir {}: {e}", args.state_dir.display()))?;
    let _ = std::fs::set_permissions(&args.state_dir, std::fs::Permissions::from_mode(0o700));
    let api = bind_exclusive(&args.sock, "API socket")?;
    let worker_sock = args.state_dir.join("worker.sock");
    let workers = bind_exclusive(&worker_sock, "worker socket")?;
    let nydusd = args.nydusd.clone().unwrap_or_else(default_nydusd);

    let file = table::load(&args.state_dir.join("mounts.json"))?;
    let mut mounts = BTreeMap::new();
    for p in file.mounts {
        // Workers outlive us: wait for them to register again.
        mounts.insert(p.id.clone(), Entry::new(p, MountStatus::Recovering));
    }
    let reloaded = !mounts.is_empty();
    let sup = Arc::new(Sup {
        state_dir: args.state_dir.clone(),
        worker_sock,
        nydusd,
        inner: Mutex::new(Inner {
            mounts,
            next_id: file.next_id,
            exited: HashMap::new(),
            next_token: 1,
        }),
        cv: Condvar::new(),
    });
    workers::spawn_reaper(sup.clone())?;
    workers::spawn_worker_listener(sup.clone(), workers)?;
    if reloaded {
        recovery::spawn_orphan_check(sup.clone())?;
    }
    log(&format!(
        "serving {} (state in {}, workers run {})",
        args.sock.display(),
        args.state_dir.display(),
        sup.nydusd.display()
    ));
    sd_notify_ready();
    for stream in api.incoming() {
        match stream {
            Ok(s) => {
                let sup = sup.clone();
                let _ = std::thread::Builder::new()
                    .name("api".into())
                    .spawn(move || api::serve(&sup, s));
            }
            Err(e) => {
                log(&format!("accept on the API socket: {e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(())
}

/// systemd `Type=notify`: READY=1 once the sockets serve.
fn sd_notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => return log(&format!("sd_notify: {e}")),
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(b"READY=1", &a))
    } else {
        sock.send_to(b"READY=1", Path::new(&path))
    };
    if let Err(e) = result {
        log(&format!("sd_notify READY=1: {e}"));
    }
}
