//! Many threads, random ranges, every cache mode: bytes are always right and
//! every chunk is fetched at most once per cache.

use super::*;

#[test]
fn random_concurrent_reads_are_exact() {
    let img = image(content(50 * 0x1000 + 123), 0x1000);
    let chunks = img.refs.len();
    for (i, compressed) in [(0, Some(false)), (1, Some(true)), (2, None)] {
        let t = tempfile::tempdir().unwrap();
        let be = backend(&img);
        let cache = match compressed {
            Some(c) => blobcache(t.path(), c),
            None => CacheMode::Dummycache,
        };
        let dev = device(&img, &be, cache, 0x3000);
        std::thread::scope(|s| {
            for seed in 0..8u64 {
                let (dev, img) = (&dev, &img);
                s.spawn(move || {
                    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..200 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let off = (x % (img.content.len() as u64 + 100)) as usize;
                        let len = ((x >> 32) % 0x3000) as usize + 1;
                        let end = (off + len).min(img.content.len()).max(off);
                        let want = img.content.get(off..end).unwrap_or(&[]);
                        assert_eq!(read(dev, img, off as u64, len).unwrap(), want);
                    }
                });
            }
        });
        if compressed.is_some() {
            let m = dev.blobcache_metrics();
            assert!(m.entries_count as usize <= chunks, "case {i}: {m:?}");
            assert!(calls(&be) <= chunks, "case {i}: each chunk fetched once");
        }
    }
}
