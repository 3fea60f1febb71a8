//! Clients of `nydusctl supervise`: mount, umount, list, stats, upgrade,
//! restart.

mod print;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use nydus_protocol::handoff::{CtlReply, CtlRequest, MountInfo};

use crate::client::DaemonClient;
use crate::supervisor::conn::Conn;
use crate::supervisor::DEFAULT_SOCK;

#[derive(Args, Debug)]
pub struct SupSock {
    /// The supervisor's API socket.
    #[arg(long = "supervisor", env = "NYDUS_SUPERVISOR_SOCK", default_value = DEFAULT_SOCK, value_name = "PATH")]
    pub supervisor: PathBuf,
}

/// `nydusctl mount|umount` without `--sock`: the supervisor's mount and
/// umount (with `--sock`, the standalone daemon's pseudo mounts).
#[derive(clap::Parser, Debug)]
#[command(name = "nydusctl")]
pub struct SupMountCli {
    #[command(subcommand)]
    pub command: SupMountCommand,
}

#[derive(Subcommand, Debug)]
pub enum SupMountCommand {
    /// Mount an image through the supervisor; prints the mount id once it serves.
    Mount {
        #[arg(long, value_name = "FILE")]
        bootstrap: String,
        #[arg(long, value_name = "FILE")]
        config: String,
        /// Existing empty directory (absolute path).
        #[arg(required_unless_present = "vhost_user_sock")]
        mountpoint: Option<String>,
        /// Serve a VM over virtio-fs instead: the vhost-user-fs socket the
        /// worker creates for the VMM (absolute path).
        #[arg(long, value_name = "PATH", conflicts_with = "mountpoint")]
        vhost_user_sock: Option<String>,
        /// The mount id (default: the next mN).
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        #[command(flatten)]
        sock: SupSock,
    },
    /// Unmount a supervised mount and stop its worker.
    Umount {
        /// Mount id or mountpoint.
        target: String,
        #[command(flatten)]
        sock: SupSock,
    },
}

#[derive(Subcommand, Debug)]
pub enum ManageCommand {
    /// List supervised mounts.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        sock: SupSock,
    },
    /// Metrics of one mount's worker (all mounts without ID).
    Stats {
        id: Option<String>,
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        #[arg(long)]
        prometheus: bool,
        #[command(flatten)]
        sock: SupSock,
    },
    /// Replace workers with a (new) nydusd binary without unmounting.
    Upgrade {
        /// The new binary (default: the one the mount runs).
        #[arg(long, value_name = "PATH")]
        nydusd: Option<String>,
        /// Mount id or mountpoint.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every mount, one at a time; stops at the first that fails.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        sock: SupSock,
    },
    /// Start a fresh worker for a mount (no gap, no unmount).
    Restart {
        id: String,
        #[command(flatten)]
        sock: SupSock,
    },
}

/// One request to the supervisor.
pub fn call(sock: &Path, req: &CtlRequest) -> Result<CtlReply, String> {
    let stream = UnixStream::connect(sock).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "permission denied on {}: the supervisor socket is 0600 root; run as root",
            sock.display()
        ),
        _ => format!(
            "no supervisor at {} ({e}); start it with `nydusctl supervise` or `systemctl start nydus-supervisor`",
            sock.display()
        ),
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
    let mut conn = Conn::new(stream);
    conn.send(req, None)
        .map_err(|e| format!("sending to the supervisor: {e}"))?;
    let (reply, _) = conn
        .recv::<CtlReply>(|_| false)
        .map_err(|e| format!("reading the supervisor's reply: {e}"))?;
    match reply {
        CtlReply::Error { message } => Err(message),
        r => Ok(r),
    }
}

fn list(sock: &Path) -> Result<Vec<MountInfo>, String> {
    match call(sock, &CtlRequest::List)? {
        CtlReply::List { mounts } => Ok(mounts),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

fn done(r: CtlReply) -> String {
    match r {
        CtlReply::Mounted { id } => id,
        CtlReply::Done { message } => message,
        other => format!("{other:?}"),
    }
}

pub fn run_mount(cmd: SupMountCommand) -> Result<(), String> {
    let out = match cmd {
        SupMountCommand::Mount {
            bootstrap,
            config,
            mountpoint,
            vhost_user_sock,
            id,
            sock,
        } => done(call(
            &sock.supervisor,
            &CtlRequest::Mount {
                vhost_user: vhost_user_sock.is_some(),
                mountpoint: vhost_user_sock.or(mountpoint).unwrap_or_default(),
                bootstrap,
                config,
                id,
            },
        )?),
        SupMountCommand::Umount { target, sock } => {
            done(call(&sock.supervisor, &CtlRequest::Umount { target })?)
        }
    };
    print_out(&out);
    Ok(())
}

/// Like `println!`, but a closed stdout (`| head`) is not a panic.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// Whether argv asks for the supervisor's mount/umount: the subcommand is
/// `mount` or `umount` and no standalone daemon socket is given.
pub fn is_supervisor_mount(args: &[String]) -> bool {
    let standalone = args.iter().any(|a| {
        a == "-S" || a.starts_with("--sock") || a.starts_with("--apisock") || a.starts_with("-S")
    });
    let sub = args.iter().skip(1).find(|a| !a.starts_with('-'));
    !standalone && matches!(sub.map(String::as_str), Some("mount" | "umount"))
}

pub fn run(cmd: ManageCommand) -> Result<(), String> {
    let out = match cmd {
        ManageCommand::List { json, sock } => {
            let mounts = list(&sock.supervisor)?;
            if json {
                serde_json::to_string_pretty(&mounts).map_err(|e| e.to_string())?
            } else {
                print::table(&mounts)
            }
        }
        ManageCommand::Stats {
            id,
            json,
            prometheus,
            sock,
        } => {
            let mounts = list(&sock.supervisor)?;
            let chosen: Vec<&MountInfo> = mounts
                .iter()
                .filter(|m| id.as_deref().is_none_or(|t| t == m.id || t == m.mountpoint))
                .collect();
            if chosen.is_empty() {
                return Err("no such mount; see `nydusctl list`".into());
            }
            let mut parts = Vec::new();
            for m in chosen {
                let sockp = m
                    .apisock
                    .as_ref()
                    .ok_or_else(|| format!("{}: no worker serving; see `nydusctl list`", m.id))?;
                let v = DaemonClient::new(Path::new(sockp)).get("v1/metrics", &[])?;
                parts.push(print::stats(m, &v, json, prometheus));
            }
            parts.join("\n")
        }
        ManageCommand::Upgrade {
            nydusd,
            id,
            all: _,
            sock,
        } => done(call(
            &sock.supervisor,
            &CtlRequest::Upgrade { target: id, nydusd },
        )?),
        ManageCommand::Restart { id, sock } => {
            done(call(&sock.supervisor, &CtlRequest::Restart { target: id })?)
        }
    };
    if !out.is_empty() {
        print_out(&out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_supervisor_mount;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn mount_goes_to_the_supervisor_without_sock() {
        assert!(is_supervisor_mount(&argv(
            "nydusctl mount --bootstrap /b --config /c /m"
        )));
        assert!(is_supervisor_mount(&argv("nydusctl umount m1")));
        assert!(!is_supervisor_mount(&argv(
            "nydusctl --sock /s mount -s /b -c /c -m /x"
        )));
        assert!(!is_supervisor_mount(&argv("nydusctl -S /s umount -m /x")));
        assert!(!is_supervisor_mount(&argv(
            "nydusctl --apisock=/s mount -s b"
        )));
        assert!(!is_supervisor_mount(&argv("nydusctl list")));
    }
}
