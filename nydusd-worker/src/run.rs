//! Start-up, the main loop and exit (reference §2.6): parse flags, set up
//! logging and limits, open the image, mount, serve, and on SIGINT/SIGTERM
//! unmount and exit 0. Anything wrong before mounting is one line on stderr
//! and exit 1, with nothing mounted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

use crate::api::{spawn_api_server, DaemonControl};
use crate::cli::{version_text, Cli, Command};
use crate::daemon::{normalize_vfs_path, Daemon, Event, State};
use crate::fuse_service::{check_mountpoint, FuseService};
use crate::instance::ConfigSource;
use crate::virtiofs::VirtiofsService;

/// A start-up failure: printed as `nydusd: <message>`, exit 1.
type StartError = String;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    if cli.version {
        print!("{}", version_text());
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(code) => code,
        Err(msg) => {
            // Once on stderr; in the log file too when there is one.
            if crate::logging::to_file() {
                log::error!("{msg}");
            }
            eprintln!("nydusd: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Help goes to stdout with 0; a usage error is one line and exit 1.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("nydusd: {first} (see `nydusd --help`)");
    ExitCode::FAILURE
}

/// Where the filesystem is served.
enum Target {
    /// FUSE, mounted on this host directory.
    Mount(PathBuf),
    /// virtio-fs: a vhost-user-fs socket for a VMM.
    Sock(PathBuf),
}

/// The running transport.
enum Service {
    Fuse(FuseService),
    Virtiofs(VirtiofsService),
}

/// Flags checked and resolved into what start-up needs.
struct Plan {
    target: Target,
    bootstrap: Option<(PathBuf, ConfigSource, Option<Vec<String>>)>,
    virtual_mountpoint: String,
}

fn plan(cli: &Cli) -> Result<Plan, StartError> {
    // Upstream's README form `nydusd --sock PATH ...` has no subcommand.
    let virtiofs = match &cli.command {
        None => cli.sock.is_some(),
        Some(Command::Fuse) => false,
        Some(Command::Virtiofs { .. }) => true,
        Some(Command::Singleton { .. }) => {
            return Err("the singleton (fscache) subcommand is not available in this build".into())
        }
    };
    if cli.shared_dir.is_some() {
        return Err("--shared-dir: the passthrough driver is not supported; serve RAFS images with --bootstrap".into());
    }
    if cli.upgrade && cli.supervisor.is_none() {
        return Err("--upgrade needs --supervisor: only a supervisor can hand over a mount".into());
    }
    if cli.writable {
        return Err("--writable: only read-only mounts are supported".into());
    }
    let target = match (virtiofs, &cli.mountpoint, &cli.sock) {
        (false, Some(m), None) => Target::Mount(m.clone()),
        (false, None, _) => {
            return Err("--mountpoint is required: the directory to mount the filesystem on".into())
        }
        (false, Some(_), Some(_)) => {
            return Err("--sock is for virtio-fs; the fuse subcommand takes --mountpoint".into())
        }
        (true, None, Some(s)) => Target::Sock(s.clone()),
        (true, None, None) => {
            return Err(
                "virtiofs needs --sock: the vhost-user-fs socket the VMM connects to".into(),
            )
        }
        (true, Some(_), _) => {
            return Err("--mountpoint is for FUSE; virtio-fs serves on --sock".into())
        }
    };
    let virtual_mountpoint = normalize_vfs_path(&cli.virtual_mountpoint)
        .map_err(|e| format!("--virtual-mountpoint: {e}"))?;
    let config = match (&cli.config, &cli.localfs_dir) {
        (Some(_), Some(_)) => {
            return Err("--config and --localfs-dir conflict: give one of them".into())
        }
        (Some(path), None) => Some(ConfigSource::Text {
            text: std::fs::read_to_string(path)
                .map_err(|e| format!("--config {}: {e}", path.display()))?,
            origin: path.display().to_string(),
            image_pull_auth: std::env::var("IMAGE_PULL_AUTH").ok(),
        }),
        (None, Some(dir)) => {
            if !dir.is_dir() {
                return Err(format!("--localfs-dir {}: not a directory", dir.display()));
            }
            Some(ConfigSource::LocalfsDir(dir.clone()))
        }
        (None, None) => None,
    };
    let prefetch = match (&cli.prefetch_files, &cli.bootstrap) {
        (Some(_), None) => return Err("--prefetch-files needs --bootstrap".into()),
        (Some(p), Some(_)) => Some(read_prefetch_list(p)?),
        (None, _) => None,
    };
    let bootstrap = match (&cli.bootstrap, config) {
        (Some(b), Some(c)) => Some((b.clone(), c, prefetch)),
        (Some(_), None) => {
            return Err("--bootstrap needs --config or --localfs-dir (both are missing)".into())
        }
        (None, _) => None,
    };
    Ok(Plan {
        target,
        bootstrap,
        virtual_mountpoint,
    })
}

/// Whether the kernel is told to skip OPEN/RELEASE (`Daemon::new`), which
/// caps the daemon at 255 mounts in its life. Without an API or a
/// supervisor the table never changes. A FUSE daemon serving its
/// `--bootstrap` image at `/` (nydus-snapshotter's per-image daemons, the
/// supervisor's workers) refuses other mounts while it is there, so only
/// 254 remounts or umount-and-mount rounds would reach the cap. A daemon
/// started empty for pseudo mounts keeps real opens: it may mount many
/// more images over its life. A successor (`--upgrade`) takes whatever its
/// predecessor negotiated, from the Vfs snapshot.
fn skip_opens(cli: &Cli, plan: &Plan) -> bool {
    let fixed_table = cli.apisock.is_none() && cli.supervisor.is_none();
    let image_at_root = plan.bootstrap.is_some() && plan.virtual_mountpoint == "/";
    fixed_table || (matches!(plan.target, Target::Mount(_)) && image_at_root)
}

/// One absolute path per line; blank lines ignored.
fn read_prefetch_list(path: &Path) -> Result<Vec<String>, StartError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--prefetch-files {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('/') {
            return Err(format!(
                "--prefetch-files {} line {}: {line:?} is not an absolute path",
                path.display(),
                n + 1
            ));
        }
        out.push(line.to_string());
    }
    Ok(out)
}

fn run(cli: Cli) -> Result<ExitCode, StartError> {
    crate::logging::init(
        &cli.log_level,
        cli.log_file.as_deref(),
        cli.log_rotation_size,
    )?;
    let plan = plan(&cli)?;
    // Block the stop signals before any thread exists, so every thread
    // inherits the mask and only the signal thread receives them.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGINT);
    stop_signals.add(Signal::SIGTERM);
    stop_signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    // A supervised successor takes the fd and state of a live mount.
    let takeover = match (&cli.supervisor, cli.upgrade) {
        (Some(sup), true) => Some(crate::supervised::takeover(
            sup,
            cli.id.as_deref().unwrap_or_default(),
        )?),
        _ => None,
    };
    let mountpoint = match (&takeover, &plan.target) {
        (Some(t), _) => PathBuf::from(&t.state.mountpoint),
        (None, Target::Mount(m)) => check_mountpoint(m)?,
        (None, Target::Sock(s)) => s.clone(),
    };
    let start_time = takeover.as_ref().map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        },
        |t| t.state.start_time,
    );
    let (tx, rx) = mpsc::channel();
    let daemon = Arc::new(Daemon::new(
        start_time,
        cli.id.clone(),
        cli.supervisor.clone(),
        tx.clone(),
        skip_opens(&cli, &plan),
        matches!(plan.target, Target::Sock(_)),
    ));
    if let Some(t) = &takeover {
        t.restore(&daemon)?;
    }
    if let Some((bootstrap, config, prefetch)) = &plan.bootstrap {
        daemon.mount(
            &plan.virtual_mountpoint,
            bootstrap.clone(),
            config,
            prefetch.clone(),
        )?;
    }
    daemon.set_state(State::Ready);
    // Bound before the FUSE mount, so a bad --apisock leaves nothing
    // mounted; after opening the image, so a bad image is one line even
    // with --apisock.
    let api = match &cli.apisock {
        Some(sock) => {
            let control: Arc<dyn DaemonControl> = daemon.clone();
            let h = spawn_api_server(sock, control)
                .map_err(|e| format!("--apisock {}: {e}", sock.display()))?;
            Some(h)
        }
        None => None,
    };

    // A busy or impossible --sock is bad input too (see below).
    // A successor serves its predecessor's listener: the path stays bound.
    let listener = match (&plan.target, &takeover) {
        (Target::Sock(_), Some(t)) => Some(std::os::unix::net::UnixListener::from(
            std::os::fd::OwnedFd::from(
                t.fuse
                    .try_clone()
                    .map_err(|e| format!("--upgrade: dup of the vhost-user listener: {e}"))?,
            ),
        )),
        (Target::Sock(sock), None) => Some(crate::virtiofs::bind(sock)?),
        (Target::Mount(_), _) => None,
    };
    // Handed to the supervisor in place of a /dev/fuse fd.
    let kept_listener = match &listener {
        Some(l) if cli.supervisor.is_some() => {
            Some(std::fs::File::from(std::os::fd::OwnedFd::from(
                l.try_clone()
                    .map_err(|e| format!("dup of the vhost-user listener: {e}"))?,
            )))
        }
        _ => None,
    };
    let mut vhost = None;
    // After everything that can fail on bad input, so such a failure stays
    // one line on stderr.
    raise_nofile(cli.rlimit_nofile);

    let service = if let (Target::Sock(sock), Some(listener)) = (&plan.target, listener) {
        // Last thing before serving: this stops the old worker.
        let handover = match &takeover {
            Some(t) => t.vhost_handover(&daemon)?,
            None => None,
        };
        let (service, handle) = VirtiofsService::start(
            sock,
            listener,
            daemon.view().clone(),
            cli.fuse_threads as usize,
            tx.clone(),
            daemon.inflight().clone(),
            handover,
        )?;
        vhost = Some(handle);
        Service::Virtiofs(service)
    } else {
        let session = match &takeover {
            Some(t) => t.session()?,
            None => FuseService::mount(&mountpoint)?,
        };
        // On error the session is dropped inside `start`, which unmounts.
        Service::Fuse(FuseService::start(
            session,
            daemon.server(),
            cli.fuse_threads,
            tx.clone(),
            daemon.inflight(),
        )?)
    };
    let notifier = match &service {
        Service::Fuse(f) => f.notifier(),
        Service::Virtiofs(_) => None,
    };
    if let Some(fd) = notifier.as_ref().and_then(|f| f.try_clone().ok()) {
        daemon.set_notifier(fd);
    }
    daemon.set_state(State::Running);
    if let Some(t) = &takeover {
        t.resend_if_needed(&daemon, &cli.failover_policy);
    }
    let image = plan.bootstrap.as_ref().map_or(String::new(), |(b, _, _)| {
        format!(" ({} at {})", b.display(), plan.virtual_mountpoint)
    });
    log::info!(
        "nydusd serving {}{image} with {} threads",
        mountpoint.display(),
        cli.fuse_threads
    );

    let root = plan
        .bootstrap
        .as_ref()
        .map(|(_, config, _)| (plan.virtual_mountpoint.as_str(), config));
    crate::supervised::start_link(
        &cli,
        daemon.clone(),
        crate::supervised::Served {
            fd: notifier.or(kept_listener),
            vhost,
        },
        tx.clone(),
        root,
        takeover,
        start_time,
    )?;

    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = stop_signals.wait() {
                let _ = tx.send(Event::Signal(sig as i32));
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;

    // Every sender lives as long as the daemon, so recv() only fails if
    // they all panicked; treat that like a stop.
    let event = rx.recv().unwrap_or(Event::FuseStopped(None));
    let service = match service {
        Service::Fuse(f) => f,
        Service::Virtiofs(v) => {
            let code = v.stop(event);
            daemon.set_state(State::Stopped);
            if let Some(api) = api {
                api.stop();
            }
            log::logger().flush();
            return Ok(code);
        }
    };
    let code = match event {
        Event::Signal(sig) => {
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            service.stop_and_unmount();
            ExitCode::SUCCESS
        }
        Event::FuseStopped(None) => {
            log::info!("{} was unmounted; exiting", mountpoint.display());
            service.stop_and_unmount();
            ExitCode::SUCCESS
        }
        Event::FuseStopped(Some(e)) => {
            log::error!("FUSE service failed: {e}; unmounting");
            service.stop_and_unmount();
            ExitCode::FAILURE
        }
        Event::Exit => {
            log::info!("exit requested: leaving {} mounted", mountpoint.display());
            service.stop_keep_mount();
            ExitCode::SUCCESS
        }
    };
    daemon.set_state(State::Stopped);
    if let Some(api) = api {
        api.stop();
    }
    log::logger().flush();
    Ok(code)
}

