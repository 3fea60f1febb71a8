//! `nydusctl image check`.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The bootstrap file.
    pub bootstrap: PathBuf,
}

pub fn run(args: CheckArgs) -> Result<(), String> {
    Err(format!("image check {}: not implemented yet", args.bootstrap.display()))
}
