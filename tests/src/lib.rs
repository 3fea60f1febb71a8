//! Helpers for the end-to-end tests: paths to the built binaries, the shared
//! fixtures and scripts, and guards that clean up mounts and processes.

pub mod api;
pub mod mount;
pub mod push;
pub mod secrets;
pub mod servers;
pub mod source;
pub mod virtiofs;

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `../shared` beside the project (or `$NYDUS_SHARED`); panics with what is
/// missing, so a test never skips silently.
pub fn shared() -> PathBuf {
    let dir = std::env::var_os("NYDUS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    assert!(
        dir.join("fixtures/rafs").is_dir(),
        "shared fixtures missing at {}: put shared/ beside the project or set NYDUS_SHARED",
        dir.display()
    );
    dir
}

/// A built binary: `$ENV` if set, else `target/debug/NAME`.
fn binary(env: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug").join(name));
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --workspace` first (or set {env})",
        path.display()
    );
    path
}

pub fn nydusd_bin() -> PathBuf {
    binary("NYDUSD", "nydusd")
}

pub fn nydusctl_bin() -> PathBuf {
    binary("NYDUSCTL", "nydusctl")
}

/// A script under `shared/scripts/`.
pub fn shared_script(name: &str) -> PathBuf {
    shared().join("scripts").join(name)
}

/// One upstream-made fixture image.
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    /// The file to pass as `--bootstrap` (meta.json `bootstrap`).
    pub bootstrap: PathBuf,
    pub blob_dir: PathBuf,
    pub expected_manifest: PathBuf,
}

/// Every fixture under `shared/fixtures/rafs`, sorted by name.
pub fn fixtures() -> Vec<Fixture> {
    let base = shared().join("fixtures/rafs");
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&base).expect("read fixtures dir");
    for entry in entries.flatten() {
        let dir = entry.path();
        let meta_path = dir.join("meta.json");
        let Ok(text) = std::fs::read_to_string(&meta_path) else {
            continue;
        };
        let meta: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", meta_path.display()));
        let bootstrap = meta["bootstrap"]
            .as_str()
            .unwrap_or("bootstrap")
            .to_string();
        out.push(Fixture {
            name: entry.file_name().to_string_lossy().into_owned(),
            bootstrap: dir.join(bootstrap),
            blob_dir: dir.join("blobs"),
            expected_manifest: dir.join("expected.manifest"),
            dir,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!out.is_empty(), "no fixtures under {}", base.display());
    out
}