/// Upstream's RLIMIT_NOFILE rule, minus its failure: aim for
/// `min(want, max(soft, min(fs.file-max - 16384, 1000000)))`, and without
/// CAP_SYS_RESOURCE settle for the hard limit and say so once.
fn raise_nofile(want: u64) {
    if want == 0 {
        return;
    }
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) } != 0 {
        log::warn!(
            "RLIMIT_NOFILE: getrlimit: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let file_max = std::fs::read_to_string("/proc/sys/fs/file-max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1_000_000);
    let cap = cur
        .rlim_cur
        .max(file_max.saturating_sub(16_384).min(1_000_000));
    let target = want.min(cap);
    if target <= cur.rlim_cur {
        return;
    }
    let set = |soft: u64, hard: u64| {
        let l = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 }
    };
    if set(target, target.max(cur.rlim_max)) {
        log::info!("RLIMIT_NOFILE raised to {target}");
        return;
    }
    let fallback = target.min(cur.rlim_max);
    if fallback > cur.rlim_cur && set(fallback, cur.rlim_max) {
        log::warn!(
            "RLIMIT_NOFILE: raising to {target} needs CAP_SYS_RESOURCE; using the hard limit {fallback}"
        );
    } else {
        log::info!(
            "RLIMIT_NOFILE: cannot raise it to {target} (no CAP_SYS_RESOURCE); keeping {}",
            cur.rlim_cur
        );
    }
}
