//! Stress: 16 threads read random files at random offsets and lengths (and
//! whole files) from a real mount for `NYDUS_STRESS_SECS` (default 60),
//! comparing every byte with the regenerated source tree. Any wrong byte or
//! I/O error fails; afterwards the daemon's metrics must show the reads.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nydus_e2e::api::{self, Daemon, V1Config};
use nydus_e2e::{fixtures, source};

const THREADS: usize = 16;

fn stress_secs() -> u64 {
    match std::env::var("NYDUS_STRESS_SECS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("NYDUS_STRESS_SECS={v:?} is not a number of seconds")),
        Err(_) => 60,
    }
}

/// xorshift64*: deterministic per thread, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Shared {
    mnt: PathBuf,
    files: Vec<(PathBuf, Vec<u8>)>,
    stop: AtomicBool,
    errors: Mutex<Vec<String>>,
    ops: AtomicU64,
    bytes: AtomicU64,
}

impl Shared {
    fn fail(&self, msg: String) {
        self.stop.store(true, Ordering::SeqCst);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 20 {
            errors.push(msg);
        }
    }
}

fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "{what}: got {} bytes, expected {}; first difference at byte {first} (got {:?}, expected {:?})",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first)
    ))
}

/// Reads `len` bytes at `off` with as many `pread`s as it takes (a short
/// read is allowed only at end of file).
fn pread_full(f: &std::fs::File, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f.read_at(&mut buf[done..], off + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

/// Opens a file; half the time drops its pages from the kernel's cache
/// first (the daemon sets KEEP_CACHE), so the daemon serves most reads.
fn open(path: &Path, rng: &mut Rng) -> std::io::Result<std::fs::File> {
    let f = std::fs::File::open(path)?;
    if rng.below(2) == 0 {
        // SAFETY: a valid open descriptor; fadvise only drops clean cached pages.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(f)
}

fn pick_range(rng: &mut Rng, size: u64) -> (u64, usize) {
    let off = match rng.below(8) {
        // Around a chunk boundary (64 KiB and 1 MiB chunks).
        0 if size > 0 => {
            let unit = if rng.below(2) == 0 { 0x10000 } else { 0x100000 };
            let b = rng.below(size / unit + 1) * unit;
            b.saturating_sub(rng.below(64)).min(size)
        }
        // At or beyond the end of the file.
        1 => size + rng.below(3) * rng.below(10_000),
        _ => rng.below(size + 1),
    };
    let max = match rng.below(4) {
        0 => 16,
        1 => 4096,
        2 => 65536,
        _ => 2 << 20,
    };
    (off, 1 + rng.below(max) as usize)
}

fn one_op(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let (rel, want) = &sh.files[rng.below(sh.files.len() as u64) as usize];
    let path = sh.mnt.join(rel);
    let name = rel.display();
    match rng.below(10) {
        0 | 1 => {
            let mut f = open(&path, rng).map_err(|e| format!("open {name}: {e}"))?;
            let mut got = Vec::new();
            f.read_to_end(&mut got)
                .map_err(|e| format!("read whole {name}: {e}"))?;
            sh.bytes.fetch_add(got.len() as u64, Ordering::Relaxed);
            compare(&format!("whole {name}"), &got, want)
        }
        2 => {
            let md = std::fs::symlink_metadata(&path).map_err(|e| format!("stat {name}: {e}"))?;
            if md.len() != want.len() as u64 {
                return Err(format!(
                    "stat {name}: size {} expected {}",
                    md.len(),
                    want.len()
                ));
            }
            Ok(())
        }
        _ => {
            let f = open(&path, rng).map_err(|e| format!("open {name}: {e}"))?;
            for _ in 0..1 + rng.below(4) {
                let (off, len) = pick_range(rng, want.len() as u64);
                let got = pread_full(&f, off, len)
                    .map_err(|e| format!("pread {name} offset {off} length {len}: {e}"))?;
                sh.bytes.fetch_add(got.len() as u64, Ordering::Relaxed);
                let start = (off as usize).min(want.len());
                let end = (off as usize).saturating_add(len).min(want.len());
                compare(
                    &format!("pread {name} offset {off} length {len}"),
                    &got,
                    &want[start..end],
                )?;
            }
            Ok(())
        }
    }
}

fn worker(sh: Arc<Shared>, seed: u64, deadline: Instant) {
    let mut rng = Rng(seed | 1);
    while Instant::now() < deadline && !sh.stop.load(Ordering::SeqCst) {
        if let Err(e) = one_op(&sh, &mut rng) {
            sh.fail(e);
            return;
        }
        sh.ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// `blobcache`: a blob cache, else dummycache (every miss of the page cache
/// fetches and decompresses from the backend).
fn stress(fixture_name: &str, profile: &str, blobcache: bool) {
    let fx = fixtures()
        .into_iter()
        .find(|f| f.name == fixture_name)
        .unwrap_or_else(|| panic!("fixture {fixture_name} missing"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("src");
    source::make_checked_tree(profile, &tree, &fx.expected_manifest);
    let manifest = std::fs::read_to_string(&fx.expected_manifest).expect("read manifest");
    let files = source::load_files(&tree, &manifest);
    assert!(files.len() > 50, "too few files in {fixture_name}");

    let cfg_path = tmp.path().join("config.json");
    let mut cfg = V1Config::new(&fx.blob_dir, &tmp.path().join("cache"));
    if !blobcache {
        cfg.cache_dir = None;
    }
    std::fs::write(&cfg_path, cfg.text()).expect("write config");
    let mnt = tmp.path().join("mnt");
    let sock = tmp.path().join("api.sock");
    let mut d = Daemon::start(
        &mnt,
        &sock,
        &tmp.path().join("nydusd.log"),
        &[
            OsStr::new("--config"),
            cfg_path.as_os_str(),
            OsStr::new("--bootstrap"),
            fx.bootstrap.as_os_str(),
            OsStr::new("--log-level"),
            OsStr::new("warn"),
        ],
    );

    let secs = stress_secs();
    let sh = Arc::new(Shared {
        mnt: mnt.clone(),
        files,
        stop: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
        ops: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|i| {
            let sh = Arc::clone(&sh);
            std::thread::spawn(move || {
                worker(sh, 0x9E37_79B9_7F4A_7C15 ^ ((i + 1) * 7919), deadline)
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread panicked");
    }
    let errors = sh.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{fixture_name}: {} failure(s) while reading:\n{}\ndaemon log tail:\n{}",
        errors.len(),
        errors.join("\n"),
        d.log_tail()
    );
    let ops = sh.ops.load(Ordering::Relaxed);
    let bytes = sh.bytes.load(Ordering::Relaxed);
    assert!(
        ops >= 100,
        "{fixture_name}: only {ops} operations in {secs} s"
    );
    assert!(d.alive(), "nydusd died; log:\n{}", d.log_tail());
    let served = check_metrics(&sock, fixture_name, bytes);
    eprintln!(
        "{fixture_name}: {ops} operations, {bytes} bytes compared in {secs} s, {served} bytes served by the daemon"
    );
}

/// `GET /api/v1/metrics` counts reads (reference §10.1).
fn check_metrics(sock: &Path, name: &str, bytes: u64) -> u64 {
    let resp = api::call(sock, "GET", "/api/v1/metrics", None);
    resp.expect_status(200, "GET /api/v1/metrics");
    let m = resp.json();
    let data_read = m["data_read"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: metrics without data_read: {m}"));
    let reads = m["fop_hits"][4]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: metrics without fop_hits[4] (Read): {m}"));
    let by_size: u64 = m["block_count_read"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: metrics without block_count_read: {m}"))
        .iter()
        .filter_map(|v| v.as_u64())
        .sum();
    assert!(
        data_read > 0,
        "{name}: data_read is 0 after reading {bytes} bytes: {m}"
    );
    assert!(reads > 0, "{name}: no Read counted in fop_hits: {m}");
    assert_eq!(
        by_size, reads,
        "{name}: block_count_read does not sum to the reads: {m}"
    );
    assert_eq!(
        m["fop_errors"][4].as_u64(),
        Some(0),
        "{name}: read errors counted although every read succeeded: {m}"
    );
    // iostats_files is on: the per-file counters add up to the totals.
    let files = api::call(sock, "GET", "/api/v1/metrics/files", None);
    files.expect_status(200, "GET /api/v1/metrics/files");
    let f = files.json();
    let per_file = f
        .as_object()
        .unwrap_or_else(|| panic!("{name}: /api/v1/metrics/files is not an object: {f}"));
    let sum = |key: &str, idx: Option<usize>| -> u64 {
        per_file
            .values()
            .filter_map(|v| match idx {
                Some(i) => v[key][i].as_u64(),
                None => v[key].as_u64(),
            })
            .sum()
    };
    assert_eq!(
        sum("data_read", None),
        data_read,
        "{name}: per-file data_read does not add up to the total"
    );
    assert_eq!(
        sum("fop_hits", Some(4)),
        reads,
        "{name}: per-file reads do not add up to the total"
    );
    data_read
}

#[test]
fn stress_mini_v5_lz4_dummycache() {
    stress("mini-v5-lz4-blake3", "mini", false);
}

#[test]
fn stress_dedup_v6_zstd_blobcache() {
    stress("dedup-v6-zstd-blake3", "dedup", true);
}
