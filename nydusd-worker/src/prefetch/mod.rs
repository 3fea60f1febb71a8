//! Background prefetch of a mounted image into the blob cache.
//!
//! Order: first the chunks the readahead access log recorded at the last
//! start-up of this image (in recorded order, all done before anything
//! else is queued), then the `--prefetch-files` list or the image's
//! prefetch table, then the whole image with `prefetch_all`.
//!
//! Every prefetch request is at most `merging_size` bytes, waits for
//! `bandwidth_rate` (shared by all workers of the mount) and is held back
//! while an on-demand read is fetching, so a user read never queues behind
//! more than one prefetch request; a user read of a chunk being prefetched
//! waits for that fetch instead of fetching it again (storage inflight).
//!
//! The access log is prefetched even with `fs_prefetch` disabled: turning
//! on `readahead` asks for it. It uses `fs_prefetch`'s threads, merging
//! size and bandwidth settings (their defaults when it is disabled).

pub mod access_log;
mod limiter;
mod walk;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nydus_protocol::config::{CacheKind, DaemonConfig};
use nydus_protocol::rafs::{ChunkRef, Reader};

use crate::instance::DeviceData;
use limiter::Limiter;

/// Most chunks handed to a prefetch worker at a time.
const BATCH: usize = 64;

/// Groups chunks into batches of about one `merging_size` request each:
/// neighbours in a batch merge into one backend request, and separate
/// batches let the workers fetch in parallel.
struct Batcher {
    batch: Vec<ChunkRef>,
    bytes: u64,
    target: u64,
    /// Size assumed for a chunk whose descriptor is not at hand (v6).
    chunk_size: u64,
}

impl Batcher {
    fn new(merging_size: u64, chunk_size: u32) -> Batcher {
        Batcher {
            batch: Vec::new(),
            bytes: 0,
            target: merging_size.max(1),
            chunk_size: chunk_size.into(),
        }
    }

    /// Adds a chunk; returns a full batch to send.
    fn push(&mut self, c: ChunkRef) -> Option<Vec<ChunkRef>> {
        self.bytes += c
            .info
            .map_or(self.chunk_size, |i| u64::from(i.compressed_size));
        self.batch.push(c);
        (self.bytes >= self.target || self.batch.len() >= BATCH).then(|| self.take())
    }

    fn take(&mut self) -> Vec<ChunkRef> {
        self.bytes = 0;
        std::mem::take(&mut self.batch)
    }
}

/// The prefetch settings of one mount (v1 `fs_prefetch` or v2
/// `cache.prefetch`, whichever is enabled).
struct Settings {
    enable: bool,
    all: bool,
    threads: u32,
    merging_size: u64,
    rate: u64,
}

impl Settings {
    fn new(config: &DaemonConfig) -> Settings {
        let (fs, cache) = (&config.rafs.prefetch, &config.cache.prefetch);
        let p = if fs.enable || !cache.enable {
            fs
        } else {
            cache
        };
        Settings {
            enable: fs.enable || cache.enable,
            all: fs.prefetch_all || cache.prefetch_all,
            threads: p.threads_count.clamp(1, 32),
            merging_size: p.merging_size.into(),
            rate: p.bandwidth_rate.into(),
        }
    }
}

/// Starts background prefetch (and the readahead window) of a freshly
/// mounted instance. Setting `cancel` (umount) stops both; the access log
/// is then written at once.
pub fn start(
    path: &str,
    reader: Arc<dyn Reader>,
    data: Arc<DeviceData>,
    config: &DaemonConfig,
    files: Option<Vec<String>>,
    cancel: Arc<AtomicBool>,
) {
    let s = Settings::new(config);
    let path = path.to_string();
    let readahead = data.readahead().is_some();
    if readahead {
        let _ = spawn("readahead-log", close_window(data.clone(), cancel.clone()));
    }
    let table = s.enable && config.cache.kind == CacheKind::Blobcache;
    if !readahead && !table {
        return;
    }
    let chunk_size = reader.super_info().chunk_size;
    let _ = spawn("prefetch", move || {
        let began = Instant::now();
        // Loaded here, not on the mount path: naming the log hashes the
        // bootstrap.
        let logged = data.readahead().map(|ra| ra.load()).unwrap_or_default();
        if logged.is_empty() && !table {
            return;
        }
        let Some(pool) = Pool::start(&s, data, cancel.clone()) else {
            return;
        };
        if !logged.is_empty() {
            let refs = walk::find_chunks(&*reader, &logged, &cancel);
            let mut b = Batcher::new(s.merging_size, chunk_size);
            for c in &refs {
                if let Some(batch) = b.push(*c) {
                    if !pool.send(batch) {
                        return;
                    }
                }
            }
            pool.send(b.take());
            pool.drain();
            log::info!(
                "readahead of {path}: {} of {} logged chunks prefetched first ({} ms)",
                refs.len(),
                logged.len(),
                began.elapsed().as_millis()
            );
        }
        if table {
            let roots = walk::roots(&*reader, files.as_deref(), s.all);
            let mut b = Batcher::new(s.merging_size, chunk_size);
            let (files, bad) = walk::walk(&*reader, roots, &cancel, &mut |chunks| {
                chunks
                    .into_iter()
                    .all(|c| b.push(c).is_none_or(|batch| pool.send(batch)))
            });
            pool.send(b.take());
            pool.drain();
            if cancel.load(Ordering::Relaxed) {
                log::info!("prefetch of {path} cancelled");
                return;
            }
            log::info!(
                "prefetch of {path} done: {files} files, {} failed ({} ms)",
                bad + pool.failed.load(Ordering::Relaxed),
                began.elapsed().as_millis()
            );
        }
    });
}

