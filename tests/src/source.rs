//! Source trees and manifests: regenerate a fixture's source tree with
//! `mktree.py`, run `manifest.py`, and parse its lines.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The seed every fixture was made with (fixtures README).
pub const SEED: &str = "20240601";

fn run_python(script: &str, args: &[&OsStr]) -> String {
    let path = crate::shared_script(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 {}: {e} (is python3 installed?)",
                path.display()
            )
        });
    assert!(
        out.status.success(),
        "python3 {} {:?} failed ({}): {}",
        path.display(),
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("script output is UTF-8")
}

/// Creates the `profile` tree (`mktree.py --seed 20240601`) at `dir`, which
/// must not exist yet. Needs root (devices, chown, trusted.* xattrs).
pub fn make_tree(profile: &str, dir: &Path) {
    run_python(
        "mktree.py",
        &[
            OsStr::new("--seed"),
            OsStr::new(SEED),
            OsStr::new(profile),
            dir.as_os_str(),
        ],
    );
}

/// `manifest.py [ARGS] DIR`.
pub fn manifest(dir: &Path, args: &[&str]) -> String {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.push(dir.as_os_str());
    run_python("manifest.py", &all)
}

/// Regenerates the source tree of a fixture (profile `profile`) at `dir` and
/// checks it against the fixture's `expected.manifest`, so the test's
/// reference bytes are known to be the image's source.
pub fn make_checked_tree(profile: &str, dir: &Path, expected_manifest: &Path) {
    make_tree(profile, dir);
    let expected = std::fs::read_to_string(expected_manifest)
        .unwrap_or_else(|e| panic!("{}: {e}", expected_manifest.display()));
    let got = manifest(dir, &[]);
    let diff = diff_manifests(&expected, &got);
    assert!(
        diff.is_empty(),
        "regenerated {profile} tree differs from {}: {diff:#?}",
        expected_manifest.display()
    );
}

/// Decodes a manifest path (`\xHH` escapes) to the bytes of a relative path.
pub fn unescape(path: &str) -> PathBuf {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1] == b'x' {
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("ascii escape");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// One manifest line.
#[derive(Debug, Clone)]
pub struct Entry {
    /// As printed (`./a/b`, escaped).
    pub name: String,
    /// Relative path (decoded, no `./`), `.` for the root.
    pub rel: PathBuf,
    pub fields: BTreeMap<String, String>,
}

impl Entry {
    pub fn field(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or("")
    }

    pub fn is_file(&self) -> bool {
        self.field("type") == "file"
    }

    /// The size of a regular file.
    pub fn size(&self) -> u64 {
        self.field("size").parse().unwrap_or(0)
    }
}

/// Parses `manifest.py` output.
pub fn parse(manifest: &str) -> Vec<Entry> {
    manifest
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.split(' ');
            let name = parts.next().unwrap_or_default().to_string();
            let fields = parts
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let rel = match name.strip_prefix("./") {
                Some(r) => unescape(r),
                None => PathBuf::from("."),
            };
            Entry { rel, name, fields }
        })
        .collect()
}

/// Line-level differences between two manifests, each as
/// `"PATH: FIELD expected X got Y"` or `"PATH: missing"` / `"PATH: extra"`.
pub fn diff_manifests(expected: &str, actual: &str) -> Vec<String> {
    let exp: BTreeMap<String, Entry> = parse(expected)
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    let act: BTreeMap<String, Entry> = parse(actual)
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    let mut out = Vec::new();
    for (name, e) in &exp {
        let Some(a) = act.get(name) else {
            out.push(format!("{name}: missing"));
            continue;
        };
        for (k, v) in &e.fields {
            let got = a.field(k);
            if got != v {
                out.push(format!("{name}: {k} expected {v} got {got}"));
            }
        }
    }
    for name in act.keys() {
        if !exp.contains_key(name) {
            out.push(format!("{name}: extra"));
        }
    }
    out
}

/// Every regular file of a manifest with its source bytes read from `tree`.
pub fn load_files(tree: &Path, manifest: &str) -> Vec<(PathBuf, Vec<u8>)> {
    parse(manifest)
        .into_iter()
        .filter(Entry::is_file)
        .map(|e| {
            let data = std::fs::read(tree.join(&e.rel))
                .unwrap_or_else(|err| panic!("read source {}: {err}", e.name));
            assert_eq!(data.len() as u64, e.size(), "source size of {}", e.name);
            (e.rel, data)
        })
        .collect()
}

/// Seconds since the epoch now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Compares `manifest.py --ignore rootattr MNT` with the same of the source
/// tree (`src_manifest`, made with `--ignore rootattr`). One difference is
/// required rather than allowed, as upstream does it (fixtures README) and
/// our daemon documents it: an mtime of 0 is reported as the daemon's start
/// time, which must lie in `[started - 2, now + 2]`. Returns the
/// differences; empty means equal.
pub fn diff_mount(src_manifest: &str, mnt: &Path, started: i64) -> Vec<String> {
    let actual = manifest(mnt, &["--ignore", "rootattr"]);
    let now = now_secs();
    let act: BTreeMap<String, Entry> = parse(&actual)
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    let mut out: Vec<String> = diff_manifests(src_manifest, &actual)
        .into_iter()
        .filter(|d| d.split_once(": mtime expected 0 got ").is_none())
        .collect();
    for e in parse(src_manifest) {
        if e.field("mtime") != "0" {
            continue;
        }
        let Some(a) = act.get(&e.name) else { continue };
        let got: i64 = a.field("mtime").parse().unwrap_or(i64::MIN);
        if got < started - 2 || got > now + 2 {
            out.push(format!(
                "{}: mtime 0 should be shown as the daemon start time ({started}..{now}), got {got}",
                e.name
            ));
        }
    }
    out
}
