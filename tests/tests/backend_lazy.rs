//! Lazy loading over a network backend (issue 4): a 1 GiB image of
//! incompressible data served by `object-store-server` (S3). Reading one
//! 4 KiB file fetches at most one `amplify_io` window plus the blob's
//! chunk table (sized from the blob itself); a cold read of a 64 MiB file
//! fetches it once, not twice. Bytes are counted by the server
//! (`/__stats` `bytes_out`), with blobcache and with dummycache.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nydus_e2e::secrets::Exposed;
use nydus_e2e::servers::{mount_image, run_timeout, ObjectStore};
use serde_json::json;

const AK: &str = "lazy-access-key";
const SK: &str = "lazy-SECRET-key-never-shown";
const BUCKET: &str = "lazy";
const PREFIX: &str = "blobs/";
const REGION: &str = "us-test-1";
const MIB: u64 = 1 << 20;
/// Set explicitly in the config: the bound of the 4 KiB read.
const AMPLIFY_IO: u64 = MIB;
const BIG: u64 = 64 * MIB;
const SMALL: u64 = 4096;
/// 15 fillers + the 64 MiB file: 1 GiB of data.
const FILLERS: usize = 15;

struct Image {
    bootstrap: PathBuf,
    blob_dir: PathBuf,
    /// Copies of the two files read through the mount.
    small: PathBuf,
    big: PathBuf,
    /// What the first read of a blob fetches besides data: its stored ci
    /// table and ci header, as `nydusctl image inspect` reports them.
    meta_bytes: u64,
}

/// `size` bytes from /dev/urandom: nothing to compress or deduplicate.
fn write_random(urandom: &mut File, path: &Path, size: u64) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0u8; (4 * MIB).min(size) as usize];
    let mut left = size;
    while left > 0 {
        let n = buf.len().min(left as usize);
        urandom
            .read_exact(&mut buf[..n])
            .expect("read /dev/urandom");
        f.write_all(&buf[..n]).expect("write source file");
        left -= n as u64;
    }
}

