//! The upstream nydus image layout in an OCI registry: one layer per data
//! blob (the raw blob, media type `...layer.nydus.blob.v1`), then the
//! bootstrap as a gzip'd tar holding `image/image.boot`, each marked by the
//! annotations nydus-snapshotter looks for; plus an OCI image config.
//! Everything here is deterministic, so pushing twice gives one digest.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const BLOB_TYPE: &str = "application/vnd.oci.image.layer.nydus.blob.v1";
const BOOTSTRAP_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const BLOB_ANNOTATION: &str = "containerd.io/snapshot/nydus-blob";
const BOOTSTRAP_ANNOTATION: &str = "containerd.io/snapshot/nydus-bootstrap";
const FS_VERSION_ANNOTATION: &str = "containerd.io/snapshot/nydus-fs-version";
/// Where nydus-snapshotter looks for the bootstrap inside its layer.
const BOOTSTRAP_PATH: &str = "image/image.boot";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 of a file, read in 1 MiB pieces (blobs may be large).
pub fn sha256_file(path: &Path) -> Result<(String, u64), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            return Ok((hex::encode(h.finalize()), len));
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
}

/// One ustar header block (mode 0644/0755, owner 0, mtime 0).
fn tar_header(name: &str, size: u64, kind: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], off: usize, text: &str| {
        h[off..off + text.len()].copy_from_slice(text.as_bytes());
    };
    put(&mut h, 0, name);
    put(
        &mut h,
        100,
        if kind == b'5' { "0000755" } else { "0000644" },
    );
    put(&mut h, 108, "0000000");
    put(&mut h, 116, "0000000");
    put(&mut h, 124, &format!("{size:011o}"));
    put(&mut h, 136, "00000000000");
    h[156] = kind;
    put(&mut h, 257, "ustar");
    put(&mut h, 263, "00");
    // The checksum is computed with its own field read as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    put(&mut h, 148, &format!("{sum:06o}\0 "));
    h
}

/// The bootstrap layer: (gzip'd tar, sha256 of the uncompressed tar —
/// the config's diff id).
pub fn bootstrap_layer(bootstrap: &[u8]) -> Result<(Vec<u8>, String), String> {
    let mut tar = Vec::with_capacity(bootstrap.len() + 3 * 512);
    tar.extend_from_slice(&tar_header("image/", 0, b'5'));
    tar.extend_from_slice(&tar_header(BOOTSTRAP_PATH, bootstrap.len() as u64, b'0'));
    tar.extend_from_slice(bootstrap);
    tar.resize(tar.len().next_multiple_of(512) + 1024, 0);
    let diff_id = sha256_hex(&tar);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)
        .and_then(|()| gz.finish())
        .map(|out| (out, diff_id))
        .map_err(|e| format!("compressing the bootstrap layer: {e}"))
}

/// A content descriptor in a manifest.
pub struct Descriptor {
    pub media_type: &'static str,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    pub annotations: Vec<(&'static str, String)>,
}

impl Descriptor {
    pub fn blob(hex: &str, size: u64) -> Descriptor {
        Descriptor {
            media_type: BLOB_TYPE,
            digest: format!("sha256:{hex}"),
            size,
            annotations: vec![(BLOB_ANNOTATION, "true".into())],
        }
    }

    pub fn bootstrap(gz: &[u8], fs_version: u8) -> Descriptor {
        Descriptor {
            media_type: BOOTSTRAP_TYPE,
            digest: format!("sha256:{}", sha256_hex(gz)),
            size: gz.len() as u64,
            annotations: vec![
                (BOOTSTRAP_ANNOTATION, "true".into()),
                (FS_VERSION_ANNOTATION, fs_version.to_string()),
            ],
        }
    }

    pub fn config(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: CONFIG_TYPE,
            digest: format!("sha256:{}", sha256_hex(bytes)),
            size: bytes.len() as u64,
            annotations: Vec::new(),
        }
    }

    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        });
        if !self.annotations.is_empty() {
            let a: serde_json::Map<_, _> = self
                .annotations
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(v.as_str())))
                .collect();
            v["annotations"] = a.into();
        }
        v
    }
}

/// The OCI image config: the rootfs diff ids are the layers' uncompressed
/// digests (a nydus blob is its own diff id).
pub fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("a JSON value serializes")
}

pub fn manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config.json(),
        "layers": layers.iter().map(Descriptor::json).collect::<Vec<_>>(),
    }))
    .expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_layer_holds_the_bootstrap() {
        let boot = b"RAFS bootstrap bytes".repeat(100);
        let (gz, diff_id) = bootstrap_layer(&boot).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(sha256_hex(&tar), diff_id);
        assert_eq!(tar.len() % 512, 0);
        let h = &tar[512..1024];
        assert_eq!(&h[..16], BOOTSTRAP_PATH.as_bytes());
        let size = usize::from_str_radix(std::str::from_utf8(&h[124..135]).unwrap(), 8).unwrap();
        assert_eq!(&tar[1024..1024 + size], &boot[..]);
        // The stored checksum matches the header summed with spaces there.
        let mut blank = h.to_vec();
        blank[148..156].fill(b' ');
        let sum: u32 = blank.iter().map(|b| u32::from(*b)).sum();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        assert_eq!(sum, stored);
        // Deterministic: the same input gives the same layer digest.
        assert_eq!(bootstrap_layer(&boot).unwrap().0, gz);
    }

    #[test]
    fn manifest_shape() {
        let cfg = config(&["sha256:aa".into()]);
        let m = manifest(
            &Descriptor::config(&cfg),
            &[Descriptor::blob("ab", 3), Descriptor::bootstrap(b"x", 6)],
        );
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["mediaType"], MANIFEST_TYPE);
        assert_eq!(v["layers"][0]["annotations"][BLOB_ANNOTATION], "true");
        assert_eq!(v["layers"][0]["digest"], "sha256:ab");
        assert_eq!(v["layers"][1]["annotations"][BOOTSTRAP_ANNOTATION], "true");
        assert_eq!(v["layers"][1]["annotations"][FS_VERSION_ANNOTATION], "6");
        assert_eq!(v["config"]["mediaType"], CONFIG_TYPE);
    }
}
