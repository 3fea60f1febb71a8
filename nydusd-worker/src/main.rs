//! `nydusd`: serves RAFS images over FUSE or virtio-fs (vhost-user-fs).
//!
//! `main` only dispatches: the flow is in `run`, the filesystem in `fs`,
//! the pseudo-mount table in `daemon`, the data path in `storage`.

mod api;
mod bootstrap;
mod cli;
mod daemon;
mod fs;
mod fuse_service;
mod instance;
mod logging;
mod metrics;
mod prefetch;
mod run;
mod storage;
mod supervised;
mod virtiofs;

fn main() -> std::process::ExitCode {
    run::main()
}
