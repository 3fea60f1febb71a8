//! Data blob writer (format doc §4): chunks back to back in index order,
//! deduplicated by (digest, size); for v6 followed by the v1 ci table
//! (compressed like the chunks when that shrinks it) and the 4 KiB ci
//! header. The blob id is the SHA-256 of every byte written.

use std::collections::HashMap;
use std::io::Write;

use super::{
    invalid, round_up, BlobDesc, ChunkDesc, CiDesc, BLOB_FEATURE_ALIGNED, BLOB_FEATURE_CAP_TAR_TOC,
};
use crate::rafs::bytes::PutLe;
use crate::rafs::codec::{self, Compressor, Digester, Hasher};
use crate::rafs::error::Result;
use crate::rafs::types::FsVersion;

const CI_MAGIC: u32 = 0xB10B_B10B;
const MAX_CHUNKS: usize = 1 << 24;

/// A chunk digested and compressed, ready to append. Preparing is the
/// expensive part and may run on any thread; appending keeps the order.
#[derive(Debug, Clone)]
pub struct PreparedChunk {
    pub digest: [u8; 32],
    pub crc32: u32,
    pub size: u32,
    pub compressed: bool,
    /// The bytes to store: compressed, or the raw data.
    pub stored: Vec<u8>,
}

impl PreparedChunk {
    /// Digest, CRC-32C and compression of one chunk of file data.
    pub fn prepare(compressor: Compressor, digester: Digester, data: Vec<u8>) -> Result<Self> {
        let size = u32::try_from(data.len()).map_err(|_| invalid("chunk larger than 4 GiB"))?;
        let digest = codec::digest(digester, &data);
        let crc32 = codec::crc32c(&data);
        Ok(match codec::compress(compressor, &data)? {
            Some(packed) => PreparedChunk {
                digest,
                crc32,
                size,
                compressed: true,
                stored: packed,
            },
            None => PreparedChunk {
                digest,
                crc32,
                size,
                compressed: false,
                stored: data,
            },
        })
    }
}

/// Streams one data blob to `out`.
pub struct BlobWriter<W: Write> {
    out: W,
    sha: Hasher,
    version: FsVersion,
    compressor: Compressor,
    digester: Digester,
    blob_index: u32,
    written: u64,
    uncompressed_end: u64,
    chunks: Vec<ChunkDesc>,
    dedup: HashMap<([u8; 32], u32), u32>,
}

impl<W: Write> BlobWriter<W> {
    pub fn new(
        out: W,
        version: FsVersion,
        compressor: Compressor,
        digester: Digester,
        blob_index: u32,
    ) -> Self {
        BlobWriter {
            out,
            sha: Hasher::new(Digester::Sha256),
            version,
            compressor,
            digester,
            blob_index,
            written: 0,
            uncompressed_end: 0,
            chunks: Vec::new(),
            dedup: HashMap::new(),
        }
    }

    /// Stores `chunk` unless an identical one (digest and size) is already
    /// in this blob; returns its index in the blob either way.
    pub fn add(&mut self, chunk: PreparedChunk) -> Result<u32> {
        if let Some(&index) = self.dedup.get(&(chunk.digest, chunk.size)) {
            return Ok(index);
        }
        if self.chunks.len() >= MAX_CHUNKS - 1 {
            return Err(invalid(
                "more than 2^24 - 1 chunks in one blob; use a larger --chunk-size",
            ));
        }
        if self.written + chunk.stored.len() as u64 >= 1 << 40 {
            return Err(invalid("blob larger than 1 TiB"));
        }
        let index = self.chunks.len() as u32;
        // v6 aligns every chunk of the uncompressed image to 4 KiB (§1.3).
        let uncompressed_offset = match self.version {
            FsVersion::V5 => self.uncompressed_end,
            FsVersion::V6 => round_up(self.uncompressed_end, 4096),
        };
        self.chunks.push(ChunkDesc {
            blob_index: self.blob_index,
            index,
            digest: chunk.digest,
            crc32: chunk.crc32,
            compressed: chunk.compressed,
            compressed_offset: self.written,
            compressed_size: chunk.stored.len() as u32,
            uncompressed_offset,
            uncompressed_size: chunk.size,
        });
        self.uncompressed_end = uncompressed_offset + chunk.size as u64;
        self.dedup.insert((chunk.digest, chunk.size), index);
        self.put(&chunk.stored)?;
        Ok(index)
    }

