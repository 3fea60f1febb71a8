//! Faults under a running mount (architecture "What an error looks like"):
//! a corrupted, truncated or missing blob makes reads of the affected files
//! fail with EIO -- never wrong bytes --, other files read fine, the mount
//! and the daemon stay up, and the next read tries again.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use nydus_e2e::api::{self, Daemon, V1Config};
use nydus_e2e::{fixtures, source};

/// A file of the `mini` tree made of random bytes: its chunk data is stored
/// verbatim in the blob whatever the compressor, so it can be found there.
const TARGET: &str = "sizes/random-3m";

/// Field order matters: the daemon (and its mount) goes before the dir.
struct Setup {
    d: Daemon,
    _tmp: tempfile::TempDir,
    /// The blob copy the daemon reads.
    blob: PathBuf,
    original: Vec<u8>,
    files: Vec<(PathBuf, Vec<u8>)>,
}

/// Copies the fixture's blobs to a temp dir and mounts the fixture from
/// that copy (`cache`: blobcache, else dummycache).
fn setup(fixture: &str, cache: bool, validate: bool) -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = fixture_named(fixture);
    let tree = tmp.path().join("src");
    source::make_checked_tree("mini", &tree, &fx.expected_manifest);
    let manifest = std::fs::read_to_string(&fx.expected_manifest).expect("manifest");
    let files = source::load_files(&tree, &manifest);
    let blobs = tmp.path().join("blobs");
    std::fs::create_dir(&blobs).expect("mkdir blobs");
    let mut names = std::fs::read_dir(&fx.blob_dir).expect("read blob dir");
    let entry = names.next().expect("one blob").expect("dirent");
    assert!(
        names.next().is_none(),
        "{fixture}: expected exactly one blob"
    );
    let blob = blobs.join(entry.file_name());
    let original = std::fs::read(entry.path()).expect("read blob");
    std::fs::write(&blob, &original).expect("copy blob");

    let mut cfg = V1Config::new(&blobs, &tmp.path().join("cache"));
    if !cache {
        cfg.cache_dir = None;
    }
    cfg.digest_validate = validate;
    let d = start_daemon(tmp.path(), &cfg, &fx.bootstrap, "mnt");
    Setup {
        d,
        _tmp: tmp,
        blob,
        original,
        files,
    }
}

fn fixture_named(name: &str) -> nydus_e2e::Fixture {
    let found = fixtures().into_iter().find(|f| f.name == name);
    found.unwrap_or_else(|| panic!("fixture {name} missing"))
}

/// Starts nydusd on `bootstrap` with `cfg`, mounted at `dir/NAME`.
fn start_daemon(dir: &Path, cfg: &V1Config, bootstrap: &Path, name: &str) -> Daemon {
    let cfg_path = dir.join(format!("{name}.json"));
    std::fs::write(&cfg_path, cfg.text()).expect("write config");
    let args = [
        OsStr::new("--config"),
        cfg_path.as_os_str(),
        OsStr::new("--bootstrap"),
    ];
    let mut args = args.to_vec();
    args.extend([
        bootstrap.as_os_str(),
        OsStr::new("--log-level"),
        OsStr::new("warn"),
    ]);
    Daemon::start(
        &dir.join(name),
        &dir.join(format!("{name}.sock")),
        &dir.join(format!("{name}.log")),
        &args,
    )
}

