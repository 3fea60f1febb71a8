//! Read, cache, coalescing, dedup and failure cases over synthetic images.

use std::io;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use nydus_protocol::rafs::ChunkRef;

use super::*;
use crate::storage::chunk_map::ChunkMap;
use crate::storage::*;

#[test]
fn miss_then_hit_and_reuse_by_a_second_device() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(300_000), 0x10000);
    let be = backend(&img);
    let dev = device(&img, &be, blobcache(t.path(), false), 0);
    assert_eq!(read(&dev, &img, 0, 300_000).unwrap(), img.content);
    assert_eq!(calls(&be), 5, "one request per chunk without amplify_io");
    assert_eq!(
        read(&dev, &img, 1000, 200_000).unwrap(),
        img.content[1000..201_000]
    );
    assert_eq!(calls(&be), 5, "hits do not touch the backend");
    let m = dev.blobcache_metrics();
    assert_eq!((m.entries_count, m.total), (5, 2));
    assert!(m.partial_hits >= 4 && m.data_all_ready, "{m:?}");
    assert_eq!(m.underlying_files, vec![format!("{ID}.blob.data")]);
    assert_eq!(dev.backend_metrics().read_count, 5);
    drop(dev);
    let data = std::fs::read(cache::data_path(t.path(), ID)).unwrap();
    assert_eq!(&data[..0x10000], &img.content[..0x10000]);

    let be2 = backend(&img);
    let dev2 = device(&img, &be2, blobcache(t.path(), false), 0);
    assert_eq!(read(&dev2, &img, 0, 300_000).unwrap(), img.content);
    assert_eq!(calls(&be2), 0, "a restarted device reuses the ready chunks");
}

#[test]
fn chunk_boundaries_eof_and_empty_reads() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(100_000), 0x4000);
    let be = backend(&img);
    for cache in [blobcache(t.path(), false), CacheMode::Dummycache] {
        let dev = device(&img, &be, cache, 1 << 20);
        for (off, len) in [
            (0x3ff0, 0x20),
            (0x3fff, 0x8002),
            (99_990, 100),
            (5, 1),
            (0, 100_000),
        ] {
            let want = &img.content[off..(off + len).min(100_000)];
            assert_eq!(
                read(&dev, &img, off as u64, len).unwrap(),
                want,
                "{off}+{len}"
            );
        }
        assert!(read(&dev, &img, 100_000, 10).unwrap().is_empty());
        assert!(read(&dev, &img, u64::MAX, 10).unwrap().is_empty());
        assert!(read(&dev, &img, 0, 0).unwrap().is_empty());
    }
}

#[test]
fn misses_are_coalesced_up_to_amplify_io() {
    let t = tempfile::tempdir().unwrap();
    let img = image(noise(8 * 0x4000), 0x4000);
    let be = backend(&img);
    let dev = device(&img, &be, blobcache(t.path(), false), 1 << 20);
    assert_eq!(read(&dev, &img, 0, 8 * 0x4000).unwrap(), img.content);
    assert_eq!(calls(&be), 1, "eight adjacent chunks, one request");

    let be = backend(&img);
    let dev = device(&img, &be, CacheMode::Dummycache, 0);
    assert_eq!(read(&dev, &img, 0, 8 * 0x4000).unwrap(), img.content);
    assert_eq!(calls(&be), 8, "amplify_io 0: chunk by chunk");
}

#[test]
fn a_miss_reads_ahead_within_amplify_io() {
    let t = tempfile::tempdir().unwrap();
    let img = image(noise(8 * 0x4000), 0x4000);
    assert!(img.refs.iter().all(|r| !r.info.unwrap().compressed));
    let be = backend(&img);
    let dev = device(&img, &be, blobcache(t.path(), false), 1 << 20);
    assert_eq!(read(&dev, &img, 0, 10).unwrap(), img.content[..10]);
    assert_eq!(calls(&be), 1);
    assert_eq!(read(&dev, &img, 0, 8 * 0x4000).unwrap(), img.content);
    assert_eq!(calls(&be), 1, "the first miss fetched the whole file");

    // Chunk 2 is cached first, so the misses form two runs around it; with
    // amplify_io = 4 chunks, read-ahead stops at the budget.
    let t2 = tempfile::tempdir().unwrap();
    let be = backend(&img);
    let dev = device(&img, &be, blobcache(t2.path(), false), 0);
    read(&dev, &img, 2 * 0x4000, 10).unwrap();
    drop(dev);
    let dev = device(&img, &be, blobcache(t2.path(), false), 4 * 0x4000);
    let five = 5 * 0x4000;
    assert_eq!(read(&dev, &img, 0, five).unwrap(), img.content[..five]);
    assert_eq!(calls(&be), 3, "chunks 0-1 and 3-4 as two requests");
    read(&dev, &img, five as u64, 10).unwrap();
    assert_eq!(calls(&be), 4, "chunk 5 was not read ahead");
}

