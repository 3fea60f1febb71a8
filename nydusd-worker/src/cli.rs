//! Command line, as upstream `nydusd` spells it (reference §2).
//!
//! Every flag is global so it is accepted before or after the subcommand:
//! `nydusd --config C fuse --mountpoint M` and `nydusd fuse --config C
//! --mountpoint M` mean the same. No subcommand means `fuse`, or
//! `virtiofs` when `--sock` is given (upstream's README form).

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

/// nydusd: serves RAFS images as read-only filesystems over FUSE or
/// virtio-fs (vhost-user-fs), fetching file data lazily from a blob backend.
#[derive(Debug, Parser)]
#[command(
    name = "nydusd",
    disable_version_flag = true,
    args_conflicts_with_subcommands = false
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Print version information (Version, Git Commit, Build Time, Profile, Rustc) and exit.
    #[arg(short = 'V', long = "version", action = ArgAction::SetTrue, global = true)]
    pub version: bool,

    /// Unix socket for the admin HTTP API (an existing file there is removed).
    #[arg(short = 'A', long, global = true, value_name = "PATH")]
    pub apisock: Option<PathBuf>,

    /// Daemon config file: v1 JSON, v2 JSON or v2 TOML.
    #[arg(short = 'C', long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Instance identifier reported by the API.
    #[arg(long, global = true, value_name = "ID")]
    pub id: Option<String>,

    /// Unix socket of the supervisor that keeps state for failover/upgrade.
    #[arg(long, global = true, value_name = "PATH")]
    pub supervisor: Option<PathBuf>,

    /// Start in takeover mode: mount nothing and wait for the supervisor.
    #[arg(long, global = true)]
    pub upgrade: bool,

    /// Log level: trace, debug, info, warn or error.
    #[arg(
        short = 'l',
        long,
        global = true,
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,

    /// Log file (".log" appended when the name has no extension); stderr when absent.
    #[arg(short = 'L', long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Rotate the log file at this size in MiB; 0 disables rotation.
    #[arg(long, global = true, default_value_t = 0, value_name = "MB")]
    pub log_rotation_size: u64,

    /// Raise RLIMIT_NOFILE towards this value (as far as allowed); 0 leaves it alone.
    #[arg(long, global = true, default_value_t = 1_000_000, value_name = "N")]
    pub rlimit_nofile: u64,

    /// RAFS bootstrap (metadata) file, mounted at --virtual-mountpoint.
    #[arg(short = 'B', long, global = true, value_name = "FILE")]
    pub bootstrap: Option<PathBuf>,

    /// Shortcut for a localfs backend plus blobcache in DIR (instead of --config).
    #[arg(short = 'D', long, global = true, value_name = "DIR")]
    pub localfs_dir: Option<PathBuf>,

    /// Serve a host directory with the passthrough driver (not supported here).
    #[arg(short = 's', long, global = true, value_name = "DIR")]
    pub shared_dir: Option<PathBuf>,

    /// File listing absolute paths to prefetch, one per line, instead of the image's table.
    #[arg(long, global = true, value_name = "FILE")]
    pub prefetch_files: Option<PathBuf>,

    /// Path inside the FUSE filesystem where --bootstrap is mounted.
    #[arg(
        short = 'm',
        long,
        global = true,
        default_value = "/",
        value_name = "PATH"
    )]
    pub virtual_mountpoint: String,

    /// Chunk deduplication database (accepted for compatibility; unused).
    #[arg(long, global = true, value_name = "FILE")]
    pub dedup_db: Option<PathBuf>,

    /// vhost-user-fs socket to serve a VM guest on (virtio-fs mode, instead of --mountpoint).
    #[arg(long, global = true, value_name = "PATH")]
    pub sock: Option<PathBuf>,

    /// Host directory to mount the FUSE filesystem on.
    #[arg(short = 'M', long, global = true, value_name = "DIR")]
    pub mountpoint: Option<PathBuf>,

    /// Number of threads serving /dev/fuse, or of virtio-fs request queues (1-1024).
    #[arg(long, visible_alias = "thread-num", global = true, default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub fuse_threads: u32,

    /// On takeover, what to do with requests the previous process left: none, resend, flush.
    #[arg(long, global = true, default_value = "resend", value_name = "POLICY",
          value_parser = ["none", "resend", "flush"])]
    pub failover_policy: String,

    /// Mount read-write (only meaningful with an overlay config; not supported here).
    #[arg(long, global = true)]
    pub writable: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve over FUSE (the default).
    Fuse,
    /// Serve over a vhost-user-fs socket for a VMM.
    Virtiofs {
        /// Disable hybrid RAFS + passthrough mode (upstream's inverted flag).
        #[arg(long)]
        hybrid_mode: bool,
    },
    /// fscache (in-kernel EROFS) daemon.
    Singleton {
        /// Cache working directory for the kernel cachefiles driver.
        #[arg(short = 'F', long, value_name = "DIR")]
        fscache: Option<PathBuf>,
        /// fscache tag.
        #[arg(long, value_name = "TAG")]
        fscache_tag: Option<String>,
        /// Number of fscache threads.
        #[arg(long, default_value_t = 4, value_name = "N")]
        fscache_threads: u32,
    },
}

