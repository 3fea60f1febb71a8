//! Data blobs (format doc §4): the chunk-information table, reverse-tar
//! trailers, the ToC, the chunk digest array and inlined bootstraps.

mod ci;
mod trailer;

pub use ci::{CiHeader, CiTable, CI_HEADER_SIZE, CI_MAGIC};
pub use trailer::{
    extract_bootstrap, load_digest_array, parse_toc, read_trailer, TarHeader, TocEntry, Trailer,
    TAR_HEADER_SIZE, TOC_ENTRY_SIZE,
};

/// Blob feature bits (§4.8).
pub mod features {
    pub const ALIGNED: u32 = 0x0000_0001;
    pub const INLINED_FS_META: u32 = 0x0000_0002;
    pub const CHUNK_INFO_V2: u32 = 0x0000_0004;
    pub const ZRAN: u32 = 0x0000_0008;
    pub const SEPARATE: u32 = 0x0000_0010;
    pub const INLINED_CHUNK_DIGEST: u32 = 0x0000_0020;
    pub const TARFS: u32 = 0x0000_0040;
    pub const BATCH: u32 = 0x0000_0080;
    pub const ENCRYPTED: u32 = 0x0000_0100;
    pub const IS_CHUNKDICT_GENERATED: u32 = 0x0000_0200;
    pub const IS_SEPARATED_WITH_PREFETCH_FILES: u32 = 0x0000_0400;
    pub const EXTERNAL: u32 = 0x0000_0800;
    pub const HAS_TAR_HEADER: u32 = 0x1000_0000;
    pub const HAS_TOC: u32 = 0x2000_0000;
    pub const CAP_TAR_TOC: u32 = 0x4000_0000;
    /// Upstream's in-memory marker; never valid on disk.
    pub const V5_NO_EXT_BLOB_TABLE: u32 = 0x8000_0000;
    /// Every incompatible (low 16) bit this implementation knows.
    pub const KNOWN_INCOMPAT: u32 = 0x0FFF;
}

/// The first optional variant among `features` that this implementation
/// refuses, by name (§6: zran, batch, encrypted, tarfs, separate, external).
pub fn refused_feature(features: u32) -> Option<&'static str> {
    use features::*;
    [
        (ZRAN, "zran (targz-ref/estargz-ref) blobs"),
        (BATCH, "batch-chunk blobs"),
        (ENCRYPTED, "encrypted blobs"),
        (TARFS, "tarfs blobs"),
        (SEPARATE, "separate-meta (tar-ref) blobs"),
        (EXTERNAL, "external blobs"),
    ]
    .into_iter()
    .find(|(bit, _)| features & bit != 0)
    .map(|(_, name)| name)
}

#[cfg(test)]
mod tests;