#[test]
fn concurrent_misses_share_one_fetch() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(0x8000), 0x8000);
    for cache in [blobcache(t.path(), false), CacheMode::Dummycache] {
        let mut be = MemBackend {
            delay: Some(Duration::from_millis(200)),
            ..Default::default()
        };
        be.blobs
            .get_mut()
            .unwrap()
            .insert(ID.into(), img.blob.clone());
        let be = Arc::new(be);
        let dev = device(&img, &be, cache, 0);
        let go = Barrier::new(8);
        std::thread::scope(|s| {
            for i in 0..8u64 {
                let (dev, img, go) = (&dev, &img, &go);
                s.spawn(move || {
                    go.wait();
                    // Half want the whole chunk: whichever thread fetches
                    // it decodes it into its own buffer and copies it out
                    // for the waiters.
                    let (off, len) = if i % 2 == 0 {
                        (0, 0x8000)
                    } else {
                        (i * 100, 3000)
                    };
                    let got = read(dev, img, off, len).unwrap();
                    assert_eq!(got, img.content[off as usize..][..len]);
                });
            }
        });
        assert_eq!(calls(&be), 1, "8 readers, 1 fetch");
        assert_eq!(dev.inflight.len(), 0);
    }
}

#[test]
fn corrupt_chunk_is_eio_not_cached_and_retried() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(3 * 0x4000), 0x4000);
    let be = backend(&img);
    let victim = img.refs[1].info.unwrap().compressed_offset as usize + 5;
    be.blobs.lock().unwrap().get_mut(ID).unwrap()[victim] ^= 0x55;
    let events = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = events.clone();
    let dev = device(&img, &be, blobcache(t.path(), false), 1 << 20)
        .with_failure_hook(Arc::new(move |m: &str| sink.lock().unwrap().push(m.into())));
    for _ in 0..2 {
        let e = read(&dev, &img, 0, 3 * 0x4000).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
    }
    assert_eq!(dev.blobcache_metrics().chunk_errors, 2);
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    let at = img.refs[1].info.unwrap().compressed_offset;
    assert!(
        events[0].contains(ID) && events[0].contains(&format!("{at:#x}")),
        "{events:?}"
    );
    let map = ChunkMap::open(&t.path().join(format!("{ID}.blob.data.chunk_map")), 3).unwrap();
    assert!(map.is_ready(0) && !map.is_ready(1) && map.is_ready(2));
    // Good neighbours were cached; the bad chunk is fetched again and, once
    // the blob is repaired, served.
    be.blobs.lock().unwrap().get_mut(ID).unwrap()[victim] ^= 0x55;
    let before = calls(&be);
    assert_eq!(read(&dev, &img, 0, 3 * 0x4000).unwrap(), img.content);
    assert_eq!(calls(&be), before + 1);
}

#[test]
fn wrong_digest_or_crc_is_eio() {
    let img = image(content(0x4000), 0x4000);
    let be = backend(&img);
    for bad in [0, 1] {
        let mut img2 = image(content(0x4000), 0x4000);
        let info = img2.refs[0].info.as_mut().unwrap();
        if bad == 0 {
            info.digest = Some([7; 32]);
        } else {
            info.crc32 = info.crc32.map(|c| !c);
        }
        let dev = device(&img2, &be, CacheMode::Dummycache, 0);
        assert_eq!(
            read(&dev, &img2, 0, 10).unwrap_err().raw_os_error(),
            Some(libc::EIO)
        );
    }
    assert_eq!(
        read(&device(&img, &be, CacheMode::Dummycache, 0), &img, 0, 3).unwrap(),
        img.content[..3]
    );
}

#[test]
fn compressed_cache_keeps_stored_bytes() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(200_000), 0x10000);
    let be = backend(&img);
    let dev = device(&img, &be, blobcache(t.path(), true), 0);
    assert_eq!(read(&dev, &img, 0, 200_000).unwrap(), img.content);
    let raw = std::fs::read(t.path().join(format!("{ID}.blob.raw"))).unwrap();
    assert_eq!(raw, img.blob);
    let be2 = backend(&img);
    let dev2 = device(&img, &be2, blobcache(t.path(), true), 0);
    assert_eq!(
        read(&dev2, &img, 70_000, 100_000).unwrap(),
        img.content[70_000..170_000]
    );
    assert_eq!(calls(&be2), 0);
}

