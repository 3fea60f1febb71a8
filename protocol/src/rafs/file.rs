//! Reading file data: chunk descriptors → blob bytes → decompressed,
//! verified chunks → file contents (format doc §1.4, §3.18).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::blob::CiTable;
use super::codec::{self, Compressor};
use super::error::{RafsError, Result};
use super::types::{BlobInfo, ChunkInfo, ChunkRef, FileKind};
use super::Reader;

/// Where data blobs come from. Implementations must be safe to share between
/// reader threads.
pub trait BlobSource: Send + Sync {
    /// Exactly `buf.len()` bytes at `offset` of the blob named `blob_id`
    /// (the effective id, §1.5). A short blob is an error.
    fn read_at(&self, blob_id: &str, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// Blobs stored as `<dir>/<blob_id>` (the localfs backend layout, and the
/// fixtures' `blobs/` directories). Open files are kept for reuse.
pub struct DirBlobSource {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<File>>>,
}

/// More distinct blobs than this and the handle cache starts over: a
/// merged image has at most 256 blobs, so this only bounds crafted input.
const MAX_OPEN_BLOBS: usize = 512;

impl DirBlobSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirBlobSource {
            dir: dir.into(),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn file(&self, blob_id: &str) -> Result<Arc<File>> {
        // A poisoned cache holds only complete entries; keep using it.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(blob_id) {
            return Ok(f.clone());
        }
        let path = self.dir.join(blob_id);
        let file = Arc::new(
            File::open(&path)
                .map_err(|e| RafsError::Io(format!("blob {}: {e}", path.display())))?,
        );
        if open.len() >= MAX_OPEN_BLOBS {
            open.clear();
        }
        open.insert(blob_id.to_string(), file.clone());
        Ok(file)
    }
}

impl BlobSource for DirBlobSource {
    fn read_at(&self, blob_id: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        // A blob id is a file name, never a path: refuse anything that could
        // escape the directory.
        if blob_id.is_empty() || blob_id.contains('/') || blob_id == "." || blob_id == ".." {
            return Err(RafsError::NotFound(format!(
                "blob id {blob_id:?} is not a file name"
            )));
        }
        self.file(blob_id)?.read_exact_at(buf, offset).map_err(|e| {
            RafsError::Io(format!(
                "blob {}: reading {} bytes at offset {offset:#x}: {e}",
                self.dir.join(blob_id).display(),
                buf.len()
            ))
        })
    }
}

/// Resolves and reads chunks of one opened image.
///
/// Blob ci tables are loaded at most once per blob and cached for the life of
/// the `ChunkReader`.
pub struct ChunkReader<'a> {
    reader: &'a dyn Reader,
    source: &'a dyn BlobSource,
    meta_file_stem: Option<String>,
    /// Ignore descriptors the bootstrap carries and go through the blob ci
    /// tables, as upstream nydusd does for every v6 read.
    ci_only: bool,
    ci_tables: Mutex<HashMap<u32, Arc<CiTable>>>,
}

impl<'a> ChunkReader<'a> {
    pub fn new(
        reader: &'a dyn Reader,
        source: &'a dyn BlobSource,
        meta_file_stem: Option<String>,
    ) -> Self {
        ChunkReader {
            reader,
            source,
            meta_file_stem,
            ci_only: false,
            ci_tables: Mutex::new(HashMap::new()),
        }
    }

    /// Resolve v6 chunks through the blob ci tables even where the bootstrap
    /// chunk table has the descriptor (upstream's I/O path; tests compare the
    /// two). The digest and CRC from the bootstrap are still used for checks.
    pub fn use_ci_tables(mut self, yes: bool) -> Self {
        self.ci_only = yes;
        self
    }

