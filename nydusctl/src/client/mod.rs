//! `nydusctl --sock <api.sock> [--raw] <command>`: a client of a standalone
//! nydusd's admin API, with upstream nydusctl's command line (reference §7)
//! plus a few extras (`metrics --id`, more metrics categories).

mod http;
mod print;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use nydus_protocol::api::{DaemonConf, MountCmd};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use http::DaemonClient;

/// `-r/--raw` is also accepted after the subcommand, as upstream allows.
#[derive(Args, Debug, Default)]
pub struct RawFlag {
    /// Print the daemon's JSON reply instead of formatted text.
    #[arg(short = 'r', long = "raw")]
    pub raw: bool,
}

#[derive(Subcommand, Debug)]
pub enum DaemonCommand {
    /// Show the daemon's version, state and mounted instances.
    Info(RawFlag),
    /// Configure the daemon: `set log-level <trace|debug|info|warn|error>`.
    Set(SetArgs),
    /// Show runtime metrics of the backend, the cache or the filesystem.
    Metrics(MetricsArgs),
    /// Mount a new filesystem instance at a path inside the daemon's mountpoint.
    Mount(MountArgs),
    /// Unmount a filesystem instance.
    Umount(UmountArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SetKind {
    LogLevel,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// What to configure.
    #[arg(value_enum)]
    kind: SetKind,
    /// The new value.
    value: String,
    #[command(flatten)]
    raw: RawFlag,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Category {
    /// `GET /api/v1/metrics/backend`.
    Backend,
    /// `GET /api/v1/metrics/blobcache`.
    #[value(alias = "blobcache")]
    Cache,
    /// `GET /api/v1/metrics`.
    #[value(alias = "fs")]
    Fsstats,
    /// `GET /api/v1/metrics/files` (JSON only).
    Files,
    /// `GET /api/v1/metrics/pattern` (JSON only).
    Pattern,
    /// `GET /api/v1/metrics/inflight` (JSON only).
    Inflight,
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Which metrics (upstream requires it; we default to fsstats).
    #[arg(value_enum, default_value = "fsstats")]
    category: Category,
    /// Refresh every this many seconds, printing the change (backend only).
    #[arg(short = 'I', long = "interval")]
    interval: Option<u64>,
    /// Which instance (its mountpoint) when the daemon has several.
    #[arg(long = "id")]
    id: Option<String>,
    #[command(flatten)]
    raw: RawFlag,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum FsType {
    Rafs,
    #[value(
        name = "passthrough_fs",
        alias = "passthrough",
        alias = "passthroughfs"
    )]
    PassthroughFs,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// The bootstrap (rafs) or host directory (passthrough_fs).
    #[arg(short = 's', long = "source")]
    pub source: PathBuf,
    /// Config file for the instance (sent as text; v1 JSON, v2 JSON or TOML).
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// Path inside the daemon's mountpoint, e.g. `/sub`.
    #[arg(short = 'm', long = "mountpoint")]
    pub mountpoint: String,
    /// Filesystem type (upstream requires it; we default to rafs).
    #[arg(short = 't', long = "type", value_enum, default_value = "rafs")]
    pub fs_type: FsType,
    #[command(flatten)]
    pub raw: RawFlag,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    /// Path inside the daemon's mountpoint (also accepted without `-m`).
    #[arg(short = 'm', long = "mountpoint", required_unless_present = "path")]
    pub mountpoint: Option<String>,
    #[arg(conflicts_with = "mountpoint", hide = true)]
    pub path: Option<String>,
    #[command(flatten)]
    pub raw: RawFlag,
}

/// Runs one daemon command against `sock`, printing to stdout; `Err` is the
/// one-line message for stderr.
pub fn run(sock: Option<&Path>, raw: bool, cmd: DaemonCommand) -> Result<(), String> {
    let sock = sock.ok_or("this command needs the daemon's API socket: --sock <path>")?;
    let client = DaemonClient::new(sock);
    let out = execute(&client, raw, cmd)?;
    print!("{out}");
    Ok(())
}

/// A raw reply: the JSON on one line; nothing for an empty (204) answer.
fn raw_text(v: &Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        format!("{v}\n")
    }
}

/// Does the work of [`run`] and returns what to print (tests call this).
pub fn execute(client: &DaemonClient, raw: bool, cmd: DaemonCommand) -> Result<String, String> {
    match cmd {
        DaemonCommand::Info(r) => {
            let v = client.get("v1/daemon", &[])?;
            if raw || r.raw {
                Ok(raw_text(&v))
            } else {
                Ok(print::info(&typed(v)?))
            }
        }
        DaemonCommand::Set(a) => {
            let body = match a.kind {
                SetKind::LogLevel => DaemonConf { log_level: a.value },
            };
            client.put("v1/daemon", &[], Some(to_json(&body)?))?;
            Ok(String::new())
        }
        DaemonCommand::Metrics(a) => metrics(client, raw || a.raw.raw, &a),
        DaemonCommand::Mount(a) => {
            let config = std::fs::read_to_string(&a.config)
                .map_err(|e| format!("reading config {}: {e}", a.config.display()))?;
            let fs_type = match a.fs_type {
                FsType::Rafs => "rafs",
                FsType::PassthroughFs => "passthrough_fs",
            };
            let source = a.source.to_str().ok_or("--source must be valid UTF-8")?;
            let body = MountCmd {
                source: source.to_string(),
                fs_type: fs_type.to_string(),
                config,
                prefetch_files: None,
            };
            let mountpoint = [("mountpoint", a.mountpoint.as_str())];
            client.post("v1/mount", &mountpoint, Some(to_json(&body)?))?;
            Ok(String::new())
        }
        DaemonCommand::Umount(a) => {
            let mp = a
                .mountpoint
                .or(a.path)
                .ok_or("umount needs -m <mountpoint>")?;
            client.delete("v1/mount", &[("mountpoint", &mp)])?;
            Ok(String::new())
        }
    }
}

fn metrics(client: &DaemonClient, raw: bool, a: &MetricsArgs) -> Result<String, String> {
    let query: Vec<(&str, &str)> =
        a.id.as_deref()
            .map(|id| vec![("id", id)])
            .unwrap_or_default();
    let path = match a.category {
        Category::Backend => "v1/metrics/backend",
        Category::Cache => "v1/metrics/blobcache",
        Category::Fsstats => "v1/metrics",
        Category::Files => "v1/metrics/files",
        Category::Pattern => "v1/metrics/pattern",
        Category::Inflight => "v1/metrics/inflight",
    };
    let v = client.get(path, &query)?;
    if let (Some(secs), Category::Backend) = (a.interval, a.category) {
        // Upstream loops until interrupted; so do we.
        let secs = secs.max(1);
        let mut last = typed(v)?;
        loop {
            std::thread::sleep(Duration::from_secs(secs));
            let current = typed(client.get(path, &query)?)?;
            print!("{}", print::backend_delta(&last, &current, secs));
            last = current;
        }
    }
    if raw {
        return Ok(raw_text(&v));
    }
    match a.category {
        Category::Backend => Ok(print::backend(&typed(v)?)),
        Category::Cache => Ok(print::cache(&typed(v)?)),
        Category::Fsstats => Ok(print::fsstats(&typed(v)?)),
        // No text form upstream: the JSON it is.
        Category::Files | Category::Pattern | Category::Inflight => Ok(raw_text(&v)),
    }
}

fn to_json<T: Serialize>(body: &T) -> Result<String, String> {
    serde_json::to_string(body).map_err(|e| format!("encoding the request: {e}"))
}

/// A reply in its `protocol::api` type (lenient: missing fields default).
fn typed<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("unexpected reply from the daemon: {e}"))
}
