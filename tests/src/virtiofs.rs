//! Helpers for the virtio-fs tests: a nydusd guard that waits for its
//! vhost-user socket, one QEMU guest at a time through
//! `shared/scripts/virtiofs-guest`, and a busybox listing of the guest's
//! view parsed into manifest.py's fields.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::source::{parse, Entry};
use crate::{nydusd_bin, shared_script};

/// One guest at a time: two TCG guests on two cores would starve each other.
static GUEST: Mutex<()> = Mutex::new(());

/// A process killed (and reaped) when the guard goes away.
pub struct Proc {
    pub child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts nydusd with `args` and waits until `sock` accepts connections.
pub fn start_nydusd(args: &[&OsStr], sock: &Path, log: &Path) -> Proc {
    let out = File::create(log).expect("create log");
    let child = Command::new(nydusd_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup log"))
        .stderr(out)
        .spawn()
        .expect("start nydusd");
    let mut p = Proc {
        child,
        log: log.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    // The socket file appears at bind time, which is when it accepts.
    while !sock.exists() {
        assert!(p.alive(), "nydusd exited early:\n{}", p.log_text());
        assert!(Instant::now() < deadline, "no socket:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

pub struct GuestRun {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Boots a guest on `sock` running `sh -c script`. Output goes to files, so
/// a large listing never blocks on a pipe.
pub fn guest(sock: &Path, script: &str, timeout: u64, tmp: &Path) -> GuestRun {
    let _one = GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let (out_path, err_path) = (tmp.join("guest.out"), tmp.join("guest.err"));
    let mut child = Command::new(shared_script("virtiofs-guest"))
        .arg("--sock")
        .arg(sock)
        .args(["--tag", "nydus", "-q", "--timeout", &timeout.to_string()])
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("guest.out"))
        .stderr(File::create(&err_path).expect("guest.err"))
        .spawn()
        .expect("run virtiofs-guest");
    // Beyond the guest's own timeout: first-run set-up (apt-get, kernel).
    let deadline = Instant::now() + Duration::from_secs(timeout + 120);
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "virtiofs-guest hung:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    GuestRun {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// manifest.py's escaping of names and symlink targets.
pub fn esc(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (0x21..=0x7e).contains(&c) && c != b'\\' {
                (c as char).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect()
}

pub fn file_type(mode: u32) -> &'static str {
    match mode & 0o170000 {
        0o040000 => "dir",
        0o100000 => "file",
        0o120000 => "symlink",
        0o020000 => "chr",
        0o060000 => "blk",
        0o010000 => "fifo",
        0o140000 => "sock",
        _ => "?",
    }
}

/// Lists every entry under the guest's cwd: `S` stat lines, `H` hashes,
/// `L`/`T` symlink name and target (names hold no newline).
pub const LIST: &str = r#"find . -exec stat -c "S %f %u %g %s %t %T %Y %n" {} +
find . -type f -exec sha256sum {} + | sed "s/^/H /"
find . -type l -exec sh -c 'for f; do printf "L %s\nT %s\n" "$f" "$(readlink "$f")"; done' sh {} +"#;

/// The guest listing as manifest-style fields, keyed by escaped name.
pub fn parse_listing(out: &[u8]) -> BTreeMap<String, BTreeMap<&'static str, String>> {
    let mut map: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
    let mut link: Option<String> = None;
    for line in out.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"S ") {
            let parts: Vec<&[u8]> = rest.splitn(8, |&b| b == b' ').collect();
            let [mode, uid, gid, size, maj, min, mtime, name] = parts[..] else {
                continue;
            };
            let txt = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let hex = |b: &[u8]| u64::from_str_radix(&txt(b), 16).unwrap_or(u64::MAX);
            let mode = hex(mode) as u32;
            let ty = file_type(mode);
            let e = map.entry(esc(name)).or_default();
            e.insert("type", ty.into());
            e.insert("mode", format!("{:04o}", mode & 0o7777));
            e.insert("uid", txt(uid));
            e.insert("gid", txt(gid));
            e.insert("mtime", txt(mtime));
            if ty == "file" {
                e.insert("size", txt(size));
            }
            if ty == "chr" || ty == "blk" {
                e.insert("rdev", format!("{}:{}", hex(maj), hex(min)));
            }
        } else if let Some(rest) = line.strip_prefix(b"H ") {
            if rest.len() > 66 {
                let hash = String::from_utf8_lossy(&rest[..64]).into_owned();
                map.entry(esc(&rest[66..]))
                    .or_default()
                    .insert("sha256", hash);
            }
        } else if let Some(rest) = line.strip_prefix(b"L ") {
            link = Some(esc(rest));
        } else if let Some(rest) = line.strip_prefix(b"T ") {
            if let Some(name) = link.take() {
                map.entry(name).or_default().insert("target", esc(rest));
            }
        }
    }
    map
}

/// Differences between a fixture's manifest and the guest's view of it at
/// `./<sub>`, except upstream's documented one (an mtime of 0, and the
/// root's, read as the daemon start time). xattrs and hardlink groups are
/// not visible to the guest's busybox.
pub fn diffs(
    expected: &[Entry],
    actual: &BTreeMap<String, BTreeMap<&'static str, String>>,
    sub: &str,
    started: (i64, i64),
) -> Vec<String> {
    let mut out = Vec::new();
    let prefix = format!("./{sub}");
    let mut seen = 0;
    for e in expected {
        let name = match e.name.strip_prefix('.') {
            Some(rest) => format!("{prefix}{rest}"),
            None => continue,
        };
        let Some(a) = actual.get(&name) else {
            out.push(format!("{name}: missing"));
            continue;
        };
        seen += 1;
        for key in [
            "type", "mode", "uid", "gid", "size", "sha256", "target", "rdev", "mtime",
        ] {
            let want = e.field(key);
            if want == "-" || want.is_empty() {
                continue;
            }
            let got = a.get(key).map(String::as_str).unwrap_or("<none>");
            if got == want {
                continue;
            }
            let start_time = got
                .parse::<i64>()
                .is_ok_and(|t| (started.0 - 2..=started.1 + 2).contains(&t));
            if key == "mtime" && (want == "0" || e.name == ".") && start_time {
                continue;
            }
            out.push(format!("{name}: {key} expected {want} got {got}"));
        }
    }
    let extra = actual
        .keys()
        .filter(|k| k.starts_with(&format!("{prefix}/")) || **k == prefix)
        .count();
    if extra != seen {
        out.push(format!(
            "{sub}: the guest shows {extra} entries, the manifest has {seen}"
        ));
    }
    out
}

/// The `n` biggest regular files of a manifest whose names need no
/// quoting in a guest shell script (busybox `sh`, no escapes).
pub fn biggest_plain_files(manifest: &Path, n: usize) -> Vec<Entry> {
    let text =
        std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut files: Vec<Entry> = parse(&text)
        .into_iter()
        .filter(|e| {
            e.is_file()
                && e.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"./-_".contains(&b))
        })
        .collect();
    files.sort_by_key(|e| std::cmp::Reverse(e.field("size").parse::<u64>().unwrap_or(0)));
    files.truncate(n);
    files
}