    /// Chunks stored so far, in index order.
    pub fn chunks(&self) -> &[ChunkDesc] {
        &self.chunks
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.sha.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes the v6 trailer and returns the blob's table entry (id = hex
    /// SHA-256 of the file), its chunks and the sink. `None` for the entry
    /// when no chunk was stored: empty trees get no blob.
    pub fn finish(mut self) -> Result<(Option<BlobDesc>, Vec<ChunkDesc>, W)> {
        if self.chunks.is_empty() {
            return Ok((None, Vec::new(), self.out));
        }
        let uncompressed_size = match self.version {
            FsVersion::V5 => self.uncompressed_end,
            FsVersion::V6 => round_up(self.uncompressed_end, 4096),
        };
        let (features, ci) = match self.version {
            FsVersion::V5 => (BLOB_FEATURE_CAP_TAR_TOC, None),
            FsVersion::V6 => {
                let features = BLOB_FEATURE_CAP_TAR_TOC | BLOB_FEATURE_ALIGNED;
                (features, Some(self.write_ci(features)?))
            }
        };
        self.out.flush()?;
        let id = hex::encode(self.sha.finish());
        let desc = BlobDesc {
            id,
            chunk_count: self.chunks.len() as u32,
            compressed_size: self.written,
            uncompressed_size,
            compressor: self.compressor,
            digester: self.digester,
            features,
            ci,
        };
        Ok((Some(desc), self.chunks, self.out))
    }

    /// v1 ci rows (§4.4), stored compressed when that is smaller, then the
    /// 4096-byte header (§4.3).
    fn write_ci(&mut self, features: u32) -> Result<CiDesc> {
        let mut rows = Vec::with_capacity(self.chunks.len() * 16);
        for c in &self.chunks {
            let (w0, w1) = ci_row(
                c.uncompressed_offset,
                c.uncompressed_size,
                c.compressed_offset,
                c.compressed_size,
            );
            rows.put_u64(w0);
            rows.put_u64(w1);
        }
        let (compressor, stored) = match codec::compress(self.compressor, &rows)? {
            Some(packed) => (self.compressor, packed),
            None => (Compressor::None, rows.clone()),
        };
        let ci = CiDesc {
            compressor,
            offset: self.written,
            compressed_size: stored.len() as u64,
            uncompressed_size: rows.len() as u64,
        };
        self.put(&stored)?;
        let mut header = Vec::with_capacity(4096);
        header.put_u32(CI_MAGIC);
        header.put_u32(features);
        header.put_u32(compressor.code());
        header.put_u32(self.chunks.len() as u32);
        header.put_u64(ci.offset);
        header.put_u64(ci.compressed_size);
        header.put_u64(ci.uncompressed_size);
        header.resize(4092, 0);
        header.put_u32(CI_MAGIC);
        self.put(&header)?;
        Ok(ci)
    }
}

/// The two words of a v1 ci row (§4.4): offsets with (size − 1) split into
/// its low 20 bits at bit 44 and its high 4 bits below them.
pub(crate) fn ci_row(uoff: u64, usize_: u32, coff: u64, csize: u32) -> (u64, u64) {
    let split = |size: u32, high_shift: u32| {
        let s = (size.max(1) - 1) as u64;
        ((s >> 20) & 0xf) << high_shift | (s & 0xf_ffff) << 44
    };
    (
        (uoff & 0x0000_0FFF_FFFF_F000) | split(usize_, 8),
        (coff & 0xFF_FFFF_FFFF) | split(csize, 40),
    )
}
