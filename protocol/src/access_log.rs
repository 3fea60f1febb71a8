//! The readahead access log: which chunks an image's start-up read, in
//! first-touch order, kept beside the blob cache as `<image key>.access` so
//! the next mount of the same image can prefetch them first.
//!
//! Layout (little endian), version 1:
//!
//! ```text
//! magic    8  b"NYDUSACL"
//! version  4  1
//! blobs    4  number of blob ids, then per id: length (2) + UTF-8 bytes
//! chunks   4  number of entries, then per entry: blob index (4), chunk index (4)
//! crc32c   4  of every byte before it
//! ```
//!
//! The blob ids let a reader check that the log's blob indexes still mean
//! the same blobs (the image key should already guarantee it).

const MAGIC: &[u8; 8] = b"NYDUSACL";
/// The only version this code writes and reads.
pub const VERSION: u32 = 1;
/// File name suffix of an access log in the cache work dir.
pub const SUFFIX: &str = "access";
/// Refuse absurd counts before allocating for them.
const MAX_ENTRIES: u32 = 1 << 26;
const MAX_BLOBS: u32 = 1 << 16;

/// One image's recorded start-up reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessLog {
    /// Effective blob ids, by blob index.
    pub blobs: Vec<String>,
    /// (blob index, chunk index), in first-touch order, each once.
    pub chunks: Vec<(u32, u32)>,
}

impl AccessLog {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.chunks.len() * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        for id in &self.blobs {
            // Blob ids are digests (64 hex chars); anything longer than a
            // u16 length is cut, which makes the check below fail safely.
            let b = &id.as_bytes()[..id.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(b.len() as u16).to_le_bytes());
            out.extend_from_slice(b);
        }
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (blob, chunk) in &self.chunks {
            out.extend_from_slice(&blob.to_le_bytes());
            out.extend_from_slice(&chunk.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses an access log; the error names what is wrong and where.
    pub fn decode(bytes: &[u8]) -> Result<AccessLog, String> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not an access log (bad magic)".into());
        }
        let Some(body_len) = bytes.len().checked_sub(4) else {
            return Err("truncated".into());
        };
        let mut r = Cursor {
            bytes: &bytes[..body_len],
            pos: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "version {version} is not supported (this nydusd reads version {VERSION})"
            ));
        }
        let stored = u32::from_le_bytes(bytes[body_len..].try_into().map_err(|_| "truncated")?);
        if crc32c::crc32c(&bytes[..body_len]) != stored {
            return Err("checksum mismatch (the file is damaged)".into());
        }
        let nblobs = r.u32()?;
        if nblobs > MAX_BLOBS {
            return Err(format!("{nblobs} blobs at byte 12: too many"));
        }
        let mut blobs = Vec::with_capacity(nblobs as usize);
        for _ in 0..nblobs {
            let len = r.u16()? as usize;
            let at = r.pos;
            let raw = r.take(len)?;
            let id = std::str::from_utf8(raw)
                .map_err(|_| format!("blob id at byte {at} is not UTF-8"))?;
            blobs.push(id.to_string());
        }
        let at = r.pos;
        let n = r.u32()?;
        if n > MAX_ENTRIES || (n as usize).saturating_mul(8) != r.bytes.len() - r.pos {
            return Err(format!(
                "chunk count {n} at byte {at} does not match the file size"
            ));
        }
        let mut chunks = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let at = r.pos;
            let (blob, chunk) = (r.u32()?, r.u32()?);
            if blob >= nblobs {
                return Err(format!(
                    "entry at byte {at} names blob index {blob}, beyond the {nblobs} blobs"
                ));
            }
            chunks.push((blob, chunk));
        }
        Ok(AccessLog { blobs, chunks })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("truncated at byte {}", self.pos));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AccessLog {
        AccessLog {
            blobs: vec!["a".repeat(64), "b".repeat(64)],
            chunks: vec![(1, 7), (0, 0), (0, 3), (1, 2)],
        }
    }

    #[test]
    fn round_trip_keeps_order() {
        let log = sample();
        assert_eq!(AccessLog::decode(&log.encode()).unwrap(), log);
        let empty = AccessLog::default();
        assert_eq!(AccessLog::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn corrupt_input_is_a_clear_error() {
        let good = sample().encode();
        let e = AccessLog::decode(b"hello").unwrap_err();
        assert!(e.contains("bad magic"), "{e}");
        // Every truncation fails, none panics.
        for n in 0..good.len() {
            assert!(
                AccessLog::decode(&good[..n]).is_err(),
                "prefix {n} accepted"
            );
        }
        // Any flipped byte after the magic is caught.
        for i in 8..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(AccessLog::decode(&bad).is_err(), "flip at {i} accepted");
        }
        let mut v2 = good.clone();
        v2[8] = 2;
        let e = AccessLog::decode(&v2).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn blob_index_beyond_the_table_is_refused() {
        let log = AccessLog {
            blobs: vec!["x".into()],
            chunks: vec![(0, 1), (3, 1)],
        };
        let e = AccessLog::decode(&log.encode()).unwrap_err();
        assert!(e.contains("blob index 3"), "{e}");
    }
}