#[test]
fn prefetch_fills_the_cache() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(4 * 0x4000), 0x4000);
    let be = backend(&img);
    let dev = device(&img, &be, blobcache(t.path(), false), 1 << 20);
    dev.prefetch(&img.refs).unwrap();
    assert_eq!(calls(&be), 1);
    dev.prefetch(&img.refs).unwrap();
    assert_eq!(read(&dev, &img, 0, 4 * 0x4000).unwrap(), img.content);
    assert_eq!(calls(&be), 1);
    let m = dev.blobcache_metrics();
    assert_eq!(
        (m.prefetch_requests_count, m.prefetch_unmerged_chunks),
        (1, 4)
    );
    let dummy = device(&img, &be, CacheMode::Dummycache, 0);
    assert_eq!(
        dummy.prefetch(&img.refs).unwrap_err().kind(),
        io::ErrorKind::Unsupported
    );
}

#[test]
fn prefetch_requests_stay_within_the_limit_and_the_gate_can_stop_them() {
    let t = tempfile::tempdir().unwrap();
    let img = image(noise(8 * 0x4000), 0x4000);
    let be = backend(&img);
    let dev = device(&img, &be, blobcache(t.path(), false), 1 << 20);
    // 2 chunks per request; the gate sees each request's bytes and stops
    // after the second one.
    let mut asked = Vec::new();
    let mut gate = |bytes: u64| {
        asked.push(bytes);
        asked.len() <= 2
    };
    dev.prefetch_with(&img.refs, 2 * 0x4000, &mut gate).unwrap();
    assert_eq!(calls(&be), 2);
    assert!(asked[..2].iter().all(|&b| b <= 2 * 0x4000), "{asked:?}");
    assert!(!dev.demand_pending());
    // The rest comes with the next call; ready chunks are not asked again.
    dev.prefetch_with(&img.refs, 2 * 0x4000, &mut |_| true)
        .unwrap();
    assert_eq!(calls(&be), 4);
    assert_eq!(read(&dev, &img, 0, 8 * 0x4000).unwrap(), img.content);
    assert_eq!(calls(&be), 4);
}

#[test]
fn crafted_references_fail_cleanly_and_holes_read_zero() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(3 * 0x4000), 0x4000);
    let be = backend(&img);
    let dev = device(&img, &be, blobcache(t.path(), false), 1 << 20);
    let size = img.content.len() as u64;
    let mut buf = vec![0u8; 100];
    let bad = |f: &dyn Fn(&mut ChunkRef)| {
        let mut refs = img.refs.clone();
        f(&mut refs[0]);
        dev.read(&refs, img.chunk_size, size, 0, &mut buf.clone())
            .unwrap_err()
            .raw_os_error()
    };
    assert_eq!(bad(&|r| r.blob_index = 9), Some(libc::EIO));
    assert_eq!(
        bad(&|r| r.info = None),
        Some(libc::EIO),
        "no ci table to resolve from"
    );
    assert_eq!(
        bad(&|r| r.info.as_mut().unwrap().chunk_index = 99),
        Some(libc::EIO)
    );
    assert_eq!(
        bad(&|r| r.info.as_mut().unwrap().uncompressed_size = 0),
        Some(libc::EIO)
    );
    assert_eq!(
        bad(&|r| r.info.as_mut().unwrap().compressed_offset = u64::MAX),
        Some(libc::EIO)
    );
    // A descriptor whose cache extent is impossible is served, not cached.
    let mut refs = img.refs.clone();
    refs[0].info.as_mut().unwrap().uncompressed_offset = 1 << 40;
    dev.read(&refs, img.chunk_size, size, 0, &mut buf).unwrap();
    assert_eq!(&buf[..], &img.content[..100]);
    assert_eq!(dev.blobcache_metrics().cache_write_errors, 1);
    // A file whose middle chunk is missing (v5 HAS_HOLE) reads zeros there.
    let holed: Vec<ChunkRef> = [img.refs[0], img.refs[2]].into();
    let n = dev
        .read(&holed, img.chunk_size, size, 0x3fc0, &mut buf)
        .unwrap();
    assert_eq!(n, 100);
    assert_eq!(&buf[..0x40], &img.content[0x3fc0..0x4000]);
    assert!(buf[0x40..].iter().all(|&b| b == 0));
    let mut mid = vec![1u8; 0x100];
    dev.read(&holed, img.chunk_size, size, 0x5000, &mut mid)
        .unwrap();
    assert!(mid.iter().all(|&b| b == 0));
}

