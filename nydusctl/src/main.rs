//! `nydusctl`: supervisor, client and image tooling. A short driver: parse,
//! dispatch, turn the result into an exit code.

mod image;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "nydusctl", version, about = "Nydus image service: images, daemons and the supervisor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make, inspect and verify RAFS images.
    #[command(subcommand)]
    Image(image::ImageCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Image(cmd) => image::run(cmd),
    };
    if let Err(message) = result {
        eprintln!("nydusctl: {message}");
        std::process::exit(1);
    }
}
