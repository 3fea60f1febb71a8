//! Synthetic blobs: ci tables v1/v2, digest arrays, trailers and ToCs.

use std::collections::HashMap;

use super::features::*;
use super::*;
use crate::rafs::bytes::PutLe;
use crate::rafs::codec::{self, Compressor, Digester};
use crate::rafs::error::{RafsError, Result};
use crate::rafs::file::BlobSource;
use crate::rafs::types::{BlobInfo, BlobMetaInfo};

struct MemSource(HashMap<String, Vec<u8>>);

impl BlobSource for MemSource {
    fn read_at(&self, id: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let blob = self
            .0
            .get(id)
            .ok_or_else(|| RafsError::NotFound(id.into()))?;
        let src = blob
            .get(offset as usize..offset as usize + buf.len())
            .ok_or_else(|| RafsError::Io(format!("short read of {id}")))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A reverse-tar header naming `size` preceding bytes.
fn tar_header(name: &str, size: u64) -> Vec<u8> {
    let mut h = vec![0u8; TAR_HEADER_SIZE];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = format!("{size:011o}");
    h[124..135].copy_from_slice(octal.as_bytes());
    h[156] = b'0';
    h
}

fn v1_row(coff: u64, csize: u64, uoff: u64, usize_: u64) -> Vec<u8> {
    let (u, c) = (usize_ - 1, csize - 1);
    let w0 = ((u & 0xF_FFFF) << 44) | (uoff & 0x0000_0FFF_FFFF_F000) | ((u >> 20) << 8);
    let w1 = ((c & 0xF_FFFF) << 44) | ((c >> 20) << 40) | coff;
    let mut row = Vec::new();
    row.put_u64(w0);
    row.put_u64(w1);
    row
}

/// Chunks `data` into 4 KiB pieces, compresses with zstd where it shrinks,
/// and lays out `| chunks | [tar] | ci table | ci header | [tar | digests | tar] |`.
fn build(data: &[u8], tar: bool) -> (BlobInfo, Vec<u8>) {
    let mut blob = Vec::new();
    let mut rows = Vec::new();
    let mut digests = Vec::new();
    let mut uoff = 0;
    let mut count = 0;
    for piece in data.chunks(4096) {
        let stored = codec::compress(Compressor::Zstd, piece)
            .unwrap()
            .unwrap_or(piece.to_vec());
        rows.extend(v1_row(
            blob.len() as u64,
            stored.len() as u64,
            uoff,
            piece.len() as u64,
        ));
        digests.extend(codec::digest(Digester::Blake3, piece));
        blob.extend(&stored);
        uoff += 4096;
        count += 1;
    }
    let mut features = ALIGNED | CAP_TAR_TOC;
    if tar {
        features |= HAS_TAR_HEADER | INLINED_CHUNK_DIGEST;
        let n = blob.len() as u64;
        blob.extend(tar_header("image.blob", n));
    }
    let ci_offset = blob.len() as u64;
    blob.extend(&rows);
    let mut header = Vec::new();
    header.put_u32(CI_MAGIC);
    header.put_u32(features);
    header.put_u32(0);
    header.put_u32(count);
    header.put_u64(ci_offset);
    header.put_u64(rows.len() as u64);
    header.put_u64(rows.len() as u64);
    header.put_zeros(CI_HEADER_SIZE - 4 - header.len());
    header.put_u32(CI_MAGIC);
    blob.extend(&header);
    if tar {
        blob.extend(tar_header("blob.meta", rows.len() as u64 + 4096));
        blob.extend(&digests);
        blob.extend(tar_header("blob.digest", digests.len() as u64));
    }
    let info = BlobInfo {
        index: 0,
        blob_id: "b".into(),
        chunk_count: count,
        compressed_size: blob.len() as u64,
        uncompressed_size: uoff,
        compressor: Compressor::Zstd,
        digester: Digester::Blake3,
        chunk_size: 4096,
        features,
        meta: Some(BlobMetaInfo {
            ci_compressor: Compressor::None,
            ci_offset,
            ci_compressed_size: rows.len() as u64,
            ci_uncompressed_size: rows.len() as u64,
        }),
    };
    (info, blob)
}

fn sample() -> Vec<u8> {
    (0..20_000u32)
        .map(|i| {
            if i < 9000 {
                (i % 7) as u8
            } else {
                (i.wrapping_mul(2_654_435_761) >> 11) as u8
            }
        })
        .collect()
}

#[test]
fn ci_rows_decode_and_read_back() {
    for tar in [false, true] {
        let data = sample();
        let (info, blob) = build(&data, tar);
        let src = MemSource(HashMap::from([("b".to_string(), blob.clone())]));
        let table = CiTable::load(&info, "b", &src).unwrap();
        assert_eq!(table.len(), 5);
        let mut out = Vec::new();
        for i in 0..5 {
            let row = table.row(i).unwrap();
            assert_eq!(row.uncompressed_offset, u64::from(i) * 4096);
            assert_eq!(
                row.digest.is_some(),
                tar,
                "digest array only with tar headers"
            );
            let stored = &blob[row.compressed_offset as usize..][..row.compressed_size as usize];
            let c = if row.compressed {
                Compressor::Zstd
            } else {
                Compressor::None
            };
            let piece = codec::decompress(c, stored, row.uncompressed_size as usize).unwrap();
            if let Some(d) = row.digest {
                assert_eq!(d, codec::digest(Digester::Blake3, &piece));
            }
            out.extend(piece);
        }
        assert_eq!(out, data);
        assert!(table.row(5).is_err());
    }
}

/// The format doc's §4.4 word0 example; its word1 example contradicts the
/// bit table above it (it shifts the low 20 bits by 40, not 44). The fixtures
/// (ci rows agreeing with the bootstrap chunk table) confirm the table.
#[test]
fn v1_rows_follow_the_bit_table() {
    let row = v1_row(0x1234, 0x800, 0x3000, 0x10_0000);
    assert_eq!(&row[..8], &0xFFFF_F000_0000_3000u64.to_le_bytes());
    assert_eq!(&row[8..], &0x007F_F000_0000_1234u64.to_le_bytes());
    for (coff, csize, uoff, usz) in [
        (0x1234, 0x800, 0x3000, 0x10_0000),
        (0xFF_FFFF_FFFF, 0x100_0000, 0xFFF_FFFF_F000, 0x100_0000),
        (0, 1, 0, 1),
    ] {
        let row = v1_row(coff, csize, uoff, usz);
        let w = |i: usize| u64::from_le_bytes(row[i..i + 8].try_into().unwrap());
        let c = super::ci::decode_v1(w(0), w(8));
        assert_eq!(
            (c.compressed_offset, u64::from(c.compressed_size)),
            (coff, csize)
        );
        assert_eq!(
            (c.uncompressed_offset, u64::from(c.uncompressed_size)),
            (uoff, usz)
        );
        assert_eq!(c.compressed, csize != usz);
    }
}

#[test]
fn bad_ci_headers_and_rows_are_errors() {
    let (info, blob) = build(&sample(), false);
    let ci_end = (info.meta.as_ref().unwrap().ci_offset + 80) as usize;
    let mut bad = blob.clone();
    bad[ci_end] ^= 1; // first magic
    let src = MemSource(HashMap::from([("b".to_string(), bad)]));
    let e = CiTable::load(&info, "b", &src).unwrap_err().to_string();
    assert!(e.contains("blob ci header") && e.contains("magic"), "{e}");

    let mut wrong = info.clone();
    wrong.chunk_count = 4;
    let src = MemSource(HashMap::from([("b".to_string(), blob.clone())]));
    assert!(CiTable::load(&wrong, "b", &src).is_err());

    let mut refused = info.clone();
    refused.features |= ZRAN;
    let e = CiTable::load(&refused, "b", &src).unwrap_err();
    assert!(
        matches!(e, RafsError::Unsupported(ref m) if m.contains("zran")),
        "{e}"
    );

    // A row pointing past the chunk data is caught on access.
    let mut bad = blob;
    let at = info.meta.as_ref().unwrap().ci_offset as usize + 8;
    bad[at + 4] = 0x7F;
    let src = MemSource(HashMap::from([("b".to_string(), bad)]));
    let t = CiTable::load(&info, "b", &src).unwrap();
    assert!(t
        .row(0)
        .unwrap_err()
        .to_string()
        .contains("past the chunk data"));
}

#[test]
fn inlined_bootstraps_extract_raw_and_through_the_toc() {
    let boot: Vec<u8> = (0..10_000u32).map(|i| (i % 13) as u8).collect();
    let mut raw = vec![9u8; 100];
    raw.extend(&boot);
    raw.extend(tar_header("image.boot", boot.len() as u64));
    assert_eq!(extract_bootstrap(&raw).unwrap(), boot);

    let packed = codec::compress(Compressor::Zstd, &boot).unwrap().unwrap();
    let mut blob = vec![9u8; 100];
    let at = blob.len() as u64;
    blob.extend(&packed);
    blob.extend(tar_header("image.boot", packed.len() as u64));
    let mut entry = Vec::new();
    entry.put_u32(0x2);
    entry.put_u32(0);
    let mut name = b"image.boot".to_vec();
    name.resize(16, 0);
    entry.extend(&name);
    entry.extend(codec::digest(Digester::Sha256, &boot));
    entry.put_u64(at);
    entry.put_u64(packed.len() as u64);
    entry.put_u64(boot.len() as u64);
    entry.put_zeros(48);
    let mut good = blob.clone();
    good.extend(&entry);
    good.extend(tar_header("rafs.blob.toc", 128));
    assert_eq!(extract_bootstrap(&good).unwrap(), boot);
    assert!(
        matches!(read_trailer(&good).unwrap(), Trailer::Toc { ref entries, .. } if entries.len() == 1)
    );

    // A digest mismatch is an error, never a silently wrong bootstrap.
    let mut bad = blob;
    let mut e2 = entry.clone();
    e2[24] ^= 1;
    bad.extend(&e2);
    bad.extend(tar_header("rafs.blob.toc", 128));
    assert!(extract_bootstrap(&bad)
        .unwrap_err()
        .to_string()
        .contains("SHA-256"));
}

#[test]
fn truncated_or_foreign_trailers_are_errors() {
    assert!(extract_bootstrap(&[]).is_err());
    assert!(extract_bootstrap(&[0u8; 511]).is_err());
    let mut t = tar_header("image.boot", 1 << 30);
    assert!(extract_bootstrap(&t).is_err());
    t = tar_header("something", 0);
    assert!(extract_bootstrap(&t)
        .unwrap_err()
        .to_string()
        .contains("something"));
    let mut toc = vec![0u8; 100];
    toc.extend(tar_header("rafs.blob.toc", 100));
    assert!(extract_bootstrap(&toc).is_err());
}

#[test]
fn tar_numbers() {
    assert_eq!(
        TarHeader::parse(&tar_header("x", 0o1234), 0).unwrap().size,
        0o1234
    );
    let mut h = tar_header("x", 0);
    h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(TarHeader::parse(&h, 0).unwrap().size, 0x102);
    h[124..136].copy_from_slice(b"12345678901x");
    assert!(TarHeader::parse(&h, 0).is_err());
}

#[test]
fn v2_rows_carry_flags_and_crc() {
    let w0 = (0x11u64 << 56) | ((0x1000u64 - 1) << 32) | 3;
    let w1 = (0x800u64 << 40) | 0x1234;
    let c = super::ci::decode_v2(w0, w1, 0xDEAD_BEEF);
    assert_eq!(
        (c.uncompressed_offset, c.uncompressed_size),
        (3 * 4096, 0x1000)
    );
    assert_eq!((c.compressed_offset, c.compressed_size), (0x1234, 0x800));
    assert!(c.compressed && !c.batch && !c.encrypted);
    assert_eq!(c.crc32, Some(0xDEAD_BEEF));
    // Batch members use the data word for their position, not a CRC.
    let b = super::ci::decode_v2(w0 | (0x04 << 56), w1, 7);
    assert!(b.batch && b.crc32.is_none());
}

#[test]
fn dir_blob_source_refuses_paths() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("abc"), b"0123456789").unwrap();
    let src = crate::rafs::file::DirBlobSource::new(tmp.path());
    let mut buf = [0u8; 4];
    src.read_at("abc", 3, &mut buf).unwrap();
    assert_eq!(&buf, b"3456");
    assert!(src.read_at("abc", 8, &mut buf).is_err(), "short read");
    for bad in ["", ".", "..", "../abc", "x/abc"] {
        assert!(src.read_at(bad, 0, &mut buf).is_err(), "{bad:?}");
    }
}