/// Ends the readahead window after its time, or at umount if earlier.
fn close_window(data: Arc<DeviceData>, cancel: Arc<AtomicBool>) -> impl FnOnce() + Send {
    move || {
        let Some(ra) = data.readahead() else { return };
        let end = Instant::now() + ra.window;
        while !cancel.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(100)));
        }
        ra.finish();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    match std::thread::Builder::new().name(name.into()).spawn(f) {
        Ok(_) => true,
        Err(e) => {
            log::warn!("{name} not started: {e}");
            false
        }
    }
}

/// Prefetch workers fed batches of chunks through a bounded queue (so the
/// walk never runs far ahead of the fetches).
struct Pool {
    tx: SyncSender<Vec<ChunkRef>>,
    /// Batches sent and not yet done.
    pending: Arc<(Mutex<usize>, Condvar)>,
    failed: Arc<AtomicU64>,
}

impl Pool {
    /// None if no worker could be started.
    fn start(s: &Settings, data: Arc<DeviceData>, cancel: Arc<AtomicBool>) -> Option<Pool> {
        let (tx, rx) = sync_channel::<Vec<ChunkRef>>(s.threads as usize * 2);
        let rx = Arc::new(Mutex::new(rx));
        let pending = Arc::new((Mutex::new(0usize), Condvar::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let limiter = Arc::new(Limiter::new(s.rate));
        let mut started = 0;
        for i in 0..s.threads {
            let w = Worker {
                rx: rx.clone(),
                data: data.clone(),
                cancel: cancel.clone(),
                limiter: limiter.clone(),
                pending: pending.clone(),
                failed: failed.clone(),
                merging_size: s.merging_size,
            };
            started += usize::from(spawn(&format!("prefetch-{i}"), move || w.run()));
        }
        (started > 0).then_some(Pool {
            tx,
            pending,
            failed,
        })
    }

    /// Queues a batch; false once the workers are gone.
    fn send(&self, batch: Vec<ChunkRef>) -> bool {
        if batch.is_empty() {
            return true;
        }
        *lock(&self.pending.0) += 1;
        if self.tx.send(batch).is_err() {
            *lock(&self.pending.0) -= 1;
            return false;
        }
        true
    }

    /// Waits until every queued batch is done.
    fn drain(&self) {
        let (n, cv) = &*self.pending;
        let mut n = lock(n);
        while *n > 0 {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct Worker {
    rx: Arc<Mutex<Receiver<Vec<ChunkRef>>>>,
    data: Arc<DeviceData>,
    cancel: Arc<AtomicBool>,
    limiter: Arc<Option<Limiter>>,
    pending: Arc<(Mutex<usize>, Condvar)>,
    failed: Arc<AtomicU64>,
    merging_size: u64,
}

impl Worker {
    fn run(self) {
        loop {
            let batch = match lock(&self.rx).recv() {
                Ok(b) => b,
                Err(_) => return,
            };
            // Counted done however this batch ends (skipped after cancel,
            // failed, or a panic), so `drain` returns.
            let _done = Done(&self.pending);
            if !self.cancel.load(Ordering::Relaxed) {
                let device = self.data.device();
                let mut gate = |bytes: u64| self.gate(bytes);
                if device
                    .prefetch_with(&batch, self.merging_size, &mut gate)
                    .is_err()
                {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Before each backend request: the bandwidth limit, then on-demand
    /// reads first. False to stop (cancelled).
    fn gate(&self, bytes: u64) -> bool {
        if let Some(l) = self.limiter.as_ref() {
            if !l.acquire(bytes, &self.cancel) {
                return false;
            }
        }
        while self.data.device().demand_pending() {
            if self.cancel.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        !self.cancel.load(Ordering::Relaxed)
    }
}

/// Marks one queued batch done when dropped.
struct Done<'a>(&'a (Mutex<usize>, Condvar));

impl Drop for Done<'_> {
    fn drop(&mut self) {
        let (n, cv) = self.0;
        *lock(n) -= 1;
        cv.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters and a receiver: nothing a panicking holder leaves half done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