#[test]
fn whole_and_repeated_chunks_in_one_read() {
    // Chunks 0 and 1 compress, 2 and 3 are stored raw; the file repeats
    // chunks (deduplicated data), so one read wants some chunk twice.
    let mut data = content(2 * 0x4000);
    data.extend(noise(2 * 0x4000));
    let img = image(data, 0x4000);
    let order = [0usize, 2, 0, 3, 1, 2];
    let refs: Vec<ChunkRef> = order
        .iter()
        .enumerate()
        .map(|(k, &c)| ChunkRef {
            file_offset: k as u64 * 0x4000,
            ..img.refs[c]
        })
        .collect();
    let want: Vec<u8> = order
        .iter()
        .flat_map(|&c| img.content[c * 0x4000..][..0x4000].to_vec())
        .collect();
    let size = want.len() as u64;
    for cache in [
        CacheMode::Dummycache,
        blobcache(tempfile::tempdir().unwrap().path(), false),
    ] {
        for (off, len) in [(0, want.len()), (0x2000, 0x10000), (0x4000, 0x8001)] {
            let be = backend(&img);
            let dev = device(&img, &be, cache.clone(), 1 << 20);
            let mut buf = vec![0xAAu8; len];
            let n = dev
                .read(&refs, img.chunk_size, size, off as u64, &mut buf)
                .unwrap();
            assert_eq!(n, len);
            assert!(buf == want[off..off + len], "{off}+{len}");
        }
    }
}

/// Reads into memory a VM guest can change (virtio-fs) never use it as a
/// chunk's working buffer: what reaches the cache was verified in ours.
/// Without the option, a stored-raw chunk wanted whole is read in place.
#[test]
fn shared_reply_memory_is_never_a_working_buffer() {
    let t = tempfile::tempdir().unwrap();
    let mut bytes = noise(0x8000);
    bytes.extend(content(0x8000));
    let img = image(bytes, 0x4000);
    assert!(!img.refs[0].info.unwrap().compressed && img.refs[3].info.unwrap().compressed);
    for shared in [false, true] {
        let be = backend(&img);
        let cache = blobcache(&t.path().join(format!("cache-{shared}")), false);
        let dev = device_with(&img, &be, cache, 0, shared);
        let mut buf = vec![0u8; img.content.len()];
        let n = dev
            .read(&img.refs, img.chunk_size, buf.len() as u64, 0, &mut buf)
            .unwrap();
        assert!(buf[..n] == img.content[..], "shared={shared}");
        assert_eq!(be.read_into(&buf), !shared, "shared={shared}");
        // The cache holds every chunk, verified.
        let mut again = vec![0u8; img.content.len()];
        dev.read(&img.refs, img.chunk_size, again.len() as u64, 0, &mut again)
            .unwrap();
        assert!(again == img.content && calls(&be) == 4, "shared={shared}");
    }
}

#[test]
fn localfs_backend_end_to_end() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(50_000), 0x4000);
    let blobs = t.path().join("blobs");
    std::fs::create_dir(&blobs).unwrap();
    std::fs::write(blobs.join(ID), &img.blob).unwrap();
    let lfs = Arc::new(LocalFs::new(Some(t.path().join("nowhere")), None, vec![blobs]).unwrap());
    let config = StorageConfig {
        backend: lfs,
        cache: blobcache(&t.path().join("cache"), false),
        digest_validate: false,
        amplify_io: 1 << 20,
        shared_reply_memory: false,
    };
    let dev = BlobDevice::new(std::slice::from_ref(&img.info), None, config).unwrap();
    // A local read saves no round trip by reading past what was asked.
    let mut head = [0u8; 10];
    dev.read(&img.refs, img.chunk_size, 50_000, 0, &mut head)
        .unwrap();
    dev.read(&img.refs, img.chunk_size, 50_000, 0x4000, &mut head)
        .unwrap();
    assert_eq!(
        dev.backend_metrics().read_count,
        2,
        "no read-ahead from localfs"
    );
    let mut buf = vec![0u8; 60_000];
    let n = dev
        .read(&img.refs, img.chunk_size, 50_000, 0, &mut buf)
        .unwrap();
    assert_eq!(&buf[..n], &img.content[..]);
    assert_eq!(dev.backend_metrics().backend_type, "localfs");
}

