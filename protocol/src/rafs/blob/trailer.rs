//! Reverse-tar trailers, the blob ToC, the chunk digest array and inlined
//! bootstraps (§4.7, §6.5).

use super::features::*;
use crate::rafs::bytes::Bytes;
use crate::rafs::codec::{self, Compressor, Digester};
use crate::rafs::error::{RafsError, Result};
use crate::rafs::file::BlobSource;
use crate::rafs::types::BlobInfo;

pub const TAR_HEADER_SIZE: usize = 512;
pub const TOC_ENTRY_SIZE: usize = 128;
/// An extracted bootstrap larger than this is refused rather than allocated.
const MAX_BOOTSTRAP: u64 = 1 << 30;

/// The two fields of a reverse-tar header that matter: the name and the
/// size of the data that precedes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarHeader {
    pub name: String,
    pub size: u64,
}

impl TarHeader {
    /// Decodes the 512-byte header at absolute offset `base`.
    pub fn parse(data: &[u8], base: u64) -> Result<Self> {
        let b = Bytes {
            data,
            base,
            structure: "blob tar header",
        };
        let name_field = b.slice(0, 100)?;
        let name_len = name_field
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(name_field.len());
        let name = std::str::from_utf8(&name_field[..name_len])
            .map_err(|_| b.err(0, "name is not UTF-8"))?
            .to_string();
        let size_field = b.slice(124, 12)?;
        let size = parse_tar_size(size_field)
            .ok_or_else(|| b.err(124, "size field is not a tar number"))?;
        Ok(TarHeader { name, size })
    }
}

