//! Corrupted copies of every fixture bootstrap never panic or hang: open,
//! a full walk, every symlink, xattr list and file read either succeed or
//! return an error, and every error is one line.
//!
//! Variants per fixture: truncations at many lengths, a byte flip and an
//! 8-byte 0xff fill at the start, end and inside of every on-disk structure
//! (sampled), and random single-byte changes from a fixed-seed PRNG.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nydus_protocol::rafs::file::{BlobSource, ChunkReader};
use nydus_protocol::rafs::walk::{walk, Entry};
use nydus_protocol::rafs::{
    detect, dump, open, v5, v6, ChunkInfo, Detected, FileKind, RafsError, Result,
};

fn fixtures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rafs");
    assert!(
        dir.is_dir(),
        "fixtures missing: expected them at {}",
        dir.display()
    );
    dir
}

/// (image dir, bootstrap bytes, bootstrap file name) of every fixture.
fn images() -> Vec<(PathBuf, Vec<u8>, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures_dir()).expect("read fixtures dir") {
        let dir = entry.expect("dir entry").path();
        let Ok(text) = std::fs::read_to_string(dir.join("meta.json")) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).expect("parse meta.json");
        let name = v["bootstrap"]
            .as_str()
            .expect("meta.json: bootstrap")
            .to_string();
        let bytes = std::fs::read(dir.join(&name)).expect("read bootstrap");
        out.push((dir, bytes, name));
    }
    out.sort();
    out
}

/// The fixture's blobs, held in memory so hundreds of variants stay fast.
struct MemBlobs(HashMap<String, Vec<u8>>);

