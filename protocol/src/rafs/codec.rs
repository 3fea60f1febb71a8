//! Chunk (de)compression, digests and CRC-32C (format doc §5).

use std::io::{Read, Write};

use super::error::{RafsError, Result};

/// How chunk data is compressed. `code()` is the u32 used in v6 blob entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compressor {
    None,
    Lz4Block,
    Gzip,
    Zstd,
}

impl Compressor {
    /// The u32 code of v6 blob entries, ci headers and ci_compressor fields.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Compressor::None,
            1 => Compressor::Lz4Block,
            2 => Compressor::Gzip,
            3 => Compressor::Zstd,
            _ => return None,
        })
    }

    pub fn code(self) -> u32 {
        match self {
            Compressor::None => 0,
            Compressor::Lz4Block => 1,
            Compressor::Gzip => 2,
            Compressor::Zstd => 3,
        }
    }

    /// Decode from superblock flags with upstream's precedence (§1.7).
    pub fn from_flags(flags: u64) -> Self {
        if flags & 0x1 != 0 {
            Compressor::None
        } else if flags & 0x2 != 0 {
            Compressor::Lz4Block
        } else if flags & 0x40 != 0 {
            Compressor::Gzip
        } else if flags & 0x80 != 0 {
            Compressor::Zstd
        } else {
            Compressor::Lz4Block
        }
    }

    /// The superblock flag bit for this compressor.
    pub fn flag(self) -> u64 {
        match self {
            Compressor::None => 0x1,
            Compressor::Lz4Block => 0x2,
            Compressor::Gzip => 0x40,
            Compressor::Zstd => 0x80,
        }
    }

    /// The CLI name (`nydus-image --compressor`).
    pub fn name(self) -> &'static str {
        match self {
            Compressor::None => "none",
            Compressor::Lz4Block => "lz4_block",
            Compressor::Gzip => "gzip",
            Compressor::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Compressor::None,
            "lz4_block" => Compressor::Lz4Block,
            "gzip" => Compressor::Gzip,
            "zstd" => Compressor::Zstd,
            _ => return None,
        })
    }
}

/// How chunk digests are computed. `code()` is the u32 of v6 blob entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Digester {
    Blake3,
    Sha256,
}

impl Digester {
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Digester::Blake3),
            1 => Some(Digester::Sha256),
            _ => None,
        }
    }

    pub fn code(self) -> u32 {
        match self {
            Digester::Blake3 => 0,
            Digester::Sha256 => 1,
        }
    }

    /// Decode from superblock flags with upstream's precedence (§1.7).
    pub fn from_flags(flags: u64) -> Self {
        if flags & 0x4 != 0 {
            Digester::Blake3
        } else if flags & 0x8 != 0 {
            Digester::Sha256
        } else {
            Digester::Blake3
        }
    }

    pub fn flag(self) -> u64 {
        match self {
            Digester::Blake3 => 0x4,
            Digester::Sha256 => 0x8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Digester::Blake3 => "blake3",
            Digester::Sha256 => "sha256",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "blake3" => Some(Digester::Blake3),
            "sha256" => Some(Digester::Sha256),
            _ => None,
        }
    }
}

/// Decompress one stored chunk into exactly `dst.len()` bytes (§5.2).
///
/// Any other produced length is an error: a short or long chunk must never
/// reach a reader as data.
pub fn decompress_into(compressor: Compressor, src: &[u8], dst: &mut [u8]) -> Result<()> {
    Decoder::default().decompress_into(compressor, src, dst)
}

