//! `nydusctl image check`: verify a whole image. Walks the tree, reads
//! every symlink and xattr, resolves, reads, decompresses and checks the
//! digest (and CRC-32C when recorded) of every chunk of every regular file,
//! and checks that every blob of the blob table is present.

use std::collections::HashSet;
use std::path::PathBuf;

use nydus_protocol::rafs::file::{ChunkReader, DirBlobSource};
use nydus_protocol::rafs::manifest::esc;
use nydus_protocol::rafs::walk::{walk, Entry};
use nydus_protocol::rafs::{self, v5, FileKind, FsVersion, Reader};

use super::ls::open_image;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Directory holding the data blobs, named by blob id.
    #[arg(long, value_name = "DIR")]
    pub blob_dir: PathBuf,
    /// The bootstrap file.
    pub bootstrap: PathBuf,
}

#[derive(Default)]
struct Tally {
    entries: u64,
    files: u64,
    chunks: u64,
    /// Blobs already reported missing: their chunks are not read again.
    missing_blobs: HashSet<u32>,
    problems: Vec<String>,
}

pub fn run(args: CheckArgs) -> Result<(), String> {
    let image = open_image(&args.bootstrap)?;
    let reader = image.reader.as_ref();
    let source = DirBlobSource::new(&args.blob_dir);
    let chunks = ChunkReader::new(reader, &source, image.stem.clone());
    let mut t = Tally::default();

    check_blobs(reader, &args, image.stem.as_deref(), &mut t);
    if rafs::detect(&image.bytes) == rafs::Detected::V5 {
        match v5::V5Reader::open(image.bytes.clone()).and_then(|r| r.verify_inode_digests()) {
            Ok(p) => t.problems.extend(p),
            Err(e) => t.problems.push(e.to_string()),
        }
    }
    if let Err(e) = check_tree(reader, &chunks, &mut t) {
        t.problems.push(format!("tree walk stopped: {e}"));
    }

    for p in &t.problems {
        println!("{p}");
    }
    if t.problems.is_empty() {
        println!(
            "ok: {} entries, {} regular files, {} distinct chunks verified, {} blobs",
            t.entries,
            t.files,
            t.chunks,
            reader.blobs().len()
        );
        Ok(())
    } else {
        Err(format!(
            "{}: {} problems",
            args.bootstrap.display(),
            t.problems.len()
        ))
    }
}

/// Every blob must exist and be at least as long as the table says.
fn check_blobs(reader: &dyn Reader, args: &CheckArgs, stem: Option<&str>, t: &mut Tally) {
    for blob in reader.blobs() {
        let id = blob.effective_id(stem);
        let path = args.blob_dir.join(&id);
        match std::fs::metadata(&path) {
            Ok(m) if blob.compressed_size > 0 && m.len() < blob.compressed_size => {
                t.problems.push(format!(
                    "blob {} ({}): {} bytes, the blob table says {}",
                    blob.index,
                    path.display(),
                    m.len(),
                    blob.compressed_size
                ))
            }
            Ok(_) => {}
            Err(e) => {
                t.missing_blobs.insert(blob.index);
                t.problems
                    .push(format!("blob {} ({}): {e}", blob.index, path.display()));
            }
        }
    }
}

fn check_tree(
    reader: &dyn Reader,
    chunks: &ChunkReader<'_>,
    t: &mut Tally,
) -> nydus_protocol::rafs::Result<()> {
    let mut files_seen = HashSet::new();
    // A deduplicated chunk is verified once: (blob, stored offset, size, digest).
    let mut chunks_seen = HashSet::new();
    let has_xattr = reader.super_info().has_xattr;
    walk(reader, &mut |e: &Entry<'_>| {
        t.entries += 1;
        let path = esc(e.path);
        let ino = e.inode.ino;
        if has_xattr {
            if let Err(err) = reader.xattrs(ino) {
                t.problems.push(format!("{path}: xattrs: {err}"));
            }
        }
        match e.inode.kind() {
            Some(FileKind::Symlink) => {
                if let Err(err) = reader.readlink(ino) {
                    t.problems.push(format!("{path}: symlink: {err}"));
                }
            }
            Some(FileKind::Regular) if files_seen.insert(ino) => {
                t.files += 1;
                check_file(reader, chunks, &path, &e.inode, &mut chunks_seen, t);
            }
            _ => {}
        }
        Ok(())
    })
}

fn check_file(
    reader: &dyn Reader,
    chunks: &ChunkReader<'_>,
    path: &str,
    inode: &nydus_protocol::rafs::Inode,
    seen: &mut HashSet<(u32, u64, u32, Option<[u8; 32]>)>,
    t: &mut Tally,
) {
    let refs = match reader.chunks(inode.ino) {
        Ok(r) => r,
        Err(err) => return t.problems.push(format!("{path}: chunk list: {err}")),
    };
    let mut end = 0u64;
    // v6 has no holes (format doc §3.16): chunk k must start where k-1 ended.
    let contiguous = reader.super_info().version == FsVersion::V6;
    for (k, r) in refs.iter().enumerate() {
        if contiguous && r.file_offset != end {
            t.problems.push(format!(
                "{path}: chunk {k} starts at file offset {:#x}, expected {end:#x}",
                r.file_offset
            ));
        }
        let info = match chunks.resolve(r) {
            Ok(i) => i,
            Err(err) => {
                t.problems.push(format!(
                    "{path}: chunk {k} at file offset {:#x}: {err}",
                    r.file_offset
                ));
                continue;
            }
        };
        end = end.max(
            r.file_offset
                .saturating_add(u64::from(info.uncompressed_size)),
        );
        if info.digest.is_none() && info.crc32.is_none() {
            t.problems.push(format!(
                "{path}: chunk {k}: no digest or CRC to verify against"
            ));
        }
        if t.missing_blobs.contains(&info.blob_index) {
            continue;
        }
        if !seen.insert((
            info.blob_index,
            info.compressed_offset,
            info.compressed_size,
            info.digest,
        )) {
            continue;
        }
        t.chunks += 1;
        if let Err(err) = chunks.read_chunk(&info, true) {
            t.problems.push(format!(
                "{path}: chunk {k} at file offset {:#x}: {err}",
                r.file_offset
            ));
        }
    }
    if end > inode.size || (contiguous && end != inode.size) {
        t.problems.push(format!(
            "{path}: chunks end at {end:#x}, but the file size is {}",
            inode.size
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/rafs/mini-v5-lz4-blake3");
        assert!(dir.is_dir(), "fixture missing at {}", dir.display());
        dir
    }

    #[test]
    fn good_image_passes_and_a_flipped_blob_byte_fails() {
        let dir = fixture();
        let args = |blob_dir: PathBuf| CheckArgs {
            blob_dir,
            bootstrap: dir.join("bootstrap"),
        };
        assert_eq!(run(args(dir.join("blobs"))), Ok(()));

        let tmp = tempfile::tempdir().expect("tempdir");
        for e in std::fs::read_dir(dir.join("blobs")).expect("blobs") {
            let p = e.expect("entry").path();
            let mut bytes = std::fs::read(&p).expect("read blob");
            if let Some(b) = bytes.get_mut(5000) {
                *b ^= 0x55;
            }
            let name = p.file_name().expect("name");
            std::fs::write(tmp.path().join(name), bytes).expect("write blob");
        }
        let err = run(args(tmp.path().to_path_buf())).expect_err("must fail");
        assert!(err.ends_with("1 problems"), "{err}");
    }
}
