//! Turning backend bytes into verified chunk data.

use std::cell::RefCell;
use std::io;
use std::time::Instant;

use nydus_protocol::rafs::codec::{self, Compressor, Decoder};
use nydus_protocol::rafs::file::BlobSource;
use nydus_protocol::rafs::{ChunkInfo, RafsError};

use super::device::BlobDevice;

thread_local! {
    /// Each FUSE or prefetch thread keeps its zstd context.
    static DECODER: RefCell<Decoder> = RefCell::default();
    /// And the buffer its backend requests land in.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A request buffer this big or smaller is kept for the thread's next
/// request; a larger one (a big `amplify_io`) is freed after use.
const SCRATCH_KEPT: usize = 2 << 20;

/// Runs `f` on a buffer of `len` bytes whose contents are left from
/// earlier requests (callers overwrite all of it). Reusing it spares a
/// zeroed allocation, its page faults and its release per request.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    // Taken out rather than borrowed, so a nested call gets its own.
    let mut buf = SCRATCH.take();
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let r = f(&mut buf[..len]);
    if buf.len() <= SCRATCH_KEPT {
        SCRATCH.set(buf);
    }
    r
}

impl BlobDevice {
    /// Exactly `buf.len()` bytes from the backend, as one counted request.
    pub(super) fn backend_read_exact(
        &self,
        id: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> io::Result<()> {
        let t = Instant::now();
        let mut done = 0;
        let res = loop {
            if done == buf.len() {
                break Ok(());
            }
            match self
                .backend
                .read_at(id, offset.saturating_add(done as u64), &mut buf[done..])
            {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "blob {id} ends before offset {:#x}",
                            offset.saturating_add(buf.len() as u64)
                        ),
                    ))
                }
                Ok(n) => done += n,
                Err(e) => break Err(e),
            }
        };
        self.metrics
            .backend_read(buf.len() as u64, t.elapsed(), res.is_ok());
        res
    }

    /// Decompresses and checks one chunk's stored bytes: the CRC whenever
    /// the descriptor has one, the digest with `digest_validate`.
    pub(super) fn decode(&self, info: &ChunkInfo, stored: &[u8]) -> Result<Vec<u8>, String> {
        let mut data = vec![0u8; info.uncompressed_size as usize];
        self.decode_into(info, stored, &mut data)?;
        Ok(data)
    }

    /// `decode` into `dst`, exactly the chunk's uncompressed size.
    pub(super) fn decode_into(
        &self,
        info: &ChunkInfo,
        stored: &[u8],
        dst: &mut [u8],
    ) -> Result<(), String> {
        let blob = &self.blobs[info.blob_index as usize].info;
        if info.encrypted || info.batch {
            return Err("encrypted and batch chunks are not supported".to_string());
        }
        let how = if info.compressed {
            blob.compressor
        } else {
            Compressor::None
        };
        DECODER
            .with_borrow_mut(|d| d.decompress_into(how, stored, dst))
            .map_err(|e| e.to_string())?;
        self.check(info, dst)
    }

    /// Checks uncompressed chunk bytes: the CRC whenever the descriptor has
    /// one, the digest with `digest_validate`.
    pub(super) fn check(&self, info: &ChunkInfo, data: &[u8]) -> Result<(), String> {
        if let Some(want) = info.crc32 {
            let got = codec::crc32c(data);
            if got != want {
                return Err(format!("CRC-32C {got:#010x}, expected {want:#010x}"));
            }
        }
        let digester = self.blobs[info.blob_index as usize].info.digester;
        if let (true, Some(want)) = (self.digest_validate, info.digest) {
            if codec::digest(digester, data) != want {
                return Err("digest mismatch".to_string());
            }
        }
        Ok(())
    }
}

/// The backend as the protocol crate's blob source (for ci tables).
pub(super) struct Source<'a>(pub(super) &'a BlobDevice);

impl BlobSource for Source<'_> {
    fn read_at(&self, blob_id: &str, offset: u64, buf: &mut [u8]) -> Result<(), RafsError> {
        self.0
            .backend_read_exact(blob_id, offset, buf)
            .map_err(|e| RafsError::Io(e.to_string()))
    }
}