/// Reads a whole file after dropping its pages from the kernel's cache, so
/// the daemon has to answer.
fn read_uncached(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    // SAFETY: a valid open descriptor; fadvise only drops clean cached pages.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl Setup {
    fn mnt(&self) -> PathBuf {
        self.d.mountpoint.clone()
    }

    fn source(&self, rel: &str) -> &[u8] {
        &self
            .files
            .iter()
            .find(|(p, _)| p == Path::new(rel))
            .unwrap_or_else(|| panic!("{rel} not in the tree"))
            .1
    }

    fn expect_eio(&self, rel: &Path, what: &str) {
        match read_uncached(&self.mnt().join(rel)) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
            Err(e) => panic!("{what}: read {}: expected EIO, got {e}", rel.display()),
            Ok(got) => panic!(
                "{what}: read {} returned {} bytes ({}), expected EIO; log:\n{}",
                rel.display(),
                got.len(),
                if got == self.source(&rel.to_string_lossy()) {
                    "correct bytes"
                } else {
                    "WRONG bytes"
                },
                self.d.log_tail()
            ),
        }
    }

    fn expect_correct(&self, rel: &Path, want: &[u8], what: &str) {
        let got = read_uncached(&self.mnt().join(rel)).unwrap_or_else(|e| {
            panic!(
                "{what}: read {}: {e}; log:\n{}",
                rel.display(),
                self.d.log_tail()
            )
        });
        assert!(got == want, "{what}: {} has wrong bytes", rel.display());
    }

    /// Every regular file reads correctly.
    fn all_correct(&self, what: &str) {
        for (rel, want) in &self.files {
            self.expect_correct(rel, want, what);
        }
    }

    /// Every non-empty file gives EIO, empty ones read as empty, and every
    /// stat still works (metadata comes from the bootstrap).
    fn all_eio(&self, what: &str) {
        for (rel, want) in &self.files {
            let md = std::fs::symlink_metadata(self.mnt().join(rel))
                .unwrap_or_else(|e| panic!("{what}: stat {}: {e}", rel.display()));
            assert_eq!(
                md.len(),
                want.len() as u64,
                "{what}: size of {}",
                rel.display()
            );
            if want.is_empty() {
                self.expect_correct(rel, want, what);
            } else {
                self.expect_eio(rel, what);
            }
        }
    }

    /// The daemon is alive, its API answers and the mount serves.
    fn still_up(&mut self, what: &str) {
        assert!(
            self.d.alive(),
            "{what}: nydusd died; log:\n{}",
            self.d.log_tail()
        );
        let r = api::call(&self.d.apisock, "GET", "/api/v1/daemon", None);
        r.expect_status(200, what);
        let names = std::fs::read_dir(self.mnt())
            .expect("readdir mount root")
            .count();
        assert!(names > 0, "{what}: mount root is empty");
    }

    fn read_errors_counted(&self, what: &str) {
        let m = api::call(&self.d.apisock, "GET", "/api/v1/metrics", None);
        m.expect_status(200, "GET /api/v1/metrics");
        let errors = m.json()["fop_errors"][4].as_u64().unwrap_or(0);
        assert!(
            errors > 0,
            "{what}: failed reads not counted in fop_errors[4]: {}",
            m.body
        );
    }

    /// Backend failures show in `/api/v1/metrics/backend` (`read_errors`)
    /// and in the `/api/v1/daemon/events` ring, naming the blob (reference
    /// §6.3, §10.3).
    fn backend_errors_counted(&self, what: &str) {
        let m = api::call(&self.d.apisock, "GET", "/api/v1/metrics/backend", None);
        m.expect_status(200, "GET /api/v1/metrics/backend");
        let errors = m.json()["read_errors"].as_u64().unwrap_or(0);
        assert!(
            errors > 0,
            "{what}: backend read_errors not counted: {}",
            m.body
        );
        let ev = api::call(&self.d.apisock, "GET", "/api/v1/daemon/events", None);
        ev.expect_status(200, "GET /api/v1/daemon/events");
        let v = ev.json();
        let blob_id = self.blob.file_name().unwrap_or_default().to_string_lossy();
        let named = v["errors"].as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e.as_str().is_some_and(|t| t.contains(&*blob_id)))
        });
        assert!(
            v["total_errors"].as_u64().unwrap_or(0) > 0 && named,
            "{what}: backend failures missing from /api/v1/daemon/events (want total_errors > 0 and an entry naming blob {blob_id}): {}",
            ev.body
        );
    }

    fn write_blob(&self, offset: u64, data: &[u8]) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.blob)
            .expect("open blob copy");
        f.write_all_at(data, offset).expect("write blob copy");
    }

    fn truncate_blob(&self) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.blob)
            .expect("open blob copy");
        f.set_len(0).expect("truncate blob copy");
    }
}

/// Flips one byte inside `TARGET`'s data in the blob, reads everything, then
/// repairs the byte and reads again.
fn corrupt_one_byte(fixture: &str, cache: bool, validate: bool) {
    let mut s = setup(fixture, cache, validate);
    let what = format!("{fixture} cache={cache} digest_validate={validate}");
    let needle = s.source(TARGET)[100_000..100_064].to_vec();
    let pos = s
        .original
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{what}: {TARGET}'s bytes not found in the blob"));
    let at = (pos + 10) as u64;
    s.write_blob(at, &[s.original[pos + 10] ^ 0xA5]);

    // Eight readers miss the bad chunk at once: each gets EIO (one failed
    // fetch must not leave the others waiting or hand them bad bytes).
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| s.expect_eio(Path::new(TARGET), &format!("{what}, concurrent")));
        }
    });
    let mut failed = 0;
    for (rel, want) in &s.files {
        if contains(want, &needle) {
            s.expect_eio(rel, &what);
            failed += 1;
        } else {
            s.expect_correct(rel, want, &format!("{what} (file not in the bad chunk)"));
        }
    }
    assert!(failed >= 1, "{what}: no file holds the corrupted bytes");
    s.expect_eio(Path::new(TARGET), &format!("{what}, second read"));
    s.still_up(&what);
    s.read_errors_counted(&what);

    s.write_blob(at, &[s.original[pos + 10]]);
    let want = s.source(TARGET).to_vec();
    s.expect_correct(Path::new(TARGET), &want, &format!("{what}, after repair"));
    s.all_correct(&format!("{what}, after repair"));
    s.still_up(&what);
}

