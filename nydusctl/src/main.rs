//! `nydusctl`: supervisor, client and image tooling.

fn main() {
    eprintln!("nydusctl: not built yet");
    std::process::exit(1);
}
