//! Per-blob chunk readiness bitmap, `<id>.blob.data.chunk_map` (reference
//! §5.3), byte-compatible with upstream so a cache directory can be shared
//! with (or inherited from) another nydusd.
//!
//! Layout: a 4096-byte header of little-endian u32s (magic, version, magic2,
//! all_ready), then one bit per chunk, MSB first. The file is mapped shared
//! and bits are set with atomic read-modify-write, so several processes can
//! use one map. Callers set a bit only after the chunk's data is written.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use memmap2::{MmapOptions, MmapRaw};

const HEADER_SIZE: usize = 4096;
const MAGIC: u32 = 0x424D_4150;
const VERSION: u32 = 1;
const MAGIC2: u32 = 0x434D_4150;
const ALL_READY: u32 = 0x4D4D_4150;
const ALL_READY_OFFSET: usize = 12;

/// An open readiness bitmap for one blob.
pub struct ChunkMap {
    map: MmapRaw,
    count: u32,
    /// Bits this process has seen set (counted at open, plus our own sets);
    /// when it reaches `count` the header's `all_ready` is written.
    ready: AtomicU32,
}

impl ChunkMap {
    /// Opens the map at `path` for a blob of `count` chunks, creating it if
    /// missing. A file of the wrong size or with bad magic is replaced by an
    /// empty map (every chunk is fetched again), with a warning.
    pub fn open(path: &Path, count: u32) -> io::Result<Self> {
        let len = HEADER_SIZE as u64 + u64::from(count).div_ceil(8);
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => match check(&f, len) {
                Ok(()) => f,
                Err(why) => {
                    log::warn!("chunk map {}: {why}; starting it afresh", path.display());
                    replace(path, len)?
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => create(path, len)?,
            Err(e) => return Err(ctx(path, "open", e)),
        };
        Self::map(file, count, len).map_err(|e| ctx(path, "mmap", e))
    }

    /// Replaces the map at `path` with an empty one (used when the data
    /// file it describes was lost).
    pub fn reset(path: &Path, count: u32) -> io::Result<Self> {
        let len = HEADER_SIZE as u64 + u64::from(count).div_ceil(8);
        let file = replace(path, len)?;
        Self::map(file, count, len).map_err(|e| ctx(path, "mmap", e))
    }

    fn map(file: File, count: u32, len: u64) -> io::Result<Self> {
        let map = MmapOptions::new().len(len as usize).map_raw(&file)?;
        if (map.len() as u64) < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short mapping",
            ));
        }
        let m = ChunkMap {
            map,
            count,
            ready: AtomicU32::new(0),
        };
        let ready = (0..count).filter(|&i| m.is_ready(i)).count() as u32;
        m.ready.store(ready, Ordering::Relaxed);
        m.note_all_ready();
        Ok(m)
    }

    /// Number of chunks the map covers.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether chunk `index` is in the data file. Out-of-range is never ready.
    pub fn is_ready(&self, index: u32) -> bool {
        match self.byte(index) {
            Some((b, mask)) => b.load(Ordering::Acquire) & mask != 0,
            None => false,
        }
    }

    /// Marks chunk `index` ready; returns true if this call set the bit.
    /// Release ordering pairs with `is_ready`: whoever sees the bit also
    /// sees our completed data write.
    pub fn set_ready(&self, index: u32) -> bool {
        let Some((b, mask)) = self.byte(index) else {
            return false;
        };
        let newly = b.fetch_or(mask, Ordering::AcqRel) & mask == 0;
        if newly {
            self.ready.fetch_add(1, Ordering::Relaxed);
            self.note_all_ready();
        }
        newly
    }

    /// Clears chunk `index` (its cached data turned out to be bad).
    pub fn clear_ready(&self, index: u32) {
        if let Some((b, mask)) = self.byte(index) {
            if b.fetch_and(!mask, Ordering::AcqRel) & mask != 0 {
                self.ready.fetch_sub(1, Ordering::Relaxed);
                self.header_word(ALL_READY_OFFSET)
                    .store(0, Ordering::Release);
            }
        }
    }

    /// Chunks known ready (at open plus those set since by this process).
    pub fn ready_count(&self) -> u32 {
        self.ready.load(Ordering::Relaxed)
    }

    /// Whether the header says every chunk is ready.
    pub fn all_ready(&self) -> bool {
        self.header_word(ALL_READY_OFFSET).load(Ordering::Acquire) == ALL_READY
    }

    fn note_all_ready(&self) {
        if self.ready.load(Ordering::Relaxed) >= self.count {
            self.header_word(ALL_READY_OFFSET)
                .store(ALL_READY, Ordering::Release);
        }
    }

    fn byte(&self, index: u32) -> Option<(&AtomicU8, u8)> {
        if index >= self.count {
            return None;
        }
        let off = HEADER_SIZE + (index / 8) as usize;
        // SAFETY: `off` < HEADER_SIZE + ceil(count/8) <= map.len() (checked in
        // `map`), so the pointer is inside the live mapping owned by `self`,
        // which outlives the returned reference. AtomicU8 has the size and
        // alignment of u8, and every access to the bitmap goes through
        // atomics (no `&mut [u8]` to the mapping exists), so concurrent use
        // by other threads or processes is not a data race.
        let b = unsafe { AtomicU8::from_ptr(self.map.as_mut_ptr().add(off)) };
        Some((b, 0x80 >> (index % 8)))
    }

    fn header_word(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off + 4 <= HEADER_SIZE);
        // SAFETY: `off` is a constant multiple of 4 below HEADER_SIZE, and the
        // mapping is page aligned and at least HEADER_SIZE long, so the
        // pointer is in bounds and 4-byte aligned for AtomicU32; the mapping
        // lives as long as `self`, and the header word is only accessed
        // atomically.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(off).cast::<u32>()) }
    }
}

