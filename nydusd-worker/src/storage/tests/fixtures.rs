//! BlobDevice over the shared upstream-built fixture images, checked
//! against the protocol crate's own (uncached) chunk reader.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nydus_protocol::rafs::file::{ChunkReader, DirBlobSource};
use nydus_protocol::rafs::walk::walk;
use nydus_protocol::rafs::{FileKind, Reader};

use crate::storage::*;

const FIXTURES: &str = "/work/shared/fixtures/rafs";

/// LocalFs that counts requests.
struct Counting(LocalFs, AtomicUsize);

impl Backend for Counting {
    fn read_at(&self, id: &str, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.read_at(id, off, buf)
    }
    fn blob_size(&self, id: &str) -> io::Result<u64> {
        self.0.blob_size(id)
    }
    fn kind(&self) -> &'static str {
        "localfs"
    }
}

fn device(
    image: &Path,
    stem: Option<&str>,
    reader: &dyn Reader,
    work: &Path,
) -> (BlobDevice, Arc<Counting>) {
    let lfs = LocalFs::new(Some(image.join("blobs")), None, vec![]).unwrap();
    let be = Arc::new(Counting(lfs, AtomicUsize::new(0)));
    let config = StorageConfig {
        backend: be.clone(),
        cache: CacheMode::Blobcache {
            work_dir: work.to_path_buf(),
            compressed: false,
        },
        digest_validate: true,
        amplify_io: 1 << 20,
        shared_reply_memory: false,
    };
    (BlobDevice::new(reader.blobs(), stem, config).unwrap(), be)
}

/// Every regular file of `reader`, read through `dev` in 128 KiB requests
/// (unaligned start, so requests straddle chunks), must equal `want`.
fn check_all(
    reader: &dyn Reader,
    dev: &BlobDevice,
    want: &dyn Fn(u64) -> Vec<u8>,
    ci_only: bool,
) -> usize {
    let chunk_size = reader.super_info().chunk_size;
    let mut files = 0;
    walk(reader, &mut |e| {
        if e.inode.kind() != Some(FileKind::Regular) {
            return Ok(());
        }
        files += 1;
        let mut chunks = reader.chunks(e.inode.ino)?;
        if ci_only {
            // Make the device resolve every chunk through the blob ci table.
            chunks.iter_mut().for_each(|c| c.info = None);
        }
        let size = e.inode.size;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 128 << 10];
        let mut off = 0u64;
        loop {
            let first = if off == 0 { 1000 } else { buf.len() };
            let n = dev
                .read(&chunks, chunk_size, size, off, &mut buf[..first])
                .unwrap_or_else(|err| panic!("{}: {err}", String::from_utf8_lossy(e.path)));
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            off += n as u64;
        }
        assert!(
            got == want(e.inode.ino),
            "{}",
            String::from_utf8_lossy(e.path)
        );
        Ok(())
    })
    .unwrap();
    files
}

#[test]
fn fixture_images_read_identically_and_restart_from_cache() {
    let Ok(dirs) = std::fs::read_dir(FIXTURES) else {
        eprintln!("no fixtures at {FIXTURES}; skipping");
        return;
    };
    let mut checked = 0;
    for image in dirs
        .flatten()
        .map(|d| d.path())
        .filter(|p| p.join("bootstrap").is_file())
    {
        let boot = image.join("bootstrap");
        let opened = match nydus_protocol::rafs::open_file(&boot) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("skipping {}: {e}", image.display());
                continue;
            }
        };
        let reader = opened.reader.as_ref();
        let stem = opened.meta_file_stem.as_deref();
        let source = DirBlobSource::new(image.join("blobs"));
        let plain = ChunkReader::new(reader, &source, opened.meta_file_stem.clone());
        let want = |ino| plain.read_file(ino, false).unwrap();
        let work = tempfile::tempdir().unwrap();

        let (dev, be) = device(&image, stem, reader, work.path());
        let files = check_all(reader, &dev, &want, false);
        assert!(
            files > 0 && be.1.load(Ordering::SeqCst) > 0,
            "{}",
            image.display()
        );
        drop(dev);

        // A successor over the same work_dir fetches no chunk again (it may
        // reload v6 ci tables: one request each, plus a digest array).
        let (dev2, be2) = device(&image, stem, reader, work.path());
        check_all(reader, &dev2, &want, false);
        let ci_loads = reader.blobs().iter().filter(|b| b.meta.is_some()).count() * 2;
        let again = be2.1.load(Ordering::SeqCst);
        assert!(
            again <= ci_loads,
            "{}: {again} backend reads",
            image.display()
        );
        assert_eq!(dev2.blobcache_metrics().entries_count, 0);

        // v6: chunk descriptors from the blobs' ci tables instead of the
        // bootstrap give the same bytes.
        if reader.blobs().iter().all(|b| b.meta.is_some()) {
            let work = tempfile::tempdir().unwrap();
            let (dev3, _) = device(&image, stem, reader, work.path());
            check_all(reader, &dev3, &want, true);
        }
        checked += 1;
    }
    eprintln!("checked {checked} fixture images");
}