const PACKAGE_VER: &str = concat!("v", env!("CARGO_PKG_VERSION"));
const GIT_COMMIT: &str = match option_env!("NYDUSD_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};
const BUILD_TIME: &str = match option_env!("NYDUSD_BUILD_TIME") {
    Some(t) => t,
    None => "unknown",
};
const RUSTC: &str = match option_env!("NYDUSD_RUSTC") {
    Some(r) => r,
    None => "unknown",
};
const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// The text `-V`/`--version` prints; nydus-snapshotter parses `Git Commit:`.
pub fn version_text() -> String {
    format!(
        "Version: \t{PACKAGE_VER}\nGit Commit: \t{GIT_COMMIT}\nBuild Time: \t{BUILD_TIME}\nProfile: \t{PROFILE}\nRustc: \t\t{RUSTC}\n"
    )
}

/// The `version` object of `GET /api/v1/daemon`.
pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "package_ver": PACKAGE_VER,
        "git_commit": GIT_COMMIT,
        "build_time": BUILD_TIME,
        "profile": PROFILE,
        "rustc": RUSTC,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("nydusd").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn flags_before_or_after_subcommand() {
        let a = parse(&[
            "--config",
            "c.json",
            "fuse",
            "--mountpoint",
            "/m",
            "--bootstrap",
            "b",
        ]);
        let b = parse(&[
            "fuse",
            "--config",
            "c.json",
            "--mountpoint",
            "/m",
            "--bootstrap",
            "b",
        ]);
        let c = parse(&[
            "--config",
            "c.json",
            "--mountpoint",
            "/m",
            "--bootstrap",
            "b",
        ]);
        for cli in [a, b, c] {
            assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("c.json")));
            assert_eq!(cli.mountpoint.as_deref(), Some(std::path::Path::new("/m")));
        }
    }

    #[test]
    fn sock_before_or_after_virtiofs() {
        let readme = parse(&["--config", "c", "--sock", "/s", "--bootstrap", "b"]);
        assert!(readme.command.is_none());
        let sub = parse(&["virtiofs", "--sock", "/s", "--thread-num", "2"]);
        assert!(matches!(sub.command, Some(Command::Virtiofs { .. })));
        for cli in [readme, sub] {
            assert_eq!(cli.sock.as_deref(), Some(std::path::Path::new("/s")));
        }
    }

    #[test]
    fn thread_num_alias_and_range() {
        assert_eq!(parse(&["--thread-num", "7"]).fuse_threads, 7);
        assert_eq!(parse(&["fuse", "--fuse-threads", "2"]).fuse_threads, 2);
        assert!(Cli::try_parse_from(["nydusd", "--thread-num", "0"]).is_err());
        assert!(Cli::try_parse_from(["nydusd", "--thread-num", "1025"]).is_err());
    }

    #[test]
    fn short_flags_and_defaults() {
        let cli = parse(&["-C", "c", "-M", "/m", "-B", "b", "-A", "s", "-l", "debug"]);
        assert_eq!(cli.log_level, "debug");
        assert_eq!(cli.virtual_mountpoint, "/");
        assert_eq!(cli.fuse_threads, 4);
        assert!(parse(&["-V"]).version);
    }

    #[test]
    fn version_lines() {
        let v = version_text();
        for key in [
            "Version:",
            "Git Commit:",
            "Build Time:",
            "Profile:",
            "Rustc:",
        ] {
            assert!(
                v.lines().any(|l| l.starts_with(key)),
                "{key} missing in {v}"
            );
        }
    }
}
