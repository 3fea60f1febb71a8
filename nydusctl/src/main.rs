//! `nydusctl`: supervisor, client and image tooling. A short driver: parse,
//! dispatch, turn the result into an exit code.

mod client;
mod image;
mod manage;
mod supervisor;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nydusctl",
    version,
    about = "Nydus image service: images, daemons and the supervisor"
)]
struct Cli {
    /// API socket of a standalone nydusd (for info, set, metrics, mount, umount).
    #[arg(short = 'S', long = "sock", visible_alias = "apisock")]
    sock: Option<PathBuf>,
    /// Print the daemon's JSON replies as they are.
    #[arg(short = 'r', long = "raw")]
    raw: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make, inspect and verify RAFS images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    #[command(flatten)]
    Daemon(client::DaemonCommand),
    /// Run the supervisor: one nydusd worker per mount, upgrades and failover without unmounting.
    Supervise(supervisor::SuperviseArgs),
    #[command(flatten)]
    Manage(manage::ManageCommand),
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if manage::is_supervisor_mount(&args) {
        let cmd = <manage::SupMountCli as Parser>::parse_from(&args).command;
        if let Err(message) = manage::run_mount(cmd) {
            eprintln!("nydusctl: {message}");
            std::process::exit(1);
        }
        return;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Image(cmd) => image::run(cmd),
        Command::Daemon(cmd) => client::run(cli.sock.as_deref(), cli.raw, cmd),
        Command::Supervise(args) => supervisor::run(args),
        Command::Manage(cmd) => manage::run(cmd),
    };
    if let Err(message) = result {
        eprintln!("nydusctl: {message}");
        std::process::exit(1);
    }
}
