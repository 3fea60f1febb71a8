//! Prefetch against a real object store (S3 API, `object-store-server`)
//! behind an nginx reverse proxy whose access log records every backend
//! request with its Range, in order:
//! - readahead: a mount records its start-up reads; a later mount of the
//!   same image with an emptied cache prefetches exactly those chunks,
//!   before anything else; the cache then survives a daemon restart;
//! - `bandwidth_rate` is a real limit, and user reads still go first;
//! - the image's prefetch table fetches the listed files and no others.

//! - a stop inside the readahead window keeps the log; dummycache warns.

mod prefetch_support;

use std::time::{Duration, Instant};

use prefetch_support::*;
use serde_json::json;

#[test]
fn readahead_log_prefetches_startup_reads_first_and_cache_survives_restart() {
    let rig = Rig::new(24, 3 * CHUNK, &[]);
    let (store, img, proxy) = (&rig.store, &rig.img, &rig.proxy);
    let cache = &rig.cache;
    let wanted = ["f03", "f11", "f17"];
    let file = |n: &str| &img.files.iter().find(|f| f.0 == n).expect("file").1;
    let readahead = json!({"readahead": true, "readahead_sec": 4});

    // 1. Record: read three files in the window, chunk by chunk
    //    (amplify_io 0), so the backend log names exactly their chunks.
    let d = rig.mount("m1", true, readahead.clone(), json!({"amplify_io": 0}));
    for n in wanted {
        check_read(&d, n, file(n));
    }
    wait_log(&d, "readahead: recorded 9 chunks", 10);
    drop(d);
    let startup = proxy.ranges();
    let b1 = union(&startup);
    assert_eq!(total(&b1), 9 * CHUNK, "start-up fetched {startup:?}");

    // 2. Emptied cache, kept log, no reads and fs_prefetch off: the
    //    backend serves exactly the logged chunks, then reads are local.
    let log_file = empty_cache_keep_log(cache);
    let seen = startup.len();
    store.hook("/__reset");
    let d = rig.mount("m2", true, readahead.clone(), json!({}));
    wait_log(&d, "9 of 9 logged chunks prefetched first", 20);
    std::thread::sleep(Duration::from_millis(500));
    let second = proxy.ranges()[seen..].to_vec();
    assert_eq!(
        union(&second),
        b1,
        "prefetch fetched {second:?}, start-up read {b1:?}"
    );
    let stats = store.hook("/__stats");
    assert!(
        stats.contains(&format!("\"bytes_out\": {}", 9 * CHUNK)),
        "store stats: {stats}"
    );
    for n in wanted {
        check_read(&d, n, file(n));
    }
    assert_eq!(
        proxy.ranges().len(),
        seen + second.len(),
        "reads went to the backend"
    );
    drop(d);

    // 3. With prefetch_all as well: the logged chunks come first, whatever
    //    the other settings, then the rest of the image.
    empty_cache_keep_log(cache);
    let seen = proxy.ranges().len();
    let prefetch_all = json!({"fs_prefetch": {"enable": true, "prefetch_all": true,
        "threads_count": 4, "merging_size": 131072}});
    let d = rig.mount("m3", true, readahead.clone(), prefetch_all);
    wait_log(&d, "prefetch of / done", 30);
    let third = proxy.ranges()[seen..].to_vec();
    let first_other = third
        .iter()
        .position(|r| !covered(&b1, *r))
        .unwrap_or(third.len());
    assert_eq!(
        union(&third[..first_other]),
        b1,
        "the logged chunks were not all fetched before the others: {third:?}"
    );
    assert_eq!(total(&union(&third)), 24 * 3 * CHUNK, "{third:?}");
    drop(d);

    // 4. Restart on the full cache: readiness was persisted, nothing is
    //    fetched, every byte is right.
    let seen = proxy.ranges().len();
    let d = rig.mount("m4", true, json!({}), json!({}));
    for (n, data) in &img.files {
        check_read(&d, n, data);
    }
    assert_eq!(
        proxy.ranges().len(),
        seen,
        "a restarted daemon refetched cached chunks"
    );
    drop(d);

    // 5. A damaged access log is ignored with one warning, not an error.
    std::fs::write(&log_file, b"NYDUSACL damaged").expect("damage log");
    empty_cache_keep_log(cache);
    let d = rig.mount("m5", true, readahead, json!({}));
    let line = wait_log(&d, "readahead log", 10);
    assert!(line.contains("ignored"), "{line}");
    check_read(&d, "f00", file("f00"));
}

