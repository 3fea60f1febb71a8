//! `nydusd`: serves one RAFS image over FUSE or vhost-user-fs.

fn main() {
    eprintln!("nydusd: not built yet");
    std::process::exit(1);
}
