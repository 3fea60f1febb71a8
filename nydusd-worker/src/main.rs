//! `nydusd`: serves RAFS images over FUSE.
//!
//! `main` only dispatches: the flow is in `run`, the filesystem in `fs`,
//! the pseudo-mount table in `daemon`, the data path in `storage`.

mod api;
mod cli;
mod daemon;
mod fs;
mod fuse_service;
mod instance;
mod logging;
mod metrics;
mod run;
mod storage;
mod supervised;

fn main() -> std::process::ExitCode {
    run::main()
}