fn build_image(root: &Path) -> Image {
    let src = root.join("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    let mut urandom = File::open("/dev/urandom").expect("open /dev/urandom");
    // Names sort the small file between the big ones in the blob.
    for i in 0..FILLERS {
        write_random(&mut urandom, &src.join(format!("fill-{i:02}")), BIG);
    }
    write_random(&mut urandom, &src.join("big-64m"), BIG);
    write_random(&mut urandom, &src.join("f-small-4k"), SMALL);
    let (bootstrap, blob_dir) = (root.join("bootstrap"), root.join("blobs"));
    let t = Instant::now();
    let out = run_timeout(
        Command::new(nydus_e2e::nydusctl_bin())
            .args(["image", "create", "-B"])
            .arg(&bootstrap)
            .arg("-D")
            .arg(&blob_dir)
            .arg(&src),
        300,
    );
    assert!(
        out.status.success(),
        "nydusctl image create failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("image create: {:?}", t.elapsed());
    // Keep only what the test compares; the rest is a GiB of disk.
    let keep = root.join("keep");
    std::fs::create_dir_all(&keep).expect("mkdir keep");
    let (small, big) = (keep.join("small"), keep.join("big"));
    std::fs::rename(src.join("f-small-4k"), &small).expect("keep small");
    std::fs::rename(src.join("big-64m"), &big).expect("keep big");
    std::fs::remove_dir_all(&src).expect("remove the source tree");
    let meta_bytes = meta_bytes(&bootstrap, &blob_dir);
    Image {
        bootstrap,
        blob_dir,
        small,
        big,
        meta_bytes,
    }
}

/// Sizes of the "ci table (stored)" and "ci header" items of every blob.
fn meta_bytes(bootstrap: &Path, blob_dir: &Path) -> u64 {
    let out = run_timeout(
        Command::new(nydus_e2e::nydusctl_bin())
            .args(["image", "inspect", "--json", "--blob-dir"])
            .arg(blob_dir)
            .arg(bootstrap),
        120,
    );
    assert!(out.status.success(), "nydusctl image inspect failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    let blobs = v["blobs"].as_array().expect("inspect lists the blobs");
    assert_eq!(blobs.len(), 1, "one data blob expected");
    let sum: u64 = blobs
        .iter()
        .flat_map(|b| b["items"].as_array().cloned().unwrap_or_default())
        .filter(|i| matches!(i["name"].as_str(), Some("ci table (stored)" | "ci header")))
        .map(|i| i["size"].as_u64().unwrap_or(0))
        .sum();
    assert!(sum > 0, "the blob has no ci table: {}", blobs[0]);
    sum
}

fn s3_config(store: &ObjectStore) -> serde_json::Value {
    json!({
        "scheme": "http",
        "endpoint": format!("127.0.0.1:{}", store.port),
        "region": REGION,
        "bucket_name": BUCKET,
        "object_prefix": PREFIX,
        "access_key_id": AK,
        "access_key_secret": SK,
        "timeout": 30,
        "connect_timeout": 5,
    })
}

/// `/__stats` since the last reset: (bytes out, object GETs).
fn stats(store: &ObjectStore) -> (u64, u64) {
    let text = store.hook("/__stats");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(body).expect("stats JSON");
    let gets = v["object_gets"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|n| n.as_u64()).sum());
    (v["bytes_out"].as_u64().expect("bytes_out"), gets)
}

fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .expect("echo 3 > /proc/sys/vm/drop_caches (the test runs as root)");
}

fn same_bytes(path: &Path, want: &Path) {
    let t = Instant::now();
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    eprintln!(
        "read {} ({} bytes): {:?}",
        path.display(),
        got.len(),
        t.elapsed()
    );
    let want = std::fs::read(want).expect("read the kept copy");
    assert!(got == want, "{} differs from its source", path.display());
}

#[test]
fn one_small_file_fetches_one_window_and_a_big_file_once() {
    let began = Instant::now();
    let t = tempfile::tempdir().expect("tempdir");
    let img = build_image(t.path());
    let store = ObjectStore::start(&t.path().join("store"), AK, SK, REGION);
    store.put_dir(BUCKET, PREFIX, &img.blob_dir);
    let mut exposed = Exposed::new();
    let mut figures = Vec::new();
    for cache in ["blobcache", "dummycache"] {
        let tmp = t.path().join(cache);
        let extra = json!({"amplify_io": AMPLIFY_IO});
        let d = mount_image(&img.bootstrap, "s3", s3_config(&store), cache, &tmp, extra);

        drop_caches();
        store.hook("/__reset");
        same_bytes(&d.mountpoint.join("f-small-4k"), &img.small);
        let (small_bytes, small_gets) = stats(&store);
        let bound = AMPLIFY_IO + img.meta_bytes;
        assert!(
            small_bytes <= bound,
            "{cache}: reading 4 KiB of a 1 GiB image fetched {small_bytes} bytes in \
             {small_gets} GETs; at most amplify_io {AMPLIFY_IO} + ci {} = {bound}",
            img.meta_bytes
        );
        assert!(small_gets >= 1, "{cache}: the read did not reach the store");

        drop_caches();
        store.hook("/__reset");
        same_bytes(&d.mountpoint.join("big-64m"), &img.big);
        let (big_bytes, big_gets) = stats(&store);
        assert!(
            (BIG..=BIG + AMPLIFY_IO).contains(&big_bytes),
            "{cache}: a cold read of a 64 MiB file fetched {big_bytes} bytes in {big_gets} \
             GETs; expected it once: {BIG}..={}",
            BIG + AMPLIFY_IO
        );
        figures.push(format!(
            "{cache}: 4 KiB file {small_bytes} B in {small_gets} GETs (ci {} B); \
             64 MiB file {big_bytes} B in {big_gets} GETs",
            img.meta_bytes
        ));
        exposed.daemon(cache, &d, &tmp.join("api.sock"));
    }
    exposed.assert_none(&[SK, AK]);
    eprintln!("{}\ntotal {:?}", figures.join("\n"), began.elapsed());
}
