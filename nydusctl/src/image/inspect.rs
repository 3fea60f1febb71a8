//! `nydusctl image inspect`.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The bootstrap file.
    pub bootstrap: PathBuf,
}

pub fn run(args: InspectArgs) -> Result<(), String> {
    Err(format!("image inspect {}: not implemented yet", args.bootstrap.display()))
}