#[test]
fn corrupt_byte_blobcache_v6_uncompressed() {
    corrupt_one_byte("mini-v6-none-blake3", true, false);
}

#[test]
fn corrupt_byte_blobcache_v5_lz4_digest_validate() {
    corrupt_one_byte("mini-v5-lz4-blake3", true, true);
}

#[test]
fn corrupt_byte_dummycache_v5_lz4() {
    corrupt_one_byte("mini-v5-lz4-blake3", false, false);
}

#[test]
fn corrupt_byte_dummycache_v5_lz4_digest_validate() {
    corrupt_one_byte("mini-v5-lz4-blake3", false, true);
}

/// Truncated blob: EIO for every uncached read; restored: correct; with a
/// blobcache, what was read once keeps being served after the blob is
/// truncated and deleted.
fn truncated_blob(fixture: &str, cache: bool) {
    let mut s = setup(fixture, cache, false);
    let what = format!("{fixture} cache={cache}");
    s.truncate_blob();
    s.all_eio(&format!("{what}, blob truncated before any read"));
    s.still_up(&what);
    s.read_errors_counted(&what);

    s.write_blob(0, &s.original.clone());
    s.all_correct(&format!("{what}, blob restored"));

    s.truncate_blob();
    if cache {
        std::fs::remove_file(&s.blob).expect("delete blob copy");
        s.all_correct(&format!(
            "{what}, served from the blob cache after truncate+delete"
        ));
    } else {
        s.all_eio(&format!("{what}, blob truncated again"));
    }
    s.still_up(&what);
    s.backend_errors_counted(&what);
}

#[test]
fn truncated_blob_blobcache_v5() {
    truncated_blob("mini-v5-lz4-blake3", true);
}

#[test]
fn truncated_blob_dummycache_v5() {
    truncated_blob("mini-v5-lz4-blake3", false);
}

/// A blob deleted before anything was read: uncached reads give EIO, the
/// daemon survives, and once the blob is back the next read works.
#[test]
fn deleted_blob_then_restored() {
    let mut s = setup("mini-v5-lz4-blake3", true, false);
    let what = "mini-v5-lz4-blake3, blob deleted";
    std::fs::remove_file(&s.blob).expect("delete blob copy");
    let (rel, want) = s
        .files
        .iter()
        .find(|(p, _)| p == Path::new(TARGET))
        .cloned()
        .expect("target");
    s.expect_eio(&rel, what);
    s.all_eio(what);
    s.still_up(what);
    s.read_errors_counted(what);
    std::fs::write(&s.blob, &s.original).expect("restore blob");
    s.expect_correct(&rel, &want, "after the blob came back");
    s.all_correct("after the blob came back");
    s.still_up(what);
}

/// A cached chunk corrupted on disk while no daemon runs (a crash can leave
/// that, reference §5.3): a restarted daemon with digest_validate checks the
/// chunk before trusting it and fetches it again -- correct bytes.
#[test]
fn corrupted_cache_file_is_revalidated_after_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = fixture_named("mini-v5-lz4-blake3");
    let tree = tmp.path().join("src");
    source::make_checked_tree("mini", &tree, &fx.expected_manifest);
    let want = std::fs::read(tree.join(TARGET)).expect("read source");
    let cache = tmp.path().join("cache");
    let mut cfg = V1Config::new(&fx.blob_dir, &cache);
    cfg.digest_validate = true;
    let d = start_daemon(tmp.path(), &cfg, &fx.bootstrap, "first");
    assert!(read_uncached(&d.mountpoint.join(TARGET)).expect("first read") == want);
    // The cache write may lag the reply: wait for the chunk to be on disk.
    let needle = &want[100_000..100_064];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (data, bytes, pos) = loop {
        let found = std::fs::read_dir(&cache)
            .expect("read cache dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".blob.data"))
            .find_map(|p| {
                let b = std::fs::read(&p).ok()?;
                let pos = b.windows(64).position(|w| w == needle)?;
                Some((p, b, pos))
            });
        if let Some(f) = found {
            break f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the chunk read is not in any *.blob.data of {} after 20 s",
            cache.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    drop(d);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .expect("open cache file");
    f.write_all_at(&[bytes[pos + 10] ^ 0xA5], (pos + 10) as u64)
        .expect("corrupt cache file");

    let d = start_daemon(tmp.path(), &cfg, &fx.bootstrap, "second");
    match read_uncached(&d.mountpoint.join(TARGET)) {
        Ok(got) => assert!(
            got == want,
            "a corrupted cache chunk was served after a restart with digest_validate; log:\n{}",
            d.log_tail()
        ),
        Err(e) => panic!("read after restart: {e} (the chunk should be fetched again)"),
    }
}
