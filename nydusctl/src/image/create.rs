//! `nydusctl image create`.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The bootstrap file.
    pub bootstrap: PathBuf,
}

pub fn run(args: CreateArgs) -> Result<(), String> {
    Err(format!("image create {}: not implemented yet", args.bootstrap.display()))
}
