//! Records what `nydusd --version` reports: git commit, build time, rustc.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = run("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let time = run("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NYDUSD_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=NYDUSD_BUILD_TIME={time}");
    println!("cargo:rustc-env=NYDUSD_RUSTC={rustc}");
    println!("cargo:rerun-if-changed=build.rs");
    // Re-run when HEAD moves (a commit or a checkout), so `Git Commit:` -
    // which nydus-snapshotter compares to detect upgrades - is never stale.
    if let Some(git_dir) = run("git", &["rev-parse", "--absolute-git-dir"]) {
        let git_dir = std::path::Path::new(&git_dir);
        let mut watch = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
        if let Some(head_ref) = run("git", &["symbolic-ref", "-q", "HEAD"]) {
            watch.push(git_dir.join(head_ref));
        }
        for path in watch.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
