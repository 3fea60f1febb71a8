//! Readahead: record the chunks reads touch in the first `readahead_sec`
//! seconds after mount, keep them beside the blob cache
//! (`<work_dir>/<bootstrap sha256>.access`, format in
//! `nydus_protocol::access_log`), and hand them to the next mount of the
//! same image to prefetch first.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nydus_protocol::access_log::{AccessLog, SUFFIX};
use nydus_protocol::rafs::ChunkRef;
use sha2::{Digest, Sha256};

/// A start-up longer than this many distinct chunks is recorded only up to
/// here (8 bytes each in the file, about 24 in memory).
const MAX_RECORDED: usize = 1 << 20;

/// The in-memory record of one mount's start-up reads.
pub struct Recorder {
    open: AtomicBool,
    touched: Mutex<Touched>,
}

#[derive(Default)]
struct Touched {
    seen: HashSet<(u32, u32)>,
    order: Vec<(u32, u32)>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            open: AtomicBool::new(true),
            touched: Mutex::new(Touched::default()),
        }
    }

    /// Notes the chunks of `chunks` that bytes `[offset, end)` of a file
    /// touch (`chunks` in file order, as `Reader::chunks` returns them).
    /// One atomic load once the window has closed.
    pub fn touch(&self, chunks: &[ChunkRef], chunk_size: u32, offset: u64, end: u64) {
        if !self.open.load(Ordering::Relaxed) {
            return;
        }
        let span = u64::from(chunk_size.max(1));
        let first = chunks.partition_point(|c| c.file_offset.saturating_add(span) <= offset);
        let mut t = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        for c in chunks[first..].iter().take_while(|c| c.file_offset < end) {
            let key = (c.blob_index, c.chunk_index);
            if t.order.len() < MAX_RECORDED && t.seen.insert(key) {
                t.order.push(key);
            }
        }
    }

    /// Ends the window; returns what was recorded, in first-touch order.
    fn close(&self) -> Vec<(u32, u32)> {
        self.open.store(false, Ordering::Relaxed);
        let mut t = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        t.seen = HashSet::new();
        std::mem::take(&mut t.order)
    }
}

/// Readahead of one mounted image.
pub struct Readahead {
    pub recorder: Recorder,
    bootstrap: PathBuf,
    work_dir: PathBuf,
    /// The log's path, named by the bootstrap's digest: computed on first
    /// use, off the mount path (hashing a big bootstrap takes milliseconds
    /// the first `stat` should not wait for). None if the bootstrap could
    /// not be read (said once).
    path: OnceLock<Option<PathBuf>>,
    blobs: Vec<String>,
    pub window: Duration,
}

impl Readahead {
    /// Readahead for `bootstrap` whose log lives in `work_dir`; `blobs` are
    /// the effective blob ids by index. Recording starts now.
    pub fn new(bootstrap: &Path, work_dir: &Path, blobs: Vec<String>, window_secs: u32) -> Self {
        Readahead {
            recorder: Recorder::new(),
            bootstrap: bootstrap.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            path: OnceLock::new(),
            blobs,
            window: Duration::from_secs(window_secs.into()),
        }
    }

    fn path(&self) -> Option<&Path> {
        self.path
            .get_or_init(|| match sha256_of(&self.bootstrap) {
                Ok(key) => Some(self.work_dir.join(format!("{key}.{SUFFIX}"))),
                Err(e) => {
                    log::warn!("readahead off: bootstrap {}: {e}", self.bootstrap.display());
                    None
                }
            })
            .as_deref()
    }

