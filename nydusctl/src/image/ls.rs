//! `nydusctl image ls`.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct LsArgs {
    /// The bootstrap file.
    pub bootstrap: PathBuf,
}

pub fn run(args: LsArgs) -> Result<(), String> {
    Err(format!("image ls {}: not implemented yet", args.bootstrap.display()))
}
