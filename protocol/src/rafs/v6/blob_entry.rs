//! v6 blob table entries (§3.5), decoded and validated.

use super::layout::{nul_trimmed_utf8, ExtSuper, BLOB_ENTRY_SIZE};
use crate::rafs::blob::features;
use crate::rafs::bytes::Bytes;
use crate::rafs::codec::{Compressor, Digester};
use crate::rafs::error::{RafsError, Result};
use crate::rafs::types::{BlobInfo, BlobMetaInfo};

/// The raw blob-entry fields `BlobInfo` has no room for (inspect shows them).
#[derive(Debug, Clone, Default)]
pub struct BlobExtra {
    pub offset: u64,
    pub toc_size: u32,
    pub toc_digest: [u8; 32],
    pub blob_meta_digest: [u8; 32],
    pub blob_meta_size: u64,
    pub cipher: u32,
}

/// Decodes blob entry `index`; `strict` refuses optional variants.
pub fn parse_blob(
    file: &[u8],
    ext: &ExtSuper,
    index: u32,
    strict: bool,
) -> Result<(BlobInfo, BlobExtra)> {
    let offset = ext.blob_table_offset + u64::from(index) * BLOB_ENTRY_SIZE;
    let b = Bytes::at(file, offset, BLOB_ENTRY_SIZE, "v6 blob table entry")?;
    let blob_id = nul_trimmed_utf8(&b, 0, 64)?;
    let code = |off: usize, what: &str| -> Result<Compressor> {
        let c = b.u32(off)?;
        Compressor::from_code(c).ok_or_else(|| b.err(off, format!("unknown {what} code {c}")))
    };
    let compressor = code(76, "compressor")?;
    let ci_compressor = code(108, "ci compressor")?;
    let dcode = b.u32(80)?;
    let digester = Digester::from_code(dcode)
        .ok_or_else(|| b.err(80, format!("unknown digester code {dcode}")))?;
    let blob = BlobInfo {
        index,
        blob_id,
        chunk_count: b.u32(72)?,
        compressed_size: b.u64(88)?,
        uncompressed_size: b.u64(96)?,
        compressor,
        digester,
        chunk_size: b.u32(68)?,
        features: b.u32(84)?,
        meta: Some(BlobMetaInfo {
            ci_compressor,
            ci_offset: b.u64(112)?,
            ci_compressed_size: b.u64(120)?,
            ci_uncompressed_size: b.u64(128)?,
        }),
    };
    let extra = BlobExtra {
        offset,
        toc_size: b.u32(104)?,
        toc_digest: b.array(136)?,
        blob_meta_digest: b.array(168)?,
        blob_meta_size: b.u64(200)?,
        cipher: b.u32(216)?,
    };
    let f = blob.features;
    let stored_index = b.u32(64)?;
    let checks: [(usize, bool, String); 7] = [
        (
            64,
            stored_index == index,
            format!("blob_index {stored_index} at position {index}"),
        ),
        (
            68,
            blob.chunk_size == ext.chunk_size,
            format!(
                "chunk size {:#x} differs from the superblock's {:#x}",
                blob.chunk_size, ext.chunk_size
            ),
        ),
        (
            72,
            blob.chunk_count <= 1 << 24,
            format!("chunk count {} exceeds 2^24", blob.chunk_count),
        ),
        (
            84,
            f & features::V5_NO_EXT_BLOB_TABLE == 0 && f & 0xFFFF & !features::KNOWN_INCOMPAT == 0,
            format!("unknown or invalid feature bits in {f:#x}"),
        ),
        (
            84,
            f & features::ALIGNED != 0 || f & features::TARFS != 0,
            format!("features {f:#x} lack ALIGNED"),
        ),
        (
            88,
            blob.compressed_size <= 1 << 40 && blob.uncompressed_size <= 1 << 44,
            "blob sizes out of range".into(),
        ),
        (
            120,
            blob.meta
                .as_ref()
                .is_some_and(|m| m.ci_compressed_size <= m.ci_uncompressed_size),
            "stored ci size exceeds its decompressed size".into(),
        ),
    ];
    if let Some((off, _, why)) = checks.into_iter().find(|c| !c.1) {
        return Err(b.err(off, format!("blob {}: {why}", blob.blob_id)));
    }
    if strict {
        if let Some(what) = crate::rafs::blob::refused_feature(f) {
            return Err(RafsError::Unsupported(format!(
                "blob {}: {what}",
                blob.blob_id
            )));
        }
    }
    Ok((blob, extra))
}