/// Checks an existing map's size and header.
fn check(f: &File, len: u64) -> Result<(), String> {
    let actual = f.metadata().map_err(|e| format!("stat: {e}"))?.len();
    if actual != len {
        return Err(format!("size {actual}, expected {len}"));
    }
    let mut h = [0u8; 12];
    f.read_exact_at(&mut h, 0)
        .map_err(|e| format!("read header: {e}"))?;
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if (word(0), word(4), word(8)) != (MAGIC, VERSION, MAGIC2) {
        return Err("bad magic or version".to_string());
    }
    Ok(())
}

fn header_bytes() -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..12].copy_from_slice(&MAGIC2.to_le_bytes());
    h
}

/// Writes a complete empty map to a private temporary name first, so no
/// process ever maps a half-written header.
fn write_temp(path: &Path, len: u64) -> io::Result<std::path::PathBuf> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let f = File::create(&tmp).map_err(|e| ctx(&tmp, "create", e))?;
    f.set_len(len)
        .and_then(|()| f.write_all_at(&header_bytes(), 0))
        .map_err(|e| ctx(&tmp, "write", e))?;
    Ok(tmp)
}

/// Creates the map unless another process wins the race; then opens theirs.
fn create(path: &Path, len: u64) -> io::Result<File> {
    let tmp = write_temp(path, len)?;
    // hard_link fails if `path` exists: exactly one creator wins.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ctx(path, "create", e)),
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ctx(path, "open", e))?;
    check(&f, len).map_err(|why| ctx(path, "check", io::Error::other(why)))?;
    Ok(f)
}

/// Atomically replaces `path` with an empty map. Processes that mapped the
/// old file keep their own copy; none sees a torn file.
fn replace(path: &Path, len: u64) -> io::Result<File> {
    let tmp = write_temp(path, len)?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tmp)
        .map_err(|e| ctx(&tmp, "open", e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ctx(path, "replace", e)
    })?;
    Ok(f)
}

fn ctx(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("chunk map {}: {what}: {e}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_layout_and_persistence() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.blob.data.chunk_map");
        let m = ChunkMap::open(&p, 10).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096 + 2);
        assert!(!m.is_ready(0) && !m.is_ready(10) && !m.all_ready());
        assert!(m.set_ready(0));
        assert!(!m.set_ready(0));
        assert!(m.set_ready(9));
        assert!(!m.set_ready(10), "out of range is ignored");
        drop(m);
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(&raw[..12], &header_bytes());
        assert_eq!(raw[4096], 0x80, "chunk 0 is the MSB of byte 0");
        assert_eq!(raw[4097], 0x40, "chunk 9 is bit 1 of byte 1");
        let m = ChunkMap::open(&p, 10).unwrap();
        assert_eq!(m.ready_count(), 2);
        assert!(m.is_ready(9) && !m.is_ready(8));
        for i in 0..10 {
            m.set_ready(i);
        }
        assert!(m.all_ready());
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(&raw[12..16], &ALL_READY.to_le_bytes());
        m.clear_ready(3);
        assert!(!m.is_ready(3) && !m.all_ready());
    }

    #[test]
    fn two_maps_of_one_file_see_each_other() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m");
        let a = ChunkMap::open(&p, 100).unwrap();
        let b = ChunkMap::open(&p, 100).unwrap();
        a.set_ready(42);
        assert!(b.is_ready(42));
    }

    #[test]
    fn bad_file_is_replaced_with_empty_map() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m");
        std::fs::write(&p, vec![0xffu8; 4098]).unwrap();
        let m = ChunkMap::open(&p, 16).unwrap();
        assert_eq!(m.ready_count(), 0);
        std::fs::write(&p, b"short").unwrap();
        assert_eq!(ChunkMap::open(&p, 16).unwrap().ready_count(), 0);
        let z = ChunkMap::open(&t.path().join("zero"), 0).unwrap();
        assert!(z.all_ready());
    }
}
