//! `nydusctl image ...`: build, inspect, verify, list and push RAFS images.

mod build;
mod check;
mod create;
mod inspect;
mod ls;
mod push;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build a RAFS bootstrap and data blob from a directory tree.
    Create(create::CreateArgs),
    /// Print every on-disk structure of a bootstrap with its offset.
    Inspect(inspect::InspectArgs),
    /// Walk the whole tree and verify every chunk; exit 0 only if all is well.
    Check(check::CheckArgs),
    /// List the tree of an image (`--manifest`: exactly as manifest.py prints it).
    Ls(ls::LsArgs),
    /// Push an image to an OCI registry (data blobs, bootstrap layer, manifest).
    Push(push::PushArgs),
}

/// Runs one image subcommand; `Err` is the one-line message to print.
pub fn run(cmd: ImageCommand) -> Result<(), String> {
    match cmd {
        ImageCommand::Create(args) => create::run(args),
        ImageCommand::Inspect(args) => inspect::run(args),
        ImageCommand::Check(args) => check::run(args),
        ImageCommand::Ls(args) => ls::run(args),
        ImageCommand::Push(args) => push::run(args),
    }
}