#[test]
fn with_validation_a_torn_cache_file_is_caught_and_refetched() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(3 * 0x4000), 0x4000);
    let be = backend(&img);
    let dev = device(&img, &be, blobcache(t.path(), false), 0);
    assert_eq!(read(&dev, &img, 0, 3 * 0x4000).unwrap(), img.content);
    drop(dev);
    // As after a power loss: chunk 1's bit survived, its data did not.
    let path = cache::data_path(t.path(), ID);
    let mut data = std::fs::read(&path).unwrap();
    data[0x4000..0x8000].fill(0);
    std::fs::write(&path, data).unwrap();

    let be2 = backend(&img);
    let dev = device(&img, &be2, blobcache(t.path(), false), 0);
    assert_eq!(read(&dev, &img, 0, 3 * 0x4000).unwrap(), img.content);
    assert_eq!(calls(&be2), 1, "only the torn chunk is fetched again");
    assert_eq!(dev.blobcache_metrics().whole_hits, 2);
    assert_eq!(read(&dev, &img, 0, 3 * 0x4000).unwrap(), img.content);
    assert_eq!(calls(&be2), 1);
    assert_eq!(
        dev.blobcache_metrics().whole_hits,
        2,
        "checked once per process"
    );
}

#[test]
fn backend_failure_is_eio_counted_and_retried() {
    let t = tempfile::tempdir().unwrap();
    let img = image(content(2 * 0x4000), 0x4000);
    let be = Arc::new(MemBackend::default());
    let dev = device(&img, &be, blobcache(t.path(), false), 1 << 20);
    let e = read(&dev, &img, 0, 100).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let m = dev.backend_metrics();
    assert_eq!((m.read_count, m.read_errors), (1, 1));
    // The blob shows up (backend recovered): the next read succeeds.
    be.blobs.lock().unwrap().insert(ID.into(), img.blob.clone());
    assert_eq!(read(&dev, &img, 0, 100).unwrap(), img.content[..100]);
    // A truncated blob is a failure too, not a short chunk.
    let t2 = tempfile::tempdir().unwrap();
    let short = Arc::new(MemBackend::default());
    short
        .blobs
        .lock()
        .unwrap()
        .insert(ID.into(), img.blob[..img.blob.len() - 1].to_vec());
    let dev = device(&img, &short, blobcache(t2.path(), false), 0);
    assert!(read(&dev, &img, 0x4000, 100).is_err());
    assert_eq!(read(&dev, &img, 0, 100).unwrap(), img.content[..100]);
}

/// With room past the wanted bytes, a chunk wanted only in part is decoded
/// (or, stored raw, read) there, not in a buffer of its own; whatever the
/// room, every read returns the right bytes and caches the right chunk.
#[test]
fn a_chunk_wanted_in_part_is_decoded_in_the_spare_room() {
    let cs = 0x4000usize;
    let mut bytes = noise(2 * cs);
    bytes.extend(content(2 * cs - 0x800));
    let img = image(bytes, cs as u32);
    let size = img.content.len();
    // (offset, length, inside one raw chunk)
    let cases = [
        (0x1000, 0x800, true),
        (0x4800, 0x1000, true),
        (0x3000, 0x2000, false), // raw 0's tail, raw 1's head
        (0x7000, 0x4000, false), // raw 1's tail, compressed 2's head
        (0x9000, 0x100, false),
        (0xF000, 0x2000, false), // compressed 3's tail, past EOF
    ];
    let t = tempfile::tempdir().unwrap();
    for (k, (spare, cached)) in [(0, false), (cs, false), (0, true), (cs, true)]
        .into_iter()
        .enumerate()
    {
        for (j, (off, len, one_raw)) in cases.into_iter().enumerate() {
            let what = format!("spare {spare:#x} blobcache {cached} read {off:#x}+{len:#x}");
            let be = backend(&img);
            let mode = if cached {
                blobcache(&t.path().join(format!("c{k}-{j}")), false)
            } else {
                CacheMode::Dummycache
            };
            let dev = device(&img, &be, mode, 0);
            let mut room = vec![0xAAu8; len + spare];
            let n = dev
                .read_in(&img.refs, img.chunk_size, size as u64, off, &mut room, len)
                .unwrap();
            let off = off as usize;
            assert_eq!(n, len.min(size - off), "{what}");
            assert!(room[..n] == img.content[off..off + n], "{what}");
            if one_raw {
                assert_eq!(be.read_into(&room), spare > 0, "{what}: read in the room");
            }
            if cached {
                // What was stored is the chunk, whole and right.
                let before = calls(&be);
                let whole = read(&dev, &img, 0, size).unwrap();
                assert!(whole == img.content, "{what}: cached chunks");
                let first = off / cs;
                let last = (off + n - 1) / cs;
                let fetched = calls(&be) - before;
                assert_eq!(
                    fetched,
                    4 - (last - first + 1),
                    "{what}: only the rest fetched"
                );
            }
        }
    }
}
