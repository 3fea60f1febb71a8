//! BlobDevice tests: helpers building one-file images and a counting
//! in-memory backend; the cases live in submodules.

mod cases;
mod fixtures;
mod stress;

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nydus_protocol::rafs::codec::{self, Compressor, Digester};
use nydus_protocol::rafs::{BlobInfo, ChunkInfo, ChunkRef};

use super::*;

/// In-memory blobs; counts requests and notes where each one's bytes went;
/// optionally slow.
#[derive(Default)]
pub(super) struct MemBackend {
    pub blobs: Mutex<HashMap<String, Vec<u8>>>,
    pub calls: AtomicUsize,
    pub delay: Option<Duration>,
    /// Address range of each request's buffer.
    pub targets: Mutex<Vec<std::ops::Range<usize>>>,
}

impl MemBackend {
    /// Whether some request's bytes were read straight into `buf`.
    pub fn read_into(&self, buf: &[u8]) -> bool {
        let theirs = buf.as_ptr_range();
        let theirs = theirs.start as usize..theirs.end as usize;
        self.targets
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.start < theirs.end && theirs.start < r.end)
    }
}

impl Backend for MemBackend {
    fn read_at(&self, id: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let at = buf.as_ptr() as usize;
        self.targets.lock().unwrap().push(at..at + buf.len());
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let blobs = self.blobs.lock().unwrap();
        let b = blobs
            .get(id)
            .ok_or_else(|| io::Error::other("no such blob"))?;
        let start = (offset as usize).min(b.len());
        let n = buf.len().min(b.len() - start);
        buf[..n].copy_from_slice(&b[start..start + n]);
        Ok(n)
    }
    fn blob_size(&self, id: &str) -> io::Result<u64> {
        Ok(self
            .blobs
            .lock()
            .unwrap()
            .get(id)
            .map_or(0, |b| b.len() as u64))
    }
    fn kind(&self) -> &'static str {
        "mem"
    }
}

pub(super) const ID: &str = "b10b";

/// A one-file image: `content` cut into `chunk_size` chunks, each compressed
/// (when that helps) and stored back to back, uncompressed offsets 4 KiB
/// aligned as in v6.
pub(super) struct Image {
    pub content: Vec<u8>,
    pub blob: Vec<u8>,
    pub info: BlobInfo,
    pub refs: Vec<ChunkRef>,
    pub chunk_size: u32,
}

pub(super) fn image(content: Vec<u8>, chunk_size: u32) -> Image {
    let (mut blob, mut refs, mut uoff) = (Vec::new(), Vec::new(), 0u64);
    for (k, piece) in content.chunks(chunk_size as usize).enumerate() {
        let packed = codec::compress(Compressor::Zstd, piece).unwrap();
        let stored = packed.as_deref().unwrap_or(piece);
        let info = ChunkInfo {
            blob_index: 0,
            chunk_index: k as u32,
            compressed_offset: blob.len() as u64,
            compressed_size: stored.len() as u32,
            uncompressed_offset: uoff,
            uncompressed_size: piece.len() as u32,
            compressed: packed.is_some(),
            encrypted: false,
            batch: false,
            digest: Some(codec::digest(Digester::Blake3, piece)),
            crc32: Some(codec::crc32c(piece)),
        };
        blob.extend_from_slice(stored);
        uoff += (piece.len() as u64).next_multiple_of(4096);
        refs.push(ChunkRef {
            blob_index: 0,
            chunk_index: k as u32,
            file_offset: k as u64 * u64::from(chunk_size),
            info: Some(info),
        });
    }
    let info = BlobInfo {
        index: 0,
        blob_id: ID.to_string(),
        chunk_count: refs.len() as u32,
        compressed_size: blob.len() as u64,
        uncompressed_size: uoff,
        compressor: Compressor::Zstd,
        digester: Digester::Blake3,
        chunk_size,
        features: 0,
        meta: None,
    };
    Image {
        content,
        blob,
        info,
        refs,
        chunk_size,
    }
}

/// Compressible but not constant, so each chunk differs.
pub(super) fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 7) % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// Incompressible bytes, so every chunk is stored raw at a known size.
pub(super) fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(super) fn backend(img: &Image) -> Arc<MemBackend> {
    let b = MemBackend::default();
    b.blobs.lock().unwrap().insert(ID.into(), img.blob.clone());
    Arc::new(b)
}

pub(super) fn device(
    img: &Image,
    be: &Arc<MemBackend>,
    cache: CacheMode,
    amplify_io: u64,
) -> BlobDevice {
    device_with(img, be, cache, amplify_io, false)
}

pub(super) fn device_with(
    img: &Image,
    be: &Arc<MemBackend>,
    cache: CacheMode,
    amplify_io: u64,
    shared_reply_memory: bool,
) -> BlobDevice {
    let config = StorageConfig {
        backend: be.clone(),
        cache,
        digest_validate: true,
        amplify_io,
        shared_reply_memory,
    };
    BlobDevice::new(std::slice::from_ref(&img.info), None, config).unwrap()
}

pub(super) fn blobcache(dir: &Path, compressed: bool) -> CacheMode {
    CacheMode::Blobcache {
        work_dir: dir.to_path_buf(),
        compressed,
    }
}

pub(super) fn read(dev: &BlobDevice, img: &Image, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0xAAu8; len];
    let n = dev.read(
        &img.refs,
        img.chunk_size,
        img.content.len() as u64,
        off,
        &mut buf,
    )?;
    buf.truncate(n);
    Ok(buf)
}

pub(super) fn calls(be: &MemBackend) -> usize {
    be.calls.load(Ordering::SeqCst)
}
