//! `nydusd`: serves one RAFS image over FUSE or vhost-user-fs.

// Not wired into the daemon yet; drop the allow once run.rs uses them.
#[allow(dead_code, unused_imports)]
mod api;
#[allow(dead_code, unused_imports)]
mod metrics;

fn main() {
    eprintln!("nydusd: not built yet");
    std::process::exit(1);
}