/// A tar numeric field: octal ASCII (space/NUL padded) or GNU base-256.
fn parse_tar_size(field: &[u8]) -> Option<u64> {
    let (&first, rest) = field.split_first()?;
    if first & 0x80 != 0 {
        let mut v = u64::from(first & 0x7F);
        for &c in rest {
            v = v.checked_mul(256)?.checked_add(u64::from(c))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .filter(|&c| c != 0 && c != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    let mut v = 0u64;
    for c in text {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// One 128-byte ToC entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TocEntry {
    /// Absolute offset of the entry in the blob.
    pub offset: u64,
    pub flags: u32,
    pub name: String,
    pub digest: [u8; 32],
    pub compressed_offset: u64,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
}

impl TocEntry {
    /// The compression of the entry's data (ToC flag values, §5.1).
    pub fn compressor(&self) -> Result<Compressor> {
        match self.flags & 0xF {
            0x1 => Ok(Compressor::None),
            0x2 => Ok(Compressor::Zstd),
            0x4 => Ok(Compressor::Lz4Block),
            other => Err(RafsError::corrupt(
                "blob ToC entry",
                self.offset,
                format!("unknown compression flags {other:#x}"),
            )),
        }
    }
}

/// Decodes the ToC entries stored at absolute offset `base`.
pub fn parse_toc(data: &[u8], base: u64) -> Result<Vec<TocEntry>> {
    let all = Bytes {
        data,
        base,
        structure: "blob ToC",
    };
    if data.len() % TOC_ENTRY_SIZE != 0 {
        return Err(all.err(
            0,
            format!(
                "{} bytes is not a whole number of {TOC_ENTRY_SIZE}-byte entries",
                data.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(data.len() / TOC_ENTRY_SIZE);
    for (i, raw) in data.chunks_exact(TOC_ENTRY_SIZE).enumerate() {
        let offset = base + (i * TOC_ENTRY_SIZE) as u64;
        let b = Bytes {
            data: raw,
            base: offset,
            structure: "blob ToC entry",
        };
        let name_field = b.slice(8, 16)?;
        let len = name_field
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(name_field.len());
        let name =
            std::str::from_utf8(&name_field[..len]).map_err(|_| b.err(8, "name is not UTF-8"))?;
        out.push(TocEntry {
            offset,
            flags: b.u32(0)?,
            name: name.to_string(),
            digest: b.array(24)?,
            compressed_offset: b.u64(56)?,
            compressed_size: b.u64(64)?,
            uncompressed_size: b.u64(72)?,
        });
    }
    Ok(out)
}

/// What ends a blob file: either its ToC or a bare `image.boot` trailer.
#[derive(Debug, Clone)]
pub enum Trailer {
    /// `rafs.blob.toc` header at `header_offset`; entries decoded.
    Toc {
        header_offset: u64,
        entries: Vec<TocEntry>,
    },
    /// `image.boot` header at `header_offset`; the raw bootstrap is the
    /// `size` bytes before it.
    Bootstrap { header_offset: u64, size: u64 },
}

/// Reads the trailer at the end of a whole blob file.
pub fn read_trailer(blob: &[u8]) -> Result<Trailer> {
    let len = blob.len() as u64;
    let header_offset = len.checked_sub(TAR_HEADER_SIZE as u64).ok_or_else(|| {
        RafsError::corrupt(
            "blob tar header",
            0,
            format!("file of {len} bytes is too short for a RAFS bootstrap or blob trailer"),
        )
    })?;
    let hb = Bytes::at(
        blob,
        header_offset,
        TAR_HEADER_SIZE as u64,
        "blob tar header",
    )?;
    let header = TarHeader::parse(hb.data, header_offset)?;
    let data_at = header_offset.checked_sub(header.size).ok_or_else(|| {
        RafsError::corrupt(
            "blob tar header",
            header_offset,
            format!(
                "{} names {} bytes but only {header_offset} precede it",
                header.name, header.size
            ),
        )
    })?;
    match header.name.as_str() {
        "rafs.blob.toc" => {
            let toc = Bytes::at(blob, data_at, header.size, "blob ToC")?;
            Ok(Trailer::Toc { header_offset, entries: parse_toc(toc.data, data_at)? })
        }
        "image.boot" => Ok(Trailer::Bootstrap { header_offset, size: header.size }),
        other => Err(RafsError::corrupt(
            "blob tar header",
            header_offset,
            format!("last entry is {other:?}: neither a RAFS bootstrap nor a data blob with an inlined bootstrap"),
        )),
    }
}

/// The bootstrap inlined at the end of data blob `blob` (§4.7), as stored
/// in a v5/v6 bootstrap file: through the ToC (decompressed, SHA-256
/// checked) or from a bare `image.boot` trailer.
pub fn extract_bootstrap(blob: &[u8]) -> Result<Vec<u8>> {
    match read_trailer(blob)? {
        Trailer::Bootstrap {
            header_offset,
            size,
        } => {
            let start = header_offset - size;
            Ok(Bytes::at(blob, start, size, "inlined bootstrap")?
                .data
                .to_vec())
        }
        Trailer::Toc {
            header_offset,
            entries,
        } => {
            let e = entries
                .iter()
                .find(|e| e.name == "image.boot")
                .ok_or_else(|| {
                    RafsError::corrupt(
                        "blob ToC",
                        header_offset,
                        "has no image.boot entry: the blob carries no inlined bootstrap",
                    )
                })?;
            if e.uncompressed_size > MAX_BOOTSTRAP {
                return Err(RafsError::corrupt(
                    "blob ToC entry",
                    e.offset,
                    format!("image.boot of {} bytes is too large", e.uncompressed_size),
                ));
            }
            let stored = Bytes::at(
                blob,
                e.compressed_offset,
                e.compressed_size,
                "inlined bootstrap",
            )?;
            let out = codec::decompress(e.compressor()?, stored.data, e.uncompressed_size as usize)
                .map_err(|err| RafsError::corrupt("inlined bootstrap", e.compressed_offset, err))?;
            if e.digest != [0u8; 32] && codec::digest(Digester::Sha256, &out) != e.digest {
                return Err(RafsError::corrupt(
                    "inlined bootstrap",
                    e.compressed_offset,
                    "SHA-256 does not match its ToC entry",
                ));
            }
            Ok(out)
        }
    }
}

/// The chunk digest array of `blob` (§4.7), located right after the stored
/// ci table, its header and `blob.meta` tar header, and recognised by the
/// `blob.digest` tar header that follows it. `None` when the blob has no
/// tar headers to confirm the position (digests are then simply unknown).
pub fn load_digest_array(
    blob: &BlobInfo,
    blob_id: &str,
    source: &dyn BlobSource,
) -> Result<Option<Vec<u8>>> {
    let Some(meta) = &blob.meta else {
        return Ok(None);
    };
    if blob.features & HAS_TAR_HEADER == 0 {
        return Ok(None);
    }
    let len = u64::from(blob.chunk_count) * 32;
    let at = meta
        .ci_offset
        .checked_add(meta.ci_compressed_size)
        .and_then(|v| v.checked_add((super::CI_HEADER_SIZE + TAR_HEADER_SIZE) as u64))
        .ok_or_else(|| {
            RafsError::corrupt(
                "blob table entry (ci table)",
                meta.ci_offset,
                "ci offset + size overflows",
            )
        })?;
    // chunk_count ≤ 2^24 was checked by the caller: at most 512 MiB.
    let mut buf = vec![0u8; len as usize + TAR_HEADER_SIZE];
    source.read_at(blob_id, at, &mut buf)?;
    let header_at = at + len;
    let header = TarHeader::parse(&buf[len as usize..], header_at)?;
    if header.name != "blob.digest" || header.size != len {
        return Ok(None);
    }
    buf.truncate(len as usize);
    Ok(Some(buf))
}