impl MemBlobs {
    fn load(dir: &Path) -> Self {
        let mut blobs = HashMap::new();
        for e in std::fs::read_dir(dir.join("blobs")).expect("blobs dir") {
            let p = e.expect("blob entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            blobs.insert(name, std::fs::read(&p).expect("read blob"));
        }
        MemBlobs(blobs)
    }
}

impl BlobSource for MemBlobs {
    fn read_at(&self, blob_id: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let blob = self
            .0
            .get(blob_id)
            .ok_or_else(|| RafsError::NotFound(blob_id.into()))?;
        let start = usize::try_from(offset).map_err(|_| RafsError::Io("offset".into()))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| blob.get(start..end))
            .ok_or_else(|| RafsError::Io(format!("{blob_id}: short read at {offset:#x}")))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// SplitMix64: a fixed-seed PRNG, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn structures(bytes: &[u8]) -> Vec<dump::Item> {
    match detect(bytes) {
        Detected::V5 => v5::structures(bytes).expect("v5 structures of a valid fixture"),
        Detected::V6 => v6::structures(bytes).expect("v6 structures of a valid fixture"),
        Detected::Other => Vec::new(),
    }
}

/// The corrupted variants of `orig`, with a label each.
fn variants(orig: &[u8], seed: u64) -> Vec<(String, Vec<u8>)> {
    let len = orig.len();
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = vec![
        0, 1, 7, 8, 64, 1024, 1152, 1408, 4095, 4096, 8191, 8192, 8193,
    ];
    cuts.extend((1..30).map(|i| len * i / 30));
    cuts.extend((0..20).map(|_| rng.below(len)));
    cuts.extend([len.saturating_sub(1), len.saturating_sub(8)]);
    for cut in cuts.into_iter().filter(|&c| c < len) {
        out.push((format!("truncate to {cut}"), orig[..cut].to_vec()));
    }
    let items = structures(orig);
    let step = (items.len() / 40).max(1);
    for item in items.iter().step_by(step) {
        let size = usize::try_from(item.size).unwrap_or(0).max(1);
        let start = usize::try_from(item.offset).unwrap_or(0);
        for pos in [start, start + size - 1, start + rng.below(size)] {
            if pos >= len {
                continue;
            }
            let mut flip = orig.to_vec();
            flip[pos] ^= 0xff;
            out.push((format!("flip {pos:#x} ({})", item.name), flip));
        }
        let mut fill = orig.to_vec();
        let end = (start + 8).min(len);
        if start < end {
            fill[start..end].fill(0xff);
            out.push((format!("0xff-fill {start:#x} ({})", item.name), fill));
        }
    }
    for _ in 0..80 {
        let pos = rng.below(len);
        let mut v = orig.to_vec();
        v[pos] = (rng.next() & 0xff) as u8;
        out.push((format!("random byte at {pos:#x}"), v));
    }
    out
}

/// Everything that decides what `read_chunk` does with a descriptor.
type ChunkKey = (
    u32,
    u64,
    u32,
    u32,
    bool,
    bool,
    bool,
    Option<[u8; 32]>,
    Option<u32>,
);

fn key(i: &ChunkInfo) -> ChunkKey {
    (
        i.blob_index,
        i.compressed_offset,
        i.compressed_size,
        i.uncompressed_size,
        i.compressed,
        i.encrypted,
        i.batch,
        i.digest,
        i.crc32,
    )
}

/// Everything a mount or `image check` would do with the image.
fn exercise(
    deep: bool,
    bytes: Vec<u8>,
    name: &str,
    blobs: &MemBlobs,
    good_chunks: &Mutex<HashSet<ChunkKey>>,
) -> Result<()> {
    // The inspect dump and the v5 digest check must survive it too (slow:
    // only on some variants).
    match if deep {
        detect(&bytes)
    } else {
        Detected::Other
    } {
        Detected::V5 => {
            let _ = v5::structures(&bytes);
            if let Ok(r) = v5::V5Reader::open(Arc::new(bytes.clone())) {
                let _ = r.verify_inode_digests();
            }
        }
        Detected::V6 => {
            let _ = v6::structures(&bytes);
        }
        Detected::Other => {}
    }
    let image = open(Arc::new(bytes), Some(name))?;
    let reader = image.reader.as_ref();
    let chunks = ChunkReader::new(reader, blobs, image.meta_file_stem.clone());
    let mut first_err = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    };
    let walked = walk(reader, &mut |e: &Entry<'_>| {
        let ino = e.inode.ino;
        keep(reader.xattrs(ino).map(drop));
        match e.inode.kind() {
            Some(FileKind::Symlink) => keep(reader.readlink(ino).map(drop)),
            Some(FileKind::Regular) => {
                for r in reader.chunks(ino)? {
                    let info = chunks.resolve(&r)?;
                    // Reading a descriptor is deterministic: skip ones already read fine.
                    if good_chunks
                        .lock()
                        .map(|g| g.contains(&key(&info)))
                        .unwrap_or(false)
                    {
                        continue;
                    }
                    chunks.read_chunk(&info, true)?;
                    if let Ok(mut g) = good_chunks.lock() {
                        g.insert(key(&info));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    });
    keep(walked);
    keep(reader.prefetch_inodes().map(drop));
    first_err.map_or(Ok(()), Err)
}

#[test]
fn corrupted_bootstraps_fail_cleanly() {
    let started = Instant::now();
    let mut total = 0;
    for (seed, (dir, orig, name)) in images().into_iter().enumerate() {
        let t0 = Instant::now();
        let blobs = MemBlobs::load(&dir);
        let good = Mutex::new(HashSet::new());
        exercise(true, orig.clone(), &name, &blobs, &good)
            .unwrap_or_else(|e| panic!("{}: the uncorrupted image fails: {e}", dir.display()));
        let (mut ok, mut failed) = (0, 0);
        for (i, (label, bytes)) in variants(&orig, 0x5eed_0000 + seed as u64)
            .into_iter()
            .enumerate()
        {
            match exercise(i % 8 == 0, bytes, &name, &blobs, &good) {
                Ok(()) => ok += 1,
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        !msg.is_empty() && !msg.contains('\n'),
                        "{} {label}: error is not one line: {msg:?}",
                        dir.display()
                    );
                    failed += 1;
                }
            }
        }
        eprintln!(
            "{}: {ok} variants still valid, {failed} rejected, {:?}",
            dir.display(),
            t0.elapsed()
        );
        total += ok + failed;
    }
    assert!(total > 1200, "only {total} variants");
    eprintln!("{total} variants in {:?}", started.elapsed());
}