    /// The chunks the last recorded start-up read, in order. A missing log
    /// is no log; a damaged or foreign one is ignored with one warning.
    pub fn load(&self) -> Vec<(u32, u32)> {
        let Some(path) = self.path() else {
            return Vec::new();
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                log::warn!("readahead log {}: {e}; ignored", path.display());
                return Vec::new();
            }
        };
        match AccessLog::decode(&bytes) {
            Ok(log) if log.blobs == self.blobs => log.chunks,
            Ok(_) => {
                log::warn!(
                    "readahead log {}: recorded for other blobs than this image's; ignored (the next start-up replaces it)",
                    path.display()
                );
                Vec::new()
            }
            Err(e) => {
                log::warn!(
                    "readahead log {}: {e}; ignored (the next start-up replaces it)",
                    path.display()
                );
                Vec::new()
            }
        }
    }

    /// Closes the window without writing: a successor worker's reads are
    /// not the image's start-up, and the kept log stays as it is.
    pub fn stop_recording(&self) {
        self.recorder.close();
    }

    /// Closes the window and writes what it recorded (tmp + rename, so a
    /// crash leaves the old log or the new one). A window in which nothing
    /// was read keeps the old log: a mount that only served from the cache
    /// says nothing about the start-up.
    pub fn finish(&self) {
        let chunks = self.recorder.close();
        let Some(path) = self.path() else {
            return;
        };
        if chunks.is_empty() {
            log::debug!("readahead: no reads recorded; keeping {}", path.display());
            return;
        }
        let log = AccessLog {
            blobs: self.blobs.clone(),
            chunks,
        };
        let tmp = path.with_extension(format!("{SUFFIX}.tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&log.encode())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        match write() {
            Ok(()) => log::info!(
                "readahead: recorded {} chunks read at start-up in {}",
                log.chunks.len(),
                path.display()
            ),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                log::warn!("readahead log {}: {e}; not kept", path.display());
            }
        }
    }
}

/// The bootstrap's SHA-256 in hex, streamed: a whole-file buffer would add
/// the bootstrap's size to the daemon's peak memory.
fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(blob: u32, chunk: u32, at: u64) -> ChunkRef {
        ChunkRef {
            blob_index: blob,
            chunk_index: chunk,
            file_offset: at,
            info: None,
        }
    }

    #[test]
    fn records_first_touch_order_until_closed() {
        let rec = Recorder::new();
        let file = [r(0, 5, 0), r(0, 6, 100), r(1, 0, 200)];
        rec.touch(&file, 100, 150, 250); // chunks 6 and (1,0)
        rec.touch(&file, 100, 0, 300); // 5 is new, the others are not
        assert_eq!(rec.close(), vec![(0, 6), (1, 0), (0, 5)]);
        rec.touch(&file, 100, 0, 300);
        assert!(rec.close().is_empty());
    }

    #[test]
    fn log_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        std::fs::write(&boot, b"bootstrap").unwrap();
        let blobs = vec!["b0".to_string()];
        let ra = Readahead::new(&boot, dir.path(), blobs.clone(), 1);
        assert!(ra.load().is_empty());
        let file = [r(0, 2, 0), r(0, 3, 10)];
        ra.recorder.touch(&file, 10, 10, 20);
        ra.recorder.touch(&file, 10, 0, 20);
        ra.finish();
        let again = Readahead::new(&boot, dir.path(), blobs, 1);
        assert_eq!(again.load(), vec![(0, 3), (0, 2)]);
        // An empty window keeps the old log.
        again.finish();
        assert_eq!(again.load(), vec![(0, 3), (0, 2)]);
        // Another image's blobs, or damage: ignored, never a panic.
        let other = Readahead::new(&boot, dir.path(), vec!["x".into()], 1);
        assert!(other.load().is_empty());
        std::fs::write(again.path().unwrap(), b"NYDUSACL garbage").unwrap();
        assert!(again.load().is_empty());
    }

    #[test]
    fn a_successor_keeps_the_recorded_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        std::fs::write(&boot, b"bootstrap").unwrap();
        let blobs = vec!["b0".to_string()];
        let first = Readahead::new(&boot, dir.path(), blobs.clone(), 1);
        let file = [r(0, 2, 0), r(0, 3, 10)];
        first.recorder.touch(&file, 10, 0, 10);
        first.finish();
        let successor = Readahead::new(&boot, dir.path(), blobs, 1);
        successor.stop_recording();
        successor.recorder.touch(&file, 10, 10, 20);
        successor.finish();
        assert_eq!(successor.load(), vec![(0, 2)]);
    }
}