    fn blob(&self, index: u32) -> Result<&'a BlobInfo> {
        self.reader.blobs().get(index as usize).ok_or_else(|| {
            RafsError::NotFound(format!("blob index {index} is not in the blob table"))
        })
    }

    fn blob_id(&self, blob: &BlobInfo) -> String {
        blob.effective_id(self.meta_file_stem.as_deref())
    }

    /// The ci table of blob `index`, loading it on first use.
    pub fn ci_table(&self, index: u32) -> Result<Arc<CiTable>> {
        if let Some(t) = self.lock_tables().get(&index) {
            return Ok(t.clone());
        }
        // Loaded without holding the lock: a backend fetch may be slow. Two
        // threads racing here both load; the first insert wins.
        let blob = self.blob(index)?;
        let table = Arc::new(CiTable::load(blob, &self.blob_id(blob), self.source)?);
        Ok(self.lock_tables().entry(index).or_insert(table).clone())
    }

    fn lock_tables(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<CiTable>>> {
        // A poisoned map only means another reader panicked mid-insert of a
        // complete Arc; the map itself is still consistent.
        self.ci_tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The full descriptor of `r`: the bootstrap's when it has one, else the
    /// blob's ci table row.
    pub fn resolve(&self, r: &ChunkRef) -> Result<ChunkInfo> {
        match r.info {
            Some(info) if !self.ci_only => Ok(info),
            known => {
                let mut info = self.ci_table(r.blob_index)?.row(r.chunk_index)?;
                // ci v1 rows carry no digest or CRC; keep the bootstrap's.
                if let Some(k) = known {
                    info.digest = info.digest.or(k.digest);
                    info.crc32 = info.crc32.or(k.crc32);
                }
                Ok(info)
            }
        }
    }

    /// Fetch, decrypt (refused), decompress with the blob's compressor and
    /// check one chunk. The CRC is checked whenever the descriptor has one;
    /// the digest when `verify` is set and the descriptor has one.
    pub fn read_chunk(&self, info: &ChunkInfo, verify: bool) -> Result<Vec<u8>> {
        let blob = self.blob(info.blob_index)?;
        if info.encrypted {
            return Err(RafsError::Unsupported(format!(
                "encrypted chunk {} of blob {}",
                info.chunk_index, blob.blob_id
            )));
        }
        if info.batch {
            return Err(RafsError::Unsupported(format!(
                "batch chunk {} of blob {}",
                info.chunk_index, blob.blob_id
            )));
        }
        let id = self.blob_id(blob);
        // Sizes come from image data: bound them before allocating. A stored
        // chunk is never larger than its data (raw is stored when
        // compression does not shrink it), and chunks are at most 16 MiB.
        if info.uncompressed_size > MAX_CHUNK || info.compressed_size > MAX_CHUNK {
            return Err(chunk_error(
                &id,
                info,
                format!(
                    "sizes {:#x}/{:#x} exceed the 16 MiB chunk limit",
                    info.compressed_size, info.uncompressed_size
                ),
            ));
        }
        let mut stored = vec![0u8; info.compressed_size as usize];
        self.source
            .read_at(&id, info.compressed_offset, &mut stored)?;
        let data = if info.compressed {
            codec::decompress(blob.compressor, &stored, info.uncompressed_size as usize)
        } else {
            codec::decompress(Compressor::None, &stored, info.uncompressed_size as usize)
        }
        .map_err(|e| chunk_error(&id, info, e))?;
        if let Some(want) = info.crc32 {
            let got = codec::crc32c(&data);
            if got != want {
                return Err(chunk_error(
                    &id,
                    info,
                    format!("CRC-32C {got:#010x}, expected {want:#010x}"),
                ));
            }
        }
        if let (true, Some(want)) = (verify, info.digest) {
            let got = codec::digest(blob.digester, &data);
            if got != want {
                return Err(chunk_error(
                    &id,
                    info,
                    format!(
                        "digest {}, expected {}",
                        hex::encode(got),
                        hex::encode(want)
                    ),
                ));
            }
        }
        Ok(data)
    }

    /// The whole content of regular file `ino` (see `read_file_with`).
    pub fn read_file(&self, ino: u64, verify: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_file_with(ino, verify, &mut |piece| {
            out.extend_from_slice(piece);
            Ok(())
        })?;
        Ok(out)
    }

    /// Streams the content of regular file `ino` to `sink`, chunk by chunk,
    /// so memory stays bounded by one chunk whatever the file size. Each
    /// chunk must hold exactly the bytes its position calls for; gaps
    /// between chunks (v5 holes) read as zeros.
    pub fn read_file_with(
        &self,
        ino: u64,
        verify: bool,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let inode = self.reader.inode(ino)?;
        if inode.kind() != Some(FileKind::Regular) {
            return Err(RafsError::NotFound(format!(
                "inode {ino} is not a regular file"
            )));
        }
        let chunk_size = u64::from(self.reader.super_info().chunk_size);
        let mut pos = 0u64;
        for r in self.reader.chunks(ino)? {
            let mismatch = |what: String| {
                RafsError::Codec(format!(
                    "inode {ino}: chunk at file offset {:#x}: {what}",
                    r.file_offset
                ))
            };
            let want = inode.size.saturating_sub(r.file_offset).min(chunk_size);
            if r.file_offset < pos || want == 0 {
                return Err(mismatch(format!(
                    "overlaps the previous chunk or lies past the file size {}",
                    inode.size
                )));
            }
            zeros(pos, r.file_offset, sink)?;
            let info = self.resolve(&r)?;
            if u64::from(info.uncompressed_size) != want {
                return Err(mismatch(format!(
                    "holds {} bytes, the file needs {want}",
                    info.uncompressed_size
                )));
            }
            sink(&self.read_chunk(&info, verify)?)?;
            pos = r.file_offset + want;
        }
        zeros(pos, inode.size, sink)
    }
}

/// Largest chunk the format allows (§1.2).
const MAX_CHUNK: u32 = 0x100_0000;

/// Emits the hole `[from, to)` as zeros, 64 KiB at a time.
fn zeros(mut from: u64, to: u64, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let block = [0u8; 64 * 1024];
    while from < to {
        let n = (to - from).min(block.len() as u64);
        sink(&block[..n as usize])?;
        from += n;
    }
    Ok(())
}

fn chunk_error(blob_id: &str, info: &ChunkInfo, reason: impl std::fmt::Display) -> RafsError {
    RafsError::Codec(format!(
        "blob {blob_id} chunk {} at offset {:#x}: {reason}",
        info.chunk_index, info.compressed_offset
    ))
}