/// Decompresses chunk after chunk with one zstd context: creating a context
/// per chunk costs an allocation and its set-up on every 1 MiB read.
#[derive(Default)]
pub struct Decoder {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Decoder {
    /// As `decompress_into`.
    pub fn decompress_into(
        &mut self,
        compressor: Compressor,
        src: &[u8],
        dst: &mut [u8],
    ) -> Result<()> {
        let want = dst.len();
        let got = match compressor {
            Compressor::None => {
                if src.len() != want {
                    return Err(size_error("stored", src.len(), want));
                }
                dst.copy_from_slice(src);
                want
            }
            Compressor::Lz4Block => lz4_flex::block::decompress_into(src, dst)
                .map_err(|e| RafsError::Codec(format!("lz4_block: {e}")))?,
            Compressor::Zstd => {
                let zstd_err = |e: std::io::Error| RafsError::Codec(format!("zstd: {e}"));
                let ctx = match &mut self.zstd {
                    Some(ctx) => ctx,
                    empty => empty.insert(zstd::bulk::Decompressor::new().map_err(zstd_err)?),
                };
                match ctx.decompress_to_buffer(src, dst) {
                    Ok(n) => n,
                    Err(e) => {
                        // Start the next chunk from a fresh context.
                        self.zstd = None;
                        return Err(zstd_err(e));
                    }
                }
            }
            Compressor::Gzip => {
                let mut decoder = flate2::read::GzDecoder::new(src);
                decoder
                    .read_exact(dst)
                    .map_err(|e| RafsError::Codec(format!("gzip: {e}")))?;
                want
            }
        };
        if got != want {
            return Err(size_error("decompressed", got, want));
        }
        Ok(())
    }
}

/// Decompress one stored chunk into a new buffer of `size` bytes.
pub fn decompress(compressor: Compressor, src: &[u8], size: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; size];
    decompress_into(compressor, src, &mut out)?;
    Ok(out)
}

fn size_error(what: &str, got: usize, want: usize) -> RafsError {
    RafsError::Codec(format!(
        "{what} size {got} does not match the expected {want} bytes"
    ))
}

/// Compress one chunk with upstream's framing (§5.2). Returns `None` when the
/// result would not be strictly smaller, so the caller stores raw bytes.
pub fn compress(compressor: Compressor, src: &[u8]) -> Result<Option<Vec<u8>>> {
    if src.is_empty() {
        return Ok(None);
    }
    let out = match compressor {
        Compressor::None => return Ok(None),
        Compressor::Lz4Block => lz4_flex::block::compress(src),
        Compressor::Zstd => {
            zstd::bulk::compress(src, 3).map_err(|e| RafsError::Codec(format!("zstd: {e}")))?
        }
        Compressor::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(src)?;
            enc.finish()?
        }
    };
    Ok((out.len() < src.len()).then_some(out))
}

/// Digest of uncompressed bytes (§5.4).
pub fn digest(digester: Digester, data: &[u8]) -> [u8; 32] {
    let mut h = Hasher::new(digester);
    h.update(data);
    h.finish()
}

/// Incremental digest, for hashing a blob while it is written.
pub enum Hasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn new(digester: Digester) -> Self {
        match digester {
            Digester::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            Digester::Sha256 => Hasher::Sha256(<sha2::Sha256 as sha2::Digest>::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Blake3(h) => {
                h.update(data);
            }
            Hasher::Sha256(h) => sha2::Digest::update(h, data),
        }
    }

    pub fn finish(self) -> [u8; 32] {
        match self {
            Hasher::Blake3(h) => *h.finalize().as_bytes(),
            Hasher::Sha256(h) => sha2::Digest::finalize(h).into(),
        }
    }
}

/// CRC-32C (Castagnoli) of uncompressed bytes (§5.4).
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_compressor() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for c in [Compressor::Lz4Block, Compressor::Zstd, Compressor::Gzip] {
            let packed = compress(c, &data).unwrap().expect("compressible");
            assert_eq!(decompress(c, &packed, data.len()).unwrap(), data, "{c:?}");
            // One byte short or long must be an error, never silently wrong data.
            assert!(
                decompress(c, &packed, data.len() + 1).is_err(),
                "{c:?} long"
            );
        }
        assert_eq!(compress(Compressor::None, &data).unwrap(), None);
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let data: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let packed = compress(Compressor::Lz4Block, &data[..16]).unwrap();
        assert!(packed.is_none());
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn flag_precedence() {
        assert_eq!(Compressor::from_flags(0), Compressor::Lz4Block);
        assert_eq!(Compressor::from_flags(0x80 | 0x2), Compressor::Lz4Block);
        assert_eq!(Digester::from_flags(0x8), Digester::Sha256);
        assert_eq!(Digester::from_flags(0), Digester::Blake3);
    }
}