#[test]
fn bandwidth_rate_limits_prefetch_but_user_reads_go_first() {
    let size = 4 * CHUNK;
    let rig = Rig::new(16, size, &[]);
    let (img, proxy) = (&rig.img, &rig.proxy);
    let (rate, merging) = (1u64 << 20, 2 * CHUNK);
    let d = rig.mount(
        "m",
        true,
        json!({}),
        json!({"fs_prefetch": {"enable": true, "prefetch_all": true, "threads_count": 4,
            "merging_size": merging, "bandwidth_rate": rate}}),
    );
    std::thread::sleep(Duration::from_millis(300));
    // The last file is the last one the prefetch walk reaches.
    let (name, data) = img.files.last().expect("files");
    let t0 = Instant::now();
    check_read(&d, name, data);
    let read_ms = t0.elapsed().as_millis() as u64;
    let done = wait_log(&d, "prefetch of / done", 30);
    let prefetch_ms = millis(&done);
    // The prefetch moved everything but the file the user read.
    let prefetched = 16 * size - size;
    let floor = (prefetched - merging) * 1000 / rate;
    assert!(
        prefetch_ms >= floor,
        "prefetch of {prefetched} bytes at {rate} B/s took {prefetch_ms} ms, under {floor} ms"
    );
    assert!(
        read_ms < 1000 && read_ms * 3 < prefetch_ms,
        "user read took {read_ms} ms during a {prefetch_ms} ms prefetch"
    );
    // Every chunk was fetched once, and is now served locally.
    let ranges = proxy.ranges();
    assert_eq!(total(&union(&ranges)), 16 * size, "{ranges:?}");
    assert_eq!(ranges.iter().map(|r| r.1 - r.0).sum::<u64>(), 16 * size);
    for (n, data) in &img.files {
        check_read(&d, n, data);
    }
    assert_eq!(proxy.ranges().len(), ranges.len());
    println!("bandwidth: {prefetched} B prefetched in {prefetch_ms} ms at {rate} B/s; user read {read_ms} ms");
}

#[test]
fn prefetch_table_fetches_listed_files_only() {
    let size = 2 * CHUNK;
    let rig = Rig::new(8, size, &["/f02", "/f05"]);
    let (img, proxy) = (&rig.img, &rig.proxy);
    let d = rig.mount(
        "m",
        true,
        json!({}),
        json!({"fs_prefetch": {"enable": true, "prefetch_all": false}}),
    );
    wait_log(&d, "prefetch of / done: 2 files", 20);
    let ranges = proxy.ranges();
    assert_eq!(total(&union(&ranges)), 2 * size, "{ranges:?}");
    let file = |n: &str| &img.files.iter().find(|f| f.0 == n).expect("file").1;
    for n in ["f02", "f05"] {
        check_read(&d, n, file(n));
    }
    assert_eq!(
        proxy.ranges().len(),
        ranges.len(),
        "listed files were not ready"
    );
    check_read(&d, "f00", file("f00"));
    assert!(
        proxy.ranges().len() > ranges.len(),
        "an unlisted file was prefetched"
    );
}

#[test]
fn readahead_log_is_kept_at_an_early_stop_and_dummycache_warns() {
    let rig = Rig::new(4, 2 * CHUNK, &[]);
    let (img, proxy) = (&rig.img, &rig.proxy);
    let cache = &rig.cache;
    let readahead = json!({"readahead": true, "readahead_sec": 600});

    // SIGTERM long before the window ends: what was read is still kept.
    let mut d = rig.mount("m1", true, readahead.clone(), json!({}));
    check_read(&d, "f01", &img.files[1].1);
    d.signal(libc::SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(20)).is_some(),
        "nydusd did not stop"
    );
    let text = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(text.contains("readahead: recorded 2 chunks"), "{text}");
    drop(d);
    empty_cache_keep_log(cache);

    // The next mount prefetches them with no read at all.
    let seen = proxy.ranges().len();
    let d = rig.mount("m2", true, readahead.clone(), json!({}));
    wait_log(&d, "2 of 2 logged chunks prefetched first", 20);
    let fetched = proxy.ranges()[seen..].to_vec();
    assert_eq!(total(&union(&fetched)), 2 * CHUNK, "{fetched:?}");
    drop(d);

    // dummycache has nowhere to prefetch into: one warning, reads work.
    let d = rig.mount("m3", false, readahead, json!({}));
    let line = wait_log(&d, "nothing to prefetch into", 10);
    assert!(line.contains("readahead"), "{line}");
    check_read(&d, "f00", &img.files[0].1);
}

#[test]
fn user_read_is_not_queued_behind_prefetch_of_a_slow_backend() {
    let size = 4 * CHUNK;
    let rig = Rig::new(16, size, &[]);
    let (store, img, proxy) = (&rig.store, &rig.img, &rig.proxy);
    // Every backend answer takes 300 ms: 32 prefetch requests of 128 KiB
    // on 2 workers take about 5 s.
    let hook = store.hook("/__faults?fail_next=0&latency_ms=300");
    assert!(hook.contains(" 200"), "{hook}");
    let d = rig.mount(
        "m",
        true,
        json!({}),
        json!({"fs_prefetch": {"enable": true, "prefetch_all": true, "threads_count": 2,
            "merging_size": 2 * CHUNK}}),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (name, data) = img.files.last().expect("files");
    let t0 = Instant::now();
    check_read(&d, name, data);
    let read_ms = t0.elapsed().as_millis() as u64;
    let prefetch_ms = millis(&wait_log(&d, "prefetch of / done", 60));
    // One backend answer for the read, plus at most the prefetch requests
    // already in flight when it came: far less than the queue ahead of it.
    assert!(
        read_ms < 1500 && read_ms * 2 < prefetch_ms,
        "user read took {read_ms} ms during a {prefetch_ms} ms prefetch"
    );
    let ranges = proxy.ranges();
    assert_eq!(ranges.iter().map(|r| r.1 - r.0).sum::<u64>(), 16 * size);
    println!("slow backend: user read {read_ms} ms during a {prefetch_ms} ms prefetch");
}
